"""Python API: load a trained run and render any camera.

>>> import neural3d
>>> scene = neural3d.load("runs/demo")                          # doctest: +SKIP
>>> out = scene.render(c2w=c2w, K=K, width=200, height=200)     # doctest: +SKIP
>>> out["rgb"].shape                                            # doctest: +SKIP
torch.Size([1, 200, 200, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neural3d.config import ConfigError, build_config
from neural3d.core.cameras import Cameras
from neural3d.methods.base import Model, SceneInfo
from neural3d.methods.registry import get_method
from neural3d.training.nonfinite import require_finite
from neural3d.training.run_dir import RunDir
from neural3d.training.setup import build_model, select_device


@dataclass
class LoadedScene:
    """A trained model with its scene description, ready to render.

    Attributes:
        model: the method (in eval mode).
        info: bounds, NDC and background of the scene.
        config: the run's full config.
        run_dir: where the run lives.
        step: training step of the loaded checkpoint.
    """

    model: Model
    info: SceneInfo
    config: Any
    run_dir: Path
    step: int
    pixel_center: float = 0.5

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def dataset(self):
        """Load the run's dataset (images and cameras) from its configured path, with the method's conventions
        (``Model.prepare_scene``: GNT's ray depth range)."""
        from neural3d.training.setup import load_scene_from_config

        scene = load_scene_from_config(self.config.data)
        self.model.prepare_scene(scene)
        return scene

    @torch.no_grad()
    def render(
        self,
        cameras: Cameras | None = None,
        *,
        c2w: Tensor | None = None,
        K: Tensor | None = None,
        width: int | None = None,
        height: int | None = None,
        chunk: int = 8192,
        context: Any = None,
        near: float | None = None,
        far: float | None = None,
    ) -> dict[str, Tensor]:
        """Render cameras (or one pose given as ``c2w`` [3|4, 4] / [n, 3|4, 4] OpenGL and ``K`` [3, 3]).

        ``context`` defaults to ``model.render_context(cameras, i)`` per camera (for GNT: the nearest
        source views of the attached scene, chosen for any pose). ``near`` / ``far``: ray bounds instead of the
        run's (``info.near`` / ``info.far``; world units, ignored for NDC scenes whose rays span [0, 1]), e.g. for
        a camera farther from the scene than the training cameras (the viewer's first view).

        Returns:
            dict of ``rgb`` [n, H, W, 3], ``depth`` [n, H, W], ``opacity`` [n, H, W] on the model's device.
            Rendering is chunked (``chunk`` rays at a time), so memory stays bounded at any resolution.
        """
        cameras = self._as_cameras(cameras, c2w, K, width, height).to(self.device)
        self.model.eval()
        info = self.info
        if (near is not None or far is not None) and not info.ndc:
            info = replace(info, near=info.near if near is None else near, far=info.far if far is None else far)
        outs: dict[str, list[Tensor]] = {"rgb": [], "depth": [], "opacity": []}
        for i in range(len(cameras)):
            rays = info.image_rays(cameras, i, self.pixel_center)
            ctx = context if context is not None else self.model.render_context(cameras, i)
            o = self.model.render_rays(rays, chunk=chunk, context=ctx)
            for k in outs:
                outs[k].append(o[k] if k == "rgb" else o[k][..., 0])
        if len({tuple(x.shape) for x in outs["rgb"]}) > 1:
            return dict(outs.items())  # type: ignore[return-value]  # ragged sizes: lists
        return {k: torch.stack(v) for k, v in outs.items()}

    @staticmethod
    def _as_cameras(cameras, c2w, K, width, height) -> Cameras:
        if cameras is not None:
            return cameras
        if c2w is None or K is None or width is None or height is None:
            raise ValueError("render() needs either `cameras` or all of c2w, K, width and height")
        c2w = torch.as_tensor(c2w, dtype=torch.float32)
        if c2w.ndim == 2:
            c2w = c2w[None]
        K = torch.as_tensor(K, dtype=torch.float32)
        K = K[None].expand(c2w.shape[0], 3, 3) if K.ndim == 2 else K
        return Cameras(c2w[:, :3, :4], K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], width, height)


