"""Vanilla NeRF (Mildenhall et al. 2020): coarse + fine MLPs with hierarchical sampling.

Both passes go through the sampler protocol: ``UniformSampler.sample(rays)`` for the coarse field, then
``PDFSampler.sample(rays, prior=WeightedSamples(coarse samples, coarse weights))`` for the fine field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from neural3d.config import instantiate
from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.fields.nerf_field import NeRFField
from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.registry import register_method
from neural3d.render import VolumeRenderer
from neural3d.render.renderers import RenderOutputs
from neural3d.samplers import PDFSampler, UniformSampler
from neural3d.samplers.base import WeightedSamples


@dataclass
class NeRFModelConfig:
    """Vanilla NeRF: coarse and fine positional-encoding MLPs, hierarchical (coarse then importance) sampling."""

    n_coarse: int = 64
    """Stratified samples per ray for the coarse network."""
    n_fine: int = 128
    """Importance samples per ray for the fine network, merged with the coarse ones (0: no fine network)."""
    lindisp: bool = False
    """Space the coarse samples linearly in inverse depth (disparity) instead of depth."""
    pos_freqs: int = 10
    """Frequency bands of the positional encoding of positions (original NeRF: 10)."""
    dir_freqs: int = 4
    """Frequency bands of the positional encoding of view directions (original NeRF: 4)."""
    width: int = 256
    """Hidden width of the position MLP (the view-direction layer has half of it)."""
    depth: int = 8
    """Layers of the position MLP (before the density and feature heads)."""
    skips: list[int] = field(default_factory=lambda: [4])
    """Position-MLP layers (0-based) whose output is concatenated with the encoded position again (skip
    connections; original NeRF: [4])."""
    use_viewdirs: bool = True
    """Condition colour on the encoded view direction (False: colour and density from position only)."""
    density_noise: float = 0.0
    """Standard deviation of Gaussian noise added to the raw density in training (original LLFF: 1.0; 0: off)."""
    opaque_far: bool | None = None
    """Make the last sample's interval 1e10 long, so rays end opaque (original NeRF); None: on for NDC scenes."""


@register_method("nerf", NeRFModelConfig)
class NeRFModel(Model):
    """Coarse/fine NeRF; outputs ``rgb``/``depth``/``opacity`` (fine) and ``rgb_coarse``."""

    def __init__(self, config: NeRFModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        # each field's settings are the section's fields named like NeRFField's parameters
        self.coarse_field = instantiate(NeRFField, config)
        self.fine_field = instantiate(NeRFField, config) if config.n_fine > 0 else None
        self.coarse_sampler = instantiate(UniformSampler, config, n_samples=config.n_coarse)  # and lindisp
        self.fine_sampler = PDFSampler(n_samples=config.n_fine, include_input=True)
        self.renderer = VolumeRenderer(opaque_far=scene.ndc if config.opaque_far is None else bool(config.opaque_far))

    def _render(self, field: NeRFField, samples: RaySamples) -> RenderOutputs:
        outputs = field(samples)
        if self.training and self.config.density_noise > 0:
            outputs.density = torch.relu(
                outputs.density + torch.randn_like(outputs.density) * self.config.density_noise
            )
        return self.renderer(outputs, samples, self.background)

    def forward(self, rays: RayBundle, context: Any = None) -> ModelOutputs:
        coarse_samples = self.coarse_sampler.sample(rays)
        coarse = self._render(self.coarse_field, coarse_samples)
        if self.fine_field is None:
            return ModelOutputs(
                coarse.rgb,
                coarse.depth,
                coarse.opacity,
                rgb_coarse=coarse.rgb,
                samples=coarse_samples,
                weights=coarse.weights,
            )
        fine_samples = self.fine_sampler.sample(rays, prior=WeightedSamples(coarse_samples, coarse.weights))
        fine = self._render(self.fine_field, fine_samples)
        return ModelOutputs(
            fine.rgb, fine.depth, fine.opacity, rgb_coarse=coarse.rgb, samples=fine_samples, weights=fine.weights
        )
