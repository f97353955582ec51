"""Config of the ``ngp`` method: the hash-grid field's settings and two sampler sections.

``sampler`` (training, and rendering unless ``eval_sampler`` says otherwise) and ``eval_sampler`` are
``type``-keyed sections (:mod:`neural3d.samplers.config`)::

    model:
      sampler: {type: occupancy, resolution: 128, levels: 1, step_size: 0.005}
      eval_sampler: {type: importance, n_coarse: 64, n_samples: 64}   # default {type: train}

The flat keys of earlier versions (``occ_levels``, ``proposal_samples``, ``grid_resolution``, ...) are
rejected with the new key (:data:`RENAMED_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from neural3d.config import variant_field
from neural3d.samplers.config import EVAL_SAMPLER_VARIANTS, SAMPLER_VARIANTS

_GRID, _OCC, _PROP = "(sampler.type: grid)", "(sampler.type: occupancy)", "(sampler.type: proposal)"

RENAMED_KEYS: dict[str, str] = {
    "n_samples": "sampler.n_samples",
    "n_coarse": "sampler.n_coarse (sampler.type: grid | importance)",
    "n_uniform": f"sampler.n_uniform {_GRID}",
    "lindisp": "sampler.lindisp (sampler.type: grid | importance | uniform)",
    "grid_resolution": "sampler.resolution (sampler.type: grid | occupancy)",
    "grid_update_every": "sampler.update_every (sampler.type: grid | occupancy)",
    "grid_decay": "sampler.decay (sampler.type: grid | occupancy)",
    "grid_warmup_updates": "sampler.warmup_updates (sampler.type: grid | occupancy)",
    "grid_threshold": f"sampler.threshold {_GRID}",
    "grid_weighting": f"sampler.weighting {_GRID}",
    "step_size": f"sampler.step_size {_OCC}",
    "cone_angle": f"sampler.cone_angle {_OCC}",
    "occ_levels": f"sampler.levels {_OCC}",
    "occ_threshold": f"sampler.threshold {_OCC}",
    "early_stop_eps": f"sampler.early_stop_eps {_OCC}",
    "alpha_thre": f"sampler.alpha_thre {_OCC}",
    "target_samples": f"sampler.target_samples {_OCC}",
    "marching_backend": f"sampler.backend {_OCC}",
    "proposal_samples": f"sampler.round_samples {_PROP}",
    "proposal_max_resolutions": f"sampler.max_resolutions {_PROP}",
    "proposal_n_levels": f"sampler.n_levels {_PROP}",
    "proposal_log2_hashmap_size": f"sampler.log2_hashmap_size {_PROP}",
    "proposal_hidden_dim": f"sampler.hidden_dim {_PROP}",
    "proposal_spacing": f"sampler.spacing {_PROP}",
    "proposal_spacing_pivot": f"sampler.spacing_pivot {_PROP}",
    "proposal_histogram_padding": f"sampler.histogram_padding {_PROP}",
    "proposal_anneal_steps": f"sampler.anneal_steps {_PROP}",
    "proposal_anneal_slope": f"sampler.anneal_slope {_PROP}",
    "proposal_update_every": f"sampler.update_every {_PROP}",
    "proposal_update_warmup": f"sampler.update_warmup {_PROP}",
    "interlevel_loss_mult": f"sampler.interlevel_loss_mult {_PROP}",
    "eval_n_coarse": "eval_sampler.n_coarse (eval_sampler.type: importance)",
    "eval_n_fine": "eval_sampler.n_samples (eval_sampler.type: importance)",
}
"""Flat keys of earlier versions -> their place now (``model.`` omitted)."""

_GRID_STATE = {"grid_update_every": "update_every", "grid_decay": "decay", "grid_warmup_updates": "warmup_updates"}
_LEGACY_SECTIONS: dict[str, dict[str, str]] = {  # old sampler name -> {old flat key: key in its section}
    "grid": {
        **{k: k for k in ("n_samples", "n_coarse", "n_uniform", "lindisp")},
        **_GRID_STATE,
        "grid_resolution": "resolution",
        "grid_threshold": "threshold",
        "grid_weighting": "weighting",
    },
    "importance": {k: k for k in ("n_samples", "n_coarse", "lindisp")},
    "uniform": {k: k for k in ("n_samples", "lindisp")},
    "occupancy": {
        **{k: k for k in ("step_size", "cone_angle", "early_stop_eps", "alpha_thre", "target_samples")},
        **_GRID_STATE,
        "grid_resolution": "resolution",
        "occ_levels": "levels",
        "occ_threshold": "threshold",
        "marching_backend": "backend",
    },
    "proposal": {
        "n_samples": "n_samples",
        "proposal_samples": "round_samples",
        "proposal_max_resolutions": "max_resolutions",
        **{f"proposal_{k}": k for k in ("n_levels", "log2_hashmap_size", "hidden_dim", "spacing", "spacing_pivot")},
        **{f"proposal_{k}": k for k in ("histogram_padding", "anneal_steps", "anneal_slope")},
        **{f"proposal_{k}": k for k in ("update_every", "update_warmup")},
        "interlevel_loss_mult": "interlevel_loss_mult",
    },
}


def upgrade_legacy(section: dict[str, Any]) -> dict[str, Any]:
    """A stored ``model`` section of an earlier version (flat keys, ``sampler: occupancy``) in today's shape.

    Used when loading a checkpoint written before the sampler sections (:func:`neural3d.load`); the settings of
    the sampler that run did not use are dropped. Sections already in today's shape are returned unchanged.
    """
    section = dict(section)
    kind = section.get("sampler")
    if not isinstance(kind, str):
        return section
    legacy = {k: section.pop(k) for k in list(section) if k in RENAMED_KEYS}
    section["sampler"] = {
        "type": kind,
        **{new: legacy[old] for old, new in _LEGACY_SECTIONS[kind].items() if old in legacy},
    }
    if section.get("eval_sampler") == "importance":
        eval_keys = {"n_coarse": legacy.get("eval_n_coarse", 64), "n_samples": legacy.get("eval_n_fine", 64)}
        section["eval_sampler"] = {"type": "importance", "include_coarse": True, **eval_keys}
    elif isinstance(section.get("eval_sampler"), str):
        section["eval_sampler"] = {"type": "train"}
    return section


@dataclass
class NGPModelConfig:
    """Instant-NGP-style method: hash-grid field, a sampler strategy, losses."""

    RENAMED_KEYS: ClassVar[dict[str, str]] = RENAMED_KEYS
    """Not a field: the removed flat keys, for the builder's error naming the new key."""
    upgrade_legacy: ClassVar = staticmethod(upgrade_legacy)
    """Not a field: turns a ``model`` section stored by an earlier version into today's shape."""

    sampler: Any = variant_field(SAMPLER_VARIANTS, default="grid")
    """Training sampler (and rendering one unless ``eval_sampler`` says otherwise): a section whose ``type`` is
    ``grid``, ``importance``, ``uniform``, ``occupancy`` or ``proposal`` (:mod:`neural3d.samplers.config`)."""
    eval_sampler: Any = variant_field(EVAL_SAMPLER_VARIANTS, default="train")
    """Sampler used for rendering (evaluation, ``neural3d render``, the viewer): ``{type: train}`` (the training
    sampler) or ``{type: importance, ...}`` (samples placed by the field itself)."""
    distortion_loss_mult: float = 0.0
    """Weight of mip-NeRF 360's distortion loss (padded samplers only; 0: off). mip-NeRF 360 uses 0.01, nerfacto
    0.002 (unbounded scenes)."""
    opaque_far: bool | None = None
    """Make the last sample's interval 1e10 long, so rays end opaque (original NeRF); None: on for NDC scenes."""
    hashgrid_backend: Literal["auto", "torch", "cpu", "tcnn", "triton"] = "auto"
    """Hash-grid implementation of the field and of the proposal networks (:mod:`neural3d.fields.backends`);
    ``auto``: the fastest that is installed and works on the device."""
    contraction: Literal["aabb", "inf", "l2"] = "aabb"
    """How positions map into the hash grid's unit cube: ``aabb`` (the scene box; density 0 outside) or the
    ``inf`` / ``l2`` norm scene contraction of unbounded scenes (mip-NeRF 360)."""
    n_levels: int = 16
    """Hash-grid resolution levels."""
    n_features_per_level: int = 2
    """Features stored per hash-table entry (per level)."""
    log2_hashmap_size: int = 19
    """log2 of the hash-table entries per level (the grid's memory: ``2**this * n_levels * n_features``)."""
    base_resolution: int = 16
    """Grid resolution (cells per axis of the unit cube) of the coarsest level."""
    max_resolution: int = 2048
    """Grid resolution of the finest level; the levels grow geometrically in between."""
    hidden_dim: int = 64
    """Hidden width of the density and colour MLPs."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density MLP to the colour MLP (besides the density)."""
    sh_degree: int = 4
    """Spherical-harmonics bands of the view-direction encoding (``sh_degree**2`` channels: 4 -> 16)."""
