"""The point-cloud task (``neural3d pointcloud train``): classification / part segmentation of a ViT.

Each step draws ``batch_size`` shapes with a seeded ``torch.Generator`` (then the augmentation and, with
a retention loss, the teacher images from the same generator); AdamW with linear warm-up and cosine
decay to ``lr_final``. Checkpoint keys: ``kind`` (``pointcloud``), ``config``, ``meta``, ``model``,
``generator``.

Data-parallel (torchrun, :meth:`PointCloudTask.set_rank`): every rank draws and augments the same global
batch from the same generator and keeps its own slice of the shapes (``batch_size`` must divide by the world
size), so shards never overlap, the generator's state stays identical on every rank (the checkpoint's) and
the data order is one process's. The retention loss's teacher images are split likewise when
``distill.batch_size`` divides, else every rank computes it on all of them (the same term on each rank).
The model has no batch-statistics layers (no BatchNorm), so there is no non-gradient state to synchronise.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from neural3d.apps.point_classification.augment import augment
from neural3d.apps.point_classification.build import build_datasets, build_pc_model, model_meta
from neural3d.apps.point_classification.metrics import evaluate_set
from neural3d.training import distributed as dist
from neural3d.training.loop import LoopConfig
from neural3d.training.setup import seed_everything, select_device
from neural3d.training.task import TaskBase


def pc_loop_config(cfg) -> LoopConfig:
    """The loop settings of a :class:`PCTrainConfig` (no gradient clipping, no autocast)."""
    return LoopConfig(
        steps=cfg.steps,
        max_seconds=cfg.max_seconds,
        log_every=cfg.log_every,
        eval_every=cfg.eval_every,
        checkpoint_every=cfg.checkpoint_every,
        progress=cfg.progress,
        seed=cfg.seed,
    )


def warmup_cosine(cfg):
    """LR multiplier of step s: linear warm-up over ``warmup_steps``, then cosine from 1 to ``lr_final / lr``."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = min((step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1), 1.0)
        final = cfg.lr_final / cfg.lr
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p))

    return f


class PointCloudTask(TaskBase):
    """Train a :class:`~neural3d.pointcloud.encoder.PointViT` as ``cfg`` (:class:`PCTrainConfig`) says."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.device = select_device(cfg.device)
        seed_everything(cfg.seed)
        self.train_set, self.test_set = build_datasets(cfg)
        self.meta = model_meta(cfg, self.train_set)
        self.model = build_pc_model(cfg, self.meta).to(self.device)
        self.load_report = None
        if cfg.model.pretrained:
            from neural3d.pointcloud.pretrained import load_deit

            self.load_report = load_deit(self.model, cfg.model.pretrained)
            print(f"[neural3d] {cfg.model.pretrained}: {self.load_report.summary()}")
        self.retention = self._build_retention()
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.items_per_step = min(cfg.batch_size, len(self.train_set))
        self._shard: slice | None = None  # data-parallel: this rank's shapes of each batch
        self._image_shard: slice | None = None  # and its teacher images

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def _build_retention(self):
        d = self.cfg.distill
        if d.weight <= 0:
            return None
        from neural3d.apps.point_classification.distill import RetentionLoss, load_image_folder
        from neural3d.pointcloud.image_vit import ImageViT
        from neural3d.pointcloud.pretrained import load_deit

        teacher = ImageViT(size=self.cfg.model.size, img_size=d.image_size)
        load_deit(teacher, d.teacher)
        self.distill_images = load_image_folder(d.images, d.image_size).to(self.device)
        return RetentionLoss(teacher=teacher, temperature=d.temperature).to(self.device)

    def configure_optimizers(self, total_steps: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
        c = self.cfg
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(c))

    def set_rank(self, rank: int, world_size: int) -> None:
        """Keep slice ``rank`` of ``world_size`` of every global batch (see the module docstring)."""
        self._shard = dist.shard_slice(self.items_per_step, rank, world_size, "pointcloud train: batch_size")
        n_images = self.cfg.distill.batch_size
        if self.retention is not None and n_images % world_size == 0:
            self._image_shard = dist.shard_slice(n_images, rank, world_size, "distill.batch_size")

    def next_batch(self, step: int) -> dict[str, Tensor | None]:
        """``points`` [B, n_points, C], ``labels`` [B], ``parts`` [B, n_points] or None, ``images`` or None
        (B = ``batch_size``, divided by the world size under torchrun)."""
        n = len(self.train_set)
        idx = torch.randint(n, (min(self.cfg.batch_size, n),), generator=self.generator)
        points = augment(self.train_set.points[idx], self.cfg.data.augment, self.generator).to(self.device)
        labels = self.train_set.labels[idx].to(self.device)
        parts = None if self.train_set.parts is None else self.train_set.parts[idx].to(self.device)
        images = None
        if self.retention is not None:
            pick = torch.randint(len(self.distill_images), (self.cfg.distill.batch_size,), generator=self.generator)
            images = self.distill_images[pick if self._image_shard is None else pick[self._image_shard]]
        if self._shard is not None:
            points, labels = points[self._shard], labels[self._shard]
            parts = None if parts is None else parts[self._shard]
        return {"points": points, "labels": labels, "parts": parts, "images": images}

    def loss(self, points: Tensor, labels: Tensor, parts: Tensor | None) -> tuple[Tensor, Tensor]:
        """(cross-entropy loss, logits) of one batch (logits [B, n_classes] or [B, n_points, n_parts])."""
        ls = self.cfg.label_smoothing
        if self.cfg.task == "cls":
            logits = self.model(points)
            return F.cross_entropy(logits, labels, label_smoothing=ls), logits
        logits = self.model(points, labels)
        return F.cross_entropy(logits.flatten(0, 1), parts.flatten(), label_smoothing=ls), logits

    def loss_and_metrics(self, batch: dict, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        loss, _ = self.loss(batch["points"], batch["labels"], batch["parts"])
        metrics = {"loss": loss.detach()}
        if self.retention is not None:
            r = self.retention(self.model, batch["images"])
            metrics["retention"] = r.detach()
            loss = loss + self.cfg.distill.weight * r
        return loss, metrics

    def evaluate(self, step: int, *, final: bool) -> dict[str, float]:
        """Accuracy (cls) or mIoU (seg) on the test set."""
        return evaluate_set(
            self.model,
            self.test_set,
            self.cfg.task,
            batch_size=self.cfg.eval_batch_size,
            part_mask=self.meta.get("part_mask"),
        )

    def state_dict(self, step: int) -> dict[str, Any]:
        return {
            "kind": "pointcloud",
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "meta": self.meta,
            "model": self.model.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "pointcloud":
            raise ValueError("not a point-cloud checkpoint")
        self.model.load_state_dict(state["model"])
        self.generator.set_state(state["generator"].cpu())
