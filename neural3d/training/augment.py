"""Aug-NeRF as a training strategy over the shared interface (Chen et al., CVPR 2022; ``augment:`` section).

One training step of :class:`AugNeRF`:

1. the clean pass ``model(rays, context, perturb=recorder)`` samples as usual; the recorder keeps the samples of
   every field pass (NeRF: ``coarse``, ``fine``; NGP: ``field``). ``L_clean = sum(model.loss_dict(...))``.
2. the attack: perturbations start uniformly in their l-inf balls (``start: random``), then ``pgd_steps`` sign
   steps of ``step_size x eps`` up the gradient of the model's loss, each projected back into its ball. Every
   adversarial pass replays the recorded samples (no re-sampling, no sampler state touched) and runs the same
   field -- the one that renders (the official code attacks a separate copy of the MLP: its issue #5). The
   attack's gradients are taken with respect to the perturbations only (``torch.autograd.grad``): the
   parameters' ``.grad`` are not touched.
3. the adversarial pass with the final perturbations (detached): ``L_adv``; the step's loss is
   ``(1 - weight) L_clean + weight L_adv``, so its gradients reach the rendering parameters through both passes.

Balls (l-inf, per element): a sample's depth ``t`` within ``coords.eps x s / 2`` (``s``: its ray's mean sample
spacing in ``t``), its point within ``coords.eps x min(footprint, s |d| / 2)`` per axis, where ``footprint`` is
the width of one pixel at the sample's depth (``t / max(fx, fy)`` in world units; ``2 / max(W, H)`` in NDC, the
official code's ``2 / max(H, W)``); features within ``features.eps``; raw density / colour within
``outputs.eps``. Each field pass gets its own perturbations.

Differences from the official code: depth perturbations move where the field is queried, not the intervals used
for compositing; the adversarial pass skips NeRF's ``density_noise`` (the official Aug-NeRF model turns the
raw noise and the stratified jitter off altogether).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from neural3d.config import ConfigError
from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples, RaySamples
from neural3d.fields.perturb import FieldPerturbation, ModelPerturbation

Samples = RaySamples | PackedRaySamples


def augment_enabled(cfg: Any) -> bool:
    """Whether an ``augment`` section turns any level on."""
    return bool(cfg.coords.enabled or cfg.features.enabled or cfg.outputs.enabled)


class PixelFootprint:
    """Width of one pixel at ray parameter ``t``, per ray: ``t / max(fx, fy)`` (world rays) or ``2 / max(W, H)`` (NDC).

    Args:
        cameras: the scene's cameras (``rays.camera_indices`` index them).
        ndc: whether rays are in normalised device coordinates.
    """

    def __init__(self, cameras: Any, ndc: bool) -> None:
        self.ndc = bool(ndc)
        if self.ndc:
            self.per_camera = 2.0 / torch.maximum(cameras.width.float(), cameras.height.float())
        else:
            self.per_camera = 1.0 / torch.maximum(cameras.fx.float(), cameras.fy.float())

    def __call__(self, rays: RayBundle, t: Tensor, ray_of_sample: Callable[[Tensor], Tensor]) -> Tensor:
        """Footprints shaped like ``t``; ``ray_of_sample`` maps a per-ray [n_rays] tensor onto ``t``'s layout."""
        cams = rays.camera_indices
        if cams is None or bool((cams < 0).any()):
            raise ValueError("augment: coordinate perturbations need rays with camera_indices (the pixel footprint)")
        scale = ray_of_sample(self.per_camera.to(t.device)[cams.to(t.device)])
        return scale.expand_as(t) if self.ndc else t.abs() * scale


def _per_ray(samples: Samples) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """(a map from [n_rays, ...] tensors to the samples' layout, [n_rays] mean sample spacing in ``t``)."""
    deltas = samples.deltas
    if isinstance(samples, PackedRaySamples):
        ri = samples.ray_indices
        sums = deltas.new_zeros(samples.n_rays).index_add_(0, ri, deltas)
        counts = samples.packed_info[:, 1].clamp_min(1).to(deltas.dtype)
        return (lambda v: v[ri]), sums / counts
    return (lambda v: v[:, None, ...]), deltas.mean(dim=-1)


class _Recorder(ModelPerturbation):
    """The clean pass: samples as usual and keeps each field pass's samples."""

    def __init__(self) -> None:
        self.recorded: dict[str, Samples] = {}

    def samples(self, name, sample):
        out = sample()
        self.recorded[name] = out
        return out


