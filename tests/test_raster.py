"""The mesh preview rasteriser against float64 ray casting through the project's own camera rays."""

from __future__ import annotations

import math

import pytest
import torch

from neural3d.core.cameras import Cameras
from neural3d.core.rays import image_rays
from neural3d.media.raster import orbit_camera, project, rasterize, render_mesh, shade


def _icosphere_like(n: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed, bumpy UV sphere [n*2n vertices] plus a box behind it: overlapping, occluding triangles."""
    th = torch.linspace(0.15, math.pi - 0.15, n, dtype=torch.float64)
    ph = torch.linspace(0, 2 * math.pi, 2 * n + 1, dtype=torch.float64)[:-1]
    T, P = torch.meshgrid(th, ph, indexing="ij")
    r = 1.0 + 0.15 * torch.sin(3 * P) * torch.sin(2 * T)
    v = torch.stack([r * T.sin() * P.cos(), r * T.sin() * P.sin(), r * T.cos()], -1).reshape(-1, 3)
    faces = []
    for i in range(n - 1):
        for j in range(2 * n):
            a, b = i * 2 * n + j, i * 2 * n + (j + 1) % (2 * n)
            c, d = a + 2 * n, b + 2 * n
            faces += [[a, b, d], [a, d, c]]
    quad = torch.tensor(
        [[-2.0, -2.0, -1.5], [2.0, -2.0, -1.5], [2.0, 2.0, -1.5], [-2.0, 2.0, -1.5]], dtype=torch.float64
    )
    k = len(v)
    faces += [[k, k + 1, k + 2], [k, k + 2, k + 3]]
    return torch.cat([v, quad]), torch.tensor(faces)


def _ray_cast(vertices, faces, c2w, K, width, height):
    """Möller-Trumbore over every (pixel, triangle): the nearest hit's ray t (= z-depth: unnormalised directions)."""
    cams = Cameras(
        camera_to_worlds=c2w[None, :3, :4],
        fx=K[0, 0][None],
        fy=K[1, 1][None],
        cx=K[0, 2][None],
        cy=K[1, 2][None],
        width=torch.tensor([width]),
        height=torch.tensor([height]),
    )
    rays = image_rays(cams, 0, 0.0, 100.0)
    o, d = rays.origins.reshape(-1, 1, 3).double(), rays.directions.reshape(-1, 1, 3).double()
    a, b, c = (vertices[faces][:, k][None] for k in range(3))
    e1, e2 = b - a, c - a
    d, e1, e2 = torch.broadcast_tensors(d, e1, e2)
    p = torch.cross(d, e2, dim=-1)
    det = (e1 * p).sum(-1)
    s = o - a
    u = (s * p).sum(-1) / det
    q = torch.cross(s, e1, dim=-1)
    v = (d * q).sum(-1) / det
    t = (e2 * q).sum(-1) / det
    hit = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0) & (det.abs() > 1e-12)
    t = torch.where(hit, t, torch.full_like(t, math.inf))
    depth, face = t.min(dim=-1)
    return depth.reshape(height, width), torch.where(depth.isfinite(), face, -1).reshape(height, width)


def test_project_matches_the_camera_rays():
    c2w, K = orbit_camera(torch.randn(50, 3, dtype=torch.float64), 40, 30, azimuth_deg=70, elevation_deg=20)
    cams = Cameras(
        camera_to_worlds=c2w[None],
        fx=K[0, 0][None],
        fy=K[1, 1][None],
        cx=K[0, 2][None],
        cy=K[1, 2][None],
        width=torch.tensor([40]),
        height=torch.tensor([30]),
    )
    rays = image_rays(cams, 0, 0.0, 10.0)
    pts = rays.origins + 2.5 * rays.directions  # z-depth 2.5 at every pixel centre
    uv, z = project(pts.reshape(-1, 3), c2w, K)
    cols, rows = torch.meshgrid(torch.arange(40), torch.arange(30), indexing="xy")
    centres = torch.stack([cols + 0.5, rows + 0.5], -1).reshape(-1, 2).to(torch.float64)
    # image_rays builds float32 rays: agreement to float32 rounding
    torch.testing.assert_close(uv, centres, atol=1e-4, rtol=0)
    torch.testing.assert_close(z, torch.full_like(z, 2.5), atol=1e-5, rtol=0)


@pytest.mark.parametrize("azimuth,elevation", [(30.0, 30.0), (200.0, -10.0)])
def test_rasterize_matches_ray_casting(azimuth, elevation):
    v, f = _icosphere_like()
    W, H = 48, 36
    c2w, K = orbit_camera(v, W, H, azimuth_deg=azimuth, elevation_deg=elevation, margin=0.8)
    r = rasterize(v, f, c2w, K, W, H)
    depth, face = _ray_cast(v, f, c2w, K, W, H)
    covered, ref_covered = r.face >= 0, face >= 0
    # pixel centres exactly on a shared edge may go either way; nothing else may differ
    assert (covered != ref_covered).float().mean() < 0.005
    both = covered & ref_covered
    assert both.sum() > 0.08 * W * H  # the sphere and the square behind it are on screen
    torch.testing.assert_close(r.depth[both], depth[both], atol=0, rtol=1e-5)  # the rays are float32
    assert (r.face[both] == face[both]).float().mean() > 0.99
    assert torch.isinf(r.depth[~covered]).all()


def test_rasterize_keeps_the_nearest_of_two_overlapping_squares():
    sq = torch.tensor([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=torch.float64)
    v = torch.cat([sq, sq + torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)])  # second one nearer the camera
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    c2w = torch.eye(4, dtype=torch.float64)[:3]
    c2w[2, 3] = 5.0  # camera on +z looking down -z
    K = torch.tensor([[20.0, 0, 16], [0, 20.0, 16], [0, 0, 1]], dtype=torch.float64)
    r = rasterize(v, f, c2w, K, 32, 32)
    faces = set(r.face.unique().tolist())
    assert {-1, 2, 3} <= faces and faces & {0, 1}  # background, the near square, the visible strip of the far one
    near = r.face >= 2
    torch.testing.assert_close(r.depth[near], torch.full_like(r.depth[near], 4.0))
    torch.testing.assert_close(r.depth[(r.face >= 0) & ~near], torch.full_like(r.depth[(r.face >= 0) & ~near], 5.0))
    # the near square covers the right part of the far one: a far pixel never lies inside the near square
    u_near = 16 + 20 * (torch.tensor([-0.5, 1.5]) / 4.0)
    cols = torch.arange(32).expand(32, 32) + 0.5
    assert not ((r.face.lt(2) & r.face.ge(0)) & (cols > u_near[0]) & (cols < u_near[1])).any()


def test_shade_colours_and_background():
    v, f = _icosphere_like(n=6)
    colors = torch.zeros_like(v)
    colors[:, 0] = 1.0  # red
    img = render_mesh(v, f, 24, 20, colors=colors)
    assert img.shape == (20, 24, 3)
    hit = (img != 1.0).any(-1)
    assert hit.any() and (~hit).any()
    assert (img[hit][:, 1:] == 0).all() and (img[hit][:, 0] > 0.3).all()  # red, shaded, never darker than ambient
    c2w, K = orbit_camera(v, 24, 20)
    r = rasterize(v, f, c2w, K, 24, 20)
    assert torch.equal(shade(v, f, r, c2w, colors=colors), img)


def test_rasterize_rejects_bad_shapes():
    with pytest.raises(ValueError, match="faces"):
        rasterize(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), torch.eye(4), torch.eye(3), 4, 4)
