"""``Trainer``: the per-scene command (``neural3d train``) as a :class:`SceneTask` in the shared :class:`Loop`.

Kept as the entry point of ``neural3d train``, the demo, the live viewer and the benchmarks: it prepares
the run directory (resume rule), writes ``config.yaml`` / ``run.json`` and exposes the loop's state
(``step``, ``elapsed``, ``paused``) and the task's (``model``, ``scene``, ``info``, ``loader``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from neural3d.config import instantiate, to_yaml
from neural3d.training import distributed as dist
from neural3d.training.callbacks import StepHook, standard_callbacks
from neural3d.training.loop import Loop
from neural3d.training.run_dir import RunDir, RunExistsError
from neural3d.training.scene_task import SceneTask, scene_loop_config
from neural3d.training.setup import run_directory

__all__ = ["RunExistsError", "Trainer"]


class Trainer:
    """Train one method on one scene; everything lands in ``run_dir``.

    Args:
        cfg: the run's config (:func:`neural3d.config.load_config`).
        resume: continue the run in ``run_dir`` from its latest checkpoint.
        overwrite: start again: the run's checkpoints and logs are replaced once the new run has a checkpoint.
        run_dir: default ``output_dir/experiment``.
        on_step: ``fn(trainer, step)`` after every step (the live viewer chains its own).

    Under torchrun the process group is initialised here from the environment (``trainer.dist_backend``,
    ``trainer.dist_timeout_s``; see :mod:`neural3d.training.distributed`); rank 0 prepares and writes the
    run directory, the other ranks wait for it and only read.
    """

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
        dist.init_from_env(cfg.trainer.dist_backend, device=str(cfg.device), timeout_s=cfg.trainer.dist_timeout_s)
        self.run = RunDir(run_dir if run_dir is not None else run_directory(cfg))
        self.run.prepare(resume=resume, overwrite=overwrite)
        with self.run.releasing_on_error():  # the lock is released and an overwritten run restored on failure
            dist.barrier()  # rank 0 has applied the resume rule before any rank reads the run directory
            self.task = SceneTask(cfg)  # data and model checked before anything of the old run moves
            lc = scene_loop_config(cfg)
            callbacks = instantiate(standard_callbacks, lc, run_dir=self.run)
            self.loop = Loop(self.task, lc, run_dir=self.run, callbacks=[*callbacks, StepHook(self._on_step)])
            self.on_step = on_step
            if resume:
                self.loop.resume()
            self._write_run_files()

    # ------------------------------------------------------------------ views of the task and the loop
    run_dir = property(lambda self: self.run.path)
    device = property(lambda self: self.task.device)
    scene = property(lambda self: self.task.scene)
    info = property(lambda self: self.task.info)
    model = property(lambda self: self.task.model)
    loader = property(lambda self: self.task.loader)
    optimizer = property(lambda self: self.loop.optimizer)
    scheduler = property(lambda self: self.loop.scheduler)

    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def elapsed(self) -> float:
        return self.loop.elapsed

    @property
    def paused(self) -> bool:
        return self.loop.paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self.loop.paused = bool(value)

    def _on_step(self, step: int) -> None:
        if self.on_step is not None:
            self.on_step(self, step)

    def _write_run_files(self) -> None:
        self.run.write_config(to_yaml(self.cfg))
        meta = {
            "method": self.cfg.method,
            "scene": self.info.state(),
            "data_path": str(Path(self.cfg.data.path).resolve()),
        }
        self.run.write_meta(meta)

    # ------------------------------------------------------------------ training
    def state_dict(self) -> dict[str, Any]:
        return self.loop.state_dict()

    def save(self) -> Path:
        return self.loop.save()

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar tensors (no host sync here)."""
        return self.loop.train_step()

    def train(self) -> dict[str, float]:
        """Train to ``trainer.steps`` (or ``trainer.max_seconds``); returns the last logged train metrics."""
        return self.loop.run()

    def evaluate_quick(self) -> dict[str, float]:
        """Render ``trainer.eval_images`` images of the eval split; log mean PSNR/SSIM."""
        res = self.task.evaluate(self.step, final=False)
        self.loop.log(self.step, {**res, "elapsed_s": self.elapsed}, "eval")
        return res
