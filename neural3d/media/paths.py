"""Camera paths for videos and the viewer: LLFF spiral, orbits, key-pose interpolation, and the
cameras of a named path for a trained run (``auto | orbit | spiral | interp | test | camera_path.json``).

Path generators return float32 torch tensors of OpenGL ``c2w`` [n, 3, 4]. ``render_path_spiral`` and
``llff_spiral_path`` follow the original ``load_llff.py`` (NumPy, its dtype behaviour) so the LLFF spiral
equals the original loader's ``render_poses``; the original Blender orbit is
``neural3d.data.blender.blender_orbit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.core.poses import (
    look_at,
    matrix_to_quaternion,
    normalize,
    poses_avg,
    quaternion_slerp,
    quaternion_to_matrix,
    viewmatrix,
)

__all__ = [
    "interpolate_poses",
    "intrinsics_like",
    "llff_spiral_path",
    "orbit_from_cameras",
    "orbit_path",
    "path_cameras",
    "render_path_spiral",
]


def render_path_spiral(
    c2w: np.ndarray,
    up: np.ndarray,
    rads: Sequence[float],
    focal: float,
    zdelta: float,
    zrate: float,
    rots: float,
    n: int,
) -> np.ndarray:
    """Original NeRF spiral around ``c2w`` [3, 5] or [3, 4], looking at depth ``focal``.

    ``zdelta`` is unused, as in the original. Returns [n, 3, 5] (hwf column copied) or [n, 3, 4],
    float64 like the original's list of arrays.
    """
    c2w = np.asarray(c2w)
    rads = np.array(list(rads) + [1.0])
    hwf = c2w[:, 4:5]
    poses = []
    for theta in np.linspace(0.0, 2.0 * np.pi * rots, int(n) + 1)[:-1]:
        c = np.dot(c2w[:3, :4], np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate), 1.0]) * rads)
        z = normalize(c - np.dot(c2w[:3, :4], np.array([0, 0, -focal, 1.0])))
        poses.append(np.concatenate([viewmatrix(z, up, c), hwf], 1))
    return np.stack(poses, 0)


def llff_spiral_path(
    poses: np.ndarray | torch.Tensor,
    bds: np.ndarray | torch.Tensor,
    n_frames: int = 120,
    path_zflat: bool = False,
) -> torch.Tensor:
    """``render_poses`` of the original ``load_llff_data(..., spherify=False)``.

    Args:
        poses: [n_cams, 3, 5] (or [n_cams, 3, 4]) recentred, bound-scaled poses as the loader returns them.
        bds: [n_cams, 2] near / far bounds (scaled).
        n_frames: number of poses (120 in the original); halved with ``path_zflat`` as there.
        path_zflat: flat spiral variant (1 rotation, no z motion, shifted back by 0.1 close_depth).

    Returns:
        render_poses: [n_frames, 3, 5] (or [n_frames, 3, 4]) float32.
    """
    poses = np.asarray(poses, dtype=np.float32)
    bds = np.asarray(bds, dtype=np.float32)
    if poses.ndim != 3 or poses.shape[1] != 3 or poses.shape[2] not in (4, 5) or bds.shape != (len(poses), 2):
        raise ValueError(f"llff_spiral_path: expected poses [n, 3, 5|4] and bds [n, 2], got {poses.shape}, {bds.shape}")
    c2w = poses_avg(poses)
    up = normalize(poses[:, :3, 1].sum(0))
    close_depth, inf_depth = bds.min() * 0.9, bds.max() * 5.0
    dt = 0.75
    focal = 1.0 / ((1.0 - dt) / close_depth + dt / inf_depth)
    zdelta = close_depth * 0.2
    rads = np.percentile(np.abs(poses[:, :3, 3]), 90, 0)
    n_rots = 2
    if path_zflat:
        zloc = -close_depth * 0.1
        c2w[:3, 3] = c2w[:3, 3] + zloc * c2w[:3, 2]
        rads[2] = 0.0
        n_rots, n_frames = 1, n_frames // 2
    path = render_path_spiral(c2w, up, rads, focal, zdelta, zrate=0.5, rots=n_rots, n=n_frames)
    return torch.from_numpy(path.astype(np.float32))


def orbit_path(
    center: Sequence[float] | torch.Tensor,
    radius: float,
    elevation_deg: float,
    n: int,
    up: Sequence[float] | torch.Tensor | None = None,
    *,
    start_deg: float = 0.0,
    sweep_deg: float = 360.0,
) -> torch.Tensor:
    """Cameras on a circle around ``center``, looking at it, without roll.

    Positions: ``center + radius * (cos(el) * (cos(a) e1 + sin(a) e2) + sin(el) * up)`` with
    ``a = start_deg + sweep_deg * k / n`` (k = 0 .. n-1, counter-clockwise about ``up`` for a positive
    sweep) and (e1, e2, up) right-handed; for up = +z, e1 = +x and e2 = +y. Positive elevation is
    above the orbit plane (unlike ``blender_orbit``'s original sign convention).

    Args:
        center: [3] point looked at.
        radius: distance of the cameras from ``center``.
        elevation_deg: angle above the plane orthogonal to ``up``.
        n: number of cameras.
        up: [3] world up, default +z (Blender / NeRF-synthetic scenes).

    Returns:
        c2w: [n, 3, 4] float32 on the CPU.
    """
    center = torch.as_tensor(center).detach().cpu().double()
    up = torch.tensor([0.0, 0.0, 1.0]) if up is None else torch.as_tensor(up)
    up = up.detach().cpu().double()
    if center.shape != (3,) or up.shape != (3,) or not float(up.norm()) > 0:
        raise ValueError(f"orbit_path: center and up must be 3-vectors (up non-zero), got {center}, {up}")
    if not abs(elevation_deg) < 90.0:
        raise ValueError(f"orbit_path: elevation_deg must be in (-90, 90), got {elevation_deg}")
    up = up / up.norm()
    axis = torch.eye(3, dtype=torch.float64)[int(torch.argmin(up.abs()))]
    e1 = torch.nn.functional.normalize(axis - (axis @ up) * up, dim=0)
    e2 = torch.cross(up, e1, dim=0)
    a = torch.deg2rad(start_deg + sweep_deg * torch.arange(n, dtype=torch.float64) / n)[:, None]  # [n, 1]
    el = math.radians(elevation_deg)
    eye = center + radius * (math.cos(el) * (torch.cos(a) * e1 + torch.sin(a) * e2) + math.sin(el) * up)
    return look_at(eye, center.expand(n, 3), up.expand(n, 3)).float()


def interpolate_poses(
    key_c2w: torch.Tensor, n: int, *, position: str = "catmull_rom", loop: bool = False
) -> torch.Tensor:
    """Smooth camera path through key poses.

    Rotations are slerped between consecutive keys (shortest arc); positions follow a uniform
    Catmull-Rom spline through the keys (ends extended by reflection, so equally spaced collinear keys
    give uniform straight motion) or straight segments (``position="linear"``).

    Args:
        key_c2w: [k, 3, 4] key poses (k >= 2).
        n: number of output poses. Open paths start at key 0 and end at key k-1; with ``loop`` the
            path returns towards key 0 and the last sample stops one step before it.
        position: "catmull_rom" or "linear".

    Returns:
        c2w: [n, 3, 4] in key_c2w's dtype; sample j sits at key parameter t_j (t = i hits key i).
    """
    key_c2w = torch.as_tensor(key_c2w)
    if key_c2w.dim() != 3 or key_c2w.shape[1:] != (3, 4) or key_c2w.shape[0] < 2:
        raise ValueError(f"interpolate_poses: expected key_c2w [k >= 2, 3, 4], got {tuple(key_c2w.shape)}")
    if position not in ("catmull_rom", "linear"):
        raise ValueError(f"interpolate_poses: position must be 'catmull_rom' or 'linear', got {position!r}")
    k, dtype, device = key_c2w.shape[0], key_c2w.dtype, key_c2w.device
    n_seg = k if loop else k - 1
    if loop:
        t = torch.arange(n, dtype=torch.float64, device=device) * (k / n)
    else:
        t = torch.linspace(0.0, k - 1.0, n, dtype=torch.float64, device=device)
    seg = t.floor().long().clamp(0, n_seg - 1)  # [n]
    u = (t - seg).to(dtype)  # [n]
    nxt = (seg + 1) % k

    quats = matrix_to_quaternion(key_c2w[:, :, :3])  # [k, 4]
    rot = quaternion_to_matrix(quaternion_slerp(quats[seg], quats[nxt], u))  # [n, 3, 3]

    pts = key_c2w[:, :, 3]  # [k, 3]
    if position == "linear":
        pos = pts[seg] * (1 - u)[:, None] + pts[nxt] * u[:, None]
    else:
        if loop:  # wrap around: key -1 is key k-1, keys k, k+1 are keys 0, 1
            ext = torch.cat([pts[-1:], pts, pts[:2]], 0)
        else:  # reflect the end points
            ext = torch.cat([2 * pts[:1] - pts[1:2], pts, 2 * pts[-1:] - pts[-2:-1]], 0)
        p0, p1, p2, p3 = (ext[seg + d] for d in range(4))  # ext[seg + 1] is key seg
        uu = u[:, None]
        pos = 0.5 * (
            2 * p1 + (p2 - p0) * uu + (2 * p0 - 5 * p1 + 4 * p2 - p3) * uu**2 + (3 * p1 - p0 - 3 * p2 + p3) * uu**3
        )
    return torch.cat([rot, pos[:, :, None]], dim=-1)


def intrinsics_like(scene, c2w: torch.Tensor, scale: float = 1.0) -> Cameras:
    ref = scene.cameras[int(scene.splits["train"][0])] if "train" in scene.splits else scene.cameras[0]
    n = c2w.shape[0]
    w, h = int(round(int(ref.width[0]) * scale)), int(round(int(ref.height[0]) * scale))
    sx, sy = w / float(ref.width[0]), h / float(ref.height[0])
    return Cameras(
        c2w[:, :3, :4], ref.fx.expand(n) * sx, ref.fy.expand(n) * sy, ref.cx.expand(n) * sx, ref.cy.expand(n) * sy, w, h
    )


def orbit_from_cameras(cams: Cameras, n_frames: int) -> torch.Tensor:
    """[n_frames, 3, 4] circle around the point the training cameras look at, at their mean height.

    The orbit axis is the mean camera up vector; radius and elevation are the training cameras' means.
    """

    c2w = cams.camera_to_worlds.double()
    centers, forward = c2w[:, :, 3], -c2w[:, :, 2]
    # least-squares point closest to all optical axes
    A = torch.eye(3, dtype=c2w.dtype) - forward[:, :, None] * forward[:, None, :]
    target = torch.linalg.lstsq(A.sum(0), (A @ centers[:, :, None]).sum(0)).solution[:, 0]
    up = c2w[:, :, 1].mean(0)
    up = up / up.norm()
    rel = centers - target
    radius = float(rel.norm(dim=-1).mean())
    elev = float(torch.rad2deg(torch.asin((rel @ up / rel.norm(dim=-1)).clamp(-1, 1))).mean())
    return orbit_path(center=target.float(), radius=radius, elevation_deg=elev, n=n_frames, up=up.float()).float()


def path_cameras(scene, kind: str, n_frames: int = 60, scale: float = 1.0) -> Cameras:
    """Cameras along a named path.

    Args:
        scene: a loaded SceneData.
        kind: ``auto`` (the dataset's own path: LLFF spiral, Blender orbit), ``orbit``, ``spiral``,
            ``interp`` (through the training poses), ``test``/``val``/``train`` (that split's cameras),
            or a nerfstudio ``camera_path.json`` file.
    """
    from neural3d.media.camera_path_json import load_camera_path

    if not scale > 0:
        raise ValueError(f"render scale must be > 0, got {scale}")
    if kind.endswith(".json"):
        path = load_camera_path(Path(kind))
        n = path.c2w.shape[0]
        focal = 0.5 * path.height / torch.tan(torch.deg2rad(torch.as_tensor(path.fov_deg, dtype=torch.float32)) / 2)
        return Cameras(
            path.c2w, focal.expand(n), focal.expand(n), path.width / 2, path.height / 2, path.width, path.height
        )
    if kind in scene.splits:
        cams = scene.cameras[scene.splits[kind]]
        return intrinsics_like(scene, cams.camera_to_worlds, scale) if scale != 1.0 else cams
    if kind in ("auto", "spiral"):
        if scene.render_poses is not None:
            return intrinsics_like(scene, torch.as_tensor(scene.render_poses, dtype=torch.float32)[:, :3, :4], scale)
        if kind == "spiral":
            raise ValueError(f"the dataset at {scene.root} defines no spiral path (only LLFF scenes do); use orbit")
        kind = "orbit"
    train = scene.cameras[scene.splits["train"]]
    if kind == "orbit":
        return intrinsics_like(scene, orbit_from_cameras(train, n_frames), scale)
    if kind == "interp":
        c2w = train.camera_to_worlds
        order = torch.argsort(torch.atan2(c2w[:, 1, 3], c2w[:, 0, 3]))  # sweep around the up axis
        return intrinsics_like(scene, interpolate_poses(c2w[order], n_frames), scale)
    raise ValueError(
        f"unknown render path '{kind}': use auto, orbit, spiral, interp, a split name or a camera_path.json"
    )
