"""Instant-NGP-style method: a hash-grid field with cheap, density-guided sampling.

Samplers (``model.sampler``):

* ``grid`` (default): a cached density grid (refreshed from the field every ``grid_update_every``
  steps) marks which of ``n_coarse`` stratified bins per ray are occupied; ``n_samples`` intervals are
  spread over the occupied bins (plus ``n_uniform`` stratified ones) and evaluated with gradients.
  Rays that meet no occupied cell show the background without running the field.
* ``importance``: the same, but the scores come from a gradient-free pass of the field itself.
* ``uniform``: ``n_samples`` stratified samples evaluated directly.
* ``occupancy``: instant-ngp / nerfacc marching: a cascaded binary occupancy grid (refreshed from
  ``density * step_size``) and fixed (or cone-angle growing) steps give a variable number of samples
  per ray in the packed layout; a gradient-free density pass drops samples behind opaque space
  (``early_stop_eps``) or of negligible opacity (``alpha_thre``) before the field runs with gradients.
* ``proposal``: mip-NeRF 360 proposal networks (small hash grids) resample each ray in rounds; the
  field runs on the last ``n_samples``; the interlevel loss trains the proposals (distortion optional).

``eval_sampler="importance"`` renders (evaluation, ``neural3d render``, the viewer) with samples placed
by the field itself instead: on fern that is +0.3 dB on the test views and +1 dB on training pixels over the
grid sampler's placements (BENCHMARKS.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle
from neural3d.fields.base import FieldOutputs
from neural3d.fields.ngp_field import NGPField
from neural3d.losses import distortion_loss, interlevel_loss
from neural3d.methods.base import Model, SceneInfo
from neural3d.methods.registry import register_method
from neural3d.render import VolumeRenderer
from neural3d.render.volume import render_weights_from_density
from neural3d.samplers import PDFSampler, UniformSampler
from neural3d.samplers.density_grid import DensityGrid, GridImportanceSampler

SAMPLERS = ("grid", "importance", "uniform", "occupancy", "proposal")


@dataclass
class NGPModelConfig:
    sampler: str = "grid"  # grid | importance | uniform | occupancy | proposal
    n_samples: int = 32  # samples evaluated with gradients, per ray
    n_coarse: int = 128  # scored samples per ray for grid / importance sampling
    n_uniform: int = 8  # grid sampler: stratified samples per ray merged with the importance samples
    lindisp: bool = False
    grid_resolution: int = 64
    grid_update_every: int = 16
    grid_decay: float = 0.9  # per update; instant-ngp's 0.95 clears empty space too slowly for short runs
    grid_warmup_updates: int = 16  # first updates evaluate and replace every cell
    grid_threshold: float = 0.01  # rays meeting no grid density above this skip the field (background)
    grid_weighting: str = "occupancy"  # grid sampler: occupancy (even over occupied bins) | density (grid weights)
    # occupancy sampler (grid_resolution, grid_update_every, grid_decay, grid_warmup_updates apply too)
    step_size: float = 0.0  # marching step in world units (0: box diagonal / 512)
    cone_angle: float = 0.0  # step growth with distance (instant-ngp: 1/256 for unbounded scenes)
    occ_levels: int = 1  # cascade levels (level i covers the box scaled by 2**i)
    occ_threshold: float = 0.01  # occupancy = density * step_size above min(this, mean) marks a cell
    early_stop_eps: float = 1e-4  # drop samples where transmittance < this (0: off)
    alpha_thre: float = 0.0  # drop samples with alpha < this (0: off)
    target_samples: int = 1 << 16  # training: cap marched samples per step by keeping a prefix of the rays (0: off)
    marching_backend: str = "auto"  # auto | torch | nerfacc
    # proposal sampler (n_samples = field samples per ray)
    proposal_samples: list[int] = field(default_factory=lambda: [64, 32])  # samples per proposal round
    proposal_max_resolutions: list[int] = field(default_factory=lambda: [128, 256])  # one per round
    proposal_n_levels: int = 5
    proposal_log2_hashmap_size: int = 17
    proposal_hidden_dim: int = 16
    proposal_spacing: str = "uniform"  # uniform | lindisp | contracted (unbounded)
    proposal_spacing_pivot: float = 1.0  # contracted: t where spacing turns from linear to disparity
    proposal_histogram_padding: float = 0.01
    proposal_anneal_steps: int = 1000  # weights ** anneal, anneal 0 -> 1 over these steps
    proposal_anneal_slope: float = 10.0
    proposal_update_every: int = 5  # after the warm-up, proposals get gradients every k-th step
    proposal_update_warmup: int = 5000
    interlevel_loss_mult: float = 1.0
    distortion_loss_mult: float = 0.0  # any sampler; mip-NeRF 360 uses 0.01, nerfacto 0.002 (unbounded scenes)
    opaque_far: bool | None = None  # last sample's interval 1e10 long (original NeRF); None: on for NDC scenes
    # evaluation / rendering: train (the training sampler) | importance (the field's own weights on eval_n_coarse
    # stratified samples -> eval_n_fine more by PDF, all evaluated: NeRF's hierarchical sampling with one field)
    eval_sampler: str = "train"
    eval_n_coarse: int = 64
    eval_n_fine: int = 64
    hashgrid_backend: str = "auto"  # auto | torch | cpu | tcnn | triton (field and proposal grids)
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
        if config.sampler not in SAMPLERS:
            raise ValueError(f"model.sampler must be one of {SAMPLERS}, got '{config.sampler}'")
        if config.eval_sampler not in ("train", "importance"):
            raise ValueError(f"model.eval_sampler must be 'train' or 'importance', got '{config.eval_sampler}'")
        self.field = NGPField(
            aabb=scene.scene_box,
            contraction=config.contraction,
            n_levels=config.n_levels,
            n_features_per_level=config.n_features_per_level,
            log2_hashmap_size=config.log2_hashmap_size,
            base_resolution=config.base_resolution,
            max_resolution=config.max_resolution,
            hidden_dim=config.hidden_dim,
            geo_feat_dim=config.geo_feat_dim,
            sh_degree=config.sh_degree,
            backend=config.hashgrid_backend,
        )
        if config.sampler == "grid":
            self.grid = DensityGrid(
                resolution=config.grid_resolution, decay=config.grid_decay, warmup_updates=config.grid_warmup_updates
            )
            self.grid_sampler = GridImportanceSampler(
                n_coarse=config.n_coarse,
                n_samples=config.n_samples,
                n_uniform=config.n_uniform,
                threshold=config.grid_threshold,
                lindisp=config.lindisp,
                weighting=config.grid_weighting,
            )
        if config.sampler == "occupancy":
            from neural3d.samplers.occupancy import OccupancySampler

            self.occupancy = OccupancySampler(
                aabb=scene.scene_box,
                resolution=config.grid_resolution,
                levels=config.occ_levels,
                step_size=config.step_size,
                cone_angle=config.cone_angle,
                threshold=config.occ_threshold,
                decay=config.grid_decay,
                warmup_updates=config.grid_warmup_updates,
                early_stop_eps=config.early_stop_eps,
                alpha_thre=config.alpha_thre,
                backend=config.marching_backend,
            )
        if config.sampler == "proposal":
            self.proposal = _proposal_sampler(config, scene)
        n_first = config.n_samples if config.sampler == "uniform" else config.n_coarse
        self.coarse_sampler = UniformSampler(n_samples=n_first, lindisp=config.lindisp)
        self.pdf_sampler = PDFSampler(n_samples=config.n_samples, include_input=False)
        self.eval_coarse = UniformSampler(n_samples=config.eval_n_coarse, lindisp=config.lindisp)
        self.eval_pdf = PDFSampler(n_samples=config.eval_n_fine, include_input=True)
        self.renderer = VolumeRenderer(opaque_far=scene.ndc if config.opaque_far is None else bool(config.opaque_far))
        self._warned_empty = False

    def param_groups(self) -> dict[str, list]:
        enc = list(self.field.encoding.parameters())
        if self.config.sampler == "proposal":
            enc += self.proposal.encoding_parameters()
        ids = {id(p) for p in enc}
        return {"encoding": enc, "network": [p for p in self.parameters() if id(p) not in ids]}

    def training_step_begin(self, step: int) -> None:
        if self.config.sampler == "proposal":
            self.proposal.training_step_begin(step)
        if step % self.config.grid_update_every != 0:
            return
        if self.config.sampler == "grid":
            self.grid.update(self.field.unit_density)
        elif self.config.sampler == "occupancy":
            self.occupancy.update_grid(self.field.density)

    def sample(self, rays: RayBundle):
        """[n_rays] rays -> ([n_rays, n_samples] samples for the field, [k] indices of rays worth rendering)."""
        if self.config.sampler == "grid":
            samples, hit = self.grid_sampler(rays, self.grid, self.field.normalized_positions)
            active = hit.nonzero()[:, 0]
            if active.numel() == 0 and self.training:
                # An all-empty grid (bad box, threshold too high, density collapsed) would train on
                # nothing; fall back to every ray so the field still gets gradients, and say so.
                if not self._warned_empty:
                    warnings.warn(
                        f"density grid marks every ray of the batch empty (grid_threshold="
                        f"{self.config.grid_threshold}, max cached density {float(self.grid.values.max()):.3g});"
                        " training on all rays instead. Check the scene box / grid_threshold.",
                        stacklevel=2,
                    )
                    self._warned_empty = True
                active = torch.arange(len(rays), device=rays.device)
            return samples.select(active), active
        samples = self.coarse_sampler(rays)
        if self.config.sampler == "importance":
            samples = self.pdf_sampler(samples, self._field_weights(samples))
        return samples, None

    @torch.no_grad()
    def _field_weights(self, samples) -> Tensor:
        """[n_rays, n] compositing weights of the field's density on ``samples`` (gradient-free)."""
        density = self.field.density(samples.positions)[..., 0]
        return render_weights_from_density(
            density, samples.deltas * torch.linalg.norm(samples.rays.directions, dim=-1, keepdim=True)
        )

    def field_importance_samples(self, rays: RayBundle):
        """[n_rays] -> [n_rays, eval_n_coarse + eval_n_fine + 1] samples placed by the field's own weights."""
        coarse = self.eval_coarse(rays)
        return self.eval_pdf(coarse, self._field_weights(coarse))

    def forward(self, rays: RayBundle, context: Any = None) -> dict[str, Tensor]:
        if not self.training and self.config.eval_sampler == "importance":
            samples, active = self.field_importance_samples(rays), None
        elif self.config.sampler == "occupancy":
            return self._forward_packed(rays)
        elif self.config.sampler == "proposal":
            return self._forward_proposal(rays)
        else:
            samples, active = self.sample(rays)
        density, rgb = self.field.query(samples.positions, samples.viewdirs)
        out = self.renderer(FieldOutputs(density=density, rgb=rgb), samples, self.background)
        result = {"rgb": out.rgb, "depth": out.depth, "opacity": out.opacity}
        if self.training and self.config.distortion_loss_mult > 0:
            result["loss_distortion"] = self.config.distortion_loss_mult * distortion_loss(
                out.weights, _normalized_spacing(samples)
            )
        if active is None:
            return result
        # Rays the grid calls empty show the background: scatter the rendered subset into full outputs.
        n = len(rays)
        full = {
            "rgb": self.background.to(out.rgb.dtype).expand(n, 3),
            "depth": rays.fars[:, None].to(out.depth.dtype),
            "opacity": out.opacity.new_zeros(n, 1),
        }
        return {k: full[k].clone().index_copy(0, active, v) if k in full else v for k, v in result.items()}

    def _forward_packed(self, rays: RayBundle) -> dict[str, Tensor]:
        budget = self.config.target_samples if self.training else 0
        samples, keep = self.occupancy(rays, self.field.density, training=self.training, budget=budget)
        density, rgb = self.field.query(samples.positions, samples.viewdirs)
        out = self.renderer(FieldOutputs(density=density, rgb=rgb), samples, self.background)
        result = {
            "rgb": out.rgb,
            "depth": out.depth,
            "opacity": out.opacity,
            "n_samples": torch.tensor(float(samples.n_samples)),
        }
        if keep is not None:
            result["ray_mask"] = keep
        return result

    def _forward_proposal(self, rays: RayBundle) -> dict[str, Tensor]:
        samples, rounds = self.proposal(rays)
        density, rgb = self.field.query(samples.positions, samples.viewdirs)
        out = self.renderer(FieldOutputs(density=density, rgb=rgb), samples, self.background)
        result = {"rgb": out.rgb, "depth": out.depth, "opacity": out.opacity}
        c = self.config
        if self.training and rounds[0].weights.requires_grad:  # proposals learn on this step
            result["loss_interlevel"] = c.interlevel_loss_mult * interlevel_loss(rounds, samples.edges, out.weights)
        if self.training and c.distortion_loss_mult > 0:
            result["loss_distortion"] = c.distortion_loss_mult * distortion_loss(
                out.weights, self.proposal.spacing(samples)
            )
        return result

    def loss_dict(self, outputs: dict[str, Tensor], batch: Any) -> dict[str, Tensor]:
        mask = outputs.get("ray_mask")
        if mask is None:
            losses = {f"loss_{k}": torch.mean((v - batch.rgb) ** 2) for k, v in outputs.items() if k == "rgb"}
        else:
            losses = {"loss_rgb": torch.mean((outputs["rgb"][mask] - batch.rgb[mask]) ** 2)}
        losses.update({k: v for k, v in outputs.items() if k.startswith("loss_")})
        return losses

    def metrics_dict(self, outputs: dict[str, Tensor], batch: Any) -> dict[str, Tensor]:
        mask = outputs.get("ray_mask")
        rgb, target = (outputs["rgb"], batch.rgb) if mask is None else (outputs["rgb"][mask], batch.rgb[mask])
        mse = torch.mean((rgb.detach() - target) ** 2)
        metrics = {"psnr": -10.0 * torch.log10(mse.clamp_min(1e-10))}
        if "n_samples" in outputs:
            metrics["samples_per_ray"] = outputs["n_samples"] / max(len(rgb), 1)
            metrics["rays_used"] = torch.tensor(float(len(rgb)))
        return metrics