def load(
    run_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    data: dict | None = None,
    model: dict | None = None,
) -> LoadedScene:
    """Load a trained run (its latest checkpoint unless ``checkpoint`` is given).

    Args:
        data: overrides of the run's ``data`` config section (e.g. ``{"path": "scenes/new"}``). Models
            with ``needs_scene`` (GNT) render from that dataset's images: a generalizable run renders
            an unseen scene given only its images and poses.
        model: overrides of the run's ``model`` section that leave the weights' shapes unchanged (e.g.
            GNT's ``{"n_samples_eval": 192}``); the model is built with them.
    """
    run_dir = Path(run_dir)
    dev = select_device(device)
    try:
        path, state = RunDir(run_dir).load_checkpoint(checkpoint, map_location=dev)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"cannot load run: {e}") from None
    saved = state["config"]
    model_section = saved.pop("model", {}) or {}
    upgrade = getattr(get_method(saved.get("method", "ngp")).config_class, "upgrade_legacy", None)
    if upgrade is not None:  # a checkpoint of an earlier version (e.g. ngp's flat sampler keys)
        model_section = upgrade(model_section)
    model_section = {**model_section, **dict(model or {})}
    if data:
        saved["data"] = {**(saved.get("data") or {}), **dict(data)}
    cfg, model_cfg = build_config({**saved, "model": model_section}, source=str(path))
    info = SceneInfo.from_state(state["scene"])
    net = build_model(cfg.method, model_cfg, info).to(dev)
    net.load_state_dict(state["model"])
    require_finite(net, path)
    net.eval()
    if net.needs_scene:
        from neural3d.training.setup import load_scene_from_config, scene_info

        dataset = load_scene_from_config(cfg.data).to(dev)
        net.attach_scene(dataset)
        if data:  # ray bounds of the scene actually rendered
            info = scene_info(dataset)
    return LoadedScene(net, info, cfg, run_dir, int(state["step"]), float(cfg.data.pixel_center))


def run_metadata(run_dir: str | Path) -> dict:
    """The run's ``run.json`` ({} when absent)."""
    return RunDir(run_dir).read_meta()


# model settings that may change at render time on another scene (sampling, source-view choice; no shapes)
RENDER_TIME_MODEL_KEYS = (
    "n_samples",
    "n_samples_eval",
    "n_fine",
    "n_source_views",
    "n_source_views_eval",
    "lindisp",
    "selection",
    "pose_normalization",
)


def split_scene_overrides(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data.KEY=VALUE`` / ``model.KEY=VALUE`` strings -> (data dict, model dict) with YAML-typed values.

    Raises:
        ConfigError: an item of another form, or a ``model.`` key not in :data:`RENDER_TIME_MODEL_KEYS`.
    """
    from omegaconf import OmegaConf

    data, model = {}, {}
    for item in items:
        if "=" not in item or not item.startswith(("data.", "model.")):
            raise ConfigError(f"override '{item}' must look like data.KEY=VALUE or model.KEY=VALUE")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value}"]))["v"]
        if section == "model" and name not in RENDER_TIME_MODEL_KEYS:
            raise ConfigError(
                f"model.{name} cannot change at render time; allowed: {', '.join(RENDER_TIME_MODEL_KEYS)}"
            )
        (data if section == "data" else model)[name] = parsed
    return data, model


def load_for_scene(
    run_dir: str | Path, scene_path: str | Path, overrides: Sequence[str] = (), device: str = "auto"
) -> LoadedScene:
    """:func:`load` of a run of a source-view method (GNT) rendering from the scene at ``scene_path``.

    The scene is unseen by the run: only its images and poses are used, its ``train`` split as source views.

    Args:
        run_dir: a run whose model ``needs_scene``.
        scene_path: the scene folder; world-space rays (``data.ndc=false``) unless ``overrides`` say otherwise.
        overrides: ``data.KEY=VALUE`` and ``model.KEY=VALUE`` strings (model: :data:`RENDER_TIME_MODEL_KEYS`).
        device: ``auto``, ``cpu``, ``cuda``...
    """
    data, model = split_scene_overrides(overrides)
    if not Path(scene_path).exists():
        raise FileNotFoundError(f"scene '{scene_path}' does not exist")
    data.setdefault("ndc", False)  # GNT casts world-space rays, also through forward-facing scenes
    loaded = load(
        run_dir, device=device, data={**data, "path": str(scene_path), "synth": {"enabled": False}}, model=model
    )
    if not loaded.model.needs_scene:
        raise ValueError(f"{run_dir}: method '{loaded.config.method}' does not render from source views")
    return loaded
