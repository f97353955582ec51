"""Packed sample layout and segmented scans along rays.

A *packed* set of samples stores every sample of every ray in one flat tensor, ray after ray, with

* ``ray_indices`` [n_samples] int64: the ray each sample belongs to (non-decreasing), and
* ``packed_info`` [n_rays, 2] int64: ``(start, count)`` of each ray's run in the flat tensor,

as nerfacc does. Scans (cumulative sums / products restricted to each ray) are computed by scattering
the flat values into a padded [n_rays, max_count] block, scanning along the last axis and gathering
back: the arithmetic is exactly the batched one, so packed and batched rendering agree to the last
bit, and autograd flows through the scatter/gather. Memory is ``n_rays * max_count`` values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def packed_info_from_ray_indices(ray_indices: Tensor, n_rays: int) -> Tensor:
    """[n_samples] sorted ray indices -> [n_rays, 2] int64 ``(start, count)``."""
    counts = torch.bincount(ray_indices, minlength=n_rays)[:n_rays]
    starts = torch.cumsum(counts, 0) - counts
    return torch.stack([starts, counts], dim=-1)


def ray_indices_from_packed_info(packed_info: Tensor) -> Tensor:
    """[n_rays, 2] ``(start, count)`` -> [n_samples] ray index of every sample."""
    counts = packed_info[:, 1]
    return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)


def positions_in_ray(ray_indices: Tensor, packed_info: Tensor) -> Tensor:
    """[n_samples] index of each sample within its ray (0 for the first sample of every ray)."""
    return torch.arange(len(ray_indices), device=ray_indices.device) - packed_info[ray_indices, 0]


def _flat_slots(ray_indices: Tensor, packed_info: Tensor) -> tuple[Tensor, int]:
    width = int(packed_info[:, 1].max()) if len(packed_info) and len(ray_indices) else 0
    return ray_indices * width + positions_in_ray(ray_indices, packed_info), width


def pad_packed(values: Tensor, ray_indices: Tensor, packed_info: Tensor, fill: float = 0.0) -> Tensor:
    """Scatter packed values into a padded block.

    Args:
        values: [n_samples, *rest] packed values.
        ray_indices: [n_samples] sorted ray index of each value.
        packed_info: [n_rays, 2] ``(start, count)``.
        fill: value of the padding slots.
    Returns:
        [n_rays, max_count, *rest] with each ray's values first and ``fill`` after them.
    """
    slots, width = _flat_slots(ray_indices, packed_info)
    rest = values.shape[1:]
    out = values.new_full((len(packed_info) * width, *rest), fill)
    out = out.index_put((slots,), values)
    return out.view(len(packed_info), width, *rest)


def unpad_packed(padded: Tensor, ray_indices: Tensor, packed_info: Tensor) -> Tensor:
    """Inverse of :func:`pad_packed`: [n_rays, max_count, *rest] -> [n_samples, *rest]."""
    slots, width = _flat_slots(ray_indices, packed_info)
    return padded.reshape(len(packed_info) * width, *padded.shape[2:])[slots]


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
exclusive_sum = _segmented(_exclusive(_cumsum, 0.0), 0.0)
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
