"""Random ray batches for training (:class:`RayLoader`) and whole images for evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from neural3d.core.rays import RayBundle
from neural3d.data.scene import SceneData


@dataclass
class RayBatch:
    """Rays and their ground truth.

    Attributes:
        rays: [n_rays] RayBundle (``camera_indices`` are indices into the full scene, ``pixels`` (x, y)).
        rgb: [n_rays, 3] target colours (composited on the scene background).
        alpha: optional [n_rays, 1] target opacity (RGBA datasets).
    """

    rays: RayBundle
    rgb: Tensor
    alpha: Tensor | None = None

    def to(self, device) -> RayBatch:
        alpha = None if self.alpha is None else self.alpha.to(device)
        return RayBatch(self.rays.to(device), self.rgb.to(device), alpha)


class RayLoader:
    """Endless stream of random rays drawn uniformly over every pixel of every image of a split.

    The images of the split live on ``device`` (no copy when the scene is already there) and pixels are
    drawn there with a seeded ``torch.Generator`` on the same device, so batches never leave the
    accelerator. The stream is reproducible: the same seed gives the same batches, and
    :meth:`state_dict` / :meth:`load_state_dict` resume it exactly.

    Args:
        scene: the dataset.
        split: which split to draw from.
        batch_size: rays per batch.
        device: where images, rays and the generator live.
        seed: generator seed.
    """

    def __init__(self, scene: SceneData, split: str = "train", batch_size: int = 4096, device="cpu", seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"RayLoader: batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.split, self.batch_size, self.seed = split, int(batch_size), int(seed)
        idx = scene.split_indices(split)
        if idx.numel() == 0:
            raise ValueError(f"RayLoader: split '{split}' of {scene.root} has no images")
        self.image_indices = idx.to(self.device)  # [n_split] indices into the scene
        if scene.images.device == self.device:  # index the scene's own tensors: no copy
            self._images, self._alphas, self._rows = scene.images, scene.alphas, self.image_indices
        else:
            dev_idx = idx.to(scene.images.device)
            self._images = scene.images[dev_idx].to(self.device)
            self._alphas = None if scene.alphas is None else scene.alphas[dev_idx].to(self.device)
            self._rows = torch.arange(idx.numel(), device=self.device)
        self.scene = replace(scene, cameras=scene.cameras.to(self.device))  # images stay where they are
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.step = 0
        self._shard: slice | None = None  # data-parallel: this rank's part of each batch (see shard)

    @property
    def n_pixels(self) -> int:
        """Number of pixels (rays) in the split."""
        return self.image_indices.numel() * self.scene.height * self.scene.width

    def __iter__(self) -> Iterator[RayBatch]:
        return self

    def __next__(self) -> RayBatch:
        return self.sample(self.batch_size, select=self._shard)

    def shard(self, rank: int, world_size: int) -> None:
        """Data-parallel: from now on each batch is slice ``rank`` of ``world_size`` of the global batch.

        ``batch_size`` stays the global batch and must divide by ``world_size``. Every rank draws the same
        global batch from the same generator (only the pixel indices) and builds the rays of its own slice:
        shards never overlap, the stream does not depend on ``world_size`` (resume on another world size),
        and the rays of all ranks together are those one process trains on.
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"RayLoader.shard: bad rank {rank} of world size {world_size}")
        if self.batch_size % world_size:
            raise ValueError(
                f"trainer.batch_size {self.batch_size} (the global batch) must be divisible by the {world_size} "
                "processes"
            )
        per = self.batch_size // world_size
        self._shard = None if world_size == 1 else slice(rank * per, (rank + 1) * per)

    def sample(self, n_rays: int, select: slice | None = None) -> RayBatch:
        """A batch of ``n_rays`` rays drawn uniformly (with replacement) over the split's pixels.

        ``select``: keep only this slice of the ``n_rays`` drawn (a data-parallel shard, :meth:`shard`).
        """
        H, W = self.scene.height, self.scene.width
        flat = torch.randint(self.n_pixels, (n_rays,), generator=self.generator, device=self.device)
        if select is not None:
            flat = flat[select]
        local, pix = flat // (H * W), flat % (H * W)
        y, x = pix // W, pix % W
        rows = self._rows[local]
        pixels = torch.stack([x, y], -1)
        rays = self.scene.rays(self.image_indices[local], pixels.float() + self.scene.pixel_center)
        rays.pixels = pixels
        alpha = None if self._alphas is None else self._alphas[rows, y, x]
        self.step += 1
        return RayBatch(rays, self._images[rows, y, x], alpha)

    def eval_images(self) -> Iterator[tuple[int, RayBundle, Tensor]]:
        """Yield (scene image index, [H, W] RayBundle, [H, W, 3] rgb) for each image of the split, on ``device``."""
        for k in range(self.image_indices.numel()):
            i = int(self.image_indices[k])
            yield i, self.scene.image_rays(i), self._images[self._rows[k]]

    def state_dict(self) -> dict:
        """Generator state and position, to resume the same stream of batches."""
        return {
            "generator": self.generator.get_state(),
            "step": self.step,
            "seed": self.seed,
            "split": self.split,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; the next batch is the one that would have followed."""
        if state.get("split", self.split) != self.split:
            raise ValueError(f"RayLoader: state is for split '{state['split']}', this loader draws from '{self.split}'")
        gen = state["generator"]
        self.generator.set_state(gen.cpu() if torch.is_tensor(gen) else torch.as_tensor(gen, dtype=torch.uint8))
        self.step, self.seed = int(state["step"]), int(state.get("seed", self.seed))
