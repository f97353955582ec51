"""Cumulative sums and products along rays: the one exclusive cumsum, and segmented scans of packed samples.

The packed layout (``ray_indices``, ``packed_info``, padding) is defined in :mod:`neural3d.core.packing`.
Scans (cumulative sums / products restricted to each ray) are computed by scattering the flat values into a
padded [n_rays, max_count] block, scanning along the last axis and gathering back: the arithmetic is exactly
the batched one, so packed and batched rendering agree to the last bit, and autograd flows through the
scatter/gather. Memory is ``n_rays * max_count`` values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from neural3d.core.packing import (  # noqa: F401 (re-exported: the layout helpers moved to core)
    packed_info_from_ray_indices,
    pad_packed,
    positions_in_ray,
    ray_indices_from_packed_info,
    unpad_packed,
)


def exclusive_cumsum(x: Tensor, dim: int = -1) -> Tensor:
    r"""Exclusive cumulative sum along ``dim``: entry ``i`` is :math:`\sum_{j<i} x_j` (0 first).

    The sum of the first ``i`` entries is computed directly (a shifted ``cumsum`` of all but the last entry),
    never as ``cumsum(x) - x``: that difference cancels catastrophically when one entry dwarfs the others, e.g.
    the 1e10-long optical depth of an NDC ray's opaque last interval (``VolumeRenderer(opaque_far=True)``)
    wipes out every earlier partial sum.

    Args:
        x: [*batch, n] values (any dim may be scanned).
        dim: the axis to scan.
    Returns:
        [*batch, n] exclusive sums, same dtype and shape as ``x``.
    """
    x = x.movedim(dim, -1)
    out = torch.cat([torch.zeros_like(x[..., :1]), torch.cumsum(x[..., :-1], dim=-1)], dim=-1)
    return out.movedim(-1, dim)


def _segmented(scan: Callable[[Tensor], Tensor], fill: float) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    def fn(values: Tensor, ray_indices: Tensor, packed_info: Tensor) -> Tensor:
        if values.numel() == 0:
            return values.clone()
        return unpad_packed(scan(pad_packed(values, ray_indices, packed_info, fill)), ray_indices, packed_info)

    return fn


def _exclusive(op: Callable[[Tensor], Tensor], identity: float) -> Callable[[Tensor], Tensor]:
    def scan(x: Tensor) -> Tensor:
        inc = op(x)
        return torch.cat([torch.full_like(inc[:, :1], identity), inc[:, :-1]], dim=1)

    return scan


def _cumsum(x: Tensor) -> Tensor:
    return torch.cumsum(x, dim=1)


def _cumprod(x: Tensor) -> Tensor:
    return torch.cumprod(x, dim=1)


inclusive_sum = _segmented(_cumsum, 0.0)
inclusive_sum.__doc__ = "[n_samples] packed values -> per-ray inclusive cumulative sum [n_samples]."
exclusive_sum = _segmented(lambda x: exclusive_cumsum(x, dim=1), 0.0)
exclusive_sum.__doc__ = "[n_samples] packed values -> per-ray exclusive cumulative sum (0 at each ray's first sample)."
inclusive_prod = _segmented(_cumprod, 1.0)
inclusive_prod.__doc__ = "[n_samples] packed values -> per-ray inclusive cumulative product [n_samples]."
exclusive_prod = _segmented(_exclusive(_cumprod, 1.0), 1.0)
exclusive_prod.__doc__ = (
    "[n_samples] packed values -> per-ray exclusive cumulative product (1 at each ray's first sample)."
)


def segment_sum(values: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    """Sum packed values per ray: [n_samples, *rest] -> [n_rays, *rest] (0 for rays without samples)."""
    out = values.new_zeros((n_rays, *values.shape[1:]))
    return out.index_add(0, ray_indices, values)
