"""Synthetic scene generator: analytic geometry, shading, determinism and the on-disk layouts.

References are independent of the code under test: closed-form depths, face-by-face box clipping,
bisection on the primitives' signed distance along densely sampled rays, and the exact lines of the
original NeRF loaders (``load_blender.py`` / ``load_llff.py``) that read the files.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neural3d.data.synthetic import (
    Box,
    Cylinder,
    Disk,
    Lighting,
    Material,
    Plane,
    Sphere,
    SynthScene,
    Torus,
    blender_poses,
    cli_synth,
    llff_poses,
    look_at,
    make_scene,
    pixel_rays,
    write_blender_scene,
    write_llff_scene,
    write_scene_family,
)
from neural3d.data.synthetic.generate import _random_rotation
from neural3d.data.synthetic.shading import SolidTexture
from neural3d.data.synthetic.shapes import primitive_from_dict

F64 = torch.float64


def _rot(seed: int) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in _random_rotation(np.random.default_rng(seed)))


def _one_prim_scene(prim, specular=0.0, shadows=False, light=(0.3, 0.5, 0.81)) -> SynthScene:
    mat = Material(texture=SolidTexture(color=(0.6, 0.4, 0.3)), specular=specular, shininess=12.0)
    lighting = Lighting(directions=(light,), colors=((0.7, 0.7, 0.7),), ambient=(0.2, 0.2, 0.2))
    return SynthScene(primitives=(prim,), materials=(mat,), lighting=lighting, shadows=shadows)


def _random_rays(n: int, seed: int, target_radius: float = 1.2, dist: float = 4.0):
    """Rays from a sphere of radius ``dist`` towards random points near the origin (unnormalised dirs)."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g, dtype=F64)
    o = dist * o / o.norm(dim=-1, keepdim=True)
    target = (torch.rand(n, 3, generator=g, dtype=F64) * 2 - 1) * target_radius
    scale = 0.5 + torch.rand(n, 1, generator=g, dtype=F64)  # arbitrary direction lengths
    return o, (target - o) * scale


def _bisect_reference(prim, o, d, t_max=8.0, steps=8000):
    """First sign change of the primitive's SDF along each ray, refined by bisection (float64).

    Returns (t_ref [n] inf if no crossing, ambiguous [n] bool: the ray passes within ~2 steps of the
    surface without a detected crossing, where a grid cannot decide).
    """
    ts = torch.linspace(0, t_max, steps + 1, dtype=F64)
    dn = d / d.norm(dim=-1, keepdim=True)
    sdf = prim.sdf(o[:, None] + ts[None, :, None] * dn[:, None])  # [n, steps+1]
    inside = sdf < 0
    has = inside.any(-1)
    first = torch.where(has, inside.double().argmax(-1), torch.ones_like(has, dtype=torch.long))
    lo, hi = ts[(first - 1).clamp(min=0)], ts[first]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        neg = prim.sdf(o + mid[:, None] * dn) < 0
        hi, lo = torch.where(neg, mid, hi), torch.where(neg, lo, mid)
    step = t_max / steps
    t_ref = torch.where(has, hi / d.norm(dim=-1), math.inf)
    ambiguous = ~has & (sdf.min(-1).values < 2 * step)
    return t_ref, ambiguous


# --- geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("eye", [(0.0, 0.0, 4.0), (2.1, -1.7, 2.9)])
def test_sphere_depth_at_image_centre(eye):
    radius = 0.7
    scene = _one_prim_scene(Sphere(radius=radius, center=(0.0, 0.0, 0.0)))
    c2w = torch.from_numpy(
        look_at(np.array([eye]), np.zeros(3), np.array([0.0, 0.0, 1.0]) if eye[0] else np.array([0.0, 1.0, 0.0]))
    )
    size, f = 33, 40.0  # odd size: pixel 16 has its centre at 16.5 = cx
    out = scene.render(c2w, f, f, size / 2, size / 2, size, size, supersample=2)
    dist = math.sqrt(sum(e * e for e in eye))
    assert out.depth[0, 16, 16].item() == pytest.approx(dist - radius, abs=1e-6)
    assert out.alpha[0, 16, 16, 0].item() == 1.0
    # corners see nothing: depth 0, alpha 0, colour 0
    assert out.depth[0, 0, 0].item() == 0.0 and out.alpha[0, 0, 0, 0].item() == 0.0
    assert out.rgb[0, 0, 0].abs().max().item() == 0.0


