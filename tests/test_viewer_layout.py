"""The viewer's first view without a browser: object scenes are seen from outside the camera ring with no
camera in the view cone and the whole scene box in the field of view; forward-facing scenes start on the first
training view; frustums are sized to the camera spacing."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch
from neural3d.viewer.layout import FRUSTUM_SPACING, clearance, frustum_points, frustum_size, scene_layout


def _info(ndc: bool, half: float = 1.5):
    return SimpleNamespace(ndc=ndc, scene_box=torch.tensor([[-half] * 3, [half] * 3]))


def _train_c2w(scene) -> np.ndarray:
    return scene.cameras[scene.splits["train"]].camera_to_worlds.double().numpy()


def test_object_scene_first_view_is_outside_the_ring_with_nothing_in_front(tiny_blender_scene):
    from neural3d.data import load_scene

    scene = load_scene(tiny_blender_scene)
    lay = scene_layout(_info(False), scene)
    c2w, eye = _train_c2w(scene), lay.start_c2w[:, 3]
    centers = c2w[:, :, 3]
    dist = np.linalg.norm(eye - lay.target)
    assert dist > np.linalg.norm(centers - lay.target, axis=1).max()  # outside the camera ring
    forward = -lay.start_c2w[:, 2]
    np.testing.assert_allclose(forward, (lay.target - eye) / dist, atol=1e-9)  # looking at the centre
    assert math.asin(0.5 * math.sqrt(3) * 3.0 / dist) <= 0.5 * lay.start_fov + 1e-9  # the box's sphere is framed
    # no frustum (apex or thumbnail) inside the view cone of the scene's content (the box's inscribed sphere)
    content = math.asin(1.5 / dist)
    assert clearance(eye, lay.target, frustum_points(c2w, lay.frustum_size)) > content
    assert lay.start_camera is None


def test_forward_facing_first_view_is_the_first_training_view(tiny_llff_scene):
    from neural3d.data import load_scene

    scene = load_scene(tiny_llff_scene)
    lay = scene_layout(_info(True), scene)
    first = int(scene.splits["train"][0])
    np.testing.assert_allclose(lay.start_c2w, scene.cameras.camera_to_worlds[first].double().numpy(), atol=1e-7)
    assert lay.start_camera == first
    fy, h = float(scene.cameras.fy[first]), float(scene.cameras.height[first])
    assert math.isclose(lay.start_fov, 2 * math.atan(0.5 * h / fy), rel_tol=1e-9)


def test_frustums_are_sized_to_the_camera_spacing():
    grid = np.stack(np.meshgrid(np.arange(4.0), np.arange(3.0), [0.0], indexing="ij"), -1).reshape(-1, 3)
    assert math.isclose(frustum_size(0.5 * grid, scale=10.0), FRUSTUM_SPACING * 0.5)
    assert math.isclose(frustum_size(grid[:1], scale=10.0), 0.8)  # one camera: a fraction of the scene scale


def test_viser_frustum_scale_gives_the_wanted_depth():
    from neural3d.viewer.decorations import viser_frustum_scale

    fov, aspect, depth = math.radians(40.0), 1.5, 0.3
    s = viser_frustum_scale(depth, fov, aspect)
    # viser's client (CameraFrustumVariants.tsx): unit-volume frustum, then scaled
    x, y, z = math.tan(fov / 2) * aspect, math.tan(fov / 2), 1.0
    volume_scale = (x * y * z / 3.0) ** (1.0 / 3.0)
    assert math.isclose(z / volume_scale * s, depth, rel_tol=1e-12)
