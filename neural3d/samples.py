"""Samples along rays: the :class:`RaySamples` container.

Samples are intervals ``[starts, ends]`` in units of the ray parameter ``t``; fields are evaluated at
interval midpoints, renderers use interval lengths. Layout is batched (padded): [n_rays, n_samples].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neural3d.rays import RayBundle


@dataclass
class RaySamples:
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
    def mids(self) -> Tensor:
        """[n_rays, n_samples] interval midpoints (where fields are evaluated)."""
        return 0.5 * (self.starts + self.ends)

    @property
    def deltas(self) -> Tensor:
        """[n_rays, n_samples] interval lengths in ``t`` units."""
        return self.ends - self.starts

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

    def select(self, index: Tensor) -> "RaySamples":
        """The samples of a subset of rays (``index``: [k] int64 or [n_rays] bool)."""
        return RaySamples(self.rays[index], self.starts[index], self.ends[index])

    @staticmethod
    def from_edges(rays: RayBundle, edges: Tensor) -> "RaySamples":
        """Contiguous intervals from sorted edges [n_rays, n_samples + 1]."""
        return RaySamples(rays, edges[:, :-1], edges[:, 1:])
