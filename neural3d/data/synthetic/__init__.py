"""Procedural, analytically ray-traced synthetic scenes (the demo scene and the test-suite fixture).

Quick use::

    from neural3d.data.synthetic import make_scene, write_blender_scene, write_llff_scene
    scene = make_scene(0, "object")                      # SynthScene, deterministic in the seed
    views = scene.render(c2w, fx, fy, cx, cy, W, H)      # RenderOutput(rgb, alpha, depth), float32
    write_blender_scene("data/synth", seed=0, res=64)    # NeRF-Blender layout (+ exact depth maps)
    write_llff_scene("data/synth_llff", seed=0, res=64)  # LLFF layout (poses_bounds.npy, images, images_2)
    write_dtu_scene("data/synth_dtu", seed=0, res=64)    # IDR/NeuS DTU layout (cameras_sphere.npz, image, mask)

Modules: ``shapes`` and ``torus`` (primitives, exact intersection and SDF), ``shading`` (textures, Blinn-Phong),
``scene`` (SynthScene and the antialiased renderer), ``generate`` (random scenes from a seed), ``poses``
(camera poses and pixel rays), ``writer`` and ``dtu_writer`` (dataset layouts), ``files`` (their file formats).
"""

from .dtu_writer import dtu_poses, write_dtu_scene
from .generate import make_scene
from .poses import forward_poses, hemisphere_poses, look_at, pixel_rays
from .scene import GENERATOR_VERSION, RenderOutput, SceneHit, SynthScene
from .shading import Lighting, Material
from .shapes import Box, Cylinder, Disk, Hit, Plane, Primitive, Sphere
from .torus import Torus
from .writer import (
    blender_poses,
    cli_synth,
    llff_pose_matrix,
    llff_poses,
    write_blender_scene,
    write_llff_scene,
    write_scene_family,
)

__all__ = [
    "GENERATOR_VERSION",
    "Box",
    "Cylinder",
    "Disk",
    "Hit",
    "Lighting",
    "Material",
    "Plane",
    "Primitive",
    "RenderOutput",
    "SceneHit",
    "Sphere",
    "SynthScene",
    "Torus",
    "blender_poses",
    "cli_synth",
    "dtu_poses",
    "forward_poses",
    "hemisphere_poses",
    "llff_pose_matrix",
    "llff_poses",
    "look_at",
    "make_scene",
    "pixel_rays",
    "write_blender_scene",
    "write_dtu_scene",
    "write_llff_scene",
    "write_scene_family",
]
