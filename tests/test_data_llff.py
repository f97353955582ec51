"""LLFF loader: exact agreement with the original NeRF loader on fern, NDC rays, COLMAP points and readers."""

from __future__ import annotations

import importlib.util
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference_nerf import original_get_rays, original_ndc_rays

from neural3d.data import (
    colmap_cameras,
    load_llff,
    load_scene,
    qvec_to_rotmat,
    read_cameras_bin,
    read_images_bin,
    read_points3d_bin,
)
from neural3d.data.colmap import ColmapCamera

SHARED = Path(__file__).resolve().parents[2] / "shared"
FERN = SHARED / "data" / "nerf_llff_data" / "fern"
REF = SHARED / "reference" / "nerf_original_loader"
needs_fern = pytest.mark.skipif(not (FERN.is_dir() and REF.is_dir()), reason="shared fern data not present")
HAS_PATHS = importlib.util.find_spec("neural3d.media.paths") is not None

CASES = [(8, False), (8, True), (4, False), (4, True)]


def _needs_spiral(spherify: bool):
    if not spherify and not HAS_PATHS:
        pytest.skip("neural3d.media.paths (spiral render path) not available yet")


@pytest.fixture(scope="module")
def fern_scenes():
    cache = {}

    def get(factor, spherify):
        if (factor, spherify) not in cache:
            cache[(factor, spherify)] = load_llff(FERN, factor=factor, spherify=spherify)
        return cache[(factor, spherify)]

    return get


@needs_fern
@pytest.mark.parametrize("factor,spherify", CASES)
def test_fern_matches_original_loader(fern_scenes, factor, spherify):
    _needs_spiral(spherify)
    ref = np.load(REF / f"fern{factor}_{'sph' if spherify else 'fwd'}.npz")
    s = fern_scenes(factor, spherify)
    c = s.cameras
    hwf = torch.stack([c.height.float(), c.width.float(), c.fx], -1)[..., None]
    poses = torch.cat([c.camera_to_worlds, hwf], -1).numpy()
    assert np.allclose(poses, ref["poses"], atol=1e-5, rtol=0)
    assert np.allclose(s.metadata["bds"].numpy(), ref["bds"], atol=1e-5, rtol=0)
    assert np.allclose(s.metadata["render_poses_hwf"], ref["render_poses"], atol=1e-5, rtol=0)
    assert np.allclose(s.render_poses.numpy(), ref["render_poses"][:, :, :4], atol=1e-5, rtol=0)
    assert tuple(s.images.shape) == tuple(ref["shape"])
    assert s.metadata["llff_holdout"] == int(ref["i_test"])
    # the reference means were accumulated sequentially in float32 (strided array): replay that order
    # for an exact match, and check the true (float64) means too
    imgs = s.images.numpy()
    seq = np.array([np.cumsum(im.ravel(), dtype=np.float32)[-1] / np.float32(im.size) for im in imgs])
    assert np.array_equal(seq.astype(np.float32), ref["img_mean"])
    assert np.allclose(imgs.mean(axis=(1, 2, 3), dtype=np.float64), ref["img_mean"], atol=5e-4)
    # run_nerf.py splits (llffhold=8) and bounds
    assert s.splits["test"].tolist() == [0, 8, 16] and s.splits["val"].tolist() == [0, 8, 16]
    assert s.splits["train"].tolist() == [i for i in range(20) if i not in (0, 8, 16)]
    assert torch.equal(s.background, torch.zeros(3)) and s.alphas is None
    if spherify:
        assert not s.ndc
        assert s.near == pytest.approx(0.9 * ref["bds"].min(), rel=1e-6)
        assert s.far == pytest.approx(ref["bds"].max(), rel=1e-6)
    else:
        assert s.ndc and (s.near, s.far) == (0.0, 1.0)
        box = s.scene_box
        assert box[0, 2] == -1.0 and box[1, 2] == 1.0 and bool((box[0, :2] <= -1).all() and (box[1, :2] >= 1).all())
        for i in range(len(s.cameras)):  # every ray of every view stays inside the box in x and y (t in [0, 1])
            r = s.image_rays(i).flatten()
            ends = torch.cat([r.origins, r.origins + r.directions])[:, :2]
            assert bool(((ends >= box[0, :2]) & (ends <= box[1, :2])).all()), i
        assert (s.ndc_width, s.ndc_height, s.ndc_focal) == (
            ref["shape"][2],
            ref["shape"][1],
            pytest.approx(ref["poses"][0, 2, 4]),
        )


