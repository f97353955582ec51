"""Instant-NGP-style method: a hash-grid field with cheap, density-guided sampling.

The sampler is a strategy chosen by the ``model.sampler`` section (``type``; :mod:`neural3d.samplers.config`):

* ``grid`` (default): a cached density grid (refreshed from the field every ``update_every`` steps) marks
  which of ``n_coarse`` stratified bins per ray are occupied; ``n_samples`` intervals are spread over the
  occupied bins (plus ``n_uniform`` stratified ones) and evaluated with gradients. Rays that meet no
  occupied cell show the background without running the field.
* ``importance``: the same, but the scores come from a gradient-free pass of the field itself.
* ``uniform``: ``n_samples`` stratified samples evaluated directly.
* ``occupancy``: instant-ngp / nerfacc marching: a cascaded binary occupancy grid (refreshed from
  ``density * step_size``) and fixed (or cone-angle growing) steps give a variable number of samples
  per ray in the packed layout; a gradient-free density pass drops samples behind opaque space
  (``early_stop_eps``) or of negligible opacity (``alpha_thre``) before the field runs with gradients.
* ``proposal``: mip-NeRF 360 proposal networks (small hash grids) resample each ray in rounds; the
  field runs on the last ``n_samples``; the interlevel loss trains the proposals (distortion optional).

``eval_sampler: {type: importance}`` renders (evaluation, ``neural3d render``, the viewer) with samples placed
by the field itself instead: on fern that is +0.3 dB on the test views and +1 dB on training pixels over the
grid sampler's placements (BENCHMARKS.md).

Every sampler goes through the same calls (``step_begin``, ``sample``, ``loss_dict``); ``forward`` returns
:class:`~neural3d.methods.base.ModelOutputs` and every loss (masked colour, interlevel, distortion) is
computed in :meth:`NGPModel.loss_dict`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neural3d.config import instantiate
from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.evaluation.metrics import mse_to_psnr
from neural3d.fields.ngp_field import NGPField
from neural3d.fields.perturb import ModelPerturbation, pass_field, pass_samples
from neural3d.losses import distortion_loss
from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.ngp.config import RENAMED_KEYS, NGPModelConfig
from neural3d.methods.registry import register_method
from neural3d.render import VolumeRenderer
from neural3d.render.inference import render_rays_marched
from neural3d.render.renderers import RenderOutputs
from neural3d.samplers.base import Sampler
from neural3d.samplers.config import build_sampler

__all__ = ["NGPModel", "NGPModelConfig", "RENAMED_KEYS"]

# state-dict prefixes of earlier versions -> now (one attribute per sampler strategy became ``sampler``)
_OLD_PREFIXES = {"grid.": "sampler.grid.", "occupancy.": "sampler.", "proposal.": "sampler."}


@register_method("ngp", NGPModelConfig)
class NGPModel(Model):
    def __init__(self, config: NGPModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        # the field's settings are the section's fields named like NGPField's parameters
        self.field = instantiate(NGPField, config, aabb=scene.scene_box, backend=config.hashgrid_backend)
        kw = {"aabb": scene.scene_box, "contraction": config.contraction, "hashgrid_backend": config.hashgrid_backend}
        self.sampler = build_sampler(config.sampler, **kw)
        self.eval_sampler = None if config.eval_sampler.type == "train" else build_sampler(config.eval_sampler, **kw)
        self.renderer = VolumeRenderer(opaque_far=scene.ndc if config.opaque_far is None else bool(config.opaque_far))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of earlier versions kept the sampler state under grid. / occupancy. / proposal.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix) :]
            for old, new in _OLD_PREFIXES.items():
                if rest.startswith(old):
                    state_dict[prefix + new + rest[len(old) :]] = state_dict.pop(key)
                    break
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def param_groups(self) -> dict[str, list]:
        enc = list(self.field.encoding.parameters()) + self.sampler.encoding_parameters()
        ids = {id(p) for p in enc}
        return {"encoding": enc, "network": [p for p in self.parameters() if id(p) not in ids]}

    def training_step_begin(self, step: int) -> None:
        self.sampler.step_begin(step, self.field)

    @property
    def active_sampler(self) -> Sampler:
        """The training sampler, or ``eval_sampler`` in eval mode when one is configured."""
        return self.sampler if self.training or self.eval_sampler is None else self.eval_sampler

    def perturbation_levels(self) -> frozenset[str]:
        return self.field.perturbation_levels

    def forward(self, rays: RayBundle, context: Any = None, perturb: ModelPerturbation | None = None) -> ModelOutputs:
        """One field pass (named ``field`` for ``perturb``, see :mod:`neural3d.methods.base`)."""
        sampler = self.active_sampler
        samples = pass_samples(perturb, "field", lambda: sampler.sample(rays, density_fn=self.field.density))
        field_perturb = pass_field(perturb, "field")
        if field_perturb is None:
            out = self.renderer(self.field(samples, context), samples, self.background)
        else:
            out = self.renderer(self.field(samples, context, perturb=field_perturb), samples, self.background)
        return marched_outputs(out, samples, rays, sampler, self.background)

    def render_rays(self, rays: RayBundle, chunk: int = 8192, context: Any = None) -> dict[str, Tensor]:
        """Without gradients, an occupancy sampler with ``render_fused`` renders through
        :func:`~neural3d.render.inference.render_rays_marched` (one density pass, early ray termination, colour
        where it shows: the same image to ``render_color_eps``); otherwise the chunked ``forward``."""
        fused = inference_render(self, rays, chunk)
        return super().render_rays(rays, chunk=chunk, context=context) if fused is None else fused

    def loss_dict(self, outputs: ModelOutputs, batch: Any) -> dict[str, Tensor]:
        """``loss_rgb`` (on ``loss_mask`` rays), the sampler's losses (interlevel), ``loss_distortion`` (if on)."""
        mask = outputs.loss_mask
        if mask is None:
            losses = {"loss_rgb": torch.mean((outputs.rgb - batch.rgb) ** 2)}
        else:
            losses = {"loss_rgb": torch.mean((outputs.rgb[mask] - batch.rgb[mask]) ** 2)}
        losses.update(self.sampler.loss_dict(outputs.samples, outputs.weights))
        mult = self.config.distortion_loss_mult
        if self.training and mult > 0 and isinstance(outputs.samples, RaySamples):
            edges = self.active_sampler.spacing_edges(outputs.samples)
            losses["loss_distortion"] = mult * distortion_loss(outputs.weights, edges)
        return losses

    def metrics_dict(self, outputs: ModelOutputs, batch: Any) -> dict[str, Tensor]:
        mask = outputs.loss_mask
        rgb, target = (outputs.rgb, batch.rgb) if mask is None else (outputs.rgb[mask], batch.rgb[mask])
        mse = torch.mean((rgb.detach() - target) ** 2)
        metrics = {"psnr": mse_to_psnr(mse.clamp_min(1e-10))}
        if outputs.samples is not None and not isinstance(outputs.samples, RaySamples):  # packed (marching)
            metrics["samples_per_ray"] = torch.tensor(float(outputs.samples.n_samples)) / max(len(rgb), 1)
            metrics["rays_used"] = torch.tensor(float(len(rgb)))
        return metrics


