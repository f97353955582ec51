"""Checkpoint files: written atomically (temporary file, fsync, rename), loaded with ``weights_only=True``.

Where checkpoints live in a run (``checkpoints/step_*.pt``) is :mod:`neural3d.training.run_dir`'s business;
``checkpoint_path``, ``list_checkpoints``, ``latest_checkpoint`` and ``save_checkpoint`` are re-exported here
from it for older imports.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_save(obj: Any, path: Path) -> None:
    """Write ``obj`` with ``torch.save`` so that ``path`` is either the old or the complete new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read checkpoint (corrupt or not a neural3d checkpoint): {e}") from None


_RUN_DIR_NAMES = ("checkpoint_path", "list_checkpoints", "latest_checkpoint", "save_checkpoint")


def __getattr__(name: str) -> Any:
    if name in _RUN_DIR_NAMES:
        from neural3d.training import run_dir

        return getattr(run_dir, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
