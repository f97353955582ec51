"""Depth samples of GNT: stratified point samples (in depth or inverse depth) and fine samples.

GNT evaluates its network at points, not intervals: ``z_j`` for ``j = 0..N-1`` spans [near, far]
including both ends, evenly in depth or (``lindisp``) in inverse depth
``z_j = 1 / (1/near + j (1/far - 1/near) / (N - 1))``. In training each point is jittered uniformly
between the midpoints to its neighbours. Fine samples are drawn from the ray transformer's attention
weights (official ``sample_fine_pts``) and merged, sorted, with the coarse ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.samplers.base import DensityFn, Sampler, WeightedSamples, require


def depth_samples(
    nears: Tensor,
    fars: Tensor,
    n_samples: int,
    *,
    lindisp: bool,
    jitter: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """[n_rays] bounds -> [n_rays, n_samples] sorted depths ``t`` (z-depth for unnormalised directions)."""
    if n_samples < 2:
        raise ValueError(f"GNT depth_samples: n_samples must be >= 2, got {n_samples}")
    j = torch.arange(n_samples, dtype=nears.dtype, device=nears.device)
    n, f = nears[:, None], fars[:, None]
    if lindisp:
        if bool((nears <= 0).any()):
            raise ValueError("GNT depth_samples: lindisp needs near > 0 (set data.near or model.lindisp=false)")
        z = 1.0 / (1.0 / n + j * ((1.0 / f - 1.0 / n) / (n_samples - 1)))
    else:
        z = n + j * ((f - n) / (n_samples - 1))
    if jitter:
        mids = 0.5 * (z[:, 1:] + z[:, :-1])
        upper = torch.cat([mids, z[:, -1:]], -1)
        lower = torch.cat([z[:, :1], mids], -1)
        u = torch.rand(z.shape, dtype=z.dtype, device=z.device, generator=generator)
        z = lower + (upper - lower) * u
    return z


def sample_pdf_points(
    bins: Tensor, weights: Tensor, n_samples: int, *, det: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Inverse-CDF samples (official ``sample_pdf``: weights + 1e-5, linear within a bin).

    Args:
        bins: [n_rays, M + 1] sorted bin edges.
        weights: [n_rays, M] non-negative.
        det: ``linspace(0, 1)`` instead of uniform random ``u``.
    Returns:
        [n_rays, n_samples].
    """
    w = weights + 1e-5
    cdf = torch.cumsum(w / w.sum(-1, keepdim=True), -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)  # [n_rays, M + 1]
    if det:
        u = torch.linspace(0.0, 1.0, n_samples, dtype=bins.dtype, device=bins.device).expand(bins.shape[0], -1)
    else:
        u = torch.rand(bins.shape[0], n_samples, dtype=bins.dtype, device=bins.device, generator=generator)
    u = u.contiguous()
    above = torch.searchsorted(cdf[:, :-1].contiguous(), u, right=True)  # count of cdf_i <= u, i < M
    below = (above - 1).clamp_min(0)
    c0, c1 = cdf.gather(1, below), cdf.gather(1, above)
    b0, b1 = bins.gather(1, below), bins.gather(1, above)
    denom = c1 - c0
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    return b0 + (u - c0) / denom * (b1 - b0)


def fine_depth_samples(
    z: Tensor, weights: Tensor, n_fine: int, *, lindisp: bool, det: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Coarse depths [n_rays, S] and weights [n_rays, S] -> sorted [n_rays, S + n_fine] depths."""
    weights = weights.detach()[:, 1:-1]
    if lindisp:
        inv = 1.0 / z
        mids = 0.5 * (inv[:, 1:] + inv[:, :-1])
        extra = 1.0 / sample_pdf_points(mids.flip(1), weights.flip(1), n_fine, det=det, generator=generator)
    else:
        mids = 0.5 * (z[:, 1:] + z[:, :-1])
        extra = sample_pdf_points(mids, weights, n_fine, det=det, generator=generator)
    return torch.sort(torch.cat([z, extra.detach()], -1), -1).values


class PointSampler(Sampler):
    """GNT's coarse point samples behind the sampler protocol: ``sample(rays) -> RaySamples`` with ``starts == ends``.

    Args:
        n_samples: points per ray in training (and in eval unless ``n_samples_eval`` > 0).
        n_samples_eval: points per ray in eval mode (0: ``n_samples``).
        lindisp: even in inverse depth (official ``inv_uniform``).
    """

    def __init__(self, *, n_samples: int, n_samples_eval: int = 0, lindisp: bool = True) -> None:
        super().__init__()
        self.n_samples, self.n_samples_eval, self.lindisp = n_samples, n_samples_eval, lindisp

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> RaySamples:
        n = self.n_samples if self.training or self.n_samples_eval <= 0 else self.n_samples_eval
        z = depth_samples(rays.nears, rays.fars, n, lindisp=self.lindisp, jitter=self.training)
        return RaySamples(rays, z, z)


class FinePointSampler(Sampler):
    """GNT's fine points: ``sample(rays, prior=WeightedSamples(coarse points, attention weights))`` -> the coarse
    points and ``n_fine`` more drawn from the weights, sorted (``starts == ends``). Random in training only."""

    def __init__(self, *, n_fine: int, lindisp: bool = True) -> None:
        super().__init__()
        self.n_fine, self.lindisp = n_fine, lindisp

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> RaySamples:
        prior = require(prior, "prior (coarse points and weights)", "FinePointSampler")
        z = fine_depth_samples(
            prior.samples.starts, prior.weights, self.n_fine, lindisp=self.lindisp, det=not self.training
        )
        return RaySamples(rays, z, z)