def test_sphere_coverage_is_the_pixel_integral():
    # Silhouette of a sphere on the optical axis: circle of radius f * r / sqrt(D^2 - r^2) pixels.
    radius, dist, f, size = 0.8, 4.0, 30.0, 24
    scene = _one_prim_scene(Sphere(radius=radius))
    c2w = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, dist]]], dtype=F64)
    out = scene.render(c2w, f, f, size / 2, size / 2, size, size, supersample=8)
    rho = f * radius / math.sqrt(dist**2 - radius**2)
    assert out.alpha.sum().item() == pytest.approx(math.pi * rho**2, rel=5e-3)
    partial = ((out.alpha > 0) & (out.alpha < 1)).sum().item()
    assert partial >= 2 * math.pi * rho * 0.6  # an antialiased rim all around the silhouette


def _box_reference(h, o, d):
    """Independent box clip: intersect the 6 face rectangles one by one, keep the nearest."""
    best = torch.full((o.shape[0],), math.inf, dtype=F64)
    for axis in range(3):
        for sign in (-1.0, 1.0):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (sign * h[axis] - o[:, axis]) / d[:, axis]
            p = o + t[:, None] * d
            others = [a for a in range(3) if a != axis]
            on_face = torch.ones_like(t, dtype=torch.bool)
            for a in others:
                on_face &= p[:, a].abs() <= h[a] * (1 + 1e-12)
            ok = (d[:, axis] != 0) & (t > 0) & on_face
            best = torch.where(ok & (t < best), t, best)
    return best


def test_box_intersection_matches_face_clipping():
    h = torch.tensor([0.5, 0.3, 0.8], dtype=F64)
    box = Box(half_size=(0.5, 0.3, 0.8))
    o, d = _random_rays(3000, seed=0)
    # axis-aligned rays (two zero direction components), both hitting and missing
    g = torch.Generator().manual_seed(1)
    for axis in range(3):
        oa = (torch.rand(200, 3, generator=g, dtype=F64) * 2 - 1) * 1.0
        oa[:, axis] = 3.0
        da = torch.zeros(200, 3, dtype=F64)
        da[:, axis] = -1.7
        o, d = torch.cat([o, oa]), torch.cat([d, da])
    hit = box.intersect(o, d)
    ref = _box_reference(h, o, d)
    assert torch.equal(torch.isfinite(hit.t), torch.isfinite(ref))
    assert torch.isfinite(ref).sum() > 1000 and (~torch.isfinite(ref)).sum() > 300
    fin = torch.isfinite(ref)
    torch.testing.assert_close(hit.t[fin], ref[fin], rtol=0, atol=1e-12)
    # normals are unit face normals pointing against the ray
    n = hit.normal[fin]
    assert torch.allclose(n.abs().max(-1).values, torch.ones(1, dtype=F64))
    assert ((n * d[fin]).sum(-1) < 0).all()


