"""Structured configs of the NID workflows (``configs/nid_*.yaml``), built by :func:`neural3d.config.build`.

``neural3d nid train-dict CONFIG`` reads :class:`NIDTrainConfig`; ``neural3d nid fit CONFIG`` reads
:class:`NIDFitConfig`. YAML files state what differs from the defaults; ``key=value`` overrides use
the same dotted keys. An unknown key, a wrong type or an option outside its ``Literal`` values raises
:class:`~neural3d.config.ConfigError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from neural3d.config_bounds import NonNegativeInt, PositiveInt


@dataclass
class ExpertConfig:
    """The expert bank: ``num_experts`` small coordinate MLPs shared by every signal."""

    num_experts: int = 128
    """Experts in the bank."""
    encoding: Literal["fourier", "pe", "identity"] = "fourier"
    """Coordinate encoding: random Fourier features, NeRF positional encoding, or none."""
    n_freqs: int = 6
    """Frequencies of the ``pe`` encoding."""
    n_fourier_features: int = 256
    """Features of the ``fourier`` encoding."""
    fourier_scale: float = 4.0
    """``fourier``: standard deviation of the projection B, for coordinates in [-1, 1]."""
    hidden_dim: int = 128
    """Hidden width of each expert."""
    n_layers: int = 3
    """Layers of each expert."""
    activation: Literal["relu", "sine"] = "relu"
    """Hidden activation: ReLU, or sine (SIREN)."""
    w0: float = 30.0
    """SIREN frequency factor of the first layer (``activation: sine``)."""


@dataclass
class GateConfig:
    """The gate choosing each signal's experts and their weights."""

    type: Literal["conv", "codebook"] = "conv"
    """``conv``: an amortised encoder of the patch; ``codebook``: one learned code per signal (auto-decoder)."""
    topk: int = 16
    """Experts mixed per signal after the warm-up."""
    noisy: bool = False
    """Noisy top-k gating (Shazeer et al.) in training."""
    hidden: int = 64
    """Hidden width of the gate network."""
    n_layers: int = 2
    """Layers of the gate network."""


@dataclass
class LossConfig:
    """Training loss: reconstruction plus expert balancing and sparsity."""

    recon: Literal["mse", "l1"] = "mse"
    """Reconstruction loss."""
    cv: float = 0.01
    """Weight of the squared coefficient-of-variation balancing of expert load and importance."""
    l1: float = 0.01
    """Weight of the L1 sparsity of the gate logits during the dense warm-up."""
    l1_exp: float = 1.0
    """> 1: exponentially decaying L1 weights over the experts (official option)."""


@dataclass
class CollectionConfig:
    """The image collection whose patches train the dictionary."""

    folders: list[str] = field(default_factory=list)
    """Image folders (searched recursively)."""
    max_images_per_folder: int = 0
    """Images taken from each folder (0: all)."""
    synth_scenes: int = 0
    """Generated scenes rendered into the collection."""
    synth_seed: int = 0
    """Seed of the generated scenes."""
    synth_dir: str = ""
    """Where the generated scenes are written (default: ``<run dir>/synth``)."""
    image_size: int = 64
    """Images are resized to this width and height."""
    patch_size: int = 16
    """Side of the square training patches (pixels)."""
    patch_stride: int = 0
    """Stride between training patches (0: ``patch_size``, disjoint; smaller: overlapping)."""
    holdout: int = 2
    """Last images kept out of training (evaluation)."""


@dataclass
class NIDTrainConfig:
    """``neural3d nid train-dict``: a dictionary trained on image patches."""

    data: CollectionConfig = field(default_factory=CollectionConfig)
    """The training images."""
    experts: ExpertConfig = field(default_factory=ExpertConfig)
    """The expert bank."""
    gate: GateConfig = field(default_factory=GateConfig)
    """The gate."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The training loss."""
    steps: PositiveInt = 2000
    """Optimisation steps."""
    warmup_steps: NonNegativeInt = 200
    """Dense gating with L1 sparsity before switching to top-k."""
    batch_size: PositiveInt = 64
    """Patches per step."""
    points_per_step: int = 0
    """Pixels of each patch per step (0: all)."""
    lr: float = 1e-3
    """Initial learning rate."""
    lr_final: float = 1e-4
    """Learning rate at the last step (exponential decay)."""
    gate_lr_scale: float = 1.0
    """Learning-rate multiplier of the gate (codebook codes learn slowly otherwise)."""
    log_every: PositiveInt = 100
    """Steps between log lines."""
    checkpoint_every: NonNegativeInt = 500
    """Steps between checkpoints."""
    output_dir: str = "runs/nid"
    """Run directory."""
    seed: int = 0
    """Seed of the initialisation and the batches."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""


@dataclass
class NIDFitConfig:
    """``neural3d nid fit``: an unseen image fitted with a frozen dictionary."""

    dictionary: str = ""
    """Run directory or checkpoint of ``neural3d nid train-dict``."""
    target_size: int = 0
    """The target is resized to this width and height (0: the dictionary's image size)."""
    method: Literal["lstsq", "gradient"] = "lstsq"
    """Solve the coefficients in closed form (least squares) or by gradient descent."""
    init: Literal["auto", "encoder", "ridge"] = "auto"
    """Support and start codes: from the gate's encoder, from a dense ridge solve, or ``auto``."""
    loss: Literal["mse", "l1"] = "mse"
    """Fitting loss (``l1``: robust, for inpainting; used whenever ``corruption`` is set)."""
    k: int = 0
    """Experts per patch with ``support: topk`` (0: the dictionary's top-k)."""
    support: Literal["all", "topk"] = "all"
    """``all``: every expert (MAP under the prior); ``topk``: ``k`` experts per patch."""
    prior: Literal["gaussian", "none"] = "gaussian"
    """Code prior: the training codes' Gaussian (MAP), or none (ridge with ``lam`` / ``lam_dense``)."""
    prior_weight: float = 0.0
    """Weight of the code prior (0: chosen by validation on held-out observed pixels)."""
    stride: int = 0
    """Patch stride of the fit (0: patch_size // 4, overlapping patches averaged; patch_size: disjoint)."""
    steps: PositiveInt = 300
    """Steps of ``method: gradient``."""
    lr: float = 1e-2
    """Learning rate of ``method: gradient``."""
    lam: float = 1e-4
    """Ridge weight on the support coefficients."""
    lam_dense: float = 1e-2
    """Ridge weight of the dense solve choosing the support."""
    finetune_steps: NonNegativeInt = 0
    """Then fine-tune a copy of the bank and the codes for up to this many Adam steps (0: off)."""
    finetune_select: Literal["validation", "fixed"] = "validation"
    """Fine-tune length chosen on held-out observed pixels, or ``finetune_steps`` exactly."""
    finetune_lr: float = 1.0e-3
    """Bank learning rate of the fine-tune (codes: 10x)."""
    observed_fraction: float = 1.0
    """Fit from a random subset of this fraction of the pixels."""
    corruption: Literal["none", "stripes", "saltpepper"] = "none"
    """Corruption applied to the target before fitting (the clean target scores the result)."""
    corruption_amount: float = 0.1
    """``stripes``: fraction of the rows covered by black bars; ``saltpepper``: fraction of the pixels set to 0 or 1."""
    fit_bias: bool = True
    """Fit a per-patch colour bias (one per channel) with the expert coefficients."""
    seed: int = 0
    """Seed of the pixel subset and the corruption."""
    output: str = "runs/nid-fit"
    """Output folder (``observed.png``, ``fit.png``, ``metrics.json``)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
