"""Point-cloud-conditioned scene representation (``method: point_field``).

A scene's point cloud (LLFF: its COLMAP sparse points in the loader frame; or any point file; or,
without one, points drawn uniformly in the scene box) is mapped to the ray space (NDC for forward-facing
scenes, exactly as the rays), subsampled by FPS and stored in the model (so a checkpoint renders without
the data). :class:`~neural3d.methods.point_field.field.PointConditionedField` encodes it with the point ViT;
rays are sampled uniformly, then by importance, and composited with the shared
:class:`~neural3d.render.VolumeRenderer`. The importance pass is guided by point occupancy (distance to the
nearest point), so only the ``n_samples`` evaluated samples run the field.
``context={"points": [n, 3]}`` conditions on other points. ``model.spherify`` follows ``data.spherify``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from neural3d.config import ConfigError, instantiate, replace
from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.point_field.field import PointConditionedField
from neural3d.methods.point_field.scene_points import prepare_points, scene_point_cloud
from neural3d.methods.registry import register_method
from neural3d.render import VolumeRenderer
from neural3d.samplers import PDFSampler, UniformSampler
from neural3d.samplers.base import WeightedSamples
from neural3d.samplers.pdf import density_weights


@dataclass
class PointFieldModelConfig:
    """``method: point_field``: a radiance field conditioned on the scene's point cloud."""

    points_path: str = ""
    """LLFF folder (its COLMAP sparse points) or a point file in the scene frame; "": uniform points in the box."""
    spherify: bool | None = None
    """LLFF folders: the loader frame the points are moved into. Follows ``data.spherify`` (set by
    :func:`neural3d.config.build_config`; a different value is an error); a model built directly: False."""
    n_points: int = 2048
    """Points kept (farthest-point sampling)."""
    size: Literal["tiny", "small", "base"] = "tiny"
    """Width of the point-ViT encoder (DeiT tiny / small / base)."""
    depth: int = 2
    """Encoder blocks."""
    n_centres: list[int] = field(default_factory=lambda: [512, 128])
    """Set-abstraction centres per encoder stage."""
    feature_dim: int = 32
    """Channels of the encoded point features."""
    point_codes: bool = True
    """Add a learned per-point code to the encoded features."""
    k: int = 8
    """Encoded points gathered per query."""
    n_freqs: int = 4
    """Positional-encoding frequencies of the query-neighbour offsets (in units of the point spacing)."""
    hidden_dim: int = 64
    """Width of the decoder MLP."""
    radius_scale: float = 4.0
    """Density gate radius in units of the mean nearest-neighbour spacing of the points."""
    grid_resolution: int = 32
    """Neighbour-search grid resolution (each cell lists its ``n_candidates`` nearest points)."""
    n_candidates: int = 32
    """Candidate points listed per grid cell."""
    n_coarse: int = 64
    """Uniform samples per ray scored by point occupancy (no field evaluation)."""
    guide_density: float = 50.0
    """Occupancy -> density factor of the sampling guide."""
    n_samples: int = 32
    """Importance samples per ray evaluated with gradients."""
    seed: int = 0
    """Seed of the uniform fallback points."""

    @classmethod
    def resolve(cls, model_cfg: Any, cfg: Any, source: str = "config") -> Any:
        """``model_cfg`` with ``spherify`` taken from ``data.spherify`` (ConfigError when set to another value)."""
        if model_cfg.spherify is None:
            return replace(model_cfg, {"spherify": bool(cfg.data.spherify)})
        if model_cfg.spherify != cfg.data.spherify:
            raise ConfigError(
                f"{source}: model.spherify={model_cfg.spherify} contradicts data.spherify={cfg.data.spherify}; "
                "the points must be in the frame the scene is loaded in: leave model.spherify unset (it follows "
                "data.spherify)"
            )
        return model_cfg


def _load_points(cfg: PointFieldModelConfig, scene: SceneInfo) -> Tensor:
    box = scene.scene_box.float()
    if not cfg.points_path:
        g = torch.Generator().manual_seed(cfg.seed)
        return box[0] + (box[1] - box[0]) * torch.rand(cfg.n_points, 3, generator=g)
    if not Path(cfg.points_path).exists():
        # Loading a checkpoint elsewhere: the stored points replace these placeholders.
        warnings.warn(
            f"model.points_path {cfg.points_path!r} not found; using placeholder points (a checkpoint's "
            "stored points replace them)",
            stacklevel=3,
        )
        return box[0] + (box[1] - box[0]) * torch.rand(cfg.n_points, 3, generator=torch.Generator().manual_seed(0))
    xyz, _ = scene_point_cloud(cfg.points_path, spherify=bool(cfg.spherify))
    return prepare_points(xyz, scene_box=box, ndc_params=scene.ndc_params if scene.ndc else None, n_points=cfg.n_points)


@register_method("point_field", PointFieldModelConfig)
class PointFieldModel(Model):
    def __init__(self, config: PointFieldModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        points = _load_points(config, scene)
        self.field = instantiate(PointConditionedField, config, points=points)
        self.coarse_sampler = UniformSampler(n_samples=config.n_coarse)
        # Always stratified-jittered (as in training): the deterministic inverse CDF (u = linspace(0, 1)) stretches
        # the outer intervals to the near/far planes, and the narrow point-gated density then renders 3 dB worse
        # than with the training distribution. Eval draws from a generator seeded 0 on every call, so renders are
        # deterministic (for a given chunk size).
        self.pdf_sampler = PDFSampler(n_samples=config.n_samples, include_input=False, eval_seed=0)
        self.renderer = VolumeRenderer()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The stored points (and per-point codes) may differ in number from the freshly built ones.
        key = prefix + "field.points"
        if key in state_dict and state_dict[key].shape != self.field.points.shape:
            n = state_dict[key].shape[0]
            self.field.points = torch.empty_like(state_dict[key])
            if self.field.codes is not None:
                self.field.codes = torch.nn.Parameter(self.field.codes.new_zeros(n, self.field.codes.shape[1]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def importance(self, samples: RaySamples, weights: Tensor) -> RaySamples:
        """[n_rays, n_coarse] samples and guide weights -> [n_rays, n_samples] importance samples."""
        return self.pdf_sampler.sample(samples.rays, prior=WeightedSamples(samples, weights))

    def guide_density(self, positions: Tensor, points: Tensor | None = None) -> Tensor:
        """Sampling guide: [*batch, 3] -> [*batch, 1] ``guide_density`` times the nearest point's occupancy."""
        return (self.field.point_occupancy(positions, points) * self.config.guide_density)[..., None]

    def forward(self, rays: RayBundle, context: Any = None) -> ModelOutputs:
        points = context.get("points") if isinstance(context, dict) else None
        coarse = self.coarse_sampler.sample(rays)
        # the guide is the nearest point's occupancy (no MLP), floored so every interval can be drawn
        weights = density_weights(coarse, lambda x: self.guide_density(x, points)) + 1e-3 / coarse.n_samples
        samples = self.importance(coarse, weights)
        out = self.renderer(self.field(samples, context), samples, self.background)
        return ModelOutputs(out.rgb, out.depth, out.opacity, samples=samples, weights=out.weights)
