"""``--overwrite`` without losing the run it replaces: move it aside, delete it once the new run has a checkpoint.

The entries of a run that a new one replaces (:data:`REPLACED`: ``checkpoints/``, ``logs/``, ``config.yaml``,
``run.json``, ``metrics.json``) are renamed into ``RUN/.overwritten/`` (each rename atomic, on the same file
system) only when the new run starts writing, i.e. after its configuration and data were loaded and checked.
At every moment each file of the old run is either in ``RUN`` or in ``RUN/.overwritten``:

* the new run writes its first checkpoint: ``.overwritten`` is deleted (:meth:`PreviousRun.commit`);
* the new run fails before that (an error, a signal): the old entries are moved back, replacing what the new
  run wrote (:meth:`PreviousRun.restore`);
* the process was killed in between (``kill -9``): the next trainer of the run finds ``.overwritten`` and
  finishes the job (:func:`recover`): restored when the run has no checkpoint, deleted when it has one.

``eval/``, ``renders/`` and ``export/`` are left where they are (as before: ``--overwrite`` discards the
checkpoints and logs).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

ASIDE = ".overwritten"
REPLACED = ("checkpoints", "logs", "config.yaml", "run.json", "metrics.json")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class PreviousRun:
    """The run that ``--overwrite`` replaces in ``run_dir`` (see the module docstring).

    Args:
        run_dir: the run directory.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run = Path(run_dir)
        self.aside = self.run / ASIDE

    def exists(self) -> bool:
        """True when the run holds something that a new run replaces."""
        return any((self.run / name).exists() for name in REPLACED)

    def move_aside(self) -> None:
        """Rename the replaced entries into ``RUN/.overwritten/``."""
        self.aside.mkdir(parents=True, exist_ok=True)
        for name in REPLACED:
            if (self.run / name).exists() and not (self.aside / name).exists():
                os.replace(self.run / name, self.aside / name)
        _fsync_dir(self.run)

    def commit(self) -> None:
        """The new run has a checkpoint: delete the old run."""
        if self.aside.is_dir():
            shutil.rmtree(self.aside)

    def restore(self) -> None:
        """Put the old run back (what the new run wrote under the same names is removed)."""
        if not self.aside.is_dir():
            return
        for name in REPLACED:
            if (self.aside / name).exists():
                _remove(self.run / name)
                os.replace(self.aside / name, self.run / name)
        shutil.rmtree(self.aside)
        _fsync_dir(self.run)


def recover(run_dir: str | Path) -> None:
    """Finish an ``--overwrite`` interrupted by ``kill -9`` (a no-op when there is none; see the module docstring)."""
    prev = PreviousRun(run_dir)
    if not prev.aside.is_dir():
        return
    ckpts = prev.run / "checkpoints"
    if ckpts.is_dir() and any(p.name.startswith("step_") and p.name.endswith(".pt") for p in ckpts.iterdir()):
        prev.commit()
        return
    prev.restore()
    warnings.warn(
        f"{prev.run}: an earlier --overwrite was interrupted before the new run wrote a checkpoint; "
        f"the previous run was restored from {prev.aside}",
        stacklevel=3,
    )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
