"""Analytic primitives for the synthetic scenes: exact ray intersection and signed distance.

Every primitive is a canonical shape in its own *local* frame, placed in the world by a rigid pose:
``world = center + rotation @ local`` (``rotation`` is a 3x3 rotation whose columns are the local axes
in world coordinates). Rays are moved into the local frame, intersected there in float64 and the
results moved back; a rigid pose keeps the ray parameter ``t`` unchanged, so ``t`` is measured in
units of the (un-normalised) world direction: for camera rays built with a -1 z-component it is the
z-depth.

Canonical shapes (local frame):

* :class:`Sphere` - radius ``radius`` about the origin.
* :class:`Box` - axis-aligned, half sizes ``half_size`` (slab method; rays parallel to a slab handled).
* :class:`Cylinder` - axis z, ``radius``, capped at z = +-``half_height``.
* :class:`~neural3d.data.synthetic.torus.Torus` (own module) - axis z, ring radius ``major``, tube radius
  ``minor``.
* :class:`Disk` - radius ``radius`` in the z = 0 plane (two-sided, zero thickness).
* :class:`Plane` - the infinite z = 0 plane (two-sided, zero thickness).

Solids return outward normals; the thin surfaces return the normal facing the ray's origin.
``Hit.local`` (the hit point in the local frame) serves as solid-texture coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor

_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
# Smallest accepted ray parameter: hits at t <= T_MIN are behind (or at) the origin.
T_MIN = 1e-9


@dataclass
class Hit:
    """Nearest intersections of a batch of rays with a surface.

    Attributes:
        t: [n_rays] ray parameter of the hit (``origin + t * direction``), ``inf`` where missed.
        normal: [n_rays, 3] unit world-space normal at the hit, zeros where missed.
        local: [n_rays, 3] hit point in the primitive's local frame (texture coordinates), zeros where missed.
    """

    t: Tensor
    normal: Tensor
    local: Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product of short vectors: [*batch, k] x [*batch, k] -> [*batch].

    Written per component: a size-3 ``.sum(-1)`` reduction is several times slower on CPU.
    """
    out = a[..., 0] * b[..., 0]
    for i in range(1, a.shape[-1]):
        out = out + a[..., i] * b[..., i]
    return out


def _norm(a: Tensor) -> Tensor:
    """Row-wise Euclidean norm: [*batch, k] -> [*batch]."""
    return torch.sqrt(_dot(a, a))


