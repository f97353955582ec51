"""LLFF forward-facing scenes (``poses_bounds.npy`` + ``images_{factor}/``), as the original NeRF loader.

The pipeline reproduces the original ``load_llff.py`` + ``run_nerf.py`` arithmetic step by step (float32
numpy where it is float32, float64 where it promotes), so poses, bounds and render paths agree with it:

1. ``poses_bounds.npy`` [n, 17] -> poses [3, 5, n] (3x4 c2w + [H, W, focal] column, LLFF axes
   down/right/back) and bounds [2, n]; the 5th column gets the loaded images' H, W and focal / factor.
2. Rotation columns reordered to x right, y up, z back: ``[1], -[0], [2]``; cast to float32.
3. Bound scaling ``sc = 1 / (min(bds) * bd_factor)`` of translations and bounds.
4. ``recenter``: poses expressed in the frame of the average pose.
5. ``spherify``: poses moved and rescaled to a unit sphere, with a 120-frame circle render path;
   otherwise the 120-frame spiral of :func:`neural3d.media.paths.llff_spiral_path`.
6. Splits as ``run_nerf.py`` with ``llffhold``: test = val = ``arange(n)[::llffhold]``, train = the rest.
   Bounds: in NDC near 0 / far 1; otherwise ``0.9 * min(bds)`` and ``max(bds)`` (GNT runs use GNT's own
   ``0.9 * min`` and ``1.6 * max``: :mod:`neural3d.methods.gnt.bounds`).

LLFF images have no alpha (an alpha channel is dropped, as the original's ``[..., :3]``);
``SceneData.background`` is black, the original's rendering background for LLFF (no ``--white_bkgd``).

Deviation: the per-image focal of the 5th column is used for each camera (the original uses the first
image's for all; LLFF writes the same value for every image). Pixel centres follow
``SceneData.pixel_center`` (0.5 by default; the original code casts rays at integer coordinates, 0.0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.core.poses import normalize, poses_avg
from neural3d.data.images import load_image_stack
from neural3d.data.scene import DatasetError, DatasetFileNotFoundError, SceneData, validate_poses

_LLFF_EXTS = ("JPG", "jpg", "png")


def _to_44(m34: np.ndarray) -> np.ndarray:
    """[n, 3, 4] -> [n, 4, 4] with a (0, 0, 0, 1) row (float64, like the original's ``np.eye`` row)."""
    row = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), (m34.shape[0], 1, 4))
    return np.concatenate([m34, row], 1)


def recenter_to_average(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Express [n, 3, 5] poses in the frame of their average pose.

    Returns:
        the recentred poses (input dtype) and the [4, 4] float64 world transform applied (new <- old).
    """
    world = np.linalg.inv(_to_44(poses_avg(poses)[None, :3, :4])[0])
    out = poses + 0
    out[:, :3, :4] = (world @ _to_44(poses[:, :3, :4]))[:, :3, :4]
    return out, world


def _closest_point_to_axes(origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Least-squares point nearest to lines ``origins [n,3,1] + t dirs [n,3,1]`` (dirs unit)."""
    A = np.eye(3) - dirs * np.transpose(dirs, [0, 2, 1])
    b = -A @ origins
    return np.squeeze(-np.linalg.inv((np.transpose(A, [0, 2, 1]) @ A).mean(0)) @ b.mean(0))


def spherify_to_unit_sphere(poses: np.ndarray, bds: np.ndarray, n_frames: int = 120):
    """Move [n, 3, 5] poses around the point their optical axes converge to and scale them to radius 1.

    Returns:
        poses [n, 3, 5] float64, circle render path [n_frames, 3, 5] float64, rescaled bds (in place, as
        the original), and the [4, 4] float64 world transform (new <- old).
    """
    centre = _closest_point_to_axes(poses[:, :3, 3:4], poses[:, :3, 2:3])
    up = normalize((poses[:, :3, 3] - centre).mean(0))
    side = normalize(np.cross([0.1, 0.2, 0.3], up))
    frame = np.stack([side, normalize(np.cross(up, side)), up, centre], 1)
    to_frame = np.linalg.inv(_to_44(frame[None]))
    moved = to_frame @ _to_44(poses[:, :3, :4])
    radius = np.sqrt(np.mean(np.sum(np.square(moved[:, :3, 3]), -1)))
    scale = 1.0 / radius
    moved[:, :3, 3] *= scale
    bds *= scale
    radius *= scale
    height = np.mean(moved[:, :3, 3], 0)[2]
    ring = np.sqrt(radius**2 - height**2)
    path = []
    for th in np.linspace(0.0, 2.0 * np.pi, n_frames):  # one small 3x4 per frame, as the original
        origin = np.array([ring * np.cos(th), ring * np.sin(th), height])
        back = normalize(origin)
        right = normalize(np.cross(back, np.array([0, 0, -1.0])))
        path.append(np.stack([right, normalize(np.cross(back, right)), back, origin], 1))
    hwf = poses[0, :3, -1:]
    path = np.concatenate([np.stack(path), np.broadcast_to(hwf, (n_frames, 3, 1))], -1)
    moved = np.concatenate([moved[:, :3, :4], np.broadcast_to(hwf, (moved.shape[0], 3, 1))], -1)
    world = np.diag([scale, scale, scale, 1.0]) @ to_frame[0]
    return moved, path, bds, world


def _image_files(root: Path, factor: int | None) -> tuple[list[Path], int]:
    """Sorted images of ``images_{factor}`` (or ``images`` with in-memory downscaling when it is absent).

    Returns the files and the downscale still to apply (1 when a pre-made folder is used).
    """
    folders = [(root / f"images_{factor}", 1)] if factor not in (None, 1) else []
    folders.append((root / "images", 1 if factor in (None, 1) else int(factor)))
    for folder, resize in folders:
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.name.endswith(_LLFF_EXTS))
            if not files:
                raise DatasetError(f"{folder}: no .JPG/.jpg/.png images")
            return files, resize
    raise DatasetFileNotFoundError(f"{root}: image folder not found (looked for {[str(f) for f, _ in folders]})")


