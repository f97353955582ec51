"""DTU (IDR / NeuS layout): P = K[R|t] decomposition, generated scenes round trip, splits, masks, depth, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neural3d.cli.main import main
from neural3d.core.projection_matrix import SingularProjectionError, compose_projection, decompose_projection
from neural3d.core.rays import image_rays
from neural3d.data import DatasetError, DatasetFileNotFoundError, detect_format, load_dtu, load_scene
from neural3d.data.depths import downscale_depth
from neural3d.data.dtu import PIXELNERF_TEST_IDS, dtu_splits
from neural3d.data.synthetic import write_dtu_scene
from neural3d.data.synthetic.dtu_writer import (
    CAPTURE_OFFSET,
    CAPTURE_SCALE,
    DTU_BACKDROP,
    dtu_image_size,
    dtu_poses,
    dtu_world_mats,
    save_npz,
)
from neural3d.data.synthetic.generate import OBJECT_RADIUS

RES = 16  # 16 x 12 images


@pytest.fixture(scope="module")
def dtu49(tmp_path_factory):
    """A generated 49-view DTU scene (seed 3)."""
    return write_dtu_scene(tmp_path_factory.mktemp("dtu") / "scan", seed=3, res=RES, supersample=1)


@pytest.fixture
def dtu3(tmp_path):
    """A small 3-view scene to damage."""
    return write_dtu_scene(tmp_path / "scan", seed=1, res=8, n_views=3, supersample=1)


def _rewrite_cameras(root, **changes):
    """Rewrite ``cameras_sphere.npz`` with keys replaced (None deletes a key)."""
    with np.load(root / "cameras_sphere.npz") as f:
        mats = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            del mats[k]
        else:
            mats[k] = v
    save_npz(root / "cameras_sphere.npz", mats)


# ------------------------------------------------------------------------------------------ decomposition
def test_decomposition_of_a_hand_example_in_float64():
    # K = [[100, 0, 40], [0, 120, 30], [0, 0, 1]], R = 90 degrees about z, C = (1, 2, 3): t = -R C = (2, -1, -3)
    # K R = [[0, -100, 40], [120, 0, 30], [0, 0, 1]], K t = (80, -210, -3); the file holds -2 P
    P = -2.0 * np.array([[0.0, -100, 40, 80], [120, 0, 30, -210], [0, 0, 1, -3]])
    K, R, C = decompose_projection(P)
    np.testing.assert_allclose(K, [[100, 0, 40], [0, 120, 30], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(C, [1, 2, 3], atol=1e-13)
    assert K.dtype == R.dtype == C.dtype == np.float64


def test_decomposition_inverts_composition_with_skew_and_any_scale_sign():
    rng = np.random.default_rng(0)
    n = 32
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    R = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )
    K = np.zeros((n, 3, 3))
    K[:, 0, 0], K[:, 1, 1] = rng.uniform(50, 3000, n), rng.uniform(50, 3000, n)
    K[:, 0, 1] = rng.normal(0, 5, n)
    K[:, :2, 2] = rng.uniform(-100, 1000, (n, 2))
    K[:, 2, 2] = 1
    C = rng.normal(0, 300, (n, 3))
    scale = rng.uniform(0.01, 10, n) * rng.choice([-1.0, 1.0], n)
    K2, R2, C2 = decompose_projection(scale[:, None, None] * compose_projection(K, R, C))
    np.testing.assert_allclose(K2, K, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    np.testing.assert_allclose(C2, C, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R2), 1.0, atol=1e-12)


def test_singular_or_non_finite_projections_are_refused():
    P = np.stack([np.eye(3, 4), np.eye(3, 4), np.eye(3, 4)])
    P[1, 2, :3] = P[1, 0, :3]  # rank-2 M
    with pytest.raises(SingularProjectionError, match="singular") as e:
        decompose_projection(P)
    assert e.value.indices == [1]
    P[1] = np.eye(3, 4)
    P[2, 0, 3] = np.nan
    with pytest.raises(SingularProjectionError, match="non-finite") as e:
        decompose_projection(P)
    assert e.value.indices == [2]


# ------------------------------------------------------------------------------------------ round trip
def test_detected_and_loaded_as_dtu(dtu49):
    assert detect_format(dtu49) == ("dtu", dtu49)
    assert detect_format(dtu49 / "cameras_sphere.npz") == ("dtu", dtu49)
    scene = load_scene(dtu49)
    W, H = dtu_image_size(RES)
    assert scene.kind == "dtu" and scene.images.shape == (49, H, W, 3)
    assert scene.alphas.shape == (49, H, W, 1) and scene.depths.shape == (49, H, W)
    assert torch.equal(scene.scene_box, torch.tensor([[-1.0] * 3, [1.0] * 3]))


def test_projection_round_trip_matches_the_generators_world_mats(dtu49):
    """Points projected with the file's P (capture frame) and with our cameras (unit-sphere frame) agree."""
    scene = load_dtu(dtu49)
    W, H = dtu_image_size(RES)
    world = dtu_world_mats(dtu_poses(3, 49), W, H)
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (64, 3)) * 0.6  # inside the unit sphere (normalised frame)
    X_cap = CAPTURE_SCALE * OBJECT_RADIUS * X + np.array(CAPTURE_OFFSET)
    p = np.einsum("nij,pj->npi", world[:, :3], np.concatenate([X_cap, np.ones((64, 1))], 1))
    uv_cv = p[..., :2] / p[..., 2:]  # OpenCV pixels: centres at integers
    xy, depth = scene.cameras.project(torch.from_numpy(X).float())
    np.testing.assert_allclose(xy.double().numpy(), uv_cv + 0.5, atol=2e-3)  # ours: centres at +0.5
    # z-depth: the capture frame's, divided by the scale matrix's scale
    z_cap = p[..., 2] / (0.5 + 0.01 * np.arange(49))[:, None]  # the generator's per-view lambda
    np.testing.assert_allclose(depth.double().numpy(), z_cap / (CAPTURE_SCALE * OBJECT_RADIUS), rtol=1e-5)
    R = scene.cameras.camera_to_worlds[:, :, :3].double()
    torch.testing.assert_close(
        R.transpose(1, 2) @ R, torch.eye(3, dtype=torch.float64).expand(49, 3, 3), atol=1e-6, rtol=0
    )


