"""Camera poses: the original NeRF pose helpers, look-at, quaternions, field of view <-> focal length.

All poses are camera-to-world matrices ``c2w`` [n, 3, 4] in OpenGL axes (x right, y up, camera looks
down -z). The helpers that replicate the original NeRF code (``normalize``, ``viewmatrix``, ``poses_avg``)
are NumPy functions with the original's dtype behaviour, so that loaders and paths built on them agree
exactly with the original loaders. Quaternions are scalar-first ``(w, x, y, z)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "focal_to_fov",
    "fov_to_focal",
    "look_at",
    "matrix_to_quaternion",
    "normalize",
    "poses_avg",
    "quaternion_slerp",
    "quaternion_to_matrix",
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
