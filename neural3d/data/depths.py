"""Per-view depth maps stored beside a scene: ``depth/<image name>.npy``, exposed as ``SceneData.depths``.

The one on-disk format (what :mod:`neural3d.data.synthetic` writes for every layout): one ``.npy`` file per
image, a float array ``[H, W]`` (or ``[H, W, 1]``) at the image file's full resolution holding the **z-depth** of
the ray through each pixel centre (distance along the camera's viewing axis, not along the ray), in the world
units of the file's cameras; ``0`` (or NaN / inf) where the depth is unknown. Loaders convert the units to their
scene's frame (DTU divides by the scale matrix's scale) and downscale with :func:`downscale_depth`.

In memory (``SceneData.depths``): ``[n_images, H, W]`` float32, the same z-depth (the ray parameter ``t`` of
:func:`neural3d.core.rays.image_rays`, whose directions have camera-frame z = -1), 0 where unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neural3d.data.scene import DatasetError, DatasetFileNotFoundError


def downscale_depth(depth: np.ndarray, factor: int) -> np.ndarray:
    """Downscale a depth map by an integer factor: the mean of each block's *known* depths (0 if none).

    Blocks as :func:`neural3d.data.images.resize_area` (the last ``H % factor`` rows and ``W % factor``
    columns are dropped). A block straddling an occlusion boundary averages the two surfaces' depths, as the
    area-averaged colour mixes their colours; unknown (0) pixels do not pull the mean towards 0.

    Args:
        depth: [H, W] float, 0 where unknown.
        factor: integer >= 1.
    Returns:
        [H // factor, W // factor] float32.
    """
    if factor == 1:
        return depth.astype(np.float32, copy=False)
    H, W = depth.shape[0] // factor, depth.shape[1] // factor
    blocks = depth[: H * factor, : W * factor].reshape(H, factor, W, factor).astype(np.float64)
    known = blocks > 0
    count = known.sum(axis=(1, 3))
    total = np.where(known, blocks, 0.0).sum(axis=(1, 3))
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def read_depth(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Read one depth file and check it.

    Args:
        path: the ``.npy`` file.
        size: (H, W) of its image.
    Returns:
        [H, W] float64, non-finite entries replaced by 0 (unknown).
    Raises:
        DatasetFileNotFoundError: the file is missing.
        DatasetError: unreadable, not a real [H, W] array, or negative depths.
    """
    if not path.is_file():
        raise DatasetFileNotFoundError(f"{path}: depth file not found (every image needs one when depth/ exists)")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, KeyError, MemoryError) as e:
        raise DatasetError(f"{path}: unreadable .npy file ({e})") from None
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype.kind not in "fiu" or arr.shape != tuple(size):
        raise DatasetError(
            f"{path}: expected a real [H, W] = {list(size)} depth array like its image, "
            f"got {arr.dtype} {list(arr.shape)}"
        )
    arr = np.where(np.isfinite(arr), arr, 0.0).astype(np.float64)
    if (arr < 0).any():
        raise DatasetError(f"{path}: negative depths (z-depth is >= 0; 0 marks unknown pixels)")
    return arr


def depth_files(root: Path, names: Sequence[str]) -> list[Path]:
    """``root/depth/<name>.npy`` for each image name; [] when ``root/depth`` is not a folder.

    Args:
        root: the scene folder.
        names: ``n_images`` names without extension (Blender: ``train/r_0``; DTU: the image's stem).
    Raises:
        DatasetFileNotFoundError: ``depth/`` exists but some images have no file (names the first, counts them).
    """
    folder = Path(root) / "depth"
    if not folder.is_dir():
        return []
    files = [folder / f"{name}.npy" for name in names]
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise DatasetFileNotFoundError(
            f"{missing[0]}: depth file not found ({len(missing)} of {len(files)} images have none; "
            "every image needs one when depth/ exists)"
        )
    return files


def load_depth_stack(
    paths: Sequence[Path], size: tuple[int, int], *, factor: int = 1, scale: Sequence[float] | None = None
) -> np.ndarray:
    """Read, rescale and downscale one depth file per image.

    Args:
        paths: ``n_images`` ``.npy`` files.
        size: (H0, W0) of the full-resolution images the files must match.
        factor: integer downscale (:func:`downscale_depth`).
        scale: optional [n_images] divisors turning file units into the scene's units.
    Returns:
        [n_images, H0 // factor, W0 // factor] float32, 0 where unknown.
    """
    out = None
    for i, p in enumerate(paths):
        d = read_depth(Path(p), size)
        if scale is not None:
            d = d / float(scale[i])
        d = downscale_depth(d, factor)
        if out is None:
            out = np.empty((len(paths), *d.shape), dtype=np.float32)
        out[i] = d
    if out is None:
        raise DatasetError("no depth files to load")
    return out
