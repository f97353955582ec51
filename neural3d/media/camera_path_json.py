"""nerfstudio ``camera_path.json`` I/O: :class:`CameraPath`, :func:`load_camera_path`, :func:`save_camera_path`.

Poses are OpenGL camera-to-world matrices, as everywhere in neural3d.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neural3d.core.cameras import check_poses
from neural3d.core.poses import fov_to_focal
from neural3d.data.scene import DatasetError

__all__ = ["CameraPath", "load_camera_path", "save_camera_path"]


@dataclass
class CameraPath:
    """A rendered camera path (nerfstudio ``camera_path.json`` content, perspective cameras).

    Attributes:
        c2w: [n_cams, 3, 4] float32 OpenGL camera-to-world.
        fov_deg: [n_cams] vertical field of view in degrees.
        width, height: render resolution in pixels.
        fps: frames per second.
        aspect: optional [n_cams] width / height stored per camera by nerfstudio.
    """

    c2w: torch.Tensor
    fov_deg: torch.Tensor
    width: int
    height: int
    fps: float
    aspect: torch.Tensor | None = None

    def __post_init__(self):
        n = self.c2w.shape[0]
        if self.c2w.shape != (n, 3, 4) or self.fov_deg.shape != (n,):
            raise ValueError(f"CameraPath: need c2w [n, 3, 4] and fov_deg [n], got {tuple(self.c2w.shape)}, "
                             f"{tuple(self.fov_deg.shape)}")  # fmt: skip
        if self.aspect is not None and self.aspect.shape != (n,):
            raise ValueError(f"CameraPath: aspect must be [n] = [{n}], got {tuple(self.aspect.shape)}")
        if self.width <= 0 or self.height <= 0 or not self.fps > 0:
            raise ValueError(
                f"CameraPath: need positive width, height, fps; got {self.width}, {self.height}, {self.fps}"
            )

    @property
    def n_frames(self) -> int:
        return self.c2w.shape[0]

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps

    @property
    def focal(self) -> torch.Tensor:
        """[n_cams] focal length in pixels (fx = fy), as nerfstudio derives it from the vertical fov."""
        return fov_to_focal(self.fov_deg.double(), self.height).float()


def load_camera_path(path: str | Path) -> CameraPath:
    """Read a nerfstudio ``camera_path.json`` (``camera_path`` entries with ``camera_to_world`` 16 floats
    row-major 4x4 and vertical ``fov`` in degrees, ``render_width``, ``render_height``, ``fps`` or
    ``seconds``). fps is the file's ``fps`` if present, else n / ``seconds`` (as ``ns-render``).

    Raises:
        DatasetError (a ValueError): unreadable JSON, missing / malformed keys, non-finite numbers, a
            ``camera_to_world`` that is not a rigid transform (as the data loaders require of poses), a render size
            that is not an integer in [1, 65536], a ``fov`` outside (0, 180), non-perspective ``camera_type`` (the
            message names the file and key).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read camera path JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level must be a JSON object")
    camera_type = data.get("camera_type", "perspective")
    if str(camera_type).lower() != "perspective":
        raise DatasetError(f"{path}: key 'camera_type' is {camera_type!r}; only 'perspective' is supported")
    width, height = (_size(data, key, path) for key in ("render_width", "render_height"))
    entries = data.get("camera_path")
    if not isinstance(entries, list) or len(entries) == 0:
        raise DatasetError(f"{path}: key 'camera_path' must be a non-empty list")
    c2w, fov, aspect = [], [], []
    for i, entry in enumerate(entries):
        where = f"camera_path[{i}]"
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: {where} must be an object")
        mat = entry.get("camera_to_world")
        if not isinstance(mat, list) or len(mat) != 16 or not all(_is_finite_number(v) for v in mat):
            raise DatasetError(f"{path}: key '{where}.camera_to_world' must be a list of 16 finite numbers")
        m44 = np.asarray(mat, dtype=np.float64).reshape(4, 4)
        try:  # the check the data loaders apply to their poses (a rotation, within 1e-3)
            check_poses(torch.from_numpy(m44[None, :3]), source=f"{path}: key '{where}.camera_to_world'")
        except ValueError as e:
            raise DatasetError(str(e).replace("pose 0 is", "is")) from None
        c2w.append(m44[:3])
        fov.append(_number(entry, "fov", path, positive=True, where=where))
        if not fov[-1] < 180.0:
            raise DatasetError(f"{path}: key '{where}.fov' must be below 180 degrees, got {fov[-1]}")
        if "aspect" in entry:
            aspect.append(_number(entry, "aspect", path, positive=True, where=where))
    if aspect and len(aspect) != len(entries):
        raise DatasetError(
            f"{path}: key 'aspect' is present in only {len(aspect)} of {len(entries)} camera_path entries"
        )
    if "fps" in data:
        fps = _number(data, "fps", path, positive=True)
    elif "seconds" in data:
        fps = len(entries) / _number(data, "seconds", path, positive=True)
        if not math.isfinite(fps):
            raise DatasetError(f"{path}: key 'seconds' is too small for {len(entries)} frames")
    else:
        raise DatasetError(f"{path}: missing key 'fps' (or 'seconds')")
    return CameraPath(
        c2w=torch.from_numpy(np.stack(c2w).astype(np.float32)),
        fov_deg=torch.tensor(fov, dtype=torch.float32),
        width=width,
        height=height,
        fps=float(fps),
        aspect=torch.tensor(aspect, dtype=torch.float32) if aspect else None,
    )


