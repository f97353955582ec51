"""Synthetic shape classes for tests and demos: noisy point samples of primitive surfaces.

Classes (with part labels per surface piece, numbered globally): sphere (upper/lower half), cube
(x/y/z-facing faces), cylinder (side/caps), cone (side/base), torus (outer/inner half), octahedron
(upper/lower pyramid). Each shape gets a random anisotropic scale (``1 +- scale_jitter``), a random
rotation about the up axis (y), Gaussian noise, and is normalised to the unit sphere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SHAPE_CLASSES = ("sphere", "cube", "cylinder", "cone", "torus", "octahedron")
PARTS_PER_CLASS = (2, 3, 2, 2, 2, 2)


def _sphere(u: Tensor) -> tuple[Tensor, Tensor]:
    p = torch.nn.functional.normalize(torch.erfinv(u * 2 - 1), dim=-1)  # uniform on the sphere
    return p, (p[..., 1] < 0).long()


def _cube(u: Tensor) -> tuple[Tensor, Tensor]:
    face = (u[..., 0] * 6).long().clamp(max=5)
    axis, sign = face // 2, (face % 2) * 2 - 1
    p = u * 2 - 1
    p = p.scatter(-1, axis[..., None], sign[..., None].to(p.dtype))
    return p, axis


def _cylinder(u: Tensor) -> tuple[Tensor, Tensor]:
    cap = u[..., 0] < 1.0 / 3.0  # side area 2*pi*r*h = 4 pi, caps 2 pi (r = 1, h = 2)
    th = u[..., 1] * 2 * math.pi
    r = torch.where(cap, u[..., 2].sqrt(), torch.ones_like(th))
    y = torch.where(cap, torch.sign(u[..., 0] - 1.0 / 6.0), u[..., 2] * 2 - 1)
    return torch.stack([r * th.cos(), y, r * th.sin()], -1), cap.long()


def _cone(u: Tensor) -> tuple[Tensor, Tensor]:
    base = u[..., 0] < 1.0 / (1.0 + math.sqrt(5.0))  # base area pi, side pi*sqrt(5) (r = 1, h = 2)
    th = u[..., 1] * 2 * math.pi
    s = u[..., 2].sqrt()
    r = s
    y = torch.where(base, -torch.ones_like(s), 1.0 - 2.0 * s)
    return torch.stack([r * th.cos(), y, r * th.sin()], -1), base.long()


def _torus(u: Tensor) -> tuple[Tensor, Tensor]:
    big, small = 1.0, 0.35
    a, b = u[..., 0] * 2 * math.pi, u[..., 1] * 2 * math.pi
    rr = big + small * b.cos()
    p = torch.stack([rr * a.cos(), small * b.sin(), rr * a.sin()], -1)
    return p, (b.cos() < 0).long()


def _octahedron(u: Tensor) -> tuple[Tensor, Tensor]:
    g = torch.erfinv(u * 2 - 1)
    p = g / g.abs().sum(-1, keepdim=True)
    return p, (p[..., 1] < 0).long()


_SAMPLERS = (_sphere, _cube, _cylinder, _cone, _torus, _octahedron)


def rotation_about_up(angle: Tensor) -> Tensor:
    """[n] angles (radians) -> [n, 3, 3] rotations about the y (up) axis."""
    c, s = angle.cos(), angle.sin()
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(-1, 3, 3)


def normalize_unit_sphere(xyz: Tensor) -> Tensor:
    """[*batch, n_points, 3] -> centred and scaled so the farthest point has norm 1."""
    xyz = xyz - xyz.mean(-2, keepdim=True)
    return xyz / xyz.norm(dim=-1).amax(-1)[..., None, None].clamp_min(1e-12)


def make_shapes(
    n_per_class: int,
    n_points: int = 512,
    *,
    n_classes: int = 5,
    noise: float = 0.02,
    scale_jitter: float = 0.25,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Generate ``n_per_class`` noisy clouds of each of the first ``n_classes`` primitives.

    Returns:
        points [n_shapes, n_points, 3] float32, labels [n_shapes] int64, parts [n_shapes, n_points] int64
        (global part ids: class ``c``'s parts start at ``sum(PARTS_PER_CLASS[:c])``).
    """
    if not 1 <= n_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"make_shapes: n_classes must be in [1, {len(SHAPE_CLASSES)}], got {n_classes}")
    g = torch.Generator().manual_seed(seed)
    pts, labels, parts = [], [], []
    offsets = [sum(PARTS_PER_CLASS[:c]) for c in range(len(SHAPE_CLASSES))]
    for c in range(n_classes):
        p, part = _SAMPLERS[c](torch.rand(n_per_class, n_points, 3, generator=g))
        scale = 1.0 + scale_jitter * (torch.rand(n_per_class, 1, 3, generator=g) * 2 - 1)
        rot = rotation_about_up(torch.rand(n_per_class, generator=g) * 2 * math.pi)
        p = (p * scale) @ rot.transpose(1, 2)
        p = normalize_unit_sphere(p + noise * torch.randn(p.shape, generator=g))
        pts.append(p)
        labels.append(torch.full((n_per_class,), c, dtype=torch.long))
        parts.append(part + offsets[c])
    return torch.cat(pts).float(), torch.cat(labels), torch.cat(parts)
