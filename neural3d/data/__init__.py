"""Datasets: loaders for Blender, LLFF, transforms.json and DTU (IDR / NeuS) scenes, and ray batches for training.

``load_scene(path)`` detects the layout and returns a :class:`SceneData`; :class:`RayLoader` draws random
ray batches from one of its splits. The synthetic scene generator lives in :mod:`neural3d.data.synthetic`
(not imported here).
"""

from neural3d.data.blender import blender_orbit, load_blender, pose_spherical
from neural3d.data.colmap import (
    ColmapCamera,
    ColmapImage,
    ColmapPoints,
    colmap_cameras,
    qvec_to_rotmat,
    read_cameras_bin,
    read_images_bin,
    read_points3d_bin,
)
from neural3d.data.depths import load_depth_stack
from neural3d.data.dtu import load_dtu
from neural3d.data.images import composite, find_image, load_image_stack, read_image, resize_area
from neural3d.data.llff import load_llff
from neural3d.data.load import detect_format, load_scene
from neural3d.data.loader import RayBatch, RayLoader
from neural3d.data.scene import DatasetError, DatasetFileNotFoundError, SceneData
from neural3d.data.transforms_json import load_transforms

__all__ = [
    "ColmapCamera",
    "ColmapImage",
    "ColmapPoints",
    "DatasetError",
    "DatasetFileNotFoundError",
    "RayBatch",
    "RayLoader",
    "SceneData",
    "blender_orbit",
    "colmap_cameras",
    "composite",
    "detect_format",
    "find_image",
    "load_blender",
    "load_depth_stack",
    "load_dtu",
    "load_image_stack",
    "load_llff",
    "load_scene",
    "load_transforms",
    "pose_spherical",
    "qvec_to_rotmat",
    "read_cameras_bin",
    "read_image",
    "read_images_bin",
    "read_points3d_bin",
    "resize_area",
]
