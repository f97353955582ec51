"""Hierarchical (importance) sampling by inverting a piecewise-constant PDF along each ray."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neural3d.core.samples import RaySamples


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


class PDFSampler(nn.Module):
    """Resample rays where coarse compositing weights are large (NeRF's hierarchical sampling)."""

    def __init__(self, *, n_samples: int, include_input: bool = True, padding: float = 1e-5) -> None:
        super().__init__()
        self.n_samples = n_samples
        self.include_input = include_input
        self.padding = padding

    def forward(self, samples: RaySamples, weights: Tensor) -> RaySamples:
        """Coarse samples [n_rays, n] and their weights [n_rays, n] -> fine samples.

        Returns ``n_samples`` intervals (``n_samples + 1`` new edges), merged with the coarse edges
        when ``include_input`` (``n + n_samples + 1`` intervals).
        """
        bins = samples.edges
        edges = sample_pdf(bins, weights, self.n_samples + 1, jitter=self.training, padding=self.padding)
        if self.include_input:
            edges, _ = torch.sort(torch.cat([bins, edges], dim=-1), dim=-1)
        return RaySamples.from_edges(samples.rays, edges)
