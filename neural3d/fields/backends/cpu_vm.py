"""Fused TensoRF vector-matrix features for CPU tensors: a small C kernel (``cpu_vm.c``) called by ctypes.

The PyTorch path (:class:`neural3d.fields.vm_decomposition.VMDecomposition`) runs per mode a ``grid_sample`` of
the plane, two gathers of the line, a product, then a concatenation or a sum: about a dozen passes over
``[R, n]`` tensors, which parallelise badly at a frame's sizes. The kernel takes each point once: for each of the
three modes the four plane taps times the two line taps of every component, written to ``[n, sum R]`` or summed
to ``[n]`` (the density feature). Same arithmetic as the PyTorch path, operation for operation (``cpu_vm.c``):
the component products agree bit for bit, the sums to float rounding (summation order).

Without gradients (rendering, the samplers' density passes) :func:`vm_features` also applies TensoRF's basis
matrix in the same pass. With gradients for the planes and lines (training), :func:`vm_features_autograd` has a C
backward: each thread owns a band of every plane's rows and of every line's nodes and walks all points in order
(no atomics; the same sums in the same order for any thread count); the points get no gradient (TensoRF detaches
them too), and a caller whose points need one takes the PyTorch path. The kernel reads the planes and lines
channels last; :class:`KernelWeights` keeps those copies and refreshes them when a parameter may have changed (its
storage, shape or version counter: an upsampling, a loaded state dict; or any optimizer step, which a fused
optimizer takes without moving the version counters).

Backends of :class:`VMDecomposition` (``backend``): ``torch``; ``cpu`` (this kernel; an error where it cannot run);
``auto``: ``cpu`` for float32 CPU tensors when the kernel builds here, else ``torch``. Building and caching is
:mod:`neural3d.fields.backends.c_build` (shared with the hash-grid kernel).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook

from neural3d.fields.backends.c_build import CKernel, CpuKernelUnavailable, find_compiler, library_loader, loads

VM_BACKENDS = ("auto", "torch", "cpu")
"""Backends of the vector-matrix features."""


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    # x, n, planes[3], lines[3], dims[3][4], mode, basis_t, out_dim, out, n_threads
    lib.n3d_vm_forward.argtypes = [p, i64, p, p, p, i32, p, i64, p, i32]
    lib.n3d_vm_forward.restype = None
    # x, n, planes[3], lines[3], dims[3][4], mode, grad, plane_grads[3], line_grads[3], n_threads
    lib.n3d_vm_backward.argtypes = [p, i64, p, p, p, i32, p, p, p, i32]
    lib.n3d_vm_backward.restype = None


_KERNEL = CKernel.beside(
    __file__,
    purpose="the 'cpu' backend of TensoRF's vector-matrix features; use vm_backend 'torch'",
    declare=_declare,
    extra_flags=("-ffp-contract=off",),
)


load_library = library_loader(_KERNEL, find_compiler)
"""Build (once per source version) and load the kernel library; CpuKernelUnavailable if it cannot be."""


def available() -> bool:
    """Whether the kernel builds and loads here (the result is cached)."""
    return loads(load_library)


def check_vm_backend(name: str, owner: str) -> str:
    """Validate a backend name (ValueError naming ``owner`` otherwise)."""
    if name not in VM_BACKENDS:
        raise ValueError(f"{owner}: vector-matrix backend must be one of {VM_BACKENDS}, got {name!r}")
    return name


def resolve_vm_backend(name: str, device: torch.device, dtype: torch.dtype, owner: str) -> str:
    """``torch`` or ``cpu`` for tensors of ``dtype`` on ``device``.

    ``auto``: ``cpu`` for float32 CPU tensors when the kernel builds, else ``torch``. An explicit ``cpu`` raises
    ValueError off the CPU, for other dtypes or without a working compiler (the build error is in the message).
    """
    check_vm_backend(name, owner)
    fits = device.type == "cpu" and dtype == torch.float32
    if name == "auto":
        return "cpu" if fits and available() else "torch"
    if name == "cpu":
        if not fits:
            raise ValueError(f"{owner}: vector-matrix backend 'cpu' needs float32 CPU tensors, got {dtype} on {device}")
        try:
            load_library()
        except CpuKernelUnavailable as err:
            raise ValueError(f"{owner}: vector-matrix backend 'cpu' cannot be built here: {err}") from err
    return name


_OPTIMIZER_STEPS = [0]
"""Optimizer steps taken in this process, counted by a global post-step hook (registered with the first
:class:`KernelWeights`): torch's fused Adam updates parameters in place without moving their version counters."""