def test_exact_depth_rays_land_on_the_object_inside_the_unit_sphere(dtu49):
    scene = load_dtu(dtu49)
    W, H = dtu_image_size(RES)
    world = dtu_world_mats(dtu_poses(3, 49), W, H)
    for i in (0, 25, 48):
        rays = image_rays(scene.cameras, i, scene.near, scene.far, 0.5)
        hit = scene.depths[i] > 0
        assert hit.any()
        t = scene.depths[i][hit][:, None]
        X = (rays.origins[hit] + t * rays.directions[hit]).double().numpy()
        assert np.linalg.norm(X, axis=1).max() <= 1.0 + 1e-4  # the object is inside the unit sphere
        assert (t >= scene.near).all() and (t <= scene.far).all()
        # through the file's P, the surface point lands on the pixel's centre (integer OpenCV coordinates)
        X_cap = CAPTURE_SCALE * OBJECT_RADIUS * X + np.array(CAPTURE_OFFSET)
        p = np.concatenate([X_cap, np.ones((len(X), 1))], 1) @ world[i, :3].T
        ys, xs = torch.nonzero(hit, as_tuple=True)
        np.testing.assert_allclose(p[:, :2] / p[:, 2:], np.stack([xs, ys], -1), atol=2e-3)


def test_near_far_are_the_unit_sphere_z_range(dtu49):
    scene = load_dtu(dtu49)
    c2w = scene.cameras.camera_to_worlds.double()
    # sample the unit sphere densely: every point's z-depth lies in [near, far], and the extremes are reached
    rng = np.random.default_rng(2)
    S = torch.from_numpy(rng.normal(size=(20000, 3)))
    S = S / S.norm(dim=1, keepdim=True)
    back, centre = c2w[:, :, 2], c2w[:, :, 3]
    z = ((centre[:, None, :] - S[None]) * back[:, None, :]).sum(-1)  # (S - C) . forward, forward = -back
    assert z.min() >= scene.near - 1e-6 and z.max() <= scene.far + 1e-6
    assert z.min() <= scene.near + 1e-2 and z.max() >= scene.far - 1e-2


