"""The update rule shared by the density caches of :class:`~neural3d.samplers.density_grid.DensityGrid` and
:class:`~neural3d.samplers.occupancy_grid.OccupancyGrid` (instant-ngp's occupancy-grid rule).

Every few training steps a grid re-evaluates some of its cells at a random point inside each:

* warm-up (the first ``warmup_updates`` updates): every cell, and the new values *replace* the old, so the
  empty space the field learns early is cleared at once rather than decaying away;
* afterwards: a random ``fraction`` of the cells (plus, for the occupancy grid, a sample of the occupied
  ones), with an exponential moving maximum ``value = max(decay * value, new)``.

The two grids differ only in what decays (``decay_all``): the density cache decays every cell at every
update (instant-ngp), the occupancy grid only the cells it re-evaluates (nerfacc). Their cell orders differ
too (``[z, y, x]`` vs ``[level, x, y, z]``) and stay with each grid.
"""

from __future__ import annotations

import torch
from torch import Tensor


def select_cells(n_cells: int, *, warmup: bool, fraction: float, device, occupied: Tensor | None = None) -> Tensor:
    """Flat indices of the cells to re-evaluate.

    Args:
        n_cells: cells in the grid.
        warmup: whether this update is a warm-up update (every cell).
        fraction: after warm-up, ``max(1, int(n_cells * fraction))`` uniformly random cells (every cell if >= 1).
        occupied: optional [n_occupied] flat indices of occupied cells; after warm-up as many of them as the
            uniform draw (randomly, with replacement, when there are more) are re-evaluated too.
    Returns:
        [n] int64 cell indices (duplicates possible after warm-up).
    """
    if warmup or fraction >= 1.0:
        return torch.arange(n_cells, device=device)
    n = max(1, int(n_cells * fraction))
    cells = torch.randint(0, n_cells, (n,), device=device)
    if occupied is None:
        return cells
    if len(occupied) > n:
        occupied = occupied[torch.randint(0, len(occupied), (n,), device=device)]
    return torch.cat([cells, occupied])


@torch.no_grad()
def ema_max_update_(values: Tensor, cells: Tensor, new: Tensor, *, replace: bool, decay: float, decay_all: bool):
    """Write re-evaluated cells into ``values`` in place.

    Args:
        values: [*grid] cached values (contiguous; viewed flat).
        cells: [n] flat indices re-evaluated (duplicates are harmless: each writes ``max(decay * old, its new)``).
        new: [n] their new values.
        replace: warm-up: ``values[cells] = new``.
        decay: factor of the moving maximum ``max(decay * old, new)``.
        decay_all: also multiply the cells not re-evaluated by ``decay``.
    """
    flat = values.view(-1)
    if replace:
        flat[cells] = new
        return
    decayed = flat[cells] * decay
    if decay_all:
        flat.mul_(decay)
    flat[cells] = torch.maximum(decayed, new)
