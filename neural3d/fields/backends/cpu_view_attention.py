"""GNT's view attention on float32 CPU rows by a small C kernel (``cpu_view_attention.c``), called by ctypes.

After the folded projections (:mod:`neural3d.methods.gnt.fused`), a view block still needs, per sample and source
view, the attention MLP's hidden ``relu(h - q)``, its output layer (the logits), the masked softmax over views and
the softmax-weighted sum of the values. In PyTorch that is a dozen passes over ``[M * V, C]`` tensors (subtraction,
ReLU, matmul, ``masked_fill``, max, subtraction, clamp, exp, sum, product, sum, division); the kernel takes each
sample once, its views' logits staying in the L1 cache. Same function: the official masked softmax (invalid views
get weight exactly 0, as ``exp(-1e9 - max)`` is in float32; a sample no view sees averages all views uniformly, as
the official softmax of equal -1e9 logits does); sums in another order, Cephes' ``expf`` (about 1 ulp) and weights
below 1.2e-38 of the maximum's taken as 1.2e-38, so results agree with the PyTorch arithmetic to float rounding.
No gradient. Building and caching: :mod:`.c_build`.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from neural3d.fields.backends.c_build import CKernel, find_compiler, library_loader, loads

__all__ = ["applies", "available", "view_attention"]


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    # y, ldy, q, w2t, b2, valid, M, V, C, H, out, n_threads
    lib.n3d_gnt_view_attention.argtypes = [p, i64, p, p, p, p, i64, i64, i64, i64, p, i32]
    lib.n3d_gnt_view_attention.restype = None


_KERNEL = CKernel.beside(
    __file__,
    purpose="GNT's fused view attention (the PyTorch arithmetic is used instead)",
    declare=_declare,
    extra_flags=("-ffp-contract=off", "-fno-trapping-math"),  # (the second lets GCC vectorise the selects)
)

load_library = library_loader(_KERNEL, find_compiler)
"""Build (once per source version) and load the kernel library; CpuKernelUnavailable if it cannot be."""


def available() -> bool:
    """Whether the kernel builds and loads here (the result is cached)."""
    return loads(load_library)


def applies(y: Tensor) -> bool:
    """Whether :func:`view_attention` takes ``y``: float32 on the CPU, no gradient recorded, the kernel built."""
    return y.device.type == "cpu" and y.dtype == torch.float32 and not torch.is_grad_enabled() and available()


def view_attention(
    y: Tensor, q: Tensor, w2t: Tensor, b2: Tensor, valid: Tensor, *, out: Tensor | None = None
) -> Tensor:
    """The attention over views of every sample (see the module docstring).

    Args:
        y: [M, V, C + H (+ more)] per view: values in columns ``[0, C)``, the attention MLP's hidden before the
            query and the ReLU in ``[C, C + H)``; channels contiguous, rows of one sample consecutive.
        q: [M, H] the query's contribution to the hidden (subtracted).
        w2t: [H, C] the attention MLP's output layer, transposed (``nn.Linear.weight.t()``).
        b2: [C] its bias.
        valid: [M, V] bool (or uint8), True where the sample projects into the view.
        out: optional [M, C] float32 with contiguous rows to write into.
    Returns:
        ``out`` or a new tensor, [M, C] ``sum_v softmax_v(logits) * values`` (the official masked softmax, per channel).
    """
    M, V, width = y.shape
    H, C = w2t.shape
    if V < 1 or width < C + H or y.stride(2) != 1 or y.stride(0) != V * y.stride(1):
        raise ValueError(
            f"cpu_view_attention.py: y must be [M, V >= 1, >= {C + H}] with rows in order, got {tuple(y.shape)}"
        )
    if q.shape != (M, H) or b2.shape != (C,) or valid.shape != (M, V):
        raise ValueError(
            f"cpu_view_attention.py: q {tuple(q.shape)}, b2 {tuple(b2.shape)}, valid {tuple(valid.shape)} do not "
            f"match M={M}, V={V}, C={C}, H={H}"
        )
    q32, w32, b32 = q.float().contiguous(), w2t.float().contiguous(), b2.float().contiguous()
    valid8 = valid.contiguous() if valid.dtype in (torch.bool, torch.uint8) else (valid != 0).contiguous()
    if out is None:
        out = y.new_empty(M, C)
    elif out.shape != (M, C) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"cpu_view_attention.py: out must be contiguous float32 [{M}, {C}], got {tuple(out.shape)}")
    if M > 0:
        load_library().n3d_gnt_view_attention(
            y.data_ptr(),
            y.stride(1),
            q32.data_ptr(),
            w32.data_ptr(),
            b32.data_ptr(),
            valid8.data_ptr(),
            M,
            V,
            C,
            H,
            out.data_ptr(),
            max(torch.get_num_threads(), 1),
        )
    return out
