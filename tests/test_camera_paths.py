"""Tests for neural3d.core.poses, neural3d.media.paths and neural3d.media.camera_path_json: original NeRF paths
(reference arrays), orbits, quaternions, pose interpolation and nerfstudio camera_path.json I/O."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neural3d.core.poses import (
    focal_to_fov,
    fov_to_focal,
    look_at,
    matrix_to_quaternion,
    poses_avg,
    quaternion_slerp,
    quaternion_to_matrix,
)
from neural3d.data.blender import blender_orbit
from neural3d.media.camera_path_json import CameraPath, load_camera_path, save_camera_path
from neural3d.media.paths import interpolate_poses, llff_spiral_path, orbit_path, render_path_spiral

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "nerf_original_loader"
needs_ref = pytest.mark.skipif(not REF.is_dir(), reason=f"reference arrays not found at {REF}")


def axis_angle(axis, angle_rad) -> torch.Tensor:
    """Rodrigues rotation matrix [3, 3] float64 (independent of the quaternion code)."""
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / a.norm()
    k = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * k @ k


def random_rotations(n, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    return q * torch.det(q)[:, None, None]  # det +1


# ---- original NeRF paths ----------------------------------------------------------------------------


@needs_ref
@pytest.mark.parametrize("name", ["fern8_fwd.npz", "fern4_fwd.npz"])
def test_llff_spiral_matches_original_loader(name):
    ref = np.load(REF / name)
    out = llff_spiral_path(ref["poses"], ref["bds"])
    assert out.shape == (120, 3, 5) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref["render_poses"], rtol=0, atol=1e-5)
    # torch inputs give the same result
    torch.testing.assert_close(llff_spiral_path(torch.from_numpy(ref["poses"]), torch.from_numpy(ref["bds"])), out)


@needs_ref
def test_llff_spiral_without_hwf_and_zflat():
    ref = np.load(REF / "fern8_fwd.npz")
    out4 = llff_spiral_path(ref["poses"][:, :, :4], ref["bds"])
    np.testing.assert_allclose(out4.numpy(), ref["render_poses"][:, :, :4], rtol=0, atol=1e-5)
    flat = llff_spiral_path(ref["poses"], ref["bds"], path_zflat=True).double()
    assert flat.shape == (60, 3, 5)
    # flat spiral: all centres lie in the plane orthogonal to the average pose's z axis
    c2w = poses_avg(ref["poses"])
    z = torch.from_numpy(c2w[:3, 2]).double()
    heights = flat[:, :, 3] @ z
    assert float(heights.max() - heights.min()) < 1e-5
    # shifted back by 0.1 * close_depth along -z from the average centre
    close_depth = float(ref["bds"].min()) * 0.9
    assert abs(float(heights.mean()) - (float(c2w[:3, 3] @ c2w[:3, 2]) - 0.1 * close_depth)) < 1e-5


def test_render_path_spiral_geometry():
    c2w = np.concatenate([np.eye(3), np.array([[0.0], [0.0], [0.0]])], 1)  # identity at origin
    rads, focal = [0.3, 0.2, 0.1], 5.0
    path = render_path_spiral(c2w, np.array([0.0, 1.0, 0.0]), rads, focal, zdelta=0.0, zrate=0.5, rots=2, n=8)
    assert path.shape == (8, 3, 4)
    theta = np.linspace(0, 4 * np.pi, 9)[:-1]
    expected_c = np.stack([0.3 * np.cos(theta), -0.2 * np.sin(theta), -0.1 * np.sin(0.5 * theta)], -1)
    np.testing.assert_allclose(path[:, :, 3], expected_c, atol=1e-12)
    # every camera looks at the focus point (0, 0, -focal): its -z axis points there
    to_focus = np.array([0.0, 0.0, -focal]) - expected_c
    to_focus /= np.linalg.norm(to_focus, axis=-1, keepdims=True)
    np.testing.assert_allclose(-path[:, :, 2], to_focus, atol=1e-12)


@needs_ref
def test_blender_orbit_matches_original():
    ref = np.load(REF / "lego_blender_trainval.npz")["render_poses"]
    out = blender_orbit()
    assert out.shape == (40, 3, 4) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref[:, :3, :4], rtol=0, atol=1e-5)


def test_orbit_path_reproduces_blender_orbit():
    # pose_spherical(theta, -30, 4) sits at angle 90 - theta in the xy plane, 30 deg above: a clockwise orbit
    out = orbit_path([0.0, 0.0, 0.0], 4.0, 30.0, 40, start_deg=270.0, sweep_deg=-360.0)
    torch.testing.assert_close(out, blender_orbit(), rtol=0, atol=1e-6)


def test_orbit_path_general_axis():
    center, up = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.2, 1.0, 0.3])
    radius, elev = 3.0, 20.0
    c2w = orbit_path(center, radius, elev, 12, up=up).double()
    upn = (up / up.norm()).double()
    rel = c2w[:, :, 3] - center.double()
    torch.testing.assert_close(rel.norm(dim=-1), torch.full((12,), radius, dtype=torch.float64))
    torch.testing.assert_close(rel @ upn, torch.full((12,), radius * math.sin(math.radians(elev)), dtype=torch.float64))
    torch.testing.assert_close(-c2w[:, :, 2], -rel / radius)  # looks at the centre
    rot = c2w[:, :, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(12, 3, 3))
    torch.testing.assert_close(torch.det(rot), torch.ones(12, dtype=torch.float64))
    assert float((c2w[:, :, 0] @ upn).abs().max()) < 1e-6  # no roll
    assert bool(((c2w[:, :, 1] @ upn) > 0).all())  # camera up points to world up
    # counter-clockwise about up: consecutive offsets turn positively
    flat = rel - (rel @ upn)[:, None] * upn
    turn = torch.cross(flat[:-1], flat[1:], dim=-1) @ upn
    assert bool((turn > 0).all())
    with pytest.raises(ValueError, match="elevation_deg"):
        orbit_path(center, radius, 90.0, 4)


def test_look_at_basic():
    c2w = look_at(torch.tensor([0.0, 0.0, 5.0]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(c2w, torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5]]))


# ---- quaternions --------------------------------------------------------------------------------


def test_quaternion_round_trips():
    special = torch.stack(
        [torch.eye(3, dtype=torch.float64)]
        + [axis_angle(a, math.pi) for a in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3])]
        + [axis_angle([0.3, -0.2, 0.9], math.pi - 1e-7), axis_angle([1, 2, 3], 1e-8)]
    )
    mats = torch.cat([special, random_rotations(200)])
    q = matrix_to_quaternion(mats)
    assert q.shape == (mats.shape[0], 4)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(q), dtype=torch.float64))
    assert bool((q[:, 0] >= 0).all())
    torch.testing.assert_close(quaternion_to_matrix(q), mats, rtol=0, atol=1e-12)
    # quaternion -> matrix -> quaternion (up to sign)
    g = torch.Generator().manual_seed(1)
    q0 = torch.nn.functional.normalize(torch.randn(100, 4, generator=g, dtype=torch.float64), dim=-1)
    q1 = matrix_to_quaternion(quaternion_to_matrix(q0))
    torch.testing.assert_close(q1 * torch.sign((q1 * q0).sum(-1, keepdim=True)), q0, rtol=0, atol=1e-12)
    # known value: 90 deg about z -> (cos 45, 0, 0, sin 45)
    s = math.sqrt(0.5)
    torch.testing.assert_close(matrix_to_quaternion(axis_angle([0, 0, 1], math.pi / 2)),
                               torch.tensor([s, 0, 0, s], dtype=torch.float64))  # fmt: skip


def test_quaternion_to_matrix_matches_rodrigues():
    axis, angle = [0.3, -0.5, 0.8], 1.1
    a = np.array(axis) / np.linalg.norm(axis)
    q = torch.tensor([math.cos(angle / 2), *(math.sin(angle / 2) * a)], dtype=torch.float64)
    torch.testing.assert_close(quaternion_to_matrix(q), axis_angle(axis, angle))


@pytest.mark.parametrize(
    "a0,a1", [(0.2, 1.4), (-2.5, 2.9), (0.0, math.pi - 1e-3), (0.1, 0.1 + math.pi + 1e-3), (0.7, 0.7 + 1e-9)]
)
def test_slerp_same_axis_is_half_angle(a0, a1):
    axis = [0.6, 0.0, -0.8]
    q0 = matrix_to_quaternion(axis_angle(axis, a0))
    q1 = matrix_to_quaternion(axis_angle(axis, a1))
    for t in (0.0, 0.25, 0.5, 1.0):
        got = quaternion_to_matrix(quaternion_slerp(q0, q1, t))
        # shortest arc: the angle difference wrapped to (-pi, pi]
        d = (a1 - a0 + math.pi) % (2 * math.pi) - math.pi
        torch.testing.assert_close(got, axis_angle(axis, a0 + t * d), rtol=0, atol=1e-9)


def test_slerp_antipodal_and_batched():
    q = matrix_to_quaternion(random_rotations(5, seed=3))
    # q and -q are the same rotation: slerp stays there for every t
    out = quaternion_slerp(q, -q, torch.linspace(0, 1, 5, dtype=torch.float64))
    torch.testing.assert_close(quaternion_to_matrix(out), quaternion_to_matrix(q))
    assert torch.isfinite(out).all()
    # 180 deg apart (dot = 0): the midpoint is the 90 deg rotation
    q0 = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    q1 = torch.tensor([0.0, 1, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(quaternion_to_matrix(quaternion_slerp(q0, q1, 0.5)), axis_angle([1, 0, 0], math.pi / 2))


# ---- pose interpolation ---------------------------------------------------------------------------


def _keys():
    rots = [axis_angle([0, 0, 1], a) for a in (0.0, 0.6, 1.0, 1.9)]
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0.5, 0], [2.0, 0.0, 1.0], [3.0, -1.0, 0.5]], dtype=torch.float64)
    return torch.cat([torch.stack(rots), pos[:, :, None]], -1)  # [4, 3, 4]


@pytest.mark.parametrize("position", ["catmull_rom", "linear"])
def test_interpolate_passes_through_keys(position):
    keys = _keys()
    out = interpolate_poses(keys, 3 * 5 + 1, position=position)  # samples at t = j / 5
    assert out.shape == (16, 3, 4) and out.dtype == torch.float64
    torch.testing.assert_close(out[::5], keys, rtol=0, atol=1e-12)
    # rotation between keys 1 and 2 (both about z): half-way is the mean angle
    torch.testing.assert_close(out[7, :, :3], axis_angle([0, 0, 1], 0.6 + 0.4 * 0.4), rtol=0, atol=1e-12)


def test_interpolate_linear_and_catmull_rom_positions():
    keys = _keys()
    lin = interpolate_poses(keys, 7, position="linear")  # t = j / 2
    torch.testing.assert_close(lin[1, :, 3], 0.5 * (keys[0, :, 3] + keys[1, :, 3]))
    # uniform Catmull-Rom midpoint of segment 1: (-p0 + 9 p1 + 9 p2 - p3) / 16
    cr = interpolate_poses(keys, 7)
    p = keys[:, :, 3]
    torch.testing.assert_close(cr[3, :, 3], (-p[0] + 9 * p[1] + 9 * p[2] - p[3]) / 16)
    # equally spaced collinear keys -> uniform straight motion, also on the end segments
    line = torch.cat([torch.eye(3, dtype=torch.float64).expand(4, 3, 3),
                      (torch.arange(4.0, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, -1.0]))[:, :, None]],
                     -1)  # fmt: skip
    out = interpolate_poses(line, 31)
    torch.testing.assert_close(out[:, :, 3], torch.linspace(0, 3, 31, dtype=torch.float64)[:, None]
                               * torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64))  # fmt: skip


def test_interpolate_loop_and_errors():
    keys = _keys().float()
    out = interpolate_poses(keys, 8, loop=True)  # t = j / 2 over 4 segments, last sample half-way back
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[::2], keys, rtol=0, atol=1e-6)
    # closing segment key 3 -> key 0 (1.9 rad -> 0 rad about z): midpoint 0.95 rad
    torch.testing.assert_close(out[7, :, :3], axis_angle([0, 0, 1], 0.95).float(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="k >= 2"):
        interpolate_poses(keys[:1], 5)
    with pytest.raises(ValueError, match="position"):
        interpolate_poses(keys, 5, position="cubic")


# ---- nerfstudio camera_path.json ---------------------------------------------------------------------


def test_fov_focal_conversions():
    assert abs(fov_to_focal(90.0, 800) - 400.0) < 1e-9
    assert abs(focal_to_fov(400.0, 800) - 90.0) < 1e-9
    f = torch.tensor([30.0, 60.0], dtype=torch.float64)
    torch.testing.assert_close(focal_to_fov(fov_to_focal(f, 600), 600), f)
    # lego: camera_angle_x 0.6911112070083618 rad, W = 800 -> 1111.111...
    assert abs(fov_to_focal(math.degrees(0.6911112070083618), 800) - 1111.1110311937682) < 1e-6


def _nerfstudio_like(path: Path, n=3, **overrides):
    """A camera path file as nerfstudio's viewer writes it."""
    frames = []
    for i in range(n):
        m = np.eye(4)
        m[:3, :3] = axis_angle([0, 1, 0], 0.1 * i).numpy()
        m[:3, 3] = [0.1 * i, 0.2, 3.0]
        frames.append({"camera_to_world": m.reshape(-1).tolist(), "fov": 50.0 + i, "aspect": 1.5})
    data = {"default_fov": 50.0, "default_transition_sec": 2.0, "keyframes": [], "camera_type": "perspective",
            "render_height": 480, "render_width": 720, "fps": 24, "seconds": n / 24, "is_cycle": False,
            "smoothness_value": 0.5, "camera_path": frames}  # fmt: skip
    data.update(overrides)
    path.write_text(json.dumps(data))
    return data


