"""open3d conversions and writers (open3d is the ``export`` extra: ``pip install neural3d[export]``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neural3d.export.types import Mesh, PointCloud

POINT_SUFFIXES = (".ply", ".pcd", ".xyz", ".xyzrgb", ".pts")
MESH_SUFFIXES = (".ply", ".obj", ".off", ".gltf", ".glb", ".stl")


def require_open3d():
    """Import open3d or raise an ImportError that says how to install it."""
    try:
        import open3d
    except ImportError as e:  # also missing system libraries (libusb-1.0) surface here
        raise ImportError(
            f"this export needs open3d: pip install 'neural3d[export]' (CPU build: open3d-cpu); "
            f"on Debian also apt-get install libusb-1.0-0 ({e})"
        ) from e
    return open3d


def to_point_cloud(cloud: PointCloud):
    o3d = require_open3d()
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points.astype(np.float64)))
    pcd.colors = o3d.utility.Vector3dVector(cloud.colors.astype(np.float64))
    return pcd


def from_point_cloud(pcd) -> PointCloud:
    return PointCloud(np.asarray(pcd.points, dtype=np.float32), np.asarray(pcd.colors, dtype=np.float32))


def to_triangle_mesh(mesh: Mesh):
    o3d = require_open3d()
    m = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(mesh.vertices.astype(np.float64)),
        o3d.utility.Vector3iVector(mesh.triangles.astype(np.int32)),
    )
    m.vertex_colors = o3d.utility.Vector3dVector(mesh.colors.astype(np.float64))
    return m


def from_triangle_mesh(m) -> Mesh:
    colors = np.asarray(m.vertex_colors, dtype=np.float32)
    verts = np.asarray(m.vertices, dtype=np.float32)
    if colors.shape != verts.shape:
        colors = np.full_like(verts, 0.5)
    return Mesh(verts, np.asarray(m.triangles, dtype=np.int64), colors)


def write_point_cloud(path, cloud: PointCloud) -> Path:
    """Write ``cloud`` (binary .ply by default suffix); ValueError for an unsupported suffix."""
    path = Path(path)
    if path.suffix.lower() not in POINT_SUFFIXES:
        raise ValueError(f"{path}: point clouds are written as one of {POINT_SUFFIXES}")
    o3d = require_open3d()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_point_cloud(str(path), to_point_cloud(cloud)):
        raise OSError(f"open3d could not write {path}")
    return path


def write_mesh(path, mesh: Mesh) -> Path:
    """Write ``mesh`` with vertex colours (.ply / .obj / ...); ValueError for an unsupported suffix."""
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(f"{path}: meshes are written as one of {MESH_SUFFIXES}")
    o3d = require_open3d()
    path.parent.mkdir(parents=True, exist_ok=True)
    m = to_triangle_mesh(mesh)
    m.compute_vertex_normals()
    m.triangle_normals = o3d.utility.Vector3dVector()  # OBJ cannot store them (open3d warns)
    if not o3d.io.write_triangle_mesh(str(path), m, write_vertex_colors=True):
        raise OSError(f"open3d could not write {path}")
    return path
