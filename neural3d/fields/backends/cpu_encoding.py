"""NeRF's frequency encoding and spherical harmonics of float32 CPU rows by a small C kernel (``cpu_encoding.c``),
written in place.

:class:`neural3d.fields.encodings.PositionalEncoding` builds ``[x, sin(b x), cos(b x), ...]`` from a product, a
sine, a cosine, a stack and a concatenation; a caller that concatenates several encodings (TensoRF's colour MLP
input: features and view directions) adds one more copy. :func:`frequency_encode_into` writes one encoding straight
into its columns of the caller's buffer in one pass (no gradient). Same layout and the same float32 products
``b x``; sine and cosine are Cephes' single-precision ones (about 1 ulp; PyTorch's are within 1 ulp too), so values
agree with PyTorch's to float rounding, not bit for bit. Building and caching: :mod:`.c_build`.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from neural3d.fields.backends.c_build import CKernel, find_compiler, library_loader, loads


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    # x, n, c, bands, n_bands, include_input, out, out_stride, n_threads
    lib.n3d_frequency_encoding.argtypes = [p, i64, i64, p, i64, i32, p, i64, i32]
    lib.n3d_frequency_encoding.restype = None
    # dirs, n, degree, out, out_stride, n_threads
    lib.n3d_spherical_harmonics.argtypes = [p, i64, i32, p, i64, i32]
    lib.n3d_spherical_harmonics.restype = None


_KERNEL = CKernel.beside(
    __file__,
    purpose="the fused frequency encoding (the PyTorch encoding is used instead)",
    declare=_declare,
    extra_flags=("-ffp-contract=off", "-fno-trapping-math"),  # (the second lets GCC vectorise the selects)
)

load_library = library_loader(_KERNEL, find_compiler)
"""Build (once per source version) and load the kernel library; CpuKernelUnavailable if it cannot be."""


def available() -> bool:
    """Whether the kernel builds and loads here (the result is cached)."""
    return loads(load_library)


def applies(*tensors: Tensor) -> bool:
    """Whether the kernel encodes ``tensors``: none records a gradient, all are float32 CPU tensors, it builds."""
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return not grad and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and available()


def frequency_encode_into(x: Tensor, bands: Tensor, out: Tensor, *, include_input: bool = True) -> Tensor:
    """Write the frequency encoding of ``x`` into ``out`` (no gradient) and return ``out``.

    Args:
        x: [n, c] float32 CPU rows.
        bands: [L] frequencies ``b_l`` (float32).
        out: [n, c * (include_input + 2 L)] float32 CPU, columns contiguous (a column slice of a wider buffer is fine).
        include_input: the first ``c`` columns are ``x`` itself.
    Returns:
        ``out``: ``[x, sin(b_0 x), cos(b_0 x), sin(b_1 x), cos(b_1 x), ...]`` per row (blocks of ``c`` channels).
    """
    n, c = x.shape
    width = c * (int(include_input) + 2 * len(bands))
    if out.shape != (n, width) or out.dtype != torch.float32 or (n > 1 and out.stride(1) != 1):
        raise ValueError(
            f"cpu_encoding.py: out must be float32 [{n}, {width}] with contiguous columns, got {tuple(out.shape)}"
        )
    if x.device.type != "cpu" or out.device.type != "cpu":
        raise ValueError(f"cpu_encoding.py: the fused encoding needs CPU tensors, got {x.device} and {out.device}")
    x32 = x.detach().contiguous().float()
    b32 = bands.detach().contiguous().float().cpu()
    if n > 0:
        load_library().n3d_frequency_encoding(
            x32.data_ptr(),
            n,
            c,
            b32.data_ptr(),
            len(b32),
            int(include_input),
            out.data_ptr(),
            out.stride(0),
            max(torch.get_num_threads(), 1),
        )
    return out


def spherical_harmonics_into(dirs: Tensor, degree: int, out: Tensor) -> Tensor:
    """Write tiny-cuda-nn's spherical harmonics of ``dirs`` into ``out`` (no gradient) and return ``out``.

    Args:
        dirs: [n, 3] float32 CPU unit directions.
        degree: bands, 1..4 (``degree**2`` channels).
        out: [n, degree**2] float32 CPU with contiguous columns (a column slice of a wider buffer is fine).
    Returns:
        ``out``, equal bit for bit to :func:`neural3d.fields.encodings.spherical_harmonics` ``(dirs, degree)``.
    """
    n = dirs.shape[0]
    if not 1 <= degree <= 4 or dirs.shape != (n, 3):
        raise ValueError(
            f"cpu_encoding.py: spherical harmonics need [n, 3] directions and degree 1..4, got "
            f"{tuple(dirs.shape)} and {degree}"
        )
    if out.shape != (n, degree**2) or out.dtype != torch.float32 or (n > 1 and out.stride(1) != 1):
        raise ValueError(
            f"cpu_encoding.py: out must be float32 [{n}, {degree**2}] with contiguous columns, got {tuple(out.shape)}"
        )
    if dirs.device.type != "cpu" or out.device.type != "cpu":
        raise ValueError(f"cpu_encoding.py: the fused encoding needs CPU tensors, got {dirs.device} and {out.device}")
    d32 = dirs.detach().contiguous().float()
    if n > 0:
        load_library().n3d_spherical_harmonics(
            d32.data_ptr(), n, degree, out.data_ptr(), out.stride(0), max(torch.get_num_threads(), 1)
        )
    return out
