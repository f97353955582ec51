"""Native memory of a long-running viewer: glibc's heap settings, so tabs that come and go do not grow RSS.

A tab's render thread allocates image-sized tensors. glibc raises its mmap threshold each time a mapped block is
freed, after which such blocks are served from the heap arenas of the (short-lived) render threads and stay
resident once freed: the process grew by tens to hundreds of MB per wave of 20 tabs (BENCHMARKS.md, "Viewer
under waves of clients"). Both functions are no-ops without glibc.
"""

from __future__ import annotations


def _glibc():
    """The C library when it is glibc (has ``mallopt`` / ``malloc_trim``), else None."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


MMAP_THRESHOLD = 1 << 20
"""Heap blocks of at least this many bytes are mapped on their own (``mallopt(M_MMAP_THRESHOLD)``) while a viewer
serves, so the memory of a tab's renders goes back to the OS when they are freed."""


def keep_large_blocks_mapped() -> None:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (process-wide): blocks that large are mapped when
    allocated and unmapped when freed, whichever thread frees them."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (malloc.h)


def release_native_memory() -> None:
    """Hand freed heap memory of the arenas back to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
