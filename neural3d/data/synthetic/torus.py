"""Torus primitive: exact ray intersection with the ray/torus quartic.

The torus lies about its local z axis: ring radius ``major`` in the xy plane, tube radius ``minor``.
Along a ray ``p = o + s d`` (|d| = 1) its implicit equation
``(|p|^2 + R^2 - r^2)^2 - 4 R^2 (p_x^2 + p_y^2) = 0`` is a monic quartic in ``s``. Its first root is found
by sphere tracing with the exact SDF (which never steps past the surface), finished by Newton steps;
rays that do not settle (near-grazing) use the eigenvalues of the quartic's companion matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .shapes import T_MIN, Primitive, _dot, _norm, _quadratic_roots

# Sphere tracing stops this close to the surface, then Newton steps finish the root.
_TRACE_TOL = 1e-5


@dataclass(frozen=True, kw_only=True)
class Torus(Primitive):
    """Torus about the local z axis: ring radius ``major`` in the xy plane, tube radius ``minor``."""

    major: float
    minor: float
    kind: ClassVar[str] = "torus"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.minor < self.major:
            raise ValueError(f"Torus needs 0 < minor < major, got minor={self.minor}, major={self.major}")

    def bound_radius(self) -> float:
        return self.major + self.minor

    def _intersect_local(self, o, d):
        t = torch.full_like(o[:, 0], math.inf)
        normal = torch.zeros_like(o)
        # Cull with the bounding sphere and start each ray at its entry point (well-conditioned quartic).
        scale = _norm(d)
        dn = d / scale[:, None]
        b_lo, b_hi, real = _quadratic_roots(torch.ones_like(scale), _dot(o, dn), _dot(o, o) - self.bound_radius() ** 2)
        idx = torch.nonzero(real & (b_hi > T_MIN)).squeeze(-1)
        if idx.numel() == 0:
            return t, normal
        s0 = b_lo[idx].clamp(min=0)
        oo, dd = o[idx] + s0[:, None] * dn[idx], dn[idx]
        s = self._first_root(oo, dd, b_hi[idx] - s0)
        ok = torch.isfinite(s)
        p = oo + torch.where(ok, s, 0.0)[:, None] * dd
        ok &= self._sdf_local(p).abs() < 1e-6
        t[idx] = torch.where(ok, (s0 + s) / scale[idx], math.inf)
        normal[idx] = torch.where(ok[:, None], self._normal_local(p), 0.0)
        return t, normal

    def _quartic(self, o: Tensor, d: Tensor) -> Tensor:
        """Coefficients [n_rays, 5] (c4..c0) of f(s) for unit directions ``d``."""
        big, small = self.major**2, self.minor**2
        n, k = _dot(o, d), _dot(o, o) + big - small
        c3 = 4 * n
        c2 = 4 * n * n + 2 * k - 4 * big * _dot(d[:, :2], d[:, :2])
        c1 = 4 * n * k - 8 * big * _dot(o[:, :2], d[:, :2])
        c0 = k * k - 4 * big * _dot(o[:, :2], o[:, :2])
        return torch.stack([torch.ones_like(c3), c3, c2, c1, c0], -1)

    def _first_root(self, o: Tensor, d: Tensor, s_max: Tensor) -> Tensor:
        """Smallest root in [0, s_max] of the ray/torus quartic (unit ``d``), inf if none: -> [n_rays].

        Sphere tracing with the exact SDF never steps past the surface, so it brings most rays close to
        their *first* hit cheaply; Newton steps on the quartic then make the root exact. Rays that do not
        settle (near-grazing) fall back to the companion-matrix eigenvalues.
        """
        s = torch.zeros_like(s_max)
        todo = torch.arange(s.shape[0], device=s.device)
        for _ in range(4):  # rounds of sphere tracing, dropping settled / exited rays in between
            oo, dd, ss = o[todo], d[todo], s[todo]
            for _ in range(8):
                dist = self._sdf_local(oo + ss[:, None] * dd)
                ss = torch.where(dist > _TRACE_TOL, ss + dist, ss)
            s[todo] = ss
            dist = self._sdf_local(oo + ss[:, None] * dd)
            todo = todo[(dist > _TRACE_TOL) & (ss <= s_max[todo])]
        settled = (s <= s_max) & torch.ones_like(s, dtype=torch.bool).index_fill(0, todo, False)
        coef = self._quartic(o, d)
        s = self._newton(coef, s)
        exact = settled & (self._sdf_local(o + s[:, None] * d).abs() < 1e-9)
        s = torch.where(exact, s, math.inf)
        retry = torch.nonzero(settled & ~exact).squeeze(-1)
        retry = torch.cat([retry, todo])
        if retry.numel():
            s[retry] = self._first_root_eig(coef[retry], s_max[retry])
        return s

    @staticmethod
    def _newton(coef: Tensor, s: Tensor, steps: int = 3) -> Tensor:
        """Newton steps (each clamped to 1e-3) on f(s) = sum_i coef[:, i] s^(4-i): [n, 5], [n] -> [n]."""
        for _ in range(steps):
            f, df = coef[:, 0], torch.zeros_like(s)
            for i in range(1, 5):  # Horner for f and f'
                df = df * s + f
                f = f * s + coef[:, i]
            step = torch.where(df != 0, f / torch.where(df == 0, 1.0, df), 0.0)
            s = s - step.clamp(-1e-3, 1e-3)
        return s

    def _first_root_eig(self, coef: Tensor, s_max: Tensor) -> Tensor:
        """Smallest real root in [0, s_max] from the companion matrix's eigenvalues, polished: -> [n]."""
        comp = torch.zeros(coef.shape[0], 4, 4, dtype=torch.float64, device=coef.device)
        comp[:, 0, :] = -coef[:, 1:]
        comp[:, 1, 0] = comp[:, 2, 1] = comp[:, 3, 2] = 1.0
        roots = torch.linalg.eigvals(comp)
        real_ok = (roots.imag.abs() <= 1e-6) & (roots.real >= -1e-6) & (roots.real <= s_max[:, None] + 1e-6)
        s = torch.where(real_ok, roots.real, math.inf).min(-1).values
        found = torch.isfinite(s)
        s = self._newton(coef, torch.where(found, s, 0.0))
        return torch.where(found, s.clamp(min=0), math.inf)

    def _normal_local(self, p: Tensor) -> Tensor:
        ring = torch.cat([p[:, :2], torch.zeros_like(p[:, 2:])], -1)
        ring = self.major * ring / _norm(ring)[:, None].clamp(min=1e-12)
        q = p - ring
        return q / _norm(q)[:, None].clamp(min=1e-12)

    def _sdf_local(self, p):
        ring = torch.sqrt(p[..., 0] * p[..., 0] + p[..., 1] * p[..., 1]) - self.major
        return torch.sqrt(ring * ring + p[..., 2] * p[..., 2]) - self.minor

    def _extent_local(self, u):
        uz = u[2].abs()
        return self.major * torch.sqrt((1 - uz * uz).clamp(min=0)) + self.minor
