"""Train and evaluate point-cloud ViTs (classification / part segmentation) from a :class:`PCTrainConfig`.

A run directory holds ``config.yaml``, ``checkpoints/step_*.pt`` (atomic, via
:mod:`neural3d.training.checkpoint`), ``logs/metrics.csv`` and ``eval/metrics.json``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from neural3d.apps.point_classification.augment import augment
from neural3d.apps.point_classification.config import build_pc_config
from neural3d.apps.point_classification.datasets import PointCloudSet, load_modelnet40, load_shapenetpart, synthetic_set
from neural3d.apps.point_classification.metrics import evaluate_set, part_mask_from
from neural3d.config import ConfigError, instantiate, to_yaml
from neural3d.pointcloud.encoder import PointViT
from neural3d.training import checkpoint as ckpt
from neural3d.training.logger import MetricsLogger
from neural3d.training.setup import seed_everything, select_device


def build_datasets(cfg) -> tuple[PointCloudSet, PointCloudSet]:
    """(train, test) sets described by ``cfg.data``."""
    d = cfg.data
    limit = d.max_shapes or None
    if d.kind == "synthetic":
        kw = {"n_points": d.n_points, "n_classes": d.synth_classes, "noise": d.synth_noise}
        return (
            synthetic_set(d.synth_train_per_class, seed=cfg.seed, **kw),
            synthetic_set(d.synth_test_per_class, seed=cfg.seed + 10_000, **kw),
        )
    if d.kind == "modelnet40":
        kw = {"n_points": d.n_points, "use_normals": d.use_normals, "max_shapes": limit}
        return load_modelnet40(d.path, d.train_split, **kw), load_modelnet40(d.path, d.test_split, **kw)
    kw = {"n_points": d.n_points, "use_normals": d.use_normals, "max_shapes": limit, "seed": cfg.seed}
    return load_shapenetpart(d.path, d.train_split, **kw), load_shapenetpart(d.path, d.test_split, **kw)


def model_meta(cfg, train: PointCloudSet) -> dict[str, Any]:
    """Data-dependent model sizes, stored in checkpoints so a run rebuilds without its data."""
    seg = cfg.task == "seg"
    meta = {
        "in_dim": int(train.points.shape[-1]),
        "class_names": list(train.class_names),
        "n_classes": train.n_parts if seg else len(train.class_names),
        "n_categories": len(train.class_names) if seg else 0,
    }
    if seg:
        meta["part_mask"] = part_mask_from(train).tolist()
    return meta


def build_pc_model(cfg, meta: dict[str, Any]) -> PointViT:
    return instantiate(
        PointViT,
        cfg.model,
        in_dim=meta["in_dim"],
        task=cfg.task,
        n_classes=meta["n_classes"],
        n_categories=meta["n_categories"],
    )


def _lr_lambda(cfg):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = min((step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1), 1.0)
        final = cfg.lr_final / cfg.lr
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p))

    return f


class PointCloudTrainer:
    """Classification / segmentation training loop; everything lands in ``run_dir``."""

    def __init__(self, cfg, *, resume: bool = False, overwrite: bool = False, run_dir: Path | None = None):
        self.cfg = cfg
        self.run_dir = Path(
            run_dir or Path(cfg.output_dir) / (cfg.experiment or f"pointcloud-{cfg.task}-{cfg.data.kind}")
        )
        if ckpt.latest_checkpoint(self.run_dir) is not None and not (resume or overwrite):
            raise ConfigError(f"{self.run_dir} already holds a run; pass --resume or --overwrite, or experiment=NAME")
        if overwrite and not resume:
            for p in ckpt.list_checkpoints(self.run_dir):
                p.unlink()
            (self.run_dir / "logs" / "metrics.csv").unlink(missing_ok=True)
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
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step, self.elapsed = 0, 0.0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logger = MetricsLogger(self.run_dir, tensorboard=False)
        if resume:
            self._resume()
        ckpt.atomic_write_text(to_yaml(cfg), self.run_dir / "config.yaml")

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

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "kind": "pointcloud",
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "meta": self.meta,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "rng_cpu": torch.get_rng_state(),
        }

    def save(self) -> Path:
        return ckpt.save_checkpoint(self.run_dir, self.step, self.state_dict())

    def _resume(self) -> None:
        path = ckpt.latest_checkpoint(self.run_dir)
        if path is None:
            return
        state = ckpt.load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["rng_cpu"].cpu())
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.logger.truncate(self.step)

    # ------------------------------------------------------------------ loop
    def loss(self, points, labels, parts) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of one batch."""
        ls = self.cfg.label_smoothing
        if self.cfg.task == "cls":
            logits = self.model(points)
            return F.cross_entropy(logits, labels, label_smoothing=ls), logits
        logits = self.model(points, labels)
        return F.cross_entropy(logits.flatten(0, 1), parts.flatten(), label_smoothing=ls), logits

    def train_step(self) -> dict[str, float]:
        self.model.train()
        n = len(self.train_set)
        idx = torch.randint(n, (min(self.cfg.batch_size, n),), generator=self.generator)
        points = augment(self.train_set.points[idx], self.cfg.data.augment, self.generator).to(self.device)
        labels = self.train_set.labels[idx].to(self.device)
        parts = None if self.train_set.parts is None else self.train_set.parts[idx].to(self.device)
        loss, _ = self.loss(points, labels, parts)
        out = {"loss": loss.detach()}
        if self.retention is not None:
            imgs = self.distill_images[
                torch.randint(len(self.distill_images), (self.cfg.distill.batch_size,), generator=self.generator)
            ]
            r = self.retention(self.model, imgs)
            out["retention"] = r.detach()
            loss = loss + self.cfg.distill.weight * r
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return out

    def evaluate(self) -> dict[str, float]:
        return evaluate_set(
            self.model,
            self.test_set,
            self.cfg.task,
            batch_size=self.cfg.eval_batch_size,
            part_mask=self.meta.get("part_mask"),
        )

    def train(self) -> dict[str, float]:
        c = self.cfg
        last: dict[str, float] = {}
        while self.step < c.steps and not (c.max_seconds and self.elapsed >= c.max_seconds):
            t0 = time.perf_counter()
            out = self.train_step()
            self.elapsed += time.perf_counter() - t0
            if self.step % c.log_every == 0 or self.step == c.steps:
                last = {k: float(v) for k, v in out.items()}
                self.logger.log(
                    self.step,
                    {**last, "lr": self.scheduler.get_last_lr()[0], "elapsed_s": self.elapsed},
                    prefix="train",
                )
                if c.progress:
                    print(f"step {self.step}/{c.steps}  loss {last['loss']:.4f}  {self.elapsed:.1f}s", flush=True)
            if c.eval_every and self.step % c.eval_every == 0 and self.step < c.steps:
                self.logger.log(self.step, {**self.evaluate(), "elapsed_s": self.elapsed}, prefix="eval")
            if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                self.save()
        self.save()
        final = self.evaluate()
        self.logger.log(self.step, {**final, "elapsed_s": self.elapsed}, prefix="eval")
        return final


def load_pc_run(run_dir, *, device: str = "cpu", checkpoint: Path | None = None):
    """(model in eval mode, config, checkpoint state) of a point-cloud run."""
    run_dir = Path(run_dir)
    path = Path(checkpoint) if checkpoint else ckpt.latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"cannot load point-cloud run: {run_dir} holds no checkpoints/step_*.pt")
    state = ckpt.load_checkpoint(path, map_location=select_device(device))
    if state.get("kind") != "pointcloud":
        raise ValueError(f"{path}: not a point-cloud checkpoint (use 'neural3d eval' for scene runs)")
    cfg = build_pc_config(state["config"], source=str(path))
    model = build_pc_model(cfg, state["meta"]).to(select_device(device))
    model.load_state_dict(state["model"])
    return model.eval(), cfg, state
