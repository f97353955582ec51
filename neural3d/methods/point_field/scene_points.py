"""Point clouds of posed-image scenes, in the coordinates their rays use.

* LLFF folders: COLMAP ``sparse/0/points3D.bin`` moved into the loader's frame (bound scaling,
  recentering, optional spherify: :func:`neural3d.data.llff.llff_world_transform`, the loader's own
  normalisation computed from ``poses_bounds.npy`` alone, without reading images).
* Point files (``.ply``, ``points3D.bin``, ``.txt``, ``.npy``): taken as already in the scene frame.
* NDC scenes: :func:`world_to_ndc` maps world points exactly as :func:`neural3d.core.rays.ndc_rays` maps rays.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from neural3d.data.llff import llff_sparse_points, llff_world_transform
from neural3d.pointcloud.io import load_points
from neural3d.pointcloud.ops import farthest_point_sample

__all__ = ["llff_world_transform", "prepare_points", "scene_point_cloud", "world_to_ndc"]


def scene_point_cloud(path, *, spherify: bool = False) -> tuple[Tensor, Tensor | None]:
    """Points [n_points, 3] float32 (and colours [n_points, 3] or None) of a scene folder or point file."""
    path = Path(path)
    if path.is_dir():
        sparse = path / "sparse" / "0" / "points3D.bin"
        if not (path / "poses_bounds.npy").is_file() or not sparse.is_file():
            raise FileNotFoundError(
                f"{path}: expected an LLFF folder with poses_bounds.npy and sparse/0/points3D.bin "
                "(or give a point file: .ply, .bin, .txt, .npy)"
            )
        return llff_sparse_points(path, llff_world_transform(path, spherify=spherify))
    pts = load_points(path)
    xyz, rgb = pts["xyz"], pts.get("rgb")
    return (torch.tensor(xyz, dtype=torch.float32), None if rgb is None else torch.tensor(rgb, dtype=torch.float32))


def world_to_ndc(xyz: Tensor, *, width: float, height: float, focal: float, near_plane: float = 1.0) -> Tensor:
    """World points -> NDC, the point map behind :func:`neural3d.core.rays.ndc_rays`.

    ``(x, y, z) -> (-2f/W x/z, -2f/H y/z, 1 + 2 near/z)``; a world ray's points land on its NDC ray.

    Args:
        xyz: [*batch, 3] world points (in front of the camera: z < 0).
    Returns:
        [*batch, 3] NDC points.
    """
    x, y, z = xyz.unbind(-1)
    return torch.stack([-2.0 * focal / width * x / z, -2.0 * focal / height * y / z, 1.0 + 2.0 * near_plane / z], -1)


def prepare_points(
    xyz: Tensor, *, scene_box: Tensor, ndc_params=None, n_points: int = 2048, margin: float = 0.25
) -> Tensor:
    """Map to the ray space (NDC when ``ndc_params``), keep points inside the padded box, FPS to ``n_points``.

    Args:
        xyz: [n_points_in, 3] scene-frame points.
        scene_box: [2, 3] box of the ray space; points outside it padded by ``margin`` x its size are dropped.
        ndc_params: (width, height, focal) or None.
    Returns:
        [min(n_points, n_kept), 3] points.
    """
    if ndc_params is not None:
        xyz = xyz[xyz[:, 2] < 0]
        w, h, f = ndc_params
        xyz = world_to_ndc(xyz, width=w, height=h, focal=f)
    lo, hi = scene_box[0].to(xyz), scene_box[1].to(xyz)
    pad = margin * (hi - lo)
    xyz = xyz[((xyz >= lo - pad) & (xyz <= hi + pad)).all(-1)]
    if len(xyz) == 0:
        raise ValueError("prepare_points: no point of the cloud lies inside the scene box (wrong frame?)")
    if len(xyz) > n_points:
        xyz = xyz[farthest_point_sample(xyz[None], n_points)[0]]
    return xyz.contiguous()
