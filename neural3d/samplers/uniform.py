"""Stratified sampling, uniform in depth or in inverse depth (``lindisp``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples


def stratified_spacing(
    n_rays: int, n_samples: int, *, jitter: bool, device=None, generator: torch.Generator | None = None
) -> Tensor:
    """Interval edges in normalised spacing s in [0, 1].

    Deterministic edges are ``linspace(0, 1, n_samples + 1)``. With ``jitter`` each edge is drawn
    uniformly between the midpoints of its neighbouring bins (nerfstudio's scheme), so every edge
    stays sorted and the expected edge equals the deterministic one.

    Returns:
        [n_rays, n_samples + 1] sorted spacing values.
    """
    bins = torch.linspace(0.0, 1.0, n_samples + 1, device=device).expand(n_rays, -1)
    if not jitter:
        return bins.contiguous()
    centers = 0.5 * (bins[:, 1:] + bins[:, :-1])
    upper = torch.cat([centers, bins[:, -1:]], dim=-1)
    lower = torch.cat([bins[:, :1], centers], dim=-1)
    u = torch.rand(bins.shape, device=device, generator=generator)
    return lower + (upper - lower) * u


def spacing_to_t(s: Tensor, nears: Tensor, fars: Tensor, lindisp: bool) -> Tensor:
    """Map spacing s in [0, 1] to ray parameter t.

    Args:
        s: [n_rays, k] spacing.
        nears, fars: [n_rays].
        lindisp: linear in inverse depth ``1/t`` instead of in ``t`` (needs ``nears > 0``).
    Returns:
        [n_rays, k] values of t.
    """
    n, f = nears[:, None], fars[:, None]
    if lindisp:
        return 1.0 / (1.0 / n * (1.0 - s) + 1.0 / f * s)
    return n * (1.0 - s) + f * s


class UniformSampler(nn.Module):
    """``n_samples`` contiguous intervals between each ray's near and far.

    Jittered (stratified) in training mode, deterministic in eval mode.
    """

    def __init__(self, *, n_samples: int, lindisp: bool = False) -> None:
        super().__init__()
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.n_samples = n_samples
        self.lindisp = lindisp

    def forward(self, rays: RayBundle) -> RaySamples:
        """[n_rays] rays -> [n_rays, n_samples] samples."""
        s = stratified_spacing(len(rays), self.n_samples, jitter=self.training, device=rays.device)
        t = spacing_to_t(s, rays.nears, rays.fars, self.lindisp)
        return RaySamples.from_edges(rays, t)