def _quadratic_roots(a: Tensor, b_half: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Real roots of ``a t^2 + 2 b_half t + c = 0`` in a cancellation-free form.

    Args:
        a, b_half, c: [n_rays] coefficients (``a > 0`` where a root is wanted).

    Returns:
        (t_lo, t_hi, real): [n_rays] smaller and larger root, and whether the roots are real and a > 0.
    """
    disc = b_half * b_half - a * c
    real = (disc >= 0) & (a > 0)
    sq = torch.sqrt(disc.clamp(min=0))
    q = -(b_half + torch.where(b_half >= 0, sq, -sq))  # |q| = |b_half| + sq, no cancellation
    safe_q = torch.where(q == 0, torch.ones_like(q), q)
    safe_a = torch.where(a > 0, a, torch.ones_like(a))
    r1 = q / safe_a
    r2 = torch.where(q == 0, torch.zeros_like(q), c / safe_q)
    return torch.minimum(r1, r2), torch.maximum(r1, r2), real


def _nearest(candidates: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Smallest valid candidate per ray: [n_rays, k] -> (t [n_rays] (inf if none), index [n_rays])."""
    masked = torch.where(valid & (candidates > T_MIN), candidates, torch.full_like(candidates, math.inf))
    return masked.min(-1)


@dataclass(frozen=True, kw_only=True)
class Primitive:
    """Base class: a canonical shape placed by a rigid pose.

    Attributes:
        center: (3,) world position of the local origin.
        rotation: 3x3 (row-major nested tuples) local-to-world rotation; columns are the local axes.
    """

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[tuple[float, float, float], ...] = _IDENTITY
    kind: ClassVar[str] = ""
    thin: ClassVar[bool] = False  # zero-thickness surface: unsigned distance, normal faces the ray

    def __post_init__(self) -> None:
        rot = torch.tensor(self.rotation, dtype=torch.float64)
        if rot.shape != (3, 3) or len(self.center) != 3:
            raise ValueError(f"{type(self).__name__}: center must have 3 entries and rotation be 3x3")
        if not torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-9) or rot.det() < 0:
            raise ValueError(f"{type(self).__name__}.rotation must be a proper rotation matrix")

    # --- pose ---------------------------------------------------------------------------------
    def _frame(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(center [3], rotation [3, 3]) as float64 tensors on ``like``'s device."""
        c = torch.tensor(self.center, dtype=torch.float64, device=like.device)
        r = torch.tensor(self.rotation, dtype=torch.float64, device=like.device)
        return c, r

    def to_local(self, points: Tensor) -> Tensor:
        """World points [*batch, 3] -> local points [*batch, 3] (float64)."""
        c, r = self._frame(points)
        return (points.double() - c) @ r

    # --- queries ---------------------------------------------------------------------------------
    def intersect(self, origins: Tensor, dirs: Tensor) -> Hit:
        """Nearest hit with ``t > T_MIN`` of rays ``origins + t * dirs``.

        Args:
            origins: [n_rays, 3] world ray origins.
            dirs: [n_rays, 3] world ray directions (any non-zero length).

        Returns:
            :class:`Hit` with float64 fields over all ``n_rays``.
        """
        origins, dirs = origins.double(), dirs.double()
        n = origins.shape[0]
        t = torch.full((n,), math.inf, dtype=torch.float64, device=origins.device)
        normal = torch.zeros(n, 3, dtype=torch.float64, device=origins.device)
        local = torch.zeros(n, 3, dtype=torch.float64, device=origins.device)
        idx, hit = self.intersect_candidates(origins, dirs)
        t[idx], normal[idx], local[idx] = hit.t, hit.normal, hit.local
        return Hit(t=t, normal=normal, local=local)

    def intersect_candidates(self, origins: Tensor, dirs: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Hit]:
        """Like :meth:`intersect`, but only for the rays that meet the bounding sphere (fast path).

        Args:
            origins, dirs: [n_rays, 3] float64 world rays.
            idx: optional precomputed candidate indices (from :func:`bounding_candidates`).

        Returns:
            (idx [n_cand] int64 indices of the candidate rays, :class:`Hit` over those ``n_cand`` rays).
        """
        if idx is None:
            idx = bounding_candidates(origins, dirs, [self])[0]
        c, r = self._frame(origins)
        o, d = (origins[idx] - c) @ r, dirs[idx] @ r
        t, n_local = self._intersect_local(o, d)
        hit = torch.isfinite(t)
        t_safe = torch.where(hit, t, 0.0)
        local = torch.where(hit[:, None], o + t_safe[:, None] * d, 0.0)
        normal = torch.where(hit[:, None], n_local @ r.T, 0.0)
        return idx, Hit(t=t, normal=normal, local=local)

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance (unsigned for thin surfaces) of world points [*batch, 3] -> [*batch]."""
        return self._sdf_local(self.to_local(points))

    def extent_along(self, direction) -> float:
        """Half-extent of the shape along a unit world direction (support function about ``center``)."""
        u = torch.tensor(self.rotation, dtype=torch.float64).T @ torch.tensor(direction, dtype=torch.float64)
        return float(self._extent_local(u / torch.linalg.vector_norm(u)))

    def bound_radius(self) -> float:
        """Radius of a sphere about ``center`` that contains the shape (inf for planes)."""
        raise NotImplementedError

    # --- subclass hooks -----------------------------------------------------------------------
    def _intersect_local(self, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """Local-frame rays [n_rays, 3] x2 -> (t [n_rays] inf on miss, local normal [n_rays, 3])."""
        raise NotImplementedError

    def _sdf_local(self, p: Tensor) -> Tensor:
        raise NotImplementedError

    def _extent_local(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    # --- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready description: ``{"type": kind, field: value, ...}``."""
        out: dict = {"type": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = [list(row) for row in value] if f.name == "rotation" else _listify(value)
        return out


def _listify(value):
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, kw_only=True)
class Sphere(Primitive):
    """Sphere of ``radius`` about the local origin."""

    radius: float
    kind: ClassVar[str] = "sphere"

    def bound_radius(self) -> float:
        return self.radius

    def _intersect_local(self, o, d):
        t_lo, t_hi, real = _quadratic_roots(_dot(d, d), _dot(o, d), _dot(o, o) - self.radius**2)
        t, _ = _nearest(torch.stack([t_lo, t_hi], -1), real[:, None].expand(-1, 2))
        p = o + torch.where(torch.isfinite(t), t, 0.0)[:, None] * d
        return t, p / self.radius

    def _sdf_local(self, p):
        return _norm(p) - self.radius

    def _extent_local(self, u):
        return torch.tensor(self.radius, dtype=torch.float64)


@dataclass(frozen=True, kw_only=True)
class Box(Primitive):
    """Box with half sizes ``half_size`` = (hx, hy, hz), axis-aligned in the local frame."""

    half_size: tuple[float, float, float]
    kind: ClassVar[str] = "box"

    def bound_radius(self) -> float:
        return math.sqrt(sum(h * h for h in self.half_size))

    def _intersect_local(self, o, d):
        h = torch.tensor(self.half_size, dtype=torch.float64, device=o.device)
        parallel = d == 0
        inside_slab = o.abs() <= h
        safe_d = torch.where(parallel, torch.ones_like(d), d)
        t1, t2 = (-h - o) / safe_d, (h - o) / safe_d
        inf = torch.full_like(d, math.inf)
        t_lo = torch.where(parallel, torch.where(inside_slab, -inf, inf), torch.minimum(t1, t2))
        t_hi = torch.where(parallel, torch.where(inside_slab, inf, -inf), torch.maximum(t1, t2))
        t_near, axis_near = t_lo.max(-1)
        t_far, axis_far = t_hi.min(-1)
        hit = (t_near <= t_far) & (t_far > T_MIN)
        entering = t_near > T_MIN
        t = torch.where(hit, torch.where(entering, t_near, t_far), torch.full_like(t_near, math.inf))
        axis = torch.where(entering, axis_near, axis_far)
        p = o + torch.where(hit, t, 0.0)[:, None] * d
        sign = torch.sign(p.gather(-1, axis[:, None]))
        normal = torch.zeros_like(o).scatter(-1, axis[:, None], torch.where(sign == 0, 1.0, sign))
        return t, normal

    def _sdf_local(self, p):
        h = torch.tensor(self.half_size, dtype=torch.float64, device=p.device)
        q = p.abs() - h
        return q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0)

    def _extent_local(self, u):
        return (u.abs() * torch.tensor(self.half_size, dtype=torch.float64)).sum()


