"""Occupancy marching of CPU rays by a small C kernel (``cpu_march.c``): the samples of the torch march, bit for bit.

:func:`neural3d.samplers.marching.march_rays` lays every ray's candidate blocks out in a padded ``[rays, blocks]``
tensor and runs a dozen element-wise passes over it; the kernel walks each ray's blocks and steps in registers
(same float32 arithmetic in the same order, no fused multiply-adds), so a 100x100 frame marches in a few
milliseconds instead of tens. It covers uniform steps (``cone_angle == 0``) on float32 CPU tensors; other
marches stay in torch. Built and cached like the hash-grid kernel (:mod:`neural3d.fields.backends.c_build`).
"""

from __future__ import annotations

import ctypes
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from neural3d.fields.backends.c_build import CKernel, find_compiler, library_loader, loads

MARCH_BACKENDS = ("auto", "torch", "cpu")
"""``auto``: the kernel where it applies and builds, else torch."""


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
    # origins, unit, s0, lo, hi, dnorm, k_lo, count, n_rays, step, block, half_limit, aabbs, binaries, dilated,
    # levels, res, counts, spans, offsets, ray_out, start_out, end_out, n_threads
    lib.n3d_march.argtypes = [p] * 8 + [i64, f32, i64, f32, p, p, p, i64, i64, p, p, p, p, p, p, i32]
    lib.n3d_march.restype = None


_KERNEL = CKernel(
    source=Path(__file__).with_name("cpu_march.c"),
    prefix="n3d_march",
    folder="cpu_march",
    owner="cpu_march.py",
    purpose="the 'cpu' marching backend; use march backend 'torch'",
    declare=_declare,
    extra_flags=("-ffp-contract=off",),
)

load_library = library_loader(_KERNEL, find_compiler)
"""Build (once per source version) and load the kernel library; CpuKernelUnavailable if it cannot be."""


available = partial(loads, load_library)
"""``available()``: whether the kernel builds and loads here (the result is cached)."""


def applies(backend: str, device: torch.device, dtype: torch.dtype, cone_angle: float, grid) -> bool:
    """Whether ``march_rays`` takes the kernel for rays of ``dtype`` on ``device``: backend ``cpu``/``auto``, an
    occupancy grid, uniform steps, float32 CPU rays, and (``auto``) a kernel that builds. ValueError for an unknown
    backend or a ``cpu`` that cannot be."""
    if backend not in MARCH_BACKENDS:
        raise ValueError(f"cpu_march.py: march backend must be one of {MARCH_BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    fits = grid is not None and cone_angle == 0 and device.type == "cpu" and dtype == torch.float32
    if backend == "cpu" and not fits:
        raise ValueError("cpu_march.py: march backend 'cpu' needs an occupancy grid, cone_angle 0 and float32 CPU rays")
    return fits and (backend == "cpu" or available())


def march_cpu(
    march,
    k_lo: Tensor,
    count: Tensor,
    step_size: float,
    block: int,
    half_limit: float,
    dilated: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The samples of ``march`` (a ``marching._Candidates``) by the kernel.

    Args:
        k_lo: [n_rays] float first candidate step; count: [n_rays] int64 candidates.
        block: steps per block tested against ``dilated`` ([L, R + 2, R + 2, R + 2] bool) first; ``dilated`` None
            (or ``block`` 1): every candidate step is tested.
        half_limit: blocks longer than twice this are tested step by step.
    Returns:
        (ray ids [n] int64, starts [n], ends [n] in ``t`` units of the rays' directions), sorted by ray then step.
    """
    lib, grid = load_library(), march.grid
    n_rays = len(count)
    f32 = [t.detach().float().contiguous() for t in (march.rays.origins, march.unit)]
    per_ray = [t.detach().float().contiguous() for t in (march.rule.s0, march.lo, march.hi, march.dnorm, k_lo)]
    count = count.to(torch.int64).contiguous()
    aabbs = grid.aabbs.detach().float().contiguous()
    binaries = grid.binaries.contiguous().view(torch.uint8)  # bool storage read as bytes: no copy
    use_blocks = dilated is not None and block > 1
    dil = dilated.contiguous().view(torch.uint8) if use_blocks else binaries
    counts, spans = torch.zeros(n_rays, dtype=torch.int64), torch.zeros(n_rays, 2, dtype=torch.int64)
    threads = max(torch.get_num_threads(), 1)
    pointers = [t.data_ptr() for t in (*f32, *per_ray, count)]
    grid_args = [aabbs.data_ptr(), binaries.data_ptr(), dil.data_ptr(), grid.levels, grid.resolution]
    blocks = [block if use_blocks else 1, half_limit if use_blocks else -1.0]
    lib.n3d_march(
        *pointers, n_rays, step_size, *blocks, *grid_args, counts.data_ptr(), spans.data_ptr(), *[None] * 4, threads
    )
    offsets = torch.cumsum(counts, 0) - counts
    total = int(counts.sum())
    ray_ids = torch.empty(total, dtype=torch.int64)
    starts, ends = torch.empty(total), torch.empty(total)
    if total:
        lib.n3d_march(
            *pointers,
            n_rays,
            step_size,
            *blocks,
            *grid_args,
            counts.data_ptr(),
            spans.data_ptr(),
            offsets.data_ptr(),
            ray_ids.data_ptr(),
            starts.data_ptr(),
            ends.data_ptr(),
            threads,
        )
    return ray_ids, starts, ends