def _original_ndc_rays_float64(H, W, focal, c2w, near=1.0):
    """The original NeRF ``get_rays`` (integer pixel coordinates) + ``ndc_rays``, in float64 numpy."""
    rays_o, rays_d = original_get_rays(H, W, focal, c2w)
    o, d = original_ndc_rays(H, W, focal, near, rays_o, rays_d)
    return o, d, rays_d


@needs_fern
def test_fern_ndc_rays_match_original_formula(fern_scenes):
    _needs_spiral(False)
    s = fern_scenes(8, False)
    s.pixel_center = 0.0  # the original casts rays through integer pixel coordinates
    for i in (0, 13):
        rays = s.image_rays(i)
        c2w = s.cameras.camera_to_worlds[i].double().numpy()
        o, d, wd = _original_ndc_rays_float64(s.height, s.width, float(s.cameras.fx[0]), c2w)
        assert np.allclose(rays.origins.numpy(), o, atol=1e-4)
        assert np.allclose(rays.directions.numpy(), d, atol=1e-4)
        assert np.allclose(rays.viewdirs.numpy(), wd / np.linalg.norm(wd, axis=-1, keepdims=True), atol=1e-5)
        assert (rays.nears == 0).all() and (rays.fars == 1).all()
    s.pixel_center = 0.5


@needs_fern
@pytest.mark.parametrize("spherify", [False, True])
def test_fern_colmap_points_in_loader_frame(fern_scenes, spherify):
    _needs_spiral(spherify)
    s = fern_scenes(8, spherify)
    assert s.points3d.shape == (10091, 3) and s.points3d_rgb.shape == (10091, 3)
    assert 0 <= float(s.points3d_rgb.min()) and float(s.points3d_rgb.max()) <= 1
    xy, depth = s.cameras.project(s.points3d)
    inside = (depth > 0) & (xy[..., 0] >= 0) & (xy[..., 0] < s.width) & (xy[..., 1] >= 0) & (xy[..., 1] < s.height)
    assert bool((depth > 0).all())
    assert float(inside.float().mean(1).min()) > 0.9  # nearly every point seen by every (forward-facing) camera
    # LLFF derived its bounds from these points' depths: their 1..99 percentiles lie inside each camera's bds
    bds = s.metadata["bds"]
    for i in range(len(s.cameras)):
        lo, hi = depth[i][inside[i]].quantile(torch.tensor([0.01, 0.99]))
        assert bds[i, 0] * 0.95 <= lo and hi <= bds[i, 1] * 1.05
        # photometric check: a point's colour matches the image where it projects (median error ~0.09 when
        # the frame is right; a transposed rotation gives ~0.18)
        px = xy[i][inside[i]].long()
        err = (s.images[i][px[:, 1], px[:, 0]] - s.points3d_rgb[inside[i]]).abs().mean(-1)
        assert float(err.median()) < 0.12


@needs_fern
def test_fern_colmap_cameras_bin_matches_poses_bounds_focal(fern_scenes):
    cams = read_cameras_bin(FERN / "sparse" / "0" / "cameras.bin")
    (cam,) = cams.values()
    assert cam.model == "SIMPLE_RADIAL" and (cam.width, cam.height) == (4032, 3024)
    raw = np.load(FERN / "poses_bounds.npy")
    assert cam.params[0] == pytest.approx(raw[0, 14])  # LLFF's focal is COLMAP's, full resolution
    s = fern_scenes(8, True)
    assert float(s.cameras.fx[0]) == pytest.approx(cam.params[0] / 8, rel=1e-6)
    assert float(s.cameras.cx[0]) == pytest.approx(cam.params[1] / 8)


