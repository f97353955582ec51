"""Issue 23 item 7 (the parts about inputs): ``data synth --views 0`` and non-rigid camera_path.json poses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neural3d.cli.main import main
from neural3d.data import DatasetError, load_scene
from neural3d.data.synthetic import write_blender_scene
from neural3d.media.camera_path_json import load_camera_path


@pytest.mark.parametrize("layout, views", [("blender", 0), ("blender", -3), ("llff", 0), ("llff", 1)])
def test_synth_refuses_view_counts_that_write_an_unloadable_scene(tmp_path, capsys, layout, views):
    out = tmp_path / "scene"
    assert main(["data", "synth", "--out", str(out), "--layout", layout, "--res", "8", "--views", str(views)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--views must be >=" in err
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("layout, views", [("blender", 1), ("llff", 2)])
def test_synth_smallest_view_count_loads_with_a_training_view(tmp_path, layout, views):
    out = tmp_path / "scene"
    assert main(["data", "synth", "--out", str(out), "--layout", layout, "--res", "16", "--views", str(views)]) == 0
    scene = load_scene(out)
    assert scene.split_indices("train").numel() >= 1


def test_blender_writer_skips_empty_val_test_splits(tmp_path):
    out = write_blender_scene(tmp_path / "s", res=8, n_train=2, n_val=0, n_test=0, supersample=1)
    assert not (out / "transforms_val.json").exists() and not (out / "transforms_test.json").exists()
    assert sorted(load_scene(out).splits) == ["train"]
    with pytest.raises(ValueError, match="n_train must be >= 1"):
        write_blender_scene(tmp_path / "t", res=8, n_train=0, supersample=1)


def _camera_path(tmp_path, m44):
    path = tmp_path / "camera_path.json"
    entry = {"camera_to_world": np.asarray(m44, dtype=float).reshape(-1).tolist(), "fov": 50.0}
    ok = np.eye(4)
    ok[2, 3] = 4.0
    entries = [{"camera_to_world": ok.reshape(-1).tolist(), "fov": 50.0}, entry]
    path.write_text(json.dumps({"render_width": 8, "render_height": 6, "fps": 10, "camera_path": entries}))
    return path


def _scaled():
    m = np.eye(4)
    m[:3, :3] *= 2.0
    return m


def _sheared():
    m = np.eye(4)
    m[0, 1] = 0.3
    return m


def _reflected():
    m = np.eye(4)
    m[0, 0] = -1.0
    return m


@pytest.mark.parametrize("make", [_scaled, _sheared, _reflected], ids=["scaled", "sheared", "reflected"])
def test_non_rigid_camera_to_world_is_refused_as_the_loaders_do(tmp_path, make):
    m = make()
    with pytest.raises(DatasetError, match=r"camera_path\[1\]\.camera_to_world'.* not a rigid transform"):
        load_camera_path(_camera_path(tmp_path, m))
    # the same matrix as a transforms.json pose: the data loader refuses it too (same check, same tolerance)
    from PIL import Image

    (tmp_path / "scene").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "scene" / "a.png")
    frame = {"file_path": "a.png", "transform_matrix": m.tolist()}
    (tmp_path / "scene" / "transforms.json").write_text(json.dumps({"fl_x": 8.0, "frames": [frame]}))
    with pytest.raises(DatasetError, match="not a rigid transform"):
        load_scene(tmp_path / "scene")


def test_rigid_camera_path_still_loads(tmp_path):
    theta = 0.3
    m = np.eye(4)
    m[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    m[:3, 3] = [1.0, 2.0, 3.0]
    cp = load_camera_path(_camera_path(tmp_path, m))
    assert cp.n_frames == 2
    np.testing.assert_allclose(cp.c2w[1].numpy(), m[:3], atol=1e-6)
