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

Distributed training: only the process for which :func:`is_main_process` holds writes (checkpoints, logs,
config); every process reads.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from neural3d.config import ConfigError

_CKPT = re.compile(r"step_(\d+)\.pt$")


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


class RunDir:
    """A run directory (see the module docstring for its layout).

    Args:
        path: the directory (created by :meth:`prepare` or the first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

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
        """Apply the resume rule and create the directory.

        ``resume``: keep what is there (training continues from :meth:`latest_checkpoint`). ``overwrite``
        (without ``resume``): delete the checkpoints and the metrics log. Neither, on a run that has
        checkpoints: :class:`RunExistsError`.
        """
        if self.latest_checkpoint() is not None and not (resume or overwrite):
            raise RunExistsError(
                f"{self.path} already holds a run; pass --resume to continue it, --overwrite to start again, "
                f"or choose another run directory (experiment=NAME / output_dir=DIR)"
            )
        if not is_main_process():
            return
        if overwrite and not resume:
            for p in self.checkpoints():
                p.unlink()
            self.metrics_csv.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.path)

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.path)

    def save_checkpoint(self, step: int, state: dict[str, Any], keep: int = 3) -> Path:
        return save_checkpoint(self.path, step, state, keep=keep)

    def load_checkpoint(self, path: str | Path | None = None, map_location: Any = "cpu") -> tuple[Path, dict]:
        """(path, state) of ``path`` or, when None, of the latest checkpoint; FileNotFoundError if none."""
        if path is None:
            path = self.latest_checkpoint()
            if path is None:
                what = "is not a directory" if not self.path.is_dir() else "holds no checkpoints/step_*.pt"
                raise FileNotFoundError(f"{self.path} {what}")
        return Path(path), load_checkpoint(path, map_location=map_location)

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
            atomic_write_text(text, path)
        return path
