"""NID losses: reconstruction (MSE / L1, optionally masked), cv^2 balancing, L1 sparsity for the warm-up.

Training objective (official ``train_images.py``): dense warm-up
``recon + l1 * sparsity(gates) + cv * cv2(importance)``, then top-k
``recon + cv * (cv2(load) + cv2(importance))``. Importance here is ``sum_s |g_s|`` (signed gates would
cancel in the official ``gates.sum(0)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

RECON_LOSSES = ("mse", "l1")


def recon_loss(pred: Tensor, target: Tensor, kind: str = "mse", mask: Tensor | None = None) -> Tensor:
    """Mean squared or absolute error.

    Args:
        pred, target: [*batch, n_points, C].
        kind: ``mse`` or ``l1``.
        mask: optional [*batch, n_points] weights (observed pixels); the mean runs over selected entries.
    Returns:
        scalar.
    """
    if kind not in RECON_LOSSES:
        raise ValueError(f"nid/losses.py: recon loss must be one of {RECON_LOSSES}, got {kind!r}")
    if pred.shape != target.shape:
        raise ValueError(f"nid/losses.py: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    err = (pred - target) ** 2 if kind == "mse" else (pred - target).abs()
    if mask is None:
        return err.mean()
    w = mask.to(err.dtype)[..., None]
    return (err * w).sum() / (w.sum() * err.shape[-1]).clamp_min(1e-12)


def cv_squared(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Squared coefficient of variation ``var(x) / (mean(x)^2 + eps)`` (unbiased variance, as the official
    ``cv_squared_loss``); 0 for fewer than two entries.

    Args:
        x: [n] non-negative values (load or importance per expert).
    """
    x = x.float()
    if x.numel() < 2:
        return x.new_zeros(())
    return x.var() / (x.mean() ** 2 + eps)


def l1_sparsity(logits: Tensor, l1_exp: float = 1.0) -> Tensor:
    """Mean of ``|g_e| / l1_exp^e`` over signals and experts (``l1_exp`` = 1: plain L1; > 1 the official
    exponentially decaying weights, which favour low-index experts).

    Args:
        logits: [n_signals, num_experts] dense coefficients.
    """
    e = torch.arange(logits.shape[-1], device=logits.device, dtype=logits.dtype)
    weights = torch.as_tensor(float(l1_exp), dtype=logits.dtype, device=logits.device) ** (-e)
    return (logits.abs() * weights).mean()


def usage_stats(gates: Tensor) -> dict[str, float]:
    """Expert usage over a batch: cv of the load, number of dead experts (never selected), active fraction.

    Args:
        gates: [n_signals, num_experts] sparse coefficients.
    """
    load = (gates != 0).sum(0).double()
    mean = float(load.mean())
    return {
        "load_cv": float(load.std(unbiased=False) / mean) if mean > 0 else float("nan"),
        "dead_experts": int((load == 0).sum()),
        "num_experts": int(load.numel()),
    }
