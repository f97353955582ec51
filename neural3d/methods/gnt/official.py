"""Models and run directories from official GNT checkpoints (VITA-Group/GNT ``train.py``).

The parameter mapping itself is pure state-dict work in :mod:`neural3d.methods.gnt.checkpoint`; this module puts
it to use: :func:`config_from_official` (a :class:`GNTModelConfig` of the checkpoint's shapes),
:func:`load_official_gnt_checkpoint` (a ready model) and :func:`import_official` (a neural3d run directory, so
``neural3d eval RUN`` / ``neural3d render RUN`` / ``neural3d.load(RUN)`` work on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from neural3d.methods.base import SceneInfo
from neural3d.methods.gnt.checkpoint import official_config_fields, official_to_state_dict, read_checkpoint
from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

__all__ = ["config_from_official", "import_official", "load_official_gnt_checkpoint"]


def config_from_official(ckpt: dict[str, Any], **overrides) -> Any:
    """A :class:`GNTModelConfig` (built, checked) matching an official checkpoint's shapes; ``overrides`` set
    further fields."""
    from neural3d.config import build

    return build(GNTModelConfig, {**official_config_fields(ckpt), **overrides}, source="official GNT checkpoint")


def load_official_gnt_checkpoint(path: str | Path, *, scene=None, device: str = "cpu", **overrides) -> GNTModel:
    """Build a neural3d ``GNTModel`` from a checkpoint saved by the official GNT code.

    Args:
        path: the ``.pth`` file (``net_coarse``, ``feature_net``[, ``net_fine``]).
        scene: optional :class:`SceneInfo` (bounds); default near 0.1 / far 100 (rays carry their own).
        device: where the model goes.
        **overrides: further :class:`GNTModelConfig` fields (``n_samples=192``, ``n_fine``...).
    Returns:
        the model in eval mode (attach a scene, or pass ``SourceViews`` contexts, to render).
    """
    ckpt = read_checkpoint(path)
    cfg = config_from_official(ckpt, **overrides)
    info = (
        scene if scene is not None else SceneInfo(scene_box=torch.tensor([[-1.0] * 3, [1.0] * 3]), near=0.1, far=100.0)
    )
    model = GNTModel(cfg, scene=info)
    model.load_state_dict(official_to_state_dict(ckpt), strict=True)
    return model.to(device).eval()


def import_official(
    checkpoint: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    pixel_center: float = 0.0,
    overrides: Sequence[str] = (),
) -> Path:
    """Write a neural3d run directory around an official GNT checkpoint; returns the run directory.

    Args:
        checkpoint: the official ``.pth``.
        data_path: the scene whose ``train`` images serve as source views (world-space rays, no NDC).
        out_dir: the run directory to write (step 0: ``config.yaml``, ``run.json``, ``checkpoints/``).
        pixel_center: ``0.0`` reproduces the official rays (pixel centres at integer coordinates).
        overrides: config overrides (``model.n_samples=192``, ``data.factor=4``, ...).
    """
    from omegaconf import OmegaConf

    from neural3d.config import build_config
    from neural3d.methods.gnt.bounds import apply_official_depth_range
    from neural3d.training.setup import load_scene_from_config, scene_info

    raw = read_checkpoint(checkpoint)
    model_cfg = OmegaConf.to_container(config_from_official(raw))
    cfg, _ = build_config(
        {
            "method": "gnt",
            "model": model_cfg,
            "data": {"path": str(data_path), "ndc": False, "pixel_center": pixel_center},
        },
        overrides,
        source=str(checkpoint),
    )
    scene = load_scene_from_config(cfg.data)
    apply_official_depth_range(scene)  # the run records GNT's own ray bounds (LLFF: 1.6 * max(bounds))
    info = scene_info(scene)
    meta = {"data_path": str(Path(data_path).resolve()), "imported_from": str(Path(checkpoint).resolve())}
    return _write_run(Path(out_dir), cfg, info, official_to_state_dict(raw), meta)


def _write_run(out: Path, cfg, info: SceneInfo, model_state: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """A step-0 run directory holding ``model_state``, written through :class:`~neural3d.training.run_dir.RunDir`.

    The checkpoint has the trainer's keys except the optimizer / scheduler / loader / RNG states (nothing was
    trained); ``run.json`` has the trainer's keys plus ``meta``.
    """
    from omegaconf import OmegaConf

    from neural3d.config import to_yaml
    from neural3d.training.run_dir import RunDir

    state = {
        "step": 0,
        "elapsed": 0.0,
        "method": cfg.method,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "scene": info.state(),
        "model": model_state,
    }
    run = RunDir(out)
    run.save_checkpoint(0, state)
    run.write_config(to_yaml(cfg))
    run.write_meta({"method": cfg.method, "scene": info.state(), **meta})
    return out
