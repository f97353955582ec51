r"""Emission-absorption volume rendering as pure tensor functions (batched [n_rays, n_samples] layout).

For intervals of length :math:`\delta_i` along a ray with densities :math:`\sigma_i`:

.. math::
    \alpha_i = 1 - \exp(-\sigma_i \delta_i), \quad
    T_i = \prod_{j<i} (1 - \alpha_j) = \exp\Big(-\sum_{j<i} \sigma_j \delta_j\Big), \quad
    w_i = T_i \alpha_i.

``deltas`` must be *distances*: interval lengths in ``t`` times the norm of the ray direction (the
original NeRF multiplies by ``|rays_d|``). All functions are differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural3d.render.scan import exclusive_cumsum


def alphas_from_density(density: Tensor, distances: Tensor) -> Tensor:
    """Opacity of each interval.

    Args:
        density: [n_rays, n_samples] non-negative densities.
        distances: [n_rays, n_samples] interval lengths in world units.
    Returns:
        [n_rays, n_samples] alphas ``1 - exp(-density * distance)``.
    """
    return -torch.expm1(-density * distances)


def transmittance_from_density(density: Tensor, distances: Tensor) -> Tensor:
    """[n_rays, n_samples] transmittance ``exp(-sum_{j<i} sigma_j delta_j)`` (exclusive cumsum in log space).

    The exclusive sum is :func:`~neural3d.render.scan.exclusive_cumsum` (a shifted cumsum, not ``cumsum - tau``,
    which cancels catastrophically when one optical depth is huge: the 1e10 last interval of
    ``VolumeRenderer(opaque_far=True)``).
    """
    return torch.exp(-exclusive_cumsum(density * distances))


def transmittance_from_alpha(alphas: Tensor) -> Tensor:
    """[n_rays, n_samples] transmittance ``prod_{j<i} (1 - alpha_j)`` (exclusive cumprod).

    Computed as the exclusive cumulative product (like the original NeRF, with a 1e-10 guard so a
    fully opaque sample does not produce 0 * inf in the backward pass).
    """
    trans = torch.cumprod(1.0 - alphas + 1e-10, dim=-1)
    return torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)


def render_weights_from_alpha(alphas: Tensor) -> Tensor:
    """[n_rays, n_samples] compositing weights ``T_i * alpha_i`` from alphas."""
    return transmittance_from_alpha(alphas) * alphas


def render_weights_from_density(density: Tensor, distances: Tensor) -> Tensor:
    """[n_rays, n_samples] compositing weights from densities and interval lengths.

    Uses log-space transmittance, which is exact for a piecewise-constant density:
    for a constant density ``s`` the total opacity ``sum_i w_i`` equals ``1 - exp(-s * L)``.
    """
    return transmittance_from_density(density, distances) * alphas_from_density(density, distances)


def accumulate(weights: Tensor, values: Tensor | None = None) -> Tensor:
    """Weighted sum along rays.

    Args:
        weights: [n_rays, n_samples].
        values: [n_rays, n_samples, C] (or None to accumulate opacity).
    Returns:
        [n_rays, C] (or [n_rays, 1] opacity when ``values`` is None).
    """
    if values is None:
        return weights.sum(dim=-1, keepdim=True)
    return torch.einsum("rs,rsc->rc", weights, values)


def composite_background(rgb: Tensor, opacity: Tensor, background: Tensor) -> Tensor:
    """[n_rays, 3] colour over a background [3] or [n_rays, 3]: ``rgb + (1 - opacity) * bg``."""
    return rgb + (1.0 - opacity) * background
