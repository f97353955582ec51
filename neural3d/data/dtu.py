"""DTU scenes in the IDR / NeuS layout: projection matrices, a normalising scale matrix, images and masks.

Layout (IDR ``cameras.npz``, NeuS ``cameras_sphere.npz``; the latter is used when both exist)::

    root/cameras_sphere.npz   world_mat_{i}: [4, 4] (or [3, 4]) P = K [R | t] in the capture's world frame
                              scale_mat_{i}: [4, 4] similarity (scale s, optional rotation, translation)
                                             taking the unit sphere onto the object's bounding sphere
    root/image/000000.png     the views, sorted by name (IDR: 000000.png, NeuS: 000.png); view i <-> world_mat_i
    root/mask/000.png         optional, one per image (sorted by name); the first channel is the alpha
    root/depth/000000.npy     optional, one per image, named like the image (:mod:`neural3d.data.depths`);
                              z-depth in the world units of ``world_mat``, 0 where unknown

Cameras, as NeuS' ``load_K_Rt_from_P``: ``P = world_mat_i @ scale_mat_i`` is decomposed (own float64 RQ,
:func:`neural3d.core.projection_matrix.decompose_projection`) into ``K`` and an OpenCV camera-to-world in the
*normalised* frame, where the object lies in the unit sphere; the y and z camera axes are then flipped to our
OpenGL convention. ``K`` follows OpenCV / IDR / NeuS pixel coordinates (pixel centres at integers: NeuS casts a
pixel's ray through ``K^-1 (u, v, 1)``), so ``cx, cy`` gain 0.5 in our continuous coordinates (centres at
``u + 0.5``), and the rays of ``pixel_center=0.5`` are exactly NeuS' rays. ``factor`` divides all four
intrinsics (area downscaling, :func:`~neural3d.data.images.resize_area`). Our cameras have no skew: a ``K`` whose
skew moves a pixel by more than ``MAX_SKEW_SHIFT`` pixels inside the image is refused (real DTU skews are
rounding noise); smaller ones are dropped (the largest shift is ``metadata['skew_shift_px']``).

Bounds: NeuS bounds each ray by the unit sphere (``near_far_from_sphere``). Here ``near`` / ``far`` are scene-wide
z-depths: the exact z-range of the unit sphere seen from every camera, ``(-C)·f ∓ 1`` for centre ``C`` and unit
viewing axis ``f``, the minimum and maximum over all cameras (``near`` at least ``0.01 far``, for a camera inside
the sphere). ``scene_box`` is the sphere's box ``[-1, 1]^3``.

Masks: with ``use_masks`` (default) and a ``mask/`` folder, the mask is the alpha of its image: colours are
composited ``rgb * mask + background * (1 - mask)`` (white or black as ``background``) and ``alphas`` holds the
masks. Without (``use_masks=False`` or no ``mask/``), images are used as they are, background included, and
``alphas`` is None.

Splits (``split``):

* ``pixelnerf`` -- the few-view DTU protocol of pixelNeRF, used by RegNeRF, SinNeRF and their successors, on the
  49 camera positions every DTU scan shares (views 0-48): train = the first ``train_views`` of
  ``25, 22, 28, 40, 44, 48, 0, 8, 13`` (3 views: 25, 22, 28); test = val = the 25 views
  ``1, 2, 9-12, 14, 15, 23, 24, 26, 27, 29-35, 41-43, 45-47``; the 15 views ``3-7, 16-21, 36-39`` are in no
  split (excluded by that protocol), nor are views 49+ of the 64-view scans;
* ``llffhold`` -- as LLFF scenes: every ``llffhold``-th view (0, 8, 16, ...) is test = val, the rest train;
* ``all`` -- every view in train, test and val (the IDR / NeuS reconstruction setting, no hold-out);
* ``auto`` (default) -- ``pixelnerf`` when the scene has at least 49 views, else ``llffhold``
  (``metadata['split']`` says which).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.core.projection_matrix import SingularProjectionError, decompose_projection
from neural3d.data.depths import depth_files, load_depth_stack
from neural3d.data.images import IMAGE_EXTENSIONS, load_image_stack
from neural3d.data.scene import DatasetError, DatasetFileNotFoundError, SceneData

CAMERA_FILES = ("cameras_sphere.npz", "cameras.npz")  # in order of preference
PIXELNERF_TRAIN_IDS = (25, 22, 28, 40, 44, 48, 0, 8, 13)
PIXELNERF_EXCLUDED_IDS = (3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 36, 37, 38, 39)
PIXELNERF_TEST_IDS = tuple(i for i in range(49) if i not in PIXELNERF_TRAIN_IDS + PIXELNERF_EXCLUDED_IDS)
SPLITS = ("auto", "pixelnerf", "llffhold", "all")
MAX_SKEW_SHIFT = 0.05  # pixels
SIMILARITY_ATOL = 1e-6  # relative tolerance of the scale matrix's A^T A = s^2 I


def dtu_camera_file(root: Path) -> Path:
    """``cameras_sphere.npz`` (NeuS) or else ``cameras.npz`` (IDR) in ``root``."""
    for name in CAMERA_FILES:
        if (root / name).is_file():
            return root / name
    raise DatasetFileNotFoundError(f"{root}: no DTU camera file (looked for {list(CAMERA_FILES)})")


def _view_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)


def _matrix(data, key: str, path: Path, shapes: Sequence[tuple[int, int]]) -> np.ndarray:
    """``data[key]`` as a finite float64 matrix of one of ``shapes``; DatasetError naming file and key."""
    if key not in data.files:
        raise DatasetError(f"{path}: missing key '{key}'")
    try:
        m = data[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, MemoryError) as e:
        raise DatasetError(f"{path}: '{key}' is unreadable ({e})") from None
    if m.dtype.kind not in "fiu" or m.shape not in shapes:
        want = " or ".join(str(list(s)) for s in shapes)
        raise DatasetError(f"{path}: '{key}' must be a real {want} matrix, got {m.dtype} {list(m.shape)}")
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise DatasetError(f"{path}: '{key}' contains NaN or inf")
    return m


def _check_scale_mat(S: np.ndarray, path: Path, key: str) -> float:
    """The scale ``s`` of a similarity ``[[s Q, c], [0, 1]]`` (``Q`` a rotation); DatasetError otherwise."""
    A = S[:3, :3]
    with np.errstate(over="ignore", invalid="ignore"):
        s2 = float(np.trace(A.T @ A)) / 3.0
        ok = 0 < s2 < np.inf and np.allclose(A.T @ A, s2 * np.eye(3), rtol=0, atol=SIMILARITY_ATOL * s2)
    if not ok or np.linalg.det(A) <= 0 or not np.allclose(S[3], [0, 0, 0, 1]):
        raise DatasetError(
            f"{path}: '{key}' must be a similarity [[s R, c], [0, 0, 0, 1]] with s > 0 and R a rotation "
            "(a uniform scale, no reflection or shear)"
        )
    return float(np.sqrt(s2))


def read_dtu_cameras(path: Path, n_views: int) -> tuple[np.ndarray, np.ndarray]:
    """The normalised projection matrices ``world_mat_i @ scale_mat_i`` and the scales of the scale matrices.

    Args:
        path: ``cameras.npz`` / ``cameras_sphere.npz``.
        n_views: number of images; keys ``world_mat_0 .. world_mat_{n_views-1}`` (and ``scale_mat_*``) must exist,
            and no ``world_mat_{n_views}`` (more cameras than images: an image is missing).
    Returns:
        P [n_views, 3, 4] float64 (normalised frame) and s [n_views] (file units per normalised unit).
    Raises:
        DatasetError naming the file and key (missing, unreadable, wrong shape, non-finite, not a similarity).
    """
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, MemoryError) as e:
        raise DatasetError(f"{path}: unreadable .npz file ({e})") from None
    if not hasattr(data, "files"):
        raise DatasetError(f"{path}: expected an .npz archive of named matrices, got a single array")
    with data:
        P, scales = np.empty((n_views, 3, 4)), np.empty(n_views)
        for i in range(n_views):
            W = _matrix(data, f"world_mat_{i}", path, [(4, 4), (3, 4)])
            S = _matrix(data, f"scale_mat_{i}", path, [(4, 4)])
            scales[i] = _check_scale_mat(S, path, f"scale_mat_{i}")
            with np.errstate(over="ignore", invalid="ignore"):
                P[i] = W[:3, :4] @ S
            if not np.isfinite(P[i]).all():
                raise DatasetError(f"{path}: 'world_mat_{i}' @ 'scale_mat_{i}' overflows (entries too large)")
        if f"world_mat_{n_views}" in data.files:
            n_mats = sum(1 for k in data.files if k.startswith("world_mat_") and k[10:].isdigit())
            raise DatasetError(
                f"{path}: {n_mats} 'world_mat_*' matrices but {n_views} images in {path.parent / 'image'}; "
                "counts must match (a missing image?)"
            )
    return P, scales


def _skew_shift(K: np.ndarray, height: int) -> np.ndarray:
    """[n] largest pixel shift inside the image that dropping K's skew causes: ``|s| max|y - cy| / fy``."""
    cy = K[:, 1, 2] + 0.5
    return np.abs(K[:, 0, 1]) * np.maximum(np.abs(cy), np.abs(height - cy)) / K[:, 1, 1]


