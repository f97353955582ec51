"""Optimizer and learning-rate schedule built from :class:`~neural3d.config.OptimConfig`."""

from __future__ import annotations

import math

import torch
from torch import nn

from neural3d.config import ConfigError

NO_DECAY_GROUPS = ("encoding", "no_decay")


def build_optimizer(
    groups: dict[str, list[nn.Parameter]], cfg, lr_scales: dict[str, float] | None = None
) -> torch.optim.Optimizer:
    """Adam or AdamW (``cfg.optimizer``) over named parameter groups; weight decay only on groups not named in
    :data:`NO_DECAY_GROUPS`. ``lr_scales``: a group's learning rate is ``cfg.lr`` times its scale (default 1);
    the schedule multiplies every group's rate by the same factor."""
    scales = lr_scales or {}
    param_groups = [
        {
            "params": params,
            "name": name,
            "lr": cfg.lr * scales.get(name, 1.0),
            "weight_decay": 0.0 if name in NO_DECAY_GROUPS else cfg.weight_decay,
        }
        for name, params in groups.items()
        if params
    ]
    kind = getattr(cfg, "optimizer", "adam")
    if kind not in ("adam", "adamw"):
        raise ConfigError(f"trainer.optim.optimizer must be adam or adamw, got '{kind}'")
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=_fusable(param_groups))


def _fusable(param_groups: list[dict]) -> bool | None:
    """True when every parameter is a float tensor on the CPU or CUDA: torch's fused Adam then updates each
    tensor in one pass instead of the per-tensor loop of elementwise kernels (on 2 CPU cores, a 2^19-entry hash
    table's step takes 17 ms of CPU time instead of 194 ms; BENCHMARKS.md, "lego race"). None: torch's default."""
    params = [p for g in param_groups for p in g["params"]]
    ok = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    return True if params and ok else None


def lr_factor(step: int, total: int, cfg) -> float:
    """Multiplier of ``cfg.lr`` at ``step`` (linear warm-up, then exp / cosine / constant to ``lr_final``)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(max(step - cfg.warmup_steps, 0) / max(total - cfg.warmup_steps, 1), 1.0)
    final = cfg.lr_final / cfg.lr
    if cfg.schedule == "exp":
        return final**progress
    if cfg.schedule == "cosine":
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "constant":
        return 1.0
    raise ConfigError(f"trainer.optim.schedule must be exp, cosine or constant, got '{cfg.schedule}'")


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cfg) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, total_steps, cfg)  # validate the schedule name early
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg))


def drop_resized_state(optimizer: torch.optim.Optimizer) -> int:
    """Forget the moments of parameters whose shape changed since the optimizer last stepped them.

    A field that resamples its grids (TensoRF's upsampling and box shrinking) replaces a parameter's data in
    place; Adam's moments of the old shape no longer apply, so that parameter starts again from fresh moments
    (the official TensoRF code builds a new optimizer at each upsampling). Returns how many were dropped.
    """
    dropped = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and any(isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape != p.shape for v in state.values()):
                del optimizer.state[p]
                dropped += 1
    return dropped
