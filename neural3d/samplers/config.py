"""Typed config sections of the samplers (``type``-keyed, held by a :func:`~neural3d.config.variant_field`).

YAML::

    model:
      sampler: {type: proposal, n_samples: 32, round_samples: [64, 32], max_resolutions: [128, 256]}
      eval_sampler: {type: importance, n_coarse: 64, n_samples: 64}

Each section is a dataclass whose ``type`` names it; :func:`build_sampler` turns one into its
:class:`~neural3d.samplers.base.Sampler`. The union is validated by :func:`neural3d.config.variant_field`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from neural3d.config import instantiate
from neural3d.samplers.base import Sampler


@dataclass
class UniformSamplerConfig:
    """``uniform``: ``n_samples`` stratified intervals between near and far, all evaluated by the field."""

    type: Literal["uniform"] = "uniform"
    """Section type (names this sampler)."""
    n_samples: int = 32
    """Intervals per ray, stratified between the ray's near and far (jittered in training), evaluated by the field."""
    lindisp: bool = False
    """Space the intervals linearly in inverse depth (disparity) instead of depth."""


@dataclass
class ImportanceSamplerConfig:
    """``importance``: a gradient-free pass of the field on ``n_coarse`` stratified intervals places ``n_samples``."""

    type: Literal["importance"] = "importance"
    """Section type (names this sampler)."""
    n_coarse: int = 128
    """Stratified intervals per ray scored by the field's density (no gradient) to place the evaluated ones."""
    n_samples: int = 32
    """Intervals per ray drawn from the coarse intervals' compositing weights and evaluated with gradients."""
    include_coarse: bool = False
    """Also evaluate the coarse edges: ``n_coarse + n_samples + 1`` intervals per ray instead of ``n_samples``."""
    lindisp: bool = False
    """Space the coarse intervals linearly in inverse depth (disparity) instead of depth."""


@dataclass
class GridSamplerConfig:
    """``grid``: a cached density grid (refreshed from the field) spreads ``n_samples`` over occupied bins."""

    type: Literal["grid"] = "grid"
    """Section type (names this sampler)."""
    n_coarse: int = 128
    """Stratified bins per ray looked up in the density grid (no field evaluation)."""
    n_samples: int = 32
    """Intervals per ray drawn over the occupied bins and evaluated by the field."""
    n_uniform: int = 8
    """Stratified intervals merged in (the field runs on ``n_samples + n_uniform + 1`` intervals; 0: none)."""
    lindisp: bool = False
    """Space the bins (and the ``n_uniform`` intervals) linearly in inverse depth instead of depth."""
    resolution: int = 64
    """Density-grid cells per axis over the field's unit cube (memory and refresh cost grow as its cube)."""
    update_every: int = 16
    """Training steps between grid refreshes from the field's density."""
    decay: float = 0.9
    """Factor applied to every cell at each refresh after the warm-up (``max(decay * old, new)``); instant-ngp's
    0.95 clears empty space too slowly for short runs."""
    warmup_updates: int = 16
    """The first refreshes evaluate and replace every cell (later ones a random quarter, with decay)."""
    threshold: float = 0.01
    """Grid density above which a bin counts as occupied; rays meeting no occupied bin show the background
    without running the field."""
    weighting: Literal["occupancy", "density"] = "occupancy"
    """How the ``n_samples`` are spread over the bins: ``occupancy`` (evenly over occupied bins, by length) or
    ``density`` (by the compositing weights of the grid's own densities)."""


@dataclass
class OccupancySamplerConfig:
    """``occupancy``: instant-ngp / nerfacc marching through a cascaded binary grid (packed samples)."""

    type: Literal["occupancy"] = "occupancy"
    """Section type (names this sampler)."""
    resolution: int = 64
    """Occupancy-grid cells per axis of each cascade level."""
    levels: int = 1
    """Cascade levels; level ``i`` covers the scene box scaled by ``2**i`` (more than 1 for unbounded scenes)."""
    update_every: int = 16
    """Training steps between grid refreshes from the field's density."""
    decay: float = 0.9
    """After the warm-up a refreshed cell keeps ``max(decay * old, new)`` (only refreshed cells decay)."""
    warmup_updates: int = 16
    """The first refreshes evaluate and replace every cell (later ones a random part, with decay)."""
    threshold: float = 0.01
    """A cell is occupied when its ``density * step_size`` exceeds ``min(threshold, mean over cells)``."""
    step_size: float = 0.0
    """Marching step in world (ray) units; 0: the scene box's diagonal / 512."""
    cone_angle: float = 0.0
    """Step growth with distance (step = max(step_size, t * cone_angle)); 0: fixed steps, instant-ngp uses
    1/256 for unbounded scenes."""
    early_stop_eps: float = 1e-4
    """Drop marched samples where the transmittance has fallen below this (gradient-free density pass; 0: off)."""
    alpha_thre: float = 0.0
    """Drop marched samples whose opacity (alpha) is below this (gradient-free density pass; 0: off)."""
    target_samples: int = 1 << 16
    """Training: cap on marched samples per step, kept by training only a prefix of the batch's rays (the others
    count in no loss that step; 0: no cap)."""
    backend: Literal["auto", "torch", "cpu", "nerfacc"] = "auto"
    """Ray marching: ``auto`` (nerfacc's CUDA traversal on CUDA when installed and it builds; on the CPU the C
    kernel for uniform steps when it builds; else torch), ``torch``, ``cpu`` or ``nerfacc`` (an error when
    unavailable). All give the same samples."""
    render_fused: bool = True
    """Renders without gradients (``neural3d eval`` / ``render``, the viewer, the Python API) take one density pass
    with early ray termination and colour only where it shows (:mod:`neural3d.render.inference`: the same
    samples as the training path's pruning, densities reused); false: the training path (march, prune, field)."""
    render_color_eps: float = 0.0
    """Fused renders skip the colour of a ray's samples whose weights sum below this, so each pixel's colour
    changes by less than it (0: the colour of every visible sample, the training path's image; depth and
    opacity never change)."""


