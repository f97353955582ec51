"""instant-ngp / nerfstudio ``transforms.json`` scenes, and the JSON helpers shared with the Blender loader.

Keys read (top level, each overridable per frame, as nerfstudio allows):

* ``fl_x``, ``fl_y`` (pixels; ``fl_y`` defaults to ``fl_x``), else ``camera_angle_x`` / ``camera_angle_y``
  (``fl = 0.5 * size / tan(0.5 * angle)``; a missing y angle means square pixels);
* ``cx``, ``cy`` (default ``w / 2``, ``h / 2``), ``w``, ``h`` (default: the image file's size; when given they
  must match it);
* ``k1``, ``k2``, ``p1``, ``p2`` -> :attr:`Cameras.distortion`; ``k3``/``k4`` must be 0 (not modelled);
* ``camera_model``: ``OPENCV``, ``PINHOLE`` or ``SIMPLE_PINHOLE`` (default ``OPENCV``); fisheye and
  equirectangular models raise :class:`DatasetError`;
* ``frames[i].file_path`` (relative to the JSON's folder, with or without extension) and
  ``frames[i].transform_matrix`` (4x4 camera-to-world, OpenGL axes as in instant-ngp and nerfstudio);
* ``aabb_scale`` (default 1), ``scale`` (default 0.33) and ``offset`` (default [0.5, 0.5, 0.5]) define the
  scene box. instant-ngp maps a JSON position ``p`` to ``scale * p + offset`` (then cycles the axes) and
  renders the cube of side ``aabb_scale`` centred at 0.5 in its space; in the JSON's own frame this is the
  cube of side ``aabb_scale / scale`` centred at ``(0.5 - offset) / scale`` (axis cycling leaves a cube
  unchanged). Poses are *not* rescaled: the scene keeps the JSON's world units.

``applied_transform`` (nerfstudio's record of the transform already applied to the poses) is ignored:
the ``transform_matrix`` values are used as they are. Frames keep the JSON order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.data.images import image_size, load_image_stack, locate_frame_images
from neural3d.data.scene import DatasetError, DatasetFileNotFoundError, SceneData, validate_poses

SUPPORTED_CAMERA_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")


# ---------------------------------------------------------------------------------------------- JSON
def read_json(path) -> dict:
    """Parse a JSON file; DatasetFileNotFoundError if missing, DatasetError with line/column if malformed."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFileNotFoundError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def require(obj, key: str, path, where: str = "the top level"):
    """``obj[key]``, or DatasetError naming the file, the location and the missing key."""
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected an object at {where}, got {type(obj).__name__}")
    if key not in obj:
        raise DatasetError(f"{path}: missing key '{key}' at {where}")
    return obj[key]


def number(value, path, name: str, *, positive: bool = False) -> float:
    """``value`` as a finite float (``positive``: > 0), else DatasetError naming the file and the key ``name``."""
    ok = isinstance(value, (int, float, str)) and not isinstance(value, bool)
    try:
        x = float(value) if ok else math.nan
    except (ValueError, OverflowError):
        x = math.nan
    if not math.isfinite(x) or (positive and x <= 0):
        kind = "a finite positive number" if positive else "a finite number"
        raise DatasetError(f"{path}: '{name}' must be {kind}, got {value!r}")
    return x


