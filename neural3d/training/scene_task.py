"""The per-scene task: any registered method on one scene, and GNT across scenes (``neural3d train``).

Batches come from ``model.build_loader`` (GNT: target rays plus source views, single or cross-scene) or a
:class:`~neural3d.data.RayLoader` of the train split; the loss is ``sum(model.loss_dict(...))``;
evaluation renders ``trainer.eval_images`` images of ``eval.split``. The checkpoint keys (``method``,
``config``, ``scene``, ``model``, ``loader``) are those of the trainer before the single loop.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from neural3d.config import ConfigError
from neural3d.training.loop import LoopConfig
from neural3d.training.optim import build_optimizer, build_scheduler
from neural3d.training.setup import build_model, load_scene_from_config, scene_info, seed_everything, select_device
from neural3d.training.task import TaskBase


def _corruption_on(data_cfg) -> bool:
    c = getattr(data_cfg, "corruption", None)
    return c is not None and (c.salt_pepper > 0 or c.gaussian_std > 0)


def scene_loop_config(cfg) -> LoopConfig:
    """The loop settings of a scene config's ``trainer`` section."""
    t = cfg.trainer
    return LoopConfig(
        steps=t.steps,
        max_seconds=t.max_seconds,
        log_every=t.log_every,
        eval_every=t.eval_every,
        checkpoint_every=t.checkpoint_every,
        grad_clip=t.optim.grad_clip,
        mixed_precision=t.mixed_precision,
        progress=t.progress,
        seed=cfg.seed,
        nonfinite=t.nonfinite,
    )


