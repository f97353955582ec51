"""Training a 3D dictionary across a generated scene family, and fitting a new scene by its code.

:func:`train_family` runs its own small loop (the shared Trainer is single-scene): each step draws
``scenes_per_step`` scenes and ``rays_per_scene`` random rays of each, renders them with their codes
through :meth:`~neural3d.methods.nid.model.NIDModel.forward_scenes` (shared samplers and VolumeRenderer) and
minimises MSE + ``cv`` * cv^2 balancing of expert load and importance. Checkpoints (atomic) hold a
``model`` state whose ``field.bank.*`` a single-scene ``nid`` model loads via ``model.dictionary``.

:func:`fit_scene` solves a new scene's code with the bank frozen, optionally followed by a short
fine-tune of everything, and records test PSNR against seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from neural3d.data.loader import RayLoader
from neural3d.evaluation.metrics import psnr
from neural3d.methods.base import Model
from neural3d.methods.nid.config import build
from neural3d.methods.nid.losses import cv_squared
from neural3d.methods.nid.model import NIDModel, NIDSceneConfig
from neural3d.training.checkpoint import atomic_write_text, latest_checkpoint, load_checkpoint, save_checkpoint
from neural3d.training.setup import scene_info


@dataclass
class NIDFamilyConfig:
    family: str = "data/nid_family"  # generated scene family (written when absent)
    n_scenes: int = 8
    family_seed: int = 0
    res: int = 32
    n_train: int = 20  # training views per scene
    n_test: int = 4
    model: NIDSceneConfig = field(default_factory=NIDSceneConfig)
    steps: int = 2000
    scenes_per_step: int = 4
    rays_per_scene: int = 256
    lr: float = 5e-3
    lr_final: float = 5e-4
    cv: float = 0.01
    log_every: int = 100
    checkpoint_every: int = 500
    output_dir: str = "runs/nid-family"
    seed: int = 0


def load_family(cfg) -> list:
    """The family's scenes (generated first when ``cfg.family`` has no ``family.json``) as SceneData."""
    from neural3d.data import load_scene
    from neural3d.data.synthetic import write_scene_family

    root = Path(cfg.family)
    if not (root / "family.json").is_file():
        write_scene_family(
            root,
            n_scenes=cfg.n_scenes,
            seed=cfg.family_seed,
            res=cfg.res,
            n_train=cfg.n_train,
            n_val=1,
            n_test=cfg.n_test,
            supersample=1,
        )
    meta = json.loads((root / "family.json").read_text())
    return [load_scene(root / s["path"]) for s in meta["scenes"]]


@torch.no_grad()
def test_psnr(model: Model, scene, context=None, max_images: int = 4, chunk: int = 4096) -> float:
    """Mean PSNR of the model's renders of the scene's test views (context selects the code)."""
    model.eval()
    idx = scene.split_indices("test")[:max_images]
    info = model.scene
    values = []
    for i in idx.tolist():
        rays = info.image_rays(scene.cameras, i, scene.pixel_center)
        out = model.render_rays(rays, chunk=chunk, context=context)
        values.append(float(psnr(out["rgb"].clamp(0, 1), scene.images[i])))
    model.train()
    return sum(values) / len(values)


