"""Fused hash encoding for CPU tensors: a small C kernel (``cpu_hash.c``), compiled on first use, called by ctypes.

The PyTorch reference (:func:`neural3d.fields.hashgrid.hash_encode`) materialises ``[n, L, 8]`` corner indices
and weights and runs a gather, an 8-tap ``bmm`` and an ``index_add`` backward; the fused kernel computes each
point's corners in registers, so forward + backward run several times faster on a CPU (``benchmarks/``). On
x86-64 CPUs with AVX-512 the forward pass does 16 points per instruction with the same arithmetic (bit-identical
outputs; :func:`set_simd` switches it off).
Same indices and weights as the reference (tiny-cuda-nn's ``kernel_grid``); outputs agree to float rounding
(the 8-tap sums are accumulated in a fixed order rather than by ``bmm``).

Building needs a C compiler (``$CC``, else ``cc``/``gcc``/``clang`` on ``PATH``) with OpenMP (``-fopenmp``;
without it the kernel is built single-threaded). The library is cached under ``$NEURAL3D_CACHE_DIR`` (default
``~/.cache/neural3d``) by a hash of the source and the flags, written atomically, so concurrent processes and
repeated runs compile once. No PyTorch headers are involved: a build takes about a second.

Beside each library ``n3d_hash_<key>.so`` lies ``n3d_hash_<key>.json`` with its size and SHA-256, written
atomically after the library. A cached library is loaded only when it matches that record: a truncated,
empty or altered file (a full disk, a killed copy) would crash the process when loaded ("Bus error") or fail
to load, so it is rebuilt instead, with a warning.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from neural3d.fields.backends import level_tensors

_SOURCE = Path(__file__).with_name("cpu_hash.c")
_FLAGS = ["-O3", "-shared", "-fPIC", "-std=c99"]
_OPENMP = ["-fopenmp"]


class CpuKernelUnavailable(RuntimeError):
    """The fused CPU kernel cannot be built or loaded here (no compiler, failed build)."""


def find_compiler() -> str | None:
    """``$CC`` if set, else the first of cc, gcc, clang on ``PATH`` (None: no compiler)."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"]) or os.environ["CC"]
    return next((p for p in map(shutil.which, ("cc", "gcc", "clang")) if p), None)


def cache_dir() -> Path:
    return Path(os.environ.get("NEURAL3D_CACHE_DIR", Path.home() / ".cache" / "neural3d")) / "cpu_hash"


def _digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return os.path.getsize(path), h.hexdigest()


def record_path(library: Path) -> Path:
    """The ``.json`` record (size, sha256) kept beside a cached library."""
    return library.with_suffix(".json")


def _atomic_write_text(text: str, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def verify_cached(library: Path) -> str | None:
    """None when ``library`` matches its record (size and SHA-256), else why it does not."""
    rec = record_path(library)
    if not library.exists():
        return "missing"
    try:
        meta = json.loads(rec.read_text())
        size, digest = int(meta["size"]), str(meta["sha256"])
    except FileNotFoundError:
        return f"no checksum record {rec.name}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"unreadable checksum record {rec.name}"
    actual_size = library.stat().st_size
    if actual_size != size:
        return f"size {actual_size} bytes, recorded {size}"
    if _digest(library)[1] != digest:
        return "SHA-256 differs from the record"
    return None


def _build(compiler: str, flags: list[str], target: Path) -> None:
    """Compile into a temp file, then move it to ``target`` and write its record (both atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [compiler, *flags, str(_SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise CpuKernelUnavailable(f"cpu_hash.py: building {_SOURCE.name} with {compiler} failed:\n{proc.stderr}")
        size, digest = _digest(Path(tmp))
        if size == 0:
            raise CpuKernelUnavailable(f"cpu_hash.py: {compiler} wrote an empty library for {_SOURCE.name}")
        os.replace(tmp, target)  # atomic: another process sees the old file or the whole new one
        _atomic_write_text(json.dumps({"size": size, "sha256": digest}), record_path(target))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def library_path(compiler: str, flags: list[str]) -> Path:
    """Where the library built by ``compiler`` with ``flags`` from the current source is cached."""
    key = hashlib.sha256(_SOURCE.read_bytes() + " ".join([compiler, *flags]).encode()).hexdigest()[:16]
    return cache_dir() / f"n3d_hash_{key}.so"


@lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL:
    """Build (once per source version) and load the kernel library; CpuKernelUnavailable if it cannot be."""
    compiler = find_compiler()
    if compiler is None:
        raise CpuKernelUnavailable(
            "cpu_hash.py: no C compiler found (set $CC or install gcc) for the 'cpu' "
            "hash-grid backend; use backend 'torch'"
        )
    errors = []
    for flags in (_FLAGS + _OPENMP, _FLAGS):  # OpenMP first, a serial build if the compiler lacks it
        target = library_path(compiler, flags)
        try:
            problem = verify_cached(target)
            if problem is not None:
                if problem != "missing" and not problem.startswith("no checksum"):  # (a cache from before records)
                    warnings.warn(
                        f"cpu_hash.py: cached kernel {target} does not match its record ({problem}); rebuilding it",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                _build(compiler, flags, target)
            lib = ctypes.CDLL(str(target))
        except (CpuKernelUnavailable, OSError) as err:
            errors.append(str(err))
            continue
        _declare(lib)
        return lib
    raise CpuKernelUnavailable("\n".join(errors))


def available() -> bool:
    """Whether the kernel builds and loads here (the result is cached)."""
    try:
        load_library()
        return True
    except CpuKernelUnavailable:
        return False


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
