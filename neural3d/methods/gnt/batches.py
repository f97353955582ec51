"""Training batches for source-view methods: all rays of a batch come from ONE target image.

Each step draws a scene (by weight, for cross-scene training), one of its training images as the
target, ``batch_size`` of its pixels (without replacement when they suffice), and the source views:
a random subset of ``n_views`` out of the ``pool_factor * n_views`` views nearest to the target,
never the target itself. The batch carries them as its ``context`` (:class:`SourceViews`).

With ``colour_augment`` every batch maps the colours of its target pixels AND its source images through
one random colour map (:mod:`neural3d.methods.gnt.colour`).

The stream is reproducible (one seeded generator) and resumable (``state_dict``).

Scenes may be given as loaders (zero-argument callables returning a :class:`SceneData`): they are loaded when
the first batch is drawn, only those this process draws from (see :meth:`SourceViewBatches.shard`).

Data-parallel (torchrun, :meth:`SourceViewBatches.shard`), two ways:

* **one scene** (or fewer scenes than processes): every rank draws the same target, pixels and source views
  from the same generator and keeps its own slice of the rays: the global batch is one process's.
* **a mixture** (at least as many scenes with weight > 0 as processes): the scenes are split across the ranks
  (:func:`~neural3d.methods.gnt.mixture.partition_scenes`, balanced by weight) and each rank loads only its
  own. Every step each rank draws its own scene (by weight, within its part), target and source views, on a
  stream re-seeded from (seed, rank, step) (deterministic, resumable on any world size), and trains on
  ``batch_size / world_size`` rays of it: a global step covers ``world_size`` targets from as many scenes. Its
  loss is scaled by ``world_size x`` (its part's share of the total weight), so the averaged gradient is an
  unbiased estimate of the mixture's whatever the partition (1 when the parts weigh the same).
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
from neural3d.training import distributed as dist

_SCENE_STREAM = 1  # tag of the loader's per-rank stream (distinct from the loop's rank stream of the same step)


@dataclass
class ContextRayBatch(RayBatch):
    """A :class:`RayBatch` of one target image with its conditioning ``context`` (source views)."""

    context: SourceViews | None = None
    scene_index: int = 0
    loss_scale: float = 1.0
    """Factor on this batch's loss (data-parallel scene sharding: this rank's share of the mixture)."""

    def to(self, device) -> ContextRayBatch:
        alpha = None if self.alpha is None else self.alpha.to(device)
        ctx = None if self.context is None else self.context.to(device)
        return ContextRayBatch(self.rays.to(device), self.rgb.to(device), alpha, ctx, self.scene_index, self.loss_scale)


class SourceViewBatches:
    """Endless stream of :class:`ContextRayBatch` over one or several scenes.

    Args:
        scenes: the training scenes (each with a ``train`` split of >= 2 images), or loaders of them.
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
        scenes: Sequence[SceneData | Callable[[], SceneData]],
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
        self._sources = list(scenes)
        self._method = method
        self._loaded: dict[int, tuple[SceneData, Tensor, str]] = {}  # k -> (scene, train indices, selection)
        self.mine = list(range(len(self._sources)))  # the scenes this process draws from
        for k, s in enumerate(self._sources):
            if not callable(s):
                self.scene(k)  # given loaded: checked now
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
        self._rank: int | None = None  # data-parallel scene sharding: this rank (its stream, see shard)
        self._loss_scale = 1.0

    # ------------------------------------------------------------------ scenes
    def __len__(self) -> int:
        return len(self._sources)

    def scene(self, k: int) -> SceneData:
        """Scene ``k``, loaded (and checked) the first time it is asked for."""
        if k not in self._loaded:
            src = self._sources[k]
            s = (src() if callable(src) else src).to(self.device)
            idx = s.split_indices("train")
            if idx.numel() < 2:
                raise ValueError(f"SourceViewBatches: {s.root} has {idx.numel()} training image(s); GNT needs >= 2")
            self._loaded[k] = (s, idx.to(self.device), self._method(s))
            self._check_scene(k)
        return self._loaded[k][0]

    def _check_scene(self, k: int) -> None:
        """Subclass hook: further checks of scene ``k`` when it is loaded."""

    def train_indices(self, k: int) -> Tensor:
        """[n_train] the training images of scene ``k``."""
        self.scene(k)
        return self._loaded[k][1]

    def loaded(self) -> list[int]:
        """Indices of the scenes this process has loaded."""
        return sorted(self._loaded)

    # ------------------------------------------------------------------ data parallel
    def shard(self, rank: int, world_size: int) -> None:
        """Data-parallel: this process's part of every global batch (the two ways of the module docstring).

        ``batch_size``, the global batch, must divide by ``world_size``. With at least ``world_size`` scenes of
        weight > 0 the scenes are split across the ranks (each loads and draws only its own part), else every
        rank draws one process's batch and keeps slice ``rank`` of its rays.
        """
        cut = dist.shard_slice(self.batch_size, rank, world_size, "trainer.batch_size (the global batch)")
        if cut is None:
            return
        if self._split_scenes(rank, world_size):
            self.batch_size = cut.stop - cut.start
        else:
            self._shard = cut

    def _split_scenes(self, rank: int, world_size: int) -> bool:
        """Scene sharding when at least ``world_size`` scenes weigh > 0 (else False, nothing changed): this rank
        loads and draws only its part of the scenes, on the stream of (seed, rank, step), and its loss is scaled
        by ``world_size x`` its part's share of the total weight."""
        from neural3d.methods.gnt.mixture import partition_scenes

        if int((self.weights > 0).sum()) < world_size:
            return False
        self.mine = partition_scenes(self.weights.tolist(), world_size)[rank]
        self._rank = rank
        self._loss_scale = world_size * float(self.weights[self.mine].sum() / self.weights.sum())
        return True

    def __iter__(self):
        return self

    def __next__(self) -> ContextRayBatch:
        return self.sample()

    def _randint(self, high: int, n: int = 1) -> Tensor:
        return torch.randint(high, (n,), generator=self.generator)

    def _draw_scene(self) -> int:
        """The step's scene: by weight among :attr:`mine` (scene sharding: on the stream of (seed, rank, step))."""
        if self._rank is not None:
            self.generator.manual_seed(dist.stream_seed(self.seed, self._rank, self.step, _SCENE_STREAM))
        for k in self.mine:  # loaded at the first draw: a bad scene fails before training starts
            self.scene(k)
        if len(self.mine) == 1:
            return self.mine[0]
        return self.mine[int(torch.multinomial(self.weights[self.mine], 1, generator=self.generator))]

    def sample(self) -> ContextRayBatch:
        g = self.generator
        k = self._draw_scene()
        scene, train = self.scene(k), self.train_indices(k)
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
        return ContextRayBatch(rays, rgb, alpha, context, k, self._loss_scale)

    def source_views(self, k: int, target: int) -> SourceViews:
        """Source views of scene ``k`` for target image ``target``: random subset of the nearest pool."""
        scene, train, method = self._loaded[k]
        c2w = scene.cameras.camera_to_worlds
        exclude = (train == target)[None]
        pool = nearest_views(
            c2w[target][None], c2w[train], self.n_views * self.pool_factor, method=method, exclude=exclude
        )[0]
        chosen = train[random_subset(pool, self.n_views, self.generator).to(train.device)]
        return SourceViews(scene.images[chosen], scene.cameras[chosen], scene.pixel_center, chosen)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.step, self.seed = int(state["step"]), int(state.get("seed", self.seed))
