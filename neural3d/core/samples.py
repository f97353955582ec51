"""Samples along rays: the :class:`RaySamples` container.

Samples are intervals ``[starts, ends]`` in units of the ray parameter ``t``; fields are evaluated at
interval midpoints, renderers use interval lengths. Layout is batched (padded): [n_rays, n_samples].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle


class _Intervals:
    """Midpoints and lengths of ``[starts, ends]`` intervals (any layout)."""

    starts: Tensor
    ends: Tensor

    @property
    def mids(self) -> Tensor:
        """Interval midpoints (where fields are evaluated), shaped like ``starts``."""
        return 0.5 * (self.starts + self.ends)

    @property
    def deltas(self) -> Tensor:
        """Interval lengths in ``t`` units, shaped like ``starts``."""
        return self.ends - self.starts


@dataclass
class RaySamples(_Intervals):
    """Intervals along a flat bundle of rays.

    Attributes:
        rays: [n_rays] RayBundle.
        starts: [n_rays, n_samples] interval starts (sorted along the last axis).
        ends: [n_rays, n_samples] interval ends (``ends >= starts``).
    """

    rays: RayBundle
    starts: Tensor
    ends: Tensor

    @property
    def n_rays(self) -> int:
        return self.starts.shape[0]

    @property
    def n_samples(self) -> int:
        return self.starts.shape[-1]

    @property
    def positions(self) -> Tensor:
        """[n_rays, n_samples, 3] sample positions ``o + t d`` at the midpoints."""
        return self.rays.origins[:, None, :] + self.mids[..., None] * self.rays.directions[:, None, :]

    @property
    def viewdirs(self) -> Tensor:
        """[n_rays, n_samples, 3] unit viewing directions."""
        return self.rays.viewdirs[:, None, :].expand(-1, self.n_samples, -1)

    @property
    def edges(self) -> Tensor:
        """[n_rays, n_samples + 1] interval edges, valid when the intervals are contiguous."""
        return torch.cat([self.starts, self.ends[:, -1:]], dim=-1)

    def select(self, index: Tensor) -> RaySamples:
        """The samples of a subset of rays (``index``: [k] int64 or [n_rays] bool)."""
        return RaySamples(self.rays[index], self.starts[index], self.ends[index])

    @staticmethod
    def from_edges(rays: RayBundle, edges: Tensor) -> RaySamples:
        """Contiguous intervals from sorted edges [n_rays, n_samples + 1]."""
        return RaySamples(rays, edges[:, :-1], edges[:, 1:])


@dataclass
class PackedRaySamples(_Intervals):
    """Intervals along rays in the packed layout: a variable number of samples per ray, stored flat.

    Attributes:
        rays: [n_rays] RayBundle.
        starts: [n_samples] interval starts in ``t`` units, ray after ray, sorted within each ray.
        ends: [n_samples] interval ends.
        ray_indices: [n_samples] int64 ray of each sample (non-decreasing).
        packed_info: [n_rays, 2] int64 ``(start, count)`` of each ray's run (count 0: no samples).
    """

    rays: RayBundle
    starts: Tensor
    ends: Tensor
    ray_indices: Tensor
    packed_info: Tensor

    @property
    def n_rays(self) -> int:
        return self.packed_info.shape[0]

    @property
    def n_samples(self) -> int:
        """Total number of samples (all rays)."""
        return self.starts.shape[0]

    @property
    def distances(self) -> Tensor:
        """[n_samples] interval lengths in world units (``t`` times ``|direction|``)."""
        return self.deltas * torch.linalg.norm(self.rays.directions, dim=-1)[self.ray_indices]

    @property
    def positions(self) -> Tensor:
        """[n_samples, 3] positions ``o + t d`` at the midpoints."""
        ri = self.ray_indices
        return self.rays.origins[ri] + self.mids[:, None] * self.rays.directions[ri]

    @property
    def viewdirs(self) -> Tensor:
        """[n_samples, 3] unit viewing directions."""
        return self.rays.viewdirs[self.ray_indices]

    def mask(self, keep: Tensor) -> PackedRaySamples:
        """Keep the samples where ``keep`` [n_samples] bool is true (rays are kept, counts shrink)."""
        from neural3d.render.scan import packed_info_from_ray_indices

        ri = self.ray_indices[keep]
        return PackedRaySamples(
            self.rays, self.starts[keep], self.ends[keep], ri, packed_info_from_ray_indices(ri, self.n_rays)
        )

    def to_padded(self, fill_value: float | None = None) -> tuple[RaySamples, Tensor]:
        """Batched view: ([n_rays, max_count] RaySamples, [n_rays, max_count] bool validity mask).

        Padding intervals are empty (``start = end``) at the ray's last end (or ``fill_value``).
        """
        from neural3d.render.scan import pad_packed

        valid = pad_packed(torch.ones_like(self.starts, dtype=torch.bool), self.ray_indices, self.packed_info, False)
        ends = pad_packed(self.ends, self.ray_indices, self.packed_info, 0.0)
        last = ends.max(dim=-1, keepdim=True).values if fill_value is None else torch.full_like(ends[:, :1], fill_value)
        starts = torch.where(valid, pad_packed(self.starts, self.ray_indices, self.packed_info, 0.0), last)
        ends = torch.where(valid, ends, last)
        return RaySamples(self.rays, starts, ends), valid

    @staticmethod
    def from_padded(samples: RaySamples, valid: Tensor | None = None) -> PackedRaySamples:
        """Pack batched samples (optionally only where ``valid`` [n_rays, n_samples] is true)."""
        from neural3d.render.scan import packed_info_from_ray_indices

        if valid is None:
            valid = torch.ones_like(samples.starts, dtype=torch.bool)
        ray_idx = torch.arange(samples.n_rays, device=valid.device)[:, None].expand_as(valid)[valid]
        return PackedRaySamples(
            samples.rays,
            samples.starts[valid],
            samples.ends[valid],
            ray_idx,
            packed_info_from_ray_indices(ray_idx, samples.n_rays),
        )
