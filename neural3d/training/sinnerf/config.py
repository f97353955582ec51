"""The ``sinnerf:`` section of a scene-training config: single-view training (SinNeRF, Xu et al., ECCV 2022).

Only dataclasses (the builder, :mod:`neural3d.config`, imports them); the strategy is
:mod:`neural3d.training.sinnerf.strategy`. Defaults follow the official code's README commands (lego, stage 1:
``--depth_weight 8 --vit_weight 10 --dis_weight 0 --patch_size 64 --sW 6``; stage 2: ``--dis_weight 0.01
--vit_weight 0 --sW 4``), with the patch made small for CPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class DepthSourceConfig:
    """Where the reference view's depth comes from (z-depth, the ``t`` of our unnormalised rays; 0: unknown)."""

    source: Literal["dataset", "file", "oracle"] = "dataset"
    """``dataset``: the scene's own depth (``SceneData.depths``, or ``depth/.../<image>.npy`` of a generated scene);
    ``file``: the ``.npy`` at ``path``; ``oracle``: rendered by the trained run at ``path`` (a model trained on
    OTHER views of the scene: an oracle setting, not single-view, stated as such in results)."""
    path: str | None = None
    """``file``: an [H, W] (or [H, W, 1]) ``.npy`` z-depth map of the reference image; ``oracle``: a run directory."""
    min_opacity: float = 0.5
    """``oracle``: pixels the run renders with less opacity get depth 0 (background: no warping, no depth loss)."""


@dataclass
class UnseenPoseConfig:
    """Unseen poses sampled around the reference camera (official: ``rotate_3d`` with Normal(0, angle / 2) degrees)."""

    angle_std: float = 10.0
    """Standard deviation (degrees) of each of the three rotation angles (about world x, y, z through the pivot)."""
    max_angle: float = 30.0
    """Each angle is clipped to +- this (degrees)."""
    translation_std: float = 0.0
    """Standard deviation of a random translation of the camera centre, in units of the pivot distance."""
    pivot: Literal["world_origin", "reference_depth"] = "reference_depth"
    """Centre of the rotations: the world origin (the official Blender code; object-centred scenes) or the point
    on the reference's optical axis at the median reference depth (any scene)."""
    warmup_steps: int = 0
    """Progressive sampling: the angle and translation spreads grow linearly from 0 to full over these steps."""


@dataclass
class PatchConfig:
    """Patches of unseen views rendered per step (official: 64 x 64, strides 6 then 4)."""

    size: int = 16
    """Side of a square patch, in rays (a power of two >= 8 when the discriminator is on)."""
    stride: int = 2
    """Pixel step between a patch's rays (a patch spans ``(size - 1) stride + 1`` pixels)."""
    min_valid: float = 0.25
    """Fraction of the patch that must hold warped (non-hole) pixels; up to 8 positions are tried."""


@dataclass
class GeometryConfig:
    """Geometry pseudo-labels: the reference depth and the reference RGB-D warped into the unseen patch."""

    reference_depth: float = 8.0
    """Weight of the smooth-L1 depth loss on the reference rays (official ``depth_weight``; 0: off)."""
    warp_depth: float = 8.0
    """Weight of the smooth-L1 loss between the rendered and warped depth on non-hole patch pixels (official
    ``proj_weight x depth_weight``)."""
    warp_rgb: float = 0.0
    """Weight of the MSE between the rendered and warped colours on non-hole patch pixels (the official code
    builds the warped colour patch but only shows it; 0 follows it)."""
    smoothness: float = 0.0
    """Weight of the edge-aware depth smoothness on the unseen patch (kornia's ``inverse_depth_smoothness_loss``
    applied to depth, guided by the rendered colour, as the official code; its commands use 0)."""
    radius: int = 1
    """Occlusion footprint of the forward warp's z-buffer, in pixels (:func:`neural3d.core.warp.forward_warp`)."""
    depth_tolerance: float = 0.05
    """Relative depth margin of that occlusion test."""


@dataclass
class SemanticConfig:
    """Semantic pseudo-labels: DINO ViT-S/16 [CLS] of a rendered unseen patch held to the reference's."""

    weight: float = 10.0
    """Weight of the MSE between the [CLS] features (official ``vit_weight``); needs ``weights``."""
    weights: str | None = None
    """Local path of ``dino_deitsmall16_pretrain.pth`` (never downloaded). None: the term is off (one warning)."""
    input_size: int = 224
    """Patches are resized (nearest, as the official code) to this square size before the ViT (multiple of 16)."""
    refresh_prob: float = 0.05
    """Probability per step of recomputing the reference feature from a new random reference patch (official)."""


@dataclass
class TextureConfig:
    """Local-texture prior: a patch discriminator (real: reference patches; fake: rendered unseen patches), hinge."""

    weight: float = 0.01
    """Weight of the generator's hinge loss ``-mean D(fake)`` (official ``dis_weight``, stage 2); 0: off."""
    lr_scale: float = 0.2
    """The discriminator's Adam learning rate is ``trainer.optim.lr`` times this (official ``rate=0.2``)."""
    channels: int = 64
    """Base width ``ndf`` of the discriminator (official 64)."""
    augment_prob: float = 0.25
    """Probability of DiffAugment (colour, cutout) on each discriminator input batch (official: 0.5 x 0.5)."""


@dataclass
class ScheduleConfig:
    """The two stages of the official training (stage 2 fine-tunes stage 1 with the discriminator and no ViT)."""

    stage2_step: int = -1
    """First step of stage 2 (-1: one stage, every enabled term throughout)."""
    stage1_texture: bool = False
    """Stage 1 trains the discriminator term too (official: off)."""
    stage2_semantic: bool = False
    """Stage 2 keeps the semantic term (official: off)."""
    stage2_stride: int = 0
    """Patch stride in stage 2 (0: ``patch.stride``; official 4 after 6)."""


@dataclass
class SinNeRFConfig:
    """Single-view training: one reference view (``reference_view`` of the train split) and its depth; every step
    renders the reference rays of ``trainer.batch_size`` (colour, depth) and one patch of a sampled unseen pose
    (geometry, semantic and texture pseudo-labels). Held-out views evaluate it. ``nerf`` and ``ngp``."""

    enabled: bool = False
    """Train from the reference view alone with SinNeRF's pseudo-labels."""
    reference_view: int = 0
    """Index of the reference image within the train split."""
    depth: DepthSourceConfig = field(default_factory=DepthSourceConfig)
    """The reference depth."""
    poses: UnseenPoseConfig = field(default_factory=UnseenPoseConfig)
    """Unseen-pose sampling."""
    patch: PatchConfig = field(default_factory=PatchConfig)
    """Unseen patches."""
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    """Geometry pseudo-labels."""
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    """Semantic pseudo-labels."""
    texture: TextureConfig = field(default_factory=TextureConfig)
    """Texture prior (discriminator)."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Stages."""
    seed: int = 0
    """Seed of the pose and patch draws (its generator is checkpointed)."""