def dtu_cameras(P: np.ndarray, size: tuple[int, int], factor: int, path: Path) -> tuple[Cameras, float]:
    """Our cameras from normalised projection matrices.

    Args:
        P: [n_views, 3, 4] float64 ``world_mat @ scale_mat``.
        size: (H0, W0) full-resolution image size.
        factor: integer image downscale.
        path: the camera file (messages).
    Returns:
        ``Cameras`` (OpenGL camera-to-world, continuous pixel coordinates, divided by ``factor``) and the largest
        skew shift dropped, in full-resolution pixels.
    """
    try:
        K, R, C = decompose_projection(P)
    except SingularProjectionError as e:
        i = e.indices[0]
        raise DatasetError(f"{path}: 'world_mat_{i}' (times 'scale_mat_{i}') is not a camera: {e}") from None
    shift = _skew_shift(K, size[0])
    if (shift > MAX_SKEW_SHIFT).any():
        i = int(np.argmax(shift))
        raise DatasetError(
            f"{path}: 'world_mat_{i}' has skew {K[i, 0, 1]:.4g}, moving pixels by up to {shift[i]:.3g} px "
            f"(neural3d cameras have no skew; at most {MAX_SKEW_SHIFT} px is dropped)"
        )
    c2w_cv = np.concatenate([np.swapaxes(R, 1, 2), C[:, :, None]], axis=2)
    c2w = c2w_cv * np.array([1.0, -1.0, -1.0, 1.0])  # flip the camera y and z axes: OpenCV -> OpenGL
    H0, W0 = size
    cams = Cameras(
        torch.from_numpy(c2w).float(),
        torch.from_numpy(K[:, 0, 0] / factor),
        torch.from_numpy(K[:, 1, 1] / factor),
        torch.from_numpy((K[:, 0, 2] + 0.5) / factor),
        torch.from_numpy((K[:, 1, 2] + 0.5) / factor),
        W0 // factor,
        H0 // factor,
    )
    return cams, float(shift.max())


