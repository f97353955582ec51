"""transforms.json (instant-ngp / nerfstudio) loader: intrinsics, distortion, poses, splits, box, bounds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from neural3d.data import load_scene, load_transforms, read_image
from neural3d.data.images import composite, resize_area

W, H = 16, 12


def look_at_c2w(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """[4, 4] OpenGL camera-to-world looking from ``eye`` at ``target`` (float64)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
    return m


def write_png(path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_scene(tmp_path, n=10, *, meta=None, frame_extra=None, ext=True, size=(H, W), seed=0):
    """A transforms.json scene with random RGBA PNGs in ``images/``; returns (json path, poses, rgba list)."""
    rng = np.random.default_rng(seed)
    frames, poses, rgbas = [], [], []
    for i in range(n):
        a = 2 * math.pi * i / n
        c2w = look_at_c2w((4 * math.cos(a), 4 * math.sin(a), 1.0 + 0.1 * i))
        rgba = rng.integers(0, 256, (*size, 4), dtype=np.uint8)
        write_png(tmp_path / "images" / f"frame_{i:03d}.png", rgba)
        fr = {"file_path": f"images/frame_{i:03d}" + (".png" if ext else ""), "transform_matrix": c2w.tolist()}
        fr.update((frame_extra or {}).get(i, {}))
        frames.append(fr)
        poses.append(c2w)
        rgbas.append(rgba)
    meta = dict(meta or {})
    meta["frames"] = frames
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(meta, indent=1))
    return path, np.stack(poses), rgbas


OPENCV_META = {
    "camera_model": "OPENCV",
    "fl_x": 20.0,
    "fl_y": 22.0,
    "cx": 7.5,
    "cy": 6.25,
    "w": W,
    "h": H,
    "k1": 0.05,
    "k2": -0.01,
    "p1": 0.002,
    "p2": -0.001,
    "aabb_scale": 4,
}


def project_reference(points, c2w, fx, fy, cx, cy, dist):
    """Independent float64 OpenCV projection of world points through an OpenGL c2w (nerfstudio convention)."""
    R, t = c2w[:3, :3], c2w[:3, 3]
    pc = (points - t) @ R  # world -> camera (OpenGL)
    x, y, z = pc[:, 0], -pc[:, 1], -pc[:, 2]  # OpenCV axes
    u, v = x / z, y / z
    k1, k2, p1, p2 = dist
    r2 = u * u + v * v
    rad = 1 + k1 * r2 + k2 * r2 * r2
    ud = u * rad + 2 * p1 * u * v + p2 * (r2 + 2 * u * u)
    vd = v * rad + p1 * (r2 + 2 * v * v) + 2 * p2 * u * v
    return np.stack([fx * ud + cx, fy * vd + cy], -1), z


def test_intrinsics_poses_images_and_splits(tmp_path):
    path, poses, rgbas = make_scene(tmp_path, n=10, meta=OPENCV_META, ext=False)
    s = load_transforms(tmp_path, background=(0.0, 0.0, 1.0))
    c = s.cameras
    assert s.kind == "transforms" and len(c) == 10
    assert torch.allclose(c.fx, torch.full((10,), 20.0)) and torch.allclose(c.fy, torch.full((10,), 22.0))
    assert torch.allclose(c.cx, torch.full((10,), 7.5)) and torch.allclose(c.cy, torch.full((10,), 6.25))
    assert (c.width == W).all() and (c.height == H).all()
    assert torch.allclose(c.distortion, torch.tensor([0.05, -0.01, 0.002, -0.001]).expand(10, 4))
    assert np.allclose(c.camera_to_worlds.numpy(), poses[:, :3], atol=1e-6)
    # hold-out every 8th frame from a single file
    assert s.splits["test"].tolist() == [0, 8] and s.splits["val"].tolist() == [0, 8]
    assert s.splits["train"].tolist() == [1, 2, 3, 4, 5, 6, 7, 9]
    # images composited on the (blue) background, alpha kept
    rgba = np.stack(rgbas).astype(np.float64) / 255.0
    a = rgba[..., 3:]
    expect = rgba[..., :3] * a + np.array([0.0, 0.0, 1.0]) * (1 - a)
    assert np.allclose(s.images.numpy(), expect, atol=1e-6)
    assert np.allclose(s.alphas.numpy(), a, atol=1e-7)
    assert [p.name for p in s.image_paths] == [f"frame_{i:03d}.png" for i in range(10)]
    # instant-ngp box: side aabb_scale / 0.33 centred at the origin
    half = 0.5 * 4 / 0.33
    assert torch.allclose(s.scene_box, torch.tensor([[-half] * 3, [half] * 3]), atol=1e-5)


def test_projection_and_rays_match_independent_opencv_model(tmp_path):
    make_scene(tmp_path, n=3, meta=OPENCV_META)
    s = load_transforms(tmp_path / "transforms.json")
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1, 1, (50, 3))
    for i in range(3):
        c2w = s.cameras.camera_to_worlds[i].double().numpy()
        xy_ref, z_ref = project_reference(pts, c2w, 20.0, 22.0, 7.5, 6.25, (0.05, -0.01, 0.002, -0.001))
        xy, depth = s.cameras.project(torch.tensor(pts, dtype=torch.float32), torch.tensor([i]))
        assert np.allclose(xy[0].numpy(), xy_ref, atol=2e-3)
        assert np.allclose(depth[0].numpy(), z_ref, atol=1e-4)
        # the ray through each projected pixel passes through the point, at t = its z-depth
        rays = s.rays(torch.full((50,), i), torch.tensor(xy_ref, dtype=torch.float32))
        hit = rays.origins + torch.tensor(z_ref, dtype=torch.float32)[:, None] * rays.directions
        assert torch.allclose(hit, torch.tensor(pts, dtype=torch.float32), atol=2e-3)