def inference_render(model: Model, rays: RayBundle, chunk: int) -> dict[str, Tensor] | None:
    """The fused render (:func:`~neural3d.render.inference.render_rays_marched`) of a model with ``active_sampler``,
    ``field``, ``renderer`` and ``background`` when it applies — eval, no gradients, an occupancy sampler with
    ``render_fused`` —, else None (the caller renders through ``forward``)."""
    sampler = model.active_sampler
    if model.training or torch.is_grad_enabled() or not getattr(sampler, "render_fused", False):
        return None
    return render_rays_marched(rays, sampler, model.field, model.renderer, model.background, chunk=chunk)


def marched_outputs(out: RenderOutputs, samples, rays: RayBundle, sampler, background: Tensor) -> ModelOutputs:
    """``ModelOutputs`` of a render of ``samples``: when the sampler skipped rays (``samples.ray_subset``), those
    show the background at ``far`` and, unless ``sampler.supervise_skipped_rays``, are left out of the loss."""
    if samples.ray_subset is None:
        return ModelOutputs(out.rgb, out.depth, out.opacity, samples=samples, weights=out.weights)
    rgb, depth, opacity = _scatter(out, samples.ray_subset, rays, background)
    mask = None
    if not sampler.supervise_skipped_rays:
        mask = torch.zeros(len(rays), dtype=torch.bool, device=rays.device).index_fill(0, samples.ray_subset, True)
    return ModelOutputs(rgb, depth, opacity, samples=samples, weights=out.weights, loss_mask=mask)


def _scatter(out: RenderOutputs, subset: Tensor, rays: RayBundle, background: Tensor) -> tuple[Tensor, ...]:
    """Per-ray outputs of the ``subset`` [k] rays -> all [n_rays]: the others show the background at ``far``."""
    n = len(rays)
    full = (
        background.to(out.rgb.dtype).expand(n, 3),
        rays.fars[:, None].to(out.depth.dtype),
        out.opacity.new_zeros(n, 1),
    )
    return tuple(f.clone().index_copy(0, subset, v) for f, v in zip(full, (out.rgb, out.depth, out.opacity)))
