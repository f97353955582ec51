"""Camera paths for rendering videos and for the viewer.

All poses are camera-to-world matrices ``c2w`` [n, 3, 4] in OpenGL axes (x right, y up, camera looks
down -z). Path generators return float32 torch tensors; the helpers that replicate the original NeRF
code (``normalize``, ``viewmatrix``, ``poses_avg``, ``render_path_spiral``) are
NumPy functions with the original's dtype behaviour, so that the LLFF spiral and the Blender orbit
agree exactly with the original loaders' ``render_poses``.

Contents:
- LLFF forward-facing spiral (yenchenlin/nerf-pytorch ``load_llff.py``): ``llff_spiral_path``.
- General ``orbit_path`` and ``look_at`` (the original Blender orbit is ``neural3d.data.blender.blender_orbit``).
- Key-pose interpolation: ``interpolate_poses`` (quaternion slerp + linear / Catmull-Rom positions),
  quaternion helpers (scalar-first ``(w, x, y, z)``).
- nerfstudio ``camera_path.json`` I/O: ``CameraPath``, ``load_camera_path``, ``save_camera_path``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CameraPath", "focal_to_fov", "fov_to_focal", "interpolate_poses", "llff_spiral_path",
    "load_camera_path", "look_at", "matrix_to_quaternion", "normalize", "orbit_path",
    "poses_avg", "quaternion_slerp", "quaternion_to_matrix", "render_path_spiral", "save_camera_path",
    "viewmatrix",
]

# ---- Original NeRF helpers (NumPy, as in load_llff.py / load_blender.py) -------------------------


def normalize(x: np.ndarray) -> np.ndarray:
    """x / ||x|| for a vector [3] (NumPy, dtype preserved)."""
    return x / np.linalg.norm(x)


def viewmatrix(z: np.ndarray, up: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Camera-to-world [3, 4] with back axis ``z`` [3], approximate ``up`` [3] and centre ``pos`` [3]."""
    vec2 = normalize(z)
    vec0 = normalize(np.cross(up, vec2))
    vec1 = normalize(np.cross(vec2, vec0))
    return np.stack([vec0, vec1, vec2, pos], 1)


def poses_avg(poses: np.ndarray) -> np.ndarray:
    """Average pose of poses [n, 3, 5] (or [n, 3, 4]) -> [3, 5] (or [3, 4]); column 4 is poses[0]'s hwf."""
    hwf = poses[0, :3, 4:5]
    center = poses[:, :3, 3].mean(0)
    vec2 = normalize(poses[:, :3, 2].sum(0))
    up = poses[:, :3, 1].sum(0)
    return np.concatenate([viewmatrix(vec2, up, center), hwf], 1)


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


