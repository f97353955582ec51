"""Dictionary training on a patch collection (``neural3d nid train-dict``), with atomic checkpoints.

Each step draws ``batch_size`` patches (and optionally ``points_per_step`` of their pixels), evaluates
the bank once at the shared patch coordinates and mixes it per patch. The first ``warmup_steps`` use
dense gates with an L1 penalty and cv^2 importance balancing; afterwards signed top-k gates with cv^2
balancing of load and importance (official ``train_images.py``). The learning rate decays
exponentially from ``lr`` to ``lr_final``. A run directory holds ``config.yaml``,
``checkpoints/step_*.pt`` (written atomically; training resumes from the latest) and ``metrics.json``.
The final checkpoint also stores the Gaussian code prior of the training codes (``code_prior``,
:mod:`neural3d.apps.image_dictionary.prior`); older checkpoints get it computed on load (codebook gates).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor

from neural3d.apps.image_dictionary.data import collect_images
from neural3d.apps.image_dictionary.patches import cut_patches_strided, flatten_patches, patch_coords
from neural3d.apps.image_dictionary.prior import CodePrior, code_prior_from_codes
from neural3d.config import build, instantiate
from neural3d.evaluation.metrics import mse_to_psnr
from neural3d.methods.nid.config import NIDTrainConfig
from neural3d.methods.nid.dictionary import NeuralImplicitDictionary
from neural3d.methods.nid.experts import ExpertBank
from neural3d.methods.nid.losses import cv_squared, l1_sparsity, recon_loss, usage_stats
from neural3d.training.checkpoint import atomic_write_text, latest_checkpoint, load_checkpoint, save_checkpoint


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


def build_dictionary(
    cfg, n_signals: int, in_channels: int = 3, out_dim: int = 3, in_dim: int = 2, seed: int = 0
) -> NeuralImplicitDictionary:
    """The dictionary described by the ``experts`` and ``gate`` sections of a :class:`NIDTrainConfig`."""
    bank = instantiate(ExpertBank, cfg.experts, in_dim=in_dim, out_dim=out_dim, seed=seed)
    g = cfg.gate  # the dictionary names the gate's settings gate_*
    return instantiate(
        NeuralImplicitDictionary,
        g,
        bank=bank,
        gate_type=g.type,
        gate_hidden=g.hidden,
        gate_layers=g.n_layers,
        n_signals=n_signals,
        in_channels=in_channels,
        seed=seed,
    )


def step_loss(
    model: NeuralImplicitDictionary, coords: Tensor, patches: Tensor, ids: Tensor, targets: Tensor, cfg, warm: bool
) -> tuple[Tensor, dict]:
    """One training objective evaluation.

    Args:
        coords: [P, 2] patch coordinates; patches: [B, p, p, C] gate inputs; ids: [B] signal ids;
        targets: [B, P, C] pixel values at ``coords``; warm: dense warm-up phase.
    Returns:
        (loss, logs) with recon / psnr / balancing terms.
    """
    out = model(coords, images=patches, ids=ids, sparse=not warm)
    recon = recon_loss(out.preds, targets, cfg.loss.recon)
    g = out.gates
    if warm:
        balance = cv_squared(g.importance)
        loss = recon + cfg.loss.l1 * l1_sparsity(g.logits, cfg.loss.l1_exp) + cfg.loss.cv * balance
    else:
        balance = cv_squared(g.load) + cv_squared(g.importance)
        loss = recon + cfg.loss.cv * balance
    mse = torch.mean((out.preds.detach() - targets) ** 2)
    return loss, {
        "loss": float(loss.detach()),
        "psnr": float(mse_to_psnr(mse.clamp_min(1e-10))),
        "balance": float(balance.detach()),
    }


@torch.no_grad()
def dictionary_prior(
    model: NeuralImplicitDictionary, patches: Tensor | None = None, chunk: int = 1024
) -> CodePrior | None:
    """Gaussian prior of the training codes: the codebook's codes, or the conv gate's outputs on ``patches``
    [n, p, p, C] (None for a conv gate without patches)."""
    if model.gate_type == "codebook":
        raw = model.gate.codes.detach()
    elif patches is not None:
        raw = torch.cat([model.gate(patches[i : i + chunk], None)[0] for i in range(0, patches.shape[0], chunk)], 0)
    else:
        return None
    logits, bias = model.split_raw(raw)
    return code_prior_from_codes(logits, bias, model.topk)


@torch.no_grad()
def usage_over(model: NeuralImplicitDictionary, patches: Tensor, chunk: int = 2048) -> dict:
    """Expert usage (load cv, dead experts) of the sparse gates of every training patch."""
    gates = []
    for i in range(0, patches.shape[0], chunk):
        ids = torch.arange(i, min(i + chunk, patches.shape[0]), device=patches.device)
        gates.append(model.gates_for(patches[ids], ids, sparse=True).gates)
    return usage_stats(torch.cat(gates, 0))


@torch.no_grad()
def train_psnr(model: NeuralImplicitDictionary, coords: Tensor, patches: Tensor, chunk: int = 1024) -> float:
    """PSNR of the mean squared error over all training patches, each with its own (sparse) gates.

    Pooled rather than a mean of per-patch PSNRs: a constant patch (white background) that the dictionary
    reproduces exactly has an infinite PSNR and would make the mean infinite.
    """
    se, count = 0.0, 0
    for i in range(0, patches.shape[0], chunk):
        ids = torch.arange(i, min(i + chunk, patches.shape[0]), device=patches.device)
        pred = model(coords, images=patches[ids], ids=ids, sparse=True).preds.clamp(0, 1)
        target = flatten_patches(patches[ids])
        se += float(((pred - target) ** 2).sum())
        count += target.numel()
    return mse_to_psnr(max(se / max(count, 1), 1e-12))


def train_dictionary(
    cfg=None,
    *,
    images: Tensor | None = None,
    run_dir=None,
    device: str | None = None,
    log: Callable[[str], None] = print,
    resume: bool = True,
) -> TrainedDictionary:
    """Train a dictionary on the patches of an image collection.

    Args:
        cfg: :class:`~neural3d.methods.nid.config.NIDTrainConfig` (DictConfig or dataclass; None: defaults).
        images: [n_images, H, W, 3] collection (default: loaded from ``cfg.data``); the last
            ``cfg.data.holdout`` images are kept out of training.
        run_dir: where config, checkpoints and metrics go (None: nothing is written).
        resume: continue from the latest checkpoint in ``run_dir``.
    """
    cfg = build(NIDTrainConfig, cfg)
    dev = torch.device(
        device
        or (
            "cuda"
            if cfg.device == "auto" and torch.cuda.is_available()
            else "cpu"
            if cfg.device == "auto"
            else cfg.device
        )
    )
    torch.manual_seed(cfg.seed)
    run_dir = None if run_dir is None else Path(run_dir)
    if images is None:
        synth_dir = cfg.data.synth_dir or (str(run_dir / "synth") if run_dir else "")
        images = collect_images(
            list(cfg.data.folders),
            cfg.data.image_size,
            cfg.data.max_images_per_folder,
            synth_dir,
            cfg.data.synth_scenes,
            cfg.data.synth_seed,
        )
    n_train = images.shape[0] - cfg.data.holdout
    if n_train < 1:
        raise ValueError(
            f"nid/train.py: {images.shape[0]} images leave none for training with data.holdout={cfg.data.holdout}"
        )
    p = cfg.data.patch_size
    stride = cfg.data.patch_stride or p
    if not 1 <= stride <= p or (images.shape[1] - p) % stride or (images.shape[2] - p) % stride:
        raise ValueError(
            f"nid/train.py: data.patch_stride {stride} must be in [1, {p}] and divide image_size - "
            f"patch_size = {images.shape[1] - p}"
        )
    patches = cut_patches_strided(images[:n_train], p, stride).to(dev)
    targets_all = flatten_patches(patches)
    coords_all = patch_coords(p, dev)
    model = build_dictionary(cfg, n_signals=patches.shape[0], in_channels=images.shape[-1], seed=cfg.seed).to(dev)
    opt = torch.optim.Adam(
        [
            {"params": list(model.bank.parameters()), "lr": cfg.lr},
            {"params": list(model.gate.parameters()), "lr": cfg.lr * cfg.gate_lr_scale},
        ]
    )
    gamma = (cfg.lr_final / cfg.lr) ** (1.0 / max(cfg.steps, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    start = 0
    if run_dir is not None:
        atomic_write_text(OmegaConf.to_yaml(cfg), run_dir / "config.yaml")
        ckpt = latest_checkpoint(run_dir) if resume else None
        if ckpt is not None:
            state = load_checkpoint(ckpt, map_location=dev)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start = int(state["step"])
            log(f"[nid] resumed from {ckpt} (step {start})")
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    history, t0 = [], time.perf_counter()
    for step in range(start, cfg.steps):
        gen.manual_seed(cfg.seed * 1_000_003 + step)  # reproducible after a resume
        ids = torch.randint(0, patches.shape[0], (min(cfg.batch_size, patches.shape[0]),), generator=gen).to(dev)
        if cfg.points_per_step > 0:
            pix = torch.randperm(coords_all.shape[0], generator=gen)[: cfg.points_per_step].to(dev)
        else:
            pix = torch.arange(coords_all.shape[0], device=dev)
        model.train()
        loss, logs = step_loss(
            model, coords_all[pix], patches[ids], ids, targets_all[ids][:, pix], cfg, warm=step < cfg.warmup_steps
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            logs.update(step=done, seconds=time.perf_counter() - t0)
            history.append(logs)
            log(
                f"[nid] step {done}/{cfg.steps} loss {logs['loss']:.5f} psnr {logs['psnr']:.2f} "
                f"balance {logs['balance']:.3f}"
            )
        if run_dir is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            prior = dictionary_prior(model.eval(), patches) if done == cfg.steps else None
            save_checkpoint(run_dir, done, _state(model, opt, sched, done, cfg, images.shape[1], prior))
    model.eval()
    metrics = {
        "train_psnr": train_psnr(model, coords_all, patches),
        **usage_over(model, patches),
        "n_train_patches": int(patches.shape[0]),
        "seconds": time.perf_counter() - t0,
        "history": history,
    }
    if run_dir is not None:
        atomic_write_text(json.dumps(metrics, indent=2), run_dir / "metrics.json")
    return TrainedDictionary(
        model=model,
        config=cfg,
        patch_size=p,
        image_size=int(images.shape[1]),
        metrics=metrics,
        run_dir=run_dir,
        prior=dictionary_prior(model, patches),
    )


def _state(model, opt, sched, step: int, cfg, image_size: int, prior: CodePrior | None = None) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "code_prior": None if prior is None else prior.to_state(),
        "config": OmegaConf.to_container(cfg),
        "image_size": int(image_size),
        "n_signals": int(model.gate.codes.shape[0]) if model.gate_type == "codebook" else 0,
    }


def load_dictionary(path, device: str = "cpu") -> TrainedDictionary:
    """A trained dictionary from a run directory (latest checkpoint) or a checkpoint file."""
    path = Path(path)
    ckpt = latest_checkpoint(path) if path.is_dir() else path
    if ckpt is None:
        raise FileNotFoundError(f"nid/train.py: no checkpoint under {path}/checkpoints")
    state = load_checkpoint(ckpt, map_location=device)
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