class _Adversary(ModelPerturbation):
    """An adversarial pass: replays the recorded samples; each field pass gets a :class:`_FieldAdversary`."""

    def __init__(self, strategy: AugNeRF, recorded: dict[str, Samples], deltas: dict) -> None:
        self.strategy, self.recorded, self.deltas = strategy, recorded, deltas

    def samples(self, name, sample):
        if name not in self.recorded:
            raise RuntimeError(f"augment: the model ran field pass {name!r}, which its clean pass did not")
        return self.recorded[name]

    def field(self, name):
        return _FieldAdversary(self, name)


class _FieldAdversary(FieldPerturbation):
    """The hooks of one field pass: additive perturbations, created at first use (random start) and then reused."""

    def __init__(self, owner: _Adversary, name: str) -> None:
        self.owner, self.name = owner, name
        self.cfg = owner.strategy.cfg

    def _delta(self, level: str, like: Tensor, eps: Tensor | float) -> Tensor:
        key = (self.name, level)
        deltas = self.owner.deltas
        if key not in deltas:
            eps_t = torch.as_tensor(eps, dtype=like.dtype, device=like.device).expand_as(like).detach()
            if self.cfg.start == "random":
                d = (torch.rand(like.shape, dtype=like.dtype, device=like.device) * 2 - 1) * eps_t
            else:
                d = torch.zeros_like(like)
            deltas[key] = (d.detach().requires_grad_(self.owner.strategy.attacking), eps_t)
        return deltas[key][0]

    def positions(self, samples):
        positions = samples.positions
        c = self.cfg.coords
        if not c.enabled:
            return positions
        to_samples, spacing = _per_ray(samples)
        rays = samples.rays
        directions = to_samples(rays.directions)
        if isinstance(samples, RaySamples):
            directions = directions.expand_as(positions)
        spacing_t = to_samples(spacing).expand_as(samples.mids)
        if c.target in ("both", "depths"):
            dt = self._delta("depths", samples.mids, c.eps * 0.5 * spacing_t)
            positions = positions + dt[..., None] * directions
        if c.target in ("both", "points"):
            half_world = 0.5 * spacing_t * torch.linalg.norm(directions, dim=-1)
            footprint = self.owner.strategy.footprint(rays, samples.mids, to_samples)
            eps_x = c.eps * torch.minimum(footprint, half_world)
            positions = positions + self._delta("points", positions, eps_x[..., None])
        return positions

    def features(self, h):
        f = self.cfg.features
        return h + self._delta("features", h, f.eps) if f.enabled else h

    def outputs(self, raw_density, raw_rgb):
        o = self.cfg.outputs
        if not o.enabled:
            return raw_density, raw_rgb
        if o.channels in ("both", "density"):
            raw_density = raw_density + self._delta("density", raw_density, o.eps)
        if o.channels in ("both", "rgb"):
            raw_rgb = raw_rgb + self._delta("rgb", raw_rgb, o.eps)
        return raw_density, raw_rgb


_LEVEL_OF = {"depths": "coords", "points": "coords", "features": "features", "density": "outputs", "rgb": "outputs"}


class AugNeRF:
    """The Aug-NeRF loss of a model on a batch (see the module docstring).

    Args:
        cfg: the ``augment`` section (:class:`~neural3d.training.augment_config.AugmentConfig`).
        footprint: pixel footprints for coordinate perturbations (:class:`PixelFootprint`; None: only for
            ``coords.target: depths`` or coordinates off).
    """

    def __init__(self, cfg: Any, footprint: PixelFootprint | None = None) -> None:
        check_augment(cfg)
        self.cfg = cfg
        self._footprint = footprint
        self.attacking = False

    def footprint(self, rays: RayBundle, t: Tensor, to_samples: Callable[[Tensor], Tensor]) -> Tensor:
        if self._footprint is None:
            raise ValueError("augment: coords.target 'points'/'both' needs the scene's cameras (PixelFootprint)")
        return self._footprint(rays, t, to_samples)

    def check_model(self, model: Any, method: str = "the method") -> None:
        """ConfigError when ``model`` lacks a hook of an enabled level."""
        wanted = {lvl for lvl in ("coords", "features", "outputs") if getattr(self.cfg, lvl).enabled}
        missing = wanted - set(model.perturbation_levels())
        if missing:
            raise ConfigError(
                f"augment: {method} does not support perturbation level(s) {sorted(missing)} "
                f"(it supports {sorted(model.perturbation_levels()) or 'none'}); Aug-NeRF works with nerf and ngp"
            )

    def _step_size(self, level: str) -> float:
        own = getattr(self.cfg, level).step_size
        return float(self.cfg.step_size if own is None else own)

    def attack(self, model: Any, batch: Any, context: Any, recorded: dict[str, Samples]) -> dict:
        """The perturbations after the random start and ``pgd_steps`` projected sign-gradient steps (detached)."""
        deltas: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
        self.attacking = True
        try:
            for _ in range(int(self.cfg.pgd_steps)):
                outputs = model(batch.rays, context, perturb=_Adversary(self, recorded, deltas))
                loss = sum(model.loss_dict(outputs, batch).values())
                keys = list(deltas)
                grads = torch.autograd.grad(loss, [deltas[k][0] for k in keys], allow_unused=True)
                for key, g in zip(keys, grads):
                    d, eps = deltas[key]
                    if g is None:
                        continue
                    alpha = self._step_size(_LEVEL_OF[key[1]])
                    with torch.no_grad():
                        d = torch.maximum(torch.minimum(d + alpha * eps * torch.sign(g), eps), -eps)
                    deltas[key] = (d.detach().requires_grad_(True), eps)
        finally:
            self.attacking = False
        return {k: (d.detach(), eps) for k, (d, eps) in deltas.items()}

    def loss(self, model: Any, batch: Any, context: Any = None) -> tuple[Tensor, Any, dict[str, Tensor]]:
        """(``(1 - weight) L_clean + weight L_adv``, the clean outputs, metrics ``loss_clean``, ``loss_adv``)."""
        recorder = _Recorder()
        clean = model(batch.rays, context, perturb=recorder)
        loss_clean = sum(model.loss_dict(clean, batch).values())
        deltas = self.attack(model, batch, context, recorder.recorded)
        adv = model(batch.rays, context, perturb=_Adversary(self, recorder.recorded, deltas))
        loss_adv = sum(model.loss_dict(adv, batch).values())
        w = float(self.cfg.weight)
        loss = (1.0 - w) * loss_clean + w * loss_adv
        return loss, clean, {"loss_clean": loss_clean.detach(), "loss_adv": loss_adv.detach()}


