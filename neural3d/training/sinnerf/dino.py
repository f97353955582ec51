"""DINO ViT-S/16 (Caron et al., ICCV 2021) on our ViT blocks, loading ``dino_deitsmall16_pretrain.pth`` from a file.

Layout (the public checkpoint's key names and shapes; no classifier head): ``cls_token`` [1, 1, 384],
``pos_embed`` [1, 197, 384] (14 x 14 patches at 224 x 224), ``patch_embed.proj.{weight,bias}`` (Conv2d 3 -> 384,
16 x 16, stride 16), ``blocks.{0..11}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.{weight,bias}``
(6 heads), ``norm.{weight,bias}``; LayerNorm eps 1e-6, exact GELU. Blocks and names come from
:mod:`neural3d.pointcloud.vit` (timm's), the patch embedding from :mod:`neural3d.pointcloud.image_vit`.

Other patch grids get DINO's ``interpolate_pos_encoding``: the 14 x 14 patch embeddings resized bicubically
(``align_corners=False``) by the scale factor ``(g + 0.1) / 14`` per axis, the class row kept. Inputs are RGB in
[0, 1], normalised here with the ImageNet mean and standard deviation.

Shapes: ``tokens(images [batch, 3, H, W]) -> [batch, 1 + (H/16)(W/16), 384]``; ``cls(images) -> [batch, 384]``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from neural3d.pointcloud.image_vit import PatchEmbed2D
from neural3d.pointcloud.pretrained import read_state_dict
from neural3d.pointcloud.vit import ViTBackbone, vit_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH = 16
GRID = 14


def interpolate_pos_embed(pos_embed: Tensor, rows: int, cols: int) -> Tensor:
    """DINO's positional-embedding interpolation to a ``rows`` x ``cols`` patch grid.

    Args:
        pos_embed: [1, 1 + n * n, dim] (class row first, an n x n patch grid).
        rows, cols: the target grid (image height / 16, width / 16).
    Returns:
        [1, 1 + rows * cols, dim]; ``pos_embed`` itself when the grid is unchanged and square.
    """
    n = int(math.isqrt(pos_embed.shape[1] - 1))
    if n * n != pos_embed.shape[1] - 1:
        raise ValueError(f"pos_embed must hold a square patch grid plus a class row, got {tuple(pos_embed.shape)}")
    if rows == n and cols == n:
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, n, n, dim).permute(0, 3, 1, 2)
    # +0.1 as DINO: avoids a floating-point floor in the output size
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / n, (cols + 0.1) / n), mode="bicubic", align_corners=False)
    if grid.shape[-2:] != (rows, cols):
        raise RuntimeError(f"pos-embed interpolation gave {tuple(grid.shape[-2:])}, expected {(rows, cols)}")
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)], 1)


class DinoViT(ViTBackbone):
    """DINO ViT-S/16 (no head), parameter names of the public checkpoint (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(spec=vit_spec("small"), n_pos=1 + GRID * GRID)
        self.patch_embed = PatchEmbed2D(embed_dim=self.spec.embed_dim, patch=PATCH)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def tokens(self, images: Tensor, *, normed: bool = False) -> Tensor:
        """[batch, 3, H, W] RGB in [0, 1] (H, W multiples of 16) -> the last block's tokens [batch, 1 + n, 384].

        ``normed=False`` is the last block's output before the final LayerNorm (the official SinNeRF extractor
        hooks the blocks); ``normed=True`` applies ``norm`` (DINO's ``forward``).
        """
        b, c, h, w = images.shape
        if c != 3 or h % PATCH or w % PATCH:
            raise ValueError(f"DinoViT: images must be [batch, 3, 16k, 16m], got {tuple(images.shape)}")
        x = self.patch_embed((images - self.mean) / self.std)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1)
        x = x + interpolate_pos_embed(self.pos_embed, h // PATCH, w // PATCH)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x) if normed else x

    def cls(self, images: Tensor, *, normed: bool = False) -> Tensor:
        """[batch, 3, H, W] -> [batch, 384] class-token feature (see :meth:`tokens`)."""
        return self.tokens(images, normed=normed)[:, 0]


def load_dino(path: str | Path) -> DinoViT:
    """A frozen (eval, no gradients) :class:`DinoViT` with the weights of a local checkpoint, loaded strictly.

    Raises ValueError naming the file when keys are missing or unexpected, or a shape differs.
    """
    state, name = read_state_dict(path)
    model = DinoViT()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"{name}: not a DINO ViT-S/16 state dict (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shapes {wrong[:4]})"
        )
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model
