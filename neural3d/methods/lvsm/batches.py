"""LVSM training batches: whole target images and a random number of source views per step.

Reuses GNT's source-view machinery (:class:`~neural3d.methods.gnt.batches.SourceViewBatches`: weighted scene
mixture, seeded resumable generator; :func:`~neural3d.methods.gnt.selection.nearest_views` and
``random_subset``): each step draws a scene by weight, ``n_targets`` training images as targets, a number of
source views ``n`` uniformly in ``[n_views_min, n_views_max]``, and ``n`` of the ``pool_factor * n_views_max``
views nearest to the (first) target (never a target). The batch's rays are the whole target images ([H, W] or
[t, H, W] bundle).

Data-parallel (torchrun, :meth:`ImageBatches.shard`; ``model.targets_per_step`` must divide by the world size
``W``), the two ways of GNT's batches:

* **one scene** (or fewer scenes of weight > 0 than processes): every rank draws the same scene, targets and
  source views and renders its own slice of the targets: the global step is one process's.
* **a mixture** (at least ``W`` scenes of weight > 0): the scenes are split across the ranks
  (:func:`~neural3d.methods.gnt.mixture.partition_scenes`) and each rank loads only its own part. Every step
  each rank draws what one process would draw from its part (a scene, ``targets_per_step`` targets, source
  views, the pose-normalisation frame over all of them) on the stream of (seed, rank, step) and renders its
  slice of those targets: a global step covers ``targets_per_step`` images from ``W`` scenes. The loss is
  scaled by ``W x`` the part's share of the total weight (an unbiased estimate of the mixture's gradient).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from neural3d.data.scene import SceneData
from neural3d.methods.gnt.batches import ContextRayBatch, SourceViewBatches
from neural3d.methods.gnt.projection import SourceViews
from neural3d.methods.gnt.selection import nearest_views, random_subset
from neural3d.training import distributed as dist


@dataclass
class LVSMContext:
    """What LVSM renders from.

    Attributes:
        views: the posed source images.
        frame: optional [4, 4] similarity from world to the normalised frame (official pose normalisation).
        latents: optional [1, n_latents, d] encoded scene (encoder-decoder), reused by every render.
    """

    views: SourceViews
    frame: Tensor | None = None
    latents: Tensor | None = None

    def to(self, device) -> LVSMContext:
        return LVSMContext(
            self.views.to(device),
            None if self.frame is None else self.frame.to(device),
            None if self.latents is None else self.latents.to(device),
        )


class ImageBatches(SourceViewBatches):
    """Endless stream of whole-image :class:`ContextRayBatch` es with :class:`LVSMContext` s.

    Args:
        scenes, weights, method, device, seed: as :class:`SourceViewBatches`.
        n_views_min, n_views_max: range of the number of source views per step.
        pool_factor: sources drawn from the ``pool_factor * n_views_max`` nearest views.
        frame: callable ``(scene, [n, 3, 4] camera-to-worlds of the step's source and target views) -> [4, 4]
            frame or None``: the pose normalisation of the step (per scene, or over the step's views).
        n_targets: target images per step (distinct, sharing the source views chosen for the first; the official
            training renders 6 targets per scene); the batch's rays are then [n_targets, H, W].
    """

    def __init__(
        self,
        scenes: Sequence[SceneData | Callable[[], SceneData]],
        weights: Sequence[float] | None = None,
        *,
        n_views_min: int,
        n_views_max: int,
        pool_factor: int = 2,
        method: Callable[[SceneData], str],
        frame: Callable[[SceneData, Tensor], Tensor | None],
        device="cpu",
        seed: int = 0,
        n_targets: int = 1,
    ):
        if not 1 <= n_views_min <= n_views_max:
            raise ValueError(f"LVSM: need 1 <= n_views_min <= n_views_max, got {n_views_min}, {n_views_max}")
        self.n_targets, self.frame = int(n_targets), frame
        self._targets: slice | None = None  # data-parallel: this rank's targets of each step
        super().__init__(
            scenes, weights, batch_size=1, n_views=n_views_max, pool_factor=pool_factor, method=method,
            device=device, seed=seed,
        )  # fmt: skip
        self.n_views_min = int(n_views_min)

    def _check_scene(self, k: int) -> None:
        sc, train, _ = self._loaded[k]
        if not 1 <= self.n_targets < train.numel():
            raise ValueError(
                f"LVSM: {sc.root} has {train.numel()} training images; n_targets must be in [1, {train.numel() - 1}]"
            )

    def shard(self, rank: int, world_size: int) -> None:
        """Data-parallel: render slice ``rank`` of ``world_size`` of every step's target images; on a mixture of
        at least ``world_size`` scenes of weight > 0, of targets drawn from this rank's own scenes (module
        docstring)."""
        self._targets = dist.shard_slice(self.n_targets, rank, world_size, "model.targets_per_step")
        if self._targets is not None:
            self._split_scenes(rank, world_size)

    def sample(self) -> ContextRayBatch:
        g = self.generator
        k = self._draw_scene()
        scene, train = self.scene(k), self.train_indices(k)
        if self.n_targets == 1:
            targets = [int(train[int(self._randint(train.numel()))])]
        else:
            targets = train[torch.randperm(train.numel(), generator=g)[: self.n_targets].to(train.device)].tolist()
        n = self.n_views_min + int(self._randint(self.n_views - self.n_views_min + 1))
        is_target = (train[:, None] == torch.tensor(targets, device=train.device)[None]).any(-1)
        pool = nearest_views(
            scene.cameras.camera_to_worlds[targets[0]][None],
            scene.cameras.camera_to_worlds[train],
            self.n_views * self.pool_factor,
            method=self._loaded[k][2],
            exclude=is_target[None],
        )[0]
        chosen = train[random_subset(pool, n, g).to(train.device)]
        c2w = scene.cameras.camera_to_worlds
        frame = self.frame(scene, torch.cat([c2w[chosen], c2w[torch.as_tensor(targets, device=c2w.device)]]))
        if self._targets is not None:  # data-parallel: the frame above is over ALL the step's targets
            targets = targets[self._targets]
        views = SourceViews(scene.images[chosen], scene.cameras[chosen], scene.pixel_center, chosen)
        if len(targets) == 1:
            rays = scene_image_rays(scene, targets[0])
        else:
            from neural3d.core.rays import RayBundle

            rays = RayBundle.cat([scene_image_rays(scene, t)[None] for t in targets])
        rgb = scene.images[targets].reshape(-1, 3)
        alpha = None if scene.alphas is None else scene.alphas[targets].reshape(-1, *scene.alphas.shape[3:])
        self.step += 1
        return ContextRayBatch(rays, rgb, alpha, LVSMContext(views, frame), k, self._loss_scale)


def scene_image_rays(scene: SceneData, index: int):
    """[H, W] rays of image ``index`` of ``scene`` (its pixel centre, bounds irrelevant to LVSM)."""
    from neural3d.core.rays import image_rays

    return image_rays(scene.cameras, index, 0.0, 1.0, scene.pixel_center)
