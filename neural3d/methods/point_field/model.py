"""Point-cloud-conditioned scene representation (``method: point_field``).

A scene's point cloud (LLFF: its COLMAP sparse points in the loader frame; or any point file; or,
without one, points drawn uniformly in the scene box) is mapped to the ray space (NDC for forward-facing
scenes, exactly as the rays), subsampled by FPS and stored in the model (so a checkpoint renders without
the data). :class:`~neural3d.methods.point_field.field.PointConditionedField` encodes it with the point ViT; rays
are sampled uniformly, then by importance, and composited with the
shared :class:`~neural3d.render.VolumeRenderer`. The importance pass is guided by point occupancy
(distance to the nearest point), so only the ``n_samples`` evaluated samples run the field.
``context={"points": [n, 3]}`` conditions on other points.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.fields.base import FieldOutputs
from neural3d.methods.base import Model, SceneInfo
from neural3d.methods.point_field.field import PointConditionedField
from neural3d.methods.point_field.scene_points import prepare_points, scene_point_cloud
from neural3d.methods.registry import register_method
from neural3d.render import VolumeRenderer
from neural3d.render.volume import render_weights_from_density
from neural3d.samplers import UniformSampler
from neural3d.samplers.pdf import sample_pdf


@dataclass
class PointFieldModelConfig:
    points_path: str = ""  # LLFF folder (COLMAP sparse points) or point file; "" -> uniform points in the box
    spherify: bool = False  # LLFF folders: must equal data.spherify (the loader frame depends on it)
    n_points: int = 2048  # points kept (FPS)
    size: str = "tiny"  # encoder width (tiny | small | base)
    depth: int = 2  # encoder blocks
    n_centres: list[int] = field(default_factory=lambda: [512, 128])
    feature_dim: int = 32
    point_codes: bool = True  # learned per-point code added to the encoded features
    k: int = 8  # neighbours per query
    n_freqs: int = 4
    hidden_dim: int = 64
    radius_scale: float = 4.0
    grid_resolution: int = 32  # neighbour-search grid (cells list their n_candidates nearest points)
    n_candidates: int = 32
    n_coarse: int = 64  # uniform samples scored per ray by point occupancy (no field evaluation)
    guide_density: float = 50.0  # occupancy -> density of the sampling guide
    n_samples: int = 32  # importance samples evaluated with gradients
    seed: int = 0  # uniform fallback points


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
    xyz, _ = scene_point_cloud(cfg.points_path, spherify=cfg.spherify)
    return prepare_points(xyz, scene_box=box, ndc_params=scene.ndc_params if scene.ndc else None, n_points=cfg.n_points)


@register_method("point_field", PointFieldModelConfig)
class PointFieldModel(Model):
    def __init__(self, config: PointFieldModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        points = _load_points(config, scene)
        self.field = PointConditionedField(
            points=points,
            size=config.size,
            depth=config.depth,
            n_centres=tuple(config.n_centres),
            feature_dim=config.feature_dim,
            point_codes=config.point_codes,
            k=config.k,
            n_freqs=config.n_freqs,
            hidden_dim=config.hidden_dim,
            radius_scale=config.radius_scale,
            grid_resolution=config.grid_resolution,
            n_candidates=config.n_candidates,
        )
        self.coarse_sampler = UniformSampler(n_samples=config.n_coarse)
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
        """[n_rays, n_coarse] samples and guide weights -> [n_rays, n_samples] importance samples.

        Always stratified-jittered (as in training): the deterministic inverse CDF (``u = linspace(0, 1)``)
        stretches the outer intervals to the near/far planes, and the narrow point-gated density then
        renders 3 dB worse than with the training distribution. Eval uses fixed random numbers, so renders
        are deterministic (for a given chunk size).
        """
        g = None if self.training else torch.Generator(device=weights.device).manual_seed(0)
        edges = sample_pdf(samples.edges, weights, self.config.n_samples + 1, jitter=True, generator=g)
        return RaySamples.from_edges(samples.rays, edges)

    def forward(self, rays: RayBundle, context: Any = None) -> dict[str, Tensor]:
        f = self.field
        points = context.get("points") if isinstance(context, dict) else None
        encoded = f.encode(points)
        samples = self.coarse_sampler(rays)
        with torch.no_grad():  # sampling guide: occupancy of the nearest point (no MLP)
            occ = f.point_occupancy(samples.positions, points) * self.config.guide_density
            dist = samples.deltas * torch.linalg.norm(rays.directions, dim=-1, keepdim=True)
            weights = render_weights_from_density(occ, dist) + 1e-3 / samples.deltas.shape[-1]
        samples = self.importance(samples, weights)
        density, rgb = f.query_encoded(samples.positions, samples.viewdirs, encoded)
        out = self.renderer(FieldOutputs(density=density, rgb=rgb), samples, self.background)
        return {"rgb": out.rgb, "depth": out.depth, "opacity": out.opacity}
