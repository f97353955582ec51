"""Malformed datasets: each must raise one DatasetError naming the file and what is wrong."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from neural3d.data import (
    DatasetError,
    DatasetFileNotFoundError,
    load_blender,
    load_llff,
    load_scene,
    load_transforms,
    read_image,
)
from neural3d.data.colmap import read_points3d_bin


def _png_bytes(size=(6, 8), mode="RGBA", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    c = {"RGBA": 4, "RGB": 3}[mode]
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, c), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpg_bytes(size=(32, 48)) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _frame(i, m=None):
    m = np.eye(4) if m is None else m
    m = np.array(m, dtype=np.float64)
    if np.isfinite(m).all():
        m[2, 3] = 3.0 + i
    return {"file_path": f"images/f{i}.png", "transform_matrix": m.tolist()}


def _transforms(tmp_path, frames=None, n=2, sizes=None, meta=None):
    (tmp_path / "images").mkdir(exist_ok=True)
    for i in range(n):
        (tmp_path / "images" / f"f{i}.png").write_bytes(_png_bytes(size=(sizes or [(6, 8)] * n)[i], seed=i))
    frames = frames if frames is not None else [_frame(i) for i in range(n)]
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({"fl_x": 10.0, **(meta or {}), "frames": frames}))
    return path


def test_missing_image_file(tmp_path):
    path = _transforms(tmp_path)
    (tmp_path / "images" / "f1.png").unlink()
    with pytest.raises(DatasetFileNotFoundError, match=r"f1.png: image file not found") as e:
        load_transforms(path)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, ValueError)


def test_missing_image_file_blender(tmp_path):
    (tmp_path / "transforms_train.json").write_text(
        json.dumps(
            {"camera_angle_x": 0.5, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]}
        )
    )
    with pytest.raises(DatasetFileNotFoundError, match=r"train/r_0.png: image file not found"):
        load_blender(tmp_path)


def _llff(tmp_path, n_poses=3, n_images=3, sizes=None, poses=None):
    (tmp_path / "images_8").mkdir()
    for i in range(n_images):
        (tmp_path / "images_8" / f"im{i}.png").write_bytes(
            _png_bytes(size=(sizes or [(6, 8)] * n_images)[i], mode="RGB", seed=i)
        )
    if poses is None:
        m = np.array([[0, 1, 0, 0.1, 48], [1, 0, 0, 0, 64], [0, 0, -1, 0, 50.0]])  # LLFF axes, det +1
        poses = np.stack(
            [np.concatenate([(m + [[0, 0, 0, 0.1 * i, 0]] * 3).ravel(), [1.0, 5.0]]) for i in range(n_poses)]
        )
    np.save(tmp_path / "poses_bounds.npy", poses)
    return tmp_path


def test_image_pose_count_mismatch(tmp_path):
    _llff(tmp_path, n_poses=3, n_images=2)
    with pytest.raises(DatasetError, match=r"poses_bounds.npy: 3 poses but 2 images in .*images_8"):
        load_llff(tmp_path, spherify=True)


def test_inconsistent_image_sizes(tmp_path):
    path = _transforms(tmp_path, n=3, sizes=[(6, 8), (6, 8), (7, 8)])
    with pytest.raises(DatasetError, match=r"f2.png: image size 8x7 \(WxH\) differs from 8x6 of .*f0.png"):
        load_transforms(path)


def test_inconsistent_image_sizes_llff(tmp_path):
    _llff(tmp_path, sizes=[(6, 8), (6, 9), (6, 8)])
    with pytest.raises(DatasetError, match=r"im1.png: image size 9x6"):
        load_llff(tmp_path, spherify=True)


@pytest.mark.parametrize("kind", ["garbage_png", "truncated_png", "truncated_jpg", "empty"])
def test_corrupt_or_truncated_image(tmp_path, kind):
    data = {
        "garbage_png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "truncated_png": _png_bytes(size=(64, 64))[:300],
        "truncated_jpg": _jpg_bytes()[:400],
        "empty": b"",
    }[kind]
    name = "bad.jpg" if kind == "truncated_jpg" else "bad.png"
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DatasetError, match=rf"{name}: (corrupt or truncated image|not a readable image)"):
        read_image(tmp_path / name)
    # and through a loader: the message names the file
    frames = [{"file_path": name, "transform_matrix": np.eye(4).tolist()}]
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 10.0, "frames": frames}))
    with pytest.raises(DatasetError, match=name):
        load_transforms(tmp_path)


def test_nan_pose_json(tmp_path):
    m = np.eye(4)
    m[0, 3] = np.nan
    path = _transforms(tmp_path, frames=[_frame(0), _frame(1, m)])
    with pytest.raises(DatasetError, match=r"transforms.json: pose\(s\) \[1\] contain NaN or inf"):
        load_transforms(path)


def test_inf_pose_llff(tmp_path):
    _llff(tmp_path)
    p = np.load(tmp_path / "poses_bounds.npy")
    p[2, 3] = np.inf
    np.save(tmp_path / "poses_bounds.npy", p)
    with pytest.raises(DatasetError, match=r"poses_bounds.npy: rows \[2\] contain NaN or inf"):
        load_llff(tmp_path, spherify=True)


def test_non_rigid_pose(tmp_path):
    m = np.eye(4)
    m[:3, :3] *= 1.5  # scaled rotation
    path = _transforms(tmp_path, frames=[_frame(0), _frame(1, m)])
    with pytest.raises(DatasetError, match=r"transforms.json: pose 1 is not a rigid transform"):
        load_transforms(path)


def test_non_rigid_pose_llff(tmp_path):
    _llff(tmp_path)
    p = np.load(tmp_path / "poses_bounds.npy")
    p[1, 0] = 2.0  # column stretched
    np.save(tmp_path / "poses_bounds.npy", p)
    with pytest.raises(DatasetError, match=r"poses_bounds.npy: pose 1 is not a rigid transform"):
        load_llff(tmp_path, spherify=True)


def test_malformed_json_reports_line_and_column(tmp_path):
    _transforms(tmp_path)
    (tmp_path / "transforms.json").write_text('{\n  "fl_x": 10.0,\n  "frames": [1, 2,]\n}\n')
    with pytest.raises(DatasetError, match=r"transforms.json: malformed JSON at line 3, column \d+"):
        load_transforms(tmp_path)


def test_malformed_json_blender(tmp_path):
    (tmp_path / "transforms_train.json").write_text('{"camera_angle_x": 0.5 "frames": []}')
    with pytest.raises(
        DatasetError, match=r"transforms_train.json: malformed JSON at line 1, column 24: Expecting .,. delimiter"
    ):
        load_scene(tmp_path)


@pytest.mark.parametrize(
    "missing,where",
    [
        ("frames", "the top level"),
        ("transform_matrix", r"frames\[1\]"),
        ("file_path", r"frames\[0\]"),
        ("fl_x", r"frames\[0\]"),
    ],
)
def test_missing_keys_transforms(tmp_path, missing, where):
    frames = [_frame(0), _frame(1)]
    meta = {}
    if missing in ("transform_matrix", "file_path"):
        del frames[1 if missing == "transform_matrix" else 0][missing]
    path = _transforms(tmp_path, frames=frames, meta=meta)
    data = json.loads(path.read_text())
    if missing in ("frames", "fl_x"):
        del data[missing]
        path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"transforms.json: missing key '{missing}'.*{where}"):
        load_transforms(path)


def test_missing_camera_angle_blender(tmp_path):
    (tmp_path / "transforms_val.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(DatasetError, match=r"transforms_val.json: missing key 'camera_angle_x'"):
        load_blender(tmp_path)


def test_unsupported_camera_model(tmp_path):
    path = _transforms(tmp_path, meta={"camera_model": "OPENCV_FISHEYE"})
    with pytest.raises(DatasetError, match=r"transforms.json: camera_model 'OPENCV_FISHEYE'"):
        load_transforms(path)


def test_size_mismatch_with_json_w_h(tmp_path):
    path = _transforms(tmp_path, meta={"w": 10, "h": 6})
    with pytest.raises(DatasetError, match=r"transforms.json: 'w' = 10 .* image file is 8x6"):
        load_transforms(path)


def test_unknown_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        DatasetError,
        match=r"unknown dataset layout; looked for transforms_train.json \(blender\), "
        r"poses_bounds.npy \(llff\), transforms.json \(transforms\)",
    ):
        load_scene(tmp_path)
    with pytest.raises(DatasetFileNotFoundError, match="no such file or directory"):
        load_scene(tmp_path / "absent")
    with pytest.raises(DatasetError, match="unknown dataset format 'nerfies'"):
        load_scene(tmp_path, format="nerfies")


def test_bad_poses_bounds_shape(tmp_path):
    _llff(tmp_path, poses=np.zeros((3, 15)))
    with pytest.raises(DatasetError, match=r"poses_bounds.npy: expected an \[n_images, 17\] array"):
        load_llff(tmp_path)


def test_truncated_colmap_points(tmp_path):
    import struct

    data = struct.pack("<Q", 2) + struct.pack("<Q3d3BdQ", 1, 0.0, 0.0, 0.0, 1, 2, 3, 0.5, 1) + struct.pack("<ii", 1, 0)
    (tmp_path / "points3D.bin").write_bytes(data + b"\x00" * 10)
    with pytest.raises(DatasetError, match=r"points3D.bin: truncated COLMAP file \(point 1 of 2"):
        read_points3d_bin(tmp_path / "points3D.bin")
