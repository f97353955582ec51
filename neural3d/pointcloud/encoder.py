"""Simple3D-Former-style point ViT: tokenizer (``patch_embed``) + DeiT blocks + task head.

State-dict layout matches timm/DeiT at the top level (``cls_token``, ``pos_embed``, ``blocks.*``, ``norm``,
``patch_embed.*``, ``head``), so :func:`neural3d.pointcloud.pretrained.load_deit` fills the blocks from a
2D checkpoint. Tasks: ``encode`` (no head), ``cls`` (mean of token features -> ``head``), ``seg``
(feature propagation to every point + category one-hot -> ``head``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neural3d.pointcloud.heads import SegmentationDecoder
from neural3d.pointcloud.ops import interpolate_features
from neural3d.pointcloud.tokenizers import PointTokenizer, Tokens, VoxelTokenizer
from neural3d.pointcloud.vit import ViTBackbone, ViTSpec, vit_spec

TASKS = ("encode", "cls", "seg")
TOKENIZERS = ("point", "voxel")


@dataclass
class Encoded:
    """Encoder output.

    Attributes:
        cls: [batch, dim] class-token feature.
        tokens: [batch, n_tokens, dim] token features (after the final ``norm``).
        centres: [batch, n_tokens, 3] token positions.
        levels: finer levels from the tokenizer (input points first), for feature propagation.
    """

    cls: Tensor
    tokens: Tensor
    centres: Tensor
    levels: list[tuple[Tensor, Tensor]]

    def point_features(self) -> Tensor:
        """[batch, n_points, dim] token features interpolated (3-NN inverse distance) at every input point."""
        return interpolate_features(self.levels[0][0], self.centres, self.tokens)


class PointViT(ViTBackbone):
    """Point-cloud ViT.

    Args:
        size: tiny | small | base (DeiT widths 192/384/768, heads 3/6/12), or a :class:`ViTSpec`.
        depth: number of blocks (default: the size's 12).
        in_dim: per-point input channels (xyz first).
        tokenizer: point | voxel.
        n_centres: point tokenizer stages (centres per stage; the last = tokens).
        k: neighbours per group.
        voxel_resolution, voxel_patch: voxel tokenizer grid and patch size.
        task: encode | cls | seg.
        n_classes: classes (cls) or part labels (seg).
        n_categories: object categories whose one-hot conditions segmentation (0: none).
        cache_groups: point tokenizer reuses its FPS/kNN grouping for an identical cloud (scene fields).

    Shapes: ``forward(points [batch, n_points, in_dim], category [batch] int64 | None)`` ->
    cls: [batch, n_classes] logits; seg: [batch, n_points, n_classes] logits; encode: :class:`Encoded`.
    """

    def __init__(
        self,
        *,
        size: str | ViTSpec = "tiny",
        depth: int | None = None,
        in_dim: int = 3,
        tokenizer: str = "point",
        n_centres: Sequence[int] = (512, 128),
        k: int = 16,
        voxel_resolution: int = 32,
        voxel_patch: int = 4,
        task: str = "cls",
        n_classes: int = 40,
        n_categories: int = 0,
        cache_groups: bool = False,
    ):
        spec = size if isinstance(size, ViTSpec) else vit_spec(size, depth)
        super().__init__(spec=spec)
        if task not in TASKS:
            raise ValueError(f"PointViT: task must be one of {TASKS}, got {task!r}")
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"PointViT: tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
        d = spec.embed_dim
        self.task, self.in_dim, self.n_categories = task, in_dim, n_categories
        if tokenizer == "point":
            self.patch_embed = PointTokenizer(
                in_dim=in_dim, embed_dim=d, n_centres=n_centres, k=k, cache_groups=cache_groups
            )
        else:
            self.patch_embed = VoxelTokenizer(embed_dim=d, resolution=voxel_resolution, patch=voxel_patch)
        if task == "cls":
            self.head = nn.Linear(d, n_classes)
        elif task == "seg":
            self.seg_decoder = SegmentationDecoder(
                token_dim=d, level_dims=self.patch_embed.level_dims, n_categories=n_categories
            )
            self.head = nn.Linear(self.seg_decoder.out_dim, n_classes)

    def encode(self, points: Tensor) -> Encoded:
        """[batch, n_points, in_dim] -> :class:`Encoded` (class token, token features, centres, levels)."""
        if points.ndim == 2:
            raise ValueError(
                f"PointViT: points must be batched [batch, n_points, {self.in_dim}], "
                f"got {tuple(points.shape)}; use points[None]"
            )
        t: Tokens = self.patch_embed(points)
        x = super().forward(t.tokens)
        return Encoded(cls=x[:, 0], tokens=x[:, 1:], centres=t.centres, levels=t.levels)

    def forward(self, points: Tensor, category: Tensor | None = None):
        enc = self.encode(points)
        if self.task == "encode":
            return enc
        if self.task == "cls":
            return self.head(enc.tokens.mean(1))
        onehot = None
        if self.n_categories:
            if category is None:
                raise ValueError("PointViT(task='seg'): this model needs the object category [batch] (int64)")
            onehot = torch.nn.functional.one_hot(category.long(), self.n_categories).to(points.dtype)
        return self.head(self.seg_decoder(enc.tokens, enc.centres, enc.levels, onehot))
