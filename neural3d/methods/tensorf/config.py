"""Config of the ``tensorf`` method: the vector-matrix field, its resolution schedule and the density L1 weight.

Defaults are TensoRF's ``configs/lego.txt`` (apchenstu/TensoRF @ 6a1e23b) where it has a value: 16 / 48
components per mode, 27 appearance features, the feature / view-direction encodings of 2 frequencies, softplus
density with shift -10, distance scale 25, init scale 0.1, L1 weights 8e-5 then 4e-5. The grid learning rate is
``trainer.optim.lr`` (TensoRF: 0.02) and the network's ``network_lr_scale`` times it (0.05: TensoRF's 1e-3).

TensoRF's LLFF configs (``configs/flower.txt``) add what the remaining fields express: ReLU density
(``density_activation``), fewer components on the second and third modes, no encodings, no L1 and total-variation
losses on the density and appearance planes (``tv_weight_density`` / ``tv_weight_app``), decaying with the learning
rate (``tv_decay`` over ``tv_decay_steps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from neural3d.config import ConfigError, replace, variant_field
from neural3d.samplers.config import EVAL_SAMPLER_VARIANTS, SAMPLER_VARIANTS


@dataclass
class TensoRFModelConfig:
    """TensoRF (vector-matrix decomposition) with any of the library's samplers (occupancy marching by default)."""

    sampler: Any = variant_field(SAMPLER_VARIANTS, default="occupancy")
    """Training sampler (and rendering one unless ``eval_sampler`` says otherwise), a ``type``-keyed section
    (:mod:`neural3d.samplers.config`); ``occupancy`` marching skips empty space."""
    eval_sampler: Any = variant_field(EVAL_SAMPLER_VARIANTS, default="train")
    """Sampler used for rendering: ``{type: train}`` (the training sampler) or ``{type: importance, ...}``."""
    step_ratio: float = 0.5
    """Occupancy marching step as a fraction of the current voxel size (TensoRF's ``step_ratio``), kept in step with
    the upsamplings; 0: the sampler's own ``step_size``."""
    n_voxels_init: int = 64**3
    """Grid nodes at the start (TensoRF's ``N_voxel_init``), spread over the box in proportion to its sides."""
    n_voxels_final: int = 128**3
    """Grid nodes after the last upsampling (TensoRF's ``N_voxel_final``)."""
    upsample_steps: list[int] = field(default_factory=lambda: [200, 300, 400, 550, 700])
    """Steps at which the grids are resampled, the node counts growing log-linearly to ``n_voxels_final``."""
    shrink_step: int = 200
    """Step at which the box shrinks to the region of alpha above ``alpha_mask_thre`` (TensoRF's first alpha-mask
    update; 0: never). The L1 weight changes to ``l1_weight_rest`` there."""
    alpha_mask_thre: float = 1e-4
    """Alpha (over a step of ``step_ratio`` voxels; 0.5 when ``step_ratio`` is 0) above which a node counts as
    occupied when shrinking."""
    density_components: list[int] = field(default_factory=lambda: [16, 16, 16])
    """Density components per mode (planes x lines)."""
    app_components: list[int] = field(default_factory=lambda: [48, 48, 48])
    """Appearance components per mode."""
    app_dim: int = 27
    """Appearance features after the basis matrix."""
    density_activation: Literal["softplus", "relu"] = "softplus"
    """Density feature -> density (TensoRF's ``fea2denseAct``): ``softplus`` of the feature plus ``density_shift``
    (its Blender configs) or ``relu`` of the feature (its LLFF configs)."""
    density_shift: float = -10.0
    """Added to the density feature before the softplus (not used by ``relu``)."""
    distance_scale: float = 25.0
    """Factor on the density (TensoRF's factor on interval lengths)."""
    init_scale: float = 0.1
    """Standard deviation of the grids' initial values."""
    view_pe: int = 2
    """Frequencies of the view-direction encoding fed to the colour MLP."""
    feature_pe: int = 2
    """Frequencies of the appearance-feature encoding fed to the colour MLP."""
    hidden_dim: int = 128
    """Width of the colour MLP's two hidden layers."""
    app_weight_thre: float = 1e-4
    """Packed samples with compositing weight at most this get no colour evaluation (TensoRF's
    ``rayMarch_weight_thres``; 0: colour everywhere)."""
    l1_weight_initial: float = 8e-5
    """Weight of the L1 norm of the density planes and lines before ``shrink_step``."""
    l1_weight_rest: float = 4e-5
    """Weight of the density L1 norm from ``shrink_step`` on."""
    tv_weight_density: float = 0.0
    """Weight of the total variation of the density planes (TensoRF's ``TV_weight_density``; its LLFF configs: 1.0).
    The loss is the weight times 1e-2 times the sum over the three planes of TensoRF's ``TVLoss`` (lines are not
    regularised, as in the official ``TV_loss_density``)."""
    tv_weight_app: float = 0.0
    """Weight of the total variation of the appearance planes (TensoRF's ``TV_weight_app``; LLFF: 1.0), same form."""
    tv_decay: float = 0.1
    """Both TV weights are multiplied by ``tv_decay ** ((step + 1) / tv_decay_steps)`` (TensoRF multiplies them by its
    learning-rate factor every iteration: 0.1 over ``n_iters``)."""
    tv_decay_steps: int | None = None
    """Steps over which the TV weights fall by ``tv_decay``; None: ``trainer.steps``."""
    network_lr_scale: float = 0.05
    """Learning rate of the basis matrix and the MLP as a multiple of ``trainer.optim.lr``."""
    vm_backend: Literal["auto", "torch", "cpu"] = "auto"
    """How the planes and lines are read: ``cpu`` the fused C kernel (:mod:`neural3d.fields.backends.cpu_vm`; with
    its backward in training), ``torch`` the PyTorch path, ``auto`` the kernel for float32 CPU tensors when a C
    compiler builds it. Not ``torch``: the colour MLP's input encoding by a C kernel too when rendering."""
    opaque_far: bool | None = None
    """Make the last sample's interval 1e10 long (rays end opaque); None: on for NDC scenes."""

    @classmethod
    def check(cls, cfg, source: str) -> None:
        if cfg.n_voxels_init < 8 or cfg.n_voxels_final < cfg.n_voxels_init:
            raise ConfigError(
                f"{source}: model.n_voxels_final ({cfg.n_voxels_final}) must be >= model.n_voxels_init "
                f"({cfg.n_voxels_init}) >= 8"
            )
        if cfg.tv_weight_density < 0 or cfg.tv_weight_app < 0 or not 0 < cfg.tv_decay <= 1:
            raise ConfigError(
                f"{source}: model.tv_weight_density / tv_weight_app must be >= 0 and model.tv_decay in (0, 1], got "
                f"{cfg.tv_weight_density}, {cfg.tv_weight_app}, {cfg.tv_decay}"
            )
        steps = list(cfg.upsample_steps)
        if steps != sorted(set(steps)) or any(s <= 0 for s in steps):
            raise ConfigError(f"{source}: model.upsample_steps must be increasing positive steps, got {steps}")

    @classmethod
    def resolve(cls, model_cfg: Any, cfg: Any, source: str = "config") -> Any:
        """``model_cfg`` with ``tv_decay_steps`` taken from ``trainer.steps`` when unset."""
        if model_cfg.tv_decay_steps is None:
            return replace(model_cfg, {"tv_decay_steps": int(cfg.trainer.steps)}, source=source)
        if model_cfg.tv_decay_steps < 1:
            raise ConfigError(f"{source}: model.tv_decay_steps must be >= 1, got {model_cfg.tv_decay_steps}")
        return model_cfg
