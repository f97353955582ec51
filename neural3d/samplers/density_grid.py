"""Importance sampling guided by a dense grid of the field's own density (cheap proposal).

A :class:`DensityGrid` caches the field's density on a ``resolution^3`` grid over the field's unit
cube and refreshes it every few steps (``grid = max(decay * grid, new)``, as instant-ngp does for its
occupancy grid). :class:`GridImportanceSampler` evaluates that grid (trilinear lookups, no network) at
``n_coarse`` stratified samples per ray, composites weights from it and draws the ``n_samples``
intervals where the field is evaluated with gradients. Occupancy-grid *marching* with packed samples
lives in the ray-marching module; this sampler keeps the batched [n_rays, n_samples] layout.
:class:`GridSampler` is the two behind the sampler protocol (:mod:`neural3d.samplers.base`), with the
refresh schedule and the empty-grid fallback.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.fields.contraction import normalize_positions
from neural3d.render.volume import render_weights_from_density
from neural3d.samplers.base import DensityFn, Sampler, WeightedSamples
from neural3d.samplers.grid_update import ema_max_update_, select_cells
from neural3d.samplers.pdf import PDFSampler
from neural3d.samplers.uniform import UniformSampler


class DensityGrid(nn.Module):
    """Cached density on a [R, R, R] grid over the unit cube [0, 1]^3 (cell centres at (i + 0.5) / R).

    Args:
        resolution: cells per axis ``R``.
        decay: multiplier applied to the cached values at every update after warm-up.
        update_fraction: fraction of cells re-evaluated per update after warm-up.
        warmup_updates: the first updates evaluate every cell and *replace* its value, so the empty
            space the field learns early is cleared at once rather than decaying away.
    """

    def __init__(
        self, *, resolution: int = 64, decay: float = 0.95, update_fraction: float = 0.25, warmup_updates: int = 16
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.decay = decay
        self.update_fraction = update_fraction
        self.warmup_updates = warmup_updates
        self.register_buffer("values", torch.zeros(resolution, resolution, resolution))
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, unit_density: Callable[[Tensor], Tensor], chunk: int = 65536) -> None:
        """Re-evaluate cells at a random point inside each.

        During warm-up every cell is evaluated and replaced; afterwards a random ``update_fraction`` of
        the cells is evaluated and ``values = max(decay * values, new)``, every cell decaying (instant-ngp's
        rule, :mod:`neural3d.samplers.grid_update`).

        Args:
            unit_density: [n, 3] unit-cube coordinates -> [n, 1] density.
        """
        R = self.resolution
        warmup = int(self.n_updates) < max(self.warmup_updates, 1)
        cells = select_cells(R**3, warmup=warmup, fraction=self.update_fraction, device=self.values.device)
        ijk = torch.stack([cells // (R * R), (cells // R) % R, cells % R], dim=-1).float()  # (z, y, x) order
        x = (ijk.flip(-1) + torch.rand_like(ijk)) / R  # [n, 3] as (x, y, z)
        new = torch.cat([unit_density(c)[:, 0] for c in x.split(chunk)]).to(self.values.dtype)
        ema_max_update_(self.values, cells, new, replace=warmup, decay=self.decay, decay_all=True)
        self.n_updates += 1

    def lookup(self, x: Tensor) -> Tensor:
        """Trilinear density at unit-cube coordinates ``x`` [*batch, 3] -> [*batch] (0 outside the cube)."""
        shape = x.shape[:-1]
        grid = (x.reshape(1, 1, 1, -1, 3) * 2.0 - 1.0).to(self.values.dtype)
        out = F.grid_sample(self.values[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.reshape(shape)


class GridImportanceSampler(nn.Module):
    """Samples spread evenly over the occupied part of each ray, as occupancy-grid marching does.

    ``n_coarse`` stratified points per ray look up a :class:`DensityGrid`; bins whose density exceeds
    ``threshold`` are occupied and ``n_samples`` intervals are drawn uniformly over them (inverse CDF of
    the occupancy indicator). Unlike weighting by the grid's own transmittance, this does not trust
    the (lagging) grid about *where* the surface is inside an occupied segment, only about where empty
    space is, which keeps the grid and the field from running away together.

    With ``weighting="density"`` the bins are weighted by the compositing weights of the grid's own
    densities instead (a coarse NeRF pass made of grid lookups): samples gather where the cached
    density says the visible surface is. That suits scenes whose density is nowhere below the
    threshold (forward-facing NDC scenes early in training), at the cost of trusting the lagging grid;
    keep ``n_uniform`` > 0 so the field still sees the rest of the ray.

    Args:
        n_coarse: grid lookups per ray.
        n_samples: intervals drawn over the occupied bins per ray.
        n_uniform: extra stratified intervals per ray merged in, so density the grid does not know
            about (hash collisions, floaters) is still seen and pushed down.
        threshold: grid density above which a bin is occupied.
        lindisp: coarse samples linear in inverse depth.
        weighting: ``occupancy`` (uniform over occupied bins) or ``density`` (grid compositing weights).

    The field runs on ``n_samples + n_uniform + 1`` intervals per ray (``n_samples`` if ``n_uniform`` is 0).
    """

    def __init__(
        self,
        *,
        n_coarse: int,
        n_samples: int,
        n_uniform: int = 8,
        threshold: float = 0.01,
        lindisp: bool = False,
        weighting: str = "occupancy",
    ) -> None:
        super().__init__()
        if weighting not in ("occupancy", "density"):
            raise ValueError(f"density_grid.py: weighting must be 'occupancy' or 'density', got {weighting!r}")
        self.threshold = threshold
        self.weighting = weighting
        self.uniform = UniformSampler(n_samples=n_coarse, lindisp=lindisp)
        self.pdf = PDFSampler(n_samples=n_samples, include_input=False)
        self.extra = UniformSampler(n_samples=n_uniform, lindisp=lindisp) if n_uniform > 0 else None

    def forward(
        self, rays: RayBundle, grid: DensityGrid, to_unit: Callable[[Tensor], Tensor]
    ) -> tuple[RaySamples, Tensor]:
        """[n_rays] rays -> ([n_rays, n_samples'] samples, [n_rays] bool: the ray meets occupied space).

        Args:
            grid: the density cache.
            to_unit: maps world positions [*batch, 3] to the grid's unit cube.
        """
        coarse = self.uniform(rays)
        with torch.no_grad():
            density = grid.lookup(to_unit(coarse.positions))  # [n_rays, n_coarse]
            occupied = density > self.threshold
            if self.weighting == "density":
                weights = render_weights_from_density(density * occupied, coarse.distances)
            else:
                weights = occupied.to(coarse.starts.dtype) * coarse.deltas
        samples = self.pdf(coarse, weights)
        if self.extra is not None:
            edges, _ = torch.sort(torch.cat([samples.edges, self.extra(rays).edges], dim=-1), dim=-1)
            samples = RaySamples.from_edges(rays, edges)
        return samples, occupied.any(dim=-1)


class GridSampler(Sampler):
    """The density-grid strategy: a :class:`DensityGrid` over the field's unit cube + :class:`GridImportanceSampler`.

    ``step_begin(step, field)`` refreshes the grid from ``field.unit_density`` every ``update_every`` steps.
    ``sample(rays) -> RaySamples`` of the rays that meet occupied space, with ``ray_subset`` their indices
    (the others show the background and still count in the colour loss). If the grid marks a whole
    *training* batch empty (bad box, threshold too high, density collapsed) it warns once and samples every
    ray, so the field keeps receiving gradients.

    Args:
        aabb, contraction: the field's box and contraction (the grid lives in its unit cube).
        resolution, decay, warmup_updates: the :class:`DensityGrid`.
        update_every: training steps between grid refreshes.
        n_coarse, n_samples, n_uniform, threshold, lindisp, weighting: the :class:`GridImportanceSampler`.
    """

    def __init__(
        self,
        *,
        aabb: Tensor,
        contraction: str = "aabb",
        resolution: int = 64,
        update_every: int = 16,
        decay: float = 0.9,
        warmup_updates: int = 16,
        n_coarse: int = 128,
        n_samples: int = 32,
        n_uniform: int = 8,
        threshold: float = 0.01,
        lindisp: bool = False,
        weighting: str = "occupancy",
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3), persistent=False)
        self.contraction, self.update_every = contraction, update_every
        self.grid = DensityGrid(resolution=resolution, decay=decay, warmup_updates=warmup_updates)
        self.importance = GridImportanceSampler(
            n_coarse=n_coarse,
            n_samples=n_samples,
            n_uniform=n_uniform,
            threshold=threshold,
            lindisp=lindisp,
            weighting=weighting,
        )
        self._warned_empty = False

    def step_begin(self, step: int, field: nn.Module | None = None) -> None:
        if step % self.update_every == 0 and field is not None:
            self.grid.update(field.unit_density)

    def to_unit(self, positions: Tensor) -> Tensor:
        """[*batch, 3] world positions -> [*batch, 3] the grid's unit-cube coordinates."""
        return normalize_positions(positions, self.aabb, self.contraction)

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> RaySamples:
        """[n_rays] rays -> [k, n_samples'] samples of the k rays meeting occupied space (``ray_subset`` [k])."""
        samples, hit = self.importance(rays, self.grid, self.to_unit)
        active = hit.nonzero()[:, 0]
        if active.numel() == 0 and self.training:
            if not self._warned_empty:
                warnings.warn(
                    f"density grid marks every ray of the batch empty (model.sampler.threshold="
                    f"{self.importance.threshold}, max cached density {float(self.grid.values.max()):.3g});"
                    " training on all rays instead. Check the scene box / model.sampler.threshold.",
                    stacklevel=2,
                )
                self._warned_empty = True
            active = torch.arange(len(rays), device=rays.device)
        subset = samples.select(active)
        subset.ray_subset = active
        return subset
