"""Ray / axis-aligned box intersection (slab method), robust to axis-parallel and grazing rays."""

from __future__ import annotations

import torch
from torch import Tensor


def ray_aabb_intersect(origins: Tensor, directions: Tensor, aabbs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where rays enter and leave boxes.

    Args:
        origins: [n_rays, 3].
        directions: [n_rays, 3] (any length: ``t`` is measured in units of the direction).
        aabbs: [n_boxes, 6] ``(xmin, ymin, zmin, xmax, ymax, zmax)`` (or [6] for one box).
    Returns:
        (t_min [n_rays, n_boxes], t_max [n_rays, n_boxes], hit [n_rays, n_boxes] bool). ``t_min`` may be
        negative when the origin is inside a box; a ray touching a box in a single point or along a face
        counts as a hit with ``t_min == t_max`` only when the segment is non-empty (``t_max > t_min``
        is required, and ``t_max > 0``). Components of ``directions`` that are exactly zero are handled
        without NaNs: the ray hits that slab for all ``t`` if its origin lies inside it, never otherwise.
    """
    if aabbs.dim() == 1:
        aabbs = aabbs[None]
    lo, hi = aabbs[None, :, :3], aabbs[None, :, 3:]  # [1, n_boxes, 3]
    o, d = origins[:, None, :], directions[:, None, :]  # [n_rays, 1, 3]
    parallel = d == 0
    inv = 1.0 / torch.where(parallel, torch.ones_like(d), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    tnear, tfar = torch.minimum(t0, t1), torch.maximum(t0, t1)
    inside = (o >= lo) & (o <= hi)
    inf = torch.full_like(tnear, float("inf"))
    tnear = torch.where(parallel, torch.where(inside, -inf, inf), tnear)
    tfar = torch.where(parallel, torch.where(inside, inf, -inf), tfar)
    t_min, t_max = tnear.amax(dim=-1), tfar.amin(dim=-1)
    hit = (t_max > t_min) & (t_max > 0)
    return t_min, t_max, hit
