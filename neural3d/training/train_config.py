"""The scene-training config schema (``neural3d train``): :class:`TrainConfig` and its sections.

Dataclasses only, every field documented by a string literal under it; :func:`neural3d.config.build_config`
builds and checks them (and the ``model`` section against the method's registered config dataclass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from neural3d.config_bounds import NonNegativeFloat, NonNegativeInt, Port, PositiveFloat, PositiveInt
from neural3d.training.augment_config import AugmentConfig, CorruptionConfig
from neural3d.training.sinnerf.config import SinNeRFConfig


@dataclass
class SynthConfig:
    """How to generate the scene when ``data.path`` does not exist (``enabled`` must be true)."""

    enabled: bool = False
    """Generate the scene into ``data.path`` when that folder does not exist."""
    layout: Literal["blender", "llff", "dtu"] = "blender"
    """Folder layout (and camera rig) of the generated scene: Blender (360°), LLFF (forward-facing) or DTU
    (IDR / NeuS ``cameras_sphere.npz``, ``n_train + n_val + n_test`` views on a DTU-like cap)."""
    seed: int = 0
    """Seed of the generated scene (shapes, textures, cameras)."""
    res: PositiveInt = 64
    """Image width and height (pixels)."""
    n_train: PositiveInt = 40
    """Training views."""
    n_val: NonNegativeInt = 8
    """Validation views."""
    n_test: NonNegativeInt = 8
    """Test views."""


@dataclass
class DataConfig:
    """The scene: where it is, its format, and how its rays are cast."""

    path: str = "data/demo"
    """Scene folder (or a marker file in it: ``transforms_*.json``, ``poses_bounds.npy``, ``cameras_sphere.npz``)."""
    format: Literal["auto", "blender", "llff", "transforms", "dtu"] = "auto"
    """Dataset format; ``auto`` detects it from the folder's files."""
    factor: PositiveInt = 1
    """Image downscale factor (LLFF: reads ``images_{factor}``)."""
    background: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """RGB colour RGBA images are composited on (and renderers add behind the scene)."""
    llffhold: NonNegativeInt = 8
    """LLFF: every ``llffhold``-th image is held out for testing (original NeRF split)."""
    dtu_split: Literal["auto", "pixelnerf", "llffhold", "all"] = "auto"
    """DTU: ``pixelnerf`` (the few-view protocol: train views 25, 22, 28, 40, 44, 48, 0, 8, 13, 25 test views),
    ``llffhold`` (every ``llffhold``-th view held out), ``all`` (no hold-out); ``auto``: pixelnerf from 49 views."""
    dtu_train_views: int = 9
    """DTU, pixelnerf split: training views, the first ``dtu_train_views`` of its list (3 = RegNeRF's 3-view)."""
    dtu_masks: bool = True
    """DTU: composite the images through ``mask/`` onto ``background`` (masks become alphas); false: raw images."""
    spherify: bool = False
    """LLFF: normalise 360° captures onto the unit sphere (original ``spherify_poses``)."""
    ndc: bool | None = None
    """Cast rays in NDC; None: forward-facing LLFF scenes use NDC unless ``spherify``."""
    near: float | None = None
    """Override the dataset's near plane (None: the dataset's)."""
    far: float | None = None
    """Override the dataset's far plane (None: the dataset's)."""
    pixel_center: float = 0.5
    """Offset of a pixel's ray within the pixel; 0.0 reproduces the original NeRF/GNT ray generation."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    """Generate a synthetic scene at ``path`` when it is missing."""
    allow_external_paths: bool = False
    """Read frame ``file_path`` entries of Blender / transforms.json scenes that lead outside the scene folder
    (``..``, absolute paths, symlinks out of it); by default such a scene is refused, naming the frame."""
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    """Corrupt the training images (salt-and-pepper, Gaussian noise; seeded) for robustness experiments."""
    n_train_views: NonNegativeInt = 0
    """Train on this many views of the train split, evenly spaced in its order (sparse-view training;
    evaluation splits unchanged); 0: all of them."""
    train_views: list[int] = field(default_factory=list)
    """Train on these positions of the train split (0-based); exclusive with ``n_train_views``."""


@dataclass
class OptimConfig:
    """Adam optimiser and learning-rate schedule."""

    optimizer: Literal["adam", "adamw"] = "adam"
    """``adam`` (weight decay added to the gradient) or ``adamw`` (decoupled weight decay)."""
    lr: float = 1e-2
    """Initial learning rate (after warm-up)."""
    lr_final: float = 1e-3
    """Learning rate reached at the last step (``exp`` and ``cosine`` schedules)."""
    schedule: Literal["exp", "cosine", "constant"] = "exp"
    """Learning-rate decay from ``lr`` to ``lr_final`` over the training steps."""
    warmup_steps: NonNegativeInt = 0
    """Linear learning-rate warm-up steps (0: none)."""
    eps: float = 1e-15
    """Adam epsilon."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    """Adam (beta1, beta2)."""
    weight_decay: NonNegativeFloat = 0.0
    """Weight decay, applied to network weights only (not to ``encoding`` / ``no_decay`` parameter groups)."""
    grad_clip: NonNegativeFloat = 0.0
    """Gradient-norm clipping threshold (0: off)."""


@dataclass
class TrainerConfig:
    """The training loop: length, batch, logging, checkpoints."""

    steps: PositiveInt = 2000
    """Optimisation steps."""
    batch_size: PositiveInt = 4096
    """Rays per step: the global batch; under torchrun each of N processes trains on ``batch_size / N``."""
    eval_every: NonNegativeInt = 0
    """Steps between periodic evaluations (0: only at the end)."""
    eval_images: NonNegativeInt = 2
    """Images rendered for each periodic evaluation."""
    checkpoint_every: NonNegativeInt = 500
    """Steps between checkpoints (the last step is always saved)."""
    log_every: PositiveInt = 50
    """Steps between log lines / metric rows."""
    max_seconds: NonNegativeFloat = 0.0
    """Stop after this many seconds of training (0: no limit)."""
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Autocast dtype on CUDA (``auto``: bf16); CPU always trains in float32."""
    progress: bool = True
    """Show a progress bar."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and learning-rate schedule."""
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"
    """torch.distributed backend under torchrun: ``auto`` = nccl when training on CUDA, gloo on CPU."""
    dist_timeout_s: PositiveFloat = 1800.0
    """Collective timeout under torchrun (seconds): a rank waiting longer on its peers fails instead of hanging."""
    nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN / infinite loss or gradient: ``stop`` training at once (exit 3, naming the step and the last finite
    checkpoint, which is kept) or ``skip`` the batch (no optimizer step; counted in ``train/nonfinite_skipped``)."""


@dataclass
class EvalConfig:
    """Evaluation after training (``neural3d eval``): split, chunking, LPIPS weights."""

    split: str = "test"
    """Dataset split evaluated."""
    chunk: PositiveInt = 8192
    """Rays per forward pass when rendering images."""
    lpips_backbone: str | None = None
    """Local path to torchvision VGG16/AlexNet weights (LPIPS needs it and ``lpips_linear``)."""
    lpips_linear: str | None = None
    """Local path to the lpips package's linear-layer weights."""
    lpips_net: Literal["vgg", "alex"] = "vgg"
    """LPIPS backbone network."""
    save_images: bool = True
    """Write the rendered images next to the metrics."""