def test_box_grazing_rays():
    box = Box(half_size=(0.5, 0.3, 0.8), center=(0.2, -0.1, 0.3))
    c = torch.tensor(box.center, dtype=F64)
    eps = 1e-7
    # Rays parallel to the top face (+z), just inside and just outside its plane.
    o = c + torch.tensor(
        [[-3.0, 0.0, 0.8 - eps], [-3.0, 0.0, 0.8 + eps], [-3.0, 0.3 - eps, 0.0], [-3.0, 0.3 + eps, 0.0]], dtype=F64
    )
    d = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64).expand(4, 3)
    t = box.intersect(o, d).t
    assert t[0].item() == pytest.approx(2.5, abs=1e-12) and t[2].item() == pytest.approx(2.5, abs=1e-12)
    assert math.isinf(t[1].item()) and math.isinf(t[3].item())
    # Rays aimed exactly at a corner and along an edge's diagonal plane, from outside.
    corner = c + torch.tensor([0.5, 0.3, 0.8], dtype=F64)
    o2 = corner + torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]], dtype=F64)
    t2 = box.intersect(o2, corner - o2).t
    torch.testing.assert_close(t2, torch.ones(2, dtype=F64), rtol=0, atol=1e-12)
    # Near-grazing random rays agree with face clipping.
    g = torch.Generator().manual_seed(3)
    o3 = c + torch.tensor([-3.0, 0.0, 0.8], dtype=F64) + 1e-9 * torch.randn(500, 3, generator=g, dtype=F64)
    d3 = torch.tensor([1.0, 0.0, 0.0], dtype=F64) + 1e-9 * torch.randn(500, 3, generator=g, dtype=F64)
    ref = _box_reference(torch.tensor(box.half_size, dtype=F64), o3 - c, d3)
    hit = box.intersect(o3, d3).t
    assert torch.equal(torch.isfinite(hit), torch.isfinite(ref))
    fin = torch.isfinite(ref)
    torch.testing.assert_close(hit[fin], ref[fin], rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "prim",
    [
        Sphere(radius=0.6, center=(0.1, -0.2, 0.3)),
        Box(half_size=(0.4, 0.6, 0.25), center=(-0.1, 0.2, 0.0), rotation=_rot(1)),
        Cylinder(radius=0.35, half_height=0.6, center=(0.2, 0.0, -0.1), rotation=_rot(2)),
        Torus(major=0.6, minor=0.2, center=(0.0, 0.1, 0.2), rotation=_rot(3)),
    ],
    ids=lambda p: p.kind,
)
def test_solid_intersection_matches_sdf_bisection(prim):
    o, d = _random_rays(400, seed=7, target_radius=0.9)
    hit = prim.intersect(o, d)
    t_ref, ambiguous = _bisect_reference(prim, o, d)
    decided = ~ambiguous
    assert ambiguous.float().mean() < 0.03
    assert torch.equal(torch.isfinite(hit.t[decided]), torch.isfinite(t_ref[decided]))
    fin = decided & torch.isfinite(t_ref)
    assert fin.sum() > 80
    torch.testing.assert_close(hit.t[fin], t_ref[fin], rtol=0, atol=1e-9)
    # normals: unit, equal to the SDF gradient at the hit (finite differences)
    p = o[fin] + hit.t[fin, None] * d[fin]
    e = 1e-6
    grad = torch.stack([(prim.sdf(p + e * v) - prim.sdf(p - e * v)) / (2 * e) for v in torch.eye(3, dtype=F64)], -1)
    grad = grad / grad.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(hit.normal[fin], grad, rtol=0, atol=1e-4)


def test_thin_surfaces_and_culling_consistency():
    disk = Disk(radius=0.9, center=(0.0, 0.0, -0.4), rotation=_rot(4))
    plane = Plane(center=(0.0, 0.0, -1.5))
    o, d = _random_rays(1000, seed=9, target_radius=1.5)
    for prim in (disk, plane):
        hit = prim.intersect(o, d)
        fin = torch.isfinite(hit.t)
        p = o[fin] + hit.t[fin, None] * d[fin]
        assert prim.sdf(p).abs().max() < 1e-12
        assert ((hit.normal[fin] * d[fin]).sum(-1) < 0).all()  # two-sided: faces the viewer
    # disk: hit iff the plane point lies within the radius (independent check in the local frame)
    loc_o, loc_d = disk.to_local(o), disk.to_local(o + d) - disk.to_local(o)
    t = -loc_o[:, 2] / loc_d[:, 2]
    q = loc_o + t[:, None] * loc_d
    expect = (t > 0) & (q[:, :2].norm(dim=-1) <= 0.9)
    assert torch.equal(torch.isfinite(disk.intersect(o, d).t), expect)


# --- rendering ------------------------------------------------------------------------------------


def _centre_rays(c2w, f, cx, cy, w, h):
    xs = torch.arange(w, dtype=F64) + 0.5
    ys = torch.arange(h, dtype=F64) + 0.5
    return pixel_rays(c2w, f, f, cx, cy, xs, ys)


