"""The run directory: the one module that writes and reads it.

Layout (every training command and every loader uses it)::

    RUN/
      config.yaml             the resolved config of the run (written at start, atomically)
      run.json                metadata (method, scene bounds, data path; optional)
      checkpoints/step_XXXXXXX.pt   atomic torch.save files, the ``keep`` newest kept
      logs/metrics.csv        one row per logged step (train/*, eval/* columns); logs/tensorboard/
      metrics.json            end-of-training summary (where a task writes one)
      eval/                   evaluation outputs (``neural3d eval``: eval/SPLIT/metrics.json + images)
      renders/                videos and frames
      export/                 point clouds, meshes, cameras (``neural3d export``)

A checkpoint is a flat dict: the loop's keys (``step``, ``elapsed``, ``optimizer``, ``scheduler``,
``rng_cpu``, ``rng_cuda``) next to the task's (``model``, ``config``, ...), so checkpoints written before
the single loop load unchanged.

Resume rule, the same for every training command: an existing run (one with checkpoints) is continued
with ``resume=True`` (``--resume``), started again with ``overwrite=True`` (``--overwrite``); neither raises
:class:`RunExistsError`.

A run is safe (:meth:`RunDir.prepare` ... :meth:`RunDir.release`): a trainer locks the run directory
(:mod:`neural3d.training.run_lock`: a second trainer is refused, naming the holder); stray temporary files of
an interrupted checkpoint write (``checkpoints/.step_*.pt.*.tmp``) are removed; ``--overwrite`` moves the old
run aside only when the new one starts writing and deletes it at the new run's first checkpoint, restoring it
when the new run fails before (:mod:`neural3d.training.previous_run`). Readers take the newest *readable*
checkpoint, with a warning naming the unreadable ones (:meth:`RunDir.load_checkpoint`).

Distributed training: only the process for which :func:`is_main_process` holds writes (checkpoints, logs,
config); every process reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from neural3d.config import ConfigError
from neural3d.training import distributed as dist
from neural3d.training.previous_run import PreviousRun, recover
from neural3d.training.run_lock import RunLock

_CKPT = re.compile(r"step_(\d+)\.pt$")
# what atomic_save / atomic_write_text leave behind when killed mid-write (mkstemp: 8 characters of [a-z0-9_])
_STRAY_CKPT_TMP = re.compile(r"^\.step_\d+\.pt\.[a-z0-9_]{8}\.tmp$")
_STRAY_RUN_TMP = (".config.yaml.tmp", ".run.json.tmp", ".metrics.json.tmp", "logs/metrics.tmp")


class RunExistsError(ConfigError):
    """The run directory already holds a run and neither ``--resume`` nor ``--overwrite`` was given."""


# ---------------------------------------------------------------------------------------------- files
def atomic_save(obj: Any, path: Path) -> None:
    """Write ``obj`` with ``torch.save`` so that ``path`` is either the old or the complete new file.

    A failed write (disk full, a file-size limit, an I/O error) removes the partial file and raises OSError naming
    ``path``; files already there, ``path``'s old version included, are left as they were.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, (OSError, RuntimeError)) and (failed := _write_failure(e, path)) is not None:
            raise failed from None
        raise


def _write_failure(err: BaseException, path: Path) -> OSError | None:
    """An OSError naming ``path`` for a failed write (torch's zip writer reports one as a RuntimeError), else None."""
    import errno
    import shutil

    if isinstance(err, RuntimeError) and not any(s in str(err) for s in ("inline_container", "PytorchStreamWriter")):
        return None  # not a write error (a bug elsewhere keeps its own exception)
    code = getattr(err, "errno", None)
    reason = getattr(err, "strerror", None)
    if reason is None:  # torch's message says nothing useful: tell a full disk from other failures ourselves
        full = shutil.disk_usage(path.parent).free < (1 << 20)
        code = errno.ENOSPC if full else errno.EIO
        reason = "No space left on device" if full else "write failed (file-size limit or I/O error)"
    return OSError(code, f"{reason}; not written, the files already there are unchanged", str(path))


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint file loaded with ``weights_only=True``; FileNotFoundError / ValueError say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(_unreadable_message(path, e)) from None


