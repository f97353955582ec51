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


def stale_generated_scene(path: Path, synth) -> str | None:
    """Why the scene *generated* at ``path`` (its ``scene.json`` names our generator) differs from ``synth``
    (seed, resolution, layout, view counts), or None (it matches, or it is not a generated scene)."""
    import json

    try:
        spec = json.loads((path / "scene.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(spec, dict) or spec.get("generator") != "neural3d.data.synthetic":
        return None
    wanted = {"seed": synth.seed, "res": synth.res, "layout": synth.layout}
    if synth.layout == "blender":
        wanted["splits"] = {"train": synth.n_train, "val": synth.n_val, "test": synth.n_test}
    diff = [f"{k} {spec.get(k)!r} -> {v!r}" for k, v in wanted.items() if spec.get(k) != v]
    return ", ".join(diff) or None


def ensure_scene_files(data_cfg) -> Path:
    """Return ``data.path``, generating the synthetic scene there first when ``data.synth.enabled``.

    An existing folder is used as it is; a scene generated there earlier with other ``data.synth`` settings gets a
    warning (``neural3d demo`` regenerates its own scene, :func:`regenerate_if_stale`).
    """
    path = Path(data_cfg.path)
    stale = stale_generated_scene(path, data_cfg.synth) if data_cfg.synth.enabled else None
    if stale:
        print(f"[neural3d] warning: {path} was generated with other settings ({stale}); using it as it is")
    if path.exists() or not data_cfg.synth.enabled:
        if not path.exists():
            raise FileNotFoundError(
                f"data.path '{path}' does not exist. Put a scene there (see data/README.md) or generate one with "
                f"'neural3d data synth --out {path}'"
            )
        return path
    return _generate(path, data_cfg.synth)


def regenerate_if_stale(data_cfg) -> str | None:
    """Generate ``data.path`` again when it holds a scene generated with other ``data.synth`` settings (the demo's
    own folder: an older version's 64x64 demo); returns what differed, or None."""
    path = Path(data_cfg.path)
    stale = stale_generated_scene(path, data_cfg.synth) if data_cfg.synth.enabled else None
    if stale:
        print(f"[neural3d] {path} was generated with other settings ({stale}): generating it again")
        _generate(path, data_cfg.synth, replace=True)
    return stale


def _generate(path: Path, s, replace: bool = False) -> Path:
    """Write the generated scene of ``s`` (SynthConfig) into a sibling folder, then rename it to ``path`` (an
    interrupted generation leaves no half-written scene behind; ``replace``: an older generated scene goes)."""
    import shutil
    import tempfile

    from neural3d.data.synthetic import write_blender_scene, write_llff_scene

    if s.layout not in ("blender", "llff", "dtu"):
        raise ConfigError(f"data.synth.layout must be 'blender', 'llff' or 'dtu', got '{s.layout}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        if s.layout == "blender":
            write_blender_scene(tmp, seed=s.seed, res=s.res, n_train=s.n_train, n_val=s.n_val, n_test=s.n_test)
        elif s.layout == "llff":
            write_llff_scene(tmp, seed=s.seed, res=s.res, n_images=s.n_train + s.n_test)
        else:
            from neural3d.data.synthetic import write_dtu_scene

            write_dtu_scene(tmp, seed=s.seed, res=s.res, n_views=s.n_train + s.n_val + s.n_test)
        if replace and path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
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
