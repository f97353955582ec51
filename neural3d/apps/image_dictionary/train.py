"""Dictionary training on a patch collection (``neural3d nid train-dict``) and loading a trained dictionary.

:func:`train_dictionary` runs a :class:`~neural3d.apps.image_dictionary.task.DictionaryTask` in the shared
:class:`~neural3d.training.loop.Loop`. A run directory (:mod:`neural3d.training.run_dir`) holds
``config.yaml``, ``checkpoints/step_*.pt``, ``logs/metrics.csv`` and ``metrics.json`` (train PSNR, expert
usage, the logged history). The final checkpoint also stores the Gaussian code prior of the training codes
(``code_prior``, :mod:`neural3d.apps.image_dictionary.prior`); older checkpoints get it computed on load
(codebook gates).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import Tensor

from neural3d.apps.image_dictionary.objective import (
    build_dictionary,
    dictionary_prior,
    step_loss,
    train_psnr,
    usage_over,
)
from neural3d.apps.image_dictionary.prior import CodePrior
from neural3d.apps.image_dictionary.task import DictionaryTask, dictionary_loop_config, synth_dir_of
from neural3d.config import build
from neural3d.methods.nid.config import NIDTrainConfig
from neural3d.methods.nid.dictionary import NeuralImplicitDictionary
from neural3d.training import distributed as dist
from neural3d.training.callbacks import History, standard_callbacks
from neural3d.training.loop import Loop
from neural3d.training.run_dir import RunDir

__all__ = [
    "TrainedDictionary",
    "build_dictionary",
    "dictionary_prior",
    "load_dictionary",
    "step_loss",
    "train_dictionary",
    "train_psnr",
    "usage_over",
]


@dataclass
class TrainedDictionary:
    """A dictionary with what is needed to use it: config, patch size, training metrics, run directory."""

    model: NeuralImplicitDictionary
    config: Any
    patch_size: int
    image_size: int
    metrics: dict
    run_dir: Path | None = None
    prior: CodePrior | None = None


def train_dictionary(
    cfg=None,
    *,
    images: Tensor | None = None,
    run_dir=None,
    device: str | None = None,
    log: Callable[[str], None] = print,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainedDictionary:
    """Train a dictionary on the patches of an image collection.

    Args:
        cfg: :class:`~neural3d.methods.nid.config.NIDTrainConfig` (DictConfig or dataclass; None: defaults).
        images: [n_images, H, W, 3] collection (default: loaded from ``cfg.data``); the last
            ``cfg.data.holdout`` images are kept out of training.
        run_dir: where config, checkpoints and metrics go (None: nothing is written).
        log: receives one line per logged step.
        resume / overwrite: the common resume rule of an existing run (``--resume`` / ``--overwrite``;
            neither on a run with checkpoints raises :class:`~neural3d.training.run_dir.RunExistsError`).
    """
    cfg = build(NIDTrainConfig, cfg)
    dist.init_from_env(device=str(device or cfg.device))  # torchrun: the process group (see the task's docstring)
    run = None if run_dir is None else RunDir(run_dir)
    if run is not None:
        run.prepare(resume=resume, overwrite=overwrite)
    dist.barrier()  # rank 0 has applied the resume rule before any rank reads the run directory
    with run.releasing_on_error() if run is not None else contextlib.nullcontext():
        with dist.main_first():  # generated training images: rank 0 renders them, the others read them
            task = DictionaryTask(cfg, images=images, device=device, synth_dir=synth_dir_of(run and run.path))
        history = History()
        callbacks = standard_callbacks(run, eval_every=0, checkpoint_every=cfg.checkpoint_every, progress=True, log=log)
        loop = Loop(task, dictionary_loop_config(cfg), run_dir=run, callbacks=[*callbacks, history])
        if run is not None:
            run.write_config(OmegaConf.to_yaml(cfg))
            if resume and (path := loop.resume()) is not None:
                log(f"[nid] resumed from {path} (step {loop.step})")
    t0 = time.perf_counter()
    final = loop.run()
    metrics = {**final, "seconds": time.perf_counter() - t0, "history": history.rows.get("train", [])}
    if run is not None:
        run.write_json("metrics.json", metrics)
    return TrainedDictionary(
        model=task.model,
        config=cfg,
        patch_size=cfg.data.patch_size,
        image_size=task.image_size,
        metrics=metrics,
        run_dir=run and run.path,
        prior=dictionary_prior(task.model, task.patches),
    )


def load_dictionary(path, device: str = "cpu") -> TrainedDictionary:
    """A trained dictionary from a run directory (latest checkpoint) or a checkpoint file."""
    path = Path(path)
    run = RunDir(path if path.is_dir() else path.parent.parent)
    try:
        ckpt, state = run.load_checkpoint(None if path.is_dir() else path, map_location=device)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"nid: no dictionary checkpoint: {e}") from None
    if "config" not in state or "model" not in state:
        raise ValueError(f"{ckpt}: not a neural3d NID dictionary checkpoint")
    cfg = build(NIDTrainConfig, state["config"], source=str(ckpt))
    model = build_dictionary(cfg, n_signals=max(int(state["n_signals"]), 1), seed=cfg.seed).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    saved = state.get("code_prior")
    prior = CodePrior.from_state(saved, device) if saved is not None else dictionary_prior(model)
    return TrainedDictionary(
        model=model,
        config=cfg,
        patch_size=cfg.data.patch_size,
        image_size=int(state["image_size"]),
        metrics={},
        run_dir=path if path.is_dir() else None,
        prior=prior,
    )
