"""Write synthetic scenes to disk in the layouts of the original NeRF loaders.

Blender layout (``load_blender.py``)::

    out/transforms_{train,val,test}.json   camera_angle_x, frames[{file_path: "./train/r_0", transform_matrix}]
    out/{train,val,test}/r_{i}.png          RGBA 8-bit, straight alpha, res x res
    out/depth/{train,val,test}/r_{i}.npy    float32 exact z-depth of the pixel-centre ray, 0 where empty
    out/scene.json                           seed, kind, primitives, lighting, generator version, cameras

LLFF layout (``load_llff.py``)::

    out/poses_bounds.npy                     [n, 17]: 3x5 [down, right, backwards, centre, (H, W, focal)]
                                             flattened row-major, then near, far (from the exact depth)
    out/images/image{i:03d}.png              RGB 8-bit, W = res, H = res * 3/4 (both even)
    out/images_2/image{i:03d}.png            half resolution, area-downsampled (factor 2 loads)
    out/depth/image{i:03d}.npy, out/depth_2/...  float32 z-depth at both resolutions
    out/scene.json

DTU layout (IDR / NeuS ``cameras_sphere.npz``, ``image/``, ``mask/``): :mod:`.dtu_writer`.

Everything is a deterministic function of the arguments: the same call writes byte-identical files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .files import check_args, render_batches, save_depth, save_json, save_png
from .generate import make_scene
from .poses import forward_poses, hemisphere_poses

BLENDER_CAMERA_ANGLE_X = 0.6911112070083618  # as in the NeRF synthetic scenes
BLENDER_RADIUS = 4.0
LLFF_FOV_X_DEG = 60.0
_SPLIT_STREAM = {"train": 11, "val": 12, "test": 13}
_LLFF_STREAM = 21


def blender_poses(seed: int, split: str, n_views: int) -> np.ndarray:
    """The camera-to-world poses [n_views, 3, 4] (float64) of one split of ``write_blender_scene``."""
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be one of {sorted(_SPLIT_STREAM)}, got {split!r}")
    return hemisphere_poses(np.random.default_rng([int(seed), _SPLIT_STREAM[split]]), n_views, radius=BLENDER_RADIUS)


def llff_poses(seed: int, n_images: int) -> np.ndarray:
    """The camera-to-world poses [n_images, 3, 4] (float64, OpenGL axes) of ``write_llff_scene``."""
    return forward_poses(np.random.default_rng([int(seed), _LLFF_STREAM]), n_images)


def write_blender_scene(
    out_dir, *, seed: int = 0, res: int = 64, n_train: int = 40, n_val: int = 8, n_test: int = 8, supersample: int = 2
) -> Path:
    """Render ``make_scene(seed, "object")`` into a NeRF-Blender dataset (see module docstring).

    Cameras lie on a sphere of radius 4 about the origin (upper hemisphere, random, a different random
    set per split); the scene fits in a ball of radius 1.3, so near = 2 and far = 6 hold. ``n_train`` must be
    at least 1; a val or test split of 0 views is not written (the loader skips a missing split but refuses an
    empty one).

    Returns:
        ``Path(out_dir)``.
    """
    splits = {"train": n_train, "val": n_val, "test": n_test}
    check_args(res, supersample, {f"n_{k}": v for k, v in splits.items()})
    if n_train < 1:
        raise ValueError(f"n_train must be >= 1 (a scene needs training views), got {n_train}")
    out = Path(out_dir)
    scene = make_scene(seed, "object")
    focal = 0.5 * res / math.tan(0.5 * BLENDER_CAMERA_ANGLE_X)
    for split, n_views in splits.items():
        if n_views == 0:
            continue
        c2w = blender_poses(seed, split, n_views)
        for i0, views in render_batches(scene, c2w, focal, res / 2, res / 2, res, res, supersample):
            rgba = torch.cat([views.rgb, views.alpha], -1).numpy()
            for k in range(rgba.shape[0]):
                save_png(out / split / f"r_{i0 + k}.png", rgba[k])
                save_depth(out / "depth" / split / f"r_{i0 + k}.npy", views.depth[k].numpy())
        bottom = np.array([[0.0, 0.0, 0.0, 1.0]])
        frames = [
            {"file_path": f"./{split}/r_{i}", "transform_matrix": np.concatenate([c2w[i], bottom]).tolist()}
            for i in range(n_views)
        ]
        save_json(out / f"transforms_{split}.json", {"camera_angle_x": BLENDER_CAMERA_ANGLE_X, "frames": frames})
    save_json(
        out / "scene.json",
        {
            **scene.to_dict(),
            "layout": "blender",
            "res": res,
            "supersample": supersample,
            "camera_angle_x": BLENDER_CAMERA_ANGLE_X,
            "focal": focal,
            "near": 2.0,
            "far": 6.0,
            "white_bkgd": True,
            "splits": splits,
        },
    )
    return out


def llff_pose_matrix(c2w: np.ndarray, height: int, width: int, focal: float) -> np.ndarray:
    """OpenGL c2w [n, 3, 4] -> LLFF 3x5 [n, 3, 5]: columns (down, right, backwards, centre, (H, W, f))."""
    hwf = np.broadcast_to(np.array([height, width, focal], dtype=np.float64)[:, None], (c2w.shape[0], 3, 1))
    return np.concatenate([-c2w[:, :, 1:2], c2w[:, :, 0:1], c2w[:, :, 2:4], hwf], -1)


def write_llff_scene(out_dir, *, seed: int = 0, res: int = 64, n_images: int = 20, supersample: int = 2) -> Path:
    """Render ``make_scene(seed, "forward")`` into an LLFF dataset (see module docstring).

    ``res`` is the image width (even); the height is the even integer nearest ``res * 3 / 4``. Cameras
    form a jittered grid on the plane z = 3 looking down -z (world y up). Per image, near = 0.9 * min
    and far = 1.1 * max of the exact depth map.

    Returns:
        ``Path(out_dir)``.
    """
    check_args(res, supersample, {"n_images": n_images}, even=True)
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    out = Path(out_dir)
    scene = make_scene(seed, "forward")
    width, height = res, 2 * round(res * 3 / 8)
    focal = 0.5 * width / math.tan(0.5 * math.radians(LLFF_FOV_X_DEG))
    c2w = llff_poses(seed, n_images)
    digits = max(3, len(str(n_images - 1)))
    bounds = np.zeros((n_images, 2))
    for i0, views in render_batches(scene, c2w, focal, width / 2, height / 2, width, height, supersample):
        alpha = views.alpha.double()
        rgb = (views.rgb.double() * alpha + (1 - alpha)).numpy()  # opaque backdrop: alpha is 1
        half = rgb.reshape(rgb.shape[0], height // 2, 2, width // 2, 2, 3).mean((2, 4))
        depth = views.depth.numpy()
        depth_half = scene.depth(
            torch.from_numpy(c2w[i0 : i0 + rgb.shape[0]]),
            focal / 2,
            focal / 2,
            width / 4,
            height / 4,
            width // 2,
            height // 2,
        ).numpy()
        for k in range(rgb.shape[0]):
            name = f"image{i0 + k:0{digits}d}"
            save_png(out / "images" / f"{name}.png", rgb[k])
            save_png(out / "images_2" / f"{name}.png", half[k])
            save_depth(out / "depth" / f"{name}.npy", depth[k])
            save_depth(out / "depth_2" / f"{name}.npy", depth_half[k])
            valid = depth[k][depth[k] > 0]
            if valid.size == 0:
                raise ValueError(f"write_llff_scene: view {i0 + k} of seed {seed} sees nothing")
            bounds[i0 + k] = [0.9 * float(valid.min()), 1.1 * float(valid.max())]
    poses = llff_pose_matrix(c2w, height, width, focal)
    np.save(out / "poses_bounds.npy", np.concatenate([poses.reshape(n_images, 15), bounds], -1))
    save_json(
        out / "scene.json",
        {
            **scene.to_dict(),
            "layout": "llff",
            "res": res,
            "width": width,
            "height": height,
            "focal": focal,
            "supersample": supersample,
            "n_images": n_images,
        },
    )
    return out


def _writers() -> dict:
    """Layout name -> writer (the DTU writer is imported when called: it is the larger module)."""
    from .dtu_writer import write_dtu_scene

    return {"blender": write_blender_scene, "llff": write_llff_scene, "dtu": write_dtu_scene}


def family_seed(seed: int, index: int) -> int:
    """Seed of scene ``index`` in the family ``seed`` (families with different seeds never share scenes)."""
    return int(seed) * 100_000 + int(index)


def write_scene_family(
    out_dir, *, n_scenes: int, seed: int = 0, layout: str = "blender", res: int = 64, **kw
) -> list[Path]:
    """Write ``n_scenes`` different scenes to ``out_dir/scene_{i:03d}`` (+ ``family.json`` index).

    Args:
        out_dir: parent folder.
        n_scenes: number of scenes (< 100000).
        seed: family seed; scene i uses :func:`family_seed` (seed, i).
        layout: "blender", "llff" or "dtu".
        res: resolution passed to the writer.
        **kw: further keyword arguments of :func:`write_blender_scene` / :func:`write_llff_scene` /
            :func:`~neural3d.data.synthetic.dtu_writer.write_dtu_scene`.

    A progress bar counts the scenes (:mod:`neural3d.progress`: lines when not a terminal).

    Returns:
        the scene folders, in order.
    """
    writers = _writers()
    if layout not in writers:
        raise ValueError(f"layout must be one of {sorted(writers)}, got {layout!r}")
    if not 0 <= n_scenes < 100_000:
        raise ValueError(f"n_scenes must be in [0, 100000), got {n_scenes}")
    from neural3d.progress import progress

    out = Path(out_dir)
    paths = [
        writers[layout](out / f"scene_{i:03d}", seed=family_seed(seed, i), res=res, **kw)
        for i in progress(range(n_scenes), desc=f"generate {out.name}", unit="scene")
    ]
    save_json(
        out / "family.json",
        {
            "layout": layout,
            "seed": seed,
            "res": res,
            "options": kw,
            "scenes": [{"path": p.name, "seed": family_seed(seed, i)} for i, p in enumerate(paths)],
        },
    )
    return paths


def cli_synth(out, layout: str = "blender", res: int = 64, seed: int = 0, n_views: int | None = None) -> Path:
    """Entry point for ``neural3d synth``: write one scene.

    Args:
        out: output folder.
        layout: "blender", "llff" or "dtu".
        res: image width (and height for blender).
        seed: scene seed.
        n_views: blender: number of *training* views (val/test keep 8 each), >= 1; llff / dtu: number of images,
            >= 2 (llff, and dtu below 49 views, hold out every 8th image, the first included). None keeps the
            defaults (40 / 20 / 49).
    Raises:
        ValueError: a count that would write a scene without training views (``--views 0``).

    Returns:
        the output folder.
    """
    writers = _writers()
    if layout not in writers:
        raise ValueError(f"layout must be one of {sorted(writers)}, got {layout!r}")
    # the smallest count whose scene loads with a training view (LLFF holds out every 8th image, the first included)
    least = 1 if layout == "blender" else 2
    if n_views is not None and n_views < least:
        what = "training views" if layout == "blender" else "images (image 0 is held out for testing)"
        raise ValueError(f"--views must be >= {least} for the {layout} layout ({what}), got {n_views}")
    count = {"blender": "n_train", "llff": "n_images", "dtu": "n_views"}[layout]
    return writers[layout](out, seed=seed, res=res, **({} if n_views is None else {count: n_views}))