@dataclass(frozen=True, kw_only=True)
class Cylinder(Primitive):
    """Capped cylinder about the local z axis: ``radius``, z in [-half_height, half_height]."""

    radius: float
    half_height: float
    kind: ClassVar[str] = "cylinder"

    def bound_radius(self) -> float:
        return math.hypot(self.radius, self.half_height)

    def _intersect_local(self, o, d):
        r, h = self.radius, self.half_height
        oxy, dxy = o[:, :2], d[:, :2]
        s_lo, s_hi, real = _quadratic_roots(_dot(dxy, dxy), _dot(oxy, dxy), _dot(oxy, oxy) - r * r)
        dz_safe = torch.where(d[:, 2] == 0, torch.ones_like(d[:, 2]), d[:, 2])
        c_lo, c_hi = (-h - o[:, 2]) / dz_safe, (h - o[:, 2]) / dz_safe
        cand = torch.stack([s_lo, s_hi, c_lo, c_hi], -1)  # [n_rays, 4]
        p = o[:, None, :] + torch.where(torch.isfinite(cand), cand, 0.0)[..., None] * d[:, None, :]
        side_ok = real[:, None] & (p[..., 2].abs() <= h)
        cap_ok = (d[:, 2] != 0)[:, None] & (_dot(p[..., :2], p[..., :2]) <= r * r)
        t, idx = _nearest(cand, torch.cat([side_ok[:, :2], cap_ok[:, 2:]], -1))
        ph = p.gather(1, idx[:, None, None].expand(-1, 1, 3))[:, 0]
        side_n = torch.cat([ph[:, :2] / r, torch.zeros_like(ph[:, 2:])], -1)
        cap_n = torch.zeros_like(ph)
        cap_n[:, 2] = torch.where(idx == 2, -1.0, 1.0)
        return t, torch.where((idx < 2)[:, None], side_n, cap_n)

    def _sdf_local(self, p):
        q = torch.stack([p[..., :2].norm(dim=-1) - self.radius, p[..., 2].abs() - self.half_height], -1)
        return q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0)

    def _extent_local(self, u):
        uz = u[2].abs()
        return self.half_height * uz + self.radius * torch.sqrt((1 - uz * uz).clamp(min=0))


