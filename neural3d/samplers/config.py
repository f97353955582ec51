"""Typed config sections of the samplers (``type``-keyed: a method picks one with :func:`sampler_field`).

YAML::

    model:
      sampler: {type: proposal, n_samples: 32, round_samples: [64, 32], max_resolutions: [128, 256]}
      eval_sampler: {type: importance, n_coarse: 64, n_samples: 64}

Each section is a dataclass whose ``type`` names it; :func:`build_sampler` turns one into its
:class:`~neural3d.samplers.base.Sampler`. The union is validated by :func:`neural3d.config.variant_field`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from neural3d.samplers.base import Sampler


@dataclass
class UniformSamplerConfig:
    """``uniform``: ``n_samples`` stratified intervals between near and far, all evaluated by the field."""

    type: str = "uniform"
    n_samples: int = 32  # intervals per ray
    lindisp: bool = False  # linear in inverse depth


@dataclass
class ImportanceSamplerConfig:
    """``importance``: a gradient-free pass of the field on ``n_coarse`` stratified intervals places ``n_samples``."""

    type: str = "importance"
    n_coarse: int = 128  # stratified intervals scored by the field's density (no gradient)
    n_samples: int = 32  # intervals drawn from their weights and evaluated with gradients
    include_coarse: bool = False  # also evaluate the coarse edges (n_coarse + n_samples + 1 intervals)
    lindisp: bool = False


@dataclass
class GridSamplerConfig:
    """``grid``: a cached density grid (refreshed from the field) spreads ``n_samples`` over occupied bins."""

    type: str = "grid"
    n_coarse: int = 128  # grid lookups per ray
    n_samples: int = 32  # intervals drawn over the occupied bins
    n_uniform: int = 8  # stratified intervals merged in (the field runs on n_samples + n_uniform + 1)
    lindisp: bool = False
    resolution: int = 64  # grid cells per axis
    update_every: int = 16  # training steps between refreshes
    decay: float = 0.9  # per update; instant-ngp's 0.95 clears empty space too slowly for short runs
    warmup_updates: int = 16  # first updates evaluate and replace every cell
    threshold: float = 0.01  # rays meeting no grid density above this skip the field (background)
    weighting: str = "occupancy"  # occupancy (even over occupied bins) | density (the grid's compositing weights)


@dataclass
class OccupancySamplerConfig:
    """``occupancy``: instant-ngp / nerfacc marching through a cascaded binary grid (packed samples)."""

    type: str = "occupancy"
    resolution: int = 64  # grid cells per axis per level
    levels: int = 1  # cascade levels (level i covers the box scaled by 2**i)
    update_every: int = 16  # training steps between refreshes
    decay: float = 0.9
    warmup_updates: int = 16
    threshold: float = 0.01  # occupancy = density * step_size above min(this, mean) marks a cell
    step_size: float = 0.0  # marching step in world units (0: box diagonal / 512)
    cone_angle: float = 0.0  # step growth with distance (instant-ngp: 1/256 for unbounded scenes)
    early_stop_eps: float = 1e-4  # drop samples where transmittance < this (0: off)
    alpha_thre: float = 0.0  # drop samples with alpha < this (0: off)
    target_samples: int = 1 << 16  # training: cap marched samples per step by keeping a prefix of the rays (0: off)
    backend: str = "auto"  # auto | torch | nerfacc


@dataclass
class ProposalSamplerConfig:
    """``proposal``: mip-NeRF 360 proposal networks (small hash grids) resample each ray in rounds."""

    type: str = "proposal"
    n_samples: int = 32  # intervals per ray for the field
    round_samples: list[int] = field(default_factory=lambda: [64, 32])  # intervals per proposal round
    max_resolutions: list[int] = field(default_factory=lambda: [128, 256])  # one per round
    n_levels: int = 5
    log2_hashmap_size: int = 17
    hidden_dim: int = 16
    spacing: str = "uniform"  # uniform | lindisp | contracted (unbounded)
    spacing_pivot: float = 1.0  # contracted: t where spacing turns from linear to disparity
    histogram_padding: float = 0.01
    anneal_steps: int = 1000  # weights ** anneal, anneal 0 -> 1 over these steps
    anneal_slope: float = 10.0
    update_every: int = 5  # after the warm-up, proposals get gradients every k-th step
    update_warmup: int = 5000
    interlevel_loss_mult: float = 1.0


@dataclass
class TrainingSamplerConfig:
    """``train`` (for ``eval_sampler``): render with the training sampler."""

    type: str = "train"


SAMPLER_VARIANTS: dict[str, Any] = {
    "grid": GridSamplerConfig(),
    "importance": ImportanceSamplerConfig(),
    "uniform": UniformSamplerConfig(),
    "occupancy": OccupancySamplerConfig(),
    "proposal": ProposalSamplerConfig(),
}
EVAL_SAMPLER_VARIANTS: dict[str, Any] = {
    "train": TrainingSamplerConfig(),
    "importance": ImportanceSamplerConfig(n_coarse=64, n_samples=64, include_coarse=True),
}


def build_sampler(cfg: Any, *, aabb: Tensor, contraction: str = "aabb", hashgrid_backend: str = "auto") -> Sampler:
    """The sampler of a config section (``cfg.type``), over the scene box ``aabb`` [2, 3] (ray coordinates).

    ``contraction`` and ``hashgrid_backend`` are the field's (the grid sampler lives in the field's unit cube;
    proposal networks use the same contraction and hash-grid backend).
    """
    builder = _BUILDERS.get(cfg.type)
    if builder is None:
        raise ValueError(f"unknown sampler type {cfg.type!r}; one of {sorted(_BUILDERS)}")
    return builder(cfg, aabb=aabb, contraction=contraction, backend=hashgrid_backend)


def _uniform(cfg: UniformSamplerConfig, **_) -> Sampler:
    from neural3d.samplers.uniform import UniformSampler

    return UniformSampler(n_samples=cfg.n_samples, lindisp=cfg.lindisp)


def _importance(cfg: ImportanceSamplerConfig, **_) -> Sampler:
    from neural3d.samplers.pdf import ImportanceSampler

    return ImportanceSampler(
        n_coarse=cfg.n_coarse, n_samples=cfg.n_samples, include_coarse=cfg.include_coarse, lindisp=cfg.lindisp
    )


def _grid(cfg: GridSamplerConfig, *, aabb: Tensor, contraction: str, **_) -> Sampler:
    from neural3d.samplers.density_grid import GridSampler

    return GridSampler(
        aabb=aabb,
        contraction=contraction,
        resolution=cfg.resolution,
        update_every=cfg.update_every,
        decay=cfg.decay,
        warmup_updates=cfg.warmup_updates,
        n_coarse=cfg.n_coarse,
        n_samples=cfg.n_samples,
        n_uniform=cfg.n_uniform,
        threshold=cfg.threshold,
        lindisp=cfg.lindisp,
        weighting=cfg.weighting,
    )


def _occupancy(cfg: OccupancySamplerConfig, *, aabb: Tensor, **_) -> Sampler:
    from neural3d.samplers.occupancy import OccupancySampler

    return OccupancySampler(
        aabb=aabb,
        resolution=cfg.resolution,
        levels=cfg.levels,
        step_size=cfg.step_size,
        cone_angle=cfg.cone_angle,
        threshold=cfg.threshold,
        decay=cfg.decay,
        warmup_updates=cfg.warmup_updates,
        early_stop_eps=cfg.early_stop_eps,
        alpha_thre=cfg.alpha_thre,
        backend=cfg.backend,
        update_every=cfg.update_every,
        target_samples=cfg.target_samples,
    )


def _proposal(cfg: ProposalSamplerConfig, *, aabb: Tensor, contraction: str, backend: str) -> Sampler:
    from neural3d.samplers.proposal import ProposalSampler

    if len(cfg.max_resolutions) != len(cfg.round_samples):
        raise ValueError(
            f"model.sampler.max_resolutions needs one entry per round of model.sampler.round_samples "
            f"({list(cfg.round_samples)}), got {list(cfg.max_resolutions)}"
        )
    return ProposalSampler(
        aabb=aabb,
        n_samples=cfg.n_samples,
        n_proposal_samples=tuple(cfg.round_samples),
        spacing=cfg.spacing,
        spacing_pivot=cfg.spacing_pivot,
        contraction=contraction,
        proposal_max_resolutions=tuple(cfg.max_resolutions),
        proposal_n_levels=cfg.n_levels,
        proposal_log2_hashmap_size=cfg.log2_hashmap_size,
        proposal_hidden_dim=cfg.hidden_dim,
        histogram_padding=cfg.histogram_padding,
        anneal_steps=cfg.anneal_steps,
        anneal_slope=cfg.anneal_slope,
        update_every=cfg.update_every,
        update_warmup=cfg.update_warmup,
        backend=backend,
        interlevel_loss_mult=cfg.interlevel_loss_mult,
    )


# one builder per section type (the strategies); a new sampler is its section dataclass, a builder and an entry
_BUILDERS = {
    "uniform": _uniform,
    "importance": _importance,
    "grid": _grid,
    "occupancy": _occupancy,
    "proposal": _proposal,
}
