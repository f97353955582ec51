"""``SceneData.depths`` from ``depth/*.npy``: generated Blender scenes expose their exact depth like DTU scenes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from neural3d.core.rays import image_rays
from neural3d.data import DatasetError, DatasetFileNotFoundError, load_blender
from neural3d.data.depths import downscale_depth
from neural3d.data.synthetic import make_scene, write_blender_scene


@pytest.fixture(scope="module")
def blender16(tmp_path_factory):
    return write_blender_scene(tmp_path_factory.mktemp("depth") / "b", seed=2, res=16, n_train=3, n_val=1, n_test=2)


def test_generated_blender_scenes_expose_their_exact_depth(blender16):
    scene = load_blender(blender16)
    assert scene.depths.shape == (6, 16, 16) and scene.depths.dtype == torch.float32
    files = [
        blender16 / "depth" / s / f"r_{i}.npy" for s, n in (("train", 3), ("val", 1), ("test", 2)) for i in range(n)
    ]
    torch.testing.assert_close(scene.depths, torch.from_numpy(np.stack([np.load(f) for f in files])))
    # the depth is the ray parameter t of image_rays: t * d reaches the analytic surface
    synth = make_scene(2, "object")
    for i in (0, 3, 5):
        rays = image_rays(scene.cameras, i, scene.near, scene.far, 0.5)
        hit = scene.depths[i] > 0
        assert hit.any()
        traced = synth.trace(rays.origins[hit].double(), rays.directions[hit].double()).t
        torch.testing.assert_close(traced, scene.depths[i][hit].double(), rtol=1e-5, atol=1e-5)
    train = scene.split("train")
    torch.testing.assert_close(train.depths, scene.depths[:3])


def test_downscaled_depth_and_missing_files(blender16, tmp_path):
    full, half = load_blender(blender16), load_blender(blender16, factor=2)
    expected = np.stack([downscale_depth(d.numpy(), 2) for d in full.depths])
    torch.testing.assert_close(half.depths, torch.from_numpy(expected))
    copy = tmp_path / "b"
    shutil.copytree(blender16, copy)
    (copy / "depth" / "val" / "r_0.npy").unlink()
    with pytest.raises(DatasetFileNotFoundError, match=r"val/r_0\.npy: depth file not found \(1 of 6"):
        load_blender(copy)
    np.save(copy / "depth" / "val" / "r_0.npy", -np.ones((16, 16), dtype=np.float32))
    with pytest.raises(DatasetError, match="negative depths"):
        load_blender(copy)
    shutil.rmtree(copy / "depth")
    assert load_blender(copy).depths is None  # real Blender scenes have no depth/ folder
