"""Issue 23 items 9, 10, 14: untrusted scene files.

* 9: ``file_path`` entries leading outside the scene folder (``..``, absolute paths, symlinks) are refused,
  naming the frame, before the file is opened -- unless ``data.allow_external_paths=true``;
* 10: an image whose header claims a huge size is one DatasetError naming the file and the limit
  (``NEURAL3D_MAX_IMAGE_PIXELS``), not Pillow's DecompressionBombError traceback;
* 14: a scene with missing images fails on a cheap existence check of every frame, before any image is decoded.
"""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import neural3d.data.images as images_mod
from neural3d.config import DataConfig
from neural3d.data import DatasetError, DatasetFileNotFoundError, load_blender, load_scene, load_transforms, read_image
from neural3d.training.setup import load_scene_from_config


def _png(size=(6, 8), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 4), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _with_header_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR width/height replaced (CRC fixed): the header lies about the size."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png[8:12] + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + png[33:]


def _pose(i):
    m = np.eye(4)
    m[2, 3] = 3.0 + i
    return m.tolist()


def _blender(root, file_paths, write=True):
    root.mkdir(parents=True, exist_ok=True)
    (root / "train").mkdir(exist_ok=True)
    frames = []
    for i, fp in enumerate(file_paths):
        if write:
            (root / "train" / f"r_{i}.png").write_bytes(_png(seed=i))
        frames.append({"file_path": fp, "transform_matrix": _pose(i)})
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return root


def _transforms(root, file_paths):
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for i in range(len(file_paths)):
        (root / "images" / f"f{i}.png").write_bytes(_png(seed=i))
    frames = [{"file_path": fp, "transform_matrix": _pose(i)} for i, fp in enumerate(file_paths)]
    (root / "transforms.json").write_text(json.dumps({"fl_x": 10.0, "frames": frames}))
    return root


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any image is opened or decoded (Pillow's Image.open and our read_image)."""
    opened = []

    def refuse(path, *a, **k):
        opened.append(str(path))
        raise AssertionError(f"image opened: {path}")

    monkeypatch.setattr(images_mod, "read_image", refuse)
    monkeypatch.setattr(Image, "open", refuse)
    return opened


# ---------------------------------------------------------------------------------------------- item 9
@pytest.mark.parametrize("layout", ["blender", "transforms"])
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "etc_passwd", "symlink"])
def test_file_path_outside_the_scene_is_refused_naming_the_frame(tmp_path, layout, kind, no_decoding):
    outside = tmp_path / "outside.png"
    Image.new("RGBA", (8, 6)).save(outside)  # a real image next to (not inside) the scene folder
    root = tmp_path / "scene"
    if kind == "dotdot":
        bad = "../outside" if layout == "blender" else "../outside.png"
    elif kind == "absolute":
        bad = str(outside.with_suffix("")) if layout == "blender" else str(outside)
    elif kind == "etc_passwd":
        bad = "../../../../../../../../etc/passwd"
    else:
        bad = "./train/link" if layout == "blender" else "images/link.png"
    good = "./train/r_0" if layout == "blender" else "images/f0.png"
    root = _blender(root, [good, bad]) if layout == "blender" else _transforms(root, [good, bad])
    if kind == "symlink":
        (root / ("train/link.png" if layout == "blender" else "images/link.png")).symlink_to(outside)
    with pytest.raises(DatasetError, match=r"frames\[1\]\.file_path .*outside the scene folder") as e:
        load_scene(root)
    assert "data.allow_external_paths=true" in str(e.value) and "\n" not in str(e.value)
    assert no_decoding == []  # refused before any file was opened (/etc/passwd included)


@pytest.mark.parametrize("layout", ["blender", "transforms"])
def test_allow_external_paths_reads_them(tmp_path, layout):
    Image.fromarray(np.full((6, 8, 4), 200, np.uint8)).save(tmp_path / "outside.png")
    root = tmp_path / "scene"
    if layout == "blender":
        _blender(root, ["./train/r_0", "../outside"])
    else:
        _transforms(root, ["images/f0.png", "../outside.png"])
    scene = (load_blender if layout == "blender" else load_transforms)(root, allow_external_paths=True)
    assert scene.n_images == 2 and scene.image_paths[1].resolve() == (tmp_path / "outside.png").resolve()
    # the config field is passed through to the loaders
    with pytest.raises(DatasetError, match="outside the scene folder"):
        load_scene_from_config(DataConfig(path=str(root)))
    assert load_scene_from_config(DataConfig(path=str(root), allow_external_paths=True)).n_images == 2