def check_augment(cfg: Any) -> None:
    """ConfigError for values outside their ranges."""
    problems = []
    for level in ("coords", "features", "outputs"):
        section = getattr(cfg, level)
        if section.eps < 0:
            problems.append(f"augment.{level}.eps must be >= 0, got {section.eps}")
        if section.step_size is not None and section.step_size < 0:
            problems.append(f"augment.{level}.step_size must be >= 0, got {section.step_size}")
    if cfg.pgd_steps < 0:
        problems.append(f"augment.pgd_steps must be >= 0, got {cfg.pgd_steps}")
    if cfg.step_size < 0:
        problems.append(f"augment.step_size must be >= 0, got {cfg.step_size}")
    if not 0.0 <= cfg.weight <= 1.0:
        problems.append(f"augment.weight must be in [0, 1], got {cfg.weight}")
    if problems:
        raise ConfigError("; ".join(problems))


# ------------------------------------------------------------------------------------------- corruption
def corrupt_images(images: Tensor, cfg: Any) -> Tensor:
    """[n, H, W, 3] images in [0, 1] -> corrupted copies: Gaussian noise (``gaussian_std``, then clipped), then
    salt-and-pepper (each pixel black with probability ``salt_pepper / 2``, white with ``salt_pepper / 2``).
    Deterministic: a CPU generator seeded with ``seed`` draws the noise, image after image."""
    if cfg.salt_pepper <= 0 and cfg.gaussian_std <= 0:
        return images
    if not 0.0 <= cfg.salt_pepper <= 1.0 or cfg.gaussian_std < 0:
        raise ConfigError(
            f"data.corruption: salt_pepper must be in [0, 1] and gaussian_std >= 0, got {cfg.salt_pepper}, "
            f"{cfg.gaussian_std}"
        )
    gen = torch.Generator().manual_seed(int(cfg.seed))
    out = images.detach().to("cpu", torch.float32).clone()
    for i in range(out.shape[0]):
        img = out[i]
        if cfg.gaussian_std > 0:
            img = (img + cfg.gaussian_std * torch.randn(img.shape, generator=gen)).clamp(0.0, 1.0)
        if cfg.salt_pepper > 0:
            u = torch.rand(img.shape[:2], generator=gen)[..., None]
            img = torch.where(u < cfg.salt_pepper / 2, 0.0, torch.where(u < cfg.salt_pepper, 1.0, img))
        out[i] = img
    return out.to(images.device, images.dtype)


def corrupt_training_images(scene: Any, cfg: Any) -> Any:
    """``scene`` with the images of its ``train`` split corrupted (:func:`corrupt_images`); other splits unchanged."""
    if cfg.salt_pepper <= 0 and cfg.gaussian_std <= 0:
        return scene
    from dataclasses import replace

    idx = scene.split_indices("train").to(scene.images.device)
    images = scene.images.clone()
    images[idx] = corrupt_images(scene.images[idx], cfg)
    return replace(scene, images=images)