def _unreadable_message(path: Path, err: Exception) -> str:
    """Why checkpoint ``path`` cannot be loaded. A file that needs code run to unpickle is refused as such (torch's
    own message suggests ``weights_only=False``, which would run that code: never the advice to give)."""
    text = str(err)
    if "Weights only load failed" in text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        what = next((ln for ln in lines[1:] if "GLOBAL" in ln or "Unsupported" in ln), "an object that is not data")
        return (
            f"{path}: refused: the checkpoint holds pickled Python objects beyond tensors and plain containers "
            f"({what.rstrip('.')}); neural3d loads checkpoints with weights_only=True and refuses to run code from "
            "checkpoint files (a neural3d checkpoint never needs it)"
        )
    return f"{path}: cannot read checkpoint (corrupt, truncated or not a PyTorch checkpoint): {text}"


# ---------------------------------------------------------------------------------------------- layout
def is_main_process() -> bool:
    """True unless torch.distributed is initialised and this is not rank 0: the single writer predicate."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """``run_dir/checkpoints/step_XXXXXXX.pt`` of ``step``."""
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def chosen_checkpoint(run_dir: str | Path, choice: str | None) -> Path | None:
    """The checkpoint a command's ``--checkpoint`` names: None stays None (the newest readable one), digits are a
    step of the run (FileNotFoundError naming the steps it has), anything else a file path."""
    if choice is None:
        return None
    if not choice.isdigit():
        return Path(choice)
    path = checkpoint_path(Path(run_dir), int(choice))
    if not path.is_file():
        steps = [int(_CKPT.search(p.name).group(1)) for p in list_checkpoints(Path(run_dir))]
        has = f"its checkpoints are of steps {', '.join(map(str, steps))}" if steps else "it has no checkpoints"
        raise FileNotFoundError(f"cannot load run: {run_dir} has no checkpoint of step {int(choice)} ({has})")
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest step first."""
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if _CKPT.search(p.name)]
    return sorted(found, key=lambda p: int(_CKPT.search(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of the highest step, or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Save ``state`` as ``checkpoints/step_XXXXXXX.pt`` (atomically) and keep only the ``keep`` newest."""
    path = checkpoint_path(run_dir, step)
    if not is_main_process():
        return path
    atomic_save(state, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _first_line(error: Exception, path: Path, limit: int = 100) -> str:
    """The gist of a load error: its first line without the path, at most ``limit`` characters."""
    text = str(error).removeprefix(f"{path}: ").strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunDir:
    """A run directory (see the module docstring for its layout).

    Args:
        path: the directory (created by :meth:`prepare` or the first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: RunLock | None = None  # held between prepare() and release() (main process)
        self._previous: PreviousRun | None = None  # the run --overwrite replaces, until the first checkpoint
        self._moved = False  # whether _previous was moved aside (start())

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "logs" / "metrics.csv"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def eval_dir(self, name: str = "") -> Path:
        """``eval/`` or ``eval/NAME``."""
        return self.path / "eval" / name if name else self.path / "eval"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def renders_dir(self) -> Path:
        return self.path / "renders"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    # ------------------------------------------------------------------ lifecycle
    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Lock the run, tidy it and apply the resume rule (main process; the others learn its verdict).

        ``resume``: keep what is there (training continues from the newest readable checkpoint).
        ``overwrite`` (without ``resume``): the old run is moved aside when the new one starts writing
        (:meth:`start`) and deleted at its first checkpoint, or restored by :meth:`release` if there is none.
        Neither, on a run that has checkpoints: :class:`RunExistsError`. A run locked by another live
        process: :class:`~neural3d.training.run_lock.RunLockedError`. Pair with :meth:`release`.
        """
        error = None
        if is_main_process():
            try:
                self._prepare_main(resume=resume, overwrite=overwrite)
            except ConfigError as e:
                error = e
        shared = dist.broadcast_object(None if error is None else str(error))
        if error is not None:
            raise error
        if shared is not None:  # another rank (rank 0) refused: stop here too, with its reason
            raise ConfigError(shared)

    def _prepare_main(self, *, resume: bool, overwrite: bool) -> None:
        if self._lock is None:
            self._lock = RunLock(self.path)
        self._lock.acquire()
        try:
            recover(self.path)
            if self.latest_checkpoint() is not None and not (resume or overwrite):
                raise RunExistsError(
                    f"{self.path} already holds a run; pass --resume to continue it, --overwrite to start again, "
                    f"or choose another run directory (experiment=NAME / output_dir=DIR)"
                )
            self.remove_stray_files()
        except BaseException:
            self.release()
            raise
        previous = PreviousRun(self.path)
        self._previous = previous if overwrite and not resume and previous.exists() else None

    def remove_stray_files(self) -> list[Path]:
        """Delete the temporary files of writes killed midway (only names our atomic writes make); returns them."""
        stray = [p for p in self.checkpoints_dir.glob(".step_*.tmp") if _STRAY_CKPT_TMP.match(p.name)]
        stray += [self.path / name for name in _STRAY_RUN_TMP if (self.path / name).is_file()]
        for p in stray:
            p.unlink(missing_ok=True)
        return stray

    def start(self) -> None:
        """The new run starts writing: with ``--overwrite``, move the old run aside now (idempotent)."""
        if self._previous is not None and not self._moved:
            self._previous.move_aside()
            self._moved = True

    def release(self) -> None:
        """End of training (or of a failed start): restore an overwritten run that got no new checkpoint; unlock."""
        previous, self._previous = self._previous, None
        if previous is not None and self._moved:
            self._moved = False
            previous.restore()
            warnings.warn(
                f"{self.path}: the new run stopped before writing a checkpoint; the previous run is restored",
                stacklevel=2,
            )
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @contextlib.contextmanager
    def releasing_on_error(self) -> Iterator[RunDir]:
        """``with run.releasing_on_error(): ...`` (setup after :meth:`prepare`): :meth:`release` if it raises."""
        try:
            yield self
        except BaseException:
            self.release()
            raise

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.path)

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.path)

    def save_checkpoint(self, step: int, state: dict[str, Any], keep: int = 3) -> Path:
        """Save (atomically, the ``keep`` newest kept); the first checkpoint of an ``--overwrite`` run commits it."""
        self.start()
        path = save_checkpoint(self.path, step, state, keep=keep)
        if self._previous is not None and is_main_process():
            self._previous.commit()
            self._previous, self._moved = None, False
        return path

    def load_checkpoint(self, path: str | Path | None = None, map_location: Any = "cpu") -> tuple[Path, dict]:
        """(path, state) of ``path`` or, when None, of the newest readable checkpoint.

        Unreadable newer checkpoints (truncated, corrupt) are skipped with a warning naming them and the one
        used; ValueError when none is readable (naming each), FileNotFoundError when there is none.
        """
        if path is not None:
            return Path(path), load_checkpoint(path, map_location=map_location)
        ckpts = self.checkpoints()
        if not ckpts:
            what = "is not a directory" if not self.path.is_dir() else "holds no checkpoints/step_*.pt"
            raise FileNotFoundError(f"{self.path} {what}")
        failures: list[str] = []  # "step_X.pt (reason)", newest first
        for candidate in reversed(ckpts):
            try:
                state = load_checkpoint(candidate, map_location=map_location)
            except ValueError as e:
                failures.append(f"{candidate.name} ({_first_line(e, candidate)})")
                continue
            if failures:
                warnings.warn(
                    f"{self.checkpoints_dir}: {', '.join(failures)} unreadable; using {candidate.name}, "
                    f"the newest readable checkpoint",
                    stacklevel=2,
                )
            return candidate, state
        raise ValueError(f"{self.checkpoints_dir}: no readable checkpoint: " + ", ".join(failures))

    # ------------------------------------------------------------------ text files
    def write_config(self, yaml_text: str) -> None:
        """``config.yaml`` (the caller renders its config to YAML)."""
        self.write_text("config.yaml", yaml_text)

    def read_config_text(self) -> str:
        return self.config_path.read_text()

    def write_meta(self, meta: dict[str, Any]) -> None:
        """``run.json``."""
        self.write_json("run.json", meta)

    def read_meta(self) -> dict[str, Any]:
        """``run.json`` as a dict ({} when absent)."""
        return json.loads(self.meta_path.read_text()) if self.meta_path.is_file() else {}

    def write_json(self, relpath: str, obj: Any) -> Path:
        """Write ``obj`` as indented JSON to ``RUN/relpath`` (atomically, main process only)."""
        return self.write_text(relpath, json.dumps(obj, indent=2))

    def write_text(self, relpath: str, text: str) -> Path:
        path = self.path / relpath
        if is_main_process():
            self.start()
            atomic_write_text(text, path)
        return path
