"""The 2D dictionary task (``neural3d nid train-dict``): a :class:`NeuralImplicitDictionary` on image patches.

Step ``s`` re-seeds its own generator with ``seed * 1_000_003 + s`` and draws ``batch_size`` patches (and
``points_per_step`` of their pixels), so the batches do not depend on where a run was resumed. The
first ``warmup_steps`` use dense gates with an L1 penalty; Adam over the bank (``lr``) and the gate
(``lr * gate_lr_scale``), decayed exponentially to ``lr_final``. Checkpoint keys: ``model``, ``config``,
``image_size``, ``n_signals`` and ``code_prior`` (the Gaussian prior of the training codes, in the last
checkpoint only).

Data-parallel (torchrun, :meth:`DictionaryTask.set_rank`): every rank draws the same global batch of patch
ids and keeps its own slice (``batch_size`` must divide by the world size; the pixels of the step are the
same on every rank), so shards never overlap and the order is one process's. The balancing term is a
statistic of the whole batch (expert importance and load summed over signals): it is summed over the ranks
by a differentiable all-reduce, so every rank's loss and the averaged gradient are those of one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from neural3d.apps.image_dictionary.data import collect_images
from neural3d.apps.image_dictionary.objective import (
    build_dictionary,
    dictionary_prior,
    step_loss,
    train_psnr,
    usage_over,
)
from neural3d.apps.image_dictionary.patches import cut_patches_strided, flatten_patches, patch_coords
from neural3d.training import distributed as dist
from neural3d.training.loop import LoopConfig
from neural3d.training.task import TaskBase


def dictionary_loop_config(cfg, *, progress: bool = True) -> LoopConfig:
    """The loop settings of a :class:`NIDTrainConfig` (no periodic evaluation, clipping or autocast)."""
    return LoopConfig(
        steps=cfg.steps,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        progress=progress,
        seed=cfg.seed,
    )


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class DictionaryTask(TaskBase):
    """Train a dictionary on the patches of an image collection.

    Args:
        cfg: a validated :class:`~neural3d.methods.nid.config.NIDTrainConfig`.
        images: [n_images, H, W, C] collection (default: loaded from ``cfg.data``); the last
            ``cfg.data.holdout`` images are kept out of training.
        device: overrides ``cfg.device``.
        synth_dir: where generated images go when ``cfg.data.synth_dir`` is empty.
    """

    def __init__(self, cfg, *, images: Tensor | None = None, device: str | None = None, synth_dir: str = "") -> None:
        self.cfg = cfg
        self.device = torch.device(device) if device else resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        if images is None:
            d = cfg.data
            images = collect_images(
                list(d.folders),
                d.image_size,
                d.max_images_per_folder,
                d.synth_dir or synth_dir,
                d.synth_scenes,
                d.synth_seed,
            )
        self.image_size = int(images.shape[1])
        self.patches = cut_patches_strided(images[: self._n_train(images)], *self._patch_stride(images)).to(self.device)
        self.targets = flatten_patches(self.patches)  # [n_patches, p * p, C]
        self.coords = patch_coords(cfg.data.patch_size, self.device)  # [p * p, 2]
        n = self.patches.shape[0]
        self.model = build_dictionary(cfg, n_signals=n, in_channels=images.shape[-1], seed=cfg.seed).to(self.device)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.items_per_step = min(cfg.batch_size, n)
        self._shard: slice | None = None  # data-parallel: this rank's patches of each batch

    def _n_train(self, images: Tensor) -> int:
        n_train = images.shape[0] - self.cfg.data.holdout
        if n_train < 1:
            raise ValueError(
                f"nid train-dict: {images.shape[0]} images leave none for training with "
                f"data.holdout={self.cfg.data.holdout}"
            )
        return n_train

    def _patch_stride(self, images: Tensor) -> tuple[int, int]:
        p = self.cfg.data.patch_size
        stride = self.cfg.data.patch_stride or p
        if not 1 <= stride <= p or (images.shape[1] - p) % stride or (images.shape[2] - p) % stride:
            raise ValueError(
                f"nid train-dict: data.patch_stride {stride} must be in [1, {p}] and divide image_size - "
                f"patch_size = {images.shape[1] - p}"
            )
        return p, stride

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def configure_optimizers(self, total_steps: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
        c = self.cfg
        optimizer = torch.optim.Adam(
            [
                {"params": list(self.model.bank.parameters()), "lr": c.lr},
                {"params": list(self.model.gate.parameters()), "lr": c.lr * c.gate_lr_scale},
            ]
        )
        gamma = (c.lr_final / c.lr) ** (1.0 / max(c.steps, 1))
        return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)

    def set_rank(self, rank: int, world_size: int) -> None:
        """Keep slice ``rank`` of ``world_size`` of every global batch of patches (see the module docstring)."""
        self._shard = dist.shard_slice(self.items_per_step, rank, world_size, "nid train-dict: batch_size")

    def next_batch(self, step: int) -> dict[str, Any]:
        """``ids`` [B] patch indices (B / world size under torchrun), ``pix`` [P] pixel indices of the patch
        grid, ``warm``: dense phase."""
        c, gen = self.cfg, self.generator
        gen.manual_seed(c.seed * 1_000_003 + step)  # reproducible after a resume
        n = self.patches.shape[0]
        ids = torch.randint(0, n, (min(c.batch_size, n),), generator=gen)
        if c.points_per_step > 0:
            pix = torch.randperm(self.coords.shape[0], generator=gen)[: c.points_per_step].to(self.device)
        else:
            pix = torch.arange(self.coords.shape[0], device=self.device)
        if self._shard is not None:
            ids = ids[self._shard]
        return {"ids": ids.to(self.device), "pix": pix, "warm": step < c.warmup_steps}

    def loss_and_metrics(self, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        ids, pix = batch["ids"], batch["pix"]
        targets = self.targets[ids][:, pix]
        batch_sum = dist.sum_over_ranks if self._shard is not None else None
        return step_loss(
            self.model,
            self.coords[pix],
            self.patches[ids],
            ids,
            targets,
            self.cfg,
            warm=batch["warm"],
            batch_sum=batch_sum,
        )

    def evaluate(self, step: int, *, final: bool) -> dict[str, float]:
        """At the end: pooled train PSNR and expert usage over every training patch."""
        if not final:
            return {}
        self.model.eval()
        return {
            "train_psnr": train_psnr(self.model, self.coords, self.patches),
            **usage_over(self.model, self.patches),
            "n_train_patches": int(self.patches.shape[0]),
        }

    def state_dict(self, step: int) -> dict[str, Any]:
        prior = dictionary_prior(self.model.eval(), self.patches) if step == self.cfg.steps else None
        m = self.model
        return {
            "model": m.state_dict(),
            "code_prior": None if prior is None else prior.to_state(),
            "config": OmegaConf.to_container(self.cfg),
            "image_size": self.image_size,
            "n_signals": int(m.gate.codes.shape[0]) if m.gate_type == "codebook" else 0,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])


def synth_dir_of(run_dir: Path | None) -> str:
    """Default folder of generated training images: ``RUN/synth``."""
    return str(run_dir / "synth") if run_dir else ""
