"""Point-cloud-conditioned radiance field: encoded points + k-nearest-neighbour feature gathering.

The point ViT (``PointViT(task="seg")`` without categories) gives every scene point a feature (feature
propagation from its tokens), optionally plus a learned per-point code. A query position gathers its
``k`` nearest encoded points; each neighbour's feature and positional-encoded offset go through a shared
MLP, the results are averaged with inverse-distance weights, and small MLPs give density and colour
(spherical-harmonics view directions). Density fades to zero beyond ``radius`` from the nearest point.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neural3d.fields.base import Field, broadcast_inputs
from neural3d.fields.encodings import PositionalEncoding, SHEncoding
from neural3d.fields.mlp import MLP
from neural3d.fields.ngp_field import trunc_exp
from neural3d.pointcloud.encoder import PointViT
from neural3d.pointcloud.ops import (
    build_candidate_table,
    inverse_distance_weights,
    knn,
    knn_from_candidates,
)


class PointConditionedField(Field):
    """Radiance field conditioned on a point cloud.

    Args:
        points: [n_points, 3] scene points in the ray space (NDC for forward-facing scenes).
        size, depth, n_centres, k_group: point-ViT encoder settings.
        feature_dim: per-point feature channels.
        point_codes: add a learned [n_points, feature_dim] code (zero-initialised) to the encoded features.
        k: neighbours gathered per query.
        n_freqs: positional-encoding frequencies of the query-neighbour offsets (in units of ``spacing``).
        hidden_dim: MLP width.
        radius_scale: density gate radius in units of the mean nearest-neighbour spacing of the points.
        grid_resolution, n_candidates: neighbour search for the stored points: a grid over the points' box
            whose cells list their ``n_candidates`` nearest points (built lazily, not saved); queries
            search only their cell's list. Points passed as ``context`` use exact brute force.

    Shapes: ``query(positions [*batch, 3], viewdirs [*batch, 3]) -> (density [*batch, 1], rgb [*batch, 3])``.
    """

    def __init__(
        self,
        *,
        points: Tensor,
        size: str = "tiny",
        depth: int = 2,
        n_centres: Sequence[int] = (512, 128),
        k_group: int = 16,
        feature_dim: int = 32,
        point_codes: bool = True,
        k: int = 8,
        n_freqs: int = 4,
        hidden_dim: int = 64,
        radius_scale: float = 4.0,
        grid_resolution: int = 32,
        n_candidates: int = 32,
    ):
        super().__init__()
        if points.ndim != 2 or points.shape[-1] != 3 or len(points) < k:
            raise ValueError(f"PointConditionedField: points must be [n_points >= k={k}, 3], got {tuple(points.shape)}")
        self.k = k
        self.register_buffer("points", points.float().clone())
        d, _ = knn(self.points[None], self.points[None], 2)
        self.register_buffer("spacing", d[0, :, 1].sqrt().mean().reshape(()))
        self.radius_scale = radius_scale
        self.grid_resolution, self.n_candidates = grid_resolution, n_candidates
        self._table: Tensor | None = None
        self._box: Tensor | None = None
        self.encoder = PointViT(
            size=size,
            depth=depth,
            in_dim=3,
            n_centres=tuple(min(c, len(points)) for c in n_centres),
            k=k_group,
            task="seg",
            n_classes=feature_dim,
            n_categories=0,
            cache_groups=True,
        )
        self.codes = nn.Parameter(torch.zeros(len(points), feature_dim)) if point_codes else None
        self.offset_encoding = PositionalEncoding(in_dim=3, n_freqs=n_freqs, include_input=True)
        self.neighbour_mlp = MLP(
            in_dim=feature_dim + self.offset_encoding.out_dim, out_dim=hidden_dim, widths=(), output_activation="relu"
        )
        self.density_mlp = MLP(in_dim=hidden_dim, out_dim=1 + hidden_dim, widths=(hidden_dim,))
        self.direction_encoding = SHEncoding(degree=4)
        self.color_mlp = MLP(
            in_dim=hidden_dim + self.direction_encoding.out_dim,
            out_dim=3,
            widths=(hidden_dim,),
            output_activation="sigmoid",
        )
        self._cache: tuple[Tensor, Tensor] | None = None

    def _load_from_state_dict(self, *args, **kwargs):
        self._table, self._cache = None, None  # stored points may change
        super()._load_from_state_dict(*args, **kwargs)

    def neighbours(self, positions: Tensor, points: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """[n_query, 3] -> (squared distances [n_query, k], indices [n_query, k]) into ``points``."""
        if points is not self.points:
            return tuple(t[0] for t in knn(positions[None], points[None], k))
        if self._table is None or self._table.device != points.device:
            lo, hi = points.amin(0), points.amax(0)
            pad = 0.05 * (hi - lo).clamp_min(1e-6)
            self._box = torch.stack([lo - pad, hi + pad])
            self._table = build_candidate_table(points, self._box, self.grid_resolution, self.n_candidates)
        return knn_from_candidates(positions, points, self._table, self._box, self.grid_resolution, k)

    def point_occupancy(self, positions: Tensor, points: Tensor | None = None) -> Tensor:
        """[*batch, 3] -> [*batch] ``exp(-d^2 / radius^2)`` of the nearest point (cheap sampling guide)."""
        sq, _ = self.neighbours(positions.reshape(-1, 3), self.points if points is None else points, 1)
        return torch.exp(-sq[:, 0] / (self.spacing * self.radius_scale) ** 2).reshape(positions.shape[:-1])

    def train(self, mode: bool = True) -> PointConditionedField:
        self._cache = None
        return super().train(mode)

    def encode(self, points: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(points [n_points, 3], features [n_points, feature_dim]); cached in eval mode for the stored points."""
        if points is not None:
            return points, self.encoder(points[None].float())[0]
        if not self.training and self._cache is not None:
            return self._cache
        feats = self.encoder(self.points[None])[0]
        if self.codes is not None:
            feats = feats + self.codes
        if not self.training:
            self._cache = (self.points, feats)
        return self.points, feats

    def query_encoded(self, positions: Tensor, viewdirs: Tensor | None, encoded: tuple[Tensor, Tensor]):
        """Density [*batch, 1] and (when ``viewdirs``) rgb [*batch, 3] at positions [*batch, 3]."""
        pts, feats = encoded
        shape = positions.shape[:-1]
        q = positions.reshape(-1, 3)
        sq, idx = self.neighbours(q, pts, self.k)  # [n_query, k]
        offsets = (q[:, None, :] - pts[idx]) / (self.spacing * self.radius_scale)
        h = self.neighbour_mlp(torch.cat([feats[idx], self.offset_encoding(offsets)], -1))
        h = (h * inverse_distance_weights(sq)[..., None]).sum(-2)  # [n_query, hidden]
        raw, geo = self.density_mlp(h).split([1, h.shape[-1]], -1)
        gate = torch.exp(-sq[:, :1] / (self.spacing * self.radius_scale) ** 2)
        density = (trunc_exp(raw - 1.0) * gate).reshape(*shape, 1)
        if viewdirs is None:
            return density, None
        rgb = self.color_mlp(torch.cat([geo, self.direction_encoding(viewdirs.reshape(-1, 3))], -1))
        return density, rgb.reshape(*shape, 3)

    def density(self, positions: Tensor) -> Tensor:
        return self.query_encoded(positions, None, self.encode())[0]

    def query(self, positions: Tensor, viewdirs: Tensor, context=None) -> tuple[Tensor, Tensor]:
        """``context={"points": [n, 3]}`` conditions on other points (encoded without per-point codes)."""
        positions, viewdirs = broadcast_inputs(positions, viewdirs, "PointConditionedField")
        points = context.get("points") if isinstance(context, dict) else None
        return self.query_encoded(positions, viewdirs, self.encode(points))
