"""Checkpoint files, kept for older imports: everything here now lives in :mod:`neural3d.training.run_dir`.

Written atomically (temporary file, fsync, rename), loaded with ``weights_only=True``.
"""

from __future__ import annotations

from neural3d.training.run_dir import (
    atomic_save,
    atomic_write_text,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "atomic_save",
    "atomic_write_text",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]
