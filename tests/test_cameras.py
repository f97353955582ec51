"""Cameras, ray generation, convention conversions and NDC against independent references."""

import math

import numpy as np
import pytest
import torch
from reference_nerf import original_ndc_rays

from neural3d.core.cameras import Cameras, check_poses
from neural3d.core.lens_distortion import distort_points, undistort_points
from neural3d.core.rays import generate_rays, image_rays, ndc_rays


def _random_rotations(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(n, 3, 3)


def _cams(n=4, seed=0, distortion=None):
    R = _random_rotations(n, seed)
    t = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed + 1))
    c2w = torch.cat([R, t[..., None]], -1)
    return Cameras(
        c2w,
        fx=torch.full((n,), 50.0),
        fy=torch.full((n,), 55.0),
        cx=32.0,
        cy=24.0,
        width=64,
        height=48,
        distortion=distortion,
    )


def test_rays_pass_through_pixels_they_came_from():
    cams = _cams()
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 4, (100,), generator=g)
    xy = torch.rand(100, 2, generator=g) * torch.tensor([64.0, 48.0])
    rays = generate_rays(cams, idx, xy, 0.5, 10.0)
    depth = torch.rand(100, generator=g) * 5 + 1
    pts = rays.origins + depth[:, None] * rays.directions
    proj, z = cams.project(pts[:, None, :].transpose(0, 1).expand(4, -1, -1).contiguous())
    proj = proj[idx, torch.arange(100)]
    z = z[idx, torch.arange(100)]
    torch.testing.assert_close(proj, xy, atol=1e-3, rtol=0)
    torch.testing.assert_close(z, depth, atol=1e-4, rtol=1e-5)  # t is z-depth


def test_pixel_centres_and_camera_frame():
    cams = Cameras(torch.eye(4)[None], fx=10.0, fy=10.0, cx=2.0, cy=2.0, width=4, height=4)
    rays = image_rays(cams, 0, 1.0, 2.0)  # [H, W]
    assert rays.shape == (4, 4)
    d = rays.directions
    # pixel (0, 0) centre at (0.5, 0.5): x = -0.15, y = +0.15 (image y down -> camera y up), z = -1
    torch.testing.assert_close(d[0, 0], torch.tensor([-0.15, 0.15, -1.0]))
    torch.testing.assert_close(d[3, 3], torch.tensor([0.15, -0.15, -1.0]))
    assert rays.pixels[0, 3].tolist() == [3, 0]
    orig = image_rays(cams, 0, 1.0, 2.0, pixel_center=0.0).directions
    torch.testing.assert_close(orig[0, 0], torch.tensor([-0.2, 0.2, -1.0]))  # original NeRF: integer coords


def test_opencv_round_trip_and_projection():
    cams = _cams(5, seed=7)
    c2w_cv, K = cams.to_opencv()
    back = Cameras.from_opencv(c2w_cv, K, cams.width, cams.height)
    torch.testing.assert_close(back.camera_to_worlds, cams.camera_to_worlds)
    # project with the plain OpenCV pinhole formula and compare
    pts = torch.randn(5, 20, 3)
    w2c = torch.linalg.inv(c2w_cv)
    pc = torch.einsum("nij,npj->npi", w2c[:, :3, :3], pts) + w2c[:, None, :3, 3]
    uv = torch.einsum("nij,npj->npi", K, pc)
    ref = uv[..., :2] / uv[..., 2:]
    xy, z = cams.project(pts)
    torch.testing.assert_close(z, pc[..., 2], atol=1e-5, rtol=1e-5)
    front = z > 0.1
    torch.testing.assert_close(xy[front], ref[front], atol=1e-2, rtol=1e-4)


