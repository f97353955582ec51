"""Stratified sampling, uniform in depth or in inverse depth (``lindisp``)."""

from __future__ import annotations

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.samplers.base import DensityFn, Sampler, WeightedSamples
from neural3d.samplers.spacing import spacing_to_t, stratified_spacing

__all__ = ["UniformSampler", "spacing_to_t", "stratified_spacing"]


class UniformSampler(Sampler):
    """``n_samples`` contiguous intervals between each ray's near and far.

    Jittered (stratified) in training mode, deterministic in eval mode. ``sample(rays) -> RaySamples``
    [n_rays, n_samples] (``density_fn`` and ``prior`` are not used); calling the module is the same.
    """

    def __init__(self, *, n_samples: int, lindisp: bool = False) -> None:
        super().__init__()
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.n_samples = n_samples
        self.lindisp = lindisp

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> RaySamples:
        """[n_rays] rays -> [n_rays, n_samples] samples."""
        s = stratified_spacing(len(rays), self.n_samples, jitter=self.training, device=rays.device)
        t = spacing_to_t(s, rays.nears, rays.fars, "lindisp" if self.lindisp else "uniform")
        return RaySamples.from_edges(rays, t)

    def forward(self, rays: RayBundle) -> RaySamples:
        return self.sample(rays)