def train_family(cfg=None, *, run_dir=None, log: Callable[[str], None] = print, scenes: list | None = None) -> NIDModel:
    """Train a 3D dictionary with one code per scene of a generated family (see module doc)."""
    cfg = build(NIDFamilyConfig, OmegaConf.create(cfg) if cfg is not None else None)
    torch.manual_seed(cfg.seed)
    scenes = scenes if scenes is not None else load_family(cfg)
    n = len(scenes)
    cfg.model.n_codes = n
    model = NIDModel(cfg.model, scene=scene_info(scenes[0]))
    loaders = [RayLoader(s, "train", cfg.rays_per_scene, seed=cfg.seed + i) for i, s in enumerate(scenes)]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, (cfg.lr_final / cfg.lr) ** (1.0 / max(cfg.steps, 1)))
    start, run_dir = 0, None if run_dir is None else Path(run_dir)
    if run_dir is not None:
        atomic_write_text(OmegaConf.to_yaml(cfg), run_dir / "config.yaml")
        ckpt = latest_checkpoint(run_dir)
        if ckpt is not None:
            state = load_checkpoint(ckpt)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start = int(state["step"])
            for ld, s in zip(loaders, state["loaders"]):
                ld.load_state_dict(s)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    model.train()
    for step in range(start, cfg.steps):
        gen.manual_seed(cfg.seed * 7919 + step)
        ids = torch.randperm(n, generator=gen)[: min(cfg.scenes_per_step, n)]
        batches = [next(loaders[i]) for i in ids.tolist()]
        from neural3d.core.rays import RayBundle

        rays = RayBundle.cat([b.rays for b in batches]).reshape(len(batches), cfg.rays_per_scene)
        target = torch.stack([b.rgb for b in batches])
        rgb, gates = model.forward_scenes(rays, ids)
        mse = torch.mean((rgb - target) ** 2)
        loss = mse + cfg.cv * (cv_squared(gates.importance) + cv_squared(gates.load))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            log(
                f"[nid-3d] step {done}/{cfg.steps} mse {float(mse.detach()):.5f} "
                f"psnr {float(-10 * torch.log10(mse.detach())):.2f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
        if run_dir is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            save_checkpoint(
                run_dir,
                done,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "step": done,
                    "config": OmegaConf.to_container(cfg),
                    "loaders": [ld.state_dict() for ld in loaders],
                },
            )
    return model


def fit_scene(
    dictionary: str,
    scene,
    model_cfg=None,
    *,
    steps: int = 300,
    finetune_steps: int = 0,
    rays: int = 512,
    lr: float = 2e-2,
    finetune_lr: float = 1e-3,
    eval_every: int = 50,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> tuple[NIDModel, list[dict]]:
    """Fit a new scene by its code with a frozen family dictionary (then optionally fine-tune everything).

    Args:
        dictionary: checkpoint of :func:`train_family`.
        scene: SceneData with ``train`` and ``test`` splits.
        model_cfg: NIDSceneConfig matching the dictionary (default: the checkpoint's ``model`` config).
    Returns:
        the fitted model and its history ``[{step, seconds, psnr}]`` (test PSNR, fitting seconds only).
    """
    state = load_checkpoint(dictionary)
    if model_cfg is None:
        model_cfg = build(NIDFamilyConfig, state.get("config")).model
    model_cfg = OmegaConf.merge(OmegaConf.structured(NIDSceneConfig()), model_cfg)
    model_cfg.n_codes, model_cfg.dictionary, model_cfg.freeze_dictionary = 1, str(dictionary), True
    torch.manual_seed(seed)
    model = NIDModel(model_cfg, scene=scene_info(scene))
    loader = RayLoader(scene, "train", rays, seed=seed)
    history = [{"step": 0, "seconds": 0.0, "psnr": test_psnr(model, scene)}]
    elapsed = 0.0
    phases = [(steps, [model.field.codes], lr), (finetune_steps, list(model.parameters()), finetune_lr)]
    step = 0
    for n_steps, params, phase_lr in phases:
        if n_steps <= 0:
            continue
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=phase_lr)
        for _ in range(n_steps):
            t = time.perf_counter()
            batch = next(loader)
            mse = torch.mean((model(batch.rays)["rgb"] - batch.rgb) ** 2)
            opt.zero_grad(set_to_none=True)
            mse.backward()
            opt.step()
            elapsed += time.perf_counter() - t
            step += 1
            if step % eval_every == 0:
                history.append({"step": step, "seconds": elapsed, "psnr": test_psnr(model, scene)})
                log(f"[nid-3d fit] step {step} {elapsed:.1f} s test psnr {history[-1]['psnr']:.2f}")
    return model, history
