"""COLMAP sparse models in the binary format (``cameras.bin``, ``images.bin``, ``points3D.bin``).

Layouts (little endian, as COLMAP's ``read_write_model.py`` documents them):

* ``cameras.bin``: uint64 count, then per camera int32 id, int32 model id, uint64 width, uint64 height,
  float64 params[n_params(model)].
* ``images.bin``: uint64 count, then per image int32 id, float64 qvec[4] (w, x, y, z), float64 tvec[3],
  int32 camera id, NUL-terminated name, uint64 n_points2D, then (float64 x, float64 y, int64 point3D id) each.
* ``points3D.bin``: uint64 count, then per point uint64 id, float64 xyz[3], uint8 rgb[3], float64 error,
  uint64 track length, then (int32 image id, int32 point2D index) each.

COLMAP poses are world-to-camera in OpenCV axes (x right, y down, z forward): ``X_cam = R(qvec) X + tvec``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.data.scene import DatasetError, DatasetFileNotFoundError

# model id -> (name, number of params)
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}


@dataclass
class ColmapCamera:
    """One COLMAP camera: ``model`` name, image ``width``/``height`` and its ``params`` [n_params] float64."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    """One registered image: ``qvec`` [4] (w, x, y, z) and ``tvec`` [3] world-to-camera (OpenCV axes),
    ``xys`` [n_points2D, 2] keypoints and ``point3d_ids`` [n_points2D] (-1: none)."""

    id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray
    point3d_ids: np.ndarray


@dataclass
class ColmapPoints:
    """Sparse points: ``ids`` [n_points] int64, ``xyz`` [n_points, 3] float64, ``rgb`` [n_points, 3] uint8,
    ``errors`` [n_points] float64 reprojection errors, ``track_lengths`` [n_points] int64."""

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    errors: np.ndarray
    track_lengths: np.ndarray


class _Reader:
    """Bounds-checked little-endian reads from a file's bytes (errors name the file and offset)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetFileNotFoundError(f"{self.path}: COLMAP file not found")
        self.buf = self.path.read_bytes()
        self.pos = 0

    def _need(self, nbytes: int) -> None:
        if self.pos + nbytes > len(self.buf):
            raise DatasetError(
                f"{self.path}: truncated COLMAP file (needed {nbytes} bytes at offset {self.pos}, size {len(self.buf)})"
            )

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        self._need(size)
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def array(self, dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        nbytes = dt.itemsize * count
        self._need(nbytes)
        out = np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos)
        self.pos += nbytes
        return out

    def cstring(self) -> str:
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            raise DatasetError(f"{self.path}: truncated COLMAP file (unterminated image name at offset {self.pos})")
        s = self.buf[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def read_cameras_bin(path) -> dict[int, ColmapCamera]:
    """Parse ``cameras.bin`` -> {camera id: ColmapCamera}."""
    r = _Reader(path)
    (n,) = r.read("Q")
    cams = {}
    for _ in range(n):
        cid, model_id, w, h = r.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise DatasetError(f"{r.path}: unknown COLMAP camera model id {model_id} (camera {cid})")
        name, n_params = CAMERA_MODELS[model_id]
        cams[cid] = ColmapCamera(cid, name, int(w), int(h), r.array(np.float64, n_params).copy())
    return cams


def read_images_bin(path) -> dict[int, ColmapImage]:
    """Parse ``images.bin`` -> {image id: ColmapImage}."""
    r = _Reader(path)
    (n,) = r.read("Q")
    images = {}
    for _ in range(n):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = r.read("idddddddi")
        name = r.cstring()
        (n2d,) = r.read("Q")
        rec = r.array(np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")]), n2d)
        xys = np.stack([rec["x"], rec["y"]], -1)
        qvec, tvec = np.array([qw, qx, qy, qz]), np.array([tx, ty, tz])
        images[iid] = ColmapImage(iid, qvec, tvec, cid, name, xys, rec["id"].copy())
    return images


def read_points3d_bin(path) -> ColmapPoints:
    """Parse ``points3D.bin`` (tracks are skipped; their lengths are kept)."""
    r = _Reader(path)
    (n,) = r.read("Q")
    head = struct.Struct("<QdddBBBdQ")
    # a corrupt count must not allocate: no more records than fit in the file (the loop stops at the first that
    # does not fit, with its message)
    m = min(n, (len(r.buf) - r.pos) // head.size + 1)
    ids, xyz, rgb, err, tl = (
        np.empty(m, np.int64),
        np.empty((m, 3)),
        np.empty((m, 3), np.uint8),
        np.empty(m),
        np.empty(m, np.int64),
    )
    for k in range(n):  # records have variable length: sequential by nature
        if r.pos + head.size > len(r.buf):
            raise DatasetError(f"{r.path}: truncated COLMAP file (point {k} of {n} at offset {r.pos})")
        pid, x, y, z, cr, cg, cb, e, t = head.unpack_from(r.buf, r.pos)
        r.pos += head.size + 8 * t
        ids[k], xyz[k], rgb[k], err[k], tl[k] = pid, (x, y, z), (cr, cg, cb), e, t
    if r.pos > len(r.buf):
        raise DatasetError(f"{r.path}: truncated COLMAP file (last point track runs past the end)")
    return ColmapPoints(ids, xyz, rgb, err, tl)


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """[..., 4] unit quaternions (w, x, y, z) -> [..., 3, 3] rotation matrices."""
    q = np.asarray(qvec, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    R = np.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        -1,
    )
    return R.reshape(*q.shape[:-1], 3, 3)


def camera_intrinsics(cam: ColmapCamera) -> tuple[float, float, float, float, list[float]]:
    """(fx, fy, cx, cy, [k1, k2, p1, p2]) of a pinhole-like COLMAP camera.

    Supports SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL and OPENCV; other models raise DatasetError.
    """
    p = [float(v) for v in cam.params]
    if cam.model == "SIMPLE_PINHOLE":
        return p[0], p[0], p[1], p[2], [0.0] * 4
    if cam.model == "PINHOLE":
        return p[0], p[1], p[2], p[3], [0.0] * 4
    if cam.model == "SIMPLE_RADIAL":
        return p[0], p[0], p[1], p[2], [p[3], 0.0, 0.0, 0.0]
    if cam.model == "RADIAL":
        return p[0], p[0], p[1], p[2], [p[3], p[4], 0.0, 0.0]
    if cam.model == "OPENCV":
        return p[0], p[1], p[2], p[3], p[4:8]
    raise DatasetError(f"COLMAP camera {cam.id}: model {cam.model} is not supported (pinhole/radial/OPENCV only)")


def colmap_cameras(cameras: dict[int, ColmapCamera], images: dict[int, ColmapImage]) -> tuple[Cameras, list[str]]:
    """OpenGL :class:`Cameras` of the registered images, sorted by image name, and those names.

    COLMAP's world-to-camera (OpenCV) is inverted to camera-to-world, then the y and z camera axes are
    flipped (:meth:`Cameras.from_opencv`).
    """
    imgs = sorted(images.values(), key=lambda im: im.name)
    if not imgs:
        raise DatasetError("COLMAP model has no registered images")
    R = qvec_to_rotmat(np.stack([im.qvec for im in imgs]))  # [n, 3, 3] world -> camera
    t = np.stack([im.tvec for im in imgs])
    c2w = np.concatenate([R.transpose(0, 2, 1), -R.transpose(0, 2, 1) @ t[..., None]], -1)
    intr = [camera_intrinsics(cameras[im.camera_id]) for im in imgs]
    K = np.zeros((len(imgs), 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2] = np.array([i[:4] for i in intr]).T
    K[:, 2, 2] = 1.0
    wh = np.array([[cameras[im.camera_id].width, cameras[im.camera_id].height] for im in imgs])
    cams = Cameras.from_opencv(
        torch.from_numpy(c2w), torch.from_numpy(K), wh[:, 0], wh[:, 1], distortion=torch.tensor([i[4] for i in intr])
    )
    return cams, [im.name for im in imgs]
