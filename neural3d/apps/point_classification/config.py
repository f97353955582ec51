"""Structured configs of ``neural3d pointcloud train`` (OmegaConf over dataclasses; unknown keys are errors)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from neural3d.apps.point_classification.augment import AugmentConfig
from neural3d.config import ConfigError, _merge, load_yaml, parse_overrides

DATA_KINDS = ("synthetic", "modelnet40", "shapenetpart")


@dataclass
class PCDataConfig:
    kind: str = "synthetic"  # synthetic | modelnet40 | shapenetpart
    path: str = ""  # dataset root (modelnet40 / shapenetpart)
    n_points: int = 512
    use_normals: bool = False
    max_shapes: int = 0  # 0: all shapes of each split
    train_split: str = "train"
    test_split: str = "test"
    synth_classes: int = 5
    synth_train_per_class: int = 80
    synth_test_per_class: int = 40
    synth_noise: float = 0.02
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class PCModelConfig:
    size: str = "tiny"  # tiny | small | base (DeiT widths 192/384/768, heads 3/6/12)
    depth: int = 4  # transformer blocks (DeiT has 12)
    tokenizer: str = "point"  # point | voxel
    n_centres: list[int] = field(default_factory=lambda: [128, 64])  # set-abstraction centres per stage
    k: int = 16
    voxel_resolution: int = 32
    voxel_patch: int = 4
    pretrained: str = ""  # local DeiT .pth ('model' entry) to initialise the blocks from


@dataclass
class DistillConfig:
    weight: float = 0.0  # 0: off; else the retention loss weight
    teacher: str = ""  # local DeiT .pth of the frozen 2D teacher
    images: str = ""  # folder of local images (.png/.jpg)
    image_size: int = 224
    batch_size: int = 4
    temperature: float = 2.0


@dataclass
class PCTrainConfig:
    task: str = "cls"  # cls | seg
    data: PCDataConfig = field(default_factory=PCDataConfig)
    model: PCModelConfig = field(default_factory=PCModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    lr_final: float = 1e-5  # cosine decay after warm-up
    warmup_steps: int = 20
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    eval_every: int = 100  # 0: only at the end
    checkpoint_every: int = 100
    log_every: int = 10
    max_seconds: float = 0.0  # 0: no limit
    eval_batch_size: int = 64
    output_dir: str = "runs"
    experiment: str = ""  # default: pointcloud-<task>-<data.kind>
    seed: int = 0
    device: str = "auto"
    progress: bool = True


def build_pc_config(user: Any = None, overrides: Sequence[str] = (), source: str = "config") -> DictConfig:
    """Validate a point-cloud config (mapping / DictConfig) and ``key=value`` overrides."""
    cfg = _merge(
        PCTrainConfig(),
        [(source, OmegaConf.create(user or {})), ("overrides", parse_overrides(overrides))],
        PCTrainConfig,
    )
    checks = {
        "task": (cfg.task, ("cls", "seg")),
        "data.kind": (cfg.data.kind, DATA_KINDS),
        "model.size": (cfg.model.size, ("tiny", "small", "base")),
        "model.tokenizer": (cfg.model.tokenizer, ("point", "voxel")),
    }
    for key, (value, allowed) in checks.items():
        if value not in allowed:
            raise ConfigError(f"{source}: {key} must be one of {list(allowed)}, got {value!r}")
    if cfg.data.kind != "synthetic" and not cfg.data.path:
        raise ConfigError(f"{source}: data.path is required for data.kind={cfg.data.kind}")
    if cfg.task == "seg" and cfg.data.kind == "modelnet40":
        raise ConfigError(f"{source}: task=seg needs part labels (data.kind synthetic or shapenetpart)")
    if cfg.distill.weight > 0 and not (cfg.distill.teacher and cfg.distill.images):
        raise ConfigError(f"{source}: distill.weight > 0 needs distill.teacher (.pth) and distill.images (folder)")
    return cfg


def load_pc_config(path, overrides: Sequence[str] = ()) -> DictConfig:
    return build_pc_config(load_yaml(Path(path)), overrides, source=str(path))
