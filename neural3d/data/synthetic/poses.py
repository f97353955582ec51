"""Camera poses and pixel rays for the synthetic scenes (OpenGL axes: x right, y up, looking down -z).

* :func:`look_at` builds camera-to-world matrices.
* :func:`hemisphere_poses` - cameras on a sphere about the origin, above the z = 0 plane (Blender layout,
  world z up, like the NeRF synthetic scenes).
* :func:`forward_poses` - a jittered grid of cameras on a plane, all looking down -z (LLFF layout, world
  y up, like a hand-held forward-facing capture).
* :func:`pixel_rays` - rays through arbitrary continuous pixel coordinates (pixel centres at +0.5).

Pose sampling takes a ``numpy.random.Generator`` and works in float64 numpy, so it is reproducible
across platforms.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world matrices that place cameras at ``eye`` looking at ``target``.

    Args:
        eye: [n_cams, 3] camera centres.
        target: [n_cams, 3] or [3] points the cameras look at.
        up: [3] world up; the camera's y axis is the component of ``up`` orthogonal to the view axis.

    Returns:
        c2w: [n_cams, 3, 4] float64, columns (right, up, backwards, centre).

    Raises:
        ValueError: a camera coincides with its target or looks along ``up``.
    """
    eye = np.asarray(eye, dtype=np.float64)
    back = eye - np.broadcast_to(np.asarray(target, dtype=np.float64), eye.shape)
    norm = np.linalg.norm(back, axis=-1, keepdims=True)
    right = np.cross(np.asarray(up, dtype=np.float64), back)
    right_norm = np.linalg.norm(right, axis=-1, keepdims=True)
    if np.any(norm < 1e-12) or np.any(right_norm < 1e-9 * norm):
        raise ValueError("look_at: a camera coincides with its target or looks along the up vector")
    back = back / norm
    right = right / right_norm
    cam_up = np.cross(back, right)
    return np.stack([right, cam_up, back, eye], axis=-1)


def hemisphere_poses(
    rng: np.random.Generator,
    n_cams: int,
    *,
    radius: float = 4.0,
    min_elevation_deg: float = 8.0,
    max_elevation_deg: float = 80.0,
) -> np.ndarray:
    """Cameras spread (by area) over a spherical band above z = 0, looking at the origin.

    Azimuths are stratified (camera i in the i-th of ``n_cams`` equal sectors, jittered) so even a few
    views surround the scene; heights are uniform in z (uniform by area).

    Args:
        rng: numpy generator (consumed).
        n_cams: number of cameras.
        radius: distance of every camera from the origin.
        min_elevation_deg, max_elevation_deg: elevation band above the xy plane, degrees.

    Returns:
        c2w: [n_cams, 3, 4] float64 (world z up).
    """
    z_lo, z_hi = math.sin(math.radians(min_elevation_deg)), math.sin(math.radians(max_elevation_deg))
    z = rng.uniform(z_lo, z_hi, n_cams)
    azimuth = 2 * math.pi * (np.arange(n_cams) + rng.uniform(0.0, 1.0, n_cams)) / max(n_cams, 1)
    rho = np.sqrt(1 - z * z)
    eye = radius * np.stack([rho * np.cos(azimuth), rho * np.sin(azimuth), z], -1)
    return look_at(eye, np.zeros(3), np.array([0.0, 0.0, 1.0]))


def forward_poses(
    rng: np.random.Generator,
    n_cams: int,
    *,
    distance: float = 3.0,
    span: tuple[float, float] = (1.2, 0.9),
    target_depth: float = 7.0,
) -> np.ndarray:
    """Forward-facing captures: a jittered grid of camera centres on the plane z = ``distance``.

    The grid has about 4:3 columns:rows, spans ``span`` (x, y) in world units and each camera looks at a
    slightly jittered point ``target_depth`` in front of the plane (so the views converge a little, like
    a hand-held capture).

    Args:
        rng: numpy generator (consumed).
        n_cams: number of cameras.
        distance: z of the camera plane (the scene sits around the origin).
        span: (width, height) of the grid of camera centres.
        target_depth: distance along -z of the common look-at point.

    Returns:
        c2w: [n_cams, 3, 4] float64 (world y up, cameras looking down -z).
    """
    cols = max(1, math.ceil(math.sqrt(n_cams * 4 / 3)))
    rows = math.ceil(n_cams / cols)
    gx = (np.arange(cols) + 0.5) / cols - 0.5
    gy = (np.arange(rows) + 0.5) / rows - 0.5
    xy = np.stack(np.meshgrid(gx * span[0], gy[::-1] * span[1], indexing="xy"), -1).reshape(-1, 2)[:n_cams]
    xy = xy + rng.uniform(-0.25, 0.25, (n_cams, 2)) * np.array([span[0] / cols, span[1] / rows])
    z = distance + rng.uniform(-0.1, 0.1, (n_cams, 1))
    eye = np.concatenate([xy, z], -1)
    target = np.concatenate([rng.uniform(-0.1, 0.1, (n_cams, 2)), np.full((n_cams, 1), distance - target_depth)], -1)
    return look_at(eye, target, np.array([0.0, 1.0, 0.0]))


def pixel_rays(
    c2w: Tensor, fx: float, fy: float, cx: float, cy: float, xs: Tensor, ys: Tensor
) -> tuple[Tensor, Tensor]:
    """Rays through the continuous pixel coordinates ``(xs[j], ys[i])`` of each camera.

    Directions are ``c2w[:3, :3] @ ((x - cx) / fx, -(y - cy) / fy, -1)`` (not normalised: the ray
    parameter is the z-depth).

    Args:
        c2w: [n_cams, 3, 4] camera-to-world (OpenGL axes).
        fx, fy, cx, cy: intrinsics in pixels.
        xs: [n_x] horizontal pixel coordinates (pixel centres are at u + 0.5).
        ys: [n_y] vertical pixel coordinates.

    Returns:
        (origins, dirs): [n_cams, n_y, n_x, 3] each, float64.
    """
    c2w = c2w.double()
    xs, ys = xs.double(), ys.double()
    n_y, n_x = ys.shape[0], xs.shape[0]
    dx = ((xs - cx) / fx)[None, :].expand(n_y, n_x)
    dy = (-(ys - cy) / fy)[:, None].expand(n_y, n_x)
    cam_dirs = torch.stack([dx, dy, -torch.ones_like(dx)], -1)  # [n_y, n_x, 3]
    dirs = torch.einsum("cij,yxj->cyxi", c2w[:, :, :3], cam_dirs)
    origins = c2w[:, None, None, :, 3].expand_as(dirs)
    return origins, dirs
