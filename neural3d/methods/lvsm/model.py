"""LVSM (Jin et al., ICLR 2025) as a method: ``method: lvsm``, generalizable rendering with a transformer.

A target view is rendered straight from posed source images: source tokens = p×p patches of
[RGB·2−1, Plücker (o×d, d)], target tokens = patches of the target's Plücker rays; no epipolar projection, no
volume rendering (:mod:`neural3d.methods.lvsm.network`, :mod:`neural3d.methods.lvsm.rays`).

Pipeline (shared with GNT): ``attach_scene`` stores the scene; ``render_context`` picks the
``n_source_views_eval`` nearest training views of any pose (GNT's selection rules) and the scene's pose
normalisation; training batches (:class:`~neural3d.methods.lvsm.batches.ImageBatches`) are whole target images
with a random number of source views from GNT's scene mixtures (``train_scenes`` / ``family``).

LVSM renders whole images: ``forward`` and ``render_rays`` take an [..., H, W] ray bundle of one image size
(all rays of the images; ``chunk`` is ignored) -- :func:`neural3d.load` / ``LoadedScene.render`` and the
evaluation hand over whole images. Sizes that are not multiples of the patch size are padded (ray maps with the
rays of the camera's larger image, source colours by edge replication) and the render is cropped back.

Outputs: ``rgb``; ``depth`` is 0 and ``opacity`` 1 (LVSM has no geometry).
Loss: MSE, plus ``lpips_weight`` × LPIPS(VGG) when local LPIPS weights are given (MSE only otherwise; the
official perceptual loss is a VGG-feature loss, LPIPS is our stand-in).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle
from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.gnt.model import GNTFamilyConfig
from neural3d.methods.gnt.projection import SourceViews
from neural3d.methods.gnt.selection import identical_poses, nearest_views
from neural3d.methods.lvsm.batches import ImageBatches, LVSMContext
from neural3d.methods.lvsm.network import LVSMNetwork
from neural3d.methods.lvsm.rays import bundle_plucker, camera_plucker, normalization_frame, pad_to_multiple
from neural3d.methods.registry import register_method


@dataclass
class LVSMModelConfig:
    """``method: lvsm``: the Large View Synthesis Model (paper sizes: width 768, 24 layers or 12 + 12)."""

    variant: Literal["decoder_only", "encoder_decoder"] = "decoder_only"
    """Decoder-only (sources and target in one transformer) or encoder-decoder (a latent scene)."""
    width: int = 128
    """Token width d (paper: 768)."""
    head_dim: int = 64
    """Attention head width (paper: 64)."""
    mlp_ratio: int = 4
    """MLP hidden width / d."""
    n_layers: int = 2
    """Decoder-only: transformer blocks (paper: 24)."""
    encoder_layers: int = 1
    """Encoder-decoder: encoder blocks (paper: 12)."""
    decoder_layers: int = 1
    """Encoder-decoder: decoder blocks (paper: 12)."""
    n_latents: int = 64
    """Encoder-decoder: latent tokens (paper: 3072)."""
    patch_size: int = 8
    """Patch size p of the tokenizers."""
    qk_norm: bool = True
    """RMS-normalise queries and keys (official ``use_qk_norm``)."""
    grad_checkpoint: bool = False
    """Recompute every transformer block in the backward pass (less memory, more time)."""
    pose_normalization: Literal["scene", "views", "sources", "none"] = "scene"
    """Official pose normalisation (mean centre, average-camera axes, translations / (1.35 × max)) over the
    training cameras of each scene (``scene``), over the source views and the target of each render or training
    step (``views``: what the official loader does, over the views it loads), over the source views alone
    (``sources``), or none."""
    scene_scale_factor: float = 1.35
    """Scale of the pose normalisation: translations divided by this × the largest."""
    n_views_min: int = 2
    """Training: fewest source views per step."""
    n_views_max: int = 4
    """Training: most source views per step (drawn uniformly in the range)."""
    n_source_views_eval: int = 4
    """Source views when rendering in eval mode (nearest to the target)."""
    pool_factor: int = 2
    """Training: sources drawn from the ``pool_factor * n_views_max`` nearest views."""
    targets_per_step: int = 1
    """Training: target images per step, sharing one set of source views (official: 6)."""
    selection: Literal["auto", "dist", "vector", "matrix"] = "auto"
    """How the nearest source views are chosen (GNT's rules; ``auto``: ``dist`` for LLFF scenes, else ``vector``)."""
    perceptual_weight: float = 0.0
    """Weight of the official VGG-19 perceptual loss (official configs: 0.5); needs ``perceptual_weights``."""
    perceptual_weights: str = ""
    """Local ``imagenet-vgg-verydeep-19.mat`` (MatConvNet, as the official code) or a ``features.*`` state dict."""
    lpips_weight: float = 0.0
    """Weight of the LPIPS(VGG) loss; needs ``lpips_backbone`` and ``lpips_linear`` (else MSE only)."""
    lpips_backbone: str = ""
    """Local torchvision VGG16 weights (``vgg16-397923af.pth``) for the LPIPS loss."""
    lpips_linear: str = ""
    """Local lpips heads (``lpips/weights/v0.1/vgg.pth``) for the LPIPS loss."""
    init_checkpoint: str = ""
    """An official LVSM checkpoint (``{"model": state dict}``) or a neural3d LVSM checkpoint to start from."""
    train_scenes: list[str] = field(default_factory=list)
    """Cross-scene training: scene folders trained on (the run's ``data.path`` is then only evaluated)."""
    train_weights: list[float] = field(default_factory=list)
    """Sampling weights of ``train_scenes`` (default: 1 each)."""
    train_factor: int = 1
    """Downscale factor when loading ``train_scenes``."""
    family: GNTFamilyConfig = field(default_factory=GNTFamilyConfig)
    """A generated scene family trained on as well (GNT's family settings)."""


@register_method("lvsm", LVSMModelConfig)
class LVSMModel(Model):
    """LVSM; renders whole images; outputs ``rgb`` (``depth`` 0, ``opacity`` 1)."""

    needs_scene = True
    renders_whole_images = True

    def __init__(self, config: LVSMModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        if config.n_source_views_eval < 1:
            raise ValueError(f"model.n_source_views_eval must be >= 1, got {config.n_source_views_eval}")
        self.net = LVSMNetwork(
            config.variant,
            dim=config.width,
            head_dim=config.head_dim,
            mlp_ratio=config.mlp_ratio,
            n_layers=config.n_layers,
            encoder_layers=config.encoder_layers,
            decoder_layers=config.decoder_layers,
            n_latents=config.n_latents,
            patch_size=config.patch_size,
            qk_norm=config.qk_norm,
            grad_checkpoint=config.grad_checkpoint,
        )
        if config.lpips_weight > 0 and not (config.lpips_backbone and config.lpips_linear):
            warnings.warn(
                "model.lpips_weight > 0 but model.lpips_backbone / model.lpips_linear name no local weights: "
                "LVSM trains without the LPIPS term",
                stacklevel=2,
            )
        if config.perceptual_weight > 0 and not config.perceptual_weights:
            warnings.warn(
                "model.perceptual_weight > 0 but model.perceptual_weights names no local VGG-19 file "
                "(imagenet-vgg-verydeep-19.mat): LVSM trains without the perceptual term",
                stacklevel=2,
            )
        self._scene = None
        self._scene_frame: Tensor | None = None
        self._latents: tuple[tuple, Tensor] | None = None  # (key, latents) of the last encoded source views
        self._lpips: list = []  # the frozen LPIPS loss network, kept out of the state dict
        self._perceptual: list = []  # the frozen VGG-19 perceptual loss, kept out of the state dict

    # ------------------------------------------------------------------ scenes and source views
    def selection_method(self, scene) -> str:
        if self.config.selection != "auto":
            return self.config.selection
        return "dist" if getattr(scene, "kind", "") == "llff" else "vector"

    def scene_frame(self, scene) -> Tensor | None:
        """The pose normalisation of ``scene`` (``scene`` mode: over its training cameras; else None)."""
        if self.config.pose_normalization != "scene":
            return None
        train = scene.split_indices("train").to(scene.cameras.device)
        return normalization_frame(scene.cameras.camera_to_worlds[train], self.config.scene_scale_factor)

    def attach_scene(self, scene) -> None:
        if scene.ndc:
            raise ValueError(f"{scene.root}: LVSM needs world-space rays; set data.ndc=false for forward-facing scenes")
        if scene.split_indices("train").numel() < 1:
            raise ValueError(f"{scene.root}: LVSM needs training images as source views")
        self._scene = scene
        self._scene_frame = self.scene_frame(scene)

    @property
    def attached_scene(self) -> Any | None:
        return self._scene

    def render_context(self, cameras, index: int) -> LVSMContext:
        """The ``n_source_views_eval`` training views of the attached scene nearest camera ``index`` (its own image
        excluded) and the scene's pose normalisation."""
        scene = self._scene
        if scene is None:
            raise ValueError("LVSM renders from source views: attach a scene first (model.attach_scene(scene))")
        train = scene.split_indices("train").to(scene.images.device)
        src = scene.cameras.camera_to_worlds[train]
        target = cameras.camera_to_worlds[index][None].to(src.device)
        same = identical_poses(target, src)
        k = min(self.config.n_source_views_eval, train.numel() - int(same.sum()))
        idx = nearest_views(
            target, src, max(k, 1), method=self.selection_method(scene), exclude=same if k >= 1 else None
        )[0]
        chosen = train[idx]
        views = SourceViews(scene.images[chosen], scene.cameras[chosen], scene.pixel_center, chosen, attached=True)
        context = LVSMContext(views, self.views_frame(self._scene_frame, torch.cat([src[idx], target])))
        if self.config.variant == "encoder_decoder" and not self.training:
            context = self._reuse_latents(context, (str(scene.root), id(scene), tuple(chosen.tolist())))
        return context

    def _reuse_latents(self, context: LVSMContext, sources: tuple) -> LVSMContext:
        """Encoder-decoder in eval mode: ``context`` with the latents of its source views, encoded once and reused by
        the next renders from the same sources (a camera path, the viewer) while the frame and the weights
        (parameter versions: in-place updates and loads count) stay the same."""
        frame = None if context.frame is None else tuple(context.frame.flatten().tolist())
        versions = tuple(p._version for p in self.net.parameters())
        key = (sources, frame, versions, str(self.background.device))
        if self._latents is None or self._latents[0] != key:
            self._latents = (key, self.encode_context(context).latents)
        return LVSMContext(context.views, context.frame, self._latents[1])

    def views_frame(self, scene_frame: Tensor | None, c2w_views: Tensor) -> Tensor | None:
        """The frame of one render / step: over ``c2w_views`` ([n, 3, 4] sources and targets) in ``views`` mode,
        else ``scene_frame`` (``scene`` mode; None otherwise: ``sources`` mode normalises in :meth:`_frame`)."""
        if self.config.pose_normalization == "views":
            return normalization_frame(c2w_views, self.config.scene_scale_factor)
        return scene_frame

    def build_loader(self, scene, *, batch_size: int, device, seed: int) -> ImageBatches:
        from neural3d.methods.gnt.mixture import load_training_scenes

        scenes, weights = load_training_scenes(self.config, scene)
        return ImageBatches(
            scenes,
            weights,
            n_views_min=self.config.n_views_min,
            n_views_max=self.config.n_views_max,
            pool_factor=self.config.pool_factor,
            method=self.selection_method,
            frame=lambda s, c2w_views: self.views_frame(self.scene_frame(s), c2w_views),
            device=device,
            seed=seed,
            n_targets=self.config.targets_per_step,
        )

    def prepare_training(self) -> None:
        if self.config.init_checkpoint:
            from neural3d.methods.lvsm.official import load_official_weights, load_strict

            path = self.config.init_checkpoint
            load_strict(self, load_official_weights(path), f"model.init_checkpoint {path}")

    # ------------------------------------------------------------------ rendering
    def _frame(self, context: LVSMContext) -> Tensor | None:
        if context.frame is not None:
            return context.frame
        if self.config.pose_normalization == "sources":
            return normalization_frame(context.views.cameras.camera_to_worlds, self.config.scene_scale_factor)
        return None

    def posed_sources(self, context: LVSMContext) -> Tensor:
        """[1, v, 9, H', W'] source tokens' input: RGB·2−1 and Plücker maps, padded to the patch size."""
        views = context.views.to(self.background.device)
        rgb = views.images.permute(0, 3, 1, 2) * 2.0 - 1.0
        p = self.config.patch_size
        pl = camera_plucker(views.cameras, views.pixel_center, self._frame(context), p).to(rgb)
        return torch.cat([pad_to_multiple(rgb, p), pl], 1)[None]

    @torch.no_grad()
    def encode_context(self, context: LVSMContext) -> LVSMContext:
        """Encoder-decoder: the context with its latent scene, reused by every render from it (the targets must
        share the context's frame: in ``views`` mode a context is made for one target by :meth:`render_context`)."""
        return LVSMContext(context.views, context.frame, self.net.encode(self.posed_sources(context)))

    def forward(self, rays: RayBundle, context: Any = None) -> ModelOutputs:
        """Render whole images: ``rays`` is an [H, W] or [t, H, W] bundle (t targets sharing the context)."""
        if isinstance(context, SourceViews):
            context = LVSMContext(context)
        if not isinstance(context, LVSMContext):
            raise TypeError("LVSM forward needs an LVSMContext (source views); use model.render_context(cameras, i)")
        if len(rays.shape) not in (2, 3):
            raise ValueError(f"LVSM renders whole images: rays must be [H, W] or [t, H, W], got {tuple(rays.shape)}")
        H, W = rays.shape[-2:]
        target = bundle_plucker(rays, self._frame(context), self.config.patch_size)
        target = target.reshape(1, -1, 6, *target.shape[-2:])
        if self.config.variant == "encoder_decoder":
            latents = context.latents if context.latents is not None else self.net.encode(self.posed_sources(context))
            out = self.net.decode(latents, target)
        else:
            out = self.net(self.posed_sources(context), target)
        rgb = out[0, :, :, :H, :W].permute(0, 2, 3, 1).reshape(*rays.shape, 3).reshape(-1, 3)
        n = rgb.shape[0]
        return ModelOutputs(rgb, rgb.new_zeros(n, 1), rgb.new_ones(n, 1))

    @torch.no_grad()
    def render_rays(self, rays: RayBundle, chunk: int = 8192, context: Any = None) -> dict[str, Tensor]:
        """Render whole images ([H, W] or [t, H, W] bundle) in one pass (``chunk`` ignored); [*shape, C] tensors."""
        out = self(rays, context)
        return {k: out[k].float().reshape(*rays.shape, -1) for k in ("rgb", "depth", "opacity")}

    # ------------------------------------------------------------------ losses
    def _lpips_net(self):
        cfg = self.config
        if cfg.lpips_weight <= 0 or not (cfg.lpips_backbone and cfg.lpips_linear):
            return None
        if not self._lpips:
            from neural3d.evaluation.lpips import LPIPS

            self._lpips.append(LPIPS.from_files("vgg", cfg.lpips_backbone, cfg.lpips_linear))
        return self._lpips[0].to(self.background.device)

    def _perceptual_net(self):
        cfg = self.config
        if cfg.perceptual_weight <= 0 or not cfg.perceptual_weights:
            return None
        if not self._perceptual:
            from neural3d.evaluation.perceptual import VGGPerceptualLoss

            self._perceptual.append(VGGPerceptualLoss.from_file(cfg.perceptual_weights))
        return self._perceptual[0].to(self.background.device)

    def loss_dict(self, outputs: ModelOutputs, batch: Any) -> dict[str, Tensor]:
        """The official loss: MSE + ``perceptual_weight`` × VGG-19 perceptual (+ ``lpips_weight`` × LPIPS)."""
        losses = {"loss_rgb": torch.mean((outputs.rgb - batch.rgb) ** 2)}
        H, W = batch.rays.shape[-2:]
        pred, gt = outputs.rgb.reshape(-1, H, W, 3), batch.rgb.reshape(-1, H, W, 3)
        net = self._lpips_net()
        if net is not None:
            losses["loss_lpips"] = self.config.lpips_weight * net(pred, gt).mean()
        perceptual = self._perceptual_net()
        if perceptual is not None:
            losses["loss_perceptual"] = self.config.perceptual_weight * perceptual(pred, gt)
        return losses

    def param_groups(self) -> dict[str, list]:
        """Official AdamW groups: weight decay on matrices, none on 1-D parameters (norm weights)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return {"network": [p for p in params if p.ndim >= 2], "no_decay": [p for p in params if p.ndim < 2]}
