"""Forward warping (SinNeRF's geometry pseudo-labels): identity, and an analytic sphere-before-plane scene."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from _analytic_scene import R, ring_cameras

from neural3d.core.rays import image_rays
from neural3d.core.warp import forward_warp, unproject_depth
from neural3d.training.sinnerf.views import orbit_pose, patch_pixels, rotation_xyz

SIZE = 64


def _camera(size: int = SIZE):
    return ring_cameras(n=1, size=size, radius=3.0, elevation=0.3)


def _scene_normal(camera) -> torch.Tensor:
    c = camera.camera_to_worlds[0, :, 3].double()
    return c / c.norm()


def _sphere_t(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """First-hit ``t`` of rays o + t d on the sphere of radius R at the origin (inf: miss)."""
    a, b, c = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - R * R
    disc = b * b - 4 * a * c
    t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
    return torch.where((disc > 0) & (t > 0), t, torch.full_like(t, math.inf))


def _colour(p: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.4 * torch.sin(1.5 * p)


def _trace(camera, normal: torch.Tensor):
    """Exact render of the sphere in front of the plane ``normal . p = -1.2``: (depth [H, W], rgb, points)."""
    rays = image_rays(camera, 0, 0.0, 100.0)
    o, d = rays.origins.double(), rays.directions.double()
    t_plane = (-1.2 - (o * normal).sum(-1)) / (d * normal).sum(-1)
    t_plane = torch.where(t_plane > 0, t_plane, torch.full_like(t_plane, math.inf))
    t = torch.minimum(_sphere_t(o, d), t_plane)
    p = o + t[..., None] * d
    return t, _colour(p), p


def test_warping_into_the_reference_pose_is_the_identity():
    cam = _camera()
    depth, rgb, _ = _trace(cam, _scene_normal(cam))
    depth, rgb = depth.float(), rgb.float()
    depth[::7, ::5] = 0.0  # unknown depth: no point, a hole
    out = forward_warp(rgb, depth, cam, cam)
    assert torch.equal(out.mask, depth > 0)
    assert torch.equal(out.rgb[out.mask], rgb[depth > 0])
    torch.testing.assert_close(out.depth, depth, rtol=1e-5, atol=1e-5)
    assert bool((out.rgb[~out.mask] == 0).all())


def test_unproject_depth_gives_the_traced_points():
    cam = _camera()
    depth, _, points = _trace(cam, _scene_normal(cam))
    torch.testing.assert_close(unproject_depth(cam, depth.float()).double(), points, rtol=1e-5, atol=1e-4)


def _occluded_from(centre: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """[H, W] bool: the segment centre -> point crosses the sphere before the point."""
    d = points - centre
    t = _sphere_t(centre.expand_as(points), d)
    return t < 1.0 - 1e-6


def _rotated_pair():
    """(reference camera, its exact depth and colour, the camera orbited 20 degrees about z, its exact render)."""
    ref = _camera()
    normal = _scene_normal(ref)
    depth, rgb, _ = _trace(ref, normal)
    c2w = orbit_pose(ref.camera_to_worlds[0], torch.zeros(3), torch.tensor([0.0, 0.0, 20.0]), torch.zeros(3))
    target = ref.replace(camera_to_worlds=c2w[None])
    return ref, depth, rgb, target, _trace(target, normal)


def test_warping_into_a_rotated_pose_matches_the_analytic_render():
    ref, depth, rgb, target, (t_depth, t_rgb, t_points) = _rotated_pair()
    out = forward_warp(rgb.float(), depth.float(), ref, target, radius=1, depth_tolerance=0.05)

    xy, _ = ref.project(t_points.float().reshape(1, -1, 3))
    xy = xy[0].reshape(SIZE, SIZE, 2)
    inside = (xy >= 0).all(-1) & (xy < SIZE).all(-1)
    seen = inside & ~_occluded_from(ref.camera_to_worlds[0, :, 3].double(), t_points)
    assert 0.02 < float((~seen).float().mean()) < 0.5  # the test sees real occlusions

    def erode(m: torch.Tensor, r: int = 2) -> torch.Tensor:
        return ~(F.max_pool2d((~m).float()[None, None], 2 * r + 1, 1, r)[0, 0] > 0)

    # holes where the reference cannot see the target's surface (away from the boundary's rounding band)
    assert not bool((out.mask & erode(~seen)).any())
    # the visible surface is filled ...
    assert float(out.mask[erode(seen)].float().mean()) > 0.9
    # ... with the right depth and colour (nearest-pixel splats: half a pixel of position error)
    rel = (out.depth.double() - t_depth).abs() / t_depth
    assert float((rel[out.mask] < 0.02).float().mean()) > 0.98
    err = (out.rgb.double() - t_rgb).abs().amax(-1)
    assert float((err[out.mask] < 0.05).float().mean()) > 0.98


def test_without_the_occlusion_footprint_cracks_let_the_background_through():
    """radius 0 is a plain per-pixel z-buffer: the magnified side of the sphere shows plane points."""
    ref, depth, rgb, target, (t_depth, _, _) = _rotated_pair()
    wrong = {}
    for radius in (0, 1):
        out = forward_warp(rgb.float(), depth.float(), ref, target, radius=radius)
        wrong[radius] = int((out.mask & ((out.depth.double() - t_depth).abs() / t_depth > 0.1)).sum())
    assert wrong[1] < wrong[0]


def test_rotation_and_orbit_pose():
    rot = rotation_xyz(torch.tensor([10.0, -20.0, 30.0]))
    torch.testing.assert_close(rot @ rot.T, torch.eye(3, dtype=torch.float64))
    assert abs(float(torch.linalg.det(rot)) - 1) < 1e-12
    cam = _camera()
    c2w = cam.camera_to_worlds[0]
    pivot = torch.tensor([0.1, 0.2, 0.3])
    moved = orbit_pose(c2w, pivot, torch.tensor([0.0, 0.0, 90.0]), torch.zeros(3))
    assert abs(float((moved[:, 3] - pivot).norm() - (c2w[:, 3] - pivot).norm())) < 1e-5  # distance to the pivot kept
    same = orbit_pose(c2w, pivot, torch.zeros(3), torch.zeros(3))
    torch.testing.assert_close(same, c2w)


def test_patch_pixels_are_strided():
    px = patch_pixels(3, 5, 4, 2)
    assert px.shape == (4, 4, 2)
    assert px[0, 0].tolist() == [3, 5] and px[0, 1].tolist() == [5, 5] and px[1, 0].tolist() == [3, 7]
