"""The packed sample layout: ray indices, ``packed_info`` and conversion to / from a padded block.

A *packed* set of samples stores every sample of every ray in one flat tensor, ray after ray, with

* ``ray_indices`` [n_samples] int64: the ray each sample belongs to (non-decreasing), and
* ``packed_info`` [n_rays, 2] int64: ``(start, count)`` of each ray's run in the flat tensor,

as nerfacc does. These are layout helpers only (no rendering maths); the segmented scans built on them live
in :mod:`neural3d.render.scan`, the containers in :mod:`neural3d.core.samples`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def packed_info_from_ray_indices(ray_indices: Tensor, n_rays: int) -> Tensor:
    """[n_samples] sorted ray indices -> [n_rays, 2] int64 ``(start, count)``."""
    counts = torch.bincount(ray_indices, minlength=n_rays)[:n_rays]
    starts = torch.cumsum(counts, 0) - counts  # integer counts: exact
    return torch.stack([starts, counts], dim=-1)


def ray_indices_from_packed_info(packed_info: Tensor) -> Tensor:
    """[n_rays, 2] ``(start, count)`` -> [n_samples] ray index of every sample."""
    counts = packed_info[:, 1]
    return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)


def positions_in_ray(ray_indices: Tensor, packed_info: Tensor) -> Tensor:
    """[n_samples] index of each sample within its ray (0 for the first sample of every ray)."""
    return torch.arange(len(ray_indices), device=ray_indices.device) - packed_info[:, 0].index_select(0, ray_indices)


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