def test_downscaled_cameras_and_depth(dtu49):
    full, half = load_dtu(dtu49), load_dtu(dtu49, factor=2)
    assert half.images.shape[1:3] == (full.height // 2, full.width // 2)
    X = torch.rand(10, 3) - 0.5
    torch.testing.assert_close(half.cameras.project(X)[0], full.cameras.project(X)[0] / 2, atol=1e-4, rtol=1e-5)
    expected = torch.from_numpy(np.stack([downscale_depth(d.numpy(), 2) for d in full.depths]))
    torch.testing.assert_close(half.depths, expected)


def test_depth_downscaling_averages_known_pixels_only():
    d = np.array([[2.0, 0.0, 1.0, 1.0], [4.0, 0.0, 3.0, 1.0], [0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 5.0, 7.0]])
    np.testing.assert_allclose(downscale_depth(d, 2), [[3.0, 1.5], [0.0, 5.5]])


# ------------------------------------------------------------------------------------------ splits, masks
def test_split_conventions():
    pn, used = dtu_splits(49, "auto", 9, 8, "x")
    assert used == "pixelnerf" and pn["train"].tolist() == [25, 22, 28, 40, 44, 48, 0, 8, 13]
    assert pn["test"].tolist() == list(PIXELNERF_TEST_IDS) and len(PIXELNERF_TEST_IDS) == 25
    assert torch.equal(pn["val"], pn["test"])
    assert not set(pn["test"].tolist()) & set(pn["train"].tolist())
    assert {3, 4, 5, 6, 7, 16, 21, 36, 39}.isdisjoint(pn["train"].tolist() + pn["test"].tolist())
    assert dtu_splits(64, "pixelnerf", 3, 8, "x")[0]["train"].tolist() == [25, 22, 28]
    hold, used = dtu_splits(20, "auto", 9, 8, "x")
    assert used == "llffhold" and hold["test"].tolist() == [0, 8, 16] and len(hold["train"]) == 17
    every, _ = dtu_splits(5, "all", 9, 8, "x")
    assert every["train"].tolist() == every["test"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(DatasetError, match="49 DTU views"):
        dtu_splits(20, "pixelnerf", 9, 8, "x")
    with pytest.raises(DatasetError, match="dtu_train_views"):
        dtu_splits(49, "pixelnerf", 10, 8, "x")


@pytest.mark.parametrize("background", [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)])
def test_masks_composite_on_the_background(dtu49, background):
    scene = load_dtu(dtu49, background=background)
    raw = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in scene.image_paths])).float() / 255
    masks = sorted((dtu49 / "mask").glob("*.png"))
    mask = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in masks])).float()[..., None] / 255
    torch.testing.assert_close(scene.alphas, mask)
    inside, outside = mask[..., 0] == 1, mask[..., 0] == 0
    assert inside.any() and outside.any()
    torch.testing.assert_close(scene.images[inside], raw[inside])
    torch.testing.assert_close(scene.images[outside], torch.tensor(background).expand(int(outside.sum()), 3))
    torch.testing.assert_close(scene.images, raw * mask + torch.tensor(background) * (1 - mask))


def test_without_masks_the_raw_images_are_used(dtu49):
    scene = load_dtu(dtu49, use_masks=False)
    raw = torch.from_numpy(np.array(Image.open(scene.image_paths[0]))).float() / 255
    assert scene.alphas is None and torch.equal(scene.images[0], raw)
    # the backdrop the generator drew (8-bit) where the mask is 0
    empty = np.asarray(Image.open(dtu49 / "mask" / "000.png")) == 0
    np.testing.assert_allclose(raw[torch.from_numpy(empty)].numpy(), np.broadcast_to(DTU_BACKDROP, (empty.sum(), 3)),
                               atol=0.5 / 255 + 1e-6)  # fmt: skip


def test_split_keeps_depths_and_alphas(dtu49):
    train = load_dtu(dtu49, train_views=3).split("train")
    assert train.n_images == 3 and train.depths.shape[0] == 3 and train.alphas.shape[0] == 3


# ------------------------------------------------------------------------------------------ errors
def test_missing_world_mat_names_the_key(dtu3):
    _rewrite_cameras(dtu3, world_mat_1=None)
    with pytest.raises(DatasetError, match=r"cameras_sphere\.npz: missing key 'world_mat_1'"):
        load_dtu(dtu3)


