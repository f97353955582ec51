"""GNT (Wang et al., "Is Attention All That NeRF Needs?", ICLR 2023): generalizable rendering.

The method renders a view from nearby posed source images, with no per-scene optimisation needed:

* sampler: GNT's point samples (stratified in depth or inverse depth; fine points from the attention weights),
  :class:`~neural3d.methods.gnt.sampling.PointSampler` / ``FinePointSampler`` behind the sampler protocol;
* field: :class:`~neural3d.methods.gnt.field.SourceViewField` -- each sample projected into the source views
  (bilinear RGB + ResUNet features, validity mask, ray-direction difference);
* renderer: :class:`~neural3d.methods.gnt.field.RayTransformerRenderer` -- the view/ray transformer stack, whose
  attention also gives depth; optional fine samples drawn from that attention.

Ray bounds: GNT's own depth range per dataset (:mod:`neural3d.methods.gnt.bounds`; LLFF ``0.9 * min`` to
``1.6 * max`` of the scaled bounds, not NeRF's ``max``), set on every scene it is given (``prepare_scene``).

Source views: ``attach_scene`` stores the scene's training images and cameras; ``render_context``
picks the ``n_source_views`` nearest for any pose; training batches (one target image each) carry a
random subset of a larger pool of nearest views, never the target itself. Cross-scene training draws
batches from a weighted mixture of scenes (``train_scenes`` / a generated ``family``); the run's
``data.path`` scene is then only evaluated. ``init_checkpoint`` starts from a neural3d GNT checkpoint or
an official GNT checkpoint (fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from neural3d.config import instantiate
from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.gnt.batches import SourceViewBatches
from neural3d.methods.gnt.bounds import apply_official_depth_range
from neural3d.methods.gnt.checkpoint import load_weights_into
from neural3d.methods.gnt.field import RayTransformerRenderer, SourceViewField
from neural3d.methods.gnt.projection import SourceViews
from neural3d.methods.gnt.resunet import ResUNet
from neural3d.methods.gnt.sampling import FinePointSampler, PointSampler
from neural3d.methods.gnt.selection import identical_poses, nearest_views
from neural3d.methods.registry import register_method
from neural3d.render.renderers import RenderOutputs
from neural3d.samplers.base import WeightedSamples


@dataclass
class GNTFamilyConfig:
    """A generated synthetic scene family for cross-scene training (written to ``root`` when missing)."""

    root: str = ""
    """Folder of the family (required when ``n_scenes`` > 0)."""
    n_scenes: int = 0
    """Scenes in the family (0: no family)."""
    layout: Literal["blender", "llff"] = "blender"
    """Layout and camera rig of the generated scenes."""
    res: int = 48
    """Image width and height."""
    seed: int = 1
    """Seed of the generated family."""
    n_train: int = 16
    """Blender: training views per scene; LLFF: images per scene."""
    weight: float = 1.0
    """Sampling weight of the whole family (split evenly over its scenes)."""


@dataclass
class GNTModelConfig:
    """``method: gnt``: the Generalizable NeRF Transformer and how it samples points and source views."""

    width: int = 64
    """Width of the view and ray transformers."""
    depth: int = 4
    """View/ray transformer block pairs (official: 4 single-scene, 8 cross-scene)."""
    n_heads: int = 4
    """Attention heads."""
    feature_dim: int = 32
    """Channels of the ResUNet image features."""
    single_net: bool = True
    """False: a separate fine network and a 2 x ``feature_dim`` ResUNet (official option)."""
    dropout: float = 0.1
    """Dropout in the transformers (training)."""
    fused_inference: bool = True
    """Eval mode without gradients: the fused network (:mod:`~neural3d.methods.gnt.fused`: the same outputs up to
    float rounding, tested to 1e-5; less work); False: the reference arithmetic everywhere."""
    pass_view_rows: int = 20480
    """Rendering on CPU without gradients: rays go through projection and network in groups of about this many
    (sample, source view) pairs, whatever chunk the caller renders (bounded memory; outputs do not depend on it
    beyond float rounding); 0: a caller's whole chunk at once. GPUs always take the whole chunk (small groups would
    leave them idle). 20,480 (32 rays at 64 samples, 10 at 192, with 10 views): with the oneDNN products and the C
    attention kernel 5 % faster than 12,288 at 64 samples and 10 % at 192 (one thread, measured side by side)."""
    n_samples: int = 64
    """Coarse point samples per ray in training (paper: 64)."""
    n_samples_eval: int = 0
    """Coarse point samples per ray when rendering in eval mode (paper evaluation: 192); 0: ``n_samples``."""
    n_fine: int = 0
    """Extra samples per ray drawn from the attention weights."""
    lindisp: bool = True
    """Samples uniform in inverse depth (official ``inv_uniform``)."""
    n_source_views: int = 10
    """Source views per target in training."""
    n_source_views_eval: int = 0
    """Source views when rendering in eval mode (paper evaluation: 10); 0: ``n_source_views``."""
    pool_factor: int = 2
    """Training: sources drawn from the ``pool_factor * n_source_views`` nearest views."""
    colour_augment: bool = False
    """Training: one random colour map per batch, on the target and its sources."""
    selection: Literal["auto", "dist", "vector", "matrix"] = "auto"
    """How the nearest source views are chosen (``auto``: ``dist`` for LLFF scenes, else ``vector``)."""
    init_checkpoint: str = ""
    """A neural3d checkpoint (.pt) or an official GNT checkpoint to start from."""
    train_scenes: list[str] = field(default_factory=list)
    """Cross-scene training: scene folders trained on (the run's ``data.path`` is then only evaluated)."""
    train_weights: list[float] = field(default_factory=list)
    """Sampling weights of ``train_scenes`` (default: 1 each)."""
    train_factor: int = 1
    """Downscale factor when loading ``train_scenes``."""
    family: GNTFamilyConfig = field(default_factory=GNTFamilyConfig)
    """A generated scene family trained on as well."""


@register_method("gnt", GNTModelConfig)
class GNTModel(Model):
    """Generalizable NeRF Transformer; outputs ``rgb``, ``depth`` (attention-expected t), ``opacity`` (1)."""

    needs_scene = True

    def __init__(self, config: GNTModelConfig, *, scene: SceneInfo) -> None:
        super().__init__(config, scene=scene)
        if config.n_source_views < 1:
            raise ValueError(f"model.n_source_views must be >= 1, got {config.n_source_views}")
        if config.n_source_views_eval < 0:
            raise ValueError(
                f"model.n_source_views_eval must be >= 0 (0: n_source_views), got {config.n_source_views_eval}"
            )
        self.renderer = instantiate(RayTransformerRenderer, config)
        self.feature_net = ResUNet(out_channels=config.feature_dim * (1 if config.single_net else 2))
        self.renderer_fine = None if config.single_net else instantiate(RayTransformerRenderer, config)
        self.field = SourceViewField()
        self.sampler = instantiate(PointSampler, config)
        self.fine_sampler = instantiate(FinePointSampler, config)
        self._scene = None  # attached SceneData (not part of the state dict)
        self._feature_cache: dict[int, Tensor] = {}  # scene image index -> feature map, eval only

    def train(self, mode: bool = True) -> GNTModel:
        if mode or self.training:  # (leaving) training: weights change, cached features go stale
            self.clear_feature_cache()
        return super().train(mode)

    def clear_feature_cache(self) -> None:
        """Forget the cached feature maps of the attached scene's images (eval mode keeps them across renders)."""
        self._feature_cache.clear()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self.clear_feature_cache()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ source views
    def selection_method(self, scene) -> str:
        """'dist' for forward-facing (LLFF) scenes, 'vector' otherwise, unless ``model.selection`` says."""
        if self.config.selection != "auto":
            return self.config.selection
        return "dist" if getattr(scene, "kind", "") == "llff" else "vector"

    def prepare_scene(self, scene) -> None:
        """GNT's own ray depth range (:mod:`neural3d.methods.gnt.bounds`): LLFF ``0.9 * min``, ``1.6 * max`` of the
        bounds; Blender 2, 6; unless ``data.near`` / ``data.far`` override them."""
        apply_official_depth_range(scene)

    def attach_scene(self, scene) -> None:
        if scene.ndc:
            raise ValueError(f"{scene.root}: GNT needs world-space rays; set data.ndc=false for forward-facing scenes")
        if scene.split_indices("train").numel() < 1:
            raise ValueError(f"{scene.root}: GNT needs training images as source views")
        default = scene.metadata.get("default_bounds")
        self.prepare_scene(scene)
        if default is not None:  # the model's SceneInfo was made from the loader's bounds: follow the scene
            if self.scene.near == default[0]:
                self.scene.near = float(scene.near)
            if self.scene.far == default[1]:
                self.scene.far = float(scene.far)
        self._scene = scene
        self.clear_feature_cache()

    def render_context(self, cameras, index: int) -> SourceViews:
        """The training views of the attached scene nearest camera ``index`` (its own image excluded).

        How many: ``n_source_views`` in training mode, ``n_source_views_eval`` (when > 0) in eval mode.
        """
        scene = self._scene
        if scene is None:
            raise ValueError(
                "GNT renders from source views: attach a scene first (model.attach_scene(load_scene(path)))"
            )
        train = scene.split_indices("train").to(scene.images.device)
        src = scene.cameras.camera_to_worlds[train]
        target = cameras.camera_to_worlds[index][None].to(src.device)
        same = identical_poses(target, src)
        k = min(self.n_views, train.numel() - int(same.sum()))
        idx = nearest_views(
            target, src, max(k, 1), method=self.selection_method(scene), exclude=same if k >= 1 else None
        )[0]
        chosen = train[idx]
        return SourceViews(scene.images[chosen], scene.cameras[chosen], scene.pixel_center, chosen, attached=True)

    @property
    def n_views(self) -> int:
        """Source views per rendered image: ``n_source_views``, or ``n_source_views_eval`` in eval mode."""
        cfg = self.config
        return cfg.n_source_views if self.training or cfg.n_source_views_eval <= 0 else cfg.n_source_views_eval

    # ------------------------------------------------------------------ training hooks
    def build_loader(self, scene, *, batch_size: int, device, seed: int) -> SourceViewBatches:
        scenes, weights = self._training_scenes(scene)
        return SourceViewBatches(
            scenes,
            weights,
            batch_size=batch_size,
            n_views=self.config.n_source_views,
            pool_factor=self.config.pool_factor,
            method=self.selection_method,
            device=device,
            seed=seed,
            colour_augment=self.config.colour_augment,
        )

    def _training_scenes(self, scene) -> tuple[list, list[float]]:
        from neural3d.methods.gnt.mixture import load_training_scenes

        return load_training_scenes(self.config, scene)

    def prepare_training(self) -> None:
        path = self.config.init_checkpoint
        if not path:
            return
        load_weights_into(self, path)

    # ------------------------------------------------------------------ rendering
    def _features(self, context: SourceViews) -> tuple[Tensor, Tensor]:
        if context.features is not None:
            return context.features, context.features_fine if context.features_fine is not None else context.features
        cacheable = (
            context.attached and context.indices is not None and not self.training and not torch.is_grad_enabled()
        )
        keys = context.indices.tolist() if cacheable else []
        if cacheable and all(k in self._feature_cache for k in keys):  # views of the attached scene seen before
            feats = torch.stack([self._feature_cache[k] for k in keys])
        else:
            feats = self.feature_net(context.images.to(self.background.device).permute(0, 3, 1, 2))
            if cacheable:
                self._feature_cache.update(zip(keys, feats))
        c = self.config.feature_dim
        coarse, fine = (feats, feats) if self.config.single_net else (feats[:, :c], feats[:, c:])
        if not torch.is_grad_enabled():  # cache across the chunks of one image
            context.features, context.features_fine = coarse, fine
        return coarse, fine

    def forward(self, rays: RayBundle, context: Any = None) -> ModelOutputs:
        if not isinstance(context, SourceViews):
            raise TypeError(
                "GNT forward needs a SourceViews context (source images and cameras); "
                "use model.render_context(cameras, index) or a scene-attached loader"
            )
        if context.images.device != rays.device:
            context = context.to(rays.device)
        coarse_feats, fine_feats = self._features(context)
        samples = self.sampler.sample(rays)
        out = self._network_pass(self.renderer, samples, replace(context, features=coarse_feats))
        if self.config.n_fine <= 0:
            return ModelOutputs(out.rgb, out.depth, out.opacity, samples=samples, weights=out.weights)
        fine_samples = self.fine_sampler.sample(rays, prior=WeightedSamples(samples, out.weights))
        renderer = self.renderer if self.renderer_fine is None else self.renderer_fine
        fine = self._network_pass(renderer, fine_samples, replace(context, features=fine_feats))
        return ModelOutputs(
            fine.rgb, fine.depth, fine.opacity, rgb_coarse=out.rgb, samples=fine_samples, weights=fine.weights
        )

    def _network_pass(
        self, renderer: RayTransformerRenderer, samples: RaySamples, context: SourceViews
    ) -> RenderOutputs:
        """Field (projection) and network over ``samples``; on CPU without gradients in groups of rays of about
        ``pass_view_rows`` (sample, view) pairs. Rays are independent, so the groups give the same outputs."""
        per_ray = samples.n_samples * context.n_views
        rows = self.config.pass_view_rows if samples.starts.device.type == "cpu" else 0
        group = max(1, rows // per_ray) if rows > 0 else samples.n_rays
        if torch.is_grad_enabled() or samples.ray_subset is not None or group >= samples.n_rays:
            return renderer(self.field(samples, context), samples)
        parts = []
        for i in range(0, samples.n_rays, group):
            sub = RaySamples(samples.rays[i : i + group], samples.starts[i : i + group], samples.ends[i : i + group])
            parts.append(renderer(self.field(sub, context), sub))
        return RenderOutputs(
            *(torch.cat([getattr(p, k) for p in parts]) for k in ("rgb", "depth", "opacity", "weights"))
        )

    @property
    def attached_scene(self) -> Any | None:
        """The attached :class:`~neural3d.data.SceneData` (None before ``attach_scene``)."""
        return self._scene