class SceneTask(TaskBase):
    """Train ``cfg.method`` on the scene of ``cfg.data`` (see the module docstring).

    Seeds everything with ``cfg.seed`` first, then loads the scene and builds the model and the loader,
    in the order of the trainer before the single loop (same random numbers).
    """

    throughput_key = "rays_per_s"

    def __init__(self, cfg) -> None:
        from neural3d.data import RayLoader

        self.cfg = cfg
        self.device = select_device(cfg.device)
        seed_everything(cfg.seed)
        self.scene = load_scene_from_config(cfg.data)
        if _corruption_on(cfg.data):  # training images only (evaluation and rendering load the scene clean)
            from neural3d.training.augment import corrupt_training_images

            self.scene = corrupt_training_images(self.scene, cfg.data.corruption)
        self.scene = self.scene.to(self.device)
        sinnerf_cfg = getattr(cfg, "sinnerf", None)
        reference = None
        if sinnerf_cfg is not None and sinnerf_cfg.enabled:  # the model and loader see the reference view alone
            from neural3d.training.sinnerf.strategy import single_view_scene

            self.scene, reference = single_view_scene(self.scene, sinnerf_cfg.reference_view)
        self.info = scene_info(self.scene)
        self.model = build_model(cfg.method, cfg.model, self.info).to(self.device)
        self.model.attach_scene(self.scene)
        self.model.prepare_training()
        self.sinnerf = None
        self.augment = None
        augment_cfg = getattr(cfg, "augment", None)
        if augment_cfg is not None:
            from neural3d.training.augment import AugNeRF, PixelFootprint, augment_enabled

            if augment_enabled(augment_cfg):
                footprint = PixelFootprint(self.scene.cameras, self.scene.ndc)
                self.augment = AugNeRF(augment_cfg, footprint)
                self.augment.check_model(self.model, f"method '{cfg.method}'")
        t = cfg.trainer
        self.items_per_step = int(t.batch_size)
        self.loader = self.model.build_loader(self.scene, batch_size=t.batch_size, device=self.device, seed=cfg.seed)
        if self.loader is None:
            self.loader = RayLoader(
                self.scene, split="train", batch_size=t.batch_size, device=self.device, seed=cfg.seed
            )
        if reference is not None:
            self._build_sinnerf(sinnerf_cfg, reference)

    def _build_sinnerf(self, sinnerf_cfg, reference: int) -> None:
        from neural3d.training.sinnerf.strategy import SinNeRF

        if self.augment is not None:
            raise ConfigError("sinnerf and augment cannot be combined yet: turn one of them off")
        if self.cfg.method not in ("nerf", "ngp"):
            raise ConfigError(f"sinnerf: method '{self.cfg.method}' is not supported (nerf, ngp)")
        self.sinnerf = SinNeRF(sinnerf_cfg, self.scene, reference)

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def set_rank(self, rank: int, world_size: int) -> None:
        """Shard the ray loader: each rank trains on ``trainer.batch_size / world_size`` rays of every batch
        (SinNeRF: and on its share of every unseen patch)."""
        if world_size == 1:
            return
        if self.sinnerf is not None:
            self.sinnerf.shard(rank, world_size)
        if not hasattr(self.loader, "shard"):
            raise NotImplementedError(
                f"method '{self.cfg.method}': its batch source {type(self.loader).__name__} cannot be sharded "
                "across processes yet"
            )
        self.loader.shard(rank, world_size)

    def configure_optimizers(self, total_steps: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
        optim = self.cfg.trainer.optim
        optimizer = build_optimizer(self.model.param_groups(), optim, self.model.lr_scales())
        return optimizer, build_scheduler(optimizer, total_steps, optim)

    def configure_auxiliary_optimizers(self, total_steps: int) -> dict[str, torch.optim.Optimizer]:
        """SinNeRF's discriminator: Adam at ``trainer.optim.lr x sinnerf.texture.lr_scale`` (official betas, eps)."""
        if self.sinnerf is None or self.sinnerf.discriminator is None:
            return {}
        lr = self.cfg.trainer.optim.lr * self.cfg.sinnerf.texture.lr_scale
        return {"discriminator": torch.optim.Adam(self.sinnerf.discriminator.parameters(), lr=lr, eps=1e-8)}

    def auxiliary_loss(self, name: str, step: int) -> tuple[Tensor, dict[str, Tensor]] | None:
        return self.sinnerf.discriminator_loss(step) if self.sinnerf is not None else None

    def step_begin(self, step: int) -> None:
        self.model.training_step_begin(step)

    def next_batch(self, step: int) -> Any:
        return next(self.loader)

    def loss_and_metrics(self, batch: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The model's loss (``sum(loss_dict)``), or Aug-NeRF's ``(1 - w) L_clean + w L_adv`` with ``augment`` on."""
        context = getattr(batch, "context", None)
        if self.sinnerf is not None:
            return self.sinnerf.loss(self.model, batch, step)
        if self.augment is not None:
            loss, outputs, extra = self.augment.loss(self.model, batch, context)
            metrics = {k: v.detach() for k, v in self.model.metrics_dict(outputs, batch).items()}
            return loss, {**metrics, **extra}
        outputs = self.model(batch.rays, context)
        loss = sum(self.model.loss_dict(outputs, batch).values())
        metrics = {k: v.detach() for k, v in self.model.metrics_dict(outputs, batch).items()}
        scale = getattr(batch, "loss_scale", 1.0)  # data-parallel GNT scene sharding (gnt/batches.py)
        return (loss * scale if scale != 1.0 else loss), metrics

    def evaluate(self, step: int, *, final: bool) -> dict[str, float]:
        """Mean PSNR/SSIM of ``trainer.eval_images`` renders of ``eval.split`` (periodic only; {} at the end)."""
        if final:
            return {}
        from neural3d.evaluation.evaluate import evaluate_split

        res = evaluate_split(
            self.model,
            self.scene,
            self.cfg.eval.split,
            chunk=self.cfg.eval.chunk,
            max_images=self.cfg.trainer.eval_images,
        )
        return res["mean"]

    # ------------------------------------------------------------------ checkpoint keys
    def state_dict(self, step: int) -> dict[str, Any]:
        return {
            "method": self.cfg.method,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "scene": self.info.state(),
            "model": self.model.state_dict(),
            "loader": self.loader.state_dict(),
            **({"sinnerf": self.sinnerf.state_dict()} if self.sinnerf is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("method") != self.cfg.method:
            raise ConfigError(f"checkpoint is for method '{state.get('method')}', config says '{self.cfg.method}'")
        self.model.load_state_dict(state["model"])
        self.loader.load_state_dict(state["loader"])
        if self.sinnerf is not None:
            self.sinnerf.load_state_dict(state["sinnerf"])
        self._warn_ignored_optim_changes(state.get("config", {}).get("trainer", {}).get("optim", {}))

    def _warn_ignored_optim_changes(self, saved: dict) -> None:
        """Resuming restores the optimizer's learning rates and moments: a changed ``trainer.optim`` is not applied."""
        now = OmegaConf.to_container(self.cfg.trainer.optim, resolve=True)
        changed = sorted(k for k in ("lr", "betas", "eps", "weight_decay") if k in saved and saved[k] != now.get(k))
        if changed:
            warnings.warn(
                "resuming keeps the checkpoint's optimizer state; trainer.optim."
                + ", trainer.optim.".join(f"{k} ({saved[k]} -> {now.get(k)})" for k in changed)
                + " not applied. To restart optimisation from these weights with new settings, start a new "
                "run with model.init_checkpoint (where the method supports it)",
                stacklevel=4,
            )
