"""GNT model: projection, view selection, attention masking, block shapes, official checkpoint layout,
and equivalence with an independent float64 reference of the official pipeline (tests/gnt_reference.py)."""

from __future__ import annotations

import math
import re

import pytest
import torch
from gnt_reference import (
    official_layout,
    random_official_checkpoint,
    ref_gnt,
    ref_project,
    ref_rays,
    ref_resunet,
    ref_z_vals,
)

from neural3d.core.cameras import Cameras
from neural3d.core.rays import generate_rays
from neural3d.methods.gnt import (
    GNTNetwork,
    ResUNet,
    SourceViews,
    cameras_from_records,
    cameras_to_records,
    load_official_gnt_checkpoint,
    nearest_views,
    official_to_state_dict,
    project_samples,
    random_subset,
    state_dict_to_official,
)
from neural3d.methods.gnt.projection import project_to_pixels
from neural3d.methods.gnt.transformer import RayTransformer, ViewAttention, ViewTransformer

SHARED_REF = (
    __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "reference" / "gnt_official_state_dict.txt"
)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenGL c2w [3, 4] at ``eye`` looking at ``target``."""
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    back = (eye - target) / (eye - target).norm()
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    cam_up = torch.linalg.cross(back, right)
    return torch.stack([right, cam_up, back, eye], -1).float()


def rig(eyes, size=(20, 16), f=18.0) -> Cameras:
    W, H = size
    return Cameras(torch.stack([look_at(e) for e in eyes]), f, f * 1.1, W / 2 + 0.3, H / 2 - 0.2, W, H)


# ------------------------------------------------------------------------------ projection
def test_point_projects_to_its_pixel_and_reads_its_colour():
    cams = rig([(3.0, 0.5, 1.0), (2.5, -1.5, 0.8), (-0.5, 3.0, 1.2)])
    H, W = 16, 20
    images = torch.rand(3, H, W, 3)
    for pc in (0.5, 0.0):
        px = torch.tensor([[3, 4], [12, 9], [18, 14], [1, 1]])  # interior: edges are at the mask boundary
        idx = torch.zeros(len(px), dtype=torch.long)
        rays = generate_rays(cams, idx, px.float() + pc, 0.1, 10.0)
        pts = rays.origins + 2.7 * rays.directions  # z-depth 2.7 in camera 0
        xy, front = project_to_pixels(pts, cams[[0]], pc)
        assert torch.allclose(xy[0], px.float(), atol=2e-4) and bool(front.all())
        views = SourceViews(images, cams, pc)
        proj = project_samples(pts[:, None], rays.origins, views, torch.zeros(3, 4, H // 4, W // 4))
        assert torch.allclose(proj.rgb_feat[:, 0, 0, :3], images[0, px[:, 1], px[:, 0]], atol=1e-3)
        assert bool((proj.mask[:, 0, 0, 0] == 1).all())
        # same camera as target: unit difference 0, dot product 1
        assert torch.allclose(proj.ray_diff[:, 0, 0], torch.tensor([0.0, 0, 0, 1]).expand(4, 4), atol=1e-5)


def test_points_behind_or_outside_are_masked():
    cams = rig([(3.0, 0.0, 0.0)])
    H, W = 16, 20
    rays = generate_rays(cams, torch.zeros(2, dtype=torch.long), torch.tensor([[10.5, 8.5], [2.5, 3.5]]), 0.1, 10.0)
    behind = rays.origins - 1.5 * rays.directions
    outside = rays.origins[:1] + 2.0 * (rays.directions[:1] + torch.tensor([[0.0, 5.0, 0.0]]))
    pts = torch.cat([behind, outside])
    proj = project_samples(
        pts[:, None], rays.origins[[0, 1, 0]], SourceViews(torch.rand(1, H, W, 3), cams), torch.rand(1, 4, 4, 5)
    )
    assert proj.mask.flatten().tolist() == [0.0, 0.0, 0.0]
    _, front = project_to_pixels(behind, cams)
    assert not bool(front.any())


def test_ray_diff_is_unit_direction_and_cosine():
    cams = rig([(3.0, 0.0, 0.0), (0.0, 3.0, 0.0)])
    pts = torch.tensor([[[0.1, 0.2, 0.3]]])
    target = torch.tensor([[3.0, 0.0, 0.0]])
    proj = project_samples(pts, target, SourceViews(torch.rand(2, 16, 20, 3), cams), torch.rand(2, 4, 4, 5))
    rd = proj.ray_diff[0, 0].double()
    a = (target[0] - pts[0, 0]).double()
    b = (torch.tensor([0.0, 3.0, 0.0]) - pts[0, 0]).double()
    a, b = a / a.norm(), b / b.norm()
    assert torch.allclose(rd[1, 3], a @ b, atol=1e-5)
    assert torch.allclose(rd[1, :3], (a - b) / (a - b).norm(), atol=1e-5)


def test_camera_records_round_trip_and_axes():
    cams = rig([(3.0, 0.5, 1.0), (1.0, -2.0, 0.5)])
    rec = cameras_to_records(cams)
    assert rec.shape == (2, 34) and rec[0, 0] == 16 and rec[0, 1] == 20
    c2w_cv = rec[:, 18:34].reshape(2, 4, 4)
    # OpenCV looks down +z: its z axis is minus the OpenGL one
    assert torch.allclose(c2w_cv[:, :3, 2], -cams.camera_to_worlds[:, :, 2], atol=1e-6)
    back = cameras_from_records(rec)
    assert torch.allclose(back.camera_to_worlds, cams.camera_to_worlds, atol=1e-6)
    assert torch.allclose(back.cx, cams.cx) and int(back.height[0]) == 16


# ------------------------------------------------------------------------------ selection
def test_nearest_views_on_a_line_excluding_the_target():
    xs = torch.tensor([0.0, 5.0, 1.0, 3.0, -2.0, 0.5])
    c2w = torch.zeros(6, 3, 4)
    c2w[:, :, :3] = torch.eye(3)
    c2w[:, 0, 3] = xs
    got = nearest_views(c2w[[0]], c2w, 3, method="dist")
    assert got.tolist() == [[0, 5, 2]]
    got = nearest_views(c2w[[0, 3]], c2w, 3, method="dist", exclude=torch.tensor([0, 3]))
    assert got.tolist() == [[5, 2, 4], [1, 2, 5]]
    assert nearest_views(c2w[[0]], c2w, 10, exclude=torch.tensor([0])).shape == (1, 5)


def test_vector_selection_uses_angles_not_distances():
    # target at angle 0, radius 4; a close camera at a large angle vs far cameras at small angles
    eyes = [(4.0, 0.0, 0.0), (3.0, 1.5, 0.0), (9.0, 0.9, 0.0), (8.0, -1.2, 0.0)]
    c2w = torch.stack([look_at(e) for e in eyes])
    assert nearest_views(c2w[[0]], c2w[1:], 2, method="vector").tolist() == [[1, 2]]
    assert nearest_views(c2w[[0]], c2w[1:], 1, method="dist").tolist() == [[0]]


def test_random_subset_draws_distinct_members_of_the_pool():
    g = torch.Generator().manual_seed(0)
    pool = torch.tensor([7, 3, 9, 4, 1, 8])
    seen = set()
    for _ in range(20):
        s = random_subset(pool, 3, g)
        assert len(set(s.tolist())) == 3 and set(s.tolist()) <= set(pool.tolist())
        seen.add(tuple(sorted(s.tolist())))
    assert len(seen) > 3


# ------------------------------------------------------------------------------ blocks
def test_view_attention_ignores_masked_views():
    torch.manual_seed(0)
    att = ViewAttention(dim=16, dropout=0.0).eval()
    q, k, pos = torch.randn(3, 5, 16), torch.randn(3, 5, 4, 16), torch.randn(3, 5, 4, 4)
    mask = torch.ones(3, 5, 4, 1)
    mask[:, :, 2:] = 0
    out = att(q, k, pos, mask)
    k2, pos2 = k.clone(), pos.clone()
    k2[:, :, 2:] = 100 * torch.randn(3, 5, 2, 16)
    pos2[:, :, 2:] = torch.randn(3, 5, 2, 4)
    assert torch.allclose(att(q, k2, pos2, mask), out, atol=1e-5)
    assert torch.allclose(att(q, k[:, :, :2], pos[:, :, :2], mask[:, :, :2]), out, atol=1e-5)
    assert not torch.allclose(att(q, k2, pos2, None), out, atol=1e-3)


def test_block_shapes():
    vt = ViewTransformer(dim=32, ff_hidden=128)
    rt = RayTransformer(dim=32, ff_hidden=128, n_heads=4)
    assert vt(
        torch.randn(2, 7, 32), torch.randn(2, 7, 3, 32), torch.randn(2, 7, 3, 4), torch.ones(2, 7, 3, 1)
    ).shape == (2, 7, 32)
    x, w = rt(torch.randn(2, 7, 32))
    assert x.shape == (2, 7, 32) and w.shape == (2, 7) and torch.allclose(w.sum(-1), torch.ones(2))
    net = GNTNetwork(width=32, depth=3, feature_dim=8)
    rgb, w = net(
        torch.rand(2, 7, 3, 11),
        torch.randn(2, 7, 3, 4),
        torch.ones(2, 7, 3, 1),
        torch.randn(2, 7, 3),
        torch.randn(2, 3),
    )
    assert rgb.shape == (2, 3) and w.shape == (2, 7)
    unet = ResUNet(out_channels=8, blocks=(1, 1, 1))
    for (h, w_), (fh, fw) in (((40, 56), (12, 16)), ((24, 24), (8, 8)), ((96, 128), (24, 32)), ((21, 35), (8, 12))):
        assert unet(torch.rand(1, 3, h, w_)).shape == (1, 8, fh, fw)


# ------------------------------------------------------------------------------ official checkpoints
def _parse_reference(text: str, depth: int) -> dict[str, tuple]:
    """Names and shapes listed in the first section of the reference file with ``trans_depth=depth``."""
    sections = [part for part in text.split("==== ") if f"(trans_depth={depth})" in part]
    if not sections:
        pytest.skip(f"reference file has no trans_depth={depth} section")
    pattern = r"^((?:net_coarse|feature_net|net_fine)\.\S+)\t\(([\d, ]+)\)"
    return {
        m.group(1): tuple(int(v) for v in m.group(2).replace(" ", "").rstrip(",").split(","))
        for m in re.finditer(pattern, sections[0], re.MULTILINE)
    }


@pytest.mark.skipif(not SHARED_REF.is_file(), reason="../shared/reference absent")
def test_official_layout_matches_the_reference_listing():
    text = SHARED_REF.read_text()
    for depth in (4, 8):
        ref = _parse_reference(text, depth)
        assert ref == official_layout(depth)


@pytest.mark.parametrize("depth,total", [(4, 9_321_795), (8, 9_759_747)])
def test_official_checkpoint_loads_with_no_missing_keys(tmp_path, depth, total):
    ckpt = random_official_checkpoint(depth, seed=depth)
    torch.save(ckpt, tmp_path / "model.pth")
    model = load_official_gnt_checkpoint(tmp_path / "model.pth")  # strict load: no missing / unexpected keys
    assert model.config.depth == depth and model.config.single_net
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for p in model.renderer.parameters()) == sum(v.numel() for v in ckpt["net_coarse"].values())
    back = state_dict_to_official(model.state_dict())
    assert set(back) == {"net_coarse", "feature_net"}
    for net in back:
        assert list(back[net]) == list(ckpt[net])  # same names in the same order
        assert all(torch.equal(back[net][k], ckpt[net][k]) for k in ckpt[net])


def test_official_checkpoint_with_fine_network(tmp_path):
    ckpt = random_official_checkpoint(4, seed=3, fine=True)
    torch.save(ckpt, tmp_path / "fine.pth")
    model = load_official_gnt_checkpoint(tmp_path / "fine.pth", n_fine=8)
    assert not model.config.single_net and model.renderer_fine is not None
    assert model.feature_net.out_channels == 64
    with pytest.raises(ValueError, match="net_coarse"):
        official_to_state_dict({"model": {}})


def test_network_equals_float64_reference():
    ckpt = random_official_checkpoint(4, seed=11)
    model = load_official_gnt_checkpoint_from_dict(ckpt).double()
    P = {k: v.double() for k, v in ckpt["net_coarse"].items()}
    g = torch.Generator().manual_seed(1)
    R, S, V = 5, 9, 4
    rgb_feat = torch.rand(R, S, V, 35, generator=g, dtype=torch.float64)
    ray_diff = torch.randn(R, S, V, 4, generator=g, dtype=torch.float64)
    mask = (torch.rand(R, S, V, 1, generator=g) > 0.3).double()
    mask[0, 0] = 0  # a sample seen by no view
    pts = torch.randn(R, S, 3, generator=g, dtype=torch.float64)
    ray_d = torch.randn(R, 3, generator=g, dtype=torch.float64)
    rgb, w = model.renderer.run(rgb_feat, ray_diff, mask, pts, ray_d)
    rgb_ref, w_ref = ref_gnt(P, rgb_feat, ray_diff, mask, pts, ray_d, depth=4)
    assert torch.allclose(rgb, rgb_ref, atol=1e-10, rtol=0) and torch.allclose(w, w_ref, atol=1e-12, rtol=0)


def test_resunet_equals_float64_reference():
    ckpt = random_official_checkpoint(4, seed=5)
    net = ResUNet().double()
    net.load_state_dict(ckpt["feature_net"])
    P = {k: v.double() for k, v in ckpt["feature_net"].items()}
    x = torch.rand(2, 3, 40, 56, dtype=torch.float64)
    out = net(x)
    assert out.shape == (2, 32, 12, 16)
    assert torch.allclose(out, ref_resunet(P, x), atol=1e-9, rtol=0)


def load_official_gnt_checkpoint_from_dict(ckpt):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.model import GNTModel
    from neural3d.methods.gnt.official import config_from_official

    model = GNTModel(config_from_official(ckpt, n_samples=24), scene=SceneInfo(torch.zeros(2, 3), 0.1, 10.0))
    model.load_state_dict(official_to_state_dict(ckpt), strict=True)
    return model.eval()


def test_full_pipeline_matches_official_numerics():
    """Official camera records, integer pixel centres, inverse-depth samples, projector, network."""
    ckpt = random_official_checkpoint(4, seed=7)
    model = load_official_gnt_checkpoint_from_dict(ckpt)
    eyes = [(3.0, 0.4, 1.0), (2.6, -1.2, 1.1), (2.8, 1.5, 0.6), (3.2, -0.3, 1.6)]
    cams = rig(eyes, size=(24, 20), f=22.0)
    rec = cameras_to_records(cams).double()
    g = torch.Generator().manual_seed(2)
    src_imgs = torch.rand(3, 20, 24, 3, generator=g)
    pixels = torch.tensor([[0, 0], [5, 7], [12, 10], [23, 19], [17, 3]], dtype=torch.float64)
    near, far, S = 1.5, 4.5, 24
    # reference, float64, official conventions throughout
    P_f = {k: v.double() for k, v in ckpt["feature_net"].items()}
    P_n = {k: v.double() for k, v in ckpt["net_coarse"].items()}
    feats = ref_resunet(P_f, src_imgs.double().permute(0, 3, 1, 2))
    o, d = ref_rays(rec[0], pixels)
    z = ref_z_vals(near, far, S)[None].expand(len(pixels), -1)
    pts = o[:, None] + z[..., None] * d[:, None]
    rgb_feat, ray_diff, mask = ref_project(pts, rec[0], src_imgs.double(), rec[1:], feats)
    assert 0 < float(mask.mean()) < 1  # some samples leave some views
    rgb_ref, w_ref = ref_gnt(P_n, rgb_feat, ray_diff, mask, pts, d, depth=4)
    depth_ref = (w_ref * z).sum(-1)
    # neural3d: OpenGL cameras from the records, rays through integer coordinates (pixel_center 0)
    src = cameras_from_records(rec[1:])
    tgt = cameras_from_records(rec[:1])
    rays = generate_rays(tgt, torch.zeros(len(pixels), dtype=torch.long), pixels.float(), near, far)
    with torch.no_grad():
        out = model(rays, SourceViews(src_imgs, src, pixel_center=0.0))
    assert torch.allclose(out["rgb"].double(), rgb_ref.clamp(0, 1), atol=1e-4, rtol=0)
    assert torch.allclose(out["depth"][:, 0].double(), depth_ref, atol=1e-4, rtol=0)
    assert torch.equal(out["opacity"], torch.ones_like(out["opacity"]))
    assert math.isfinite(float(out["rgb"].sum()))


def test_point_samples_and_fine_samples_follow_official_sampling():
    from gnt_reference import ref_sample_pdf

    from neural3d.methods.gnt.sampling import depth_samples, fine_depth_samples, sample_pdf_points

    nears, fars = torch.tensor([2.0, 1.0], dtype=torch.float64), torch.tensor([6.0, 4.0], dtype=torch.float64)
    z = depth_samples(nears, fars, 16, lindisp=True, jitter=False)
    assert torch.allclose(z[0], ref_z_vals(2.0, 6.0, 16), atol=1e-12) and z[1, 0] == 1.0 and z[1, -1] == 4.0
    zj = depth_samples(nears, fars, 16, lindisp=False, jitter=True)
    zl = depth_samples(nears, fars, 16, lindisp=False, jitter=False)
    mids = 0.5 * (zl[:, 1:] + zl[:, :-1])
    assert bool((zj[:, 1:] >= mids - 1e-12).all()) and bool((zj[:, :-1] <= mids + 1e-12).all())
    g = torch.Generator().manual_seed(0)
    w = torch.rand(2, 16, generator=g, dtype=torch.float64)
    w[0, 5] = 8.0  # a peak
    bins = torch.sort(torch.rand(2, 15, generator=g, dtype=torch.float64) * 4 + 1, -1).values
    u = torch.linspace(0, 1, 9, dtype=torch.float64).expand(2, -1)
    got = sample_pdf_points(bins, w[:, 1:-1], 9, det=True)
    assert torch.allclose(got, ref_sample_pdf(bins, w[:, 1:-1], 9, u.contiguous()), atol=1e-12)
    fine = fine_depth_samples(z, w, 8, lindisp=True, det=True)
    assert fine.shape == (2, 24) and bool((fine[:, 1:] >= fine[:, :-1]).all())
    assert bool((fine >= nears[:, None] - 1e-9).all()) and bool((fine <= fars[:, None] + 1e-9).all())
    # most fine samples land around the peak weight (sample 5 of ray 0)
    near_peak = ((fine[0] > z[0, 4]) & (fine[0] < z[0, 6])).sum()
    assert int(near_peak) >= 5
