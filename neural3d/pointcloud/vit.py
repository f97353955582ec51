"""Vision-transformer blocks with timm/DeiT parameter names and shapes, written in-house.

Names (so ``deit_{tiny,small,base}_patch16_224`` checkpoints load key for key):
``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv`` (Linear dim -> 3 dim, bias), ``blocks.{i}.attn.proj``,
``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1`` (dim -> 4 dim), ``blocks.{i}.mlp.fc2``, ``norm``, ``cls_token``
[1, 1, dim], ``pos_embed`` [1, n_pos, dim]. LayerNorm eps is 1e-6 and GELU is the exact (erf) one, as timm.

Shapes: tokens are [batch, n_tokens, dim].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ViTSpec:
    """Transformer width/depth/heads (DeiT names)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


# DeiT-B has 12 heads (the official Simple3D-Former configs wrongly give 3).
VIT_SPECS = {
    "tiny": ViTSpec(embed_dim=192, depth=12, num_heads=3),
    "small": ViTSpec(embed_dim=384, depth=12, num_heads=6),
    "base": ViTSpec(embed_dim=768, depth=12, num_heads=12),
}


def vit_spec(name: str, depth: int | None = None) -> ViTSpec:
    """Spec by size name (tiny | small | base), optionally with fewer/more blocks."""
    if name not in VIT_SPECS:
        raise ValueError(f"unknown ViT size {name!r}; expected one of {sorted(VIT_SPECS)}")
    s = VIT_SPECS[name]
    return s if depth is None else ViTSpec(s.embed_dim, int(depth), s.num_heads, s.mlp_ratio)


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` then ``softmax(q k^T / sqrt(head_dim)) v`` then ``proj``.

    Shapes: [batch, n_tokens, dim] -> [batch, n_tokens, dim].
    """

    def __init__(self, *, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [batch, heads, n_tokens, head_dim]
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))``: [*, dim] -> [*, dim] with hidden width ``hidden``."""

    def __init__(self, *, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, *, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim=dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim=dim, hidden=int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """[batch, n_tokens, dim] -> [batch, n_tokens, dim]."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTBackbone(nn.Module):
    """Class token + ``depth`` blocks + final ``norm``; the tokenizer in front is supplied by the caller.

    ``pos_embed`` [1, n_pos, dim] is added to ``[cls, tokens]``. Point models use ``n_pos = 1``: only the
    class token's embedding (DeiT's ``pos_embed[:, :1]``), point tokens get their positions from the
    tokenizer's learned positional MLP. Image models use ``n_pos = 1 + n_patches`` as DeiT.

    Shapes: ``forward(tokens [batch, n_tokens, dim]) -> [batch, 1 + n_tokens, dim]`` (class token first).
    """

    def __init__(self, *, spec: ViTSpec, n_pos: int = 1):
        super().__init__()
        self.spec = spec
        d = spec.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, d))
        self.blocks = nn.ModuleList(
            Block(dim=d, num_heads=spec.num_heads, mlp_ratio=spec.mlp_ratio) for _ in range(spec.depth)
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(init_vit_weights)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.spec.embed_dim:
            raise ValueError(
                f"ViTBackbone: tokens must be [batch, n_tokens, {self.spec.embed_dim}], got {tuple(tokens.shape)}"
            )
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], 1)
        if self.pos_embed.shape[1] == 1:
            x = torch.cat([x[:, :1] + self.pos_embed, x[:, 1:]], 1)
        elif self.pos_embed.shape[1] == x.shape[1]:
            x = x + self.pos_embed
        else:
            raise ValueError(f"ViTBackbone: pos_embed has {self.pos_embed.shape[1]} positions for {x.shape[1]} tokens")
        return self.run_blocks(x)

    def run_blocks(self, x: Tensor) -> Tensor:
        """[batch, n_tokens, dim] (positions added) -> blocks -> ``norm``."""
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def init_vit_weights(m: nn.Module) -> None:
    """timm's default init: truncated-normal (std 0.02) Linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
