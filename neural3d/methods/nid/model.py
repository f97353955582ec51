"""NID method: a scene as a sparse code over a dictionary of radiance-field experts.

``method: nid`` trains (or, with ``model.dictionary`` set, loads) a
:class:`~neural3d.methods.nid.field.NIDRadianceField` and renders it through the shared contracts:
``UniformSampler.sample``, an optional ``PDFSampler`` pass on the field's gradient-free weights, the field's
``forward(samples, code)`` and ``VolumeRenderer``. With a dictionary trained across a scene family
(:mod:`neural3d.methods.nid.family`) and ``freeze_dictionary: true``, training a new scene only solves its
code (``num_experts + 4`` numbers). ``context`` picks the scene code (None: code 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from neural3d.config import instantiate
from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.nid.field import NIDRadianceField, SceneCodes
from neural3d.methods.registry import register_method
from neural3d.render import VolumeRenderer
from neural3d.samplers import PDFSampler, UniformSampler
from neural3d.samplers.base import WeightedSamples
from neural3d.samplers.pdf import density_weights


@dataclass
class NIDSceneConfig:
    """``method: nid``: a radiance field as a sparse code over a bank of radiance-field experts."""

    num_experts: int = 64
    """Experts in the bank."""
    topk: int = 16
    """Experts mixed per scene."""
    n_codes: int = 1
    """Scene codes (a family dictionary has one per scene)."""
    encoding: Literal["pe", "fourier", "identity"] = "pe"
    """Position encoding of the experts: NeRF positional encoding, random Fourier features, or none."""
    n_freqs: int = 6
    """Frequencies of the ``pe`` encoding."""
    n_fourier_features: int = 256
    """Features of the ``fourier`` encoding."""
    fourier_scale: float = 4.0
    """``fourier``: standard deviation of the projection B, for coordinates in [-1, 1]."""
    hidden_dim: int = 128
    """Hidden width of each expert."""
    n_layers: int = 3
    """Layers of each expert."""
    density_bias: float = -1.0
    """Added to the raw density before its activation (a negative value starts the scene nearly empty)."""
    n_samples: int = 48
    """Stratified samples per ray."""
    n_importance: int = 0
    """Extra PDF samples per ray from a gradient-free pass (0: off)."""
    lindisp: bool = False
    """Stratified samples uniform in inverse depth instead of depth."""
    dictionary: str = ""
    """A family dictionary checkpoint (:mod:`neural3d.methods.nid.family`) whose expert bank is loaded."""
    freeze_dictionary: bool = True
    """With ``dictionary``: train only the scene code."""
    seed: int = 0
    """Seed of the expert initialisation."""


@register_method("nid", NIDSceneConfig)
class NIDModel(Model):
    def __init__(self, config: NIDSceneConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        if scene.ndc:
            box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
        else:
            box = scene.scene_box
        self.field = instantiate(NIDRadianceField, config, aabb=box)
        self.sampler = UniformSampler(n_samples=config.n_samples, lindisp=config.lindisp)
        self.pdf_sampler = (
            PDFSampler(n_samples=config.n_importance, include_input=True) if config.n_importance else None
        )
        self.renderer = VolumeRenderer()
        if config.dictionary:
            self.load_dictionary(config.dictionary, freeze=config.freeze_dictionary)

    def load_dictionary(self, path: str, *, freeze: bool = True) -> None:
        """Copy the expert bank of a family dictionary checkpoint; the codes start at the family's mean code."""
        from neural3d.training.checkpoint import load_checkpoint

        state = load_checkpoint(path)
        weights = state.get("model", state)
        bank = {k[len("field.bank.") :]: v for k, v in weights.items() if k.startswith("field.bank.")}
        if not bank:
            raise ValueError(f"{path}: no NID expert bank (field.bank.*) in this checkpoint")
        try:
            self.field.bank.load_state_dict(bank)
        except RuntimeError as e:
            raise ValueError(
                f"{path}: expert bank does not match model config (num_experts, encoding, sizes): {e}"
            ) from None
        codes = weights.get("field.codes")
        if codes is not None and codes.shape[1] == self.field.codes.shape[1]:
            with torch.no_grad():
                self.field.codes.copy_(codes.mean(0, keepdim=True).expand_as(self.field.codes))
        for p in self.field.bank.parameters():
            p.requires_grad_(not freeze)

    def sample(self, rays: RayBundle, code_ids: Tensor) -> RaySamples:
        """[n_rays] rays of one scene -> [n_rays, n_samples (+ n_importance + 1)] samples."""
        samples = self.sampler.sample(rays)
        if self.pdf_sampler is None:
            return samples
        weights = density_weights(samples, lambda x: self.field.density(x, code_ids))
        return self.pdf_sampler.sample(rays, prior=WeightedSamples(samples, weights))

    def forward(self, rays: RayBundle, context: Any = None) -> ModelOutputs:
        """[n_rays] rays of the scene whose code ``context`` selects -> rgb [n_rays, 3], depth, opacity [n_rays, 1]."""
        code = self.field.code_ids(context, rays.device)
        samples = self.sample(rays, code)
        out = self.renderer(self.field(samples, code), samples, self.background)
        return ModelOutputs(out.rgb, out.depth, out.opacity, samples=samples, weights=out.weights)

    def forward_scenes(self, rays: RayBundle, code_ids: Tensor) -> tuple[Tensor, Any]:
        """Several scenes at once (multi-scene dictionary training).

        Args:
            rays: [n_scenes, n_rays] bundle, row ``s`` from scene ``code_ids[s]``.
            code_ids: [n_scenes] code indices.
        Returns:
            rgb [n_scenes, n_rays, 3] and the scenes' :class:`~neural3d.methods.nid.gating.Gates`.
        """
        S, R = rays.shape
        samples = self.sampler.sample(rays.flatten())
        field_out = self.field(samples, SceneCodes(code_ids))
        out = self.renderer(field_out, samples, self.background)
        return out.rgb.reshape(S, R, 3), field_out.extras["gates"]
