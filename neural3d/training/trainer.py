"""Per-scene trainer: random ray batches, Adam + LR schedule, evaluation, atomic checkpoints, resume.

The loop is small on purpose; scene loading, the model, checkpoints, logging and evaluation are
separate units (``setup``, ``checkpoint``, ``logger``, ``neural3d.evaluation.evaluate``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from neural3d.config import ConfigError, to_yaml
from neural3d.training import checkpoint as ckpt
from neural3d.training.logger import MetricsLogger
from neural3d.training.optim import build_optimizer, build_scheduler
from neural3d.training.setup import (
    build_model,
    load_scene_from_config,
    run_directory,
    scene_info,
    seed_everything,
    select_device,
)


class RunExistsError(RuntimeError):
    pass


class Trainer:
    """Train one method on one scene; everything lands in ``run_dir``."""

    def __init__(
        self,
        cfg,
        *,
        resume: bool = False,
        overwrite: bool = False,
        run_dir: Path | None = None,
        on_step: Callable[[Trainer, int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else run_directory(cfg)
        self._prepare_run_dir(resume, overwrite)
        self.device = select_device(cfg.device)
        seed_everything(cfg.seed)
        self.scene = load_scene_from_config(cfg.data).to(self.device)
        self.info = scene_info(self.scene)
        self.model = build_model(cfg.method, cfg.model, self.info).to(self.device)
        self.model.attach_scene(self.scene)
        self.model.prepare_training()
        t = cfg.trainer
        self.optimizer = build_optimizer(self.model.param_groups(), t.optim)
        self.scheduler = build_scheduler(self.optimizer, t.steps, t.optim)
        from neural3d.data import RayLoader

        self.loader = self.model.build_loader(self.scene, batch_size=t.batch_size, device=self.device, seed=cfg.seed)
        if self.loader is None:
            self.loader = RayLoader(
                self.scene, split="train", batch_size=t.batch_size, device=self.device, seed=cfg.seed
            )
        self.logger = MetricsLogger(self.run_dir)
        self.step = 0
        self.elapsed = 0.0  # training seconds, carried across resumes
        self.on_step = on_step
        self.paused = False
        if resume:
            self._resume()
        self._write_run_files()

    # ------------------------------------------------------------------ run directory
    def _prepare_run_dir(self, resume: bool, overwrite: bool) -> None:
        has_ckpt = ckpt.latest_checkpoint(self.run_dir) is not None
        if has_ckpt and not (resume or overwrite):
            raise RunExistsError(
                f"{self.run_dir} already holds a run; pass --resume to continue it, --overwrite to start again, "
                f"or experiment=NAME for a new run directory"
            )
        if overwrite and not resume:
            for p in ckpt.list_checkpoints(self.run_dir):
                p.unlink()
            (self.run_dir / "logs" / "metrics.csv").unlink(missing_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _write_run_files(self) -> None:
        import json

        ckpt.atomic_write_text(to_yaml(self.cfg), self.run_dir / "config.yaml")
        meta = {
            "method": self.cfg.method,
            "scene": self.info.state(),
            "data_path": str(Path(self.cfg.data.path).resolve()),
        }
        ckpt.atomic_write_text(json.dumps(meta, indent=2), self.run_dir / "run.json")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "method": self.cfg.method,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "scene": self.info.state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.loader.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self) -> Path:
        return ckpt.save_checkpoint(self.run_dir, self.step, self.state_dict())

    def _resume(self) -> None:
        path = ckpt.latest_checkpoint(self.run_dir)
        if path is None:
            return
        state = ckpt.load_checkpoint(path, map_location=self.device)
        if state.get("method") != self.cfg.method:
            raise ConfigError(
                f"{path}: checkpoint is for method '{state.get('method')}', config says '{self.cfg.method}'"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), self.device)
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.logger.truncate(self.step)
        self._warn_ignored_optim_changes(path, state.get("config", {}).get("trainer", {}).get("optim", {}))

    def _warn_ignored_optim_changes(self, path: Path, saved: dict) -> None:
        """Resuming restores the optimizer's learning rates and moments: a changed ``trainer.optim`` is not applied."""
        import warnings

        now = OmegaConf.to_container(self.cfg.trainer.optim, resolve=True)
        changed = sorted(k for k in ("lr", "betas", "eps", "weight_decay") if k in saved and saved[k] != now.get(k))
        if changed:
            warnings.warn(
                f"{path}: resuming keeps the checkpoint's optimizer state; trainer.optim."
                + ", trainer.optim.".join(f"{k} ({saved[k]} -> {now.get(k)})" for k in changed)
                + " not applied. To restart optimisation from these weights with new settings, start a new "
                "run with model.init_checkpoint (where the method supports it)",
                stacklevel=3,
            )

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        mp = self.cfg.trainer.mixed_precision
        if self.device.type != "cuda" or mp == "off":
            return contextlib.nullcontext()
        dtype = torch.float16 if mp == "fp16" else torch.bfloat16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar tensors (no host sync here)."""
        self.model.train()
        self.model.training_step_begin(self.step)
        batch = next(self.loader)
        with self._autocast():
            outputs = self.model(batch.rays, getattr(batch, "context", None))
            losses = self.model.loss_dict(outputs, batch)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.trainer.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.trainer.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        metrics = {k: v.detach() for k, v in self.model.metrics_dict(outputs, batch).items()}
        return {"loss": loss.detach(), **metrics}

    def train(self) -> dict[str, float]:
        t = self.cfg.trainer
        bar = tqdm(total=t.steps, initial=self.step, disable=not t.progress, dynamic_ncols=True, desc="train")
        last: dict[str, float] = {}
        window_start, window_steps = time.perf_counter(), 0
        while self.step < t.steps:
            if t.max_seconds and self.elapsed >= t.max_seconds:
                break
            if self.paused:
                time.sleep(0.05)
                window_start, window_steps = time.perf_counter(), 0
                continue
            start = time.perf_counter()
            out = self.train_step()
            self.elapsed += time.perf_counter() - start
            window_steps += 1
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:  # host sync only here
                rays_per_s = window_steps * t.batch_size / max(time.perf_counter() - window_start, 1e-9)
                window_start, window_steps = time.perf_counter(), 0
                last = {k: float(v) for k, v in out.items()}
                bar.set_postfix(
                    loss=f"{last['loss']:.4f}", psnr=f"{last.get('psnr', 0):.2f}", rays_s=f"{rays_per_s:,.0f}"
                )
                self.logger.log(
                    self.step,
                    {
                        **last,
                        "rays_per_s": rays_per_s,
                        "lr": self.scheduler.get_last_lr()[0],
                        "elapsed_s": self.elapsed,
                    },
                    prefix="train",
                )
            if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps:
                self.evaluate_quick()
            if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                self.save()
            if self.on_step is not None:
                self.on_step(self, self.step)
        bar.close()
        self.save()
        return last

    def evaluate_quick(self) -> dict[str, float]:
        """Render ``trainer.eval_images`` images of the eval split; log mean PSNR/SSIM."""
        from neural3d.evaluation.evaluate import evaluate_split

        res = evaluate_split(
            self.model,
            self.scene,
            self.cfg.eval.split,
            chunk=self.cfg.eval.chunk,
            max_images=self.cfg.trainer.eval_images,
        )
        self.logger.log(self.step, {**res["mean"], "elapsed_s": self.elapsed}, prefix="eval")
        return res["mean"]
