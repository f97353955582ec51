"""Build, cache and load the library's small C kernels (``cpu_hash.c``, ``cpu_vm.c``), called by ctypes.

A kernel is compiled on first use with ``$CC`` (else ``cc``/``gcc``/``clang`` on ``PATH``), with OpenMP
(``-fopenmp``) when the compiler has it and single-threaded otherwise. No PyTorch headers are involved: a build
takes about a second. The library is cached under ``$NEURAL3D_CACHE_DIR`` (default ``~/.cache/neural3d``), in a
folder per kernel, by a hash of the source, the compiler and the flags, written atomically, so concurrent
processes and repeated runs compile once.

Beside each library ``<prefix>_<key>.so`` lies ``<prefix>_<key>.json`` with its size and SHA-256, written
atomically after the library. A cached library is loaded only when it matches that record: a truncated, empty or
altered file (a full disk, a killed copy) would crash the process when loaded ("Bus error") or fail to load, so
it is rebuilt instead, with a warning.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

FLAGS = ["-O3", "-shared", "-fPIC", "-std=c99"]
"""Compiler flags of every kernel (``-std=c99``: no floating-point contraction into FMAs by default)."""
OPENMP = ["-fopenmp"]
"""Added first; a kernel is built without them when the compiler lacks OpenMP (one thread)."""


class CpuKernelUnavailable(RuntimeError):
    """A fused CPU kernel cannot be built or loaded here (no compiler, failed build)."""


def find_compiler() -> str | None:
    """``$CC`` if set, else the first of cc, gcc, clang on ``PATH`` (None: no compiler)."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"]) or os.environ["CC"]
    return next((p for p in map(shutil.which, ("cc", "gcc", "clang")) if p), None)


def cache_root() -> Path:
    """``$NEURAL3D_CACHE_DIR``, default ``~/.cache/neural3d``."""
    return Path(os.environ.get("NEURAL3D_CACHE_DIR", Path.home() / ".cache" / "neural3d"))


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


@dataclass(frozen=True)
class CKernel:
    """One C source built into a cached shared library.

    Args:
        source: the ``.c`` file (shipped with the package).
        prefix: library file names ``<prefix>_<key>.so``.
        folder: the kernel's folder under :func:`cache_root`.
        owner: the Python module named in errors and warnings (``"cpu_hash.py"``).
        purpose: what the kernel serves and the alternative, for the no-compiler error
            (``"the 'cpu' hash-grid backend; use backend 'torch'"``).
        declare: sets the ctypes ``argtypes`` / ``restype`` of the library's functions.
        extra_flags: flags after :data:`FLAGS` for this kernel only.
    """

    source: Path
    prefix: str
    folder: str
    owner: str
    purpose: str
    declare: Callable[[ctypes.CDLL], None]
    extra_flags: tuple[str, ...] = field(default=())

    @classmethod
    def beside(
        cls, module: str, *, purpose: str, declare: Callable[[ctypes.CDLL], None], extra_flags: tuple[str, ...] = ()
    ) -> CKernel:
        """The kernel ``<stem>.c`` next to the Python module ``module`` (its ``__file__``, ``<stem>.py``): cache folder
        ``<stem>``, libraries ``n3d_<stem without cpu_>_<key>.so``, errors naming ``<stem>.py``."""
        path = Path(module)
        return cls(
            source=path.with_suffix(".c"),
            prefix="n3d_" + path.stem.removeprefix("cpu_"),
            folder=path.stem,
            owner=path.name,
            purpose=purpose,
            declare=declare,
            extra_flags=extra_flags,
        )

    def flag_sets(self) -> list[list[str]]:
        """The flags to try, in order: with OpenMP, then without."""
        base = [*FLAGS, *self.extra_flags]
        return [base + OPENMP, base]

    def cache_dir(self) -> Path:
        return cache_root() / self.folder

    def library_path(self, compiler: str, flags: list[str]) -> Path:
        """Where the library built by ``compiler`` with ``flags`` from the current source is cached."""
        key = hashlib.sha256(self.source.read_bytes() + " ".join([compiler, *flags]).encode()).hexdigest()[:16]
        return self.cache_dir() / f"{self.prefix}_{key}.so"

    def build(self, compiler: str, flags: list[str], target: Path) -> None:
        """Compile into a temp file, then move it to ``target`` and write its record (both atomically)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            proc = subprocess.run(
                [compiler, *flags, str(self.source), "-o", tmp, "-lm"], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise CpuKernelUnavailable(
                    f"{self.owner}: building {self.source.name} with {compiler} failed:\n{proc.stderr}"
                )
            size, digest = _digest(Path(tmp))
            if size == 0:
                raise CpuKernelUnavailable(f"{self.owner}: {compiler} wrote an empty library for {self.source.name}")
            os.replace(tmp, target)  # atomic: another process sees the old file or the whole new one
            _atomic_write_text(json.dumps({"size": size, "sha256": digest}), record_path(target))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load(self, compiler: str | None) -> ctypes.CDLL:
        """Build with ``compiler`` when the cache has no verified library, then load and declare it.

        Raises :class:`CpuKernelUnavailable` when ``compiler`` is None or every flag set fails."""
        if compiler is None:
            raise CpuKernelUnavailable(f"{self.owner}: no C compiler found (set $CC or install gcc) for {self.purpose}")
        errors = []
        for flags in self.flag_sets():  # OpenMP first, a serial build if the compiler lacks it
            target = self.library_path(compiler, flags)
            try:
                problem = verify_cached(target)
                if problem is not None:
                    if problem != "missing" and not problem.startswith("no checksum"):  # (a cache from before records)
                        warnings.warn(
                            f"{self.owner}: cached kernel {target} does not match its record ({problem}); "
                            "rebuilding it",
                            RuntimeWarning,
                            stacklevel=3,
                        )
                    self.build(compiler, flags, target)
                lib = ctypes.CDLL(str(target))
            except (CpuKernelUnavailable, OSError) as err:
                errors.append(str(err))
                continue
            self.declare(lib)
            return lib
        raise CpuKernelUnavailable("\n".join(errors))


def library_loader(kernel: CKernel, compiler: Callable[[], str | None]) -> Callable[[], ctypes.CDLL]:
    """A cached ``load_library()`` of ``kernel``: built once per source version with ``compiler()``, then loaded;
    :class:`CpuKernelUnavailable` if it cannot be (``load_library.__wrapped__()`` skips the cache)."""

    @lru_cache(maxsize=1)
    def load_library() -> ctypes.CDLL:
        return kernel.load(compiler())

    return load_library


def loads(load_library: Callable[[], ctypes.CDLL]) -> bool:
    """Whether ``load_library()`` succeeds (its result is cached)."""
    try:
        load_library()
        return True
    except CpuKernelUnavailable:
        return False
