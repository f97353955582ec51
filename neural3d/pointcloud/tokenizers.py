"""Input tokenizers for the point ViT: points (set abstraction) or voxels (Conv3d patches).

Both return a :class:`Tokens` bundle: transformer tokens with their 3D centres, plus the finer levels
(positions and features) that segmentation uses for feature propagation back to every point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from neural3d.pointcloud.ops import farthest_point_sample, gather_points, knn


@dataclass
class Tokens:
    """Tokenizer output.

    Attributes:
        tokens: [batch, n_tokens, dim] embeddings (positional embedding included).
        centres: [batch, n_tokens, 3] token positions.
        levels: finer levels, input points first: (xyz [batch, n_l, 3], features [batch, n_l, C_l]).
    """

    tokens: Tensor
    centres: Tensor
    levels: list[tuple[Tensor, Tensor]] = field(default_factory=list)


def point_mlp(in_dim: int, out_dim: int, hidden: int | None = None) -> nn.Sequential:
    """Per-point two-layer MLP ``Linear-LayerNorm-ReLU-Linear``: [*, in_dim] -> [*, out_dim]."""
    hidden = hidden or out_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class SetAbstraction(nn.Module):
    """FPS ``n_centres`` centres, group their ``k`` nearest points, shared layer on [xyz - centre, feature], max-pool.

    The grouped layer ``relu(W [p_j - c, f_j] + b)`` is evaluated as ``relu((W_f f_j + W_p p_j) - W_p c + b)``: the
    linear part runs once per point and per centre, not once per (centre, neighbour) pair, so only the
    ReLU and the max touch the [batch, n_centres, k, out_dim] groups. A ``post`` Linear-LayerNorm-ReLU
    mixes the pooled features.

    Shapes: ``(xyz [batch, n_points, 3], features [batch, n_points, in_dim])`` ->
    ``(centres [batch, n_centres, 3], features [batch, n_centres, out_dim])``.
    """

    def __init__(self, *, n_centres: int, k: int, in_dim: int, out_dim: int, cache_groups: bool = False):
        super().__init__()
        self.n_centres, self.k = n_centres, k
        self.cache_groups = cache_groups  # reuse FPS + kNN when called again with identical points
        self._cache: tuple[Tensor, Tensor, Tensor] | None = None
        self.grouped = nn.Linear(3 + in_dim, out_dim)
        self.post = nn.Sequential(nn.Linear(out_dim, out_dim), nn.LayerNorm(out_dim), nn.ReLU())

    def group(self, xyz: Tensor) -> tuple[Tensor, Tensor]:
        """[batch, n_points, 3] -> (centres [batch, n_centres, 3], neighbour indices [batch, n_centres, k])."""
        c = self._cache
        if c is not None and c[0].shape == xyz.shape and c[0].device == xyz.device and torch.equal(c[0], xyz):
            return c[1], c[2]
        centres = gather_points(xyz, farthest_point_sample(xyz, min(self.n_centres, xyz.shape[1])))
        _, idx = knn(centres, xyz, min(self.k, xyz.shape[1]))
        if self.cache_groups:
            self._cache = (xyz.detach().clone(), centres.detach(), idx)
        return centres, idx

    def forward(self, xyz: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        centres, idx = self.group(xyz)
        w_p = self.grouped.weight[:, :3]
        per_point = self.grouped(torch.cat([xyz, features], -1))  # W_p p_j + W_f f_j + b
        grouped = gather_points(per_point, idx) - (centres @ w_p.T)[:, :, None, :]
        return centres, self.post(torch.relu(grouped).amax(dim=2))


class PointTokenizer(nn.Module):
    """Per-point MLP embedding + learned positional MLP on xyz, then set-abstraction stages to tokens.

    Args:
        in_dim: per-point input channels (3 for xyz, 6 with normals; xyz must be the first 3).
        embed_dim: transformer width; point features start at ``embed_dim // 2**n_stages`` (at least 16)
            and double per stage, the last stage giving ``embed_dim``.
        n_centres: centres per stage, e.g. (512, 128): the last is the number of tokens.
        k: neighbours per group (16).
        cache_groups: remember the last FPS/kNN grouping per stage (a fixed cloud encoded repeatedly, e.g. a scene).

    Shapes: ``forward(points [batch, n_points, in_dim]) -> Tokens`` with ``n_tokens = n_centres[-1]``.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        embed_dim: int,
        n_centres: Sequence[int] = (512, 128),
        k: int = 16,
        cache_groups: bool = False,
    ):
        super().__init__()
        if in_dim < 3:
            raise ValueError(f"PointTokenizer: in_dim must be >= 3 (xyz first), got {in_dim}")
        if not n_centres:
            raise ValueError("PointTokenizer: n_centres needs at least one stage")
        self.in_dim = in_dim
        width = max(embed_dim // 2 ** len(n_centres), 16)
        self.embed = point_mlp(in_dim, width)
        self.pos = point_mlp(3, width)
        stages, self.level_dims = [], [width]
        for i, n in enumerate(n_centres):
            out = embed_dim if i == len(n_centres) - 1 else min(width * 2, embed_dim)
            stages.append(SetAbstraction(n_centres=int(n), k=k, in_dim=width, out_dim=out, cache_groups=cache_groups))
            width = out
            self.level_dims.append(out)
        self.level_dims.pop()  # channels of the finer levels (input points first) kept for segmentation
        self.stages = nn.ModuleList(stages)
        self.token_pos = point_mlp(3, embed_dim)

    def forward(self, points: Tensor) -> Tokens:
        if points.ndim != 3 or points.shape[-1] != self.in_dim:
            raise ValueError(
                f"PointTokenizer: points must be [batch, n_points, {self.in_dim}], got {tuple(points.shape)}"
            )
        xyz = points[..., :3].contiguous()
        feats = self.embed(points) + self.pos(xyz)
        levels = [(xyz, feats)]
        for stage in self.stages:
            xyz, feats = stage(xyz, feats)
            levels.append((xyz, feats))
        levels.pop()
        return Tokens(tokens=feats + self.token_pos(xyz), centres=xyz, levels=levels)


def voxelize(xyz: Tensor, resolution: int) -> Tensor:
    """Occupancy grid of points in [-1, 1]^3 (outside points are clamped to the border cells).

    Args:
        xyz: [batch, n_points, 3].
        resolution: cells per side.
    Returns:
        [batch, 1, resolution, resolution, resolution] float occupancy (0/1), indexed [z, y, x].
    """
    b = xyz.shape[0]
    cell = ((xyz + 1.0) * 0.5 * resolution).floor().long().clamp(0, resolution - 1)
    flat = (cell[..., 2] * resolution + cell[..., 1]) * resolution + cell[..., 0]
    grid = xyz.new_zeros(b, resolution**3)
    grid.scatter_(1, flat, 1.0)
    return grid.reshape(b, 1, resolution, resolution, resolution)


class VoxelTokenizer(nn.Module):
    """Occupancy grid -> ``patch_embed.proj`` Conv3d patches (kernel = stride = ``patch``) -> tokens.

    Args:
        embed_dim: transformer width.
        resolution: grid cells per side (points are expected in [-1, 1]^3).
        patch: patch size in cells (``resolution`` must be a multiple).

    Shapes: ``forward(points [batch, n_points, >=3]) -> Tokens`` with ``(resolution / patch)^3`` tokens.
    ``levels`` holds the input points with zero features (no per-point features are computed).
    """

    def __init__(self, *, embed_dim: int, resolution: int = 32, patch: int = 4):
        super().__init__()
        if resolution % patch:
            raise ValueError(f"VoxelTokenizer: resolution {resolution} must be a multiple of patch {patch}")
        self.resolution, self.patch = resolution, patch
        self.proj = nn.Conv3d(1, embed_dim, kernel_size=patch, stride=patch)
        self.level_dims = [0]
        self.token_pos = point_mlp(3, embed_dim)
        g = resolution // patch
        c = (torch.arange(g, dtype=torch.float32) + 0.5) / g * 2.0 - 1.0
        z, y, x = torch.meshgrid(c, c, c, indexing="ij")
        self.register_buffer("cell_centres", torch.stack([x, y, z], -1).reshape(-1, 3), persistent=False)

    def forward(self, points: Tensor) -> Tokens:
        xyz = points[..., :3]
        grid = voxelize(xyz, self.resolution)
        tokens = self.proj(grid).flatten(2).transpose(1, 2)  # [batch, g^3, dim] in z, y, x order
        centres = self.cell_centres.to(xyz.dtype)[None].expand(xyz.shape[0], -1, -1)
        return Tokens(
            tokens=tokens + self.token_pos(centres), centres=centres, levels=[(xyz, xyz.new_zeros(*xyz.shape[:2], 0))]
        )
