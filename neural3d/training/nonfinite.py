"""Non-finite values in training and in checkpoints: the loop's per-step guard and the loaders' refusal.

Training (:class:`~neural3d.training.loop.Loop`, ``trainer.nonfinite``): after ``backward`` (and the gradient
all-reduce under torchrun) one fused reduction tells whether the loss and every gradient are finite
(:func:`step_flags`, the largest absolute gradient, so a large but finite gradient never reads as
overflow); the loop reads it with one host synchronisation per step. ``stop`` raises
:class:`~neural3d.training.stops.NonFiniteError` before the optimizer step, so the weights stay those of the
last good step and nothing of the bad state is saved; ``skip`` drops the batch (no optimizer step, the step
counts). Parameters are checked again before every checkpoint is written (:func:`nonfinite_names`).

Loading (:func:`require_finite`): ``neural3d eval`` / ``render`` / ``view`` and the Python API refuse a
checkpoint whose parameters are not all finite (:class:`NonFiniteCheckpointError`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

NONFINITE_MODES = ("stop", "skip")


class NonFiniteCheckpointError(ValueError):
    """A checkpoint holds NaN or infinite parameters (a diverged run)."""


def max_abs(tensors: list[Tensor]) -> Tensor:
    """The largest ``|x|`` over ``tensors`` (a 0-d tensor; NaN when any value is NaN; no overflow)."""
    if not tensors:
        return torch.zeros(())
    per_tensor = torch._foreach_norm(tensors, math.inf)  # one fused kernel per device and dtype
    return torch.stack([t.float() for t in per_tensor]).max()


def step_flags(loss: Tensor, parameters: Iterable[nn.Parameter]) -> Tensor:
    """``[loss not finite, some gradient not finite]`` as a float tensor on the loss's device (no host sync)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    loss_bad = ~torch.isfinite(loss.detach().float()).all()
    grad_bad = ~torch.isfinite(max_abs(grads).to(loss.device))
    return torch.stack([loss_bad, grad_bad]).float()


def nonfinite_names(module: nn.Module) -> list[str]:
    """Names of ``module``'s parameters holding a NaN or an infinity ([] when all are finite)."""
    named = [(n, p.detach()) for n, p in module.named_parameters()]
    if not named or bool(torch.isfinite(max_abs([p for _, p in named]))):
        return []
    return [n for n, p in named if not bool(torch.isfinite(p).all())]


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
