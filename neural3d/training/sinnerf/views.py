"""Unseen cameras around the reference and strided patches of them (SinNeRF's ``rotate_3d`` and patch sampling).

An unseen pose rotates the reference camera-to-world by ``R = Rx(a) Ry(b) Rz(c)`` about a pivot ``p`` (world
axes): ``R' = R R_ref``, ``c' = R (c_ref - p) + p + delta``, with ``a, b, c ~ Normal(0, angle_std)`` clipped to
``+- max_angle`` degrees and ``delta ~ Normal(0, translation_std |c_ref - p|)`` per axis. The official Blender
code pivots about the world origin with ``angle_std = angle / 2``.

A patch is ``size`` x ``size`` rays ``stride`` pixels apart: pixel ``(x0 + j stride, y0 + i stride)`` for row
``i`` and column ``j``, its ray through that pixel plus ``pixel_center``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neural3d.core.cameras import Cameras
from neural3d.core.rays import RayBundle, generate_rays


def rotation_xyz(angles_deg: Tensor) -> Tensor:
    """[3] angles (degrees) about world x, y, z -> [3, 3] ``Rx Ry Rz`` (float64)."""
    a, b, c = (float(v) * math.pi / 180.0 for v in angles_deg)
    rx = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]], dtype=torch.float64)
    ry = torch.tensor([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]], dtype=torch.float64)
    rz = torch.tensor([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]], dtype=torch.float64)
    return rx @ ry @ rz


def orbit_pose(c2w: Tensor, pivot: Tensor, angles_deg: Tensor, translation: Tensor) -> Tensor:
    """The reference pose ``c2w`` [3, 4] rotated about ``pivot`` [3] and shifted by ``translation`` [3] -> [3, 4]."""
    c2w = c2w.double()
    rot = rotation_xyz(angles_deg)
    centre = rot @ (c2w[:, 3] - pivot.double()) + pivot.double() + translation.double()
    return torch.cat([rot @ c2w[:, :3], centre[:, None]], 1).float()


def sample_unseen_camera(
    reference: Cameras,
    pivot: Tensor,
    *,
    angle_std: float,
    max_angle: float,
    translation_std: float,
    generator: torch.Generator,
) -> Cameras:
    """One unseen camera around ``reference`` (one camera; same intrinsics); draws from ``generator`` (CPU)."""
    c2w = reference.camera_to_worlds[0].cpu()
    angles = (torch.randn(3, generator=generator, dtype=torch.float64) * angle_std).clamp(-max_angle, max_angle)
    dist = float((c2w[:, 3].double() - pivot.cpu().double()).norm())
    shift = torch.randn(3, generator=generator, dtype=torch.float64) * (translation_std * dist)
    pose = orbit_pose(c2w, pivot.cpu(), angles, shift).to(reference.device)
    return reference.replace(camera_to_worlds=pose[None])


def patch_pixels(x0: int, y0: int, size: int, stride: int, device=None) -> Tensor:
    """[size, size, 2] int64 (x, y) pixels of a strided patch with top-left pixel (x0, y0)."""
    r = torch.arange(size, device=device) * stride
    ys, xs = torch.meshgrid(y0 + r, x0 + r, indexing="ij")
    return torch.stack([xs, ys], -1)


def patch_rays(camera: Cameras, pixels: Tensor, near: float, far: float, pixel_center: float, index: int) -> RayBundle:
    """[size, size] rays of ``camera`` (one) through ``pixels`` [size, size, 2]; ``camera_indices`` = ``index``."""
    size = pixels.shape[0]
    xy = pixels.reshape(-1, 2).float() + pixel_center
    rays = generate_rays(camera, torch.zeros(xy.shape[0], dtype=torch.long, device=xy.device), xy, near, far)
    rays.camera_indices = torch.full_like(rays.camera_indices, index)
    rays.pixels = pixels.reshape(-1, 2)
    return rays.reshape(size, size)


def choose_patch(
    valid: Tensor, size: int, stride: int, min_valid: float, generator: torch.Generator, tries: int = 8
) -> tuple[int, int]:
    """Top-left (x0, y0) of a strided patch inside ``valid`` [H, W] bool; the first of ``tries`` random positions
    with at least ``min_valid`` valid pixels, else the best of them (uniform when ``valid`` is None)."""
    H, W = valid.shape
    span = (size - 1) * stride + 1
    if span > H or span > W:
        raise ValueError(
            f"sinnerf: a patch of {size} rays at stride {stride} spans {span} pixels; the image is {W}x{H}"
        )
    best, best_frac = (0, 0), -1.0
    for _ in range(tries):
        x0 = int(torch.randint(0, W - span + 1, (), generator=generator))
        y0 = int(torch.randint(0, H - span + 1, (), generator=generator))
        frac = float(valid[y0 : y0 + span : stride, x0 : x0 + span : stride].float().mean())
        if frac > best_frac:
            best, best_frac = (x0, y0), frac
        if frac >= min_valid:
            break
    return best