@pytest.mark.parametrize("kind,seed", [("object", 0), ("object", 1), ("forward", 0), ("forward", 3)])
def test_depth_reprojects_onto_surfaces(kind, seed):
    scene = make_scene(seed, kind)
    if kind == "object":
        c2w = torch.from_numpy(blender_poses(seed, "val", 3))
        w = h = 40
    else:
        c2w = torch.from_numpy(llff_poses(seed, 3))
        w, h = 40, 30
    f = 45.0
    out = scene.render(c2w, f, f, w / 2, h / 2, w, h, supersample=1)
    o, d = _centre_rays(c2w, f, w / 2, h / 2, w, h)
    depth = out.depth.double()
    valid = depth > 0
    points = o + depth[..., None] * d
    assert valid.sum() > 200
    assert scene.sdf(points[valid]).abs().max().item() < 1e-4
    # z-depth: distance along the camera's -z axis
    z = -((points - c2w[:, None, None, :, 3]) * c2w[:, None, None, :, 2]).sum(-1)
    torch.testing.assert_close(z[valid], depth[valid], rtol=0, atol=1e-5)
    # empty pixels: the centre ray hits nothing; with supersample=1, alpha is exactly the hit mask
    miss = scene.trace(o[~valid], d[~valid]).t
    assert torch.isinf(miss).all()
    assert torch.equal(out.alpha[..., 0] > 0, valid) and set(torch.unique(out.alpha).tolist()) <= {0.0, 1.0}
    if kind == "forward":
        assert valid.all() and (out.alpha == 1).all()
    else:
        assert (~valid).sum() > 100 and (out.rgb[~valid] == 0).all()


def test_view_dependence_only_from_specular():
    point_normal = torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    point = 0.5 * point_normal  # top of the sphere
    eyes = torch.tensor([[2.0, 0.3, 3.0], [-2.5, 1.0, 2.0]], dtype=F64)
    colors = {}
    for ks in (0.0, 0.5):
        scene = _one_prim_scene(Sphere(radius=0.5), specular=ks, light=(0.6, 0.0, 0.8))
        rgb, hit, t = scene.shade(eyes, point - eyes)
        assert hit.all() and torch.allclose(t, torch.ones(2, dtype=F64))
        colors[ks] = rgb
    torch.testing.assert_close(colors[0.0][0], colors[0.0][1], rtol=0, atol=1e-12)  # Lambert: same colour
    assert (colors[0.5][0] - colors[0.5][1]).abs().max() > 0.02  # Blinn-Phong: differs between views
    assert (colors[0.5] >= colors[0.0] - 1e-12).all()


def test_shadows_darken_occluded_points():
    ground = Disk(radius=2.0, center=(0.0, 0.0, 0.0))
    blocker = Sphere(radius=0.3, center=(0.0, 0.0, 1.0))
    mat = Material(texture=SolidTexture(color=(0.5, 0.5, 0.5)))
    light = Lighting(directions=((0.0, 0.0, 1.0),), colors=((0.8, 0.8, 0.8),), ambient=(0.2, 0.2, 0.2))
    o = torch.tensor([[0.0, -2.0, 3.0], [1.0, -2.0, 3.0]], dtype=F64)
    d = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=F64) - o  # centre (shadowed), lit point
    for shadows, expect in ((True, 0.5 * 0.2), (False, 0.5 * 0.2 + 0.5 * 0.8)):
        scene = SynthScene(primitives=(ground, blocker), materials=(mat, mat), lighting=light, shadows=shadows)
        rgb, hit, _ = scene.shade(o, d)
        assert rgb[0, 0].item() == pytest.approx(expect, abs=1e-9)  # sky term: n = up -> factor 1
        assert rgb[1, 0].item() == pytest.approx(0.5 * 0.2 + 0.5 * 0.8, abs=1e-9)


def test_chunking_does_not_change_the_render():
    scene = make_scene(2, "object")
    c2w = torch.from_numpy(blender_poses(2, "test", 2))
    args = (c2w, 30.0, 31.0, 12.3, 11.7, 24, 22)
    a = scene.render(*args, supersample=2)
    b = scene.render(*args, supersample=2, chunk=700)  # splits single images into row blocks
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


