"""Vanilla NeRF (Mildenhall et al. 2020): coarse + fine MLPs with hierarchical sampling.

Both passes go through the sampler protocol: ``UniformSampler.sample(rays)`` for the coarse field, then
``PDFSampler.sample(rays, prior=WeightedSamples(coarse samples, coarse weights))`` for the fine field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.fields.nerf_field import NeRFField
from neural3d.fields.perturb import FieldPerturbation, ModelPerturbation, pass_field, pass_samples
from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.registry import register_method
from neural3d.render import VolumeRenderer
from neural3d.render.renderers import RenderOutputs
from neural3d.samplers import PDFSampler, UniformSampler
from neural3d.samplers.base import WeightedSamples


@dataclass
class NeRFModelConfig:
    n_coarse: int = 64  # stratified samples per ray for the coarse network
    n_fine: int = 128  # importance samples per ray for the fine network (merged with the coarse ones)
    lindisp: bool = False  # sample linearly in inverse depth
    pos_freqs: int = 10
    dir_freqs: int = 4
    width: int = 256
    depth: int = 8
    skips: list[int] = field(default_factory=lambda: [4])
    use_viewdirs: bool = True
    density_noise: float = 0.0  # std of noise added to raw density in training (original LLFF: 1.0)
    opaque_far: bool | None = None  # last sample's interval 1e10 long (original NeRF); None: on for NDC scenes


@register_method("nerf", NeRFModelConfig)
class NeRFModel(Model):
    """Coarse/fine NeRF; outputs ``rgb``/``depth``/``opacity`` (fine) and ``rgb_coarse``."""

    def __init__(self, config: NeRFModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        kw = {
            "pos_freqs": config.pos_freqs,
            "dir_freqs": config.dir_freqs,
            "width": config.width,
            "depth": config.depth,
            "skips": list(config.skips),
            "use_viewdirs": config.use_viewdirs,
        }
        self.coarse_field = NeRFField(**kw)
        self.fine_field = NeRFField(**kw) if config.n_fine > 0 else None
        self.coarse_sampler = UniformSampler(n_samples=config.n_coarse, lindisp=config.lindisp)
        self.fine_sampler = PDFSampler(n_samples=config.n_fine, include_input=True)
        self.renderer = VolumeRenderer(opaque_far=scene.ndc if config.opaque_far is None else bool(config.opaque_far))

    def perturbation_levels(self) -> frozenset[str]:
        return self.coarse_field.perturbation_levels

    def _render(self, field: NeRFField, samples: RaySamples, perturb: FieldPerturbation | None = None) -> RenderOutputs:
        if perturb is not None:  # a perturbed pass (Aug-NeRF) replaces the density noise
            return self.renderer(field(samples, perturb=perturb), samples, self.background)
        outputs = field(samples)
        if self.training and self.config.density_noise > 0:
            outputs.density = torch.relu(
                outputs.density + torch.randn_like(outputs.density) * self.config.density_noise
            )
        return self.renderer(outputs, samples, self.background)

    def forward(self, rays: RayBundle, context: Any = None, perturb: ModelPerturbation | None = None) -> ModelOutputs:
        """Coarse, then fine pass (the field passes ``coarse`` and ``fine`` of ``perturb``)."""
        coarse_samples = pass_samples(perturb, "coarse", lambda: self.coarse_sampler.sample(rays))
        coarse = self._render(self.coarse_field, coarse_samples, pass_field(perturb, "coarse"))
        if self.fine_field is None:
            return ModelOutputs(
                coarse.rgb,
                coarse.depth,
                coarse.opacity,
                rgb_coarse=coarse.rgb,
                samples=coarse_samples,
                weights=coarse.weights,
            )
        prior = WeightedSamples(coarse_samples, coarse.weights)
        fine_samples = pass_samples(perturb, "fine", lambda: self.fine_sampler.sample(rays, prior=prior))
        fine = self._render(self.fine_field, fine_samples, pass_field(perturb, "fine"))
        return ModelOutputs(
            fine.rgb, fine.depth, fine.opacity, rgb_coarse=coarse.rgb, samples=fine_samples, weights=fine.weights
        )
