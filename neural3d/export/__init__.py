"""Geometry export from a trained run: point clouds, meshes and cameras (``neural3d export``).

* :mod:`~neural3d.export.geometry` -- back-projection of rendered depth, NDC -> world, the model's density.
* :mod:`~neural3d.export.pointcloud` -- coloured point cloud from the training views' depth.
* :mod:`~neural3d.export.marching_cubes` -- mesh of a density level set inside the scene box.
* :mod:`~neural3d.export.tsdf` -- mesh by TSDF fusion of rendered RGB-D (open3d ``ScalableTSDFVolume``).
* :mod:`~neural3d.export.cameras` -- cameras as a nerfstudio / instant-ngp ``transforms.json``.
* :mod:`~neural3d.export.o3d` -- open3d conversions and writers (open3d is the ``export`` extra).

Everything renders through :meth:`neural3d.api.LoadedScene.render`, so any registered method works.
"""

from neural3d.export.cameras import cameras_to_transforms, write_transforms
from neural3d.export.geometry import depth_points, ndc_to_world
from neural3d.export.marching_cubes import marching_cubes_mesh
from neural3d.export.pointcloud import point_cloud_from_views
from neural3d.export.tsdf import tsdf_mesh
from neural3d.export.types import Mesh, PointCloud

__all__ = [
    "Mesh",
    "PointCloud",
    "cameras_to_transforms",
    "depth_points",
    "marching_cubes_mesh",
    "ndc_to_world",
    "point_cloud_from_views",
    "tsdf_mesh",
    "write_transforms",
]
