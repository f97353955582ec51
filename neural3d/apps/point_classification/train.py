"""Train and evaluate point-cloud ViTs (classification / part segmentation) from a :class:`PCTrainConfig`.

:class:`PointCloudTrainer` runs a :class:`~neural3d.apps.point_classification.task.PointCloudTask` in the
shared :class:`~neural3d.training.loop.Loop`. Its run directory (:mod:`neural3d.training.run_dir`) holds
``config.yaml``, ``checkpoints/step_*.pt``, ``logs/metrics.csv`` and ``eval/metrics.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neural3d.apps.point_classification.build import build_datasets, build_pc_model, model_meta
from neural3d.apps.point_classification.config import build_pc_config
from neural3d.apps.point_classification.task import PointCloudTask, pc_loop_config
from neural3d.config import instantiate, to_yaml
from neural3d.training import distributed as dist
from neural3d.training.callbacks import standard_callbacks
from neural3d.training.loop import Loop
from neural3d.training.nonfinite import require_finite
from neural3d.training.run_dir import RunDir
from neural3d.training.setup import select_device

__all__ = ["PointCloudTrainer", "build_datasets", "build_pc_model", "load_pc_run", "model_meta", "pc_run_dir"]


def pc_run_dir(cfg) -> Path:
    """``output_dir/experiment`` (default experiment: ``pointcloud-<task>-<data.kind>``)."""
    return Path(cfg.output_dir) / (cfg.experiment or f"pointcloud-{cfg.task}-{cfg.data.kind}")


class PointCloudTrainer:
    """Classification / segmentation training; everything lands in ``run_dir``.

    Args:
        resume / overwrite: the common resume rule (:meth:`neural3d.training.run_dir.RunDir.prepare`).
    """

    def __init__(self, cfg, *, resume: bool = False, overwrite: bool = False, run_dir: Path | None = None):
        self.cfg = cfg
        dist.init_from_env(device=str(cfg.device))  # torchrun: the process group (see the task's docstring)
        self.run = RunDir(run_dir or pc_run_dir(cfg))
        self.run.prepare(resume=resume, overwrite=overwrite)
        dist.barrier()  # rank 0 has applied the resume rule before any rank reads the run directory
        with self.run.releasing_on_error():
            self.task = PointCloudTask(cfg)
            lc = pc_loop_config(cfg)
            log = print if cfg.progress else None
            callbacks = instantiate(standard_callbacks, lc, run_dir=self.run, log=log, name="pointcloud")
            self.loop = Loop(self.task, lc, run_dir=self.run, callbacks=callbacks)
            if resume:
                self.loop.resume()
            self.run.write_config(to_yaml(cfg))

    run_dir = property(lambda self: self.run.path)
    device = property(lambda self: self.task.device)
    model = property(lambda self: self.task.model)
    train_set = property(lambda self: self.task.train_set)
    test_set = property(lambda self: self.task.test_set)
    meta = property(lambda self: self.task.meta)
    load_report = property(lambda self: self.task.load_report)
    generator = property(lambda self: self.task.generator)
    optimizer = property(lambda self: self.loop.optimizer)
    scheduler = property(lambda self: self.loop.scheduler)
    step = property(lambda self: self.loop.step)
    elapsed = property(lambda self: self.loop.elapsed)

    @property
    def distill_images(self):
        return self.task.distill_images

    def state_dict(self) -> dict[str, Any]:
        return self.loop.state_dict()

    def save(self) -> Path:
        return self.loop.save()

    def train_step(self) -> dict[str, Any]:
        return self.loop.train_step()

    def evaluate(self) -> dict[str, float]:
        return self.task.evaluate(self.step, final=True)

    def train(self) -> dict[str, float]:
        """Train, save, and return the final test metrics."""
        return self.loop.run()


def load_pc_run(run_dir, *, device: str = "cpu", checkpoint: Path | None = None):
    """(model in eval mode, config, checkpoint state) of a point-cloud run."""
    dev = select_device(device)
    try:
        path, state = RunDir(run_dir).load_checkpoint(checkpoint, map_location=dev)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"cannot load point-cloud run: {e}") from None
    if state.get("kind") != "pointcloud":
        raise ValueError(f"{path}: not a point-cloud checkpoint (use 'neural3d eval' for scene runs)")
    cfg = build_pc_config(state["config"], source=str(path))
    model = build_pc_model(cfg, state["meta"]).to(dev)
    model.load_state_dict(state["model"])
    require_finite(model, path)
    return model.eval(), cfg, state
