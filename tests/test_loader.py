"""RayLoader: correct targets, uniform coverage, reproducible and resumable streams, eval images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from neural3d.core.rays import generate_rays, ndc_rays
from neural3d.data import RayLoader, load_scene

H, W, N = 6, 8, 5
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture()
def scene(tmp_path):
    """A transforms.json scene: N random RGBA 8x6 images, cameras on a line; test/val = [0], train = 1..4."""
    rng = np.random.default_rng(0)
    frames = []
    (tmp_path / "im").mkdir()
    for i in range(N):
        Image.fromarray(rng.integers(0, 256, (H, W, 4), dtype=np.uint8)).save(tmp_path / "im" / f"{i}.png")
        m = np.eye(4)
        m[:3, 3] = [0.3 * i, 0.0, 4.0]
        frames.append({"file_path": f"im/{i}.png", "transform_matrix": m.tolist()})
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 7.0, "fl_y": 6.0, "k1": 0.02, "frames": frames}))
    return load_scene(tmp_path, llffhold=5)


def test_batch_targets_and_rays(scene):
    loader = RayLoader(scene, batch_size=300, seed=3)
    b = next(loader)
    assert b.rays.shape == (300,) and b.rgb.shape == (300, 3) and b.alpha.shape == (300, 1)
    ci, px = b.rays.camera_indices, b.rays.pixels
    assert set(ci.tolist()) <= {1, 2, 3, 4}  # train images only, indexed in the full scene
    assert torch.equal(b.rgb, scene.images[ci, px[:, 1], px[:, 0]])
    assert torch.equal(b.alpha, scene.alphas[ci, px[:, 1], px[:, 0]])
    ref = generate_rays(scene.cameras, ci, px.float() + 0.5, scene.near, scene.far)
    for name in ("origins", "directions", "viewdirs", "nears", "fars"):
        assert torch.allclose(getattr(b.rays, name), getattr(ref, name), atol=1e-6), name


def test_uniform_over_all_pixels_of_the_split(scene):
    loader = RayLoader(scene, split="train", batch_size=4096, seed=0)
    counts = torch.zeros(N, H, W)
    n_batches = 12
    for _ in range(n_batches):
        b = next(loader)
        counts.index_put_(
            (b.rays.camera_indices, b.rays.pixels[:, 1], b.rays.pixels[:, 0]), torch.ones(4096), accumulate=True
        )
    assert counts[0].sum() == 0 and bool((counts[1:] > 0).all())
    # chi-square against uniform over 4 * 48 cells: mean = dof = 191, sd = sqrt(2 * 191) ~ 19.5
    expected = n_batches * 4096 / (4 * H * W)
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert 191 - 5 * 19.5 < chi2 < 191 + 5 * 19.5


def test_reproducible_and_resumable(scene, tmp_path):
    a, b = RayLoader(scene, batch_size=64, seed=7), RayLoader(scene, batch_size=64, seed=7)
    for _ in range(3):
        ba, bb = next(a), next(b)
        assert torch.equal(ba.rays.pixels, bb.rays.pixels) and torch.equal(
            ba.rays.camera_indices, bb.rays.camera_indices
        )
    assert not torch.equal(
        next(RayLoader(scene, batch_size=64, seed=8)).rays.pixels,
        next(RayLoader(scene, batch_size=64, seed=7)).rays.pixels,
    )
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # checkpoints hold the state
    expected = [next(a) for _ in range(3)]
    resumed = RayLoader(scene, batch_size=64, seed=123)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.step == 3
    for e in expected:
        r = next(resumed)
        assert torch.equal(r.rays.pixels, e.rays.pixels) and torch.equal(r.rgb, e.rgb)
    with pytest.raises(ValueError, match="state is for split 'train'"):
        RayLoader(scene, split="test").load_state_dict(a.state_dict())


def test_eval_images(scene):
    loader = RayLoader(scene, split="test")
    out = list(loader.eval_images())
    assert [i for i, _, _ in out] == [0]
    i, rays, rgb = out[0]
    assert rays.shape == (H, W) and torch.equal(rgb, scene.images[0])
    assert torch.allclose(rays.origins, scene.image_rays(0).origins)
    assert torch.equal(rays.pixels[2, 5], torch.tensor([5, 2]))


def test_errors(scene):
    with pytest.raises(ValueError, match="no 'val2' split"):
        RayLoader(scene, split="val2")
    with pytest.raises(ValueError, match="batch_size"):
        RayLoader(scene, batch_size=0)


def test_ndc_scene_rays(scene):
    scene.ndc, scene.ndc_focal, scene.ndc_width, scene.ndc_height = True, 7.0, float(W), float(H)
    scene.near, scene.far = 0.0, 1.0
    b = next(RayLoader(scene, batch_size=100, seed=1))
    world = generate_rays(scene.cameras, b.rays.camera_indices, b.rays.pixels.float() + 0.5, 0.0, 1.0)
    ref = ndc_rays(world, width=W, height=H, focal=7.0, near_plane=1.0)
    assert torch.allclose(b.rays.origins, ref.origins, atol=1e-6) and torch.allclose(
        b.rays.directions, ref.directions, atol=1e-6
    )
    assert (b.rays.nears == 0).all() and (b.rays.fars == 1).all()


@pytest.mark.parametrize("device", DEVICES)
def test_device_resident(scene, device):
    loader = RayLoader(scene, batch_size=128, device=device, seed=0)
    b = next(loader)
    assert b.rgb.device.type == device and b.rays.origins.device.type == device
    assert torch.equal(
        b.rgb.cpu(), scene.images[b.rays.camera_indices.cpu(), b.rays.pixels[:, 1].cpu(), b.rays.pixels[:, 0].cpu()]
    )
    moved = scene.to(device)
    assert moved.images.device.type == device and moved.cameras.device.type == device
    assert next(RayLoader(moved, batch_size=16, device=device)).rgb.device.type == device
