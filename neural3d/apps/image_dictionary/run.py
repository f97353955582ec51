"""Config-driven entry points behind ``neural3d nid ...`` (also usable from Python)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from neural3d.apps.image_dictionary.data import load_square_image
from neural3d.apps.image_dictionary.train import load_dictionary, train_dictionary
from neural3d.apps.image_dictionary.workflows import (
    choose_finetune_steps,
    corrupt_image,
    finetune_image,
    fit_image,
    random_pixel_mask,
)
from neural3d.config import build, config_kwargs
from neural3d.evaluation.metrics import psnr
from neural3d.media.video import to_uint8
from neural3d.methods.nid.config import NIDFitConfig, NIDTrainConfig
from neural3d.training.run_dir import atomic_write_text


def _device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _save_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)


def train_from_config(cfg, source: str = "config", *, resume: bool = False, overwrite: bool = False):
    """Validate a :class:`NIDTrainConfig` and train; the run directory is ``cfg.output_dir``.

    ``resume`` / ``overwrite``: the common rule for an existing run (:meth:`RunDir.prepare`).
    """
    cfg = build(NIDTrainConfig, cfg, source=source)
    from neural3d.training.distributed import print_main

    return train_dictionary(
        cfg,
        run_dir=Path(cfg.output_dir),
        device=_device(cfg.device),
        resume=resume,
        overwrite=overwrite,
        log=print_main,  # torchrun: rank 0 speaks
    )


def fit_from_config(cfg, target, source: str = "config") -> dict:
    """Fit the image file ``target`` with a trained dictionary as ``cfg`` (:class:`NIDFitConfig`) says.

    Writes ``observed.png`` (what the fit saw), ``fit.png`` and ``metrics.json`` (PSNR against the
    clean target on all pixels, and inside the hidden region for corruptions / unobserved pixels) to
    ``cfg.output``. Returns the metrics.
    """
    cfg = build(NIDFitConfig, cfg, source=source)
    if not cfg.dictionary:
        raise ValueError(f"{source}: 'dictionary' must name a run directory or checkpoint of `neural3d nid train-dict`")
    dev = _device(cfg.device)
    trained = load_dictionary(cfg.dictionary, device=dev)
    size = cfg.target_size or trained.image_size
    if size % trained.patch_size:
        raise ValueError(f"{source}: target_size {size} must be a multiple of the patch size {trained.patch_size}")
    clean = torch.from_numpy(load_square_image(target, size)).to(dev)
    observed, hidden = corrupt_image(clean, cfg.corruption, cfg.corruption_amount, cfg.seed)
    mask = None
    if cfg.observed_fraction < 1.0:
        mask = random_pixel_mask(size, size, cfg.observed_fraction, cfg.seed, device=dev)
        hidden = hidden | ~mask
    loss = "l1" if cfg.corruption != "none" and cfg.loss == "mse" else cfg.loss
    prior = None
    if cfg.prior == "gaussian" and cfg.method == "lstsq":
        prior = trained.prior
        if prior is None:
            raise ValueError(
                f"{source}: the dictionary {cfg.dictionary} has no code prior (a conv-gate checkpoint "
                f"saved before priors were stored); use prior=none"
            )
    stride = cfg.stride or max(1, trained.patch_size // 4)
    if not 1 <= stride <= trained.patch_size or (size - trained.patch_size) % stride:
        raise ValueError(
            f"{source}: 'stride' {stride} must be in [1, {trained.patch_size}] and divide "
            f"target_size - patch_size = {size - trained.patch_size}"
        )
    # method, init, steps, lr, lam, lam_dense, fit_bias, support: the config's fields of the same name
    fit_kwargs = config_kwargs(
        fit_image, cfg, loss=loss, k=cfg.k or None, prior=prior, prior_weight=cfg.prior_weight or None, stride=stride
    )
    result = fit_image(trained.model, observed, patch=trained.patch_size, mask=mask, progress=True, **fit_kwargs)
    finetuned = 0
    if cfg.finetune_steps > 0:
        finetuned = cfg.finetune_steps
        if cfg.finetune_select == "validation":
            # the same fit (its default steps and lr: lr here is the fine-tune's), with the chosen prior weight
            select_kwargs = {k: v for k, v in fit_kwargs.items() if k not in ("steps", "lr", "loss")}
            finetuned = choose_finetune_steps(
                trained.model,
                observed,
                patch=trained.patch_size,
                mask=mask,
                max_steps=cfg.finetune_steps,
                every=max(1, cfg.finetune_steps // 12),
                loss=loss,
                lr=cfg.finetune_lr,
                code_lr=10 * cfg.finetune_lr,
                **{**select_kwargs, "prior_weight": result.prior_weight},
            )
        result = finetune_image(
            trained.model,
            result,
            observed,
            patch=trained.patch_size,
            mask=mask,
            steps=finetuned,
            lr=cfg.finetune_lr,
            code_lr=10 * cfg.finetune_lr,
            loss=loss,
            stride=stride,
            progress=True,
        )
    metrics = {
        "psnr": float(psnr(result.image, clean)),
        "seconds": result.seconds,
        "method": cfg.method,
        "loss": loss,
        "finetune_steps": finetuned,
        "prior": cfg.prior if prior is not None else "none",
        "stride": stride,
        "support": cfg.support,
        "observed_fraction": cfg.observed_fraction,
        "corruption": cfg.corruption,
        "psnr_observed_input": float(psnr(observed, clean)),
    }
    if bool(hidden.any()):
        metrics["psnr_hidden"] = float(psnr(result.image, clean, mask=hidden))
    out = Path(cfg.output)
    shown = observed if mask is None else observed * mask[..., None]
    _save_png(out / "observed.png", shown)
    _save_png(out / "fit.png", result.image)
    atomic_write_text(json.dumps(metrics, indent=2), out / "metrics.json")
    return metrics