def _write_colmap(tmp_path, cams, images, points):
    """Write COLMAP binary files with struct, independently of the reader."""
    with open(tmp_path / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(cams)))
        f.writelines(
            struct.pack("<iiQQ", cid, model_id, w, h) + struct.pack(f"<{len(params)}d", *params)
            for cid, model_id, w, h, params in cams
        )
    with open(tmp_path / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(images)))
        for iid, q, t, cid, name, pts2d in images:
            f.write(struct.pack("<i7di", iid, *q, *t, cid) + name.encode() + b"\x00")
            f.write(struct.pack("<Q", len(pts2d)))
            f.writelines(struct.pack("<ddq", x, y, pid) for x, y, pid in pts2d)
    with open(tmp_path / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(points)))
        for pid, xyz, rgb, err, track in points:
            f.write(struct.pack("<Q3d3BdQ", pid, *xyz, *rgb, err, len(track)))
            for iid, k in track:
                f.write(struct.pack("<ii", iid, k))


def test_colmap_binary_round_trip_and_cameras(tmp_path):
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    q = Rotation.random(2, random_state=1).as_quat()  # (x, y, z, w)
    qw = np.concatenate([q[:, 3:], q[:, :3]], 1)
    t = rng.normal(size=(2, 3))
    cams = [(1, 4, 64, 48, [50.0, 52.0, 31.0, 23.0, 0.01, -0.002, 0.001, 0.0005]), (2, 0, 64, 48, [40.0, 32.0, 24.0])]
    images = [(7, qw[0], t[0], 1, "b.png", [(1.5, 2.5, 3), (4.0, 5.0, -1)]), (3, qw[1], t[1], 2, "a.png", [])]
    points = [(3, (0.1, 0.2, 0.3), (255, 0, 10), 0.5, [(7, 0), (3, 4)]), (9, (1.0, -2.0, 3.0), (1, 2, 3), 1.5, [])]
    _write_colmap(tmp_path, cams, images, points)
    c = read_cameras_bin(tmp_path / "cameras.bin")
    assert c[1].model == "OPENCV" and c[2].model == "SIMPLE_PINHOLE" and np.array_equal(c[2].params, [40.0, 32.0, 24.0])
    im = read_images_bin(tmp_path / "images.bin")
    assert (
        im[7].name == "b.png"
        and np.array_equal(im[7].xys, [[1.5, 2.5], [4.0, 5.0]])
        and im[7].point3d_ids.tolist() == [3, -1]
    )
    assert np.allclose(qvec_to_rotmat(im[7].qvec), Rotation.from_quat(q[0]).as_matrix())
    p = read_points3d_bin(tmp_path / "points3D.bin")
    assert p.ids.tolist() == [3, 9] and np.array_equal(p.xyz, [[0.1, 0.2, 0.3], [1.0, -2.0, 3.0]])
    assert (
        p.rgb.tolist() == [[255, 0, 10], [1, 2, 3]]
        and p.track_lengths.tolist() == [2, 0]
        and p.errors.tolist() == [0.5, 1.5]
    )
    # cameras sorted by name: a.png (SIMPLE_PINHOLE, id 3) then b.png (OPENCV, id 7); COLMAP projection reference
    cameras, names = colmap_cameras(c, im)
    assert names == ["a.png", "b.png"]
    X = rng.normal(size=(20, 3)) + [0, 0, 6]
    for k, (iid, K, dist) in enumerate(
        [(3, (40.0, 40.0, 32.0, 24.0), None), (7, (50.0, 52.0, 31.0, 23.0), (0.01, -0.002, 0.001, 0.0005))]
    ):
        R = Rotation.from_quat(q[0 if iid == 7 else 1]).as_matrix()
        Xc = X @ R.T + t[0 if iid == 7 else 1]
        u, v = Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2]
        if dist is not None:
            k1, k2, p1, p2 = dist
            r2 = u * u + v * v
            u, v = (
                u * (1 + k1 * r2 + k2 * r2 * r2) + 2 * p1 * u * v + p2 * (r2 + 2 * u * u),
                v * (1 + k1 * r2 + k2 * r2 * r2) + p1 * (r2 + 2 * v * v) + 2 * p2 * u * v,
            )
        xy_ref = np.stack([K[0] * u + K[2], K[1] * v + K[3]], -1)
        xy, depth = cameras.project(torch.tensor(X, dtype=torch.float32), torch.tensor([k]))
        assert np.allclose(xy[0].numpy(), xy_ref, atol=1e-3) and np.allclose(depth[0].numpy(), Xc[:, 2], atol=1e-4)


