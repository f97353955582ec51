"""Browser camera <-> neural3d cameras.

viser reports the browser camera as ``wxyz`` (rotation R_world_camera, scalar first) and ``position``
in OpenCV axes (x right, y down, camera looks down +z), a vertical field of view in radians and the
canvas aspect (width / height). neural3d uses OpenGL axes (y up, camera looks down -z): the two differ by
flipping the camera's y and z axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.core.poses import matrix_to_quaternion, quaternion_to_matrix

_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class CameraState:
    """One browser camera.

    Attributes:
        c2w: [3, 4] float64 OpenGL camera-to-world.
        fov: vertical field of view in radians.
        aspect: width / height of the canvas.
    """

    c2w: np.ndarray
    fov: float
    aspect: float

    def cameras(self, height: int) -> Cameras:
        """A one-camera :class:`Cameras` of ``height`` rows and ``round(height * aspect)`` columns (centred principal
        point)."""
        if height < 1:
            raise ValueError(f"render height must be >= 1, got {height}")
        width = max(1, round(height * self.aspect))
        f = 0.5 * height / math.tan(0.5 * self.fov)
        c2w = torch.as_tensor(self.c2w, dtype=torch.float32)[None]
        one = torch.ones(1)
        return Cameras(c2w, one * f, one * f, one * (width / 2), one * (height / 2), width, height)


def viser_to_c2w(wxyz, position) -> np.ndarray:
    """viser (OpenCV) ``wxyz`` [4] and ``position`` [3] -> OpenGL c2w [3, 4] float64."""
    R_cv = quaternion_to_matrix(torch.as_tensor(np.asarray(wxyz, dtype=np.float64))).numpy()
    return np.concatenate([R_cv @ _FLIP_YZ, np.asarray(position, dtype=np.float64).reshape(3, 1)], 1)


def c2w_to_viser(c2w) -> tuple[np.ndarray, np.ndarray]:
    """OpenGL c2w [3, 4] -> viser (OpenCV) ``wxyz`` [4] and ``position`` [3], float64."""
    c2w = np.asarray(c2w, dtype=np.float64)
    wxyz = matrix_to_quaternion(torch.from_numpy(c2w[:, :3] @ _FLIP_YZ)).numpy()
    return wxyz, c2w[:, 3].copy()


def vertical_fov(fy: float, height: float) -> float:
    """Vertical field of view (radians) of a focal length ``fy`` over ``height`` pixels."""
    return 2.0 * math.atan(0.5 * float(height) / float(fy))
