"""The NID scene-family task (``neural3d nid train-scenes``): one 3D dictionary, one code per scene.

Step ``s`` re-seeds its own generator with ``seed * 7919 + s`` and draws ``scenes_per_step`` scenes;
each contributes ``rays_per_scene`` rays from its own :class:`~neural3d.data.RayLoader` (seeded
``seed + scene index``). The scenes render together through
:meth:`~neural3d.methods.nid.model.NIDModel.forward_scenes`; the loss is MSE + ``cv`` * cv^2 balancing of
expert load and importance. Adam, exponential decay from ``lr`` to ``lr_final``. Checkpoint keys:
``model`` (whose ``field.bank.*`` a single-scene ``nid`` model loads via ``model.dictionary``),
``config``, ``loaders``.

Data-parallel (torchrun, :meth:`SceneFamilyTask.set_rank`): the scenes of a step are split across the
ranks (``scenes_per_step`` must divide by the world size), each rank rendering the rays of its own scenes;
every rank still draws every chosen scene's rays (a few integers), so the loaders' states stay identical
on all ranks by construction and a checkpoint resumes on any world size. The balancing terms are statistics
of all the step's scenes: their per-expert sums are summed over the ranks by a differentiable all-reduce
(:func:`~neural3d.training.distributed.sum_over_ranks`), so the averaged gradient is one process's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from neural3d.config import replace
from neural3d.core.rays import RayBundle
from neural3d.data.loader import RayLoader
from neural3d.evaluation.metrics import mse_to_psnr
from neural3d.methods.nid.losses import cv_squared
from neural3d.methods.nid.model import NIDModel
from neural3d.training import distributed as dist
from neural3d.training.loop import LoopConfig
from neural3d.training.setup import scene_info
from neural3d.training.task import TaskBase


def family_loop_config(cfg, *, progress: bool = True) -> LoopConfig:
    """The loop settings of an ``NIDFamilyConfig`` (no periodic evaluation, clipping or autocast)."""
    return LoopConfig(
        steps=cfg.steps,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        progress=progress,
        seed=cfg.seed,
    )


def load_family(cfg) -> list:
    """The family's scenes (generated first when ``cfg.family`` has no ``family.json``) as SceneData."""
    from neural3d.data import load_scene

    root = Path(cfg.family)
    with dist.main_first():  # torchrun: rank 0 writes a missing family, the others read it
        _write_family_if_missing(cfg, root)
    meta = json.loads((root / "family.json").read_text())
    return [load_scene(root / s["path"]) for s in meta["scenes"]]


def _write_family_if_missing(cfg, root: Path) -> None:
    from neural3d.data.synthetic import write_scene_family

    if not (root / "family.json").is_file():
        write_scene_family(
            root,
            n_scenes=cfg.n_scenes,
            seed=cfg.family_seed,
            res=cfg.res,
            n_train=cfg.n_train,
            n_val=1,
            n_test=cfg.n_test,
            supersample=1,
        )


class SceneFamilyTask(TaskBase):
    """Train an :class:`NIDModel` with ``len(scenes)`` codes on a family of scenes (CPU).

    Args:
        cfg: a validated ``NIDFamilyConfig``; the model section gets ``n_codes = len(scenes)`` in a copy.
        scenes: the family's SceneData (default: :func:`load_family`,
            generated first when absent).
    """

    def __init__(self, cfg, scenes: list | None = None) -> None:
        torch.manual_seed(cfg.seed)
        self.scenes = scenes if scenes is not None else load_family(cfg)
        n = len(self.scenes)
        self.cfg = replace(cfg, {"model": {"n_codes": n}})
        self.device = torch.device("cpu")
        self.model = NIDModel(self.cfg.model, scene=scene_info(self.scenes[0]))
        self.loaders = [RayLoader(s, "train", cfg.rays_per_scene, seed=cfg.seed + i) for i, s in enumerate(self.scenes)]
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.items_per_step = min(cfg.scenes_per_step, n) * cfg.rays_per_scene
        self._shard: slice | None = None  # data-parallel: this rank's scenes of each step

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def configure_optimizers(self, total_steps: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
        c = self.cfg
        optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr)
        gamma = (c.lr_final / c.lr) ** (1.0 / max(c.steps, 1))
        return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)

    def set_rank(self, rank: int, world_size: int) -> None:
        """Render slice ``rank`` of ``world_size`` of every step's scenes (see the module docstring)."""
        n = min(self.cfg.scenes_per_step, len(self.scenes))
        self._shard = dist.shard_slice(n, rank, world_size, "nid train-scenes: scenes_per_step")

    def next_batch(self, step: int) -> dict[str, Any]:
        """``ids`` [S] scene indices, ``rays`` [S, rays_per_scene] bundle, ``rgb`` [S, rays_per_scene, 3]
        (S = the step's scenes, divided by the world size under torchrun)."""
        c = self.cfg
        self.generator.manual_seed(c.seed * 7919 + step)
        n = len(self.scenes)
        ids = torch.randperm(n, generator=self.generator)[: min(c.scenes_per_step, n)]
        batches = [next(self.loaders[i]) for i in ids.tolist()]  # every rank: the loaders stay in step
        if self._shard is not None:
            ids, batches = ids[self._shard], batches[self._shard]
        rays = RayBundle.cat([b.rays for b in batches]).reshape(len(batches), c.rays_per_scene)
        return {"ids": ids, "rays": rays, "rgb": torch.stack([b.rgb for b in batches])}

    def loss_and_metrics(self, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        rgb, gates = self.model.forward_scenes(batch["rays"], batch["ids"])
        mse = torch.mean((rgb - batch["rgb"]) ** 2)
        total = dist.sum_over_ranks if self._shard is not None else (lambda x: x)
        loss = mse + self.cfg.cv * (cv_squared(total(gates.importance)) + cv_squared(total(gates.load)))
        mse = mse.detach()
        return loss, {"mse": mse, "psnr": mse_to_psnr(mse)}

    def state_dict(self, step: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "config": OmegaConf.to_container(self.cfg),
            "loaders": [ld.state_dict() for ld in self.loaders],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for ld, s in zip(self.loaders, state["loaders"]):
            ld.load_state_dict(s)