def test_pytorch3d_round_trip_and_projection():
    cams = _cams(3, seed=11)
    p3 = cams.to_pytorch3d()
    back = Cameras.from_pytorch3d(**p3)
    torch.testing.assert_close(back.camera_to_worlds, cams.camera_to_worlds, atol=1e-5, rtol=1e-5)
    # PyTorch3D screen projection: X_view = X @ R + T; x_screen = -f X/Z + px? In PyTorch3D screen space
    # (in_ndc=False) with +X left, +Y up the pixel is x = px - fx * X/Z, y = py - fy * Y/Z.
    pts = torch.randn(3, 10, 3)
    Xv = pts @ p3["R"] + p3["T"][:, None]
    x = p3["principal_point"][:, None, 0] - p3["focal_length"][:, None, 0] * Xv[..., 0] / Xv[..., 2]
    y = p3["principal_point"][:, None, 1] - p3["focal_length"][:, None, 1] * Xv[..., 1] / Xv[..., 2]
    xy, z = cams.project(pts)
    torch.testing.assert_close(z, Xv[..., 2], atol=1e-5, rtol=1e-5)
    front = z > 0.1
    torch.testing.assert_close(xy[front], torch.stack([x, y], -1)[front], atol=1e-2, rtol=1e-4)


def test_distortion_round_trip_and_rays():
    coeffs = torch.tensor([[-0.1, 0.02, 0.001, -0.002]])
    uv = torch.rand(200, 2) - 0.5
    d = distort_points(uv, coeffs.expand(200, 4))
    torch.testing.assert_close(undistort_points(d, coeffs.expand(200, 4)), uv, atol=1e-6, rtol=0)
    cams = _cams(2, distortion=coeffs.expand(2, 4))
    idx = torch.tensor([0, 1, 1])
    xy = torch.tensor([[3.0, 4.0], [60.0, 40.0], [32.0, 24.0]])
    rays = generate_rays(cams, idx, xy, 0.1, 5.0)
    pts = rays.origins + 2.0 * rays.directions
    proj, _ = cams.project(torch.stack([pts, pts]))
    torch.testing.assert_close(proj[idx, torch.arange(3)], xy, atol=1e-3, rtol=0)


def test_check_poses_rejects_nan_and_nonrigid():
    good = _cams(2).camera_to_worlds
    check_poses(good)
    bad = good.clone()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        check_poses(bad, "x.json")
    shear = good.clone()
    shear[0, :, :3] *= 1.3
    with pytest.raises(ValueError, match="not a rigid"):
        check_poses(shear, "x.json")


def test_ndc_matches_original_formula_and_maps_depth():
    c2w = torch.eye(4)[None]
    c2w[0, :3, 3] = torch.tensor([0.1, -0.2, 0.3])
    cams = Cameras(c2w, fx=40.0, fy=40.0, cx=20.0, cy=15.0, width=40, height=30)
    rays = image_rays(cams, 0, 0.0, 1.0).flatten()
    ndc = ndc_rays(rays, width=40, height=30, focal=40.0)
    ro, rd = original_ndc_rays(30, 40, 40.0, 1.0, rays.origins.double().numpy(), rays.directions.double().numpy())
    np.testing.assert_allclose(ndc.origins.numpy(), ro, atol=1e-5)
    np.testing.assert_allclose(ndc.directions.numpy(), rd, atol=1e-5)
    # a world point at depth z along the ray maps to NDC t with z_world = -1 / (1 - t)
    z = 4.0
    t_world = (-(z) - rays.origins[:, 2]) / rays.directions[:, 2]
    p = rays.origins + t_world[:, None] * rays.directions
    t_ndc = 1 - 1 / z
    q = ndc.origins + t_ndc * ndc.directions
    ref_q = torch.stack(
        [-(2 * 40.0 / 40) * p[:, 0] / p[:, 2], -(2 * 40.0 / 30) * p[:, 1] / p[:, 2], 1 + 2 / p[:, 2]], -1
    )
    torch.testing.assert_close(q, ref_q, atol=1e-4, rtol=1e-4)
    assert math.isclose(float(ndc.nears[0]), 0.0) and math.isclose(float(ndc.fars[0]), 1.0)