def unit_sphere_bounds(cameras: Cameras, radius: float = 1.0, source: object = "DTU") -> tuple[float, float]:
    """Scene-wide (near, far) z-depths enclosing the sphere of ``radius`` about the origin from every camera.

    For a camera at ``C`` looking along the unit axis ``f`` the sphere's z-depths are exactly
    ``(-C)·f ± radius``; near is the minimum over cameras (at least ``0.01 far``), far the maximum.
    """
    c2w = cameras.camera_to_worlds.double()
    forward = -c2w[:, :, 2]
    mid = (-c2w[:, :, 3] * forward).sum(-1)
    far = float((mid + radius).max())
    if far <= 0:
        raise DatasetError(f"{source}: the unit sphere lies behind every camera (check the scale matrices)")
    return max(float((mid - radius).min()), 0.01 * far), far


def dtu_splits(n: int, split: str, train_views: int, llffhold: int, path: Path) -> tuple[dict, str]:
    """Split indices (see the module docstring) and the split actually used (``auto`` resolved)."""
    if split not in SPLITS:
        raise DatasetError(f"{path}: unknown DTU split '{split}' (use one of {list(SPLITS)})")
    if split == "auto":
        split = "pixelnerf" if n >= 49 else "llffhold"
    if split == "pixelnerf":
        if n < 49:
            raise DatasetError(
                f"{path}: the pixelnerf split needs the 49 DTU views (ids up to 48), the scene has {n}; "
                "use data.dtu_split=llffhold or all"
            )
        if not 1 <= train_views <= len(PIXELNERF_TRAIN_IDS):
            raise DatasetError(f"{path}: dtu_train_views must be in 1..9 for the pixelnerf split, got {train_views}")
        train, test = list(PIXELNERF_TRAIN_IDS[:train_views]), list(PIXELNERF_TEST_IDS)
    elif split == "llffhold":
        test = list(range(0, n, llffhold)) if llffhold > 0 else []
        train = [i for i in range(n) if i not in set(test)]
    else:
        train = test = list(range(n))
    as_t = lambda ids: torch.tensor(ids, dtype=torch.int64)  # noqa: E731
    return {"train": as_t(train), "val": as_t(test), "test": as_t(test)}, split