def save_camera_path(path: str | Path, camera_path: CameraPath, keyframes: CameraPath | None = None) -> None:
    """Write ``camera_path`` in nerfstudio's ``camera_path.json`` format (readable by ``ns-render
    camera-path`` and the viewer's "Load Path"). ``keyframes`` (optional) are stored as the viewer's
    ``keyframes`` list (``matrix`` 16 floats, ``fov``, ``aspect``)."""

    def entry(c2w: torch.Tensor, fov: torch.Tensor, aspect: float, matrix_key: str) -> dict:
        mat = torch.cat([c2w.double(), torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)], 0)
        return {matrix_key: mat.reshape(-1).tolist(), "fov": float(fov), "aspect": aspect}

    def aspects(cp: CameraPath) -> list:
        default = camera_path.width / camera_path.height
        return [default] * cp.n_frames if cp.aspect is None else [float(a) for a in cp.aspect]

    key_list = []
    if keyframes is not None:
        for c2w, fov, asp in zip(keyframes.c2w, keyframes.fov_deg, aspects(keyframes)):
            key = entry(c2w, fov, asp, "matrix")
            key.update(override_transition_enabled=False, override_transition_sec=None)
            key_list.append(key)
    data = {
        "default_fov": float(camera_path.fov_deg[0]),
        "default_transition_sec": camera_path.seconds / max(len(key_list) - 1, 1),
        "keyframes": key_list,
        "camera_type": "perspective",
        "render_height": int(camera_path.height),
        "render_width": int(camera_path.width),
        "fps": float(camera_path.fps),
        "seconds": camera_path.seconds,
        "is_cycle": False,
        "smoothness_value": 0.5,
        "camera_path": [
            entry(c, f, a, "camera_to_world")
            for c, f, a in zip(camera_path.c2w, camera_path.fov_deg, aspects(camera_path))
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _is_finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(obj: dict, key: str, path: Path, *, positive: bool = False, where: str = "") -> float:
    """obj[key] as a finite (positive) float, else DatasetError naming the file and key."""
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise DatasetError(f"{path}: missing key '{name}'")
    value = obj[key]
    if not _is_finite_number(value) or (positive and value <= 0):
        kind = "finite positive" if positive else "finite"
        raise DatasetError(f"{path}: key '{name}' must be a {kind} number, got {value!r}")
    return float(value)


MAX_RENDER_SIZE = 65536


def _size(obj: dict, key: str, path: Path) -> int:
    """obj[key] as an integer pixel count in [1, MAX_RENDER_SIZE], else DatasetError naming the file and key."""
    value = _number(obj, key, path, positive=True)
    if value != int(value) or not 1 <= value <= MAX_RENDER_SIZE:
        raise DatasetError(f"{path}: key '{key}' must be an integer in [1, {MAX_RENDER_SIZE}], got {obj[key]!r}")
    return int(value)
