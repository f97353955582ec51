"""The ``augment:`` section of a scene-training config: Aug-NeRF's worst-case perturbations at three levels.

Only dataclasses (the builder, :mod:`neural3d.config`, imports them); the strategy is
:mod:`neural3d.training.augment`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from neural3d.config_bounds import NonNegativeInt


@dataclass
class CoordsAugmentConfig:
    """Level 1: the sample coordinates (imprecise cameras): depths along the rays and the 3D points."""

    enabled: bool = False
    """Perturb the coordinates the field is queried at."""
    eps: float = 1.0
    """Radius of the l-inf balls, relative: a sample's depth moves by at most ``eps`` x half its ray's mean sample
    spacing (in ``t``); its point by at most ``eps`` x min(pixel footprint at its depth, half the spacing) per axis
    (world units; NDC scenes: footprint ``2 / max(W, H)``), as the official code's ``zval`` / ``pts``."""
    target: Literal["both", "depths", "points"] = "both"
    """Which coordinates: the depths ``t`` along the rays, the 3D points, or both (two perturbations)."""
    step_size: float | None = None
    """Sign-step length in units of ``eps`` (None: the section's ``augment.step_size``)."""


@dataclass
class FeaturesAugmentConfig:
    """Level 2: an intermediate feature of the field (NeRF: the trunk output; NGP: the density MLP's hidden layer)."""

    enabled: bool = False
    """Perturb the field's intermediate features."""
    eps: float = 0.01
    """Radius of the l-inf ball (absolute, in feature units)."""
    step_size: float | None = None
    """Sign-step length in units of ``eps`` (None: the section's ``augment.step_size``)."""


@dataclass
class OutputsAugmentConfig:
    """Level 3: the raw density and colour before their activations (before compositing)."""

    enabled: bool = False
    """Perturb the field's raw outputs."""
    eps: float = 0.1
    """Radius of the l-inf ball (absolute, in raw units: NeRF's pre-ReLU density and colour logits; NGP's log-density
    before ``trunc_exp`` and colour logits)."""
    channels: Literal["both", "density", "rgb"] = "both"
    """Which raw outputs are perturbed."""
    step_size: float | None = None
    """Sign-step length in units of ``eps`` (None: the section's ``augment.step_size``)."""


@dataclass
class AugmentConfig:
    """Aug-NeRF training (Chen et al., CVPR 2022): the loss ``(1 - weight) L_clean + weight L_adv``, ``L_adv`` on the
    same samples and the same field with worst-case perturbations found by projected sign-gradient ascent (PGD)
    from a random start in l-inf balls. On when any level is ``enabled``; the method must support the hooks
    (``nerf``, ``ngp``)."""

    coords: CoordsAugmentConfig = field(default_factory=CoordsAugmentConfig)
    """Coordinate perturbations (depths, points)."""
    features: FeaturesAugmentConfig = field(default_factory=FeaturesAugmentConfig)
    """Feature perturbations."""
    outputs: OutputsAugmentConfig = field(default_factory=OutputsAugmentConfig)
    """Pre-rendering output perturbations."""
    pgd_steps: NonNegativeInt = 1
    """Sign-gradient ascent steps after the random start (0: random perturbations only)."""
    step_size: float = 1.0
    """Length of a sign step, in units of each level's ``eps`` (the official code's default: alpha = eps)."""
    weight: float = 0.5
    """lambda: weight of the adversarial loss; the clean loss gets ``1 - weight``."""
    start: Literal["random", "zero"] = "random"
    """Start of the ascent: uniform in the ball (as the official code) or at zero."""


@dataclass
class CorruptionConfig:
    """Corruption of the training images (the robustness experiment of Aug-NeRF); other splits stay clean."""

    salt_pepper: float = 0.0
    """Fraction of the pixels of every training image set to black or white (half each; 0: off)."""
    gaussian_std: float = 0.0
    """Standard deviation of Gaussian noise added to the training images before clipping to [0, 1] (0: off)."""
    seed: int = 0
    """Seed of the corruption (the same seed gives the same corrupted images)."""