def _composite_masks(images, alphas, mask_files, size, factor, background):
    """Composite ``images`` through their masks; returns (images, alphas) [n, H, W, 3], [n, H, W, 1]."""
    masks, _, msize = load_image_stack(mask_files, factor=factor, keep_alpha=False)
    if msize != size:
        raise DatasetError(
            f"{mask_files[0]}: mask size {msize[1]}x{msize[0]} (WxH) differs from the images' {size[1]}x{size[0]}"
        )
    m = masks[..., :1]
    bg = np.asarray(background, dtype=np.float32)
    images = images * m + bg * (1.0 - m)
    return images.astype(np.float32), (m if alphas is None else alphas * m).astype(np.float32)


def load_dtu(
    root,
    *,
    factor: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    split: str = "auto",
    train_views: int = 9,
    llffhold: int = 8,
    use_masks: bool = True,
) -> SceneData:
    """Load a DTU scene in the IDR / NeuS layout (see the module docstring for every convention).

    Args:
        root: folder with ``cameras_sphere.npz`` or ``cameras.npz`` and ``image/``.
        factor: integer image downscale (area averaging); intrinsics divided by it.
        background: [3] colour the masks composite on (white (1, 1, 1) or black (0, 0, 0)).
        split: 'auto', 'pixelnerf', 'llffhold' or 'all'.
        train_views: pixelnerf split: number of training views (the first of 25, 22, 28, 40, 44, 48, 0, 8, 13).
        llffhold: llffhold split: every ``llffhold``-th view is held out (0: none).
        use_masks: composite through ``mask/`` when it exists.
    Returns:
        SceneData (kind 'dtu', near / far from the unit sphere, scene box [-1, 1]^3, ``alphas`` from the masks,
        ``depths`` from ``depth/``), ``metadata``: ``split``, ``camera_file``, ``scale`` [n] (file units per scene
        unit), ``skew_shift_px``, ``default_bounds``.
    Raises:
        DatasetError (DatasetFileNotFoundError for missing files) naming the file and key.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFileNotFoundError(f"{root}: DTU scene directory not found")
    cam_file = dtu_camera_file(root)
    image_files = _view_files(root / "image", IMAGE_EXTENSIONS)
    if not image_files:
        raise DatasetFileNotFoundError(f"{root / 'image'}: no images (.png / .jpg) found")
    mask_files = _view_files(root / "mask", IMAGE_EXTENSIONS) if use_masks else []
    if (root / "mask").is_dir() and use_masks and len(mask_files) != len(image_files):
        raise DatasetError(
            f"{root / 'mask'}: {len(mask_files)} masks but {len(image_files)} images in {root / 'image'}; "
            "counts must match"
        )
    P, scales = read_dtu_cameras(cam_file, len(image_files))
    depths_from = depth_files(root, [p.stem for p in image_files])
    images, alphas, size = load_image_stack(image_files, factor=factor, background=background)
    if mask_files:
        images, alphas = _composite_masks(images, alphas, mask_files, size, factor, background)
    cams, skew_shift = dtu_cameras(P, size, factor, cam_file)
    depths = None
    if depths_from:
        depths = torch.from_numpy(load_depth_stack(depths_from, size, factor=factor, scale=scales))
    splits, used = dtu_splits(len(image_files), split, int(train_views), int(llffhold), cam_file)
    near, far = unit_sphere_bounds(cams, source=cam_file)
    return SceneData(
        images=torch.from_numpy(images),
        alphas=None if alphas is None else torch.from_numpy(alphas),
        depths=depths,
        cameras=cams,
        splits=splits,
        near=near,
        far=far,
        scene_box=torch.tensor([[-1.0] * 3, [1.0] * 3]),
        background=torch.as_tensor(background, dtype=torch.float32),
        kind="dtu",
        root=root,
        image_paths=image_files,
        metadata={
            "split": used,
            "camera_file": cam_file.name,
            "scale": torch.from_numpy(scales),
            "skew_shift_px": skew_shift,
            "default_bounds": (near, far),
        },
    )
