"""Empty-space skipping for occupancy marching: which blocks of consecutive steps may hold a sample.

Marching tests every candidate step of a ray against the occupancy grid (:mod:`neural3d.samplers.marching`).
Most candidates lie in empty cells, so the march first tests *blocks* of ``B`` consecutive steps, one point per
block, against the grid *dilated* by one cell, and tests single steps only inside the blocks that pass.

Why no sample is lost. A block covers the ray segment ``[s_a, s_b]`` (from its first step's start to its last
step's end); every candidate midpoint ``q`` of the block lies within ``h = (s_b - s_a) / 2`` of the block centre
``p`` along the unit ray, so within ``h`` of ``p`` in every coordinate. With ``h`` below one cell (by a margin
of 0.1 % of a cell, far above float rounding), the cell containing ``q`` is ``p``'s cell or one of its 26
neighbours, at any cascade level (whose cells are no smaller than the finest level's). So if no cell within one
cell of ``p`` is occupied at any level, no midpoint of the block is in an occupied cell and the block has no
sample. Blocks longer than that (steps that grow with ``cone_angle``) are always tested step by step. The
samples are therefore exactly those of the plain march, bit for bit (same step indices, same arithmetic).
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

from neural3d.samplers.occupancy_grid import OccupancyGrid, flat_lookup

MARGIN = 1e-3
"""Fraction of a cell kept between a block's half-length and one cell (covers float rounding of coordinates)."""


def block_half_limit(grid: OccupancyGrid) -> float:
    """Largest block half-length (world units along the unit ray) the one-cell dilation covers: the finest
    level's smallest cell side, less :data:`MARGIN` of it."""
    side = (grid.aabbs[0, 3:] - grid.aabbs[0, :3]).min().item() / grid.resolution
    return side * (1.0 - MARGIN)


def block_steps(grid: OccupancyGrid, step_size: float) -> int:
    """Steps per block: as many ``step_size`` steps as fit in twice :func:`block_half_limit` (1: no blocks)."""
    return max(1, int(2.0 * block_half_limit(grid) / step_size))


_DILATED: weakref.WeakKeyDictionary[OccupancyGrid, tuple[tuple, Tensor]] = weakref.WeakKeyDictionary()


def dilated_binaries(grid: OccupancyGrid) -> Tensor:
    """[levels, R + 2, R + 2, R + 2] bool: cell ``i`` (shifted by one) is occupied or has an occupied neighbour.

    Index ``i + 1`` holds cell ``i`` for ``i`` in ``[-1, R]``: the one-cell border outside the grid is dilated
    too, so points just outside the box still see the occupied cells at its faces. Cached per grid until its
    ``binaries`` change (any in-place write bumps the tensor's version; a new tensor has another address).
    """
    binaries = grid.binaries
    key = (binaries._version, binaries.data_ptr(), binaries.shape)
    cached = _DILATED.get(grid)
    if cached is not None and cached[0] == key:
        return cached[1]
    levels, r = binaries.shape[0], binaries.shape[-1]
    out = binaries.new_zeros(levels, r + 2, r + 2, r + 2)
    out[:, 1:-1, 1:-1, 1:-1] = binaries
    for dim in (1, 2, 3):  # separable: a 3x3x3 neighbourhood is three 3-cell passes
        src = out.clone()
        out.narrow(dim, 1, r + 1).logical_or_(src.narrow(dim, 0, r + 1))
        out.narrow(dim, 0, r + 1).logical_or_(src.narrow(dim, 1, r + 1))
    _DILATED[grid] = (key, out)
    return out


def near_occupied(grid: OccupancyGrid, dilated: Tensor, points: Tensor) -> Tensor:
    """[n, 3] points -> [n] bool: some cell within one cell of the point's cell is occupied, at any level.

    ``dilated``: :func:`dilated_binaries` of ``grid``. Conservative: True wherever :meth:`OccupancyGrid.occupied`
    is True for a point within one cell (less :data:`MARGIN`) of ``points`` in every coordinate.
    """
    size = dilated.shape[-1]
    out = torch.zeros(points.shape[:-1], dtype=torch.bool, device=points.device)
    for level in range(grid.levels):
        lo, hi = grid.aabbs[level, :3], grid.aabbs[level, 3:]
        ijk = ((points - lo) / (hi - lo) * grid.resolution).floor() + 1
        inside = ((ijk >= 0) & (ijk < size)).all(dim=-1)
        ijk = ijk.clamp(0, size - 1).long().reshape(-1, 3)
        out |= inside & flat_lookup(dilated, level, ijk).view_as(inside)
    return out