def _normalized_spacing(samples) -> Tensor:
    """[n_rays, n + 1] interval edges mapped to [0, 1] between each ray's near and far (NDC: t itself)."""
    near, far = samples.rays.nears[:, None], samples.rays.fars[:, None]
    return (samples.edges - near) / (far - near).clamp_min(1e-10)


def _proposal_sampler(c: NGPModelConfig, scene: SceneInfo):
    from neural3d.samplers.proposal import ProposalSampler

    if len(c.proposal_max_resolutions) != len(c.proposal_samples):
        raise ValueError(
            f"model.proposal_max_resolutions needs one entry per round of model.proposal_samples "
            f"({list(c.proposal_samples)}), got {list(c.proposal_max_resolutions)}"
        )
    return ProposalSampler(
        aabb=scene.scene_box,
        n_samples=c.n_samples,
        n_proposal_samples=tuple(c.proposal_samples),
        spacing=c.proposal_spacing,
        spacing_pivot=c.proposal_spacing_pivot,
        contraction=c.contraction,
        proposal_max_resolutions=tuple(c.proposal_max_resolutions),
        proposal_n_levels=c.proposal_n_levels,
        proposal_log2_hashmap_size=c.proposal_log2_hashmap_size,
        proposal_hidden_dim=c.proposal_hidden_dim,
        histogram_padding=c.proposal_histogram_padding,
        anneal_steps=c.proposal_anneal_steps,
        anneal_slope=c.proposal_anneal_slope,
        update_every=c.proposal_update_every,
        update_warmup=c.proposal_update_warmup,
        backend=c.hashgrid_backend,
    )
