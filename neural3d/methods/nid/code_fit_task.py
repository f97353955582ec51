"""Fitting a new scene with a frozen family dictionary: one phase of :func:`~neural3d.methods.nid.family.fit_scene`.

A phase optimises ``params`` (the scene's code, or every parameter for the fine-tune) with Adam at a constant
``lr`` on MSE against random training rays. The phases share the model and the ray loader, so the second
continues the first's batch stream.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from neural3d.data.loader import RayLoader
from neural3d.training.task import TaskBase


class CodeFitTask(TaskBase):
    """Adam on ``params`` of ``model`` (an ``NIDModel``), MSE of its renders of ``loader``'s rays (CPU).

    Args:
        model: the model to fit (``module``).
        loader: training rays of the new scene.
        params: the parameters this phase optimises (made trainable).
        lr: constant learning rate.
    """

    def __init__(self, model: nn.Module, loader: RayLoader, params: list[nn.Parameter], lr: float) -> None:
        self.model, self.loader, self.params, self.lr = model, loader, params, lr
        self.device = torch.device("cpu")
        for p in params:
            p.requires_grad_(True)

    @property
    def module(self) -> nn.Module:
        return self.model

    def configure_optimizers(self, total_steps: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
        optimizer = torch.optim.Adam(self.params, lr=self.lr)
        return optimizer, LambdaLR(optimizer, lambda step: 1.0)

    def next_batch(self, step: int) -> Any:
        return next(self.loader)

    def loss_and_metrics(self, batch: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        return torch.mean((self.model(batch.rays)["rgb"] - batch.rgb) ** 2), {}

    def state_dict(self, step: int) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "loader": self.loader.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.loader.load_state_dict(state["loader"])
