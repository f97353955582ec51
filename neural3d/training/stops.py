"""Why a training run stopped before its last step: the errors the loop raises and the exit codes they carry.

* :class:`TrainingInterrupted`: SIGINT / SIGTERM; the loop saved a checkpoint at the current step first.
  Exit code ``128 + signal`` (130 for SIGINT, 143 for SIGTERM), as a shell reports a process killed by it.
* :class:`NonFiniteError`: a non-finite loss, gradient or parameter (``trainer.nonfinite=stop``); nothing
  of the bad state is saved, the last finite checkpoint is kept. Exit code 3.

Both derive from :class:`TrainingStopped`: the command line prints its message on one line and exits with
its ``exit_code``; the Python API raises it to the caller.
"""

from __future__ import annotations

import signal
from pathlib import Path


class TrainingStopped(Exception):
    """Training stopped before its last step; ``exit_code`` is what the command line exits with."""

    exit_code = 1


class TrainingInterrupted(TrainingStopped):
    """SIGINT / SIGTERM during training: a checkpoint of ``step`` was written to ``checkpoint`` (None: no run dir).

    Args:
        signum: the signal received.
        step: the steps done (the checkpoint's step).
        checkpoint: the checkpoint written at ``step``.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = int(signum), int(step), checkpoint
        self.exit_code = 128 + self.signum
        name = signal.Signals(self.signum).name
        saved = f"checkpoint {checkpoint}; continue with --resume" if checkpoint else "no run directory, nothing saved"
        super().__init__(f"interrupted by {name} at step {step}: {saved}")


class NonFiniteError(TrainingStopped):
    """A non-finite loss, gradient or parameter stopped training (see :mod:`neural3d.training.nonfinite`)."""

    exit_code = 3