def test_supersampling_is_the_area_average_of_a_finer_render():
    # An s x s supersampled pixel composited on a background equals the mean of the s x s pixels of a
    # render at s-times the resolution (one ray each): checks the sample layout and straight alpha.
    scene = make_scene(1, "object")
    c2w = torch.from_numpy(blender_poses(1, "val", 2))
    w, h, f, s = 20, 16, 22.0, 2
    coarse = scene.render(c2w, f, f, 9.7, 8.2, w, h, supersample=s)
    fine = scene.render(c2w, s * f, s * f, s * 9.7, s * 8.2, s * w, s * h, supersample=1)
    assert set(torch.unique(fine.alpha).tolist()) == {0.0, 1.0}
    for bg in (0.0, 1.0):
        comp_coarse = coarse.rgb * coarse.alpha + bg * (1 - coarse.alpha)
        comp_fine = fine.rgb * fine.alpha + bg * (1 - fine.alpha)
        area = comp_fine.reshape(2, h, s, w, s, 3).mean((2, 4))
        torch.testing.assert_close(comp_coarse, area, rtol=0, atol=1e-6)
    partial = (coarse.alpha > 0) & (coarse.alpha < 1)
    assert partial.sum() > 10


def test_convex_solid_does_not_shadow_itself():
    for prim in (
        Sphere(radius=0.5),
        Box(half_size=(0.3, 0.4, 0.5), rotation=_rot(5)),
        Torus(major=0.5, minor=0.2, rotation=_rot(6)),
    ):
        c2w = torch.from_numpy(look_at(np.array([[1.0, 2.0, 3.0]]), np.zeros(3), np.array([0.0, 0.0, 1.0])))
        lit = _one_prim_scene(prim, specular=0.3, shadows=True).render(c2w, 30.0, 30.0, 12, 12, 24, 24)
        unlit = _one_prim_scene(prim, specular=0.3, shadows=False).render(c2w, 30.0, 30.0, 12, 12, 24, 24)
        if prim.kind == "torus":  # the ring shadows its own far side: some pixels differ, none get brighter
            assert (lit.rgb <= unlit.rgb + 1e-6).all() and (lit.rgb < unlit.rgb - 1e-3).any()
        else:
            torch.testing.assert_close(lit.rgb, unlit.rgb, rtol=0, atol=1e-6)


def test_bad_inputs_raise():
    scene = make_scene(0)
    with pytest.raises(ValueError, match="c2w"):
        scene.render(torch.zeros(2, 3, 3), 10.0, 10.0, 4, 4, 8, 8)
    with pytest.raises(ValueError, match="kind"):
        make_scene(0, "indoor")
    with pytest.raises(ValueError, match="type"):
        primitive_from_dict({"type": "cone"})
    with pytest.raises(ValueError, match="material"):
        SynthScene(primitives=(Sphere(radius=1.0),), materials=(), lighting=scene.lighting)
    with pytest.raises(ValueError, match="rotation"):
        Sphere(radius=1.0, rotation=((2.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)))
    with pytest.raises(ValueError, match="even"):
        write_llff_scene("/nonexistent-never-written", res=33)
    with pytest.raises(ValueError, match="layout"):
        write_scene_family("/nonexistent-never-written", n_scenes=1, layout="colmap")


# --- scenes from seeds ----------------------------------------------------------------------------


