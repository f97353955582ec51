"""Inference renders on a CPU split across Python threads that each run single-threaded ops.

PyTorch parallelises inside each op (OpenMP). A fused render of a 100x100 frame is hundreds of ops on tensors of
10^3-10^5 elements plus C kernels: many are below PyTorch's grain size and run on one core, the others pay a
barrier per op, and when another process takes a core the barrier waits for a descheduled thread (2 threads
were 7x slower than 1 at load 2; BENCHMARKS.md "The render path at the end of session 13"). Independent ray
parts rendered by ``W`` threads with one intra-op thread each keep every core busy with no barrier: PyTorch ops,
oneDNN and the C kernels (called through ctypes) all release the GIL, so only the Python between ops is
serialised.

The ``W`` worker threads live in one pool per worker count. Each sets its own OpenMP thread count to 1 once
(``torch.set_num_threads`` is per OS thread for the OpenMP team size; it also sets the value new threads start
from, which the pool restores to the caller's count before it runs any work). Results come back in the parts'
order, so the output does not depend on which thread rendered what.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["enabled", "map_parts", "set_enabled", "worker_count"]

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}
_state = {"enabled": os.environ.get("NEURAL3D_RENDER_THREADS", "1") != "0"}


def set_enabled(on: bool) -> None:
    """Switch the split on or off (off: one thread renders with PyTorch's intra-op threads, as before)."""
    _state["enabled"] = bool(on)


def enabled() -> bool:
    """Whether renders split across worker threads (``NEURAL3D_RENDER_THREADS=0`` switches it off)."""
    return _state["enabled"]


def worker_count(device: torch.device) -> int:
    """Threads a render on ``device`` splits across: PyTorch's intra-op thread count on a CPU, else 1."""
    if device.type != "cpu" or not enabled():
        return 1
    return max(torch.get_num_threads(), 1)


def map_parts(fn: Callable[[T], R], parts: Sequence[T], workers: int) -> list[R]:
    """``[fn(p) for p in parts]``, run by ``workers`` threads of one intra-op thread each (in the caller's
    thread when ``workers`` is 1 or there is one part). The caller's gradient mode applies in the workers; an
    exception in a part is raised here."""
    if workers <= 1 or len(parts) <= 1:
        return [fn(p) for p in parts]
    grad = torch.is_grad_enabled()

    def run(part: T) -> R:
        with torch.set_grad_enabled(grad):
            return fn(part)

    return list(_pool(workers).map(run, parts))


def _pool(workers: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _start_pool(workers)
            _pools[workers] = pool
        return pool


def _start_pool(workers: int) -> ThreadPoolExecutor:
    """A pool whose ``workers`` threads exist and run one intra-op thread each; the starting value for threads
    created later is the caller's count again."""
    callers_threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neural3d-render")
    ready = threading.Barrier(workers)

    def single_threaded() -> None:
        torch.get_num_threads()  # PyTorch's per-thread lazy initialisation first, so it cannot undo the next line
        torch.set_num_threads(1)
        ready.wait()  # every worker holds its own thread (and has set its count) before the caller restores

    for future in [pool.submit(single_threaded) for _ in range(workers)]:
        future.result()
    torch.set_num_threads(callers_threads)
    return pool
