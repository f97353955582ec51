"""Training batches for source-view methods: all rays of a batch come from ONE target image.

Each step draws a scene (by weight, for cross-scene training), one of its training images as the
target, ``batch_size`` of its pixels (without replacement when they suffice), and the source views:
a random subset of ``n_views`` out of the ``pool_factor * n_views`` views nearest to the target,
never the target itself. The batch carries them as its ``context`` (:class:`SourceViews`).

With ``colour_augment`` every batch maps the colours of its target pixels AND its source images through
one random colour map (:mod:`neural3d.methods.gnt.colour`).

The stream is reproducible (one seeded generator) and resumable (``state_dict``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from neural3d.data.loader import RayBatch
from neural3d.data.scene import SceneData
from neural3d.methods.gnt.colour import random_colour_map
from neural3d.methods.gnt.projection import SourceViews
from neural3d.methods.gnt.selection import nearest_views, random_subset


@dataclass
class ContextRayBatch(RayBatch):
    """A :class:`RayBatch` of one target image with its conditioning ``context`` (source views)."""

    context: SourceViews | None = None
    scene_index: int = 0

    def to(self, device) -> ContextRayBatch:
        alpha = None if self.alpha is None else self.alpha.to(device)
        ctx = None if self.context is None else self.context.to(device)
        return ContextRayBatch(self.rays.to(device), self.rgb.to(device), alpha, ctx, self.scene_index)


class SourceViewBatches:
    """Endless stream of :class:`ContextRayBatch` over one or several scenes.

    Args:
        scenes: the training scenes (each with a ``train`` split of >= 2 images).
        weights: sampling weight of each scene (default equal).
        batch_size: rays per batch, all from one target image.
        n_views: source views per batch.
        pool_factor: sources are drawn from the ``pool_factor * n_views`` nearest (1: always the nearest).
        method: callable ``scene -> selection method`` ('dist' | 'vector' | 'matrix').
        device, seed: where batches live; generator seed.
        colour_augment: map target and source colours of each batch through one random colour map.
    """

    def __init__(
        self,
        scenes: Sequence[SceneData],
        weights: Sequence[float] | None = None,
        *,
        batch_size: int,
        n_views: int,
        pool_factor: int = 2,
        method: Callable[[SceneData], str],
        device="cpu",
        seed: int = 0,
        colour_augment: bool = False,
    ):
        if not scenes:
            raise ValueError("SourceViewBatches: no training scenes")
        weights = [1.0] * len(scenes) if weights is None or len(weights) == 0 else list(weights)
        if len(weights) != len(scenes) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"SourceViewBatches: need one non-negative weight per scene ({len(scenes)}), got {weights}"
            )
        if batch_size < 1 or n_views < 1 or pool_factor < 1:
            raise ValueError("SourceViewBatches: batch_size, n_views and pool_factor must be >= 1")
        self.device = torch.device(device)
        self.scenes = [s.to(self.device) for s in scenes]
        self.train_indices = []
        for s in self.scenes:
            idx = s.split_indices("train")
            if idx.numel() < 2:
                raise ValueError(f"SourceViewBatches: {s.root} has {idx.numel()} training image(s); GNT needs >= 2")
            self.train_indices.append(idx.to(self.device))
        self.methods = [method(s) for s in self.scenes]
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.batch_size, self.n_views, self.pool_factor, self.seed = (
            int(batch_size),
            int(n_views),
            int(pool_factor),
            int(seed),
        )
        self.colour_augment = bool(colour_augment)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)
        self.step = 0
        self._shard: slice | None = None  # data-parallel: this rank's rays of each batch (see shard)

    def shard(self, rank: int, world_size: int) -> None:
        """Data-parallel: each batch keeps slice ``rank`` of ``world_size`` of its ``batch_size`` target rays.

        Every rank draws the same scene, target image, pixels and source views from the same generator and
        keeps its own slice of the rays (``batch_size``, the global batch, must divide by ``world_size``):
        the rays never overlap and all ranks together train on one process's batch. Each rank encodes the
        same source views (sharding scenes / targets across ranks instead is not done yet).
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"SourceViewBatches.shard: bad rank {rank} of world size {world_size}")
        if self.batch_size % world_size:
            raise ValueError(
                f"trainer.batch_size {self.batch_size} (the global batch) must be divisible by the {world_size} "
                "processes"
            )
        per = self.batch_size // world_size
        self._shard = None if world_size == 1 else slice(rank * per, (rank + 1) * per)

    def __iter__(self):
        return self

    def __next__(self) -> ContextRayBatch:
        return self.sample()

    def _randint(self, high: int, n: int = 1) -> Tensor:
        return torch.randint(high, (n,), generator=self.generator)

    def sample(self) -> ContextRayBatch:
        g = self.generator
        k = int(torch.multinomial(self.weights, 1, generator=g)) if len(self.scenes) > 1 else 0
        scene, train = self.scenes[k], self.train_indices[k]
        local = int(self._randint(train.numel()))
        target = int(train[local])
        H, W = scene.height, scene.width
        n_pix = H * W
        flat = (
            torch.randperm(n_pix, generator=g)[: self.batch_size]
            if self.batch_size <= n_pix
            else self._randint(n_pix, self.batch_size)
        )
        if self._shard is not None:
            flat = flat[self._shard]
        flat = flat.to(self.device)
        x, y = flat % W, flat // W
        pixels = torch.stack([x, y], -1)
        cam_idx = torch.full((flat.numel(),), target, dtype=torch.long, device=self.device)
        rays = scene.rays(cam_idx, pixels.float() + scene.pixel_center)
        rays.pixels = pixels
        rgb = scene.images[target, y, x]
        alpha = None if scene.alphas is None else scene.alphas[target, y, x]
        context = self.source_views(k, target)
        if self.colour_augment:
            colours = random_colour_map(g)
            rgb, context = colours(rgb), replace(context, images=colours(context.images))
        self.step += 1
        return ContextRayBatch(rays, rgb, alpha, context, k)

    def source_views(self, k: int, target: int) -> SourceViews:
        """Source views of scene ``k`` for target image ``target``: random subset of the nearest pool."""
        scene, train = self.scenes[k], self.train_indices[k]
        c2w = scene.cameras.camera_to_worlds
        exclude = (train == target)[None]
        pool = nearest_views(
            c2w[target][None], c2w[train], self.n_views * self.pool_factor, method=self.methods[k], exclude=exclude
        )[0]
        chosen = train[random_subset(pool, self.n_views, self.generator).to(train.device)]
        return SourceViews(scene.images[chosen], scene.cameras[chosen], scene.pixel_center, chosen)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.step, self.seed = int(state["step"]), int(state.get("seed", self.seed))
