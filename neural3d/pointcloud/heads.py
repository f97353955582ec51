"""Task heads on point-ViT tokens: feature-propagation decoder for per-point (part) segmentation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neural3d.pointcloud.ops import interpolate_features
from neural3d.pointcloud.tokenizers import point_mlp


class SegmentationDecoder(nn.Module):
    """Upsample token features level by level to every input point (PointNet++ feature propagation).

    At each finer level the coarser features are interpolated (3-NN inverse distance), concatenated with
    that level's skip features (and, at the input points, the category one-hot) and mixed by an MLP.

    Args:
        token_dim: transformer width.
        level_dims: skip-feature channels per finer level, input points first (0: no skip features).
        n_categories: one-hot width appended at the input points (0: none).

    Shapes: ``forward(tokens [batch, n_tokens, token_dim], centres [batch, n_tokens, 3], levels,
    onehot [batch, n_categories] | None) -> [batch, n_points, out_dim]``.
    """

    def __init__(self, *, token_dim: int, level_dims: Sequence[int], n_categories: int = 0):
        super().__init__()
        self.n_categories = n_categories
        width, mlps = token_dim, []
        for i in reversed(range(len(level_dims))):
            extra = level_dims[i] + (n_categories if i == 0 else 0)
            out = max(token_dim // 2 ** (len(level_dims) - i), 32)
            mlps.append(point_mlp(width + extra, out))
            width = out
        self.mlps = nn.ModuleList(mlps)
        self.out_dim = width

    def forward(
        self, tokens: Tensor, centres: Tensor, levels: list[tuple[Tensor, Tensor]], onehot: Tensor | None = None
    ) -> Tensor:
        feats, xyz = tokens, centres
        for mlp, (fine_xyz, fine_feats) in zip(self.mlps, reversed(levels)):
            up = interpolate_features(fine_xyz, xyz, feats)
            parts = [up, fine_feats]
            if fine_xyz is levels[0][0] and self.n_categories:
                parts.append(onehot[:, None, :].expand(-1, fine_xyz.shape[1], -1))
            feats, xyz = torch.relu(mlp(torch.cat(parts, -1))), fine_xyz
        return feats