def _count_step(*_) -> None:
    _OPTIMIZER_STEPS[0] += 1


class KernelWeights:
    """Channels-last float32 copies of the planes and lines for the kernel, rebuilt when a parameter may have changed.

    ``get(planes, lines)``: planes ``[1, R_m, H_m, W_m]`` and lines ``[1, R_m, L_m, 1]`` -> (planes ``[H_m, W_m,
    R_m]``, lines ``[L_m, R_m]``, dims ``[3, 4]`` int64 ``(W, H, L, R)``, pointer arrays). A change is a new
    storage, shape or version counter of any parameter (in-place updates bump the counter) or any optimizer step
    (``torch.optim``'s global step hook; fused optimizers leave the counters alone). Not seen: in-place edits
    through ``param.data``, which bypass both.
    """

    _hook = None  # the global optimizer hook, registered once

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: tuple | None = None
        if KernelWeights._hook is None:
            KernelWeights._hook = register_optimizer_step_post_hook(_count_step)

    def get(self, planes: Sequence[Tensor], lines: Sequence[Tensor]) -> tuple:
        key = (_OPTIMIZER_STEPS[0], *((p.data_ptr(), p._version, tuple(p.shape)) for p in (*planes, *lines)))
        value = self._value
        if key != self._key or value is None:
            p_cl = [p.detach()[0].permute(1, 2, 0).contiguous() for p in planes]  # [H, W, R]
            l_cl = [v.detach()[0, :, :, 0].T.contiguous() for v in lines]  # [L, R]
            dims = torch.tensor(
                [[p.shape[1], p.shape[0], v.shape[0], p.shape[2]] for p, v in zip(p_cl, l_cl)], dtype=torch.int64
            )
            pointers = (
                (ctypes.c_void_p * 3)(*(p.data_ptr() for p in p_cl)),
                (ctypes.c_void_p * 3)(*(v.data_ptr() for v in l_cl)),
            )
            value = (p_cl, l_cl, dims, pointers)
            self._key, self._value = key, value
        return value  # (the caller holds the copies while it uses the pointers, whatever other threads store here)


_PRODUCTS, _SUM, _PROJECT = 0, 1, 2  # the kernel's output modes (cpu_vm.c)