def test_scenes_are_deterministic_and_differ_between_seeds():
    dicts = [json.dumps(make_scene(s, k).to_dict()) for k in ("object", "forward") for s in range(8)]
    assert dicts == [json.dumps(make_scene(s, k).to_dict()) for k in ("object", "forward") for s in range(8)]
    assert len(set(dicts)) == len(dicts)
    kinds = {p["type"] for d in dicts for p in json.loads(d)["primitives"]}
    assert kinds >= {"sphere", "box", "cylinder", "torus", "disk", "plane"}
    for k in ("object", "forward"):  # the description rebuilds the identical scene, through JSON
        scene = make_scene(5, k)
        assert SynthScene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_object_scenes_fit_the_blender_bounds():
    # farthest point from the origin = max over directions u of <u, center> + support(u)
    dirs = np.random.default_rng(0).normal(size=(150, 3))
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    for seed in range(20):
        scene = make_scene(seed, "object")
        assert 2 <= len(scene.primitives) <= 6
        for p in scene.primitives:
            reach = max(float(u @ np.array(p.center)) + p.extent_along(u) for u in dirs)
            assert reach <= 1.3 and np.linalg.norm(p.center) - p.bound_radius() < reach
        if scene.primitives[0].kind == "disk":  # objects rest on the ground disk (1e-3 clearance)
            ground_z = scene.primitives[0].center[2]
            for p in scene.primitives[1:]:
                assert p.center[2] - p.extent_along((0.0, 0.0, 1.0)) == pytest.approx(ground_z + 1e-3, abs=2e-6)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_written_files_are_byte_identical_for_a_seed(tmp_path):
    kw = {"res": 16, "n_train": 3, "n_val": 1, "n_test": 1, "supersample": 2}
    a = _digest(write_blender_scene(tmp_path / "a", seed=4, **kw))
    b = _digest(write_blender_scene(tmp_path / "b", seed=4, **kw))
    c = _digest(write_blender_scene(tmp_path / "c", seed=5, **kw))
    assert a == b and len(a) == 3 + 5 + 5 + 1
    assert a["scene.json"] != c["scene.json"] and a["train/r_0.png"] != c["train/r_0.png"]
    la = _digest(write_llff_scene(tmp_path / "la", seed=4, res=16, n_images=3))
    lb = _digest(write_llff_scene(tmp_path / "lb", seed=4, res=16, n_images=3))
    assert la == lb


# --- layouts (read with the original loaders' own lines) -----------------------------------------


def test_blender_layout_round_trip(tmp_path):
    seed, res = 3, 20
    out = write_blender_scene(tmp_path / "bl", seed=seed, res=res, n_train=4, n_val=2, n_test=2)
    meta_scene = json.loads((out / "scene.json").read_text())
    scene = SynthScene.from_dict(meta_scene)
    assert scene == make_scene(seed, "object") and meta_scene["seed"] == seed
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        meta = json.loads((out / f"transforms_{split}.json").read_text())
        # load_blender.py
        imgs = np.array([np.array(Image.open(out / (fr["file_path"] + ".png"))) for fr in meta["frames"]])
        poses = np.array([fr["transform_matrix"] for fr in meta["frames"]])
        imgs = (imgs / 255.0).astype(np.float32)
        H, W = imgs[0].shape[:2]
        focal = 0.5 * W / np.tan(0.5 * float(meta["camera_angle_x"]))
        assert imgs.shape == (n, res, res, 4) and meta["frames"][0]["file_path"] == f"./{split}/r_0"
        assert focal == pytest.approx(meta_scene["focal"], rel=1e-12)
        np.testing.assert_array_equal(poses[:, :3], blender_poses(seed, split, n))
        np.testing.assert_array_equal(poses[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (n, 1)))
        cams = np.linalg.norm(poses[:, :3, 3], axis=-1)
        assert np.allclose(cams, 4.0) and (poses[:, 2, 3] > 0).all()
        # re-render from what was read: same pixels (8-bit), exact depth maps
        views = scene.render(torch.from_numpy(poses[:, :3]), focal, focal, W / 2, H / 2, W, H, supersample=2)
        rgba = torch.cat([views.rgb, views.alpha], -1).numpy()
        assert np.abs(imgs - rgba).max() <= 0.5 / 255 + 1e-6
        depth = np.stack([np.load(out / "depth" / split / f"r_{i}.npy") for i in range(n)])
        assert depth.dtype == np.float32
        np.testing.assert_array_equal(depth, views.depth.numpy())
        valid = depth > 0
        assert (depth[valid] > 2.0).all() and (depth[valid] < 6.0).all()
        assert (imgs[..., 3][~valid].max() < 1.0) and (imgs[..., 3][valid].min() > 0.0)


def _load_llff_poses(folder: Path):
    """The first lines of load_llff.py's _load_data / load_llff_data (poses -> OpenGL c2w)."""
    poses_arr = np.load(folder / "poses_bounds.npy")
    poses = poses_arr[:, :-2].reshape([-1, 3, 5]).transpose([1, 2, 0])
    bds = poses_arr[:, -2:].transpose([1, 0])
    poses = np.concatenate([poses[:, 1:2, :], -poses[:, 0:1, :], poses[:, 2:, :]], 1)
    return np.moveaxis(poses, -1, 0), np.moveaxis(bds, -1, 0)  # [n, 3, 5], [n, 2]