@dataclass
class RenderConfig:
    """Rendering a camera path of a trained run (``neural3d render``)."""

    path: str = "auto"
    """Camera path: ``auto``, ``orbit``, ``spiral``, ``interp``, ``test`` or a ``camera_path.json`` file."""
    n_frames: PositiveInt = 60
    """Frames of a generated path."""
    fps: PositiveInt = 30
    """Frames per second of the video."""
    outputs: list[str] = field(default_factory=lambda: ["rgb", "depth"])
    """Rendered outputs, side by side (``rgb``, ``depth``, ``opacity``)."""
    scale: PositiveFloat = 1.0
    """Resolution scale relative to the dataset's images."""


@dataclass
class ViewerConfig:
    """Live browser viewer while training (``viewer.enabled=true``; needs the ``viewer`` extra)."""

    enabled: bool = False
    """Serve the live viewer while training."""
    host: str = "127.0.0.1"
    """Address served; loopback only by default (another address prints a warning)."""
    port: Port = 7007
    """TCP port."""
    update_every: PositiveInt = 25
    """Training steps between weight pushes to the viewer."""
    max_resolution: PositiveInt = 512
    """Longest side of still renders (pixels)."""
    target_fps: PositiveFloat = 8.0
    """Frame rate held while the camera moves."""
    keep_alive: bool = True
    """Keep serving after training ends, until Ctrl-C."""


@dataclass
class TrainConfig:
    """A scene-training run (``neural3d train CONFIG``)."""

    method: str = "ngp"
    """Registered method name (:func:`neural3d.methods.registry.available_methods`)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The scene."""
    model: Any = None
    """The method's model config, validated against the config dataclass registered for ``method``."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """The training loop."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Camera-path rendering settings."""
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    """Live viewer."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Aug-NeRF: adversarial perturbations of coordinates, features and raw outputs during training (off by default)."""
    sinnerf: SinNeRFConfig = field(default_factory=SinNeRFConfig)
    """SinNeRF: training from one reference view (RGB-D) with pseudo-labels on unseen views (off by default)."""
    output_dir: str = "runs"
    """Folder holding run directories."""
    experiment: str = ""
    """Run directory name (default: scene name + method)."""
    seed: int = 0
    """Seed of every random generator of the run."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
