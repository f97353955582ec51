"""Instant-NGP-style method: hash-grid field with importance sampling from its own density.

The sampler runs a cheap, gradient-free density pass on ``n_coarse`` stratified samples and draws
``n_samples`` intervals from the resulting weights, where the full field (density + colour) is
evaluated with gradients. (Occupancy-grid and proposal-network samplers come with the fast
ray-marching module.) ``sampler: uniform`` evaluates ``n_samples`` stratified samples directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neural3d.fields.base import FieldOutputs
from neural3d.fields.ngp_field import NGPField
from neural3d.models.base import Model, SceneInfo
from neural3d.models.registry import register_method
from neural3d.rays import RayBundle
from neural3d.render import VolumeRenderer
from neural3d.render.volume import render_weights_from_density
from neural3d.samplers import PDFSampler, UniformSampler


@dataclass
class NGPModelConfig:
    sampler: str = "importance"  # importance | uniform
    n_samples: int = 48  # samples evaluated with gradients, per ray
    n_coarse: int = 64  # gradient-free density samples for importance sampling
    lindisp: bool = False
    contraction: str = "aabb"  # aabb | inf | l2 (unbounded scenes)
    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    hidden_dim: int = 64
    geo_feat_dim: int = 15
    sh_degree: int = 4


@register_method("ngp", NGPModelConfig)
class NGPModel(Model):
    def __init__(self, config: NGPModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        if config.sampler not in ("importance", "uniform"):
            raise ValueError(f"model.sampler must be 'importance' or 'uniform', got '{config.sampler}'")
        self.field = NGPField(
            aabb=scene.scene_box, contraction=config.contraction, n_levels=config.n_levels,
            n_features_per_level=config.n_features_per_level, log2_hashmap_size=config.log2_hashmap_size,
            base_resolution=config.base_resolution, max_resolution=config.max_resolution,
            hidden_dim=config.hidden_dim, geo_feat_dim=config.geo_feat_dim, sh_degree=config.sh_degree,
        )
        n_first = config.n_coarse if config.sampler == "importance" else config.n_samples
        self.coarse_sampler = UniformSampler(n_samples=n_first, lindisp=config.lindisp)
        self.pdf_sampler = PDFSampler(n_samples=config.n_samples, include_input=False)
        self.renderer = VolumeRenderer()

    def param_groups(self) -> dict[str, list]:
        enc = list(self.field.encoding.parameters())
        ids = {id(p) for p in enc}
        return {"encoding": enc, "network": [p for p in self.parameters() if id(p) not in ids]}

    def forward(self, rays: RayBundle, context: Any = None) -> dict[str, Tensor]:
        samples = self.coarse_sampler(rays)
        if self.config.sampler == "importance":
            with torch.no_grad():
                density = self.field.density(samples.positions)[..., 0]
                dist = samples.deltas * torch.linalg.norm(rays.directions, dim=-1, keepdim=True)
                weights = render_weights_from_density(density, dist)
            samples = self.pdf_sampler(samples, weights)
        density, rgb = self.field.query(samples.positions, samples.viewdirs)
        out = self.renderer(FieldOutputs(density=density, rgb=rgb), samples, self.background)
        return {"rgb": out.rgb, "depth": out.depth, "opacity": out.opacity}
