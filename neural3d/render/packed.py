"""Emission-absorption volume rendering on packed samples (flat [n_samples] with ``ray_indices``).

The same quantities as :mod:`neural3d.render.volume` (which works on the batched [n_rays, n_samples]
layout), for samples stored ray after ray (see :mod:`neural3d.render.scan`). All functions are
differentiable with respect to densities and values.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural3d.render.scan import exclusive_sum, segment_sum


def transmittance_packed(density: Tensor, distances: Tensor, ray_indices: Tensor, packed_info: Tensor) -> Tensor:
    """[n_samples] transmittance ``exp(-sum_{j<i} sigma_j delta_j)`` within each ray.

    Args:
        density: [n_samples] non-negative densities.
        distances: [n_samples] interval lengths in world units.
        ray_indices: [n_samples] sorted ray index of each sample.
        packed_info: [n_rays, 2] ``(start, count)`` per ray.
    """
    return torch.exp(-exclusive_sum(density * distances, ray_indices, packed_info))


def render_weights_packed(
    density: Tensor, distances: Tensor, ray_indices: Tensor, packed_info: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Compositing weights of packed samples.

    Returns:
        (weights [n_samples] ``T_i * alpha_i``, transmittance [n_samples], alphas [n_samples]).
    """
    trans = transmittance_packed(density, distances, ray_indices, packed_info)
    alphas = -torch.expm1(-density * distances)
    return trans * alphas, trans, alphas


def visibility_packed(
    density: Tensor,
    distances: Tensor,
    ray_indices: Tensor,
    packed_info: Tensor,
    *,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
) -> Tensor:
    """[n_samples] bool: samples worth evaluating with gradients.

    A sample is dropped when the ray is already opaque in front of it (transmittance below
    ``early_stop_eps``: early ray termination) or when it is nearly transparent itself
    (alpha below ``alpha_thre``), as nerfacc's ``render_visibility_from_density``.
    """
    _, trans, alphas = render_weights_packed(density, distances, ray_indices, packed_info)
    keep = trans >= early_stop_eps
    if alpha_thre > 0:
        keep &= alphas >= alpha_thre
    return keep


def accumulate_packed(weights: Tensor, ray_indices: Tensor, n_rays: int, values: Tensor | None = None) -> Tensor:
    """Weighted sum along rays.

    Args:
        weights: [n_samples].
        ray_indices: [n_samples].
        n_rays: number of rays (rays without samples get 0).
        values: [n_samples, C] (None: accumulate opacity).
    Returns:
        [n_rays, C] (or [n_rays, 1]).
    """
    if values is None:
        return segment_sum(weights[:, None], ray_indices, n_rays)
    return segment_sum(weights[:, None] * values, ray_indices, n_rays)
