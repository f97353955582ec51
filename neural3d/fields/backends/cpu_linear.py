"""Inference matrix products on the CPU through oneDNN, in row blocks that stay in cache.

``F.linear`` on float32 CPU tensors calls MKL's sgemm. On this project's CPUs (AMD Zen 5, AVX-512) that runs the
render's MLPs at 20-80 GFLOP/s. PyTorch also ships oneDNN, whose JIT kernels use AVX-512 on any vendor's CPU; fed
blocks of a few thousand rows per thread, with the ReLU fused into the product, it runs the same layers 2.8-5.4x
faster (``benchmarks/bench_cpu_linear.py``; BENCHMARKS.md "The render path in session 14"). Each block passes
through every layer before the next block starts, so the hidden activations stay in the L2 cache.

Used only where no gradient is recorded and the input is a float32 CPU tensor (rendering, evaluation, the
occupancy grid's density queries); training keeps ``F.linear``. The values are the same products summed in a
different order: they differ from ``F.linear`` by float32 rounding (a few 1e-8 on unit-scale outputs).

A partial last block is padded to a multiple of :data:`PAD_ROWS` rows, so oneDNN sees a fixed set of shapes and
compiles each kernel once (it JIT-compiles and caches one primitive per shape); fewer rows go through
``F.linear``. :func:`set_enabled` switches the path off (``NEURAL3D_ONEDNN=0`` in the environment does too);
where the PyTorch build has no oneDNN linear op, or the op fails once, the module falls back to ``F.linear`` for
the rest of the process.

:func:`linear` is the single-layer form for callers that already work in cache-sized blocks of a few fixed row
counts (GNT's fused inference): one oneDNN call on all rows, no blocks, no padding, optionally with the ReLU or a
residual addition fused; products too small to pay oneDNN's call overhead (about 14 us against 3 us) go through
``F.linear``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BLOCK_ROWS_PER_THREAD", "MIN_FLOPS", "applies", "enabled", "linear", "linear_stack", "set_enabled"]

BLOCK_ROWS_PER_THREAD = 4096
"""Rows per block and intra-op thread. Each block runs through every layer before the next: 4,096 rows of a
128-wide layer are 2 MB. Measured on 8,192-row inputs (the render's chunk), one thread: blocks of 512-2,048 rows
lose to call overheads on the narrow ngp layers (32 -> 64 -> 16: 39 / 30 / 25 ms vs 19 ms at 4,096), the
150 -> 128 -> 128 -> 3 TensoRF MLP is flat from 1,024 to 4,096 (47-50 ms vs 99 ms through ``F.linear``)."""

PAD_ROWS = 512
"""A partial last block is padded to a multiple of this many rows, so oneDNN sees at most
``BLOCK_ROWS_PER_THREAD * threads / PAD_ROWS`` shapes per layer (it JIT-compiles and caches a kernel per shape:
0.4-0.7 ms the first time). Fewer rows than this go through ``F.linear``."""

MIN_FLOPS = 2_000_000
""":func:`linear` calls oneDNN for products of at least this many FLOPs (``2 * rows * in * out``). Measured, one
thread: 256 x 64 -> 64 (2.1 MFLOP) takes 28 us through ``F.linear`` and 30 us through oneDNN, 448 x 64 -> 256
(14.7 MFLOP) 204 vs 98 us, 64 x 9 -> 64 (74 kFLOP) 3.6 vs 15 us (oneDNN's fixed cost per call)."""

_log = logging.getLogger("neural3d.backends")
_state = {"enabled": os.environ.get("NEURAL3D_ONEDNN", "1") != "0", "failed": False}

Layer = tuple[Tensor, "Tensor | None"]
"""``(weight [out, in], bias [out] or None)``, as ``nn.Linear`` holds them."""


def _op_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def set_enabled(on: bool) -> None:
    """Switch the oneDNN path on or off (for comparisons; on by default where the op exists)."""
    _state["enabled"] = bool(on)


def enabled() -> bool:
    """Whether :func:`linear_stack` uses oneDNN (switched on, the op exists, and it has not failed)."""
    return _state["enabled"] and not _state["failed"] and _op_available()


def _eligible(x: Tensor, weights: Sequence[Tensor]) -> bool:
    """No gradient recorded, ``x`` and every weight float32 CPU tensors, oneDNN enabled."""
    return (
        not torch.is_grad_enabled()
        and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in (x, *weights))
        and enabled()
    )


def _give_up(err: RuntimeError) -> None:
    """A build whose oneDNN op rejects these arguments: ``F.linear`` for the rest of the process."""
    _state["failed"] = True
    _log.warning("cpu_linear: oneDNN linear failed (%s); using F.linear from now on", err)


def applies(x: Tensor, layers: Sequence[Layer]) -> bool:
    """Whether ``x`` through ``layers`` takes the oneDNN path: no gradient recorded, float32 CPU input and
    weights, at least :data:`PAD_ROWS` rows, oneDNN enabled."""
    return x.numel() >= PAD_ROWS * x.shape[-1] and _eligible(x, [w for w, _ in layers])


def linear_stack(layers: Sequence[Layer], x: Tensor, *, relu: bool = True) -> Tensor:
    """``x`` through the linear ``layers`` with ReLU between them (none after the last; none at all without
    ``relu``), by oneDNN in row blocks.

    Args:
        layers: ``(weight [out, in], bias [out] | None)`` per layer, consecutive widths matching.
        x: ``[*batch, in]`` float32 CPU tensor (check :func:`applies`).
        relu: ReLU after every layer but the last.

    Returns:
        ``[*batch, out]`` of the last layer, a fresh tensor.
    """
    batch = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    n = rows.shape[0]
    out = rows.new_empty(n, layers[-1][0].shape[0])
    block = BLOCK_ROWS_PER_THREAD * max(torch.get_num_threads(), 1)
    done = 0
    try:
        while n - done >= PAD_ROWS:
            size = min(block, n - done)
            out[done : done + size] = _onednn_block(layers, relu, _padded(rows[done : done + size]))[:size]
            done += size
    except RuntimeError as err:
        _give_up(err)
    if done < n:
        out[done:] = _torch_block(layers, relu, rows[done:])
    return out.reshape(*batch, out.shape[-1])


def _padded(rows: Tensor) -> Tensor:
    """``rows`` [m, C], padded with zero rows to a multiple of :data:`PAD_ROWS` (``rows`` itself if it is one)."""
    extra = -rows.shape[0] % PAD_ROWS
    return rows if extra == 0 else torch.cat([rows, rows.new_zeros(extra, rows.shape[1])])


def _onednn_block(layers: Sequence[Layer], relu: bool, h: Tensor) -> Tensor:
    linear_pointwise = torch.ops.mkldnn._linear_pointwise
    attr = "relu" if relu else "none"
    for weight, bias in layers[:-1]:
        h = linear_pointwise(h, weight, bias, attr, [], "")
    weight, bias = layers[-1]
    return linear_pointwise(h, weight, bias, "none", [], "")


def _torch_block(layers: Sequence[Layer], relu: bool, h: Tensor) -> Tensor:
    for weight, bias in layers[:-1]:
        h = F.linear(h, weight, bias)
        h = h.relu_() if relu else h
    weight, bias = layers[-1]
    return F.linear(h, weight, bias)


def linear(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *, relu: bool = False, residual: Tensor | None = None
) -> Tensor:
    """``F.linear(x, weight, bias)``, then ReLU (``relu``) or ``+ residual``, in one oneDNN call where it applies.

    oneDNN when no gradient is recorded, ``x`` and ``weight`` are float32 CPU tensors, the product has at least
    :data:`MIN_FLOPS` and oneDNN is enabled; ``F.linear`` (then the ReLU or the addition) otherwise. All rows go in
    one call: oneDNN compiles a kernel per new row count (0.5-1 ms, once), so callers keep the row counts few.

    Args:
        x: [*batch, in].
        weight: [out, in].
        bias: [out] or None.
        relu: apply ReLU to the result (not with ``residual``).
        residual: [*batch, out] added to the result.

    Returns:
        [*batch, out], a fresh tensor.
    """
    if relu and residual is not None:
        raise ValueError("cpu_linear.linear: relu and residual cannot be fused together")
    rows = x.numel() // max(x.shape[-1], 1)
    if 2 * rows * weight.shape[0] * weight.shape[1] >= MIN_FLOPS and _eligible(x, [weight]):
        try:
            return _onednn_linear(x, weight, bias, relu, residual)
        except RuntimeError as err:
            _give_up(err)
    y = F.linear(x, weight, bias)
    if relu:
        return y.relu_()
    return y if residual is None else y.add_(residual)


def _onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool, residual: Tensor | None) -> Tensor:
    op = torch.ops.mkldnn._linear_pointwise
    x = x.contiguous()  # (a strided input runs an order of magnitude slower: 2 ms instead of 0.12 for 12,160 x 9)
    if residual is None:
        return op(x, weight, bias, "relu" if relu else "none", [], "")
    return op.binary(x, residual.contiguous(), weight, bias, "add")
