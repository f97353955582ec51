"""SinNeRF as a training strategy over the shared interface (Xu et al., ECCV 2022; ``sinnerf:`` section).

:class:`SinNeRF` holds the reference view (image, camera, depth), the unseen-pose sampler, the optional DINO
network and the optional patch discriminator. One step of ``SceneTask`` with it (``step`` 0-based):

1. reference rays (the ``RayLoader`` of a train split holding only the reference view): the model's own loss
   ``sum(model.loss_dict)`` plus ``geometry.reference_depth x smoothL1(depth, reference depth)`` on rays of known
   depth;
2. one unseen camera (:mod:`.views`), the reference RGB-D forward-warped into it with a z-buffer and holes
   (:func:`neural3d.core.warp.forward_warp`), a strided ``patch.size``^2 patch of it chosen where the warp holds
   pixels, rendered by the model; on it: ``warp_depth x smoothL1`` and ``warp_rgb x MSE`` on non-hole pixels,
   ``smoothness x`` edge-aware depth smoothness, ``semantic.weight x MSE(DINO [CLS] of the patch, reference
   [CLS])`` and ``texture.weight x (-mean D(patch))``;
3. after the model's update the loop steps the discriminator's own optimizer (``auxiliary_loss``): hinge loss on
   a random reference patch (real, same size and stride) against the step's rendered patch (detached).

Stages (``schedule``): before ``stage2_step`` the texture term is off (unless ``stage1_texture``), from it the
semantic term is off (unless ``stage2_semantic``) and patches use ``stage2_stride``. Terms of weight 0 cost
nothing; with every patch weight 0 no patch is rendered (plain single-view training).

Data-parallel (torchrun; :meth:`SinNeRF.shard`): the reference rays are the ray loader's shards of the global
``trainer.batch_size``; every rank draws the same unseen camera, patch and reference patch from :attr:`generator`
(seeded by ``sinnerf.seed``, advanced by the same draws on every rank, checkpointed: identical by construction,
on any world size), renders its contiguous share of the patch's rays (equal shares, the last padded) and
receives the whole rendered patch through a differentiable all-gather; every patch term (depth, colour,
smoothness, DINO, the generator's hinge loss) is then computed on the whole patch, identically on every rank,
and the all-gather's backward sums the ranks' gradients into each rank's rays, so the loop's gradient average
is one process's gradient. The DINO network and the discriminator run on every rank (the same inputs: the
price of identical terms without another collective). The discriminator's gradients are averaged like the
model's (the loop's auxiliary step), so its weights and Adam state stay identical; its DiffAugment draws from
the per-rank stream, so with ``texture.augment_prob > 0`` each rank augments differently and the averaged
discriminator gradient is that of ``W`` augmentations (one process: one). Schedules and pose spreads are
functions of the step.

Differences from the official code (``models/sinnerf.py``): depth losses supervise the final ``depth`` only (not
coarse and fine) and only where the reference depth is known (the official Blender code also pulls the rendered
depth of background pixels to 0); the discriminator sees the fake patch rendered for the generator step
(Lightning re-renders it); the forward warp has a z-buffer; the official extra patch of the reference view is
not rendered (the reference rays carry colour and depth); its learning-rate drop for stage 2 (a new run at
lr / 4) is left to ``trainer.optim``.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neural3d.config import ConfigError
from neural3d.core.warp import forward_warp
from neural3d.data.scene import SceneData
from neural3d.training import distributed as dist
from neural3d.training.sinnerf.depth_source import reference_depth
from neural3d.training.sinnerf.discriminator import (
    PatchDiscriminator,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from neural3d.training.sinnerf.losses import edge_aware_smoothness, masked_mse, masked_smooth_l1
from neural3d.training.sinnerf.views import choose_patch, patch_pixels, patch_rays, sample_unseen_camera


def single_view_scene(scene: SceneData, reference_view: int) -> tuple[SceneData, int]:
    """(the scene with a train split of the reference alone, the reference's image index in the scene)."""
    train = scene.split_indices("train", nonempty=True)
    if not 0 <= reference_view < train.numel():
        raise ConfigError(f"sinnerf.reference_view={reference_view}: the train split has {train.numel()} images")
    index = int(train[reference_view])
    splits = {**scene.splits, "train": train[reference_view : reference_view + 1]}
    return replace(scene, splits=splits), index


class SinNeRF:
    """The strategy (see the module docstring).

    Args:
        cfg: the ``sinnerf`` section (:class:`~neural3d.training.sinnerf.config.SinNeRFConfig`).
        scene: the loaded scene (on its training device; not NDC).
        index: the reference's image index in ``scene``.
    """

    def __init__(self, cfg: Any, scene: SceneData, index: int) -> None:
        if scene.ndc:
            raise ConfigError(
                "sinnerf: NDC scenes are not supported yet (warping needs world depth): set data.ndc=false"
            )
        self.cfg, self.scene, self.index = cfg, scene, index
        self.device = scene.device
        self.camera = scene.cameras[index]
        self.image = scene.images[index]  # [H, W, 3]
        self.depth = reference_depth(scene, index, cfg.depth).to(self.device)  # [H, W]
        if not bool((self.depth > 0).any()):
            raise ConfigError("sinnerf: the reference depth is 0 everywhere (nothing to warp)")
        self.pivot = self._pivot()
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        self.dino = self._build_dino()
        self.reference_feature: Tensor | None = None
        self.discriminator = self._build_discriminator()
        self._fake: Tensor | None = None
        self.rank, self.world_size = 0, 1  # data-parallel: see shard

    def shard(self, rank: int, world_size: int) -> None:
        """Data-parallel: render share ``rank`` of ``world_size`` of every unseen patch (the module docstring)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"bad rank {rank} of world size {world_size}")
        self.rank, self.world_size = rank, world_size

    # ------------------------------------------------------------------ construction
    def _pivot(self) -> Tensor:
        if self.cfg.poses.pivot == "world_origin":
            return torch.zeros(3, device=self.device)
        c2w = self.camera.camera_to_worlds[0]
        median = self.depth[self.depth > 0].median()
        return c2w[:, 3] - median * c2w[:, 2]  # the camera looks down -z

    def _build_dino(self):
        sem = self.cfg.semantic
        if sem.weight <= 0:
            return None
        if not sem.weights:
            warnings.warn(
                "sinnerf: semantic term off (sinnerf.semantic.weights is not set; DINO weights are never downloaded)",
                stacklevel=3,
            )
            return None
        if sem.input_size % 16:
            raise ConfigError(f"sinnerf.semantic.input_size={sem.input_size} must be a multiple of 16")
        from neural3d.training.sinnerf.dino import load_dino

        return load_dino(sem.weights).to(self.device)

    def _build_discriminator(self) -> PatchDiscriminator | None:
        tex = self.cfg.texture
        sched = self.cfg.schedule
        if tex.weight <= 0 or (sched.stage2_step < 0 and not sched.stage1_texture):
            return None
        return PatchDiscriminator(size=self.cfg.patch.size, channels=tex.channels, augment_prob=tex.augment_prob).to(
            self.device
        )

    # ------------------------------------------------------------------ schedule
    def terms(self, step: int) -> dict[str, float]:
        """Weights of the patch terms at ``step`` (0: off)."""
        g, sched = self.cfg.geometry, self.cfg.schedule
        stage2 = 0 <= sched.stage2_step <= step
        texture_on = self.discriminator is not None and (stage2 or sched.stage1_texture)
        semantic_on = self.dino is not None and (not stage2 or sched.stage2_semantic)
        return {
            "warp_depth": g.warp_depth,
            "warp_rgb": g.warp_rgb,
            "smoothness": g.smoothness,
            "semantic": self.cfg.semantic.weight if semantic_on else 0.0,
            "texture": self.cfg.texture.weight if texture_on else 0.0,
        }

    def stride(self, step: int) -> int:
        sched = self.cfg.schedule
        if 0 <= sched.stage2_step <= step and sched.stage2_stride > 0:
            return sched.stage2_stride
        return self.cfg.patch.stride

    def spread(self, step: int) -> float:
        """Progressive factor of the pose spreads: ``min(1, (step + 1) / warmup_steps)``."""
        w = self.cfg.poses.warmup_steps
        return 1.0 if w <= 0 else min(1.0, (step + 1) / w)

    # ------------------------------------------------------------------ one step
    def loss(self, model, batch, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, detached metrics) of one step: reference rays, then one unseen patch (module docstring)."""
        outputs = model(batch.rays, getattr(batch, "context", None))
        loss = sum(model.loss_dict(outputs, batch).values())
        metrics = {k: v.detach() for k, v in model.metrics_dict(outputs, batch).items()}
        w_ref = self.cfg.geometry.reference_depth
        if w_ref > 0:
            ref_depth = self._reference_depth_loss(outputs.depth, batch.rays.pixels)
            loss = loss + w_ref * ref_depth
            metrics["ref_depth"] = ref_depth.detach()
        self._fake = None
        terms = self.terms(step)
        if any(w > 0 for w in terms.values()):
            patch_loss, patch_metrics = self._patch_loss(model, step, terms)
            loss = loss + patch_loss
            metrics.update(patch_metrics)
        return loss, metrics

    def _reference_depth_loss(self, depth: Tensor, pixels: Tensor) -> Tensor:
        """Smooth-L1 between ``depth`` [n_rays, 1] and the reference depth at ``pixels`` [n_rays, 2], averaged over
        the rays of known depth of the whole (global) batch.

        Data-parallel: the ranks' rays hold different numbers of known depths, so each rank divides its sum by
        the global count (one all-reduce) and multiplies by ``W``: the loop's gradient average is then one
        process's gradient, and the mean of the logged values one process's value.
        """
        target = self.depth[pixels[:, 1], pixels[:, 0]][:, None]
        known = target > 0
        if self.world_size == 1:
            return masked_smooth_l1(depth, target, known)
        total = dist.sum_over_ranks(known.sum().to(depth.dtype)).clamp(min=1.0)
        part = F.smooth_l1_loss(depth[known], target[known], reduction="sum")
        return part * (self.world_size / total)

    def _patch_loss(self, model, step: int, terms: dict[str, float]) -> tuple[Tensor, dict[str, Tensor]]:
        cfg, size, stride = self.cfg, self.cfg.patch.size, self.stride(step)
        s = self.spread(step)
        camera = sample_unseen_camera(
            self.camera,
            self.pivot,
            angle_std=cfg.poses.angle_std * s,
            max_angle=cfg.poses.max_angle * s,
            translation_std=cfg.poses.translation_std * s,
            generator=self.generator,
        )
        warp = forward_warp(
            self.image,
            self.depth,
            self.camera,
            camera,
            pixel_center=self.scene.pixel_center,
            radius=cfg.geometry.radius,
            depth_tolerance=cfg.geometry.depth_tolerance,
        )
        x0, y0 = choose_patch(warp.mask, size, stride, cfg.patch.min_valid, self.generator)
        px = patch_pixels(x0, y0, size, stride, device=self.device)
        rays = patch_rays(camera, px, self.scene.near, self.scene.far, self.scene.pixel_center, self.index)
        rgb, depth = self._render_patch(model, rays.flatten())
        rgb = rgb.reshape(size, size, 3).permute(2, 0, 1)[None]  # [1, 3, size, size]
        depth = depth.reshape(size, size)[None, None]
        mask = warp.mask[px[..., 1], px[..., 0]][None, None]
        loss = rgb.sum() * 0.0
        metrics: dict[str, Tensor] = {"warp_valid": mask.float().mean()}
        if terms["warp_depth"] > 0:
            target = warp.depth[px[..., 1], px[..., 0]][None, None]
            metrics["warp_depth"] = masked_smooth_l1(depth, target, mask)
            loss = loss + terms["warp_depth"] * metrics["warp_depth"]
        if terms["warp_rgb"] > 0:
            target = warp.rgb[px[..., 1], px[..., 0]].permute(2, 0, 1)[None]
            metrics["warp_rgb"] = masked_mse(rgb, target, mask)
            loss = loss + terms["warp_rgb"] * metrics["warp_rgb"]
        if terms["smoothness"] > 0:
            metrics["smoothness"] = edge_aware_smoothness(depth, rgb)
            loss = loss + terms["smoothness"] * metrics["smoothness"]
        real = self._reference_patch(size, stride) if (terms["semantic"] > 0 or self.discriminator) else None
        if terms["semantic"] > 0:
            metrics["semantic"] = self._semantic_loss(rgb, real)
            loss = loss + terms["semantic"] * metrics["semantic"]
        if terms["texture"] > 0:
            metrics["texture_g"] = hinge_generator_loss(self.discriminator(rgb))
            loss = loss + terms["texture"] * metrics["texture_g"]
            self._fake, self._real = rgb.detach(), real
        return loss, {k: v.detach() for k, v in metrics.items()}

    def _render_patch(self, model, rays) -> tuple[Tensor, Tensor]:
        """[n_rays, 3] colours and [n_rays, 1] depths of the patch's rays [n_rays].

        Data-parallel: this rank renders its contiguous share of the rays and every rank receives the whole
        patch (:func:`~neural3d.training.distributed.gather_shards`, differentiable), on which every patch term
        is computed identically.
        """
        if self.world_size == 1:
            out = model(rays)
            return out.rgb, out.depth
        n = len(rays)
        out = model(rays[dist.padded_shard(n, self.rank, self.world_size, device=rays.origins.device)])
        whole = dist.gather_shards(torch.cat([out.rgb, out.depth.to(out.rgb.dtype)], -1), n)
        return whole[:, :3], whole[:, 3:]

    def _reference_patch(self, size: int, stride: int) -> Tensor:
        """A random strided patch of the reference image: [1, 3, size, size]."""
        x0, y0 = choose_patch(torch.ones_like(self.depth, dtype=torch.bool), size, stride, 0.0, self.generator, 1)
        px = patch_pixels(x0, y0, size, stride, device=self.device)
        return self.image[px[..., 1], px[..., 0]].permute(2, 0, 1)[None]

    def _semantic_loss(self, rgb: Tensor, real: Tensor) -> Tensor:
        n = self.cfg.semantic.input_size
        refresh = float(torch.rand((), generator=self.generator)) < self.cfg.semantic.refresh_prob
        if self.reference_feature is None or refresh:
            with torch.no_grad():
                self.reference_feature = self.dino.cls(F.interpolate(real, size=(n, n), mode="nearest"))
        feature = self.dino.cls(F.interpolate(rgb, size=(n, n), mode="nearest"))
        return F.mse_loss(feature, self.reference_feature)

    # ------------------------------------------------------------------ the discriminator's step
    def discriminator_loss(self, step: int) -> tuple[Tensor, dict[str, Tensor]] | None:
        """Hinge loss of the discriminator on (reference patch, this step's rendered patch); None when off."""
        if self._fake is None:
            return None
        d = self.discriminator
        loss = hinge_discriminator_loss(d(self._real), d(self._fake))
        self._fake = None
        return loss, {"texture_d": loss.detach()}

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"generator": self.generator.get_state(), "reference_feature": self.reference_feature}
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        feature = state.get("reference_feature")
        self.reference_feature = None if feature is None else feature.to(self.device)
        if self.discriminator is not None:
            if "discriminator" not in state:
                raise ConfigError("sinnerf: the checkpoint holds no discriminator (texture term was off)")
            self.discriminator.load_state_dict(state["discriminator"])
