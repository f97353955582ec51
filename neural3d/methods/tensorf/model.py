"""TensoRF method (``method: tensorf``): the vector-matrix field with the library's samplers and renderer.

Training schedule (all decided by the step, so ``--resume`` replays it exactly):

* ``upsample_steps``: the grids are resampled to the next node count of a log-linear schedule from
  ``n_voxels_init`` to ``n_voxels_final`` (TensoRF's ``N_voxel_list``), spread over the current box in
  proportion to its sides; the marching step follows (``step_ratio`` voxels).
* ``shrink_step``: the box shrinks to the nodes where the alpha of a ``step_ratio``-voxel step exceeds
  ``alpha_mask_thre`` (TensoRF's first alpha-mask update), and the L1 weight drops to ``l1_weight_rest``.

Resized parameters keep their ``nn.Parameter`` objects; the training loop drops their Adam moments
(:func:`~neural3d.training.optim.drop_resized_state`). Losses: the colour MSE (on the rays the sampler kept)
plus the L1 norm of the density planes and lines (``loss_l1``) and TensoRF's total variation of the density and
appearance planes (``loss_tv_density``, ``loss_tv_app``: weight x ``TV_SCALE`` x the sum of
:func:`~neural3d.fields.vm_decomposition.plane_tv` over the three planes, the weight decaying by ``tv_decay``
over ``tv_decay_steps`` as TensoRF's does with its learning rate).

The default sampler is occupancy marching (:mod:`neural3d.samplers.occupancy`): the grid is refreshed from the
field's density, empty cells are skipped and a gradient-free density pass drops samples behind opaque space, so
a training ray carries about a fifth of the samples of TensoRF's own sampler (BENCHMARKS.md); the field then
evaluates the appearance only where the compositing weight is above ``app_weight_thre``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.evaluation.metrics import mse_to_psnr
from neural3d.fields.tensorf_field import TensoRFField
from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.ngp.model import inference_render, marched_outputs
from neural3d.methods.registry import register_method
from neural3d.methods.tensorf.config import TensoRFModelConfig
from neural3d.render import VolumeRenderer
from neural3d.samplers.config import build_sampler

__all__ = ["TensoRFModel", "TensoRFModelConfig", "voxel_schedule", "resolution_for", "TV_SCALE"]

TV_SCALE = 1e-2
"""Factor on each plane's TV inside TensoRF's ``TV_loss_density`` / ``TV_loss_app`` (``models/tensoRF.py``)."""


def voxel_schedule(n_init: int, n_final: int, n_upsamples: int) -> list[int]:
    """Node counts after each of ``n_upsamples`` upsamplings: log-linear from ``n_init`` to ``n_final``."""
    if n_upsamples == 0:
        return []
    logs = torch.linspace(math.log(n_init), math.log(n_final), n_upsamples + 1, dtype=torch.float64)
    return [int(round(math.exp(v))) for v in logs[1:].tolist()]


def resolution_for(n_voxels: int, box: Tensor) -> list[int]:
    """Nodes per axis so that about ``n_voxels`` cubic voxels fill ``box`` [2, 3] (TensoRF's ``N_to_reso``)."""
    size = (box[1] - box[0]).double()
    voxel = (size.prod() / n_voxels) ** (1.0 / 3.0)
    return [max(int(s + 1e-6), 2) for s in (size / voxel).tolist()]


@register_method("tensorf", TensoRFModelConfig)
class TensoRFModel(Model):
    def __init__(self, config: TensoRFModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        box = scene.scene_box.float()
        self.field = TensoRFField(
            aabb=box,
            resolution=resolution_for(config.n_voxels_init, box),
            density_components=list(config.density_components),
            app_components=list(config.app_components),
            app_dim=config.app_dim,
            density_shift=config.density_shift,
            distance_scale=config.distance_scale,
            init_scale=config.init_scale,
            view_pe=config.view_pe,
            feature_pe=config.feature_pe,
            hidden_dim=config.hidden_dim,
            app_weight_thre=config.app_weight_thre,
            density_activation=config.density_activation,
            vm_backend=config.vm_backend,
        )
        self.sampler = build_sampler(config.sampler, aabb=box)
        self.eval_sampler = (
            None if config.eval_sampler.type == "train" else build_sampler(config.eval_sampler, aabb=box)
        )
        self.renderer = VolumeRenderer(opaque_far=scene.ndc if config.opaque_far is None else bool(config.opaque_far))
        self.voxel_counts = voxel_schedule(config.n_voxels_init, config.n_voxels_final, len(config.upsample_steps))
        self._sync_step_size()
        self.register_load_state_dict_post_hook(lambda module, keys: module._sync_step_size())

    # ------------------------------------------------------------------ schedule
    def voxel_size(self) -> float:
        """Mean node spacing of the field's grids over its current box (TensoRF's ``mean(units)``)."""
        res = torch.tensor(self.field.density_grid.resolution, dtype=torch.float64)
        size = (self.field.aabb[1] - self.field.aabb[0]).double()
        return float((size / (res - 1)).mean())

    def _sync_step_size(self) -> None:
        """Marching step = ``step_ratio`` voxels (occupancy sampler only; ``step_ratio`` 0 keeps its own)."""
        if self.config.step_ratio > 0:
            for sampler in (self.sampler, self.eval_sampler):
                if sampler is not None and hasattr(sampler, "step_size"):
                    sampler.step_size = self.config.step_ratio * self.voxel_size()

    def l1_weight(self, step: int) -> float:
        """Weight of the density L1 norm at ``step``: ``l1_weight_initial`` before ``shrink_step``, then the rest."""
        shrink = self.config.shrink_step
        return self.config.l1_weight_rest if 0 < shrink <= step else self.config.l1_weight_initial

    def tv_weights(self, step: int) -> tuple[float, float]:
        """(density, appearance) TV weights at ``step``: ``tv_weight_* x tv_decay ** ((step + 1) / tv_decay_steps)``
        (TensoRF multiplies them by its learning-rate factor before each iteration); no decay when
        ``tv_decay_steps`` is None (a config built without a trainer section)."""
        cfg = self.config
        decay = 1.0 if not cfg.tv_decay_steps else cfg.tv_decay ** ((step + 1) / cfg.tv_decay_steps)
        return cfg.tv_weight_density * decay, cfg.tv_weight_app * decay

    def training_step_begin(self, step: int) -> None:
        if step in self.config.upsample_steps:
            n_voxels = self.voxel_counts[list(self.config.upsample_steps).index(step)]
            self.field.upsample(resolution_for(n_voxels, self.field.aabb))
            self._sync_step_size()
        if step > 0 and step == self.config.shrink_step:
            self.field.shrink(self.occupied_box())
            self._sync_step_size()
        self._step = step
        self.sampler.step_begin(step, self.field)

    @torch.no_grad()
    def occupied_box(self, chunk: int = 1 << 18) -> Tensor:
        """[2, 3] box of the grid nodes whose alpha over a ``step_ratio``-voxel step exceeds ``alpha_mask_thre``.

        The whole current box when no node does (nothing to shrink to yet)."""
        res = self.field.density_grid.resolution
        lo, hi = self.field.aabb[0], self.field.aabb[1]
        axes = [torch.linspace(float(lo[i]), float(hi[i]), res[i], device=lo.device) for i in range(3)]
        points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        step = (self.config.step_ratio if self.config.step_ratio > 0 else 0.5) * self.voxel_size()
        alpha = torch.cat([1 - torch.exp(-self.field.density(p)[:, 0] * step) for p in points.split(chunk)])
        occupied = points[alpha > self.config.alpha_mask_thre]
        if len(occupied) == 0:
            return self.field.aabb.clone()
        return torch.stack([occupied.amin(0), occupied.amax(0)])

    # ------------------------------------------------------------------ model interface
    def param_groups(self) -> dict[str, list]:
        grids = self.field.grid_parameters()
        ids = {id(p) for p in grids}
        return {"encoding": grids, "network": [p for p in self.parameters() if id(p) not in ids]}

    def lr_scales(self) -> dict[str, float]:
        return {"network": self.config.network_lr_scale}

    @property
    def active_sampler(self):
        """The training sampler, or ``eval_sampler`` in eval mode when one is configured."""
        return self.sampler if self.training or self.eval_sampler is None else self.eval_sampler

    def forward(self, rays: RayBundle, context: Any = None) -> ModelOutputs:
        sampler = self.active_sampler
        samples = sampler.sample(rays, density_fn=self.field.density)
        out = self.renderer(self.field(samples, context), samples, self.background)
        return marched_outputs(out, samples, rays, sampler, self.background)

    def render_rays(self, rays: RayBundle, chunk: int = 8192, context: Any = None) -> dict[str, Tensor]:
        """Without gradients, an occupancy sampler with ``render_fused`` renders through
        :func:`~neural3d.render.inference.render_rays_marched` (one density pass, early ray termination, colour of
        every kept sample); otherwise the chunked ``forward`` (colour where the weight exceeds ``app_weight_thre``)."""
        fused = inference_render(self, rays, chunk)
        return super().render_rays(rays, chunk=chunk, context=context) if fused is None else fused

    def density_l1(self) -> Tensor:
        """Sum over modes of the mean absolute value of the density plane and of the density line."""
        grid = self.field.density_grid
        return sum(p.abs().mean() + v.abs().mean() for p, v in zip(grid.planes, grid.lines))

    def loss_dict(self, outputs: ModelOutputs, batch: Any) -> dict[str, Tensor]:
        """``loss_rgb`` (MSE on the ``loss_mask`` rays) and, in training, ``loss_l1`` (density planes and lines),
        ``loss_tv_density`` and ``loss_tv_app`` (planes) when their weights are positive."""
        mask = outputs.loss_mask
        rgb, target = (outputs.rgb, batch.rgb) if mask is None else (outputs.rgb[mask], batch.rgb[mask])
        losses = {"loss_rgb": torch.mean((rgb - target) ** 2)}
        if not self.training:
            return losses
        step = getattr(self, "_step", 0)
        weight = self.l1_weight(step)
        if weight > 0:
            losses["loss_l1"] = weight * self.density_l1()
        tv_density, tv_app = self.tv_weights(step)
        if tv_density > 0:
            losses["loss_tv_density"] = tv_density * TV_SCALE * self.field.density_grid.plane_tv()
        if tv_app > 0:
            losses["loss_tv_app"] = tv_app * TV_SCALE * self.field.app_grid.plane_tv()
        return losses

    def metrics_dict(self, outputs: ModelOutputs, batch: Any) -> dict[str, Tensor]:
        mask = outputs.loss_mask
        rgb, target = (outputs.rgb, batch.rgb) if mask is None else (outputs.rgb[mask], batch.rgb[mask])
        metrics = {"psnr": mse_to_psnr(torch.mean((rgb.detach() - target) ** 2).clamp_min(1e-10))}
        if outputs.samples is not None and not isinstance(outputs.samples, RaySamples):
            metrics["samples_per_ray"] = torch.tensor(float(outputs.samples.n_samples)) / max(len(rgb), 1)
        return metrics
