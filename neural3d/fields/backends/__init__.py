"""Compute backends of the hash-grid encoding: ``torch`` (reference), ``cpu`` (fused C kernel for CPU tensors),
``triton`` (fused GPU kernel), ``tcnn``.

``auto`` picks, per device, the fastest backend that is installed and works there: on CUDA the candidates are
``tcnn`` (tiny-cuda-nn, when the user has built it), ``triton`` (our fused kernel, when installed) and ``torch``;
they are timed once (forward + backward on a probe batch, :func:`pick_fastest`) and a candidate that raises is
skipped. On CPU ``auto`` is ``cpu`` when its kernel builds (a C compiler is on the machine; ~7x faster than
``torch``, ``benchmarks/bench_fields.py``) for float32 tables, else ``torch``; on other devices ``torch``.
The choice and the timings are logged (logger ``neural3d.backends``, INFO). Optional packages are imported
lazily, so everything imports without CUDA, Triton or tiny-cuda-nn. ``triton`` on CPU tensors runs Triton's
interpreter (slow; for tests).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable
from functools import cache

import torch

BACKENDS = ("auto", "torch", "cpu", "tcnn", "triton")
_log = logging.getLogger("neural3d.backends")


@cache
def has_module(name: str) -> bool:
    """Whether an optional package (``"triton"``, ``"tinycudann"``) can be imported."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cpu_kernel_available() -> bool:
    """Whether the fused CPU kernel (``cpu_hash.c``) builds and loads here; built on first call, then cached."""
    from neural3d.fields.backends.cpu_hash import available

    return available()


_LEVEL_TENSORS: dict = {}


def level_tensors(layout, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per-level (scales fp32, resolutions, sizes, offsets int64, hashed int32) of a ``GridLayout`` on ``device``,
    cached: the level table the fused kernels (Triton, C) read."""
    key = (layout, str(device))
    if key not in _LEVEL_TENSORS:
        _LEVEL_TENSORS[key] = (
            torch.tensor(layout.scales, dtype=torch.float32, device=device),
            torch.tensor(layout.resolutions, dtype=torch.int64, device=device),
            torch.tensor(layout.sizes, dtype=torch.int64, device=device),
            torch.tensor(layout.offsets[:-1], dtype=torch.int64, device=device),
            torch.tensor(layout.hashed, dtype=torch.int32, device=device),
        )
    return _LEVEL_TENSORS[key]


def check_backend(name: str, owner: str) -> str:
    """Validate a backend name (ValueError naming ``owner`` otherwise)."""
    if name not in BACKENDS:
        raise ValueError(f"{owner}: backend must be one of {BACKENDS}, got {name!r}")
    return name


def candidates(device: torch.device) -> list[str]:
    """Backends ``auto`` may use on ``device``, preferred first: CUDA -> [tcnn], [triton], torch; CPU -> [cpu],
    torch; else torch."""
    if device.type == "cpu":
        return (["cpu"] if cpu_kernel_available() else []) + ["torch"]
    if device.type != "cuda":
        return ["torch"]
    return [b for b, ok in (("tcnn", has_module("tinycudann")), ("triton", has_module("triton"))) if ok] + ["torch"]


def resolve_backend(name: str, device: torch.device, owner: str = "hashgrid.py") -> str:
    """The backend for an explicit ``name`` on ``device``; ``auto`` gives the preferred candidate (unmeasured).

    Raises ValueError for an unknown name, for ``tcnn`` off CUDA or not installed, for ``cpu`` off the CPU or
    when its kernel cannot be built, and for ``triton`` when it is not installed.
    """
    check_backend(name, owner)
    if name == "auto":
        return candidates(device)[0]
    if name == "tcnn" and (device.type != "cuda" or not has_module("tinycudann")):
        raise ValueError(
            f"{owner}: backend 'tcnn' needs CUDA tensors and tinycudann installed "
            f"(device {device}, tinycudann installed: {has_module('tinycudann')})"
        )
    if name == "cpu" and (device.type != "cpu" or not cpu_kernel_available()):
        raise ValueError(
            f"{owner}: backend 'cpu' needs CPU tensors and a C compiler to build its kernel "
            f"(device {device}, kernel available: {cpu_kernel_available()})"
        )
    if name == "triton" and not has_module("triton"):
        raise ValueError(f"{owner}: backend 'triton' needs the triton package (pip install triton)")
    return name


def pick_fastest(
    runs: dict[str, Callable[[], object]],
    *,
    repeats: int = 3,
    sync: Callable[[], object] = lambda: None,
    what: str = "hash grid",
) -> str:
    """Time each candidate (one warm-up call, best of ``repeats``) and return the fastest one's name.

    ``runs`` maps backend name -> a call doing the work once (e.g. forward + backward on a probe batch), in
    preference order. A candidate that raises is logged and skipped; if all raise, the last error propagates.
    ``sync`` waits for the device (``torch.cuda.synchronize``).
    """
    if not runs:
        raise ValueError("backends: pick_fastest needs at least one candidate")
    times: dict[str, float] = {}
    error: Exception | None = None
    for name, run in runs.items():
        try:
            run()
            sync()
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                sync()
                best = min(best, time.perf_counter() - start)
            times[name] = best
        except Exception as err:  # noqa: BLE001 - a backend failing here (build, compile, launch) is not chosen
            _log.warning("%s backend %r failed its probe and is skipped: %s", what, name, err)
            error = err
    if not times:
        assert error is not None
        raise error
    choice = min(times, key=times.get)
    _log.info(
        "%s backend 'auto' -> %s (probe ms: %s)",
        what,
        choice,
        ", ".join(f"{k} {v * 1e3:.2f}" for k, v in times.items()),
    )
    return choice
