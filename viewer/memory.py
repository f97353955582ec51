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


MMAP_THRESHOLD = 16 << 20
"""Heap blocks of at least this many bytes are mapped on their own (``mallopt(M_MMAP_THRESHOLD)``) while a viewer
serves, so the memory of a tab's renders goes back to the OS when they are freed. 16 MiB, not lower: the fused
render's per-chunk tensors (up to ~8 MB) then come from the heap, which a frame reuses; mapping every block of
1 MiB or more cost 70-80 ms of system time per 100x100 frame in page faults (BENCHMARKS.md "The render path in
session 14")."""


TRIM_THRESHOLD = 16 << 20
"""Free memory a heap keeps at its top before glibc returns it (``mallopt(M_TRIM_THRESHOLD)``). Fixing the mmap
threshold also fixes this one at its 128 KiB default (glibc stops adjusting both), which hands a frame's buffers
back to the OS after every frame (20-70 ms of system time per frame); a closed tab's memory is still returned by
:func:`release_native_memory`. Three waves of 20 tabs (``benchmarks/bench_viewer_clients.py``): RSS 300 / 307 /
314 MB with 1 MiB and the default trim, 348 / 339 / 337 MB with 16 / 16 MiB (64 MiB of trim: 608 / 736 / 742)."""


def keep_large_blocks_mapped() -> None:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` and its trim threshold at :data:`TRIM_THRESHOLD`
    (process-wide): blocks that large are mapped when allocated and unmapped when freed, whichever thread frees
    them; smaller ones are reused from the heaps."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (malloc.h)
        libc.mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


def release_native_memory() -> None:
    """Hand freed heap memory of the arenas back to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
