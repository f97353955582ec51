"""SIGINT / SIGTERM during training: finish the step, checkpoint, stop (:class:`StopSignals`).

While the loop runs, the first SIGINT (Ctrl-C) or SIGTERM only records the signal; the loop notices it after
the step in progress, saves a checkpoint of that step and raises
:class:`~neural3d.training.stops.TrainingInterrupted` (the CLI prints one line and exits 130 / 143).
A second signal of the same kind gets the handler that was there before (Ctrl-C twice: a plain
``KeyboardInterrupt``, without a checkpoint). Handlers are installed from the main thread only (a loop run in
another thread keeps Python's defaults). Under torchrun the ranks agree on the signal by the loop's per-step
collective, so every rank stops after the same step.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager recording the first SIGINT / SIGTERM in :attr:`received` (a signal number, or None)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        previous = self._previous.get(signum)
        if previous is not None:  # the next one of this kind behaves as before
            signal.signal(signum, previous)  # type: ignore[arg-type]

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                previous = signal.signal(s, self._handle)
                self._previous[s] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)  # type: ignore[arg-type]
        self._previous.clear()
