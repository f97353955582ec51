"""Fused hash encoding for CPU tensors: a small C kernel (``cpu_hash.c``), compiled on first use, called by ctypes.

The PyTorch reference (:func:`neural3d.fields.hashgrid.hash_encode`) materialises ``[n, L, 8]`` corner indices
and weights and runs a gather, an 8-tap ``bmm`` and an ``index_add`` backward; the fused kernel computes each
point's corners in registers, so forward + backward run several times faster on a CPU (``benchmarks/``). On
x86-64 CPUs with AVX-512 the forward pass does 16 points per instruction with the same arithmetic (bit-identical
outputs; :func:`set_simd` switches it off).
Same indices and weights as the reference (tiny-cuda-nn's ``kernel_grid``); outputs agree to float rounding
(the 8-tap sums are accumulated in a fixed order rather than by ``bmm``).

Building, caching and verifying the library is :mod:`neural3d.fields.backends.c_build` (shared with the
TensoRF kernel): a C compiler (``$CC``, else ``cc``/``gcc``/``clang``) with OpenMP when it has it, the library
cached under ``$NEURAL3D_CACHE_DIR/cpu_hash`` by a hash of the source and the flags, written atomically with a
size + SHA-256 record that is checked before every load (a damaged library is rebuilt, with a warning).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from neural3d.fields.backends import level_tensors
from neural3d.fields.backends.c_build import (
    FLAGS,
    OPENMP,
    CKernel,
    CpuKernelUnavailable,
    find_compiler,
    library_loader,
    loads,
    record_path,
    verify_cached,
)

__all__ = [
    "CpuKernelUnavailable",
    "available",
    "cache_dir",
    "cpu_hash_encode",
    "find_compiler",
    "library_path",
    "load_library",
    "record_path",
    "verify_cached",
]

_SOURCE = Path(__file__).with_name("cpu_hash.c")
_FLAGS = FLAGS
_OPENMP = OPENMP


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    layout = [p, p, p, p, p, i64, i64, i32]  # scales, res, sizes, offsets, hashed, n_levels, F, n_threads
    lib.n3d_hash_forward.argtypes = [p, p, p, i64, *layout]
    lib.n3d_hash_backward_table.argtypes = [p, p, p, i64, *layout]
    lib.n3d_hash_backward_x.argtypes = [p, p, p, p, i64, *layout]
    for fn in (lib.n3d_hash_forward, lib.n3d_hash_backward_table, lib.n3d_hash_backward_x):
        fn.restype = None
    lib.n3d_hash_simd.argtypes, lib.n3d_hash_simd.restype = [], ctypes.c_int
    lib.n3d_hash_set_simd.argtypes, lib.n3d_hash_set_simd.restype = [ctypes.c_int], None


def simd_enabled() -> bool:
    """Whether the forward pass runs the AVX-512 path (x86-64 CPUs with AVX-512F; bit-identical to the scalar one)."""
    return bool(load_library().n3d_hash_simd())


def set_simd(enabled: bool) -> None:
    """Switch the AVX-512 forward path on (where the CPU has it) or off (the scalar path; tests compare the two)."""
    load_library().n3d_hash_set_simd(int(enabled))


_KERNEL = CKernel.beside(
    __file__,
    purpose="the 'cpu' hash-grid backend; use backend 'torch'",
    declare=_declare,
)


def cache_dir() -> Path:
    return _KERNEL.cache_dir()


def _build(compiler: str, flags: list[str], target: Path) -> None:
    """Compile into a temp file, then move it to ``target`` and write its record (both atomically)."""
    _KERNEL.build(compiler, flags, target)


def library_path(compiler: str, flags: list[str]) -> Path:
    """Where the library built by ``compiler`` with ``flags`` from the current source is cached."""
    return _KERNEL.library_path(compiler, flags)


load_library = library_loader(_KERNEL, lambda: find_compiler())  # (looked up here: tests replace it)
"""Build (once per source version) and load the kernel library; CpuKernelUnavailable if it cannot be."""


def available() -> bool:
    """Whether the kernel builds and loads here (the result is cached)."""
    return loads(load_library)


def _layout_args(layout) -> list:
    return [t.data_ptr() for t in level_tensors(layout, torch.device("cpu"))] + [
        layout.n_levels,
        layout.n_features,
        max(torch.get_num_threads(), 1),
    ]


class _CpuHashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, layout) -> Tensor:
        x32 = x.detach().contiguous().float()
        table32 = table.detach().contiguous().float()
        n = x32.shape[0]
        out = torch.empty(n, layout.n_levels * layout.n_features, dtype=torch.float32)
        if n > 0:
            load_library().n3d_hash_forward(
                x32.data_ptr(), table32.data_ptr(), out.data_ptr(), n, *_layout_args(layout)
            )
        ctx.save_for_backward(x32, table32)
        ctx.layout, ctx.table_dtype, ctx.x_dtype = layout, table.dtype, x.dtype
        return out.to(table.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x32, table32 = ctx.saved_tensors
        layout, lib, n = ctx.layout, load_library(), x32.shape[0]
        g = grad_out.contiguous().float()
        gx = gtable = None
        if ctx.needs_input_grad[1]:
            gtable = torch.zeros_like(table32)
            if n > 0:
                lib.n3d_hash_backward_table(x32.data_ptr(), g.data_ptr(), gtable.data_ptr(), n, *_layout_args(layout))
            gtable = gtable.to(ctx.table_dtype)
        if ctx.needs_input_grad[0]:
            gx = torch.zeros_like(x32)
            if n > 0:
                lib.n3d_hash_backward_x(
                    x32.data_ptr(), table32.data_ptr(), g.data_ptr(), gx.data_ptr(), n, *_layout_args(layout)
                )
            gx = gx.to(ctx.x_dtype)
        return gx, gtable, None


def cpu_hash_encode(positions01: Tensor, table: Tensor, layout) -> Tensor:
    """Fused hash encoding of CPU tensors; same contract as :func:`neural3d.fields.hashgrid.hash_encode`.

    Args:
        positions01: [n, 3] CPU positions in [0, 1]^3 (computed in fp32).
        table: [n_rows, F] CPU feature table (computed in fp32, output cast back to its dtype).
        layout: :class:`~neural3d.fields.hashgrid.GridLayout`.
    Returns:
        [n, n_levels * F] features, channel ``l * F + f``; differentiable in the table and the positions.
    """
    if positions01.device.type != "cpu" or table.device.type != "cpu":
        raise ValueError(
            f"cpu_hash.py: the 'cpu' hash-grid backend needs CPU tensors, got positions on "
            f"{positions01.device} and the table on {table.device}"
        )
    return _CpuHashEncode.apply(positions01, table, layout)
