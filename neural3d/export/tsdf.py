"""Mesh by TSDF fusion of rendered RGB-D views with open3d's ``ScalableTSDFVolume``."""

from __future__ import annotations

import numpy as np
import torch

from neural3d.core.cameras import Cameras
from neural3d.export.geometry import depth_points
from neural3d.export.types import Mesh


def opencv_extrinsic(c2w_gl: torch.Tensor) -> np.ndarray:
    """World-to-camera [4, 4] float64 in OpenCV axes (what open3d expects) from an OpenGL c2w [3, 4]."""
    c2w = np.eye(4)
    c2w[:3, :4] = c2w_gl.detach().double().cpu().numpy()
    c2w[:3, 1:3] *= -1.0  # OpenGL (y up, -z forward) -> OpenCV (y down, +z forward)
    return np.linalg.inv(c2w)


def rendered_rgbd(
    loaded, camera: Cameras, opacity_threshold: float, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(colour uint8 [H, W, 3], z-depth float32 [H, W] with 0 = no surface, world points [H, W, 3]) of one view."""
    d = depth_points(loaded, camera, chunk=chunk)
    valid = (d["opacity"] >= opacity_threshold) & (d["z"] > 0) & torch.isfinite(d["z"])
    z = torch.where(valid, d["z"], torch.zeros_like(d["z"]))
    rgb = (d["colors"].clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    pts = torch.where(valid[..., None], d["points"], torch.full_like(d["points"], float("nan")))
    return rgb.cpu().numpy(), z.float().cpu().numpy(), pts.cpu().numpy()


def _auto_voxel(views, cameras: Cameras, resolution: int, opacity_threshold: float) -> float:
    """Voxel size: the surface extent / ``resolution``, but at least 1.5 pixel footprints (z / f) so that
    neighbouring rays of the rendered views observe every voxel corner."""
    pts = np.concatenate([v[2].reshape(-1, 3) for v in views])
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) == 0:
        raise ValueError(f"no rendered pixel reaches opacity {opacity_threshold}: nothing to fuse")
    extent = float((np.percentile(pts, 99, axis=0) - np.percentile(pts, 1, axis=0)).max())
    z = np.concatenate([v[1][v[1] > 0] for v in views])
    footprint = float(np.median(z)) / float(torch.median(cameras.fx))
    return max(extent / resolution, 1.5 * footprint)


@torch.no_grad()
def tsdf_mesh(
    loaded,
    cameras: Cameras,
    *,
    resolution: int = 256,
    voxel_length: float | None = None,
    sdf_trunc_voxels: float = 4.0,
    opacity_threshold: float = 0.5,
    volume: str = "auto",
    chunk: int = 8192,
    progress: bool = False,
) -> Mesh:
    """Fuse the rendered colour and depth of ``cameras`` into a TSDF and extract its zero level set.

    Args:
        loaded: :class:`neural3d.api.LoadedScene`.
        cameras: [n_cams] views (typically the training split).
        resolution: voxels across the extent of the rendered surface points (sets ``voxel_length``, which is
            kept above 1.5 pixel footprints so that sparse low-resolution views still close the surface).
        voxel_length: world voxel size (overrides ``resolution``).
        sdf_trunc_voxels: truncation distance in voxels.
        opacity_threshold: pixels below it carry no depth.
        volume: ``scalable`` (open3d ``ScalableTSDFVolume``, hashed blocks), ``uniform`` (a dense
            ``UniformTSDFVolume`` over the surface's bounding cube) or ``auto``: scalable, and uniform when the
            scalable volume extracts nothing (open3d-cpu 0.20.0's hashed volumes return empty meshes on some
            platforms, this one included).

    Returns:
        :class:`Mesh` in world coordinates with vertex colours.
    """
    from neural3d.progress import progress as counted

    if volume not in ("auto", "scalable", "uniform"):
        raise ValueError(f"TSDF volume must be auto, scalable or uniform, got {volume!r}")
    views = [
        rendered_rgbd(loaded, cameras[i], opacity_threshold, chunk)
        for i in counted(range(len(cameras)), desc="tsdf render", unit="view", enabled=progress)
    ]
    if voxel_length is None:
        voxel_length = _auto_voxel(views, cameras, resolution, opacity_threshold)
    if not voxel_length > 0:
        raise ValueError(f"TSDF voxel length must be > 0, got {voxel_length}")
    mesh = None
    if volume in ("auto", "scalable"):
        mesh = _fuse(_scalable_volume(voxel_length, sdf_trunc_voxels), views, cameras, loaded.pixel_center)
    if volume == "uniform" or (volume == "auto" and len(mesh.triangles) == 0):
        vol = _uniform_volume(views, voxel_length, sdf_trunc_voxels)
        mesh = _fuse(vol, views, cameras, loaded.pixel_center) if vol is not None else mesh
    return mesh


def _scalable_volume(voxel_length: float, trunc_voxels: float):
    from neural3d.export.o3d import require_open3d

    integ = require_open3d().pipelines.integration
    return integ.ScalableTSDFVolume(
        voxel_length=voxel_length, sdf_trunc=trunc_voxels * voxel_length, color_type=integ.TSDFVolumeColorType.RGB8
    )


def _uniform_volume(views, voxel_length: float, trunc_voxels: float, max_resolution: int = 512):
    """A dense volume over the cube bounding the rendered surface points (None if there are none)."""
    from neural3d.export.o3d import require_open3d

    integ = require_open3d().pipelines.integration
    pts = np.concatenate([v[2].reshape(-1, 3) for v in views])
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) == 0:
        return None
    lo, hi = pts.min(0) - 2 * trunc_voxels * voxel_length, pts.max(0) + 2 * trunc_voxels * voxel_length
    length = float((hi - lo).max())
    res = int(min(max_resolution, np.ceil(length / voxel_length)))
    voxel = length / res
    return integ.UniformTSDFVolume(
        length=length,
        resolution=res,
        sdf_trunc=trunc_voxels * voxel,
        color_type=integ.TSDFVolumeColorType.RGB8,
        origin=((lo + hi) / 2 - length / 2).astype(np.float64).reshape(3, 1),
    )


def _fuse(volume, views, cameras: Cameras, pixel_center: float) -> Mesh:
    """Integrate the rendered views into an open3d TSDF volume and extract its mesh."""
    from neural3d.export.o3d import from_triangle_mesh, require_open3d

    o3d = require_open3d()
    cams = cameras.to("cpu")
    for i, (rgb, z, _) in enumerate(views):
        h, w = z.shape
        # open3d projects to integer pixel indices: its cx is ours minus the pixel-centre offset
        intr = o3d.camera.PinholeCameraIntrinsic(
            w,
            h,
            float(cams.fx[i]),
            float(cams.fy[i]),
            float(cams.cx[i]) - pixel_center,
            float(cams.cy[i]) - pixel_center,
        )
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(rgb)),
            o3d.geometry.Image(np.ascontiguousarray(z)),
            depth_scale=1.0,
            depth_trunc=float(np.max(z)) + 1.0,
            convert_rgb_to_intensity=False,
        )
        volume.integrate(rgbd, intr, opencv_extrinsic(cams.camera_to_worlds[i]))
    return from_triangle_mesh(volume.extract_triangle_mesh())