def vm_features(
    x: Tensor,
    planes: Sequence[Tensor],
    lines: Sequence[Tensor],
    weights: KernelWeights,
    *,
    reduce: bool = False,
    basis: Tensor | None = None,
) -> Tensor:
    """Vector-matrix features of float32 CPU points (no gradient).

    Args:
        x: [n, 3] coordinates in [-1, 1] (clamped; NaN rows give NaN).
        planes, lines: the three modes' ``[1, R_m, H_m, W_m]`` planes and ``[1, R_m, L_m, 1]`` lines (float32, CPU).
        weights: the :class:`KernelWeights` cache of these parameters.
        reduce: sum every component (the density feature) instead of returning them.
        basis: [out_dim, R_0 + R_1 + R_2] matrix applied to the products in the same pass (TensoRF's basis ``B``).
    Returns:
        [n, R_0 + R_1 + R_2] component products (mode 0 first), [n] their sum with ``reduce``, or [n, out_dim]
        ``products @ basis.T`` with ``basis``.
    """
    if x.device.type != "cpu" or planes[0].device.type != "cpu":
        raise ValueError(f"cpu_vm.py: the 'cpu' vector-matrix backend needs CPU tensors, got points on {x.device}")
    copies = weights.get(planes, lines)  # held until the kernel returns
    dims, (plane_ptrs, line_ptrs) = copies[2], copies[3]
    total = int(dims[:, 3].sum())
    x32 = x.detach().contiguous().float()
    n = x32.shape[0]
    basis_t, out_dim, mode = None, 0, _SUM if reduce else _PRODUCTS
    if basis is not None:
        if reduce or basis.ndim != 2 or basis.shape[1] != total:
            raise ValueError(f"cpu_vm.py: basis must be [out_dim, {total}] (and no reduce), got {tuple(basis.shape)}")
        out_dim, mode = basis.shape[0], _PROJECT
        basis_t = basis.new_zeros(total, -(-out_dim // 32) * 32, dtype=torch.float32)  # [sum R, out_dim padded to 32]
        basis_t[:, :out_dim] = basis.detach().T
    out = torch.empty((n,) if reduce else (n, out_dim or total), dtype=torch.float32)
    if n > 0:
        load_library().n3d_vm_forward(
            x32.data_ptr(),
            n,
            ctypes.addressof(plane_ptrs),
            ctypes.addressof(line_ptrs),
            dims.data_ptr(),
            mode,
            None if basis_t is None else basis_t.data_ptr(),
            out_dim,
            out.data_ptr(),
            max(torch.get_num_threads(), 1),
        )
    return out


class _VMFeatures(torch.autograd.Function):
    """:func:`vm_features` (products or their sum) with a backward into the planes and lines (not the points)."""

    @staticmethod
    def forward(ctx, x: Tensor, weights: KernelWeights, reduce: bool, *params: Tensor) -> Tensor:
        planes, lines = params[:3], params[3:]
        out = vm_features(x, planes, lines, weights, reduce=reduce)
        ctx.save_for_backward(x.detach().contiguous().float(), *params)  # (autograd checks they stay unchanged)
        ctx.weights, ctx.reduce = weights, reduce
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x32, *params = ctx.saved_tensors
        planes, lines = params[:3], params[3:]
        copies = ctx.weights.get(planes, lines)  # held until the kernel returns
        p_cl, l_cl, dims, (plane_ptrs, line_ptrs) = copies
        plane_grads = [torch.zeros_like(t) for t in p_cl]  # [H, W, R]
        line_grads = [torch.zeros_like(t) for t in l_cl]  # [L, R]
        g = grad.detach().contiguous().float()
        plane_grad_ptrs = (ctypes.c_void_p * 3)(*(t.data_ptr() for t in plane_grads))  # (kept alive for the call)
        line_grad_ptrs = (ctypes.c_void_p * 3)(*(t.data_ptr() for t in line_grads))
        if len(x32) > 0:
            load_library().n3d_vm_backward(
                x32.data_ptr(),
                len(x32),
                ctypes.addressof(plane_ptrs),
                ctypes.addressof(line_ptrs),
                dims.data_ptr(),
                _SUM if ctx.reduce else _PRODUCTS,
                g.data_ptr(),
                ctypes.addressof(plane_grad_ptrs),
                ctypes.addressof(line_grad_ptrs),
                max(torch.get_num_threads(), 1),
            )
        grads = [t.permute(2, 0, 1)[None].contiguous() for t in plane_grads]  # [1, R, H, W]
        grads += [t.T[None, :, :, None].contiguous() for t in line_grads]  # [1, R, L, 1]
        grads = [gr.to(p.dtype) for gr, p in zip(grads, (*planes, *lines))]
        return None, None, None, *grads


def vm_features_autograd(
    x: Tensor, planes: Sequence[Tensor], lines: Sequence[Tensor], weights: KernelWeights, *, reduce: bool = False
) -> Tensor:
    """:func:`vm_features` (products, or their sum with ``reduce``) differentiable in the planes and lines (float32
    CPU; the points get no gradient): the backward is one C pass, each thread owning bands of the grids' rows."""
    return _VMFeatures.apply(x, weights, reduce, *planes, *lines)
