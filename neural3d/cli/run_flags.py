"""The run-directory flags shared by every training command: ``--resume`` and ``--overwrite``.

An existing run (one with checkpoints) is continued with ``--resume``, started again with ``--overwrite``;
neither is an error that says so (:class:`~neural3d.training.run_dir.RunExistsError`).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from neural3d.config import ConfigError


class NoRunToResumeError(ConfigError):
    """``--resume`` was given but the run directory holds no checkpoint to continue from."""


def check_resumable(run_dir: Path, resume: bool) -> None:
    """With ``resume``, raise :class:`NoRunToResumeError` unless ``run_dir`` holds a checkpoint: ``--resume`` never
    starts a fresh run silently (a mistyped ``experiment=`` would otherwise train from scratch)."""
    from neural3d.training.run_dir import RunDir
    from neural3d.training.run_lock import check_not_in_use

    check_not_in_use(run_dir)  # a run another trainer holds is named as such, whatever it holds yet
    if resume and RunDir(run_dir).latest_checkpoint() is None:
        what = "does not exist" if not Path(run_dir).exists() else "holds no checkpoints/step_*.pt"
        raise NoRunToResumeError(
            f"--resume: there is no run to continue: {run_dir} {what}; check output_dir / experiment, "
            "or drop --resume to start a new run"
        )


def add_run_flags(parser: argparse.ArgumentParser, *, restart_alias: bool = False) -> None:
    """Add ``--resume`` / ``--overwrite`` (and the deprecated ``--restart`` = ``--overwrite`` when asked)."""
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in the run directory from its latest checkpoint"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start again: discard checkpoints and logs already in the run"
    )
    if restart_alias:
        parser.add_argument("--restart", action="store_true", help="deprecated: use --overwrite")


def run_mode(args: argparse.Namespace) -> tuple[bool, bool]:
    """(resume, overwrite) of parsed arguments; ``--restart`` warns and means ``--overwrite``.

    In a group that ``torchrun --max-restarts`` restarted after a failure, resume is on: the run continues
    from its last checkpoint.
    """
    from neural3d.training.distributed import restarted_by_torchrun

    overwrite = bool(args.overwrite)
    if getattr(args, "restart", False):
        warnings.warn("--restart is deprecated; use --overwrite (same meaning)", DeprecationWarning, stacklevel=2)
        print("[neural3d] warning: --restart is deprecated; use --overwrite (same meaning)")
        overwrite = True
    return bool(args.resume) or restarted_by_torchrun(), overwrite