def test_llff_layout_round_trip(tmp_path):
    seed, res, n = 6, 24, 5
    out = write_llff_scene(tmp_path / "ll", seed=seed, res=res, n_images=n)
    poses, bds = _load_llff_poses(out)
    c2w = llff_poses(seed, n)
    np.testing.assert_allclose(poses[:, :, :4], c2w, rtol=0, atol=1e-15)
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == [f"image{i:03d}.png" for i in range(n)]
    imgs = np.stack([np.array(Image.open(out / "images" / f)) for f in files]) / 255.0
    half = np.stack([np.array(Image.open(out / "images_2" / f)) for f in files]) / 255.0
    H, W = 18, 24
    assert imgs.shape == (n, H, W, 3) and half.shape == (n, H // 2, W // 2, 3)
    np.testing.assert_allclose(poses[:, :, 4], np.tile([H, W, poses[0, 2, 4]], (n, 1)))
    focal = poses[0, 2, 4]
    assert focal == pytest.approx(0.5 * W / math.tan(math.radians(30.0)))
    scene = SynthScene.from_dict(json.loads((out / "scene.json").read_text()))
    views = scene.render(torch.from_numpy(poses[:, :, :4].copy()), focal, focal, W / 2, H / 2, W, H, supersample=2)
    assert np.abs(imgs - views.rgb.numpy()).max() <= 0.5 / 255 + 1e-6
    # images_2 is the 2x2 area average (of the unquantised image)
    area = imgs.reshape(n, H // 2, 2, W // 2, 2, 3).mean((2, 4))
    assert np.abs(half - area).max() <= 1.0 / 255 + 1e-6
    # bounds bracket the exact depth; half-resolution depth is exact too
    depth = np.stack([np.load(out / "depth" / f.replace(".png", ".npy")) for f in files])
    assert (depth > 0).all()
    np.testing.assert_allclose(bds[:, 0], 0.9 * depth.reshape(n, -1).min(-1), rtol=1e-6)
    np.testing.assert_allclose(bds[:, 1], 1.1 * depth.reshape(n, -1).max(-1), rtol=1e-6)
    depth2 = np.stack([np.load(out / "depth_2" / f.replace(".png", ".npy")) for f in files])
    o, d = _centre_rays(torch.from_numpy(c2w), focal / 2, W / 4, H / 4, W // 2, H // 2)
    pts = o + torch.from_numpy(depth2).double()[..., None] * d
    assert scene.sdf(pts).abs().max().item() < 1e-4


def test_scene_family_and_cli(tmp_path):
    paths = write_scene_family(
        tmp_path / "fam", n_scenes=3, seed=1, res=12, n_train=2, n_val=1, n_test=1, supersample=1
    )
    assert [p.name for p in paths] == ["scene_000", "scene_001", "scene_002"]
    metas = [json.loads((p / "scene.json").read_text()) for p in paths]
    assert len({m["seed"] for m in metas}) == 3
    assert len({json.dumps(m["primitives"]) for m in metas}) == 3
    index = json.loads((tmp_path / "fam" / "family.json").read_text())
    assert [s["seed"] for s in index["scenes"]] == [m["seed"] for m in metas]
    out = cli_synth(tmp_path / "cli", "llff", 16, 2, n_views=4)
    assert np.load(out / "poses_bounds.npy").shape == (4, 17)
    assert len(list((out / "images_2").iterdir())) == 4


def test_writing_a_family_reports_progress_lines(tmp_path, capsys, monkeypatch):
    from _progress_lines import assert_progress_lines

    from neural3d.data.synthetic import write_scene_family

    monkeypatch.delenv("NEURAL3D_PROGRESS", raising=False)
    write_scene_family(tmp_path / "fam", n_scenes=2, seed=0, res=8, n_train=2, n_val=1, n_test=1, supersample=1)
    assert_progress_lines(capsys.readouterr().err, "generate fam", 2)
