"""Write synthetic scenes in the DTU layout of IDR / NeuS (read by :func:`neural3d.data.dtu.load_dtu`).

::

    out/cameras_sphere.npz        world_mat_{i} [4, 4] = lambda_i [[K_cv [R | t]], [0, 0, 0, 1]] in the "capture"
                                  frame; scale_mat_{i} [4, 4] = [[sigma I, o], [0, 0, 0, 1]]; and their
                                  inverses world_mat_inv_{i}, scale_mat_inv_{i}, as NeuS' files
    out/image/{i:06d}.png         RGB 8-bit, W = res, H = res * 3/4 (even): the object over a constant backdrop
    out/mask/{i:03d}.png          8-bit grey coverage (NeuS' mask naming; matched to images by sorted order)
    out/depth/{i:06d}.npy         float32 exact z-depth of the pixel-centre ray, capture-frame units, 0 where empty
    out/scene.json                seed, primitives, lighting, intrinsics, the capture transform

The scene is ``make_scene(seed, "object")`` (inside the ball of radius ``OBJECT_RADIUS`` = 1.3 about the
origin, world z up). The capture frame is ``X_capture = CAPTURE_SCALE * X_scene + CAPTURE_OFFSET`` (millimetre-like
numbers, as DTU), so ``scale_mat`` (``sigma = CAPTURE_SCALE * OBJECT_RADIUS``, ``o = CAPTURE_OFFSET``) takes the
unit sphere onto the object's ball and the loader's normalised frame is ``X_scene / OBJECT_RADIUS``.

Cameras (:func:`dtu_poses`): a DTU-like rig, ``n_views`` positions on rows of a spherical cap in front of the
object (elevation 15-60 degrees, azimuth within +-70 degrees, radius 3 +- 0.2, raster order snaking like the
DTU robot arm), looking at jittered points near the origin. Intrinsics are shared and deliberately
non-trivial: ``fx = 0.95 W``, ``fy = 0.97 W`` (fx != fy), principal point ``(0.52 W, 0.47 H)``, skew 0;
``K_cv`` stores them in OpenCV pixel coordinates (pixel centres at integers: ``cx_cv = cx - 0.5``). Each
``world_mat`` carries its own positive scale ``lambda_i`` (projection matrices are defined up to scale).

Everything is a deterministic function of the arguments: the same call writes byte-identical files (the .npz
members carry a fixed timestamp).
"""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np

from .files import check_args, render_batches, save_depth, save_json, save_png
from .generate import OBJECT_RADIUS, make_scene
from .poses import look_at

CAPTURE_SCALE = 150.0
CAPTURE_OFFSET = (35.0, -60.0, 620.0)
DTU_BACKDROP = (0.32, 0.28, 0.24)
DTU_RADIUS = 3.0
DTU_VIEWS = 49
_DTU_STREAM = 31


def dtu_intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the generated DTU scenes, in our continuous pixel coordinates (centres at +0.5)."""
    return 0.95 * width, 0.97 * width, 0.52 * width, 0.47 * height


def dtu_image_size(res: int) -> tuple[int, int]:
    """(width, height): ``res`` and the even integer nearest ``res * 3 / 4`` (DTU's 1600 x 1200 aspect)."""
    return res, 2 * round(res * 3 / 8)


def dtu_poses(seed: int, n_views: int = DTU_VIEWS) -> np.ndarray:
    """The camera-to-world poses [n_views, 3, 4] (float64, OpenGL axes, scene frame) of ``write_dtu_scene``."""
    rng = np.random.default_rng([int(seed), _DTU_STREAM])
    rows = max(1, round(math.sqrt(n_views)))
    per_row = math.ceil(n_views / rows)
    elev, azim = [], []
    for r in range(rows):
        a = np.linspace(-70.0, 70.0, per_row)
        azim += list(a if r % 2 == 0 else a[::-1])
        elev += [15.0 + 45.0 * r / max(rows - 1, 1)] * per_row
    elev = np.radians(np.array(elev[:n_views]) + rng.uniform(-2.0, 2.0, n_views))
    azim = np.radians(np.array(azim[:n_views]) - 90.0 + rng.uniform(-2.0, 2.0, n_views))
    radius = DTU_RADIUS + rng.uniform(-0.2, 0.2, n_views)
    eye = radius[:, None] * np.stack([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)], -1)
    target = rng.uniform(-0.1, 0.1, (n_views, 3))
    return look_at(eye, target, np.array([0.0, 0.0, 1.0]))


