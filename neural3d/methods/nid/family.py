"""Training a 3D dictionary across a generated scene family, and fitting a new scene by its code.

:func:`train_family` runs a :class:`~neural3d.methods.nid.family_task.SceneFamilyTask` in the shared
:class:`~neural3d.training.loop.Loop`: each step draws ``scenes_per_step`` scenes and ``rays_per_scene``
random rays of each, renders them with their codes and minimises MSE + ``cv`` * cv^2 balancing.
Checkpoints (atomic) hold a ``model`` state whose ``field.bank.*`` a single-scene ``nid`` model loads via
``model.dictionary``.

:func:`fit_scene` solves a new scene's code with the bank frozen, optionally followed by a short
fine-tune of everything, and records test PSNR against seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf

from neural3d.config import build, replace
from neural3d.config_bounds import NonNegativeInt, PositiveInt
from neural3d.data.loader import RayLoader
from neural3d.evaluation.metrics import psnr
from neural3d.methods.base import Model
from neural3d.methods.nid.code_fit_task import CodeFitTask
from neural3d.methods.nid.family_task import SceneFamilyTask, family_loop_config, load_family
from neural3d.methods.nid.model import NIDModel, NIDSceneConfig
from neural3d.training import distributed as dist
from neural3d.training.callbacks import StepHook, standard_callbacks
from neural3d.training.loop import Loop, LoopConfig
from neural3d.training.run_dir import RunDir, load_checkpoint
from neural3d.training.setup import scene_info

__all__ = ["NIDFamilyConfig", "fit_scene", "load_family", "test_psnr", "train_family"]


@dataclass
class NIDFamilyConfig:
    """``neural3d nid train-scenes``: a 3D dictionary trained across a generated scene family."""

    family: str = "data/nid_family"
    """Folder of the generated scene family (written when it has no ``family.json``)."""
    n_scenes: PositiveInt = 8
    """Scenes generated."""
    family_seed: int = 0
    """Seed of the generated family."""
    res: PositiveInt = 32
    """Image width and height of the generated scenes."""
    n_train: PositiveInt = 20
    """Training views per scene."""
    n_test: int = 4
    """Test views per scene."""
    model: NIDSceneConfig = field(default_factory=NIDSceneConfig)
    """The radiance dictionary (``n_codes`` is set to the number of scenes)."""
    steps: PositiveInt = 2000
    """Optimisation steps."""
    scenes_per_step: PositiveInt = 4
    """Scenes drawn per step."""
    rays_per_scene: PositiveInt = 256
    """Random training rays per drawn scene and step."""
    lr: float = 5e-3
    """Initial learning rate."""
    lr_final: float = 5e-4
    """Learning rate at the last step (exponential decay)."""
    cv: float = 0.01
    """Weight of the squared coefficient-of-variation balancing of expert load and importance."""
    log_every: PositiveInt = 100
    """Steps between log lines."""
    checkpoint_every: NonNegativeInt = 500
    """Steps between checkpoints."""
    output_dir: str = "runs/nid-family"
    """Run directory."""
    seed: int = 0
    """Seed of the initialisation, the scene draws and the rays."""


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


def train_family(
    cfg=None,
    *,
    run_dir=None,
    log: Callable[[str], None] = print,
    scenes: list | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> NIDModel:
    """Train a 3D dictionary with one code per scene of a generated family (see module doc).

    Args:
        run_dir: where config, checkpoints and the metrics log go (None: nothing is written).
        log: receives one line per logged step.
        scenes: the family's SceneData (default: :func:`load_family`).
        resume / overwrite: the common resume rule of an existing run (``--resume`` / ``--overwrite``).
    """
    cfg = build(NIDFamilyConfig, cfg)
    dist.init_from_env(device="cpu")  # torchrun: the process group (gloo; the family trains on CPU)
    run = None if run_dir is None else RunDir(run_dir)
    if run is not None:
        run.prepare(resume=resume, overwrite=overwrite)
    dist.barrier()  # rank 0 has applied the resume rule before any rank reads the run directory
    with run.releasing_on_error() if run is not None else contextlib.nullcontext():
        task = SceneFamilyTask(cfg, scenes)
        callbacks = standard_callbacks(run, eval_every=0, checkpoint_every=cfg.checkpoint_every, progress=True, log=log)
        loop = Loop(task, family_loop_config(cfg), run_dir=run, callbacks=[*callbacks])
        if run is not None:
            run.write_config(OmegaConf.to_yaml(task.cfg))
            if resume and (path := loop.resume()) is not None:
                log(f"[nid-3d] resumed from {path} (step {loop.step})")
    loop.run()
    return task.model


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
    model_cfg = build(NIDSceneConfig, model_cfg, source=str(dictionary))
    model_cfg = replace(model_cfg, {"n_codes": 1, "dictionary": str(dictionary), "freeze_dictionary": True})
    torch.manual_seed(seed)
    model = NIDModel(model_cfg, scene=scene_info(scene))
    loader = RayLoader(scene, "train", rays, seed=seed)
    history = [{"step": 0, "seconds": 0.0, "psnr": test_psnr(model, scene)}]

    def record(loop: Loop, step: int) -> None:
        if step % eval_every == 0:
            history.append({"step": step, "seconds": loop.elapsed, "psnr": test_psnr(model, scene)})
            log(f"[nid-3d fit] step {step} {loop.elapsed:.1f} s test psnr {history[-1]['psnr']:.2f}")

    phases = [(steps, [model.field.codes], lr), (finetune_steps, list(model.parameters()), finetune_lr)]
    done, elapsed = 0, 0.0
    for n_steps, params, phase_lr in phases:
        if n_steps <= 0:
            continue
        loop = Loop(CodeFitTask(model, loader, params, phase_lr), LoopConfig(steps=done + n_steps, progress=False))
        loop.step, loop.elapsed = done, elapsed  # the step count and fitting time run on across phases
        loop.callbacks.append(StepHook(lambda step, loop=loop: record(loop, step)))
        loop.run()
        done, elapsed = loop.step, loop.elapsed
    return model, history
