"""Plain NumPy bundles returned by the exporters (independent of open3d)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PointCloud:
    """Coloured points.

    Attributes:
        points: [n_points, 3] float32 world coordinates.
        colors: [n_points, 3] float32 in [0, 1].
    """

    points: np.ndarray
    colors: np.ndarray

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass
class Mesh:
    """Triangle mesh with per-vertex colours.

    Attributes:
        vertices: [n_vertices, 3] float32 world coordinates.
        triangles: [n_triangles, 3] int64 vertex indices.
        colors: [n_vertices, 3] float32 in [0, 1].
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray
