"""The loaded dataset: :class:`SceneData` (images, cameras, splits, bounds) and :class:`DatasetError`.

Every loader in :mod:`neural3d.data` returns a :class:`SceneData`. Conventions are those of
:mod:`neural3d.core.cameras`: OpenGL camera-to-world poses, intrinsics in continuous pixel coordinates,
images float32 in [0, 1] with RGBA already composited on ``background``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import Tensor

from neural3d.core.cameras import Cameras, check_poses
from neural3d.core.rays import RayBundle, apply_ndc, generate_rays, image_rays


class DatasetError(ValueError):
    """A dataset on disk is malformed; the message names the file and what is wrong."""


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """A file the dataset needs is missing (both a :class:`DatasetError` and a ``FileNotFoundError``)."""


def validate_poses(c2w, source) -> None:
    """:func:`neural3d.core.cameras.check_poses` raising :class:`DatasetError` (NaN/inf or non-rigid poses).

    Args:
        c2w: [n_cams, 3, 4] or [n_cams, 4, 4] camera-to-world matrices.
        source: the file named in the message.
    """
    try:
        check_poses(torch.as_tensor(c2w), source=str(source))
    except DatasetError:
        raise
    except ValueError as e:
        raise DatasetError(str(e)) from None


@dataclass
class SceneData:
    """A posed image collection, ready for ray generation.

    Attributes:
        images: [n_images, H, W, 3] float32 in [0, 1], RGBA composited on ``background``.
        cameras: ``n_images`` cameras (OpenGL camera-to-world).
        splits: split name ('train', 'val', 'test' as available) -> [n_split] int64 image indices.
        near, far: ray segment bounds in ``t`` (z-depth) units; 0 and 1 when ``ndc`` (NDC ray units).
        scene_box: [2, 3] axis-aligned box (min corner, max corner) holding the scene; in NDC when ``ndc``.
        background: [3] colour the RGBA images were composited on.
        kind: loader name ('blender', 'llff', 'transforms').
        root: dataset directory.
        image_paths: ``n_images`` source files.
        alphas: optional [n_images, H, W, 1] alpha channel of RGBA images.
        ndc: rays are mapped to normalised device coordinates (forward-facing scenes).
        ndc_focal, ndc_width, ndc_height: intrinsics of the first camera used by ``ndc_rays``.
        render_poses: optional [n_frames, 3, 4] the dataset's own camera path (spiral, circle, orbit).
        points3d: optional [n_points, 3] sparse points (COLMAP) in this scene's world frame.
        points3d_rgb: optional [n_points, 3] their colours in [0, 1].
        pixel_center: offset of ray pixel coordinates (0.5: true centres; 0.0: original NeRF code).
        metadata: loader-specific extras (e.g. the original LLFF hold-out index).
        depths: optional [n_images, H, W] float32 z-depth per pixel (the ``t`` of the unnormalised ray through
            the pixel centre at the first surface, as the renderers' ``depth``), 0 where unknown; filled by
            loaders that have depth.
    """

    images: Tensor
    cameras: Cameras
    splits: dict[str, Tensor]
    near: float
    far: float
    scene_box: Tensor
    background: Tensor
    kind: str
    root: Path
    image_paths: list[Path]
    alphas: Tensor | None = None
    ndc: bool = False
    ndc_focal: float | None = None
    ndc_width: float | None = None
    ndc_height: float | None = None
    render_poses: Tensor | None = None
    points3d: Tensor | None = None
    points3d_rgb: Tensor | None = None
    pixel_center: float = 0.5
    metadata: dict = field(default_factory=dict)
    depths: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"SceneData.images must be [n_images, H, W, 3], got {tuple(self.images.shape)}")
        if len(self.cameras) != n or len(self.image_paths) != n:
            raise ValueError(
                f"SceneData: {n} images but {len(self.cameras)} cameras and {len(self.image_paths)} image paths"
            )
        if self.ndc and None in (self.ndc_focal, self.ndc_width, self.ndc_height):
            raise ValueError("SceneData: ndc=True needs ndc_focal, ndc_width and ndc_height")
        if self.depths is not None and tuple(self.depths.shape) != tuple(self.images.shape[:3]):
            raise ValueError(
                f"SceneData.depths must be [n_images, H, W] = {tuple(self.images.shape[:3])}, "
                f"got {tuple(self.depths.shape)}"
            )
        for name, idx in self.splits.items():
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise ValueError(f"SceneData: split '{name}' has indices outside [0, {n})")

    # ------------------------------------------------------------------ container
    @property
    def n_images(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def split_indices(self, name: str, *, nonempty: bool = False) -> Tensor:
        """[n_split] int64 image indices of split ``name``.

        Raises DatasetError listing the available splits when ``name`` is missing (or, with ``nonempty``,
        holds no image: then only the splits that hold images are listed).
        """
        splits = {k: v for k, v in self.splits.items() if len(v) or not nonempty}
        if name not in splits:
            raise DatasetError(
                f"{self.root}: no '{name}' split{' with images' if nonempty else ''} (available: {sorted(splits)})"
            )
        return self.splits[name]

    def split(self, name: str) -> SceneData:
        """The scene restricted to the images of split ``name`` (its only split, indexed 0..n_split-1)."""
        idx = self.split_indices(name)
        return replace(
            self,
            images=self.images[idx.to(self.device)],
            alphas=None if self.alphas is None else self.alphas[idx.to(self.device)],
            depths=None if self.depths is None else self.depths[idx.to(self.device)],
            cameras=self.cameras[idx.to(self.cameras.device)],
            image_paths=[self.image_paths[i] for i in idx.tolist()],
            splits={name: torch.arange(idx.numel(), device=idx.device)},
        )

    def to(self, device) -> SceneData:
        """Move every tensor (images, cameras, splits, boxes, points) to ``device``."""
        changes = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (Tensor, Cameras)):
                changes[f.name] = v.to(device)
        changes["splits"] = {k: v.to(device) for k, v in self.splits.items()}
        return replace(self, **changes)

    # ------------------------------------------------------------------ rays
    def _finish(self, rays: RayBundle) -> RayBundle:
        return apply_ndc(rays, (self.ndc_width, self.ndc_height, self.ndc_focal) if self.ndc else None)

    def rays(self, camera_indices: Tensor, xy: Tensor) -> RayBundle:
        """Rays through continuous pixel coordinates, with this scene's near/far (and NDC when ``ndc``).

        Args:
            camera_indices: [n_rays] int64 image indices.
            xy: [n_rays, 2] continuous pixel coordinates (pixel centres at integer + ``pixel_center``).
        Returns:
            [n_rays] RayBundle (world rays, or NDC rays with nears 0 and fars 1).
        """
        return self._finish(generate_rays(self.cameras, camera_indices, xy, self.near, self.far))

    def image_rays(self, index: int) -> RayBundle:
        """All rays of image ``index`` through ``pixel_center`` offsets, as an [H, W] RayBundle."""
        return self._finish(image_rays(self.cameras, index, self.near, self.far, self.pixel_center))
