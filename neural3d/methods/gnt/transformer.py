"""GNT's transformer blocks and the full network (view transformer + ray transformer stack).

Numerics follow the official code (VITA-Group/GNT), so its checkpoints give the same outputs:

* :class:`ViewAttention`: subtraction-based vector attention over source views,
  ``a = attn_fc(k - q + pos)``, ``pos = pos_fc(ray_diff)``, ``v = v_fc(k_fc(x))`` (v from the already
  projected k), invalid views filled with -1e9 before a per-channel softmax over views, output
  ``out_fc(sum_v softmax(a) * (v + pos))``.
* :class:`RayAttention`: multi-head dot-product self-attention over the samples of a ray.
* blocks are pre-LayerNorm (eps 1e-6) with a ReLU feed-forward of width 4x; dropout 0.1 in training.
* :class:`GNTNetwork`: query = max over ALL views (masked ones included) of ``feat_fc`` of the
  source RGB+features; ``depth`` x (view block, [position/direction encoding MLP on even blocks],
  ray block); colour = ``rgb_fc(mean over samples of LayerNorm(q))`` (eps 1e-5), no activation.
  The last ray block's attention row of the first sample (mean over heads) gives per-sample weights
  (``ret_alpha`` in the official code), used for depth and fine sampling.

Module names differ from the official ones only where theirs mislead (``view_crosstrans`` is the view
transformer, ``view_selftrans`` the ray transformer); :mod:`neural3d.methods.gnt.checkpoint` maps them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from neural3d.fields.encodings import PositionalEncoding
from neural3d.methods.gnt.fused import MASK_FILL, FoldedNetwork, fold_network, fused_forward, weights_key


def mlp2(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear (indices 0 and 2 hold weights, as in the official ``nn.Sequential``)."""
    return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, c_out))


