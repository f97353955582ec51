"""Viewer cameras farther from the scene than the training cameras get ray bounds moved out with them."""

from __future__ import annotations

import pytest
import torch

from neural3d.core.cameras import Cameras


def _camera(c2w: torch.Tensor, size: int = 24, focal: float = 30.0) -> Cameras:
    one = torch.tensor([1.0])
    return Cameras(c2w[None, :3, :4].float(), focal * one, focal * one, size / 2 * one, size / 2 * one,
                   torch.tensor([size]), torch.tensor([size]))  # fmt: skip


def _pulled_back(c2w: torch.Tensor, factor: float) -> torch.Tensor:
    """The same orientation, ``factor`` times as far from the origin (the scene box centre of the tiny scene)."""
    out = c2w.clone()
    out[:3, 3] *= factor
    return out


@pytest.fixture(scope="module")
def handle(tmp_path_factory, tiny_blender_scene):
    from _tiny_run import tiny_trained_run
    from neural3d.viewer import SceneHandle

    import neural3d

    loaded = neural3d.load(tiny_trained_run(tmp_path_factory, tiny_blender_scene))
    return SceneHandle(loaded, dataset=loaded.dataset())


def test_training_cameras_keep_the_runs_bounds_and_render_identically(handle):
    loaded, ds = handle.loaded, handle.dataset
    assert torch.equal(handle.centre, loaded.info.scene_box.double().mean(0))
    cam = ds.cameras[ds.splits["train"][:1]]
    assert handle.bounds(cam) == (None, None)
    out, ref = handle.render(cam), loaded.render(cam)
    for k in ("rgb", "depth", "opacity"):
        assert torch.equal(out[k], ref[k][0].float().cpu())


def test_a_camera_outside_the_ring_sees_the_same_depth_range(handle):
    loaded, ds = handle.loaded, handle.dataset
    c2w = ds.cameras.camera_to_worlds[int(ds.splits["train"][0])].double().cpu()
    d = float(torch.linalg.norm(c2w[:, 3] - handle.centre))
    far_cam = _camera(_pulled_back(c2w, 3.0 * handle.ring / d))  # 3x the ring's radius from the centre
    near, far = handle.bounds(far_cam)
    extra = 2.0 * handle.ring
    assert near == pytest.approx(loaded.info.near + extra, rel=1e-6)
    assert far == pytest.approx(loaded.info.far + extra, rel=1e-6)
    # the run's own bounds end before the scene at that distance; the moved bounds reach it
    assert loaded.info.far < 3.0 * handle.ring - 1.0  # (the tiny scene's far plane: the test's premise)
    seen = handle.render(far_cam)["opacity"]
    cut = loaded.render(far_cam)["opacity"][0]
    assert float(cut.max()) < 0.05 < float(seen.max())
    torch.testing.assert_close(
        loaded.render(far_cam, near=near, far=far)["opacity"][0].float().cpu(), seen, atol=0, rtol=0
    )
