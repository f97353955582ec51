"""Point cloud from the rendered depth of (training) views: opacity threshold, optional outlier removal."""

from __future__ import annotations

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.export.geometry import depth_points
from neural3d.export.types import PointCloud


@torch.no_grad()
def point_cloud_from_views(
    loaded,
    cameras: Cameras,
    *,
    opacity_threshold: float = 0.5,
    max_points: int | None = None,
    outlier_neighbors: int = 20,
    outlier_std_ratio: float = 2.0,
    voxel_size: float = 0.0,
    chunk: int = 8192,
    seed: int = 0,
    progress: bool = False,
) -> PointCloud:
    """Render every camera, keep pixels with opacity >= ``opacity_threshold`` and back-project them.

    Args:
        loaded: :class:`neural3d.api.LoadedScene`.
        cameras: [n_cams] views to fuse (typically the training split).
        opacity_threshold: minimum accumulated opacity of a kept pixel.
        max_points: random subset of at most this many points (None: all).
        outlier_neighbors, outlier_std_ratio: statistical outlier removal (open3d): a point is dropped when
            its mean distance to ``outlier_neighbors`` neighbours exceeds the global mean by
            ``outlier_std_ratio`` standard deviations. ``outlier_neighbors=0`` disables it (no open3d needed).
        voxel_size: voxel down-sampling (open3d) when > 0.

    Returns:
        :class:`PointCloud` with points [n_points, 3] and colours [n_points, 3].
    """
    if not 0.0 <= opacity_threshold <= 1.0:
        raise ValueError(f"opacity threshold must be in [0, 1], got {opacity_threshold}")
    from neural3d.progress import progress as counted

    pts, cols = [], []
    for i in counted(range(len(cameras)), desc="pointcloud", unit="view", enabled=progress):
        d = depth_points(loaded, cameras[i], chunk=chunk)
        keep = (d["opacity"] >= opacity_threshold) & (d["z"] > 0) & torch.isfinite(d["points"]).all(-1)
        pts.append(d["points"][keep].float().cpu())
        cols.append(d["colors"][keep].float().cpu())
    cloud = PointCloud(torch.cat(pts).numpy(), torch.cat(cols).numpy())
    if max_points is not None and len(cloud) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(cloud), max_points, replace=False))
        cloud = PointCloud(cloud.points[idx], cloud.colors[idx])
    if voxel_size > 0 or (outlier_neighbors > 0 and len(cloud) > outlier_neighbors):
        cloud = _clean(cloud, voxel_size, outlier_neighbors, outlier_std_ratio)
    return cloud


def _clean(cloud: PointCloud, voxel_size: float, neighbors: int, std_ratio: float) -> PointCloud:
    """Voxel down-sampling and statistical outlier removal with open3d."""
    from neural3d.export.o3d import from_point_cloud, to_point_cloud

    pcd = to_point_cloud(cloud)
    if voxel_size > 0:
        pcd = pcd.voxel_down_sample(voxel_size)
    if neighbors > 0 and len(pcd.points) > neighbors:
        pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=int(neighbors), std_ratio=float(std_ratio))
    return from_point_cloud(pcd)
