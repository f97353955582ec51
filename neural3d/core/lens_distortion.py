"""OpenCV radial-tangential lens distortion (k1, k2, p1, p2) on normalised image coordinates.

Normalised coordinates are ``(x - cx) / fx, (y - cy) / fy`` in the OpenCV frame (y down).
"""

from __future__ import annotations

import torch
from torch import Tensor


def distort_points(uv: Tensor, coeffs: Tensor) -> Tensor:
    """Apply distortion.

    Args:
        uv: [*batch, 2] undistorted normalised coordinates.
        coeffs: [*batch, 4] (k1, k2, p1, p2), broadcastable to ``uv``.
    Returns:
        [*batch, 2] distorted normalised coordinates.
    """
    u, v = uv[..., 0], uv[..., 1]
    k1, k2, p1, p2 = coeffs.unbind(-1)
    r2 = u * u + v * v
    radial = 1 + k1 * r2 + k2 * r2 * r2
    du = 2 * p1 * u * v + p2 * (r2 + 2 * u * u)
    dv = p1 * (r2 + 2 * v * v) + 2 * p2 * u * v
    return torch.stack([u * radial + du, v * radial + dv], dim=-1)


def undistort_points(uv_d: Tensor, coeffs: Tensor, iterations: int = 10) -> Tensor:
    """Invert :func:`distort_points` with Newton's method (as nerfstudio/COLMAP do).

    Args:
        uv_d: [*batch, 2] distorted normalised coordinates.
        coeffs: [*batch, 4] (k1, k2, p1, p2).
    Returns:
        [*batch, 2] undistorted coordinates ``uv`` with ``distort_points(uv) ~= uv_d``.
    """
    uv = uv_d.clone()
    k1, k2, p1, p2 = coeffs.unbind(-1)
    for _ in range(iterations):
        u, v = uv[..., 0], uv[..., 1]
        r2 = u * u + v * v
        radial = 1 + k1 * r2 + k2 * r2 * r2
        d_radial = 2 * k1 + 4 * k2 * r2  # d radial / d r2 * 2
        fu = u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u) - uv_d[..., 0]
        fv = v * radial + p1 * (r2 + 2 * v * v) + 2 * p2 * u * v - uv_d[..., 1]
        fu_u = radial + u * d_radial * u + 2 * p1 * v + 6 * p2 * u
        fu_v = u * d_radial * v + 2 * p1 * u + 2 * p2 * v
        fv_u = v * d_radial * u + 2 * p1 * u + 2 * p2 * v
        fv_v = radial + v * d_radial * v + 6 * p1 * v + 2 * p2 * u
        det = fu_u * fv_v - fu_v * fv_u
        step_u = (fu * fv_v - fv * fu_v) / det
        step_v = (fv * fu_u - fu * fv_u) / det
        uv = torch.stack([u - step_u, v - step_v], dim=-1)
    return uv
