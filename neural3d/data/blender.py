"""NeRF Blender synthetic scenes (``transforms_{train,val,test}.json``), as the original ``load_blender.py``.

Layout::

    root/transforms_train.json   {"camera_angle_x": a, "frames": [{"file_path": "./train/r_0",
    root/train/r_0.png             "transform_matrix": 4x4 OpenGL c2w}, ...]}
    root/transforms_val.json ...

As the original NeRF code: ``focal = 0.5 * W / tan(0.5 * camera_angle_x)`` (from the last split's JSON),
poses are the ``transform_matrix`` as float32, RGBA images are composited with
``rgb * alpha + background * (1 - alpha)`` (white by default), ``testskip`` thins val/test (not train),
near/far are 2 and 6, and ``render_poses`` is the 40-frame orbit (radius 4, elevation -30 degrees).
Only the splits whose JSON exists are loaded (e.g. a copy without its test split).

Every frame's image is located (and must lie inside ``root``, unless ``allow_external_paths``) before any
image is decoded, so a scene with missing or misplaced files fails at once with one message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.data.depths import depth_files, load_depth_stack
from neural3d.data.images import load_image_stack, locate_frame_images
from neural3d.data.scene import DatasetError, DatasetFileNotFoundError, SceneData
from neural3d.data.transforms_json import frame_matrices, number, read_json, require

BLENDER_SCENE_BOX = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))


def pose_spherical(theta: float, phi: float, radius: float) -> torch.Tensor:
    """Original NeRF orbit pose: [4, 4] float32 c2w at azimuth ``theta``, elevation ``phi`` (degrees).

    Evaluated in float32 torch exactly as the original (``trans_t``, ``rot_phi``, ``rot_theta`` and the
    axis swap, multiplied left to right).
    """
    ph, th = phi / 180.0 * np.pi, theta / 180.0 * np.pi
    trans_t = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, radius], [0, 0, 0, 1]], dtype=torch.float32)
    rot_phi = torch.tensor(
        [[1, 0, 0, 0], [0, np.cos(ph), -np.sin(ph), 0], [0, np.sin(ph), np.cos(ph), 0], [0, 0, 0, 1]],
        dtype=torch.float32,
    )
    rot_theta = torch.tensor(
        [[np.cos(th), 0, -np.sin(th), 0], [0, 1, 0, 0], [np.sin(th), 0, np.cos(th), 0], [0, 0, 0, 1]],
        dtype=torch.float32,
    )
    swap = torch.tensor([[-1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float32)
    return swap @ (rot_theta @ (rot_phi @ trans_t))


def blender_orbit(n_frames: int = 40, phi: float = -30.0, radius: float = 4.0) -> torch.Tensor:
    """[n_frames, 3, 4] the original render path: azimuths ``linspace(-180, 180, n_frames + 1)[:-1]``."""
    return torch.stack([pose_spherical(a, phi, radius) for a in np.linspace(-180, 180, n_frames + 1)[:-1]])[:, :3]


def read_blender_split(
    root, split: str, *, testskip: int = 1, allow_external_paths: bool = False
) -> tuple[list[Path], np.ndarray, float]:
    """Parse ``transforms_{split}.json`` and check that every frame's image exists (none is opened).

    Args:
        root: scene directory.
        split: 'train', 'val' or 'test'.
        testskip: keep every ``testskip``-th frame of val/test (train is never thinned; 0 means 1).
        allow_external_paths: accept ``file_path`` entries leading outside ``root``
            (:func:`~neural3d.data.images.locate_frame_images`).
    Returns:
        image paths (``file_path + '.png'``, or ``file_path`` when only that exists), poses [n, 4, 4]
        float32 (OpenGL c2w) and ``camera_angle_x``.
    Raises:
        DatasetError (DatasetFileNotFoundError for missing images) naming the file and the frame.
    """
    path = Path(root) / f"transforms_{split}.json"
    meta = read_json(path)
    angle = number(require(meta, "camera_angle_x", path), path, "camera_angle_x")
    if not 0 < angle < np.pi:
        raise DatasetError(f"{path}: 'camera_angle_x' must be in (0, pi) radians, got {angle}")
    frames = require(meta, "frames", path)
    if not isinstance(frames, list):
        raise DatasetError(f"{path}: 'frames' must be a list, got {type(frames).__name__}")
    skip = 1 if split == "train" or testskip == 0 else int(testskip)
    frames = frames[::skip]
    file_paths = [require(fr, "file_path", path, where=f"frames[{i * skip}]") for i, fr in enumerate(frames)]
    poses = frame_matrices(frames, path, skip=skip)
    # the original appends '.png'; names that already have it are accepted as they are
    paths = locate_frame_images(
        root,
        file_paths,
        source=path,
        suffixes=(".png", ""),
        allow_external=allow_external_paths,
        frame_numbers=[i * skip for i in range(len(frames))],
    )
    return paths, poses, angle


def _depth_files(root: Path, image_paths: Sequence[Path]) -> list[Path]:
    """``depth/<split>/r_i.npy`` beside each frame image (as the generated scenes write them), or []."""
    try:
        names = [str(p.relative_to(root).with_suffix("")) for p in image_paths]
    except ValueError:  # an image outside the folder (allow_external_paths): no depth beside it
        return []
    return depth_files(root, names)


def load_blender(
    root,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    factor: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    testskip: int = 1,
    near: float = 2.0,
    far: float = 6.0,
    allow_external_paths: bool = False,
) -> SceneData:
    """Load a Blender synthetic scene.

    Args:
        root: directory with ``transforms_{split}.json``.
        splits: splits to load; those without a JSON file are skipped (at least one must exist).
        factor: integer downscale (area averaging, :func:`~neural3d.data.images.resize_area`);
            ``factor=2`` is the original ``half_res`` (H // 2, W // 2, focal / 2).
        background: [3] compositing colour (white as ``--white_bkgd``).
        testskip: keep every ``testskip``-th val/test frame.
        near, far: ray bounds (original: 2 and 6).
        allow_external_paths: read ``file_path`` entries that lead outside ``root`` (``..``, absolute paths,
            symlinks out of the folder); refused by default, naming the frame.
    Returns:
        SceneData with ``alphas``, ``scene_box`` [-1.5, 1.5]^3, the 40-frame orbit ``render_poses`` and, when a
        ``depth/`` folder holds ``depth/<split>/r_i.npy`` for every frame (generated scenes), ``depths``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFileNotFoundError(f"{root}: Blender scene directory not found")
    present = [s for s in splits if (root / f"transforms_{s}.json").is_file()]
    if not present:
        raise DatasetFileNotFoundError(
            f"{root}: none of {[f'transforms_{s}.json' for s in splits]} exists (not a Blender scene)"
        )
    all_paths, all_poses, idx, angle, n = [], [], {}, None, 0
    for s in present:
        paths, poses, angle = read_blender_split(root, s, testskip=testskip, allow_external_paths=allow_external_paths)
        if len(paths) == 0:
            raise DatasetError(f"{root / f'transforms_{s}.json'}: 'frames' is empty")
        idx[s] = torch.arange(n, n + len(paths))
        n += len(paths)
        all_paths += paths
        all_poses.append(poses)
    poses = np.concatenate(all_poses, 0)
    depths_from = _depth_files(root, all_paths)
    images, alphas, (H0, W0) = load_image_stack(all_paths, factor=factor, background=background)
    depths = None if not depths_from else load_depth_stack(depths_from, (H0, W0), factor=factor)
    H, W = images.shape[1:3]
    # focal from the full-resolution width, then / factor (original half_res: focal / 2)
    focal = 0.5 * W0 / np.tan(0.5 * angle) / factor
    cams = Cameras(torch.from_numpy(poses), focal, focal, W0 / 2.0 / factor, H0 / 2.0 / factor, W, H)
    return SceneData(
        images=torch.from_numpy(images),
        alphas=None if alphas is None else torch.from_numpy(alphas),
        depths=None if depths is None else torch.from_numpy(depths),
        cameras=cams,
        splits=idx,
        near=float(near),
        far=float(far),
        scene_box=torch.tensor(BLENDER_SCENE_BOX, dtype=torch.float32),
        background=torch.as_tensor(background, dtype=torch.float32),
        kind="blender",
        root=root,
        image_paths=all_paths,
        render_poses=blender_orbit(),
        metadata={"camera_angle_x": angle, "focal": float(focal), "default_bounds": (float(near), float(far))},
    )
