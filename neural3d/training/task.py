"""What the training loop trains: the :class:`TrainTask` protocol.

A task owns the data and the model; :class:`~neural3d.training.loop.Loop` owns the step (zero_grad,
backward, gradient clipping, optimizer and scheduler step), the cadences, autocast and the checkpoints.

Tasks of this package:

======================================================  ===============================================
:class:`neural3d.training.scene_task.SceneTask`          every registered method on one scene, and GNT
                                                         across scenes (``neural3d train``)
:class:`neural3d.apps.image_dictionary.task.DictionaryTask`  2D NID dictionary (``neural3d nid train-dict``)
:class:`neural3d.methods.nid.family_task.SceneFamilyTask`   3D NID across a scene family (``nid train-scenes``)
:class:`neural3d.apps.point_classification.task.PointCloudTask`  point-cloud ViT (``neural3d pointcloud train``)
======================================================  ===============================================

Distributed data parallel (:mod:`neural3d.training.distributed`; none of it in a method):

* gradients: the loop owns ``backward`` → ``optimizer.step`` and averages the gradients of ``task.module``'s
  parameters across ranks in between (``all_reduce`` per bucket), for every task alike. Wrapping
  ``task.module`` in ``DistributedDataParallel`` (overlapped communication) would need the tasks' training
  forward to call the wrapper (today ``SceneFamilyTask`` calls ``forward_scenes`` and the point-cloud
  retention loss a second forward, which DDP does not see).
* data: :meth:`TrainTask.set_rank` tells the batch source its shard of the global batch
  (``SceneTask``: ``RayLoader.shard``; every task of the table above shards); a task without it
  (:class:`TaskBase`'s default) raises ``NotImplementedError`` for W > 1.
* random state: ``step_begin`` runs on a stream shared by the ranks (grids identical by construction), the
  rest of a step on a per-rank stream seeded from (seed, rank, step).
* files: only :func:`neural3d.training.run_dir.is_main_process` writes (checkpoints, logs, config).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler


@runtime_checkable
class TrainTask(Protocol):
    """One training problem, as the loop sees it.

    Attributes:
        module: the ``nn.Module`` whose parameters receive gradients (what DDP would wrap; gradient
            clipping runs over its parameters).
        device: where batches and the module live.
        throughput_key: name of the logged items-per-second value (``rays_per_s``), or None.
        items_per_step: items (rays, shapes, patches) in one batch, for the throughput value.
    """

    module: nn.Module
    device: torch.device
    throughput_key: str | None
    items_per_step: int

    def configure_optimizers(self, total_steps: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
        """(optimizer, LR scheduler stepped once per step) over :attr:`module`'s trainable parameters."""
        ...

    def set_rank(self, rank: int, world_size: int) -> None:
        """Hook for data-parallel training: draw shard ``rank`` of ``world_size`` (1 process: a no-op)."""
        ...

    def step_begin(self, step: int) -> None:
        """Called before step ``step`` (0-based) draws its batch (occupancy-grid refreshes, phase changes)."""
        ...

    def next_batch(self, step: int) -> Any:
        """The batch of step ``step``, on :attr:`device`."""
        ...

    def loss_and_metrics(self, batch: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """(scalar loss to minimise, detached scalar metrics) of one batch; runs under the loop's autocast.

        A ``loss`` key in the metrics replaces the logged loss (e.g. without an auxiliary term).
        No host synchronisation here: the loop converts the metrics to floats only at log steps.
        """
        ...

    def evaluate(self, step: int, *, final: bool) -> dict[str, float]:
        """Scalar evaluation metrics at ``step`` (periodic when not ``final``; {} when there are none)."""
        ...

    def state_dict(self, step: int) -> dict[str, Any]:
        """The task's part of the checkpoint at ``step``: model weights, loader and grid state, config."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s keys from a checkpoint (``--resume``)."""
        ...

    # Optional (TaskBase has the defaults): further optimizers, each stepped after the main one every step on its
    # own loss (a GAN's discriminator; its parameters must not be in ``module``).
    #   configure_auxiliary_optimizers(total_steps) -> dict[name, Optimizer]
    #   auxiliary_loss(name, step) -> (loss, detached metrics) | None  (None: that optimizer skips the step)


class TaskBase:
    """Defaults for the optional parts of :class:`TrainTask` (no throughput, no evaluation, one process)."""

    throughput_key: str | None = None
    items_per_step: int = 0

    def set_rank(self, rank: int, world_size: int) -> None:
        if world_size != 1:
            raise NotImplementedError(f"{type(self).__name__}: data-parallel batch sharding is not implemented yet")

    def step_begin(self, step: int) -> None:
        pass

    def evaluate(self, step: int, *, final: bool) -> dict[str, float]:
        return {}

    def configure_auxiliary_optimizers(self, total_steps: int) -> dict[str, torch.optim.Optimizer]:
        """Optimizers stepped after the main one, in order, on :meth:`auxiliary_loss` (none by default)."""
        return {}

    def auxiliary_loss(self, name: str, step: int) -> tuple[Tensor, dict[str, Tensor]] | None:
        """(loss, detached metrics) of auxiliary optimizer ``name`` at ``step``, after the main update (None: skip)."""
        return None