# ---- Orbits (torch) ------------------------------------------------------------------------------


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """OpenGL camera at ``eye`` [*batch, 3] looking at ``target`` [*batch, 3] with ``up`` [*batch, 3].

    Same construction as the original ``viewmatrix``: z = normalize(eye - target),
    x = normalize(up x z), y = z x x.

    Returns:
        c2w: [*batch, 3, 4].
    """
    eye, target, up = torch.broadcast_tensors(*(torch.as_tensor(v) for v in (eye, target, up)))
    z = torch.nn.functional.normalize(eye - target, dim=-1)
    x = torch.nn.functional.normalize(torch.cross(up, z, dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    return torch.stack([x, y, z, eye], dim=-1)


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


# ---- Quaternions (w, x, y, z) and pose interpolation (torch) -------------------------------------


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [*batch, 4] (w, x, y, z; normalised here) -> rotation matrices [*batch, 3, 3]."""
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [*batch, 3, 3] -> unit quaternions [*batch, 4] (w, x, y, z) with w >= 0.

    Numerically robust for all rotations (incl. 180 deg): each of the four standard formulas is
    evaluated and the one with the largest (best-conditioned) denominator is used.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix_to_quaternion: expected [..., 3, 3], got {tuple(matrix.shape)}")
    m = matrix.reshape(*matrix.shape[:-2], 9).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    q_abs = torch.sqrt(
        torch.stack(
            [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
        ).clamp_min(0.0)
    )  # [*batch, 4] = 2 |w|, 2 |x|, 2 |y|, 2 |z|
    candidates = torch.stack(
        [
            torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    ) / (2.0 * q_abs.clamp_min(0.1)[..., None])  # [*batch, 4 candidates, 4]
    best = q_abs.argmax(dim=-1, keepdim=True)[..., None].expand(*q_abs.shape[:-1], 1, 4)
    q = torch.nn.functional.normalize(torch.gather(candidates, -2, best).squeeze(-2), dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_slerp(q0: torch.Tensor, q1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation along the shortest arc.

    Args:
        q0, q1: [*batch, 4] quaternions (normalised here); q1 and -q1 give the same result.
        t: scalar or [*batch] interpolation weight (0 -> q0, 1 -> q1).

    Returns:
        q: [*batch, 4] unit quaternions. Falls back to normalised lerp when q0 ~ +-q1.
    """
    q0 = torch.nn.functional.normalize(q0, dim=-1)
    q1 = torch.nn.functional.normalize(q1, dim=-1)
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device)[..., None]
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    near = dot > 0.9995
    safe_sin = torch.where(near, torch.ones_like(sin_theta), sin_theta)
    w0 = torch.where(near, 1.0 - t, torch.sin((1.0 - t) * theta) / safe_sin)
    w1 = torch.where(near, t, torch.sin(t * theta) / safe_sin)
    return torch.nn.functional.normalize(w0 * q0 + w1 * q1, dim=-1)


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


# ---- nerfstudio camera_path.json -----------------------------------------------------------------


def fov_to_focal(fov_deg, size):
    """Focal length in pixels for a field of view (degrees) across ``size`` pixels: size / (2 tan(fov / 2)).

    Works on floats (returns float) and tensors (elementwise)."""
    if isinstance(fov_deg, torch.Tensor):
        return 0.5 * size / torch.tan(0.5 * torch.deg2rad(fov_deg))
    return 0.5 * size / math.tan(0.5 * math.radians(fov_deg))


def focal_to_fov(focal, size):
    """Field of view in degrees across ``size`` pixels for a focal length in pixels (inverse of fov_to_focal)."""
    if isinstance(focal, torch.Tensor):
        return torch.rad2deg(2.0 * torch.atan(0.5 * size / focal))
    return math.degrees(2.0 * math.atan(0.5 * size / focal))


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
        ValueError: unreadable JSON, missing / malformed keys, non-finite numbers, non-perspective
            ``camera_type`` (the message names the file and key).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read camera path JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a JSON object")
    camera_type = data.get("camera_type", "perspective")
    if str(camera_type).lower() != "perspective":
        raise ValueError(f"{path}: key 'camera_type' is {camera_type!r}; only 'perspective' is supported")
    width, height = (int(_number(data, key, path, positive=True)) for key in ("render_width", "render_height"))
    entries = data.get("camera_path")
    if not isinstance(entries, list) or len(entries) == 0:
        raise ValueError(f"{path}: key 'camera_path' must be a non-empty list")
    c2w, fov, aspect = [], [], []
    for i, entry in enumerate(entries):
        where = f"camera_path[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: {where} must be an object")
        mat = entry.get("camera_to_world")
        if not isinstance(mat, list) or len(mat) != 16 or not all(_is_finite_number(v) for v in mat):
            raise ValueError(f"{path}: key '{where}.camera_to_world' must be a list of 16 finite numbers")
        c2w.append(np.asarray(mat, dtype=np.float64).reshape(4, 4)[:3])
        fov.append(_number(entry, "fov", path, positive=True, where=where))
        if "aspect" in entry:
            aspect.append(_number(entry, "aspect", path, positive=True, where=where))
    if aspect and len(aspect) != len(entries):
        raise ValueError(f"{path}: key 'aspect' is present in only {len(aspect)} of {len(entries)} camera_path entries")
    if "fps" in data:
        fps = _number(data, "fps", path, positive=True)
    elif "seconds" in data:
        fps = len(entries) / _number(data, "seconds", path, positive=True)
    else:
        raise ValueError(f"{path}: missing key 'fps' (or 'seconds')")
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
    """obj[key] as a finite (positive) float, else ValueError naming the file and key."""
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise ValueError(f"{path}: missing key '{name}'")
    value = obj[key]
    if not _is_finite_number(value) or (positive and value <= 0):
        kind = "finite positive" if positive else "finite"
        raise ValueError(f"{path}: key '{name}' must be a {kind} number, got {value!r}")
    return float(value)
