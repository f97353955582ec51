"""Export: exact geometry on an analytic sphere, NDC inversion, and the CLI on a tiny trained run read back with
open3d."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _analytic_scene import R, ring_cameras, sphere_scene
from _progress_lines import assert_progress_lines

from neural3d.core.rays import RayBundle, ndc_rays
from neural3d.export.geometry import depth_points, ndc_to_world

try:
    import open3d as o3d
except ImportError as _e:  # open3d is the `export` extra; `make test` installs it
    o3d, _O3D_ERR = None, str(_e)
needs_o3d = pytest.mark.skipif(
    o3d is None, reason="open3d not installed (pip install 'neural3d[export]'; Debian also needs libusb-1.0-0)"
)
try:
    import skimage  # noqa: F401

    _SKIMAGE = True
except ImportError:
    _SKIMAGE = False
needs_skimage = pytest.mark.skipif(not _SKIMAGE, reason="scikit-image not installed (pip install 'neural3d[export]')")


def test_ndc_to_world_inverts_ndc_rays():
    g = torch.Generator().manual_seed(0)
    n = 64
    o = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.1
    d = torch.nn.functional.normalize(
        torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([0, 0, -1.0], dtype=torch.float64),
        dim=-1,
    )
    rays = RayBundle(
        o,
        d,
        d,
        torch.zeros(n, dtype=torch.float64),
        torch.ones(n, dtype=torch.float64),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, 2, dtype=torch.long),
    )
    W, H, f = 40.0, 30.0, 35.0
    nd = ndc_rays(rays, width=W, height=H, focal=f)
    t = torch.rand(n, 1, generator=g, dtype=torch.float64) * 0.95
    world = ndc_to_world(nd.origins + t * nd.directions, (W, H, f))
    # the point lies on the original world ray, and t = 0 is the near plane z = -1
    along = ((world - o) * d).sum(-1, keepdim=True)
    torch.testing.assert_close(world, o + along * d, atol=1e-9, rtol=0)
    z0 = ndc_to_world(nd.origins, (W, H, f))[:, 2]
    torch.testing.assert_close(z0, torch.full_like(z0, -1.0), atol=1e-12, rtol=0)


def test_depth_points_lie_on_the_sphere_with_its_colour():
    scene = sphere_scene()
    cams = ring_cameras(2, size=32)
    d = depth_points(scene, cams[0:1])
    hit = d["opacity"] > 0.5
    assert int(hit.sum()) > 100
    p = d["points"][hit].double()
    torch.testing.assert_close(p.norm(dim=-1), torch.full((p.shape[0],), R, dtype=torch.float64), atol=1e-5, rtol=0)
    # background (white) removed: the colour is the analytic surface colour at the point
    torch.testing.assert_close(d["colors"][hit].double(), (0.5 + 0.5 * p / R).clamp(0, 1), atol=1e-5, rtol=0)
    # camera z-depth: distance along the optical axis
    c2w = cams.camera_to_worlds[0].double()
    torch.testing.assert_close(d["z"][hit].double(), -((p - c2w[:, 3]) @ c2w[:, 2]), atol=1e-5, rtol=0)


@needs_o3d
def test_point_cloud_outlier_removal_drops_far_points():
    from neural3d.export.pointcloud import point_cloud_from_views

    scene = sphere_scene()
    cloud = point_cloud_from_views(scene, ring_cameras(4, size=24), outlier_neighbors=0)
    r = np.linalg.norm(cloud.points, axis=1)
    assert len(cloud) > 300 and np.abs(r - R).max() < 1e-4
    from neural3d.export.pointcloud import _clean
    from neural3d.export.types import PointCloud

    noisy = PointCloud(
        np.concatenate([cloud.points, np.array([[5.0, 5, 5], [-4, 3, 2]], np.float32)]),
        np.concatenate([cloud.colors, np.zeros((2, 3), np.float32)]),
    )
    kept = _clean(noisy, 0.0, 20, 2.0)
    assert np.linalg.norm(kept.points, axis=1).max() < R + 1e-3 and len(kept) >= 0.9 * len(cloud)


@needs_skimage
def test_marching_cubes_recovers_the_sphere_and_its_colours():
    from neural3d.export.marching_cubes import marching_cubes_mesh

    mesh = marching_cubes_mesh(sphere_scene(), resolution=41, level=0.0)
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert len(mesh.triangles) > 500
    assert np.abs(r - R).max() < 1e-3  # density is linear in |p| along the grid: sub-voxel exact up to curvature
    expected = np.clip(0.5 + 0.5 * mesh.vertices / R, 0, 1)
    assert np.abs(mesh.colors - expected).max() < 0.03
    # outward orientation: triangle normals agree with the radial direction
    v = mesh.vertices[mesh.triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    assert np.mean((n * v.mean(1)).sum(1) > 0) > 0.99 or np.mean((n * v.mean(1)).sum(1) < 0) > 0.99


def test_marching_cubes_level_outside_density_range_is_a_clear_error():
    pytest.importorskip("skimage")
    from neural3d.export.marching_cubes import marching_cubes_mesh

    with pytest.raises(ValueError, match="no surface at density level"):
        marching_cubes_mesh(sphere_scene(), resolution=9, level=1e6)


@needs_o3d
def test_tsdf_fusion_recovers_the_sphere():
    from neural3d.export.tsdf import tsdf_mesh

    h = 0.03
    mesh = tsdf_mesh(sphere_scene(), ring_cameras(8, size=48), voxel_length=h)
    err = np.abs(np.linalg.norm(mesh.vertices, axis=1) - R)
    assert len(mesh.triangles) > 1000
    assert err.max() < 1.5 * h and np.median(err) < 0.5 * h
    expected = np.clip(0.5 + 0.5 * mesh.vertices / R, 0, 1)
    assert np.median(np.abs(mesh.colors - expected)) < 0.05


def test_opencv_extrinsic_maps_the_camera_centre_to_the_origin_looking_down_plus_z():
    from neural3d.export.tsdf import opencv_extrinsic

    c2w = ring_cameras(3).camera_to_worlds[1]
    E = opencv_extrinsic(c2w)
    centre = np.append(c2w[:, 3].double().numpy(), 1.0)
    np.testing.assert_allclose(E @ centre, [0, 0, 0, 1], atol=1e-6)
    ahead = np.append((c2w[:, 3] - 2.0 * c2w[:, 2]).double().numpy(), 1.0)  # 2 units along the OpenGL view axis
    np.testing.assert_allclose(E @ ahead, [0, 0, 2, 1], atol=1e-6)


# ---------------------------------------------------------------- CLI on a tiny trained run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_blender_scene):
    from _tiny_run import tiny_trained_run

    return tiny_trained_run(tmp_path_factory, tiny_blender_scene)


@needs_o3d
def test_cli_export_pointcloud_and_tsdf_mesh(tiny_run, tmp_path):
    from neural3d.cli.main import main

    assert main(["export", str(tiny_run), "pointcloud", "--opacity-threshold", "0.3"]) == 0
    pcd = o3d.io.read_point_cloud(str(tiny_run / "export" / "pointcloud.ply"))
    assert len(pcd.points) > 50 and pcd.has_colors()
    pts = np.asarray(pcd.points)
    assert np.abs(pts).max() < 3.0  # inside (about) the synthetic scene's box
    out = tmp_path / "tsdf.obj"
    assert (
        main(["export", str(tiny_run), "mesh", "--method", "tsdf", "--opacity-threshold", "0.3", "--out", str(out)])
        == 0
    )
    mesh = o3d.io.read_triangle_mesh(str(out))
    assert len(mesh.triangles) > 0 and mesh.has_vertex_colors()


@needs_o3d
@needs_skimage
def test_cli_export_marching_cubes_mesh(tiny_run, tmp_path, capsys):
    import neural3d
    from neural3d.cli.main import main
    from neural3d.export.geometry import density_function
    from neural3d.export.marching_cubes import density_grid, grid_axes

    loaded = neural3d.load(tiny_run)  # a 40-step model: pick a level inside its (still small) density range
    sigma = density_grid(density_function(loaded.model), grid_axes(loaded.info.scene_box, 32), loaded.device)
    out = tmp_path / "mc.ply"
    level = str(0.5 * float(sigma.max()))
    assert main(["export", str(tiny_run), "mesh", "--resolution", "32", "--level", level, "--out", str(out)]) == 0
    mesh = o3d.io.read_triangle_mesh(str(out))
    assert len(mesh.triangles) > 0 and mesh.has_vertex_colors()
    out, err = capsys.readouterr()
    assert f"{len(mesh.vertices)} vertices" in out
    assert_progress_lines(err, "density grid")
    assert main(["export", str(tiny_run), "mesh", "--out", str(tmp_path / "m.txt")]) == 2  # clear error, no crash


def test_cli_export_cameras_round_trip(tiny_run, tiny_blender_scene):
    from neural3d.cli.main import main
    from neural3d.data import load_scene

    assert main(["export", str(tiny_run), "cameras", "--split", "all"]) == 0
    path = tiny_run / "export" / "transforms.json"
    meta = json.loads(path.read_text())
    assert meta["camera_model"] == "OPENCV" and len(meta["frames"]) == 12
    # neural3d's own transforms.json loader reads it; its absolute image paths lie outside the export folder, which
    # the loader refuses unless asked (issue 23 item 9: data.allow_external_paths)
    with pytest.raises(ValueError, match="outside the scene folder"):
        load_scene(path)
    back = load_scene(path, allow_external_paths=True)
    orig = load_scene(tiny_blender_scene)
    torch.testing.assert_close(back.cameras.camera_to_worlds, orig.cameras.camera_to_worlds, atol=1e-6, rtol=0)
    for k in ("fx", "fy", "cx", "cy"):
        torch.testing.assert_close(getattr(back.cameras, k), getattr(orig.cameras, k))
    torch.testing.assert_close(back.images, orig.images)
