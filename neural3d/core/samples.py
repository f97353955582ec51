"""Samples along rays: the :class:`RaySamples` (padded) and :class:`PackedRaySamples` containers.

Samples are intervals ``[starts, ends]`` in units of the ray parameter ``t``; fields are evaluated at
interval midpoints, renderers use interval lengths in world units (:attr:`distances`, both layouts).
:class:`RaySamples` is batched (padded): [n_rays, n_samples]; :class:`PackedRaySamples` is flat with
``ray_indices`` / ``packed_info`` (:mod:`neural3d.core.packing`).

A sampler that skips rays (no occupied space on them, or a per-step sample budget) returns samples of the
rays it kept and records which they were in ``ray_subset`` ([k] int64 rows of the bundle it was given).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neural3d.core.packing import packed_info_from_ray_indices, pad_packed
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
        ray_subset: optional [n_rays] int64: row ``i`` samples ray ``ray_subset[i]`` of the bundle the sampler
            was given (set by samplers that skip rays; None: row ``i`` is ray ``i``).
    """

    rays: RayBundle
    starts: Tensor
    ends: Tensor
    ray_subset: Tensor | None = None

    @property
    def n_rays(self) -> int:
        return self.starts.shape[0]

    @property
    def distances(self) -> Tensor:
        """[n_rays, n_samples] interval lengths in world units (``t`` lengths times ``|direction|``)."""
        return self.deltas * torch.linalg.norm(self.rays.directions, dim=-1, keepdim=True)

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
        """The samples of a subset of rays (``index``: [k] int64 or [n_rays] bool); ``ray_subset`` is not set."""
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
        ray_subset: optional [n_rays] int64: ray ``i`` here is ray ``ray_subset[i]`` of the bundle the sampler
            was given (set by samplers that skip rays; None: all rays, in order).
    """

    rays: RayBundle
    starts: Tensor
    ends: Tensor
    ray_indices: Tensor
    packed_info: Tensor
    ray_subset: Tensor | None = None

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
        return self.deltas * torch.linalg.norm(self.rays.directions, dim=-1).index_select(0, self.ray_indices)

    @property
    def positions(self) -> Tensor:
        """[n_samples, 3] positions ``o + t d`` at the midpoints."""
        ri = self.ray_indices
        return self.rays.origins.index_select(0, ri) + self.mids[:, None] * self.rays.directions.index_select(0, ri)

    @property
    def viewdirs(self) -> Tensor:
        """[n_samples, 3] unit viewing directions."""
        return self.rays.viewdirs.index_select(0, self.ray_indices)

    def mask(self, keep: Tensor) -> PackedRaySamples:
        """Keep the samples where ``keep`` [n_samples] bool is true (rays are kept, counts shrink)."""
        return self.take(keep.nonzero()[:, 0])

    def take(self, index: Tensor) -> PackedRaySamples:
        """Keep the samples ``index`` ([k] increasing int64; rays are kept, counts shrink).

        ``index_select`` rather than boolean or advanced indexing: the same values, several times faster on a CPU.
        """
        ri = self.ray_indices.index_select(0, index)
        return PackedRaySamples(
            self.rays,
            self.starts.index_select(0, index),
            self.ends.index_select(0, index),
            ri,
            packed_info_from_ray_indices(ri, self.n_rays),
            self.ray_subset,
        )

    def select_rays(self, index: Tensor) -> PackedRaySamples:
        """The samples of rays ``index`` ([k] sorted int64), re-indexed to ``0..k-1``, with ``ray_subset = index``."""
        remap = torch.full((self.n_rays,), -1, dtype=torch.long, device=index.device)
        remap[index] = torch.arange(len(index), device=index.device)
        keep = remap[self.ray_indices] >= 0
        ri = remap[self.ray_indices[keep]]
        return PackedRaySamples(
            self.rays[index],
            self.starts[keep],
            self.ends[keep],
            ri,
            packed_info_from_ray_indices(ri, len(index)),
            index,
        )

    def to_padded(self, fill_value: float | None = None) -> tuple[RaySamples, Tensor]:
        """Batched view: ([n_rays, max_count] RaySamples, [n_rays, max_count] bool validity mask).

        Padding intervals are empty (``start = end``) at the ray's last end (or ``fill_value``).
        """
        valid = pad_packed(torch.ones_like(self.starts, dtype=torch.bool), self.ray_indices, self.packed_info, False)
        ends = pad_packed(self.ends, self.ray_indices, self.packed_info, 0.0)
        last = ends.max(dim=-1, keepdim=True).values if fill_value is None else torch.full_like(ends[:, :1], fill_value)
        starts = torch.where(valid, pad_packed(self.starts, self.ray_indices, self.packed_info, 0.0), last)
        ends = torch.where(valid, ends, last)
        return RaySamples(self.rays, starts, ends), valid

    @staticmethod
    def from_padded(samples: RaySamples, valid: Tensor | None = None) -> PackedRaySamples:
        """Pack batched samples (optionally only where ``valid`` [n_rays, n_samples] is true)."""
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
