"""NID method: a scene as a sparse code over a dictionary of radiance-field experts.

``method: nid`` trains (or, with ``model.dictionary`` set, loads) a
:class:`~neural3d.methods.nid.field.NIDRadianceField` and renders it with the shared samplers (stratified
``UniformSampler``, optional ``PDFSampler`` importance pass) and ``VolumeRenderer``. With a dictionary trained
across a scene family (:mod:`neural3d.methods.nid.family`) and ``freeze_dictionary: true``, training a new
scene only solves its code (``num_experts + 4`` numbers). ``context`` picks the scene code (None: code 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle
from neural3d.fields.base import FieldOutputs
from neural3d.methods.base import Model, SceneInfo
from neural3d.methods.nid.field import NIDRadianceField
from neural3d.methods.registry import register_method
from neural3d.render import VolumeRenderer
from neural3d.render.volume import render_weights_from_density
from neural3d.samplers import PDFSampler, UniformSampler


@dataclass
class NIDSceneConfig:
    num_experts: int = 64
    topk: int = 16
    n_codes: int = 1  # scene codes (a family dictionary has one per scene)
    encoding: str = "pe"  # pe | fourier | identity
    n_freqs: int = 6
    n_fourier_features: int = 256
    fourier_scale: float = 4.0
    hidden_dim: int = 128
    n_layers: int = 3
    density_bias: float = -1.0
    n_samples: int = 48  # stratified samples per ray
    n_importance: int = 0  # extra PDF samples from a gradient-free pass (0: off)
    lindisp: bool = False
    dictionary: str = ""  # a family dictionary checkpoint (neural3d.methods.nid.family) whose bank is loaded
    freeze_dictionary: bool = True  # with `dictionary`: train only the scene code
    seed: int = 0


@register_method("nid", NIDSceneConfig)
class NIDModel(Model):
    def __init__(self, config: NIDSceneConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        if scene.ndc:
            box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
        else:
            box = scene.scene_box
        self.field = NIDRadianceField(
            aabb=box,
            n_codes=config.n_codes,
            num_experts=config.num_experts,
            topk=config.topk,
            encoding=config.encoding,
            n_freqs=config.n_freqs,
            n_fourier_features=config.n_fourier_features,
            fourier_scale=config.fourier_scale,
            hidden_dim=config.hidden_dim,
            n_layers=config.n_layers,
            density_bias=config.density_bias,
            seed=config.seed,
        )
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

    def sample(self, rays: RayBundle, code_ids: Tensor):
        """[n_rays] rays of one scene -> [n_rays, n_samples (+ n_importance)] samples."""
        samples = self.sampler(rays)
        if self.pdf_sampler is None:
            return samples
        with torch.no_grad():
            density = self.field.density(samples.positions, code_ids)[..., 0]
            dist = samples.deltas * torch.linalg.norm(rays.directions, dim=-1, keepdim=True)
            weights = render_weights_from_density(density, dist)
        return self.pdf_sampler(samples, weights)

    def forward(self, rays: RayBundle, context: Any = None) -> dict[str, Tensor]:
        """[n_rays] rays of the scene whose code ``context`` selects -> rgb [n_rays, 3], depth, opacity [n_rays, 1]."""
        code = self.field.code_ids(context, rays.device)
        samples = self.sample(rays, code)
        density, rgb = self.field.query(samples.positions, None, code)
        out = self.renderer(FieldOutputs(density=density, rgb=rgb), samples, self.background)
        return {"rgb": out.rgb, "depth": out.depth, "opacity": out.opacity}

    def forward_scenes(self, rays: RayBundle, code_ids: Tensor) -> tuple[Tensor, Any]:
        """Several scenes at once (multi-scene dictionary training).

        Args:
            rays: [n_scenes, n_rays] bundle, row ``s`` from scene ``code_ids[s]``.
            code_ids: [n_scenes] code indices.
        Returns:
            rgb [n_scenes, n_rays, 3] and the scenes' :class:`~neural3d.methods.nid.gating.Gates`.
        """
        S, R = rays.shape
        samples = self.sampler(rays.flatten())
        n = samples.n_samples
        gates = self.field.gates(code_ids)
        raw, inside = self.field.raw_outputs(samples.positions.reshape(S, R * n, 3), gates)
        density, rgb = self.field.activate(raw, inside)
        out = self.renderer(
            FieldOutputs(density=density.reshape(S * R, n, 1), rgb=rgb.reshape(S * R, n, 3)), samples, self.background
        )
        return out.rgb.reshape(S, R, 3), gates
