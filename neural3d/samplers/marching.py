"""Occupancy-grid ray marching into packed samples (pure PyTorch; nerfacc's CUDA traversal as a backend).

Marching follows nerfacc's ``traverse_grids`` with a positive step size: along each unit-speed ray the
step sequence starts at the near plane (plus a random fraction of a step when stratified) and advances
by ``dt(s) = clamp(s * cone_angle, step_size, 1e10)``; an interval ``[s_k, s_{k+1}]`` becomes a sample
when its midpoint lies inside the grid, inside ``[near, far)`` and in an occupied cell of the finest
level containing it. With ``cone_angle = 0`` the samples equal nerfacc's. (nerfacc holds ``dt``
constant while skipping an empty cell; with ``cone_angle > 0`` its samples behind empty space can sit a
fraction of a step away from the exact rule used here.)

Instead of a serial walk per ray, the step index range covering each ray's box segment is computed in
closed form and all candidate intervals are tested at once ([n_rays, max_steps] block, in chunks).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from neural3d.core.packing import packed_info_from_ray_indices
from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples
from neural3d.render.packed import visibility_packed
from neural3d.samplers import cpu_march
from neural3d.samplers.aabb import ray_aabb_intersect
from neural3d.samplers.empty_space import block_half_limit, block_steps, dilated_binaries, near_occupied
from neural3d.samplers.occupancy_grid import OccupancyGrid


class StepRule:
    """The marching step sequence ``s_{k+1} = s_k + clamp(s_k * cone_angle, step_size, inf)`` in closed form.

    Linear steps of ``step_size`` while ``s <= step_size / cone_angle``, geometric growth by
    ``1 + cone_angle`` afterwards.

    Args:
        s0: [n_rays] first step start (the near plane, possibly jittered).
        step_size: minimum step (world units).
        cone_angle: step growth with distance (0: uniform steps).
    """

    def __init__(self, s0: Tensor, step_size: float, cone_angle: float) -> None:
        self.s0, self.step, self.cone = s0, step_size, cone_angle
        if cone_angle > 0:
            knee = step_size / cone_angle
            # number of linear steps: first k with s0 + k * step > knee
            self.k1 = torch.where(s0 > knee, torch.zeros_like(s0), torch.floor((knee - s0) / step_size) + 1)
            self.s1 = s0 + self.k1 * step_size
            self.log_growth = math.log1p(cone_angle)

    def start(self, k: Tensor) -> Tensor:
        """[n_rays, m] float step indices -> [n_rays, m] step starts ``s_k``."""
        lin = self.s0[:, None] + k * self.step
        if self.cone <= 0:
            return lin
        geo = self.s1[:, None] * torch.exp((k - self.k1[:, None]) * self.log_growth)
        return torch.where(k <= self.k1[:, None], lin, geo)

    def index(self, s: Tensor) -> Tensor:
        """[n_rays] positions -> [n_rays] real-valued step index ``k`` with ``s_k = s`` (inverse of ``start``)."""
        lin = (s - self.s0) / self.step
        if self.cone <= 0:
            return lin
        geo = self.k1 + torch.log(torch.clamp(s / self.s1, min=1e-30)) / self.log_growth
        return torch.where(s <= self.s1, lin, geo)


def _candidate_range(rule: StepRule, lo: Tensor, hi: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """First candidate index and count per ray so that every step whose midpoint is in [lo, hi) is covered."""
    k_lo = torch.floor(rule.index(lo)) - 1
    k_hi = torch.ceil(rule.index(hi)) + 1
    k_lo = torch.where(valid, k_lo.clamp_min(0), torch.zeros_like(k_lo))
    count = torch.where(valid, (k_hi - k_lo + 1).clamp_min(0), torch.zeros_like(k_hi))
    return k_lo, count.long()


@torch.no_grad()
def march_rays(
    rays: RayBundle,
    grid: OccupancyGrid | None,
    *,
    step_size: float,
    cone_angle: float = 0.0,
    stratified: bool = False,
    aabb: Tensor | None = None,
    chunk_steps: int = 1 << 22,
    skip_empty: bool = True,
    backend: str = "auto",
) -> PackedRaySamples:
    """March rays through an occupancy grid.

    Args:
        rays: [n_rays] rays; ``nears``/``fars`` in ``t`` units of ``rays.directions``.
        grid: the occupancy grid (None: every cell of ``aabb`` is occupied, i.e. uniform marching).
        step_size: minimum step along the *unit-length* ray (world units).
        cone_angle: step growth with distance (instant-ngp uses 1/256 for large scenes; 0 for objects).
        stratified: shift each ray's step sequence by a random fraction of a step (training).
        aabb: [6] box to march in when ``grid`` is None.
        chunk_steps: candidate intervals tested per chunk (bounds memory).
        skip_empty: test blocks of steps against the dilated grid first (:mod:`.empty_space`); the samples are
            the same as without, bit for bit.
        backend: ``torch``, ``cpu`` (the C kernel :mod:`.cpu_march`: same samples bit for bit; an occupancy grid,
            ``cone_angle == 0`` and float32 CPU rays) or ``auto`` (the kernel where it applies and builds).
    Returns:
        packed samples (intervals in ``t`` units of ``rays.directions``), sorted per ray.
    """
    dev = rays.origins.device
    dnorm = torch.linalg.norm(rays.directions, dim=-1).clamp_min(1e-12)
    unit = rays.directions / dnorm[:, None]
    near, far = rays.nears * dnorm, rays.fars * dnorm
    outer = grid.aabbs[-1] if grid is not None else torch.as_tensor(aabb, device=dev, dtype=torch.float32).reshape(6)
    t_in, t_out, hit = ray_aabb_intersect(rays.origins, unit, outer)
    lo, hi = torch.maximum(t_in[:, 0], near), torch.minimum(t_out[:, 0], far)
    valid = hit[:, 0] & (hi > lo)
    s0 = near + (torch.rand_like(near) * step_size if stratified else 0.0)
    rule = StepRule(s0, step_size, cone_angle)
    k_lo, count = _candidate_range(rule, torch.where(valid, lo, s0), torch.where(valid, hi, s0), valid)

    march = _Candidates(rays, unit, dnorm, lo, hi, grid, rule)
    blocks = block_steps(grid, step_size) if grid is not None and skip_empty else 1
    if cpu_march.applies(backend, rays.origins.device, rays.origins.dtype, cone_angle, grid):
        dilated = dilated_binaries(grid) if blocks > 1 else None
        found = [cpu_march.march_cpu(march, k_lo, count, step_size, blocks, block_half_limit(grid), dilated)]
    elif blocks > 1:
        found = march.blocks(k_lo, count, blocks, chunk_steps)
    else:
        found = [march.keep(ids, k_lo[ids], count[ids]) for ids in _ray_chunks(count, chunk_steps)]
    return _packed(rays, [f[0] for f in found], [f[1] for f in found], [f[2] for f in found])


class _Candidates:
    """The exact per-step test of :func:`march_rays` and the block test before it (:mod:`.empty_space`)."""

    def __init__(self, rays: RayBundle, unit: Tensor, dnorm: Tensor, lo: Tensor, hi: Tensor, grid, rule: StepRule):
        self.rays, self.unit, self.dnorm, self.lo, self.hi, self.grid, self.rule = rays, unit, dnorm, lo, hi, grid, rule

    def keep(self, rows: Tensor, first: Tensor, count: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Test candidates ``first + j`` for ``j < count`` of the rays ``rows`` [m] (a ray may repeat).

        Args:
            rows: [m] ray of each row.
            first: [m] float step index of each row's first candidate.
            count: [m] candidates left in the ray from ``first`` (rows test at most the block width).
        Returns:
            (ray ids, starts, ends) of the samples, sorted by row then step.
        """
        width = int(count.max()) if len(rows) else 0
        if width == 0:
            empty = self.lo.new_zeros(0)
            return rows.new_zeros(0), empty, empty
        j = torch.arange(width, device=rows.device)
        k = first[:, None] + j.to(first.dtype)  # [m, width]
        sub = StepRule(self.rule.s0[rows], self.rule.step, self.rule.cone)
        s_a, s_b = sub.start(k), sub.start(k + 1)
        mid = 0.5 * (s_a + s_b)
        keep = (j < count[:, None]) & (mid >= self.lo[rows, None]) & (mid < self.hi[rows, None])
        if self.grid is not None:
            pts = self.rays.origins[rows, None, :] + mid[..., None] * self.unit[rows, None, :]
            keep &= self.grid.occupied(pts.reshape(-1, 3)).view_as(keep)
        flat = keep.reshape(-1).nonzero()[:, 0]  # row-major: r * width + c
        ray = rows.index_select(0, torch.div(flat, width, rounding_mode="floor"))
        dnorm = self.dnorm.index_select(0, ray)
        return ray, s_a.reshape(-1).index_select(0, flat) / dnorm, s_b.reshape(-1).index_select(0, flat) / dnorm

    def blocks(self, k_lo: Tensor, count: Tensor, size: int, chunk_steps: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Test blocks of ``size`` steps against the dilated grid, then the steps of the blocks that pass."""
        dilated = dilated_binaries(self.grid)
        half_limit = block_half_limit(self.grid)
        n_blocks = torch.div(count + size - 1, size, rounding_mode="floor")
        found = []
        for ids in _ray_chunks(n_blocks, max(1, chunk_steps // size)):
            width = int(n_blocks[ids].max()) if len(ids) else 0
            if width == 0:
                continue
            b = torch.arange(width, device=ids.device)
            first = b * size  # [width] offset of each block's first step in the ray's range
            k_a = k_lo[ids, None] + first.to(k_lo.dtype)
            k_b = k_lo[ids, None] + torch.minimum(first + size, count[ids, None]).to(k_lo.dtype)
            sub = StepRule(self.rule.s0[ids], self.rule.step, self.rule.cone)
            s_a, s_b = sub.start(k_a), sub.start(k_b)
            centre, half = 0.5 * (s_a + s_b), 0.5 * (s_b - s_a)
            pts = self.rays.origins[ids, None, :] + centre[..., None] * self.unit[ids, None, :]
            near = near_occupied(self.grid, dilated, pts.reshape(-1, 3)).view_as(half)
            maybe = (b < n_blocks[ids, None]) & ((half > half_limit) | near)
            r, c = maybe.nonzero(as_tuple=True)
            left = (count[ids[r]] - first[c]).clamp_max(size)
            found.append(self.keep(ids[r], k_a[r, c], left))
        return found


def _ray_chunks(count: Tensor, budget: int) -> list[Tensor]:
    """Split ray indices into consecutive groups whose padded candidate blocks stay under ``budget``."""
    n = len(count)
    width = max(int(count.max()) if n else 0, 1)
    per = max(1, budget // width)
    return [torch.arange(i, min(i + per, n), device=count.device) for i in range(0, n, per)]


def _packed(rays: RayBundle, ray_ids: list[Tensor], starts: list[Tensor], ends: list[Tensor]) -> PackedRaySamples:
    dev = rays.origins.device
    if ray_ids:
        ri, st, en = torch.cat(ray_ids), torch.cat(starts), torch.cat(ends)
    else:
        ri = torch.zeros(0, dtype=torch.long, device=dev)
        st = en = torch.zeros(0, device=dev)
    return PackedRaySamples(rays, st, en, ri, packed_info_from_ray_indices(ri, len(rays)))


@torch.no_grad()
def prune_samples(
    samples: PackedRaySamples,
    density_fn: Callable[[Tensor], Tensor],
    *,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    chunk: int = 1 << 18,
) -> PackedRaySamples:
    """Drop samples behind opaque space or of negligible alpha, from a gradient-free density pass.

    Args:
        density_fn: [n, 3] positions -> [n, 1] density.
        early_stop_eps: transmittance below which the rest of a ray is dropped.
        alpha_thre: samples with alpha below this are dropped (0: keep all).
    """
    if samples.n_samples == 0 or (early_stop_eps <= 0 and alpha_thre <= 0):
        return samples
    pos = samples.positions
    density = torch.cat([density_fn(p)[:, 0] for p in pos.split(chunk)])
    keep = visibility_packed(
        density.float(),
        samples.distances,
        samples.ray_indices,
        samples.packed_info,
        early_stop_eps=early_stop_eps,
        alpha_thre=alpha_thre,
    )
    return samples.mask(keep)