def test_angle_fallback_and_per_frame_override(tmp_path):
    meta = {"camera_angle_x": 0.9, "camera_model": "PINHOLE"}
    make_scene(tmp_path, n=3, meta=meta, frame_extra={1: {"fl_x": 30.0, "cx": 5.0}, 2: {"camera_angle_y": 0.7}})
    s = load_transforms(tmp_path)
    f = 0.5 * W / math.tan(0.45)
    assert torch.allclose(s.cameras.fx, torch.tensor([f, 30.0, f]))
    assert torch.allclose(s.cameras.fy, torch.tensor([f, 30.0, 0.5 * H / math.tan(0.35)]))
    assert torch.allclose(s.cameras.cx, torch.tensor([W / 2, 5.0, W / 2]))
    assert s.cameras.distortion is None
    # no aabb_scale: instant-ngp default 1
    assert torch.allclose(s.scene_box[1], torch.full((3,), 0.5 / 0.33))


def test_offset_and_scale_move_the_box(tmp_path):
    make_scene(tmp_path, n=2, meta={"fl_x": 20.0, "aabb_scale": 2, "scale": 0.5, "offset": [0.25, 0.5, 1.0]})
    s = load_transforms(tmp_path)
    centre = (0.5 - np.array([0.25, 0.5, 1.0])) / 0.5
    assert np.allclose(s.scene_box.numpy(), [centre - 2.0, centre + 2.0])


def test_factor_downscales_images_and_intrinsics(tmp_path):
    path, _, rgbas = make_scene(tmp_path, n=2, meta=OPENCV_META)
    s = load_transforms(path, factor=2, background=(1.0, 1.0, 1.0))
    assert tuple(s.images.shape) == (2, H // 2, W // 2, 3)
    assert torch.allclose(s.cameras.fx, torch.tensor([10.0, 10.0])) and torch.allclose(
        s.cameras.cy, torch.tensor([3.125] * 2)
    )
    assert (s.cameras.width == W // 2).all()
    # area averaging of RGBA, then compositing: independent 2x2 block means in float64
    rgba = rgbas[0].astype(np.float64) / 255.0
    blocks = rgba.reshape(H // 2, 2, W // 2, 2, 4).mean(axis=(1, 3))
    expect = blocks[..., :3] * blocks[..., 3:] + (1 - blocks[..., 3:])
    assert np.allclose(s.images[0].numpy(), expect, atol=1e-6)
    assert np.allclose(resize_area(rgba, 2), blocks)


def test_split_files_and_default_bounds(tmp_path):
    path, poses, _ = make_scene(tmp_path, n=5, meta=OPENCV_META)
    meta = json.loads(path.read_text())
    path.unlink()
    for name, sl in (("train", slice(0, 3)), ("test", slice(3, 5))):
        (tmp_path / f"transforms_{name}.json").write_text(json.dumps({**meta, "frames": meta["frames"][sl]}))
    s = load_transforms(tmp_path)
    assert s.splits["train"].tolist() == [0, 1, 2] and s.splits["test"].tolist() == [3, 4] and "val" not in s.splits
    # near/far: extreme z-depths of the box corners over all cameras (independent float64 computation)
    box = s.scene_box.double().numpy()
    corners = np.array([[box[i, 0], box[j, 1], box[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    depths = np.stack([-((corners - p[:3, 3]) @ p[:3, :3])[:, 2] for p in poses])
    assert s.far == pytest.approx(depths.max(), rel=1e-5)
    assert s.near == pytest.approx(max(depths.min(), 0.01 * depths.max()), rel=1e-5)
    s2 = load_transforms(tmp_path, near=0.5, far=9.0)
    assert (s2.near, s2.far) == (0.5, 9.0)


def test_load_scene_detects_transforms(tmp_path):
    make_scene(tmp_path, n=2, meta=OPENCV_META)
    s = load_scene(tmp_path, spherify=False)  # options of other formats are dropped
    assert s.kind == "transforms" and s.n_images == 2
    assert load_scene(tmp_path / "transforms.json").kind == "transforms"
    with pytest.raises(TypeError, match="not_an_option"):
        load_scene(tmp_path, not_an_option=1)


def test_read_image_modes(tmp_path):
    rng = np.random.default_rng(3)
    grey16 = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.shape == (5, 7, 1) and np.allclose(out[..., 0], grey16 / 65535.0, atol=1e-7)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "pal.png")
    pal = read_image(tmp_path / "pal.png")
    assert pal.shape == (5, 7, 3) and len(np.unique(pal.reshape(-1, 3), axis=0)) <= 4
    la = np.stack([rgb[..., 0], rgb[..., 1]], -1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    img, alpha = composite(read_image(tmp_path / "la.png"), (0.0, 1.0, 0.0))
    g, a = la[..., :1] / 255.0, la[..., 1:] / 255.0
    assert np.allclose(img, g * a + np.array([0.0, 1.0, 0.0]) * (1 - a), atol=1e-6) and np.allclose(alpha, a)
