"""Structured configs of the NID workflows (``configs/nid_*.yaml``), validated like :mod:`neural3d.config`.

``neural3d nid train-dict CONFIG`` reads :class:`NIDTrainConfig`; ``neural3d nid fit CONFIG`` reads
:class:`NIDFitConfig`. YAML files state what differs from the defaults; ``key=value`` overrides use
the same dotted keys. An unknown key or a wrong type raises :class:`~neural3d.config.ConfigError`
naming the key and listing the valid keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from neural3d.config import ConfigError, load_yaml, parse_overrides


@dataclass
class ExpertConfig:
    num_experts: int = 128
    encoding: str = "fourier"  # fourier | pe | identity
    n_freqs: int = 6  # pe
    n_fourier_features: int = 256  # fourier
    fourier_scale: float = 4.0  # fourier: std of B for coordinates in [-1, 1]
    hidden_dim: int = 128
    n_layers: int = 3
    activation: str = "relu"  # relu | sine (SIREN)
    w0: float = 30.0


@dataclass
class GateConfig:
    type: str = "conv"  # conv (amortised encoder) | codebook (auto-decoder)
    topk: int = 16
    noisy: bool = False
    hidden: int = 64
    n_layers: int = 2


@dataclass
class LossConfig:
    recon: str = "mse"  # mse | l1
    cv: float = 0.01  # cv^2 load + importance balancing
    l1: float = 0.01  # L1 sparsity during the dense warm-up
    l1_exp: float = 1.0  # >1: exponentially decaying L1 weights (official option)


@dataclass
class CollectionConfig:
    folders: list[str] = field(default_factory=list)  # image folders (searched recursively)
    max_images_per_folder: int = 0  # 0: all
    synth_scenes: int = 0  # generated scenes rendered into the collection
    synth_seed: int = 0
    synth_dir: str = ""  # default: <run dir>/synth
    image_size: int = 64
    patch_size: int = 16
    patch_stride: int = 0  # stride between training patches (0: patch_size, disjoint; smaller: overlapping)
    holdout: int = 2  # last images kept out of training (evaluation)


@dataclass
class NIDTrainConfig:
    data: CollectionConfig = field(default_factory=CollectionConfig)
    experts: ExpertConfig = field(default_factory=ExpertConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 2000
    warmup_steps: int = 200  # dense gating with L1 before switching to top-k
    batch_size: int = 64  # patches per step
    points_per_step: int = 0  # pixels per patch per step (0: all)
    lr: float = 1e-3
    lr_final: float = 1e-4
    gate_lr_scale: float = 1.0  # learning-rate multiplier of the gate (codebook codes learn slowly otherwise)
    log_every: int = 100
    checkpoint_every: int = 500
    output_dir: str = "runs/nid"
    seed: int = 0
    device: str = "auto"


@dataclass
class NIDFitConfig:
    dictionary: str = ""  # run dir or checkpoint of `nid train-dict`
    target_size: int = 0  # 0: the dictionary's image size
    method: str = "lstsq"  # lstsq | gradient
    init: str = "auto"  # auto | encoder | ridge (support / start codes)
    loss: str = "mse"  # mse | l1 (robust, inpainting)
    k: int = 0  # experts per patch with support=topk (0: the dictionary's top-k)
    support: str = "all"  # all (every expert, MAP under the prior) | topk (k experts per patch)
    prior: str = "gaussian"  # gaussian (MAP under the training codes' Gaussian) | none (ridge, lam / lam_dense)
    prior_weight: float = 0.0  # weight of the code prior (0: chosen by validation on held-out observed pixels)
    stride: int = 0  # patch stride of the fit (0: patch_size // 4, overlapping patches averaged; patch_size: disjoint)
    steps: int = 300  # gradient
    lr: float = 1e-2
    lam: float = 1e-4  # ridge on the support coefficients
    lam_dense: float = 1e-2  # ridge of the dense solve choosing the support
    finetune_steps: int = 0  # then fine-tune a copy of the bank + the codes for up to this many Adam steps (0: off)
    finetune_select: str = "validation"  # validation (length chosen on held-out observed pixels) | fixed
    finetune_lr: float = 1.0e-3  # bank learning rate of the fine-tune (codes: 10x)
    observed_fraction: float = 1.0  # fit from a random subset of pixels
    corruption: str = "none"  # none | stripes | saltpepper
    corruption_amount: float = 0.1
    fit_bias: bool = True
    seed: int = 0
    output: str = "runs/nid-fit"
    device: str = "auto"


def _valid(schema: Any, key: str) -> str:
    node = schema
    for part in key.split(".")[:-1]:
        sub = {f.name: f for f in fields(node)}.get(part) if is_dataclass(node) else None
        if sub is None or sub.default_factory is None or not is_dataclass(sub.default_factory()):
            break
        node = type(sub.default_factory())
    return ", ".join(sorted(f.name for f in fields(node))) if is_dataclass(node) else ""


def build(schema_cls: type, yaml_cfg: Any = None, overrides: Sequence[str] = (), source: str = "config"):
    """Validate ``yaml_cfg`` (+ overrides) against the dataclass ``schema_cls``; returns a typed DictConfig."""
    cfg = OmegaConf.structured(schema_cls())
    for src, part in ((source, OmegaConf.create(yaml_cfg or {})), ("overrides", parse_overrides(overrides))):
        try:
            cfg = OmegaConf.merge(cfg, part)
        except OmegaConfBaseException as e:
            key = str(getattr(e, "full_key", None) or getattr(e, "key", None) or "?")
            raise ConfigError(
                f"{src}: invalid config key or value '{key}': {str(e).splitlines()[0]}. "
                f"Valid keys here: {_valid(schema_cls, key)}"
            ) from None
    return cfg


def load(schema_cls: type, path, overrides: Sequence[str] = ()):
    """Load a YAML file against ``schema_cls`` (:class:`NIDTrainConfig` or :class:`NIDFitConfig`)."""
    cfg = build(schema_cls, load_yaml(Path(path)), overrides, source=str(path))
    check_choices(cfg, TRAIN_CHOICES if schema_cls is NIDTrainConfig else FIT_CHOICES, str(path))
    return cfg


TRAIN_CHOICES = {
    "experts.encoding": ("fourier", "pe", "identity"),
    "experts.activation": ("relu", "sine"),
    "gate.type": ("conv", "codebook"),
    "loss.recon": ("mse", "l1"),
}
FIT_CHOICES = {
    "method": ("lstsq", "gradient"),
    "init": ("auto", "encoder", "ridge"),
    "loss": ("mse", "l1"),
    "corruption": ("none", "stripes", "saltpepper"),
    "support": ("all", "topk"),
    "prior": ("gaussian", "none"),
    "finetune_select": ("validation", "fixed"),
}


def check_choices(cfg, choices: dict, source: str = "config") -> None:
    """Raise ConfigError naming the key whose value is outside its allowed set (``TRAIN_CHOICES`` / ``FIT_CHOICES``)."""
    for key, allowed in choices.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{source}: '{key}' must be one of {list(allowed)}, got {value!r}")