@dataclass(frozen=True, kw_only=True)
class Disk(Primitive):
    """Two-sided disk of ``radius`` in the local z = 0 plane."""

    radius: float
    kind: ClassVar[str] = "disk"
    thin: ClassVar[bool] = True

    def bound_radius(self) -> float:
        return self.radius

    def _intersect_local(self, o, d):
        dz_safe = torch.where(d[:, 2] == 0, torch.ones_like(d[:, 2]), d[:, 2])
        t = -o[:, 2] / dz_safe
        p = o + t[:, None] * d
        ok = (d[:, 2] != 0) & (t > T_MIN) & self._inside(p)
        normal = torch.zeros_like(o)
        normal[:, 2] = torch.where(d[:, 2] > 0, -1.0, 1.0)
        return torch.where(ok, t, math.inf), normal

    def _inside(self, p: Tensor) -> Tensor:
        return _dot(p[:, :2], p[:, :2]) <= self.radius**2

    def _sdf_local(self, p):
        radial = (p[..., :2].norm(dim=-1) - self.radius).clamp(min=0)
        return torch.sqrt(radial * radial + p[..., 2] ** 2)

    def _extent_local(self, u):
        return self.radius * torch.sqrt((1 - u[2] ** 2).clamp(min=0))


@dataclass(frozen=True, kw_only=True)
class Plane(Disk):
    """Infinite two-sided plane z = 0 in the local frame (a backdrop)."""

    radius: float = math.inf
    kind: ClassVar[str] = "plane"

    def _inside(self, p: Tensor) -> Tensor:
        return torch.ones_like(p[:, 0], dtype=torch.bool)

    def _sdf_local(self, p):
        return p[..., 2].abs()

    def _extent_local(self, u):
        return torch.tensor(0.0 if u[2].abs() == 1 else math.inf, dtype=torch.float64)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("radius")
        return out


def bounding_candidates(origins: Tensor, dirs: Tensor, prims) -> list[Tensor]:
    """Rays that meet each primitive's bounding sphere ahead of their origin (a conservative cull).

    The per-ray terms <o, d>, |o|^2, |d|^2 are shared by all primitives; each primitive then costs two
    matrix-vector products and a few elementwise operations.

    Args:
        origins, dirs: [n_rays, 3] float64 world rays.
        prims: sequence of ``n_prims`` primitives (unbounded ones take every ray).

    Returns:
        ``n_prims`` int64 index tensors [n_cand_i] of candidate rays.
    """
    o_d, o_o, d_d = _dot(origins, dirs), _dot(origins, origins), _dot(dirs, dirs)
    everything = torch.arange(origins.shape[0], device=origins.device)
    out = []
    for prim in prims:
        radius = prim.bound_radius() * 1.001 + 1e-9
        if not math.isfinite(radius):
            out.append(everything)
            continue
        c = torch.tensor(prim.center, dtype=torch.float64, device=origins.device)
        b_half = o_d - dirs @ c  # <o - c, d>
        cc = o_o - 2 * (origins @ c) + (float(c @ c) - radius * radius)  # |o - c|^2 - radius^2
        meets = (b_half * b_half >= d_d * cc) & ((b_half < 0) | (cc < 0))  # real roots, larger one > 0
        out.append(torch.nonzero(meets).squeeze(-1))
    return out


def primitive_types() -> dict[str, type[Primitive]]:
    """Every concrete primitive class (any imported subclass of :class:`Primitive`), by ``kind``."""
    found, stack = {}, list(Primitive.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.kind:
            found[cls.kind] = cls
    return found


def primitive_from_dict(spec: dict) -> Primitive:
    """Inverse of :meth:`Primitive.to_dict`.

    Raises:
        ValueError: unknown ``type`` or bad fields.
    """
    spec = dict(spec)
    kind = spec.pop("type", None)
    types = primitive_types()
    if kind not in types:
        raise ValueError(f"primitive 'type' must be one of {sorted(types)}, got {kind!r}")
    cls = types[kind]
    names = {f.name for f in fields(cls)}
    unknown = set(spec) - names
    if unknown:
        raise ValueError(f"primitive of type {kind!r} has unknown keys {sorted(unknown)}")
    kwargs = {}
    for name, value in spec.items():
        if name == "rotation":
            value = tuple(tuple(float(x) for x in row) for row in value)
        elif isinstance(value, list):
            value = tuple(float(x) for x in value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"primitive of type {kind!r}: {err}") from None