@dataclass
class ProposalSamplerConfig:
    """``proposal``: mip-NeRF 360 proposal networks (small hash grids) resample each ray in rounds."""

    type: Literal["proposal"] = "proposal"
    """Section type (names this sampler)."""
    n_samples: int = 32
    """Intervals per ray the field evaluates (drawn from the last proposal round)."""
    round_samples: list[int] = field(default_factory=lambda: [64, 32])
    """Intervals per ray of each proposal round; its length is the number of rounds (and proposal networks)."""
    max_resolutions: list[int] = field(default_factory=lambda: [128, 256])
    """Finest hash-grid resolution of each round's proposal network (one entry per round)."""
    n_levels: int = 5
    """Hash-grid levels of each proposal network."""
    log2_hashmap_size: int = 17
    """log2 of the hash-table entries per level of each proposal network."""
    hidden_dim: int = 16
    """Hidden width of each proposal network's density MLP."""
    spacing: Literal["uniform", "lindisp", "contracted"] = "uniform"
    """Spacing the rounds resample in: linear in depth, in disparity, or ``contracted`` (linear up to
    ``spacing_pivot``, disparity beyond; for unbounded scenes)."""
    spacing_pivot: float = 1.0
    """``contracted`` spacing: the ray distance ``t`` (world units) where spacing turns from linear to disparity."""
    histogram_padding: float = 0.01
    """Added to the (annealed) proposal weights before resampling, so no interval gets zero probability."""
    anneal_steps: int = 1000
    """Training steps over which the weight annealing exponent rises from 0 to 1 (weights ** exponent)."""
    anneal_slope: float = 10.0
    """Slope of the annealing schedule (nerfstudio's 10)."""
    update_every: int = 5
    """After ``update_warmup`` steps, the proposal networks get gradients on every ``update_every``-th step
    (1: always)."""
    update_warmup: int = 5000
    """Training steps during which the proposal networks get gradients on every step."""
    interlevel_loss_mult: float = 1.0
    """Weight of the interlevel loss (proposal weights bounding the field's) in the training loss."""


@dataclass
class TrainingSamplerConfig:
    """``train`` (for ``eval_sampler``): render with the training sampler."""

    type: Literal["train"] = "train"
    """Section type: rendering uses the training sampler (``model.sampler``)."""


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

    return instantiate(UniformSampler, cfg)


def _importance(cfg: ImportanceSamplerConfig, **_) -> Sampler:
    from neural3d.samplers.pdf import ImportanceSampler

    return instantiate(ImportanceSampler, cfg)


def _grid(cfg: GridSamplerConfig, *, aabb: Tensor, contraction: str, **_) -> Sampler:
    from neural3d.samplers.density_grid import GridSampler

    return instantiate(GridSampler, cfg, aabb=aabb, contraction=contraction)


def _occupancy(cfg: OccupancySamplerConfig, *, aabb: Tensor, **_) -> Sampler:
    from neural3d.samplers.occupancy import OccupancySampler

    return instantiate(OccupancySampler, cfg, aabb=aabb)  # cfg.backend: the marching backend


def _proposal(cfg: ProposalSamplerConfig, *, aabb: Tensor, contraction: str, backend: str) -> Sampler:
    from neural3d.samplers.proposal import ProposalSampler

    if len(cfg.max_resolutions) != len(cfg.round_samples):
        raise ValueError(
            f"model.sampler.max_resolutions needs one entry per round of model.sampler.round_samples "
            f"({list(cfg.round_samples)}), got {list(cfg.max_resolutions)}"
        )
    return instantiate(  # the section's keys without ProposalSampler's ``proposal_`` prefixes
        ProposalSampler,
        cfg,
        aabb=aabb,
        contraction=contraction,
        backend=backend,
        n_proposal_samples=tuple(cfg.round_samples),
        proposal_max_resolutions=tuple(cfg.max_resolutions),
        proposal_n_levels=cfg.n_levels,
        proposal_log2_hashmap_size=cfg.log2_hashmap_size,
        proposal_hidden_dim=cfg.hidden_dim,
    )


# one builder per section type (the strategies); a new sampler is its section dataclass, a builder and an entry
_BUILDERS = {
    "uniform": _uniform,
    "importance": _importance,
    "grid": _grid,
    "occupancy": _occupancy,
    "proposal": _proposal,
}