def dtu_world_mats(c2w: np.ndarray, width: int, height: int) -> np.ndarray:
    """[n, 4, 4] ``world_mat``s (capture frame, OpenCV K) of scene-frame OpenGL cameras ``c2w`` [n, 3, 4]."""
    fx, fy, cx, cy = dtu_intrinsics(width, height)
    K = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    R_cv = np.swapaxes(c2w[:, :, :3] * np.array([1.0, -1.0, -1.0]), 1, 2)  # world -> OpenCV camera
    centre = CAPTURE_SCALE * c2w[:, :, 3] + np.array(CAPTURE_OFFSET)
    t = -(R_cv @ centre[:, :, None])
    lam = 0.5 + 0.01 * np.arange(c2w.shape[0])  # an arbitrary positive scale per view
    out = np.zeros((c2w.shape[0], 4, 4))
    out[:, :3] = lam[:, None, None] * (K @ np.concatenate([R_cv, t], axis=2))
    out[:, 3, 3] = 1.0
    return out


def dtu_scale_mat() -> np.ndarray:
    """[4, 4] the scale matrix: the unit sphere onto the object's ball in the capture frame."""
    S = np.diag([CAPTURE_SCALE * OBJECT_RADIUS] * 3 + [1.0])
    S[:3, 3] = CAPTURE_OFFSET
    return S


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` (as ``np.savez``) with fixed member timestamps, so equal inputs give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.asarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())


def write_dtu_scene(out_dir, *, seed: int = 0, res: int = 64, n_views: int = DTU_VIEWS, supersample: int = 2) -> Path:
    """Render ``make_scene(seed, "object")`` into an IDR / NeuS DTU dataset (see module docstring).

    Args:
        out_dir: output folder.
        seed: scene and camera seed.
        res: image width (even); the height is :func:`dtu_image_size`.
        n_views: number of views (>= 1; 49 as DTU so the pixelNeRF split applies).
        supersample: stratified samples per pixel along each axis.
    Returns:
        ``Path(out_dir)``.
    """
    check_args(res, supersample, {"n_views": n_views}, even=True)
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    out = Path(out_dir)
    scene = make_scene(seed, "object")
    width, height = dtu_image_size(res)
    fx, fy, cx, cy = dtu_intrinsics(width, height)
    c2w = dtu_poses(seed, n_views)
    backdrop = np.array(DTU_BACKDROP)
    for i0, views in render_batches(scene, c2w, fx, cx, cy, width, height, supersample, fy=fy):
        alpha = views.alpha.double().numpy()
        rgb = views.rgb.double().numpy() * alpha + backdrop * (1.0 - alpha)
        for k in range(rgb.shape[0]):
            save_png(out / "image" / f"{i0 + k:06d}.png", rgb[k])
            save_png(out / "mask" / f"{i0 + k:03d}.png", alpha[k, :, :, 0])
            save_depth(out / "depth" / f"{i0 + k:06d}.npy", CAPTURE_SCALE * views.depth[k].double().numpy())
    world, scale = dtu_world_mats(c2w, width, height), dtu_scale_mat()
    mats = {}
    for i in range(n_views):
        mats.update({f"world_mat_{i}": world[i], f"world_mat_inv_{i}": np.linalg.inv(world[i])})
        mats.update({f"scale_mat_{i}": scale, f"scale_mat_inv_{i}": np.linalg.inv(scale)})
    save_npz(out / "cameras_sphere.npz", mats)
    save_json(
        out / "scene.json",
        {
            **scene.to_dict(),
            "layout": "dtu",
            "res": res,
            "width": width,
            "height": height,
            "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
            "capture_scale": CAPTURE_SCALE,
            "capture_offset": list(CAPTURE_OFFSET),
            "object_radius": OBJECT_RADIUS,
            "backdrop": list(DTU_BACKDROP),
            "supersample": supersample,
            "n_views": n_views,
        },
    )
    return out