def _read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """poses [3, 5, n] float64 (LLFF axes) and bds [2, n] from ``poses_bounds.npy`` [n, 17]."""
    if not path.is_file():
        raise DatasetFileNotFoundError(f"{path}: poses_bounds.npy not found")
    try:  # a corrupt header may claim any shape or dtype
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, KeyError, MemoryError) as e:
        raise DatasetError(f"{path}: unreadable .npy file ({e})") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise DatasetError(f"{path}: expected an [n_images, 17] array (3x5 pose + 2 bounds), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: expected a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    # finite, and within float32 (the loader computes in float32 as the original)
    bad = ~(np.abs(arr) <= np.finfo(np.float32).max).all(1)
    if bad.any():
        raise DatasetError(
            f"{path}: rows {np.nonzero(bad)[0][:10].tolist()} contain NaN or inf (or values beyond float32)"
        )
    if not (arr[:, 14] > 0).all():  # the focal length of the 3x5 pose's last column
        rows = np.nonzero(~(arr[:, 14] > 0))[0][:10].tolist()
        raise DatasetError(f"{path}: focal lengths (column 14) must be positive; rows {rows} are not")
    return arr[:, :-2].reshape([-1, 3, 5]).transpose([1, 2, 0]), arr[:, -2:].transpose([1, 0])


def normalize_llff_poses(
    poses: np.ndarray,
    bds: np.ndarray,
    *,
    bd_factor: float | None = 0.75,
    recenter: bool = True,
    spherify: bool = False,
    src: Path | str = "poses_bounds.npy",
):
    """Steps 2-5 of the module doc: LLFF poses and bounds as read -> the loader's frame.

    Args:
        poses: [3, 5, n] float64 poses in LLFF axes (the 5th column: H, W, focal).
        bds: [2, n] near / far bounds.
        src: names the file in error messages.
    Returns:
        poses [n, 3, 5] (float32, float64 after ``spherify``), bds [n, 2], the [4, 4] float64 world transform
        (loader frame <- ``poses_bounds.npy`` frame) and the circle render path of ``spherify`` (else None).
    """
    poses = np.concatenate([poses[:, 1:2, :], -poses[:, 0:1, :], poses[:, 2:, :]], 1)
    poses = np.moveaxis(poses, -1, 0).astype(np.float32)
    bds = np.moveaxis(bds, -1, 0).astype(np.float32)
    validate_poses(poses[:, :3, :4], src)
    if bd_factor is not None and not bds.min() > 0:
        raise DatasetError(f"{src}: bounds must be positive, min is {bds.min()}")
    sc = 1.0 if bd_factor is None else 1.0 / (bds.min() * bd_factor)
    poses[:, :3, 3] *= sc
    bds *= sc
    world = np.diag([sc, sc, sc, 1.0])
    render = None
    with np.errstate(invalid="ignore", divide="ignore"):
        try:
            if recenter:
                poses, w = recenter_to_average(poses)
                world = w @ world
            if spherify:
                poses, render, bds, w = spherify_to_unit_sphere(poses, bds)
                world = w @ world
        except np.linalg.LinAlgError:  # a singular frame: reported as degenerate below
            world = np.full((4, 4), np.nan)
    if not np.isfinite(world).all():
        raise DatasetError(
            f"{src}: the {'spherified' if spherify else 'average'} pose is degenerate (e.g. viewing directions that "
            f"cancel out, or parallel optical axes); try recenter=False or spherify={not spherify}"
        )
    return poses, bds, world, render


def llff_world_transform(
    root, *, bd_factor: float | None = 0.75, recenter: bool = True, spherify: bool = False
) -> np.ndarray:
    """[4, 4] float64 transform (loader frame <- ``poses_bounds.npy`` frame) of an LLFF scene, without its images.

    Equal to ``load_llff(root, ...).metadata["world_transform"]`` for the same arguments.
    """
    src = Path(root) / "poses_bounds.npy"
    poses, bds = _read_poses_bounds(src)
    return normalize_llff_poses(poses, bds, bd_factor=bd_factor, recenter=recenter, spherify=spherify, src=src)[2]


def llff_sparse_points(root, world: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """COLMAP ``sparse/0/points3D.bin`` points [n, 3] and colours [n, 3] in [0, 1] moved by ``world``
    (float32; (None, None) when the file is absent)."""
    path = Path(root) / "sparse" / "0" / "points3D.bin"
    if not path.is_file():
        return None, None
    from neural3d.data.colmap import read_points3d_bin

    pts = read_points3d_bin(path)
    xyz = pts.xyz @ world[:3, :3].T + world[:3, 3]
    return torch.tensor(xyz, dtype=torch.float32), torch.tensor(pts.rgb / 255.0, dtype=torch.float32)


def _corner_pixels(cameras: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """(camera indices [n * 4], pixel coordinates [n * 4, 2]) of the 4 image corners of every camera."""
    n = len(cameras)
    W, H, zeros = cameras.width.float(), cameras.height.float(), torch.zeros(n)
    xy = torch.stack([zeros, zeros, W, zeros, zeros, H, W, H], -1).reshape(n * 4, 2)
    return torch.arange(n).repeat_interleave(4), xy


def frustum_box(cameras: Cameras, far: float) -> torch.Tensor:
    """[2, 3] box around all camera centres and their image-corner rays out to z-depth ``far``."""
    idx, xy = _corner_pixels(cameras)
    o, d = cameras.directions_to_world(idx, cameras.camera_directions(idx, xy))
    pts = torch.cat([cameras.centers, o + far * d])
    return torch.stack([pts.amin(0), pts.amax(0)])


def ndc_frustum_box(
    cameras: Cameras,
    ndc_params: tuple[float, float, float],
    extra_poses: torch.Tensor | None = None,
    margin: float = 0.02,
) -> torch.Tensor:
    """[2, 3] NDC box holding every ray of ``cameras`` (and of ``extra_poses``, e.g. the render path) for t in [0, 1].

    In NDC the reference camera's frustum is [-1, 1]^3, but the other cameras' rays leave it sideways: on fern
    up to 40 % of a view's rays reach |x| or |y| > 1 before t = 1 (the far background), and a bounded field
    (density 0 outside its box) would render those parts black. NDC maps lines to lines and the image corners
    bound a camera's rays (the map is projective), so the corner rays' endpoints at t = 0 and t = 1 bound them
    all. The box is the union with [-1, 1]^3, x and y widened by ``margin`` of their span; z stays [-1, 1].

    Args:
        cameras: [n] cameras in the loader's (world) frame.
        ndc_params: (width, height, focal) of the NDC reference camera.
        extra_poses: [m, 3, 4] more camera-to-world poses with the same intrinsics as camera 0.
    """
    from neural3d.core.rays import apply_ndc, generate_rays

    if extra_poses is not None and len(extra_poses):
        c0, m = cameras[0:1], extra_poses.shape[0]
        extra = Cameras(
            extra_poses[:, :3, :4].float(),
            c0.fx.expand(m),
            c0.fy.expand(m),
            c0.cx.expand(m),
            c0.cy.expand(m),
            int(c0.width[0]),
            int(c0.height[0]),
        )
        cameras = Cameras.cat([cameras, extra])
    idx, xy = _corner_pixels(cameras)
    rays = apply_ndc(generate_rays(cameras, idx, xy, 0.0, 1.0), ndc_params)
    ends = torch.cat([rays.origins, rays.origins + rays.directions])
    ends = ends[torch.isfinite(ends).all(-1)]
    lo = torch.minimum(torch.full((3,), -1.0), ends.amin(0))
    hi = torch.maximum(torch.full((3,), 1.0), ends.amax(0))
    pad = margin * (hi - lo)
    lo, hi = lo - pad, hi + pad
    lo[2], hi[2] = -1.0, 1.0
    return torch.stack([lo, hi])


def load_llff(
    root,
    *,
    factor: int | None = 8,
    recenter: bool = True,
    bd_factor: float | None = 0.75,
    spherify: bool = False,
    llffhold: int = 8,
    ndc: bool | None = None,
    path_zflat: bool = False,
) -> SceneData:
    """Load an LLFF scene exactly as the original NeRF code.

    Args:
        root: folder with ``poses_bounds.npy`` and ``images_{factor}/`` (or ``images/``, downscaled here).
        factor: image downscale factor (None or 1: full resolution ``images/``).
        recenter: express poses in the average pose's frame.
        bd_factor: bounds are scaled so that ``min(bds) = 1 / bd_factor`` (None: no scaling).
        spherify: 360-degree scenes: normalise to a unit sphere, circle render path.
        llffhold: every ``llffhold``-th image is a test (and val) image; 0: no hold-out (test = val = empty).
        ndc: rays in NDC; default ``not spherify``.
        path_zflat: flat spiral (passed to the spiral path).
    Returns:
        SceneData with ``render_poses``, COLMAP ``points3d`` when ``sparse/0/points3D.bin`` exists, and
        ``metadata``: ``bds`` [n, 2], ``llff_holdout`` (the original loader's ``i_test``), ``world_transform``
        [4, 4] (scene <- ``poses_bounds.npy`` frame), ``hwf``.
    """
    ndc = (not spherify) if ndc is None else bool(ndc)
    root = Path(root)
    src = root / "poses_bounds.npy"
    poses, bds = _read_poses_bounds(src)
    files, resize = _image_files(root, factor)
    if poses.shape[-1] != len(files):
        raise DatasetError(
            f"{src}: {poses.shape[-1]} poses but {len(files)} images in {files[0].parent}; counts must match"
        )
    images, _, _ = load_image_stack(files, factor=resize, keep_alpha=False)
    poses[:2, 4, :] = np.array(images.shape[1:3]).reshape([2, 1])
    poses[2, 4, :] = poses[2, 4, :] * 1.0 / (factor or 1)

    poses, bds, world, render = normalize_llff_poses(
        poses, bds, bd_factor=bd_factor, recenter=recenter, spherify=spherify, src=src
    )
    if not spherify:
        from neural3d.media.paths import llff_spiral_path

        render = llff_spiral_path(poses, bds, n_frames=120, path_zflat=path_zflat)
    render = np.asarray(render.cpu() if torch.is_tensor(render) else render).astype(np.float32)
    holdout = int(np.argmin(np.sum(np.square(poses_avg(poses)[:3, 3] - poses[:, :3, 3]), -1)))
    poses = poses.astype(np.float32)

    n = poses.shape[0]
    test = np.arange(n)[::llffhold] if llffhold > 0 else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(n), test).astype(np.int64)
    H, W = images.shape[1:3]
    focal = poses[:, 2, 4]
    cams = Cameras(torch.from_numpy(poses[:, :3, :4]), focal, focal, W / 2.0, H / 2.0, W, H)
    near, far = (0.0, 1.0) if ndc else (float(bds.min() * 0.9), float(bds.max() * 1.0))  # run_nerf.py
    box = (
        ndc_frustum_box(cams, (float(W), float(H), float(focal[0])), torch.from_numpy(render[:, :3, :4].copy()))
        if ndc
        else frustum_box(cams, far)
    )
    pts, rgb = llff_sparse_points(root, world)
    return SceneData(
        images=torch.from_numpy(images),
        cameras=cams,
        splits={"train": torch.from_numpy(train), "val": torch.from_numpy(test), "test": torch.from_numpy(test)},
        near=near,
        far=far,
        scene_box=box,
        background=torch.zeros(3),  # no alpha; the original renders LLFF without --white_bkgd (black)
        kind="llff",
        root=root,
        image_paths=files,
        ndc=ndc,
        ndc_focal=float(focal[0]),
        ndc_width=float(W),
        ndc_height=float(H),
        render_poses=torch.from_numpy(render[:, :3, :4].copy()),
        points3d=pts,
        points3d_rgb=rgb,
        metadata={
            "bds": torch.from_numpy(bds),
            "llff_holdout": holdout,
            "world_transform": world,
            "hwf": poses[0, :3, 4].copy(),
            "render_poses_hwf": render,
            "default_bounds": (near, far),  # what this loader set (a method may apply its own convention)
        },
    )