def test_paths_inside_the_scene_with_dotdot_still_load(tmp_path):
    root = _blender(tmp_path / "scene", ["./train/../train/r_0", "train/r_1"])
    assert load_blender(root).n_images == 2


# ---------------------------------------------------------------------------------------------- item 10
def test_decompression_bomb_header_is_one_line_naming_file_and_limit(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_with_header_size(_png(), 40000, 40000))
    with pytest.raises(DatasetError) as e:
        read_image(bomb)
    msg = str(e.value)
    assert "\n" not in msg and str(bomb) in msg and "178,956,970" in msg and "NEURAL3D_MAX_IMAGE_PIXELS" in msg
    # and through a loader, with the image in a scene: the same one line
    root = _blender(tmp_path / "scene", ["./train/r_0", "./train/r_1"])
    (root / "train" / "r_1.png").write_bytes(_with_header_size(_png(), 40000, 40000))
    with pytest.raises(DatasetError, match=r"r_1\.png: image of 1,600,000,000 pixels is over the limit"):
        load_scene(root)


def test_pixel_limit_is_a_setting(tmp_path, monkeypatch):
    img = tmp_path / "img.png"
    img.write_bytes(_png(size=(20, 30)))  # 600 pixels
    monkeypatch.setenv("NEURAL3D_MAX_IMAGE_PIXELS", "599")
    with pytest.raises(DatasetError, match=r"img\.png: image size 30x20 \(WxH\) = 600 pixels is over the limit of 599"):
        read_image(img)
    monkeypatch.setenv("NEURAL3D_MAX_IMAGE_PIXELS", "600")
    assert read_image(img).shape == (20, 30, 4)
    monkeypatch.setenv("NEURAL3D_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DatasetError, match="must be a positive integer"):
        read_image(img)


def test_cli_reports_a_bomb_in_one_line(tmp_path, capsys):
    from neural3d.cli.main import main

    root = _blender(tmp_path / "scene", ["./train/r_0", "./train/r_1"])
    (root / "train" / "r_0.png").write_bytes(_with_header_size(_png(), 40000, 40000))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"method: nerf\ndata: {{path: {root}}}\noutput_dir: {tmp_path / 'runs'}\ntrainer: {{steps: 1}}\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "r_0.png" in err and "over the limit" in err


# ---------------------------------------------------------------------------------------------- item 14
@pytest.mark.parametrize("layout", ["blender", "transforms"])
def test_large_frame_list_with_missing_images_fails_before_decoding(tmp_path, layout, no_decoding):
    n = 100_000
    root = tmp_path / "scene"
    root.mkdir()
    m = _pose(0)
    if layout == "blender":
        frames = [{"file_path": f"./train/r_{i}", "transform_matrix": m} for i in range(n)]
        (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
        (root / "train").mkdir()
        (root / "train" / "r_0.png").write_bytes(_png())  # only the first image exists
    else:
        frames = [{"file_path": f"images/f{i}.png", "transform_matrix": m} for i in range(n)]
        (root / "transforms.json").write_text(json.dumps({"fl_x": 10.0, "frames": frames}))
        (root / "images").mkdir()
        (root / "images" / "f0.png").write_bytes(_png())
    with pytest.raises(DatasetFileNotFoundError) as e:
        load_scene(root)
    msg = str(e.value)
    assert f"{n - 1} of {n} frame images not found" in msg and "frames[1].file_path" in msg
    assert "frames[99999]" not in msg  # the first few are named, not all
    assert no_decoding == []


def test_colmap_points_with_a_corrupt_count_fail_without_allocating_it(tmp_path):
    from neural3d.data import read_points3d_bin

    (tmp_path / "points3D.bin").write_bytes(struct.pack("<Q", 2**62) + b"\x00" * 60)
    with pytest.raises(DatasetError, match=r"truncated COLMAP file \(point 1 of 4611686018427387904"):
        read_points3d_bin(tmp_path / "points3D.bin")