def test_load_nerfstudio_file(tmp_path):
    data = _nerfstudio_like(tmp_path / "cp.json")
    cp = load_camera_path(tmp_path / "cp.json")
    assert (cp.width, cp.height, cp.fps, cp.n_frames) == (720, 480, 24.0, 3)
    torch.testing.assert_close(cp.c2w[2], torch.tensor(data["camera_path"][2]["camera_to_world"]).view(4, 4)[:3])
    torch.testing.assert_close(cp.fov_deg, torch.tensor([50.0, 51.0, 52.0]))
    torch.testing.assert_close(cp.aspect, torch.full((3,), 1.5))
    # nerfstudio's three_js_perspective_camera_focal_length: (H / 2) / tan(fov / 2)
    torch.testing.assert_close(cp.focal[0], torch.tensor(240.0 / math.tan(math.radians(25.0))))
    # fps from seconds when 'fps' is absent; camera_type absent means perspective
    data.pop("fps"), data.pop("camera_type")
    data["seconds"] = 0.5
    (tmp_path / "cp2.json").write_text(json.dumps(data))
    assert load_camera_path(tmp_path / "cp2.json").fps == 6.0


def test_save_load_round_trip_and_nerfstudio_reading(tmp_path):
    c2w = orbit_path([0.0, 0.0, 0.0], 4.0, 30.0, 10)
    cp = CameraPath(c2w=c2w, fov_deg=torch.linspace(40, 50, 10), width=640, height=360, fps=30.0)
    keys = CameraPath(c2w=c2w[::3], fov_deg=torch.full((4,), 45.0), width=640, height=360, fps=30.0)
    path = tmp_path / "out" / "camera_path.json"
    save_camera_path(path, cp, keyframes=keys)
    back = load_camera_path(path)
    assert torch.equal(back.c2w, cp.c2w) and torch.equal(back.fov_deg, cp.fov_deg)
    assert (back.width, back.height, back.fps) == (640, 360, 30.0)
    torch.testing.assert_close(back.aspect, torch.full((10,), 640 / 360))
    # read it the way nerfstudio's ns-render (get_path_from_json) and viewer do
    data = json.loads(path.read_text())
    assert data["camera_type"] == "perspective" and abs(len(data["camera_path"]) / data["seconds"] - 30.0) < 1e-9
    ns_c2w = torch.stack([torch.tensor(c["camera_to_world"]).view(4, 4)[:3] for c in data["camera_path"]])
    torch.testing.assert_close(ns_c2w, c2w)
    assert data["camera_path"][0]["camera_to_world"][12:] == [0.0, 0.0, 0.0, 1.0]
    assert len(data["keyframes"]) == 4 and {"matrix", "fov", "aspect"} <= set(data["keyframes"][0])
    torch.testing.assert_close(torch.tensor(data["keyframes"][1]["matrix"]).view(4, 4)[:3], c2w[3])


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d.pop("render_width"), "'render_width'"),
        (lambda d: d.pop("camera_path"), "'camera_path'"),
        (lambda d: d["camera_path"][1].update(camera_to_world=[1.0] * 12), r"'camera_path\[1\].camera_to_world'"),
        (lambda d: d["camera_path"][2]["camera_to_world"].__setitem__(3, float("nan")), r"camera_path\[2\]"),
        (lambda d: d["camera_path"][0].pop("fov"), r"'camera_path\[0\].fov'"),
        (lambda d: d["camera_path"][0].update(fov=float("nan")), r"'camera_path\[0\].fov'"),
        (lambda d: (d.pop("fps"), d.pop("seconds")), "'fps'"),
        (lambda d: d.update(camera_type="fisheye"), "camera_type"),
        (lambda d: d.update(render_height=-4), "'render_height'"),
        (lambda d: d["camera_path"][1].pop("aspect"), "aspect"),
    ],
)
def test_malformed_files_raise(tmp_path, mutate, match):
    path = tmp_path / "bad.json"
    data = _nerfstudio_like(path)
    mutate(data)
    path.write_text(json.dumps(data))  # json writes NaN tokens, which json.loads accepts
    with pytest.raises(ValueError, match=match) as err:
        load_camera_path(path)
    assert str(path) in str(err.value)


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        load_camera_path(path)
    with pytest.raises(ValueError, match="missing.json"):
        load_camera_path(tmp_path / "missing.json")
