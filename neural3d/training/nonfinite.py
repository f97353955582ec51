"""Non-finite values in training and in checkpoints: the loop's per-step guard and the loaders' refusal.

Training (:class:`~neural3d.training.loop.Loop`, ``trainer.nonfinite``): after ``backward`` (and the gradient
all-reduce under torchrun) one pass over each gradient tells whether the loss and every gradient are finite
(:func:`step_flags`: each gradient's minimum and maximum, so a large but finite gradient never reads as
overflow); the loop reads it with one host synchronisation per step. ``stop`` raises
:class:`~neural3d.training.stops.NonFiniteError` before the optimizer step, so the weights stay those of the
last good step and nothing of the bad state is saved; ``skip`` drops the batch (no optimizer step, the step
counts). Parameters are checked again before every checkpoint is written (:func:`nonfinite_names`).

Loading (:func:`require_finite`): ``neural3d eval`` / ``render`` / ``view`` and the Python API refuse a
checkpoint whose parameters are not all finite (:class:`NonFiniteCheckpointError`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

NONFINITE_MODES = ("stop", "skip")


class NonFiniteCheckpointError(ValueError):
    """A checkpoint holds NaN or infinite parameters (a diverged run)."""


def all_finite(tensors: list[Tensor], device: torch.device | str = "cpu") -> Tensor:
    """Whether every value of ``tensors`` is finite, as a 0-d bool tensor on ``device`` (no host sync).

    Exact and overflow-free: each tensor's minimum and maximum (``aminmax``, one pass; NaN propagates) are
    finite exactly when all its values are. On a CPU this is ~5x faster than an infinity-norm or
    ``isfinite(x).all()`` over a 12 M-value hash grid (``benchmarks/bench_nonfinite_check.py``).
    """
    ends = [torch.stack(torch.aminmax(t.detach().reshape(-1))).float().to(device) for t in tensors if t.numel()]
    if not ends:
        return torch.ones((), dtype=torch.bool, device=device)
    return torch.isfinite(torch.cat(ends)).all()


def step_flags(loss: Tensor, parameters: Iterable[nn.Parameter]) -> Tensor:
    """``[loss not finite, some gradient not finite]`` as a float tensor on the loss's device (no host sync)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    loss_bad = ~torch.isfinite(loss.detach().float()).all()
    grad_bad = ~all_finite(grads, loss.device)
    return torch.stack([loss_bad, grad_bad]).float()


def nonfinite_names(module: nn.Module) -> list[str]:
    """Names of ``module``'s parameters holding a NaN or an infinity ([] when all are finite)."""
    named = list(module.named_parameters())
    if not named or bool(all_finite([p for _, p in named])):
        return []
    return [n for n, p in named if not bool(all_finite([p]))]


def require_finite(module: nn.Module, source: str | Path) -> None:
    """Raise :class:`NonFiniteCheckpointError` when ``module`` (loaded from ``source``) has non-finite parameters."""
    bad = nonfinite_names(module)
    if bad:
        total = sum(1 for _ in module.parameters())
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise NonFiniteCheckpointError(
            f"{source}: {len(bad)} of {total} parameter tensors hold NaN or infinite values ({shown}): the run "
            f"diverged; refusing to use it. Evaluate an earlier checkpoint (neural3d.load(run, checkpoint=...)) "
            f"or train again (lower trainer.optim.lr, trainer.optim.grad_clip)"
        )
