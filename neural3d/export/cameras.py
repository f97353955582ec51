"""Cameras as a nerfstudio / instant-ngp ``transforms.json`` (OpenGL c2w, per-frame pinhole intrinsics)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from neural3d.core.cameras import Cameras


def cameras_to_transforms(
    cameras: Cameras, file_paths: Sequence[str], *, pixel_center: float = 0.5, extra: dict | None = None
) -> dict:
    """A ``transforms.json`` dict: ``camera_model`` OPENCV, ``frames[i]`` with ``file_path``,
    ``transform_matrix`` (4x4 OpenGL camera-to-world) and ``fl_x, fl_y, cx, cy, w, h`` (+ ``k1, k2, p1, p2``).

    Intrinsics are written per frame (nerfstudio allows it), and also at the top level when all frames share them.
    ``cx, cy`` are in the continuous pixel convention of nerfstudio / COLMAP (pixel centres at +0.5).
    """
    if len(file_paths) != len(cameras):
        raise ValueError(f"cameras_to_transforms: {len(cameras)} cameras but {len(file_paths)} file paths")
    cams = cameras.to("cpu")
    frames = []
    for i in range(len(cams)):
        m = cams.camera_to_worlds[i].double().tolist() + [[0.0, 0.0, 0.0, 1.0]]
        fr = {"file_path": str(file_paths[i]), "transform_matrix": m, **_intrinsics(cams, i, pixel_center)}
        frames.append(fr)
    keys = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2")
    shared = {k: frames[0][k] for k in keys if k in frames[0] and all(f.get(k) == frames[0][k] for f in frames)}
    return {"camera_model": "OPENCV", **shared, **(extra or {}), "frames": frames}


def _intrinsics(cams: Cameras, i: int, pixel_center: float) -> dict:
    # a run with pixel_center 0 casts rays through integer coordinates: shift to the +0.5 convention
    shift = 0.5 - pixel_center
    d = {
        "fl_x": float(cams.fx[i]),
        "fl_y": float(cams.fy[i]),
        "cx": float(cams.cx[i]) + shift,
        "cy": float(cams.cy[i]) + shift,
        "w": int(cams.width[i]),
        "h": int(cams.height[i]),
    }
    if cams.distortion is not None:
        d.update(zip(("k1", "k2", "p1", "p2"), (float(v) for v in cams.distortion[i])))
    return d


def write_transforms(path, cameras: Cameras, file_paths: Sequence[str], **kw) -> Path:
    """Write :func:`cameras_to_transforms` to ``path`` (.json)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise ValueError(f"{path}: cameras are written as a .json file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cameras_to_transforms(cameras, file_paths, **kw), indent=2))
    return path
