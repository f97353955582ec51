"""Neural3d runs from official LVSM checkpoints (``neural3d lvsm import``): the model's sizes are read off the
checkpoint's shapes, the weights mapped by :mod:`neural3d.methods.lvsm.official` and loaded strictly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from neural3d.methods.lvsm.official import config_fields_from_state, load_strict, official_to_state_dict


def import_official(
    checkpoint: str | Path, data_path: str | Path, out_dir: str | Path, *, overrides: Sequence[str] = ()
) -> Path:
    """Write a neural3d run directory (step 0) around an official LVSM checkpoint; returns the run directory.

    The model's sizes come from the checkpoint's shapes (without ``model.head_dim`` when it has no QK-norm: give
    it as an override); ``data_path`` is the scene whose ``train`` images serve as source views. Loading is strict.
    """
    from neural3d.config import build_config
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.official import _write_run
    from neural3d.methods.lvsm.model import LVSMModel
    from neural3d.training.run_dir import load_checkpoint
    from neural3d.training.setup import load_scene_from_config, scene_info

    raw = load_checkpoint(Path(checkpoint))  # weights only: a file that would run code is refused
    official = raw.get("model", raw) if isinstance(raw, dict) else raw
    if not isinstance(official, dict):
        raise ValueError(f"{checkpoint}: not an LVSM checkpoint (a {type(official).__name__}, not a state dict)")
    fields = config_fields_from_state(official, checkpoint)
    cfg, model_cfg = build_config(
        {"method": "lvsm", "model": fields, "data": {"path": str(data_path), "ndc": False}},
        overrides,
        source=str(checkpoint),
    )
    state = official_to_state_dict(official)
    probe = LVSMModel(model_cfg, scene=SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.0, 1.0))
    load_strict(probe, state, checkpoint)  # no missing / unexpected keys, same shapes
    info = scene_info(load_scene_from_config(cfg.data))
    meta = {"data_path": str(Path(data_path).resolve()), "imported_from": str(Path(checkpoint).resolve())}
    return _write_run(Path(out_dir), cfg, info, probe.state_dict(), meta)
