"""Optimizer and learning-rate schedule built from :class:`~neural3d.config.OptimConfig`."""

from __future__ import annotations

import math

import torch
from torch import nn

from neural3d.config import ConfigError

NO_DECAY_GROUPS = ("encoding", "no_decay")


def build_optimizer(groups: dict[str, list[nn.Parameter]], cfg) -> torch.optim.Optimizer:
    """Adam or AdamW (``cfg.optimizer``) over named parameter groups; weight decay only on groups not named in
    :data:`NO_DECAY_GROUPS`."""
    param_groups = [
        {"params": params, "name": name, "weight_decay": 0.0 if name in NO_DECAY_GROUPS else cfg.weight_decay}
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