def test_singular_world_mat_names_the_key(dtu3):
    W = np.eye(4)
    W[2, :3] = W[0, :3]
    _rewrite_cameras(dtu3, world_mat_2=W)
    with pytest.raises(DatasetError, match=r"cameras_sphere\.npz: 'world_mat_2' .* is not a camera"):
        load_dtu(dtu3)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("world_mat_0", np.eye(3), r"'world_mat_0' must be a real \[4, 4\] or \[3, 4\] matrix"),
        ("scale_mat_1", np.ones((4, 4)), "'scale_mat_1' must be a similarity"),
        ("scale_mat_0", np.diag([1.0, 2.0, 1.0, 1.0]), "'scale_mat_0' must be a similarity"),
        ("scale_mat_0", np.diag([-1.0, 1.0, 1.0, 1.0]), "'scale_mat_0' must be a similarity"),
        ("world_mat_1", np.full((4, 4), np.inf), "'world_mat_1' contains NaN or inf"),
        ("world_mat_0", np.array(["a"] * 16).reshape(4, 4), "'world_mat_0' must be a real"),
    ],
)
def test_malformed_matrices_name_the_key(dtu3, key, value, message):
    _rewrite_cameras(dtu3, **{key: value})
    with pytest.raises(DatasetError, match=message):
        load_dtu(dtu3)


def test_skewed_intrinsics_are_refused(dtu3):
    with np.load(dtu3 / "cameras_sphere.npz") as f:
        W = f["world_mat_0"].copy()
    K, R, C = decompose_projection(W)
    K[0, 1] = 0.2 * K[1, 1]
    _rewrite_cameras(dtu3, world_mat_0=np.concatenate([compose_projection(K, R, C), [[0, 0, 0, 1]]]))
    with pytest.raises(DatasetError, match="'world_mat_0' has skew"):
        load_dtu(dtu3)


def test_count_mismatches_and_missing_files(dtu3, tmp_path):
    (dtu3 / "mask" / "002.png").unlink()
    with pytest.raises(DatasetError, match=r"mask: 2 masks but 3 images"):
        load_dtu(dtu3)
    assert load_dtu(dtu3, use_masks=False).alphas is None  # masks off: the mask folder is not read
    (dtu3 / "image" / "000002.png").unlink()
    with pytest.raises(DatasetError, match=r"3 'world_mat_\*' matrices but 2 images in .*a missing image"):
        load_dtu(dtu3, use_masks=False)
    shutil.rmtree(dtu3 / "image")
    with pytest.raises(DatasetFileNotFoundError, match="no images"):
        load_dtu(dtu3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFileNotFoundError, match="no DTU camera file"):
        load_dtu(tmp_path / "empty")


def test_bad_depth_and_npz_files(dtu3):
    np.save(dtu3 / "depth" / "000001.npy", np.ones((3, 3), dtype=np.float32))
    with pytest.raises(DatasetError, match=r"000001\.npy: expected a real \[H, W\]"):
        load_dtu(dtu3)
    (dtu3 / "depth" / "000001.npy").unlink()
    with pytest.raises(DatasetFileNotFoundError, match=r"000001\.npy: depth file not found"):
        load_dtu(dtu3)
    shutil.rmtree(dtu3 / "depth")
    assert load_dtu(dtu3).depths is None
    (dtu3 / "cameras_sphere.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DatasetError, match=r"cameras_sphere\.npz: unreadable \.npz"):
        load_dtu(dtu3)


# ------------------------------------------------------------------------------------------ command line
def test_cli_synth_and_a_few_training_steps_on_a_generated_dtu_scene(tmp_path, capsys):
    out = tmp_path / "synth_dtu"
    assert main(["data", "synth", "--out", str(out), "--layout", "dtu", "--res", "16", "--views", "10"]) == 0
    assert "wrote synthetic dtu scene" in capsys.readouterr().out
    assert (out / "cameras_sphere.npz").is_file() and len(list((out / "mask").glob("*.png"))) == 10
    config = Path(__file__).resolve().parents[1] / "configs" / "dtu_ngp.yaml"
    tiny = ["model.n_levels=4", "model.log2_hashmap_size=10", "model.max_resolution=32", "model.sampler.n_samples=8",
            "model.sampler.n_coarse=16", "model.sampler.resolution=16", "trainer.batch_size=256",
            "trainer.progress=false"]  # fmt: skip
    run = tmp_path / "run"
    overrides = [f"data.path={out}", "data.factor=1", "data.dtu_split=auto", f"output_dir={tmp_path}", "experiment=run"]
    assert main(["train", str(config), *overrides, "trainer.steps=15", *tiny]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert len(metrics["per_image"]) == 2  # 10 views, llffhold 8: views 0 and 8 held out
    assert all(np.isfinite(r["psnr"]) for r in metrics["per_image"])