def frame_matrices(frames, path, skip: int = 1) -> np.ndarray:
    """[n, 4, 4] float32 ``transform_matrix`` of each frame, checked finite and rigid.

    ``skip`` only makes the frame numbers in messages match the file (frames already thinned).
    """
    if not isinstance(frames, list):
        raise DatasetError(f"{path}: 'frames' must be a list, got {type(frames).__name__}")
    mats = []
    for i, fr in enumerate(frames):
        where = f"frames[{i * skip}]"
        m = require(fr, "transform_matrix", path, where=where)
        try:
            a = np.array(m, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise DatasetError(f"{path}: {where}.transform_matrix is not a numeric matrix") from None
        if a.shape not in ((4, 4), (3, 4)):
            raise DatasetError(f"{path}: {where}.transform_matrix must be 4x4 (or 3x4), got shape {a.shape}")
        mats.append(np.concatenate([a[:3], [[0.0, 0.0, 0.0, 1.0]]], 0) if a.shape == (3, 4) else a)
    poses = np.array(mats, dtype=np.float32).reshape(-1, 4, 4)
    if len(poses):
        validate_poses(poses, path)
    return poses


# ---------------------------------------------------------------------------------------------- intrinsics
def _frame_intrinsics(meta: dict, frame: dict, path, where: str, size: tuple[int, int]) -> list[float]:
    """[fx, fy, cx, cy, k1, k2, p1, p2] of one frame at full resolution; ``size`` = file (H, W)."""

    def get(k, d=None):
        return frame.get(k, meta.get(k, d))

    def num(k, d=None, positive=False):  # a key that is present must hold a number (null included)
        if k not in frame and k not in meta:
            return d
        return number(get(k), path, f"{where}.{k}" if k in frame else k, positive=positive)

    model = str(get("camera_model", "OPENCV")).upper()
    if model not in SUPPORTED_CAMERA_MODELS:
        raise DatasetError(
            f"{path}: camera_model '{model}' at {where} is not supported (use one of {SUPPORTED_CAMERA_MODELS})"
        )
    H, W = size
    for key, actual in (("w", W), ("h", H)):
        value = num(key, positive=True)
        if value is not None and (value != int(value) or int(value) != actual):
            raise DatasetError(f"{path}: '{key}' = {get(key)} at {where} but the image file is {W}x{H} (WxH)")
    fx, fy = num("fl_x", positive=True), num("fl_y", positive=True)

    def from_angle(key, n_pixels):  # fl = 0.5 * size / tan(0.5 * angle)
        angle = num(key)
        if angle is not None and not 0 < angle < math.pi:
            raise DatasetError(f"{path}: '{key}' at {where} must be in (0, pi) radians, got {angle}")
        return None if angle is None else 0.5 * n_pixels / math.tan(0.5 * angle)

    fx = from_angle("camera_angle_x", W) if fx is None else fx
    fy = from_angle("camera_angle_y", H) if fy is None else fy
    if fx is None and fy is None:
        raise DatasetError(f"{path}: missing key 'fl_x' (or 'camera_angle_x') for {where}")
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    for k in ("k3", "k4"):
        if num(k, 0.0) != 0.0:
            raise DatasetError(f"{path}: '{k}' != 0 at {where}: only k1, k2, p1, p2 distortion is supported")
    dist = [num(k, 0.0) for k in ("k1", "k2", "p1", "p2")] if model == "OPENCV" else [0.0] * 4
    return [float(fx), float(fy), num("cx", W / 2.0), num("cy", H / 2.0), *dist]


def box_near_far(cameras: Cameras, box: torch.Tensor) -> tuple[float, float]:
    """Ray bounds enclosing a box from every camera, in z-depth.

    ``far`` is the largest depth of a box corner over all cameras (exact: depth is linear, its maximum over
    a box is at a corner); ``near`` is the smallest corner depth, at least ``0.01 * far``.

    Args:
        cameras: n_cams cameras.
        box: [2, 3] min and max corner.
    """
    idx = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])
    corners = torch.gather(box, 0, idx)  # [8, 3]
    _, depth = cameras.project(corners)  # [n_cams, 8]
    far = float(depth.max())
    if far <= 0:
        raise DatasetError("the scene box lies behind every camera; check the poses or aabb_scale")
    return max(float(depth.min()), 0.01 * far), far


def aabb_box(meta: dict, path) -> torch.Tensor:
    """[2, 3] scene box from instant-ngp ``aabb_scale``/``scale``/``offset`` (see the module docstring)."""
    a = number(meta.get("aabb_scale", 1.0), path, "aabb_scale", positive=True)
    s = number(meta.get("scale", 0.33), path, "scale", positive=True)
    try:
        off = np.asarray(meta.get("offset", [0.5, 0.5, 0.5]), dtype=np.float64).reshape(3)
    except (TypeError, ValueError, OverflowError):
        off = np.full(3, np.nan)
    if not np.isfinite(off).all():
        raise DatasetError(f"{path}: 'offset' must be 3 finite numbers, got {meta.get('offset')!r}")
    centre, half = (0.5 - off) / s, 0.5 * a / s
    return torch.tensor(np.stack([centre - half, centre + half]), dtype=torch.float32)


