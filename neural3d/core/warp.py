"""Forward warping of an RGB-D image into another camera, with a z-buffer and hole masks (pure functions).

A reference pixel ``(u, v)`` with z-depth ``z > 0`` (the ``t`` of our unnormalised rays, see
:mod:`neural3d.core.rays`) is the world point ``o + z d`` of its ray through ``(u + pixel_center,
v + pixel_center)``. Projected into the target camera it lands at continuous coordinates ``(x', y')`` with depth
``z'``; it is splatted to the nearest target pixel centre ``round(x' - pixel_center)``. Where several points land
on one pixel the nearest wins (z-buffer; equal depths: the lowest reference pixel index, so the result is
deterministic). Forward splatting leaves cracks where the target magnifies a surface; background points seen
through such a crack would win their pixel for lack of a competitor, so a pixel is also emptied when, along a
row, a column or a diagonal, splats nearer by more than the relative ``depth_tolerance`` lie within ``radius``
pixels on both sides of it (a crack in a nearer surface; a silhouette has the nearer surface on one side only
and is kept). Pixels that receive no accepted point are holes (``mask`` false): regions occluded
in, or outside of, the reference view, cracks, and pixels of reference depth 0.

SinNeRF's official code splats with ``floor`` and no z-buffer (the last write wins); both are replaced here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neural3d.core.cameras import Cameras
from neural3d.core.rays import image_rays


@dataclass
class WarpResult:
    """A reference RGB-D image seen from a target camera.

    Attributes:
        rgb: [H, W, 3] warped colours (0 in holes).
        depth: [H, W] z-depth in the target camera (0 in holes).
        mask: [H, W] bool: pixels that received a reference point (false: holes).
    """

    rgb: Tensor
    depth: Tensor
    mask: Tensor


def unproject_depth(camera: Cameras, depth: Tensor, pixel_center: float = 0.5) -> Tensor:
    """World points of a z-depth map: ``o + z d`` for the ray through every pixel.

    Args:
        camera: one camera (``len(camera) == 1``), H x W pixels.
        depth: [H, W] z-depth along the camera's -z axis.
    Returns:
        [H, W, 3] world points.
    """
    rays = image_rays(camera, 0, 0.0, 1.0, pixel_center)
    return rays.origins + depth[..., None] * rays.directions


def _shifted(zbuf: Tensor, dy: int, dx: int) -> Tensor:
    """[H, W] ``zbuf[y + dy, x + dx]`` (inf outside the image)."""
    H, W = zbuf.shape
    out = torch.full_like(zbuf, float("inf"))
    out[max(0, -dy) : H - max(0, dy), max(0, -dx) : W - max(0, dx)] = zbuf[
        max(0, dy) : H - max(0, -dy), max(0, dx) : W - max(0, -dx)
    ]
    return out


def _sandwiched(zbuf: Tensor, radius: int, depth_tolerance: float) -> Tensor:
    """[H, W] bool: pixels with a nearer splat (by the relative tolerance) within ``radius`` on BOTH sides along
    a row, a column or a diagonal: a crack in a nearer surface. A surface's own silhouette pixels have nearer
    splats on one side only and are kept."""
    out = torch.zeros_like(zbuf, dtype=torch.bool)
    if radius <= 0:
        return out
    limit = zbuf / (1.0 + depth_tolerance)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        ahead = torch.stack([_shifted(zbuf, k * dy, k * dx) for k in range(1, radius + 1)]).amin(0)
        behind = torch.stack([_shifted(zbuf, -k * dy, -k * dx) for k in range(1, radius + 1)]).amin(0)
        out |= (ahead < limit) & (behind < limit)
    return out


def forward_warp(
    rgb: Tensor,
    depth: Tensor,
    source: Cameras,
    target: Cameras,
    *,
    pixel_center: float = 0.5,
    radius: int = 1,
    depth_tolerance: float = 0.05,
) -> WarpResult:
    """Warp the reference ``rgb`` / ``depth`` of camera ``source`` into camera ``target`` (see the module docstring).

    Args:
        rgb: [H, W, C] reference colours (any channel count C).
        depth: [H, W] reference z-depth; pixels with ``depth <= 0`` carry no point.
        source: the reference camera (one, H x W).
        target: the target camera (one; its own size).
        pixel_center: offset of a pixel's ray within the pixel (``data.pixel_center``).
        radius: reach of the crack test in target pixels (0: a plain per-pixel z-buffer).
        depth_tolerance: relative depth margin of that test (neighbours nearer by more count as a nearer surface).
    Returns:
        :class:`WarpResult` at the target's resolution.
    """
    H, W = int(target.height[0]), int(target.width[0])
    points = unproject_depth(source, depth, pixel_center).reshape(-1, 3)
    valid = (depth.reshape(-1) > 0) & torch.isfinite(depth.reshape(-1))
    xy, z = target.project(points[valid][None])
    xy, z = xy[0], z[0]
    colours = rgb.reshape(-1, rgb.shape[-1])[valid]
    uv = torch.round(xy - pixel_center).long()
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    uv, z, colours = uv[inside], z[inside], colours[inside]
    lin = uv[:, 1] * W + uv[:, 0]
    zbuf = torch.full((H * W,), float("inf"), dtype=z.dtype, device=z.device).scatter_reduce(0, lin, z, "amin")
    cracks = _sandwiched(zbuf.reshape(H, W), radius, depth_tolerance).reshape(-1)
    wins = (z <= zbuf[lin]) & ~cracks[lin]
    order = torch.arange(z.numel(), device=z.device)
    n = z.numel()
    owner = torch.full((H * W,), n, dtype=torch.long, device=z.device)
    owner = owner.scatter_reduce(0, lin[wins], order[wins], "amin")
    mask = owner < n
    out_rgb = rgb.new_zeros(H * W, rgb.shape[-1])
    out_depth = depth.new_zeros(H * W)
    out_rgb[mask] = colours[owner[mask]]
    out_depth[mask] = z[owner[mask]].to(depth.dtype)
    return WarpResult(out_rgb.reshape(H, W, -1), out_depth.reshape(H, W), mask.reshape(H, W))
