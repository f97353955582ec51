"""Fused multiresolution hash encoding in Triton: forward, and backward into the table (atomic adds) and positions.

Same indexing as the PyTorch reference :func:`neural3d.fields.hashgrid.hash_encode` (tiny-cuda-nn's
``kernel_grid``): ``pos = fma(x, scale_l, 0.5)``, ``cell = floor(pos)``, dense levels
``(x + y res + z res^2) mod 2^32 mod rows``, hashed levels ``(x ^ y 2654435761 ^ z 805459861) mod 2^32 mod rows``.
Index arithmetic runs in int64 and is masked to 32 bits, which equals tcnn's uint32 wrap-around.

One program handles ``BLOCK`` points of one level (grid ``[cdiv(n, BLOCK), n_levels]``); the 8 corners are
unrolled, each gathering a ``[BLOCK, F]`` tile of the table. The backward pass scatters
``w_c * dL/dout`` into the table gradient with ``atomic_add`` and, when the positions need a gradient,
accumulates ``scale_l * sum_c dw_c/dpos * <table_c, dL/dout>`` into ``[n, 3]`` (atomic adds across levels).

CUDA tensors run compiled kernels; CPU tensors run Triton's interpreter (for tests; slow). ``triton`` is
imported on first use only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from functools import lru_cache

import torch
from torch import Tensor

from neural3d.fields.backends import level_tensors

_BLOCK_GPU = 128
_BLOCK_INTERPRETER = 4096


def _kernel_sources():
    import triton.language as tl

    def _fwd(
        x_ptr,
        table_ptr,
        out_ptr,
        scales_ptr,
        res_ptr,
        sizes_ptr,
        offs_ptr,
        hashed_ptr,
        n,
        n_levels,
        F: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        level = tl.program_id(1)
        p = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64 offsets: large batches
        m = p < n
        scale = tl.load(scales_ptr + level)
        res = tl.load(res_ptr + level)
        size = tl.load(sizes_ptr + level)
        off = tl.load(offs_ptr + level)
        hashed = tl.load(hashed_ptr + level)
        pos0 = tl.fma(tl.load(x_ptr + p * 3 + 0, mask=m, other=0.0), scale, 0.5)
        pos1 = tl.fma(tl.load(x_ptr + p * 3 + 1, mask=m, other=0.0), scale, 0.5)
        pos2 = tl.fma(tl.load(x_ptr + p * 3 + 2, mask=m, other=0.0), scale, 0.5)
        fl0, fl1, fl2 = tl.floor(pos0), tl.floor(pos1), tl.floor(pos2)
        f0, f1, f2 = pos0 - fl0, pos1 - fl1, pos2 - fl2
        c0, c1, c2 = fl0.to(tl.int64), fl1.to(tl.int64), fl2.to(tl.int64)
        fo = tl.arange(0, F)
        acc = tl.zeros([BLOCK, F], dtype=tl.float32)
        for c in tl.static_range(8):
            b0, b1, b2 = c & 1, (c >> 1) & 1, (c >> 2) & 1
            ix, iy, iz = c0 + b0, c1 + b1, c2 + b2
            w = (
                (b0 * f0 + (1 - b0) * (1.0 - f0))
                * (b1 * f1 + (1 - b1) * (1.0 - f1))
                * (b2 * f2 + (1 - b2) * (1.0 - f2))
            )
            dense = (ix + iy * res + iz * (res * res)) & 0xFFFFFFFF
            hsh = (ix & 0xFFFFFFFF) ^ ((iy * 2654435761) & 0xFFFFFFFF) ^ ((iz * 805459861) & 0xFFFFFFFF)
            row = off + tl.where(hashed != 0, hsh, dense) % size
            vals = tl.load(table_ptr + (row * F)[:, None] + fo[None, :], mask=m[:, None], other=0.0)
            acc += w[:, None] * vals
        tl.store(out_ptr + (p * (n_levels * F) + level * F)[:, None] + fo[None, :], acc, mask=m[:, None])

    def _bwd(
        x_ptr,
        table_ptr,
        gout_ptr,
        gtable_ptr,
        gx_ptr,
        scales_ptr,
        res_ptr,
        sizes_ptr,
        offs_ptr,
        hashed_ptr,
        n,
        n_levels,
        F: tl.constexpr,
        BLOCK: tl.constexpr,
        TABLE_GRAD: tl.constexpr,
        X_GRAD: tl.constexpr,
    ):
        level = tl.program_id(1)
        p = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64 offsets: large batches
        m = p < n
        scale = tl.load(scales_ptr + level)
        res = tl.load(res_ptr + level)
        size = tl.load(sizes_ptr + level)
        off = tl.load(offs_ptr + level)
        hashed = tl.load(hashed_ptr + level)
        pos0 = tl.fma(tl.load(x_ptr + p * 3 + 0, mask=m, other=0.0), scale, 0.5)
        pos1 = tl.fma(tl.load(x_ptr + p * 3 + 1, mask=m, other=0.0), scale, 0.5)
        pos2 = tl.fma(tl.load(x_ptr + p * 3 + 2, mask=m, other=0.0), scale, 0.5)
        fl0, fl1, fl2 = tl.floor(pos0), tl.floor(pos1), tl.floor(pos2)
        f0, f1, f2 = pos0 - fl0, pos1 - fl1, pos2 - fl2
        c0, c1, c2 = fl0.to(tl.int64), fl1.to(tl.int64), fl2.to(tl.int64)
        fo = tl.arange(0, F)
        g = tl.load(gout_ptr + (p * (n_levels * F) + level * F)[:, None] + fo[None, :], mask=m[:, None], other=0.0)
        gp0 = tl.zeros([BLOCK], dtype=tl.float32)
        gp1 = tl.zeros([BLOCK], dtype=tl.float32)
        gp2 = tl.zeros([BLOCK], dtype=tl.float32)
        for c in tl.static_range(8):
            b0, b1, b2 = c & 1, (c >> 1) & 1, (c >> 2) & 1
            ix, iy, iz = c0 + b0, c1 + b1, c2 + b2
            w0 = b0 * f0 + (1 - b0) * (1.0 - f0)
            w1 = b1 * f1 + (1 - b1) * (1.0 - f1)
            w2 = b2 * f2 + (1 - b2) * (1.0 - f2)
            dense = (ix + iy * res + iz * (res * res)) & 0xFFFFFFFF
            hsh = (ix & 0xFFFFFFFF) ^ ((iy * 2654435761) & 0xFFFFFFFF) ^ ((iz * 805459861) & 0xFFFFFFFF)
            row = off + tl.where(hashed != 0, hsh, dense) % size
            ptrs = (row * F)[:, None] + fo[None, :]
            if TABLE_GRAD:
                tl.atomic_add(gtable_ptr + ptrs, (w0 * w1 * w2)[:, None] * g, mask=m[:, None])
            if X_GRAD:
                dot = tl.sum(tl.load(table_ptr + ptrs, mask=m[:, None], other=0.0) * g, axis=1)
                gp0 += (2 * b0 - 1) * w1 * w2 * dot
                gp1 += (2 * b1 - 1) * w0 * w2 * dot
                gp2 += (2 * b2 - 1) * w0 * w1 * dot
        if X_GRAD:
            tl.atomic_add(gx_ptr + p * 3 + 0, gp0 * scale, mask=m)
            tl.atomic_add(gx_ptr + p * 3 + 1, gp1 * scale, mask=m)
            tl.atomic_add(gx_ptr + p * 3 + 2, gp2 * scale, mask=m)

    return _fwd, _bwd


@lru_cache(maxsize=1)
def _kernels():
    """(forward, backward, interpreted): ``triton.jit`` kernels, interpreted when triton was imported with
    ``TRITON_INTERPRET=1`` (Triton decides this at import time)."""
    import triton
    import triton.language as tl

    fwd, bwd = _kernel_sources()
    return triton.jit(fwd), triton.jit(bwd), type(tl.zeros).__name__ == "InterpretedFunction"


def _device_guard(device: torch.device):
    """The CUDA current-device guard for launches on ``device`` (no-op for the interpreter)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _launch_args(x: Tensor, layout):
    """((fwd, bwd), BLOCK, grid) for ``x`` [n, 3]. CPU tensors need Triton's interpreter: it is switched on
    here (``TRITON_INTERPRET=1``) if triton is not imported yet, otherwise a ValueError explains it."""
    cpu = x.device.type != "cuda"
    if cpu and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    fwd, bwd, interpreted = _kernels()
    if cpu and not interpreted:
        raise ValueError(
            "triton_hash.py: the triton backend on CPU tensors needs Triton's interpreter: set "
            "TRITON_INTERPRET=1 before triton is imported (or use backend 'torch' on CPU)"
        )
    block = _BLOCK_INTERPRETER if interpreted else _BLOCK_GPU
    grid = ((x.shape[0] + block - 1) // block, layout.n_levels)
    return (fwd, bwd), block, grid


class _TritonHashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, layout) -> Tensor:
        x = x.contiguous().float()
        table32 = table.contiguous().float()
        n = x.shape[0]
        out = torch.empty(n, layout.n_levels * layout.n_features, dtype=torch.float32, device=x.device)
        (fwd, _), block, grid = _launch_args(x, layout)
        if n > 0:
            with _device_guard(x.device):
                fwd[grid](
                    x,
                    table32,
                    out,
                    *level_tensors(layout, x.device),
                    n,
                    layout.n_levels,
                    F=layout.n_features,
                    BLOCK=block,
                )
        ctx.save_for_backward(x, table32)
        ctx.layout, ctx.table_dtype = layout, table.dtype
        return out.to(table.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, table32 = ctx.saved_tensors
        layout = ctx.layout
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g = grad_out.contiguous().float()
        gtable = torch.zeros_like(table32) if need_table else table32.new_zeros(1)
        gx = torch.zeros_like(x) if need_x else x.new_zeros(1)
        n = x.shape[0]
        (_, bwd), block, grid = _launch_args(x, layout)
        if n > 0 and (need_x or need_table):
            with _device_guard(x.device):
                bwd[grid](
                    x,
                    table32,
                    g,
                    gtable,
                    gx,
                    *level_tensors(layout, x.device),
                    n,
                    layout.n_levels,
                    F=layout.n_features,
                    BLOCK=block,
                    TABLE_GRAD=bool(need_table),
                    X_GRAD=bool(need_x),
                )
        return (gx if need_x else None), (gtable.to(ctx.table_dtype) if need_table else None), None


def triton_hash_encode(positions01: Tensor, table: Tensor, layout) -> Tensor:
    """Fused hash encoding; same contract as :func:`neural3d.fields.hashgrid.hash_encode`.

    Args:
        positions01: [n, 3] positions in [0, 1]^3 (computed in fp32).
        table: [n_rows, F] feature table (computed in fp32, output cast back to its dtype).
        layout: :class:`~neural3d.fields.hashgrid.GridLayout`.
    Returns:
        [n, n_levels * F] features, channel ``l * F + f``.
    """
    return _TritonHashEncode.apply(positions01, table, layout)