class FeedForward(nn.Module):
    """``dropout(fc2(dropout(relu(fc1(x)))))``. Shapes: [*batch, dim] -> [*batch, dim]."""

    def __init__(self, *, dim: int, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dp = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dp(self.fc2(self.dp(torch.relu(self.fc1(x)))))


class ViewAttention(nn.Module):
    """Vector attention of a per-sample query over the source views of that sample.

    Shapes: ``q`` [n_rays, n_samples, dim], ``k`` [n_rays, n_samples, n_views, dim],
    ``pos`` (ray-direction difference) [n_rays, n_samples, n_views, 4],
    ``mask`` [n_rays, n_samples, n_views, 1] (1 valid, 0 invalid) -> [n_rays, n_samples, dim].
    """

    def __init__(self, *, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.q_fc = nn.Linear(dim, dim, bias=False)
        self.k_fc = nn.Linear(dim, dim, bias=False)
        self.v_fc = nn.Linear(dim, dim, bias=False)
        self.pos_fc = mlp2(4, dim // 8, dim)
        self.attn_fc = mlp2(dim, dim // 8, dim)
        self.out_fc = nn.Linear(dim, dim)
        self.dp = nn.Dropout(dropout)

    def forward(self, q: Tensor, k: Tensor, pos: Tensor, mask: Tensor | None = None) -> Tensor:
        q = self.q_fc(q)
        k = self.k_fc(k)
        v = self.v_fc(k)  # official: v from the projected k
        pos = self.pos_fc(pos)
        logits = self.attn_fc(k - q[:, :, None, :] + pos)
        if mask is not None:
            logits = logits.masked_fill(mask == 0, MASK_FILL)
        attn = self.dp(torch.softmax(logits, dim=-2))
        return self.dp(self.out_fc(((v + pos) * attn).sum(dim=2)))


class ViewTransformer(nn.Module):
    """Pre-LayerNorm view-transformer block: ``q + attn(LN(q), k, pos, mask)``, then ``x + ff(LN(x))``."""

    def __init__(self, *, dim: int, ff_hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ff_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ff = FeedForward(dim=dim, hidden=ff_hidden, dropout=dropout)
        self.attn = ViewAttention(dim=dim, dropout=dropout)

    def forward(self, q: Tensor, k: Tensor, pos: Tensor, mask: Tensor | None = None) -> Tensor:
        """[n_rays, n_samples, dim] query, [n_rays, n_samples, n_views, dim] keys -> [n_rays, n_samples, dim]."""
        x = self.attn(self.attn_norm(q), k, pos, mask) + q
        return self.ff(self.ff_norm(x)) + x


class RayAttention(nn.Module):
    """Multi-head self-attention over samples.

    [n_rays, n_samples, dim] -> (same, attn [n_rays, n_heads, n_samples, n_samples]).
    """

    def __init__(self, *, dim: int, n_heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"RayAttention: width {dim} is not divisible by n_heads {n_heads}")
        self.q_fc = nn.Linear(dim, dim, bias=False)
        self.k_fc = nn.Linear(dim, dim, bias=False)
        self.v_fc = nn.Linear(dim, dim, bias=False)
        self.out_fc = nn.Linear(dim, dim)
        self.dp = nn.Dropout(dropout)
        self.n_heads = n_heads

    def _heads(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.n_heads, -1).transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, k, v = self._heads(self.q_fc(x)), self._heads(self.k_fc(x)), self._heads(self.v_fc(x))
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out = (self.dp(attn) @ v).transpose(1, 2).reshape(x.shape)
        return self.dp(self.out_fc(out)), attn


class RayTransformer(nn.Module):
    """Pre-LayerNorm ray-transformer block. [n_rays, n_samples, dim] -> (same, weights [n_rays, n_samples]).

    ``weights`` is the attention of the first sample over all samples, averaged over heads.
    """

    def __init__(self, *, dim: int, ff_hidden: int, n_heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ff_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ff = FeedForward(dim=dim, hidden=ff_hidden, dropout=dropout)
        self.attn = RayAttention(dim=dim, n_heads=n_heads, dropout=dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, attn = self.attn(self.attn_norm(x))
        x = h + x
        return self.ff(self.ff_norm(x)) + x, attn.mean(dim=1)[:, 0]


class GNTNetwork(nn.Module):
    """The GNT network: source-view tokens of every sample -> ray colour and per-sample weights.

    Args:
        width: token width (64).
        depth: number of (view block, ray block) pairs (4 single-scene, 8 cross-scene).
        feature_dim: image-feature channels (32); tokens start from RGB (3) + features.
        n_heads: heads of the ray transformer (4).
        n_freqs: positional-encoding frequencies of positions and directions (10).
        dropout: dropout rate (0.1; active in training only).
        fused_inference: in eval mode without gradients, ``run`` evaluates the network through
            :func:`~neural3d.methods.gnt.fused.fused_forward` (same outputs up to float rounding, less work);
            False: always the reference arithmetic.

    ``forward(rgb_feat [n_rays, n_samples, n_views, 3 + feature_dim], ray_diff [..., n_views, 4],
    mask [..., n_views, 1], points [n_rays, n_samples, 3], ray_dirs [n_rays, 3])``
    -> (rgb [n_rays, 3] unclamped, weights [n_rays, n_samples]).
    """

    def __init__(
        self,
        *,
        width: int = 64,
        depth: int = 4,
        feature_dim: int = 32,
        n_heads: int = 4,
        n_freqs: int = 10,
        dropout: float = 0.1,
        fused_inference: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"GNTNetwork: depth must be >= 1, got {depth}")
        self.pos_enc = PositionalEncoding(n_freqs=n_freqs, in_dim=3)
        self.dir_enc = PositionalEncoding(n_freqs=n_freqs, in_dim=3)
        enc_dim = 3 * (1 + 2 * n_freqs)
        ff = 4 * width
        # Registration order = the official state-dict order: feature MLP, ray blocks, view blocks, PE MLPs.
        self.feat_fc = mlp2(3 + feature_dim, width, width)
        self.ray_blocks = nn.ModuleList(
            [RayTransformer(dim=width, ff_hidden=ff, n_heads=n_heads, dropout=dropout) for _ in range(depth)]
        )
        self.view_blocks = nn.ModuleList(
            [ViewTransformer(dim=width, ff_hidden=ff, dropout=dropout) for _ in range(depth)]
        )
        self.pe_fcs = nn.ModuleList(
            [mlp2(width + 2 * enc_dim, width, width) if i % 2 == 0 else nn.Identity() for i in range(depth)]
        )
        self.norm = nn.LayerNorm(width)
        self.rgb_fc = nn.Linear(width, 3)
        self.fused_inference = fused_inference
        self._folded: FoldedNetwork | None = None  # folded weights for fused inference (not in the state dict)

    def forward(
        self, rgb_feat: Tensor, ray_diff: Tensor, mask: Tensor, points: Tensor, ray_dirs: Tensor
    ) -> tuple[Tensor, Tensor]:
        return self.run(rgb_feat, ray_diff, mask, points, ray_dirs)

    def run(
        self, rgb_feat: Tensor, ray_diff: Tensor, mask: Tensor, points: Tensor, ray_dirs: Tensor
    ) -> tuple[Tensor, Tensor]:
        """See the class docstring (``forward`` of subclasses may differ; ``run`` never does).

        Eval mode without gradients (and ``fused_inference``): the fused path; otherwise :meth:`reference`.
        """
        if self.fused_inference and not self.training and not torch.is_grad_enabled():
            return fused_forward(self, rgb_feat, ray_diff, mask, points, ray_dirs)
        return self.reference(rgb_feat, ray_diff, mask, points, ray_dirs)

    def folded_weights(self) -> FoldedNetwork:
        """The folded weights of the fused path, made again whenever a parameter has changed."""
        if self._folded is None or self._folded.key != weights_key(self):
            with torch.no_grad():
                self._folded = fold_network(self)
        return self._folded

    def reference(
        self, rgb_feat: Tensor, ray_diff: Tensor, mask: Tensor, points: Tensor, ray_dirs: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The official arithmetic, step by step (training, gradients, and the fused path's reference)."""
        viewdirs = ray_dirs / torch.linalg.norm(ray_dirs, dim=-1, keepdim=True)
        pts_enc = self.pos_enc(points)
        dir_enc = self.dir_enc(viewdirs)[:, None, :].expand(*points.shape[:2], -1)
        tokens = self.feat_fc(rgb_feat)
        q = tokens.max(dim=2).values
        weights = None
        for i, (view_block, pe_fc, ray_block) in enumerate(zip(self.view_blocks, self.pe_fcs, self.ray_blocks)):
            q = view_block(q, tokens, ray_diff, mask)
            if i % 2 == 0:
                q = pe_fc(torch.cat([q, pts_enc, dir_enc], dim=-1))
            q, weights = ray_block(q)
        rgb = self.rgb_fc(self.norm(q).mean(dim=1))
        return rgb, weights
