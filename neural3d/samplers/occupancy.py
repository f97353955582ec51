"""The occupancy-grid sampler: grid state + marching + pruning, with a backend choice (torch | nerfacc).

Usage inside a method (see ``neural3d.methods.ngp.model``, sampler ``occupancy``), through the sampler
protocol (:mod:`neural3d.samplers.base`)::

    sampler = OccupancySampler(aabb=scene_box, resolution=128, step_size=0.005, update_every=16)
    sampler.step_begin(step, field)                    # refreshes the grid every update_every steps
    samples = sampler.sample(rays, density_fn=field.density)   # PackedRaySamples
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from neural3d.core.packing import packed_info_from_ray_indices
from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples
from neural3d.samplers import cpu_march, nerfacc_backend
from neural3d.samplers.base import DensityFn, Sampler, WeightedSamples, require
from neural3d.samplers.marching import march_rays, prune_samples
from neural3d.samplers.occupancy_grid import OccupancyGrid

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "cpu", "nerfacc")


class OccupancySampler(Sampler):
    """Occupancy-grid marching into packed samples.

    Protocol: ``step_begin(step, field)`` refreshes the grid from ``field.density`` every ``update_every``
    steps; ``sample(rays, density_fn=field.density) -> PackedRaySamples`` marches (stratified in training),
    prunes, and in training keeps at most ``target_samples`` samples: the rays left out are not in
    ``ray_subset`` and do not count in the colour loss (``supervise_skipped_rays = False``).

    Args:
        aabb: [2, 3] or [6] scene box (ray coordinates).
        resolution, levels: grid cells per axis, cascade levels.
        step_size: marching step in world units (0: box diagonal / 512).
        cone_angle: step growth with distance.
        threshold, decay, warmup_updates: grid update rule (see :class:`OccupancyGrid`).
        early_stop_eps, alpha_thre: pruning of marched samples by a gradient-free density pass.
        backend: ``auto`` (nerfacc's CUDA traversal on CUDA tensors when it is installed and builds; on the
            CPU the C kernel :mod:`~neural3d.samplers.cpu_march` for uniform steps when it builds; else torch),
            ``torch``, ``cpu`` or ``nerfacc`` (error if unavailable). All give the same samples.
        update_every: training steps between grid refreshes (``step_begin``).
        target_samples: training sample budget of ``sample`` (0: off), see :meth:`forward`.
        render_fused: models render without gradients through :func:`neural3d.render.inference.render_marched`
            with this sampler's march and pruning rule (a flag for them; ``sample`` does not change).
        render_color_eps: that render's colour tolerance (``color_eps``).
    """

    supervise_skipped_rays = False

    def __init__(
        self,
        *,
        aabb: Tensor,
        resolution: int = 128,
        levels: int = 1,
        step_size: float = 0.0,
        cone_angle: float = 0.0,
        threshold: float = 0.01,
        decay: float = 0.95,
        warmup_updates: int = 16,
        early_stop_eps: float = 1e-4,
        alpha_thre: float = 0.0,
        backend: str = "auto",
        update_every: int = 16,
        target_samples: int = 0,
        render_fused: bool = True,
        render_color_eps: float = 0.0,
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"marching backend must be one of {BACKENDS}, got '{backend}'")
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
        self.grid = OccupancyGrid(aabb=aabb, resolution=resolution, levels=levels, warmup_updates=warmup_updates)
        self.step_size = step_size if step_size > 0 else float(torch.linalg.norm(aabb[3:] - aabb[:3])) / 512
        self.cone_angle, self.threshold, self.decay = cone_angle, threshold, decay
        self.early_stop_eps, self.alpha_thre = early_stop_eps, alpha_thre
        self.backend = backend
        self.update_every, self.target_samples = update_every, target_samples
        self.render_fused, self.render_color_eps = render_fused, render_color_eps
        self.skip_empty = True  # march_rays' block test (the samples are the same without; for benchmarks)
        self._resolved: dict[str, str] = {}
        self._warned_empty = False

    def resolve_backend(self, device: torch.device) -> str:
        """The backend used for tensors on ``device`` (logged once per device type)."""
        key = device.type
        if key not in self._resolved:
            if self.backend == "torch":
                choice = "torch"
            elif self.backend == "nerfacc":
                nerfacc_backend.require(device)
                choice = "nerfacc"
            elif self.backend == "cpu":
                cpu_march.applies("cpu", device, torch.float32, self.cone_angle, self.grid)
                cpu_march.load_library()  # CpuKernelUnavailable (no compiler, failed build) now, not mid-training
                choice = "cpu"
            elif nerfacc_backend.usable(device):
                choice = "nerfacc"
            else:
                auto = cpu_march.applies("auto", device, torch.float32, self.cone_angle, self.grid)
                choice = "cpu" if auto else "torch"
            log.info("occupancy marching backend on %s: %s", key, choice)
            self._resolved[key] = choice
        return self._resolved[key]

    def update_grid(self, density_fn: Callable[[Tensor], Tensor]) -> None:
        """Refresh the grid from ``density_fn`` ([n, 3] positions -> [n, 1]); occupancy = density * step."""
        self.grid.update(lambda x: density_fn(x) * self.step_size, threshold=self.threshold, decay=self.decay)

    def step_begin(self, step: int, field=None) -> None:
        if step % self.update_every == 0 and field is not None:
            self.update_grid(field.density)

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> PackedRaySamples:
        """[n_rays] rays -> packed samples of the rays kept (``ray_subset`` set when the budget dropped some)."""
        budget = self.target_samples if self.training else 0
        density_fn = require(density_fn, "density_fn (pruning)", "OccupancySampler")
        samples, keep = self(rays, density_fn, training=self.training, budget=budget)
        return samples if keep is None else samples.select_rays(keep.nonzero()[:, 0])

    def march(self, rays: RayBundle, *, stratified: bool, use_grid: bool = True) -> PackedRaySamples:
        grid = self.grid if use_grid else None
        if self.resolve_backend(rays.device) == "nerfacc":
            return nerfacc_backend.march(
                rays,
                self.grid.aabbs,
                None if grid is None else grid.binaries,
                step_size=self.step_size,
                cone_angle=self.cone_angle,
                stratified=stratified,
            )
        return march_rays(
            rays,
            grid,
            step_size=self.step_size,
            cone_angle=self.cone_angle,
            stratified=stratified,
            aabb=self.grid.aabbs[-1],
            skip_empty=self.skip_empty,
            backend=self.resolve_backend(rays.device) if grid is not None else "torch",
        )

    def forward(
        self, rays: RayBundle, density_fn: Callable[[Tensor], Tensor], *, training: bool, budget: int = 0
    ) -> tuple[PackedRaySamples, Tensor | None]:
        """[n_rays] rays -> (packed samples, [n_rays] bool mask of the rays kept, or None for all).

        Samples are pruned by a gradient-free density pass when enabled. ``budget`` > 0 caps the marched
        samples before that pass by keeping a prefix of the (random) rays, as nerfacc's examples adapt
        their ray batch to a target sample count: the cost of a step stays bounded while the grid is
        still mostly occupied early in training.

        If the grid leaves a *training* batch without a single sample (bad box, density collapsed, grid
        never updated), this warns once and marches the batch as if every cell were occupied, so the
        field keeps receiving gradients instead of silently training on nothing.
        """
        samples = self.march(rays, stratified=training)
        if samples.n_samples == 0 and training and len(rays) > 0:
            if not self._warned_empty:
                warnings.warn(
                    f"occupancy grid leaves a whole training batch without samples (occupied fraction "
                    f"{self.grid.occupancy_fraction():.3g}, max occupancy {float(self.grid.occs.max()):.3g}); "
                    "marching every cell instead. Check the scene box and occ_threshold.",
                    stacklevel=2,
                )
                self._warned_empty = True
            samples = self.march(rays, stratified=True, use_grid=False)
        keep = None
        if budget > 0:
            samples, keep = self.limit_samples(samples, budget)
        pruned = prune_samples(samples, density_fn, early_stop_eps=self.early_stop_eps, alpha_thre=self.alpha_thre)
        return pruned, keep

    @staticmethod
    def limit_samples(samples: PackedRaySamples, budget: int) -> tuple[PackedRaySamples, Tensor | None]:
        """Keep the longest prefix of rays whose samples fit in ``budget`` (rays are random in training).

        Returns:
            (samples of the kept rays, [n_rays] bool kept-ray mask), or (samples, None) if all fit.
        """
        if samples.n_samples <= budget:
            return samples, None
        cum = torch.cumsum(samples.packed_info[:, 1], 0)
        keep_rays = cum <= budget
        keep_rays[0] = True  # at least one ray
        keep = keep_rays[samples.ray_indices]
        ri = samples.ray_indices[keep]
        return PackedRaySamples(
            samples.rays, samples.starts[keep], samples.ends[keep], ri, packed_info_from_ray_indices(ri, samples.n_rays)
        ), keep_rays
