"""Normalised spacing ``s`` in [0, 1] along rays and its map to the ray parameter ``t`` (one implementation).

Samplers draw intervals in ``s`` and map them to ``t`` through a spacing function ``g``:
``s = (g(t) - g(near)) / (g(far) - g(near))``, inverted as ``t = g^-1(g(near) (1 - s) + g(far) s)``:

* ``uniform``: ``g(t) = t`` (linear in depth; NeRF's ``near * (1 - s) + far * s``);
* ``lindisp``: ``g(t) = 1 / t`` (linear in disparity; needs ``near > 0``);
* ``contracted``: ``g(t) = t / (2p)`` for ``t < p`` and ``1 - p / (2t)`` beyond (nerfstudio's
  ``UniformLinDispPiecewiseSampler``; ``p = pivot``): linear inside, disparity outside, for unbounded scenes.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

SPACINGS = ("uniform", "lindisp", "contracted")


def _check(kind: str) -> str:
    if isinstance(kind, bool):  # spacing_to_t(s, nears, fars, lindisp) of samplers/uniform.py before
        warnings.warn(
            "spacing_to_t(..., lindisp: bool) is deprecated: pass kind='lindisp' or 'uniform'",
            DeprecationWarning,
            stacklevel=3,
        )
        return "lindisp" if kind else "uniform"
    if kind not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {kind!r}")
    return kind


def _g(t: Tensor, kind: str, pivot: float) -> Tensor:
    if kind == "uniform":
        return t
    if kind == "lindisp":
        return 1.0 / t
    return torch.where(t < pivot, t / (2.0 * pivot), 1.0 - pivot / (2.0 * t.clamp_min(pivot)))


def _g_inv(y: Tensor, kind: str, pivot: float) -> Tensor:
    if kind == "uniform":
        return y
    if kind == "lindisp":
        return 1.0 / y
    return torch.where(y < 0.5, 2.0 * pivot * y, pivot / (2.0 * (1.0 - y).clamp_min(1e-12)))


def spacing_to_t(s: Tensor, nears: Tensor, fars: Tensor, kind: str = "uniform", pivot: float = 1.0) -> Tensor:
    """Map normalised spacing to ray parameters: ``t = g^-1(g(near) (1 - s) + g(far) s)``.

    Args:
        s: [n_rays, k] spacing in [0, 1].
        nears, fars: [n_rays] ray bounds.
        kind: "uniform" | "lindisp" | "contracted" (module docstring).
        pivot: ``p`` of the contracted spacing, in units of ``t``.
    Returns:
        [n_rays, k] values of ``t`` (``near`` at ``s = 0``, ``far`` at ``s = 1``).
    """
    kind = _check(kind)
    g0, g1 = _g(nears[:, None], kind, pivot), _g(fars[:, None], kind, pivot)
    return _g_inv(g0 * (1.0 - s) + g1 * s, kind, pivot)


def t_to_spacing(t: Tensor, nears: Tensor, fars: Tensor, kind: str = "uniform", pivot: float = 1.0) -> Tensor:
    """Inverse of :func:`spacing_to_t`: [n_rays, k] ``t`` -> [n_rays, k] ``s`` (0 at near, 1 at far).

    For ``uniform`` the denominator ``far - near`` is clamped to 1e-10 (a ray with ``far == near`` maps to 0).
    """
    kind = _check(kind)
    g0, g1 = _g(nears[:, None], kind, pivot), _g(fars[:, None], kind, pivot)
    denom = g1 - g0
    if kind == "uniform":
        denom = denom.clamp_min(1e-10)
    return (_g(t, kind, pivot) - g0) / denom


def stratified_spacing(
    n_rays: int, n_samples: int, *, jitter: bool, device=None, generator: torch.Generator | None = None
) -> Tensor:
    """Interval edges in normalised spacing s in [0, 1].

    Deterministic edges are ``linspace(0, 1, n_samples + 1)``. With ``jitter`` each edge is drawn
    uniformly between the midpoints of its neighbouring bins (nerfstudio's scheme), so every edge
    stays sorted and the expected edge equals the deterministic one.

    Returns:
        [n_rays, n_samples + 1] sorted spacing values.
    """
    bins = torch.linspace(0.0, 1.0, n_samples + 1, device=device).expand(n_rays, -1)
    if not jitter:
        return bins.contiguous()
    centers = 0.5 * (bins[:, 1:] + bins[:, :-1])
    upper = torch.cat([centers, bins[:, -1:]], dim=-1)
    lower = torch.cat([bins[:, :1], centers], dim=-1)
    u = torch.rand(bins.shape, device=device, generator=generator)
    return lower + (upper - lower) * u