def test_colmap_camera_model_unsupported():
    from neural3d.data import DatasetError
    from neural3d.data.colmap import camera_intrinsics

    with pytest.raises(DatasetError, match="OPENCV_FISHEYE"):
        camera_intrinsics(ColmapCamera(4, "OPENCV_FISHEYE", 10, 10, np.zeros(8)))


def _tiny_llff(root, n=6, size=(16, 24), folder="images", arc=math.pi / 2):
    """Cameras on an arc looking at the origin (LLFF axes: down, right, back), bounds [2, 6]."""
    rng = np.random.default_rng(0)
    rows = []
    (root / folder).mkdir(parents=True)
    for i in range(n):
        a = arc * i / n
        eye = np.array([4 * math.cos(a), 4 * math.sin(a), 0.5])
        back = eye / np.linalg.norm(eye)
        right = np.cross([0, 0, 1.0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        m = np.stack([-up, right, back, eye, [size[0], size[1], 20.0]], 1)  # [3, 5]
        rows.append(np.concatenate([m.ravel(), [2.0, 6.0]]))
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / folder / f"img{i:02d}.png")
    np.save(root / "poses_bounds.npy", np.array(rows))


def test_llff_full_res_fallback_and_spherify(tmp_path):
    _tiny_llff(tmp_path)
    s = load_scene(tmp_path, factor=2, spherify=True, llffhold=3)  # no images_2/: downscaled from images/
    assert s.kind == "llff" and tuple(s.images.shape) == (6, 8, 12, 3) and not s.ndc
    assert torch.allclose(s.cameras.fx, torch.full((6,), 10.0)) and (s.cameras.cx == 6).all()
    assert s.splits["test"].tolist() == [0, 3] and s.splits["train"].tolist() == [1, 2, 4, 5]
    raw = np.asarray(Image.open(tmp_path / "images" / "img01.png"), dtype=np.float64) / 255
    assert np.allclose(s.images[1].numpy(), raw.reshape(8, 2, 12, 2, 3).mean(axis=(1, 3)), atol=1e-6)
    # spherify: camera centres at RMS radius 1, and the world transform maps raw centres onto them
    centres = s.cameras.centers.double()
    assert torch.sqrt((centres**2).sum(-1).mean()).item() == pytest.approx(1.0, abs=1e-6)
    raw_c = np.load(tmp_path / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)[:, :, 3]
    Wt = s.metadata["world_transform"]
    assert np.allclose(raw_c @ Wt[:3, :3].T + Wt[:3, 3], centres.numpy(), atol=1e-5)
    # the scene box holds every camera centre
    assert bool(((centres >= s.scene_box[0] - 1e-6) & (centres <= s.scene_box[1] + 1e-6)).all())


def test_llff_degenerate_average_pose_is_reported(tmp_path):
    from neural3d.data import DatasetError

    _tiny_llff(tmp_path, arc=2 * math.pi)  # a full ring: viewing directions cancel out
    with pytest.raises(DatasetError, match="poses_bounds.npy: the average pose is degenerate"):
        load_llff(tmp_path, factor=None, spherify=False)
