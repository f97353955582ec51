"""Point-cloud data: PLY / COLMAP / text readers, ModelNet40 and ShapeNetPart layouts, synthetic shapes,
augmentation."""

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from neural3d.apps.point_classification.augment import AugmentConfig, augment
from neural3d.apps.point_classification.datasets import load_modelnet40, load_shapenetpart, synthetic_set
from neural3d.pointcloud.io import load_points, read_ply, write_ply
from neural3d.pointcloud.synthetic import PARTS_PER_CLASS, make_shapes

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELNET = SHARED / "data" / "modelnet40_sample"


def test_ascii_ply_with_faces_and_extra_properties(tmp_path):
    text = """ply
format ascii 1.0
comment hand written
element vertex 3
property float x
property float y
property float z
property float confidence
property uchar red
property uchar green
property uchar blue
element face 1
property list uchar int vertex_indices
end_header
0 1 2 0.5 255 0 0
3.5 -4 5 0.1 0 255 0
-1 0 1e-1 1 0 0 51
3 0 1 2
"""
    (tmp_path / "a.ply").write_text(text)
    out = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(out["xyz"], [[0, 1, 2], [3.5, -4, 5], [-1, 0, 0.1]])
    np.testing.assert_allclose(out["rgb"], [[1, 0, 0], [0, 1, 0], [0, 0, 0.2]])


