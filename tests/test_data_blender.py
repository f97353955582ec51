"""Blender loader: exact agreement with the original NeRF loader on lego, and small generated scenes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neural3d.data import load_blender, load_scene, read_image
from neural3d.data.blender import blender_orbit, read_blender_split

SHARED = Path(__file__).resolve().parents[2] / "shared"
LEGO = SHARED / "data" / "nerf_synthetic" / "lego"
REF = SHARED / "reference" / "nerf_original_loader" / "lego_blender_trainval.npz"
needs_lego = pytest.mark.skipif(not (LEGO.is_dir() and REF.is_file()), reason="shared lego data not present")


@pytest.fixture(scope="module")
def ref():
    return np.load(REF)


@needs_lego
def test_lego_poses_exact(ref):
    for split in ("train", "val"):
        paths, poses, angle = read_blender_split(LEGO, split)
        assert np.array_equal(poses, ref[f"poses_{split}"])
        assert len(paths) == 100 and paths[0] == LEGO / split / "r_0.png"
    focal = 0.5 * 800 / np.tan(0.5 * angle)
    assert focal == ref["hwf"][2]


@needs_lego
def test_lego_val_subset_images_cameras_exact(ref):
    s = load_blender(LEGO, splits=("val",), testskip=25)  # val frames 0, 25, 50, 75 at full resolution
    sel = np.arange(0, 100, 25)
    assert list(s.splits) == ["val"] and s.splits["val"].tolist() == [0, 1, 2, 3]
    assert np.array_equal(s.cameras.camera_to_worlds.numpy(), ref["poses_val"][sel, :3])
    assert torch.equal(s.cameras.fx, torch.full((4,), np.float32(ref["hwf"][2])))
    assert (s.cameras.cx == 400).all() and (s.cameras.cy == 400).all() and (s.cameras.width == 800).all()
    assert (s.near, s.far) == (2.0, 6.0)
    assert np.array_equal(s.render_poses.numpy(), ref["render_poses"][:, :3])
    for k, i in enumerate(sel):
        rgba = read_image(s.image_paths[k])
        assert rgba.shape == (800, 800, 4)
        assert rgba.mean() == ref["img_mean_val"][i]  # same float32 RGBA as the original (imageio / 255)
        a = rgba[..., 3:]
        assert np.array_equal(s.alphas[k].numpy(), a)
        assert np.array_equal(s.images[k].numpy(), rgba[..., :3] * a + (1.0 - a))  # white, original formula


@needs_lego
def test_lego_full_trainval_without_test_split(ref):
    s = load_blender(LEGO, factor=8)  # test split absent on disk: loaded splits are train and val
    assert sorted(s.splits) == ["train", "val"]
    assert np.array_equal(s.splits["train"].numpy(), ref["i_train"])
    assert np.array_equal(s.splits["val"].numpy(), ref["i_val"])
    assert tuple(s.images.shape) == (200, 100, 100, 3) and tuple(s.alphas.shape) == (200, 100, 100, 1)
    assert torch.allclose(s.cameras.fx, torch.tensor(ref["hwf"][2] / 8, dtype=torch.float32))
    c2w = s.cameras.camera_to_worlds.numpy()
    assert np.array_equal(c2w, np.concatenate([ref["poses_train"], ref["poses_val"]])[:, :3])
    assert torch.equal(s.scene_box, torch.tensor([[-1.5] * 3, [1.5] * 3]))
    # every camera centre of lego is at radius ~4 and the bounds [2, 6] enclose the box from each
    assert np.allclose(np.linalg.norm(c2w[:, :, 3], axis=-1), 4.03, atol=0.01)


def test_orbit_looks_at_origin_from_radius_4():
    p = blender_orbit().double()
    assert p.shape == (40, 3, 4)
    centres, back = p[:, :, 3], p[:, :, 2]
    assert torch.allclose(centres.norm(dim=-1), torch.full((40,), 4.0, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(back, centres / 4.0, atol=1e-5)  # camera looks down -z, at the origin
    # elevation -30 degrees: z = 4 sin(30)
    assert torch.allclose(
        centres[:, 2], torch.full((40,), 4 * math.sin(math.radians(30)), dtype=torch.float64), atol=1e-5
    )


def _tiny_blender(root, splits=("train", "val"), n=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    rgbas = {}
    for s in splits:
        frames = []
        rgbas[s] = []
        for i in range(n):
            rgba = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
            (root / s).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgba).save(root / s / f"r_{i}.png")
            m = np.eye(4)
            m[:3, 3] = [0.0, 0.0, 4.0 + i]
            frames.append({"file_path": f"./{s}/r_{i}", "transform_matrix": m.tolist()})
            rgbas[s].append(rgba)
        (root / f"transforms_{s}.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return rgbas


def test_missing_split_factor_background_and_testskip(tmp_path):
    rgbas = _tiny_blender(tmp_path, n=4)
    s = load_blender(tmp_path, factor=2, background=(0.0, 0.0, 0.0), testskip=2)
    assert list(s.splits) == ["train", "val"]
    assert s.splits["train"].tolist() == [0, 1, 2, 3] and s.splits["val"].tolist() == [4, 5]  # val frames 0, 2
    assert s.image_paths[5] == tmp_path / "val" / "r_2.png"
    rgba = rgbas["val"][2].astype(np.float64) / 255.0
    blocks = rgba.reshape(4, 2, 4, 2, 4).mean(axis=(1, 3))  # area averaging (cv2 INTER_AREA for factor 2)
    assert np.allclose(s.images[5].numpy(), blocks[..., :3] * blocks[..., 3:], atol=1e-6)  # black background
    assert np.allclose(s.alphas[5].numpy(), blocks[..., 3:], atol=1e-6)
    f = 0.5 * 8 / math.tan(0.35) / 2
    assert torch.allclose(s.cameras.fx, torch.full((6,), f)) and (s.cameras.cx == 2.0).all()
    assert s.cameras.camera_to_worlds[5, 2, 3] == 6.0


def test_split_restriction_and_load_scene(tmp_path):
    _tiny_blender(tmp_path, splits=("train", "test"), n=2)
    s = load_scene(tmp_path, llffhold=8)  # detected as blender; LLFF options are dropped
    assert s.kind == "blender" and sorted(s.splits) == ["test", "train"]
    t = s.split("test")
    assert t.n_images == 2 and t.splits == {"test": t.splits["test"]} and t.splits["test"].tolist() == [0, 1]
    assert torch.equal(t.images, s.images[2:]) and torch.equal(
        t.cameras.camera_to_worlds, s.cameras.camera_to_worlds[2:]
    )
    assert t.image_paths == s.image_paths[2:]
    rays = t.image_rays(1)
    assert rays.shape == (8, 8) and torch.allclose(rays.origins, torch.tensor([0.0, 0.0, 5.0]).expand(8, 8, 3))
    assert (rays.nears == 2.0).all() and (rays.fars == 6.0).all()
    with pytest.raises(ValueError, match="no 'val' split"):
        s.split("val")
