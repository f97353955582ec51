"""Building blocks shared by training, evaluation and the Python API: device, scene, model, run dir."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neural3d.config import ConfigError
from neural3d.methods.base import Model, SceneInfo
from neural3d.methods.registry import get_method


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device '{name}' is not a torch device: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} requested but CUDA is not available (torch {torch.__version__})")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def ensure_scene_files(data_cfg) -> Path:
    """Return ``data.path``, generating the synthetic scene there first when ``data.synth.enabled``."""
    path = Path(data_cfg.path)
    if path.exists() or not data_cfg.synth.enabled:
        if not path.exists():
            raise FileNotFoundError(
                f"data.path '{path}' does not exist. Put a scene there (see data/README.md) or generate one with "
                f"'neural3d data synth --out {path}'"
            )
        return path
    from neural3d.data.synthetic import write_blender_scene, write_llff_scene

    s = data_cfg.synth
    if s.layout == "blender":
        write_blender_scene(path, seed=s.seed, res=s.res, n_train=s.n_train, n_val=s.n_val, n_test=s.n_test)
    elif s.layout == "llff":
        write_llff_scene(path, seed=s.seed, res=s.res, n_images=s.n_train + s.n_test)
    elif s.layout == "dtu":
        from neural3d.data.synthetic import write_dtu_scene

        write_dtu_scene(path, seed=s.seed, res=s.res, n_views=s.n_train + s.n_val + s.n_test)
    else:
        raise ConfigError(f"data.synth.layout must be 'blender', 'llff' or 'dtu', got '{s.layout}'")
    return path


def load_scene_from_config(data_cfg):
    """Load (generating if configured) the scene described by a :class:`DataConfig`."""
    from neural3d.data import load_scene

    path = ensure_scene_files(data_cfg)
    kw: dict[str, Any] = {
        "format": data_cfg.format,
        "factor": data_cfg.factor,
        "background": tuple(data_cfg.background),
        "llffhold": data_cfg.llffhold,
        "spherify": data_cfg.spherify,
        "ndc": data_cfg.ndc,
        "allow_external_paths": data_cfg.allow_external_paths,
        "split": data_cfg.dtu_split,
        "train_views": data_cfg.dtu_train_views,
        "use_masks": data_cfg.dtu_masks,
    }
    scene = load_scene(path, **kw)
    if data_cfg.near is not None:
        scene.near = float(data_cfg.near)
    if data_cfg.far is not None:
        scene.far = float(data_cfg.far)
    scene.pixel_center = float(data_cfg.pixel_center)
    return scene.with_train_views(count=data_cfg.n_train_views, views=list(data_cfg.train_views))


def scene_info(scene) -> SceneInfo:
    ndc_params = None
    if scene.ndc:
        ndc_params = (float(scene.ndc_width), float(scene.ndc_height), float(scene.ndc_focal))
    return SceneInfo(
        scene_box=torch.as_tensor(scene.scene_box, dtype=torch.float32).cpu().clone(),
        near=float(scene.near),
        far=float(scene.far),
        ndc=bool(scene.ndc),
        background=torch.as_tensor(scene.background).float().cpu(),
        ndc_params=ndc_params,
    )


def build_model(method: str, model_cfg: Any, info: SceneInfo) -> Model:
    return get_method(method).model_class(model_cfg, scene=info)


def run_directory(cfg) -> Path:
    name = cfg.experiment or f"{Path(cfg.data.path).name}-{cfg.method}"
    return Path(cfg.output_dir) / name
