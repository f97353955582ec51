"""Hierarchical (importance) sampling by inverting a piecewise-constant PDF along each ray."""

from __future__ import annotations

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.render.volume import render_weights_from_density
from neural3d.samplers.base import DensityFn, Sampler, WeightedSamples, require
from neural3d.samplers.uniform import UniformSampler


def sample_pdf(
    bins: Tensor,
    weights: Tensor,
    n_samples: int,
    *,
    jitter: bool,
    padding: float = 1e-5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw sorted samples from the piecewise-constant PDF given by ``weights`` over ``bins``.

    The PDF on bin i is proportional to ``weights[i] + padding`` (1e-5 as the original NeRF; a ray with zero weight
    samples uniformly), the CDF is piecewise linear, and it is inverted with ``searchsorted``. Deterministic
    mode uses ``u = linspace(0, 1, n_samples)``; jitter mode stratifies u in ``n_samples`` strata.

    Args:
        bins: [n_rays, n_bins + 1] sorted bin edges.
        weights: [n_rays, n_bins] non-negative weights (need not be normalised; not modified).
        n_samples: number of samples per ray.
    Returns:
        [n_rays, n_samples] sorted samples inside [bins[:, 0], bins[:, -1]].
    """
    w = weights.detach() + padding
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1).clamp(max=1.0)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # [n_rays, n_bins + 1]
    n_rays = bins.shape[0]
    if jitter:
        u = (
            torch.arange(n_samples, device=bins.device, dtype=bins.dtype)
            + torch.rand(n_rays, n_samples, device=bins.device, generator=generator)
        ) / n_samples
    else:
        u = torch.linspace(0.0, 1.0, n_samples, device=bins.device, dtype=bins.dtype).expand(n_rays, -1)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    above = idx.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    denom = cdf_hi - cdf_lo
    frac = torch.where(denom > 1e-12, (u - cdf_lo) / denom.clamp_min(1e-12), torch.zeros_like(u))
    return (bin_lo + frac * (bin_hi - bin_lo)).detach()


class PDFSampler(Sampler):
    """Resample rays where coarse compositing weights are large (NeRF's hierarchical sampling).

    ``sample(rays, prior=WeightedSamples(coarse, weights)) -> RaySamples``; ``sampler(coarse, weights)`` is
    the same call.

    Args:
        n_samples: intervals drawn per ray (``n_samples + 1`` edges).
        include_input: merge the drawn edges with the prior's edges.
        padding: added to the weights before normalising (a ray with zero weight samples uniformly).
        eval_seed: None: deterministic ``u = linspace(0, 1)`` in eval mode (NeRF). An int: stratified jitter
            in eval mode too, from a generator seeded with it on every call (deterministic renders with the
            training distribution of samples; the point field uses it).
    """

    def __init__(
        self, *, n_samples: int, include_input: bool = True, padding: float = 1e-5, eval_seed: int | None = None
    ) -> None:
        super().__init__()
        self.n_samples = n_samples
        self.include_input = include_input
        self.padding = padding
        self.eval_seed = eval_seed

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> RaySamples:
        """Draw from ``prior`` (coarse samples of ``rays`` and their weights); see :meth:`forward`."""
        prior = require(prior, "prior (coarse samples and weights)", "PDFSampler")
        return self(prior.samples, prior.weights)

    def forward(self, samples: RaySamples, weights: Tensor) -> RaySamples:
        """Coarse samples [n_rays, n] and their weights [n_rays, n] -> fine samples.

        Returns ``n_samples`` intervals (``n_samples + 1`` new edges), merged with the coarse edges
        when ``include_input`` (``n + n_samples + 1`` intervals).
        """
        bins = samples.edges
        jitter, generator = self.training, None
        if not self.training and self.eval_seed is not None:
            jitter, generator = True, torch.Generator(device=weights.device).manual_seed(self.eval_seed)
        edges = sample_pdf(bins, weights, self.n_samples + 1, jitter=jitter, padding=self.padding, generator=generator)
        if self.include_input:
            edges, _ = torch.sort(torch.cat([bins, edges], dim=-1), dim=-1)
        return RaySamples.from_edges(samples.rays, edges)


class ImportanceSampler(Sampler):
    """Stratified samples, scored by a gradient-free pass of the density, then resampled by their weights.

    NeRF's hierarchical sampling with one field: ``n_coarse`` stratified intervals, the compositing weights
    of ``density_fn`` on them (no gradient), and ``n_samples`` intervals drawn from those weights, merged
    with the coarse edges when ``include_coarse`` (``n_coarse + n_samples + 1`` intervals).

    ``sample(rays, density_fn=field.density) -> RaySamples``.
    """

    def __init__(self, *, n_coarse: int, n_samples: int, include_coarse: bool = False, lindisp: bool = False):
        super().__init__()
        self.coarse = UniformSampler(n_samples=n_coarse, lindisp=lindisp)
        self.fine = PDFSampler(n_samples=n_samples, include_input=include_coarse)

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> RaySamples:
        coarse = self.coarse.sample(rays)
        return self.fine(coarse, density_weights(coarse, require(density_fn, "density_fn", "ImportanceSampler")))


@torch.no_grad()
def density_weights(samples: RaySamples, density_fn: DensityFn) -> Tensor:
    """[n_rays, n_samples] compositing weights of ``density_fn`` on ``samples`` (gradient-free)."""
    return render_weights_from_density(density_fn(samples.positions)[..., 0], samples.distances)
