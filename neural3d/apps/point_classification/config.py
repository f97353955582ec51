"""Structured configs of ``neural3d pointcloud train``, built by :func:`neural3d.config.build`.

Unknown keys, wrong types and options outside their ``Literal`` values are errors naming the key;
:meth:`PCTrainConfig.check` adds the checks that involve several keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig

from neural3d.apps.point_classification.augment import AugmentConfig
from neural3d.config import ConfigError, build, load
from neural3d.config_bounds import NonNegativeFloat, NonNegativeInt, PositiveInt

DATA_KINDS = ("synthetic", "modelnet40", "shapenetpart")


@dataclass
class PCDataConfig:
    """The point-cloud dataset and its augmentation."""

    kind: Literal["synthetic", "modelnet40", "shapenetpart"] = "synthetic"
    """Generated shape classes, ModelNet40 (``normal_resampled``) or ShapeNetPart."""
    path: str = ""
    """Dataset root (required for ``modelnet40`` and ``shapenetpart``)."""
    n_points: int = 512
    """Points per shape."""
    use_normals: bool = False
    """Append the point normals to the coordinates (6 input channels)."""
    max_shapes: int = 0
    """Shapes read from each split (0: all)."""
    train_split: str = "train"
    """Dataset split trained on."""
    test_split: str = "test"
    """Dataset split evaluated."""
    synth_classes: int = 5
    """``synthetic``: shape classes."""
    synth_train_per_class: int = 80
    """``synthetic``: training shapes per class."""
    synth_test_per_class: int = 40
    """``synthetic``: test shapes per class."""
    synth_noise: float = 0.02
    """``synthetic``: Gaussian noise on the sampled points."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Training augmentation."""


@dataclass
class PCModelConfig:
    """The point ViT."""

    size: Literal["tiny", "small", "base"] = "tiny"
    """DeiT width: tiny / small / base (widths 192 / 384 / 768, heads 3 / 6 / 12)."""
    depth: int = 4
    """Transformer blocks (DeiT has 12)."""
    tokenizer: Literal["point", "voxel"] = "point"
    """Tokens from set abstraction of point groups, or from voxel patches."""
    n_centres: list[int] = field(default_factory=lambda: [128, 64])
    """``point`` tokenizer: set-abstraction centres per stage."""
    k: int = 16
    """``point`` tokenizer: neighbours per group."""
    voxel_resolution: int = 32
    """``voxel`` tokenizer: grid resolution."""
    voxel_patch: int = 4
    """``voxel`` tokenizer: patch side (cells)."""
    pretrained: str = ""
    """Local DeiT ``.pth`` (``model`` entry) to initialise the blocks from."""


@dataclass
class DistillConfig:
    """Retention of a 2D teacher's knowledge while training on points (off unless ``weight`` > 0)."""

    weight: float = 0.0
    """Weight of the retention loss (0: off)."""
    teacher: str = ""
    """Local DeiT ``.pth`` of the frozen 2D teacher."""
    images: str = ""
    """Folder of local images (``.png`` / ``.jpg``) the teacher and the model are compared on."""
    image_size: int = 224
    """Side the images are resized to."""
    batch_size: int = 4
    """Images per step."""
    temperature: float = 2.0
    """Softmax temperature of the distillation (KL scaled by T^2)."""


@dataclass
class PCTrainConfig:
    """``neural3d pointcloud train``: classification or part segmentation of point clouds."""

    task: Literal["cls", "seg"] = "cls"
    """Shape classification or per-point part segmentation."""
    data: PCDataConfig = field(default_factory=PCDataConfig)
    """The dataset."""
    model: PCModelConfig = field(default_factory=PCModelConfig)
    """The model."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """2D-teacher retention loss."""
    steps: PositiveInt = 300
    """Optimisation steps."""
    batch_size: PositiveInt = 32
    """Shapes per step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    lr_final: float = 1e-5
    """Learning rate at the last step (cosine decay after the warm-up)."""
    warmup_steps: NonNegativeInt = 20
    """Linear learning-rate warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy."""
    eval_every: NonNegativeInt = 100
    """Steps between test-set evaluations (0: only at the end)."""
    checkpoint_every: NonNegativeInt = 100
    """Steps between checkpoints."""
    log_every: PositiveInt = 10
    """Steps between log lines."""
    max_seconds: NonNegativeFloat = 0.0
    """Stop after this many seconds of training (0: no limit)."""
    eval_batch_size: PositiveInt = 64
    """Shapes per evaluation batch."""
    output_dir: str = "runs"
    """Folder holding run directories."""
    experiment: str = ""
    """Run directory name (default: ``pointcloud-<task>-<data.kind>``)."""
    seed: int = 0
    """Seed of the initialisation, the data and the batches."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    progress: bool = True
    """Show a progress bar."""

    @classmethod
    def check(cls, cfg: Any, source: str = "config") -> None:
        """Checks that involve several keys (called by :func:`neural3d.config.build`)."""
        if cfg.data.kind != "synthetic" and not cfg.data.path:
            raise ConfigError(f"{source}: data.path is required for data.kind={cfg.data.kind}")
        if cfg.task == "seg" and cfg.data.kind == "modelnet40":
            raise ConfigError(f"{source}: task=seg needs part labels (data.kind synthetic or shapenetpart)")
        if cfg.distill.weight > 0 and not (cfg.distill.teacher and cfg.distill.images):
            raise ConfigError(f"{source}: distill.weight > 0 needs distill.teacher (.pth) and distill.images (folder)")


def build_pc_config(user: Any = None, overrides: Sequence[str] = (), source: str = "config") -> DictConfig:
    """:func:`neural3d.config.build` of a :class:`PCTrainConfig` (a mapping / DictConfig and overrides)."""
    return build(PCTrainConfig, user, overrides, source)


def load_pc_config(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """:func:`neural3d.config.load` of a :class:`PCTrainConfig` YAML file."""
    return load(PCTrainConfig, path, overrides)