def test_binary_big_endian_ply_written_by_hand(tmp_path):
    header = (
        b"ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty double x\nproperty double y\n"
        b"property double z\nproperty float nx\nproperty float ny\nproperty float nz\nend_header\n"
    )
    body = struct.pack(">dddfff", 1.0, 2.0, 3.0, 0, 0, 1) + struct.pack(">dddfff", -1.5, 0.25, 8.0, 1, 0, 0)
    (tmp_path / "b.ply").write_bytes(header + body)
    out = read_ply(tmp_path / "b.ply")
    np.testing.assert_array_equal(out["xyz"], [[1, 2, 3], [-1.5, 0.25, 8]])
    np.testing.assert_array_equal(out["normals"], [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize("binary", [True, False])
def test_ply_writer_round_trip(tmp_path, binary):
    xyz = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    rgb = np.random.default_rng(1).integers(0, 256, size=(50, 3)) / 255.0
    write_ply(tmp_path / "c.ply", xyz, rgb, binary=binary)
    out = read_ply(tmp_path / "c.ply")
    np.testing.assert_allclose(out["xyz"], xyz, rtol=1e-6)
    np.testing.assert_allclose(out["rgb"], rgb, atol=1e-9)
    np.testing.assert_allclose(load_points(tmp_path / "c.ply")["xyz"], xyz, rtol=1e-6)  # open3d when installed


def test_bad_point_files_name_the_file(tmp_path):
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    with pytest.raises(ValueError, match="bad.ply"):
        read_ply(tmp_path / "bad.ply")
    (tmp_path / "trunc.ply").write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 5\n"
        b"property float x\nproperty float y\nproperty float z\nend_header\n" + b"\0" * 8
    )
    with pytest.raises(ValueError, match="trunc.ply.*truncated"):
        read_ply(tmp_path / "trunc.ply")
    (tmp_path / "rows.txt").write_text("1,2,3\n4,five,6\n")
    with pytest.raises(ValueError, match="rows.txt"):
        load_points(tmp_path / "rows.txt")
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        load_points(tmp_path / "missing.ply")
    with pytest.raises(ValueError, match="extension"):
        (tmp_path / "x.obj").write_text("v 0 0 0")
        load_points(tmp_path / "x.obj")


def test_colmap_points3d_bin(tmp_path):
    buf = struct.pack("<Q", 2)
    for pid, xyz, rgb in [(7, (1.0, 2.0, 3.0), (255, 0, 10)), (9, (-1.0, 0.5, 4.0), (0, 128, 255))]:
        buf += struct.pack("<Q3d3BdQ", pid, *xyz, *rgb, 0.5, 1) + struct.pack("<ii", 1, 0)
    (tmp_path / "points3D.bin").write_bytes(buf)
    out = load_points(tmp_path / "points3D.bin")
    np.testing.assert_array_equal(out["xyz"], [[1, 2, 3], [-1, 0.5, 4]])
    np.testing.assert_allclose(out["rgb"], np.array([[255, 0, 10], [0, 128, 255]]) / 255.0)


@pytest.mark.skipif(not MODELNET.is_dir(), reason="shared ModelNet40 sample absent")
def test_modelnet40_sample_loads():
    train = load_modelnet40(MODELNET, "train", n_points=1024)
    test = load_modelnet40(MODELNET, "test", n_points=512, use_normals=False)
    assert train.points.shape == (3, 1024, 6) and test.points.shape == (2, 512, 3)
    assert len(train.class_names) == 40
    assert [train.class_names[i] for i in train.labels] == ["airplane", "chair", "cone"]
    torch.testing.assert_close(train.points[..., :3].norm(dim=-1).amax(1), torch.ones(3))
    torch.testing.assert_close(train.points[..., 3:].norm(dim=-1), torch.ones(3, 1024), atol=2e-3, rtol=0)
    raw = np.loadtxt(MODELNET / "chair" / "chair_0391.txt", delimiter=",")[:1024]
    xyz = raw[:, :3] - raw[:, :3].mean(0)
    np.testing.assert_allclose(train.points[1, :, :3].numpy(), xyz / np.linalg.norm(xyz, axis=1).max(), atol=1e-5)


def _modelnet_layout(root: Path, bad_row: bool = False) -> None:
    (root / "cone").mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("airplane\ncone\n")
    (root / "modelnet40_train.txt").write_text("cone_0001\n")
    rows = "\n".join("0.1,0.2,0.3,0,0,1" for _ in range(20))
    (root / "cone" / "cone_0001.txt").write_text(rows + ("\n1,2" if bad_row else ""))


def test_modelnet_errors_name_the_bad_file(tmp_path):
    _modelnet_layout(tmp_path / "ok")
    assert load_modelnet40(tmp_path / "ok", "train", n_points=16).labels.tolist() == [1]
    with pytest.raises(ValueError, match=r"cone_0001\.txt"):
        load_modelnet40(tmp_path / "ok", "train", n_points=64)  # too few rows
    _modelnet_layout(tmp_path / "bad", bad_row=True)
    with pytest.raises(ValueError, match=r"cone_0001\.txt"):
        load_modelnet40(tmp_path / "bad", "train", n_points=16)
    with pytest.raises(FileNotFoundError, match="modelnet40_test.txt"):
        load_modelnet40(tmp_path / "ok", "test")


def test_shapenetpart_layout(tmp_path):
    (tmp_path / "synsetoffset2category.txt").write_text("Airplane\t02691156\nMug\t03797390\n")
    (tmp_path / "train_test_split").mkdir()
    entries = ["shape_data/02691156/aaa", "shape_data/03797390/bbb"]
    (tmp_path / "train_test_split" / "shuffled_train_file_list.json").write_text(json.dumps(entries))
    rng = np.random.default_rng(0)
    for entry, part0, n in [(entries[0], 0, 40), (entries[1], 36, 10)]:
        synset, sid = entry.split("/")[1:]
        (tmp_path / synset).mkdir()
        rows = np.concatenate([rng.normal(size=(n, 6)), (part0 + np.arange(n) % 2)[:, None]], 1)
        np.savetxt(tmp_path / synset / f"{sid}.txt", rows, fmt="%.6f")
    data = load_shapenetpart(tmp_path, "train", n_points=32)
    assert data.points.shape == (2, 32, 3) and data.labels.tolist() == [0, 1]
    assert data.n_parts == 38 and set(data.parts[1].tolist()) <= {36, 37} and set(data.parts[0].tolist()) == {0, 1}


def test_synthetic_shapes_are_normalised_with_parts():
    pts, labels, parts = make_shapes(4, 300, n_classes=6, seed=1)
    assert pts.shape == (24, 300, 3) and labels.bincount().tolist() == [4] * 6
    torch.testing.assert_close(pts.norm(dim=-1).amax(1), torch.ones(24))
    torch.testing.assert_close(pts.mean(1), torch.zeros(24, 3), atol=1e-6, rtol=0)
    offsets = np.cumsum([0, *PARTS_PER_CLASS])
    for c in range(6):
        assert set(parts[labels == c].unique().tolist()) == set(range(offsets[c], offsets[c + 1]))
    a, _, _ = make_shapes(2, 100, seed=5)
    b, _, _ = make_shapes(2, 100, seed=5)
    assert torch.equal(a, b)
    s = synthetic_set(2, n_points=64, n_classes=5)
    assert s.class_names == ["sphere", "cube", "cylinder", "cone", "torus"] and s.n_parts == 11
    with pytest.raises(ValueError, match="n_classes"):
        make_shapes(1, 10, n_classes=9)


def test_augmentation_rotates_about_up_and_scales():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(4, 100, 6, dtype=torch.float64)
    cfg = AugmentConfig(scale_min=1.0, scale_max=1.0, jitter_sigma=0.0, rotate_up=True)
    out = augment(pts, cfg, g)
    torch.testing.assert_close(out[..., 1], pts[..., 1])  # up coordinate unchanged
    torch.testing.assert_close(out[..., [0, 2]].norm(dim=-1), pts[..., [0, 2]].norm(dim=-1))  # radius about up
    torch.testing.assert_close(out[..., 3:].norm(dim=-1), pts[..., 3:].norm(dim=-1))  # normals rotated too
    assert not torch.allclose(out, pts)
    cfg = AugmentConfig(scale_min=0.5, scale_max=0.5, jitter_sigma=1.0, jitter_clip=0.01)
    out = augment(pts, cfg, g)
    assert ((out[..., :3] - 0.5 * pts[..., :3]).abs().max()) <= 0.01 + 1e-12
    assert math.isclose(float((out[..., :3] - 0.5 * pts[..., :3]).abs().max()), 0.01, rel_tol=1e-9)
