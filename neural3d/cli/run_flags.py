"""The run-directory flags shared by every training command: ``--resume`` and ``--overwrite``.

An existing run (one with checkpoints) is continued with ``--resume``, started again with ``--overwrite``;
neither is an error that says so (:class:`~neural3d.training.run_dir.RunExistsError`).
"""

from __future__ import annotations

import argparse
import warnings


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
