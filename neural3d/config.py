"""Typed configuration: dataclasses + OmegaConf YAML files + ``key=value`` overrides.

Why OmegaConf structured configs: the schema is the dataclasses below (typed, documented, with
defaults), YAML files in ``configs/`` only state what differs, and command-line overrides use the
same dotted keys. Unknown keys and wrong types are rejected with the list of valid keys. The
``model`` section is validated against the config dataclass registered for ``method``, so a new
method is one module (its config dataclass and model class) plus one YAML file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


@dataclass
class SynthConfig:
    """How to generate the scene when ``data.path`` does not exist (``enabled`` must be true)."""

    enabled: bool = False
    layout: str = "blender"  # blender | llff
    seed: int = 0
    res: int = 64
    n_train: int = 40
    n_val: int = 8
    n_test: int = 8


@dataclass
class DataConfig:
    path: str = "data/demo"
    format: str = "auto"  # auto | blender | llff | transforms
    factor: int = 1  # downscale factor (LLFF: reads images_{factor})
    background: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # RGBA images composited on it
    llffhold: int = 8
    spherify: bool = False
    ndc: bool | None = None  # None: LLFF forward-facing uses NDC unless spherify
    near: float | None = None  # override the dataset's near/far
    far: float | None = None
    pixel_center: float = 0.5  # 0.0 reproduces the original NeRF/GNT ray generation
    synth: SynthConfig = field(default_factory=SynthConfig)
    allow_external_paths: bool = False
    """Read frame ``file_path`` entries of Blender / transforms.json scenes that lead outside the scene folder
    (``..``, absolute paths, symlinks out of it); by default such a scene is refused, naming the frame."""


@dataclass
class OptimConfig:
    lr: float = 1e-2
    lr_final: float = 1e-3  # reached at the last step (exponential decay)
    schedule: str = "exp"  # exp | cosine | constant
    warmup_steps: int = 0
    eps: float = 1e-15
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0  # applied to network weights only (not encodings)
    grad_clip: float = 0.0  # 0: off


@dataclass
class TrainerConfig:
    steps: int = 2000
    batch_size: int = 4096  # rays per step
    eval_every: int = 0  # 0: only at the end
    eval_images: int = 2  # images rendered for periodic evaluation
    checkpoint_every: int = 500
    log_every: int = 50
    max_seconds: float = 0.0  # stop after this many seconds of training (0: no limit)
    mixed_precision: str = "auto"  # auto (bf16 on CUDA) | off | bf16 | fp16
    progress: bool = True
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class EvalConfig:
    split: str = "test"
    chunk: int = 8192  # rays per forward pass when rendering images
    lpips_backbone: str | None = None  # local path to torchvision VGG16/AlexNet weights
    lpips_linear: str | None = None  # local path to the lpips package's linear-layer weights
    lpips_net: str = "vgg"
    save_images: bool = True


@dataclass
class RenderConfig:
    path: str = "auto"  # auto | orbit | spiral | interp | test | <camera_path.json>
    n_frames: int = 60
    fps: int = 30
    outputs: list[str] = field(default_factory=lambda: ["rgb", "depth"])
    scale: float = 1.0  # resolution scale relative to the dataset's images


@dataclass
class ViewerConfig:
    """Live browser viewer while training (``viewer.enabled=true``; needs the ``viewer`` extra)."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback only; another address prints a warning
    port: int = 7007
    update_every: int = 25  # training steps between weight pushes to the viewer
    max_resolution: int = 512  # longest side of still renders (pixels)
    target_fps: float = 8.0  # frame rate held while the camera moves
    keep_alive: bool = True  # keep serving after training ends, until Ctrl-C


@dataclass
class TrainConfig:
    method: str = "ngp"
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # validated against the method's registered config dataclass
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    output_dir: str = "runs"
    experiment: str = ""  # run directory name (default: method + scene name)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N


def _valid_keys(schema) -> list[str]:
    return sorted(f.name for f in fields(schema)) if is_dataclass(schema) else []


def _explain(err: OmegaConfBaseException, source: str, schema, prefix: str = "") -> ConfigError:
    key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
    msg = str(err).splitlines()[0]
    node = schema
    for part in str(key).split(".")[:-1]:
        sub = {f.name: f for f in fields(node)}.get(part) if is_dataclass(node) else None
        if sub is None or not is_dataclass(sub.default_factory() if callable(sub.default_factory) else sub.default):
            break
        node = type(sub.default_factory()) if callable(sub.default_factory) else type(sub.default)
    valid = ", ".join(_valid_keys(node))
    return ConfigError(f"{source}: invalid config key or value '{prefix}{key}': {msg}. Valid keys here: {valid}")


def _merge(schema_obj, parts: Sequence[tuple[str, Any]], schema_cls, prefix: str = "") -> DictConfig:
    cfg = OmegaConf.structured(schema_obj)
    for source, part in parts:
        try:
            cfg = OmegaConf.merge(cfg, part)
        except OmegaConfBaseException as e:
            raise _explain(e, source, schema_cls, prefix) from None
    return cfg


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError and friends
        raise ConfigError(f"{path}: cannot parse YAML: {e}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    return cfg


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {', '.join(bad)}")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception as e:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {e}") from None


def build_config(
    yaml_cfg: DictConfig | dict | None = None, overrides: Sequence[str] = (), source: str = "config"
) -> tuple[DictConfig, Any]:
    """Validate a config against the schema and the method's model config.

    Returns:
        (full config as a DictConfig, the model config as a typed DictConfig of the method's dataclass).
    """
    from neural3d.methods.registry import get_method

    user = OmegaConf.create(yaml_cfg or {})
    ov = parse_overrides(overrides)
    model_parts = [(source, user.pop("model", None) or {}), ("overrides", ov.pop("model", None) or {})]
    cfg = _merge(TrainConfig(), [(source, user), ("overrides", ov)], TrainConfig)
    method = get_method(cfg.method)
    model_cfg = _merge(method.config_class(), model_parts, method.config_class, prefix="model.")
    cfg.model = model_cfg
    return cfg, model_cfg


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> tuple[DictConfig, Any]:
    """Load a YAML config file with ``key=value`` overrides (see :func:`build_config`)."""
    return build_config(load_yaml(path), overrides, source=str(path))


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)