# ---------------------------------------------------------------------------------------------- loader
def _json_files(path: Path) -> tuple[dict[str, Path], bool]:
    """Split name -> JSON file, and whether it is a single file to hold out from."""
    if path.is_file():
        return {"all": path}, True
    if not path.is_dir():
        raise DatasetFileNotFoundError(f"{path}: no such file or directory")
    if (path / "transforms.json").is_file():
        return {"all": path / "transforms.json"}, True
    files = {s: path / f"transforms_{s}.json" for s in ("train", "val", "test")}
    files = {s: f for s, f in files.items() if f.is_file()}
    if not files:
        raise DatasetFileNotFoundError(f"{path}: neither transforms.json nor transforms_{{train,val,test}}.json found")
    return files, False


def load_transforms(
    path,
    *,
    factor: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    llffhold: int = 8,
    near: float | None = None,
    far: float | None = None,
    allow_external_paths: bool = False,
) -> SceneData:
    """Load an instant-ngp / nerfstudio scene.

    Args:
        path: a ``transforms*.json`` file, or a folder with ``transforms.json`` or ``transforms_{split}.json``.
        factor: integer downscale (area averaging); intrinsics are divided by it.
        background: [3] compositing colour for RGBA images.
        llffhold: for a single JSON, frames ``[::llffhold]`` are 'test' (and 'val'), the rest 'train'.
        near, far: ray bounds; by default from the scene box (:func:`box_near_far`).
        allow_external_paths: read ``file_path`` entries that lead outside the JSON's folder (``..``, absolute
            paths, symlinks out of the folder); refused by default, naming the frame.
    Returns:
        SceneData (``kind='transforms'``), scene box from ``aabb_scale``.

    Every frame's image is located, and the JSON's poses, intrinsics (against the first image's header) and
    scene box are checked, before any image is decoded.
    """
    path = Path(path)
    files, single = _json_files(path)
    metas = {s: read_json(f) for s, f in files.items()}
    paths, poses, frames_meta, counts = [], [], [], {}
    for s, f in files.items():
        frames = require(metas[s], "frames", f)
        if not isinstance(frames, list) or not frames:
            raise DatasetError(f"{f}: 'frames' must be a non-empty list")
        file_paths = [require(fr, "file_path", f, where=f"frames[{i}]") for i, fr in enumerate(frames)]
        frames_meta += [(metas[s], fr, f, f"frames[{i}]") for i, fr in enumerate(frames)]
        poses.append(frame_matrices(frames, f))
        paths += locate_frame_images(f.parent, file_paths, source=f, allow_external=allow_external_paths)
        counts[s] = len(frames)
    size = image_size(paths[0])  # header only: the intrinsics are checked before any image is decoded
    intr = torch.tensor([_frame_intrinsics(m, fr, f, w, size) for m, fr, f, w in frames_meta], dtype=torch.float64)
    intr[:, :4] /= factor
    first = next(iter(files.values()))
    box = aabb_box(metas[next(iter(files))], first)
    images, alphas, size = load_image_stack(paths, factor=factor, background=background)
    H, W = images.shape[1:3]
    cams = Cameras(torch.from_numpy(np.concatenate(poses)), *intr[:, :4].T, W, H, distortion=intr[:, 4:])
    n = len(paths)
    if single:
        test = torch.arange(n)[::llffhold] if llffhold > 0 else torch.zeros(0, dtype=torch.long)
        mask = torch.ones(n, dtype=torch.bool)
        mask[test] = False
        splits = {"train": torch.arange(n)[mask], "val": test, "test": test}
    else:
        ends = np.cumsum(list(counts.values()))
        splits = {s: torch.arange(e - c, e) for (s, c), e in zip(counts.items(), ends)}
    if near is None or far is None:
        n0, f0 = box_near_far(cams, box)
        near, far = (n0 if near is None else near), (f0 if far is None else far)
    return SceneData(
        images=torch.from_numpy(images),
        alphas=None if alphas is None else torch.from_numpy(alphas),
        cameras=cams,
        splits=splits,
        near=float(near),
        far=float(far),
        scene_box=box,
        background=torch.as_tensor(background, dtype=torch.float32),
        kind="transforms",
        root=first.parent,
        image_paths=paths,
        metadata={"json_files": list(files.values())},
    )
