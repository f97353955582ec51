"""Occupancy-grid marching, ray/box intersection and packed rendering against float64 / serial references."""

from __future__ import annotations

import math

import pytest
import torch

from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples, RaySamples
from neural3d.fields.base import FieldOutputs
from neural3d.render import VolumeRenderer
from neural3d.render.packed import render_weights_packed
from neural3d.render.scan import (
    exclusive_prod,
    exclusive_sum,
    inclusive_prod,
    inclusive_sum,
    packed_info_from_ray_indices,
    ray_indices_from_packed_info,
)
from neural3d.samplers.aabb import ray_aabb_intersect
from neural3d.samplers.marching import StepRule, march_rays, prune_samples
from neural3d.samplers.occupancy_grid import OccupancyGrid


def _bundle(o, d, near=0.0, far=10.0):
    o, d = torch.as_tensor(o, dtype=torch.float32), torch.as_tensor(d, dtype=torch.float32)
    n = o.shape[0]
    return RayBundle(o, d, d / d.norm(dim=-1, keepdim=True), torch.full((n,), near), torch.full((n,), far))


def _random_packed(n_rays=7, max_count=9, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_count + 1, (n_rays,), generator=g)
    counts[0] = 0  # a ray without samples
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], -1)
    ri = ray_indices_from_packed_info(info)
    return ri, info, counts, g


# ----------------------------------------------------------------------------- scans
@pytest.mark.parametrize(
    "fn,ref",
    [
        (inclusive_sum, lambda v: torch.cumsum(v, 0)),
        (exclusive_sum, lambda v: torch.cumsum(v, 0) - v),
        (inclusive_prod, lambda v: torch.cumprod(v, 0)),
        (exclusive_prod, lambda v: torch.cumprod(v, 0) / v),
    ],
)
def test_segmented_scans_match_per_ray_loops(fn, ref):
    ri, info, counts, g = _random_packed()
    vals = torch.rand(int(counts.sum()), generator=g, dtype=torch.float64) + 0.5
    out = fn(vals, ri, info)
    for _r, (s, c) in enumerate(info.tolist()):
        if c:
            torch.testing.assert_close(out[s : s + c], ref(vals[s : s + c]), rtol=1e-12, atol=1e-12)


def test_packed_info_round_trip():
    ri, info, _, _ = _random_packed(n_rays=11)
    assert torch.equal(packed_info_from_ray_indices(ri, 11), info)


# ----------------------------------------------------------------------------- packed rendering
def test_packed_rendering_equals_batched_float64():
    ri, info, counts, g = _random_packed(n_rays=9, max_count=12, seed=3)
    n = int(counts.sum())
    rays = _bundle(torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g), near=0.1, far=4.0)
    rays = RayBundle(
        *(
            x.double() if x is not None and x.is_floating_point() else x
            for x in (rays.origins, rays.directions, rays.viewdirs, rays.nears, rays.fars)
        )
    )
    # sorted, contiguous intervals per ray
    gaps = torch.rand(n, generator=g, dtype=torch.float64) * 0.2 + 0.01
    lens = torch.rand(n, generator=g, dtype=torch.float64) * 0.3 + 0.01
    starts = 0.1 + exclusive_sum(gaps + lens, ri, info) + gaps
    packed = PackedRaySamples(rays, starts, starts + lens, ri, info)
    dens = (torch.rand(n, 1, generator=g, dtype=torch.float64) * 5).requires_grad_()
    rgb = torch.rand(n, 3, generator=g, dtype=torch.float64).requires_grad_()
    bg = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    out_p = VolumeRenderer()(FieldOutputs(density=dens, rgb=rgb), packed, bg)

    padded, valid = packed.to_padded()
    from neural3d.render.scan import pad_packed

    d_pad = pad_packed(dens, ri, info)
    c_pad = pad_packed(rgb, ri, info)
    out_b = VolumeRenderer()(FieldOutputs(density=d_pad, rgb=c_pad), padded, bg)
    torch.testing.assert_close(out_p.rgb, out_b.rgb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_p.opacity, out_b.opacity, rtol=1e-12, atol=1e-12)
    has = counts > 0
    torch.testing.assert_close(out_p.depth[has], out_b.depth[has], rtol=1e-10, atol=1e-10)
    assert torch.all(out_p.depth[~has] == rays.fars[~has, None])
    # gradients agree too
    gp = torch.autograd.grad(out_p.rgb.sum() + out_p.depth[has].sum(), (dens, rgb))
    dens2, rgb2 = dens.detach().clone().requires_grad_(), rgb.detach().clone().requires_grad_()
    out_b2 = VolumeRenderer()(
        FieldOutputs(density=pad_packed(dens2, ri, info), rgb=pad_packed(rgb2, ri, info)), padded, bg
    )
    gb = torch.autograd.grad(out_b2.rgb.sum() + out_b2.depth[has].sum(), (dens2, rgb2))
    for a, b in zip(gp, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_packed_weights_constant_slab_transmittance():
    # one ray through a constant-density slab cut into unequal pieces: total opacity = 1 - exp(-s L)
    s, L = 1.7, 2.3
    cuts = torch.tensor([0.0, 0.1, 0.5, 0.55, 1.2, 2.0, 2.3], dtype=torch.float64)
    dist = cuts[1:] - cuts[:-1]
    ri = torch.zeros(len(dist), dtype=torch.long)
    w, T, _ = render_weights_packed(torch.full_like(dist, s), dist, ri, packed_info_from_ray_indices(ri, 1))
    torch.testing.assert_close(w.sum(), torch.tensor(1 - math.exp(-s * L), dtype=torch.float64))
    torch.testing.assert_close(T, torch.exp(-s * cuts[:-1]))


def test_opaque_far_gives_the_last_sample_the_remaining_transmittance():
    # the original NeRF's 1e10 last interval: batched and packed agree, the ray is opaque, and the last
    # sample's weight is exp(-sum of the earlier optical depths) (float64 reference)
    g = torch.Generator().manual_seed(5)
    n_rays, n = 4, 6
    rays = _bundle(torch.randn(n_rays, 3, generator=g), torch.randn(n_rays, 3, generator=g), near=0.0, far=1.0)
    rays = RayBundle(
        *(
            x.double() if x is not None and x.is_floating_point() else x
            for x in (rays.origins, rays.directions, rays.viewdirs, rays.nears, rays.fars)
        )
    )
    edges = torch.sort(torch.rand(n_rays, n + 1, generator=g, dtype=torch.float64), dim=-1).values
    batched = RaySamples.from_edges(rays, edges)
    dens = torch.rand(n_rays, n, 1, generator=g, dtype=torch.float64) * 3 + 0.1
    rgb = torch.rand(n_rays, n, 3, generator=g, dtype=torch.float64)
    bg = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    out = VolumeRenderer(opaque_far=True)(FieldOutputs(density=dens, rgb=rgb), batched, bg)
    depth_opt = dens[..., 0] * batched.deltas * torch.linalg.norm(rays.directions, dim=-1, keepdim=True)
    torch.testing.assert_close(out.weights[:, -1], torch.exp(-depth_opt[:, :-1].sum(-1)))
    torch.testing.assert_close(out.opacity[:, 0], torch.ones(n_rays, dtype=torch.float64))
    plain = VolumeRenderer()(FieldOutputs(density=dens, rgb=rgb), batched, bg)
    torch.testing.assert_close(out.weights[:, :-1], plain.weights[:, :-1])  # earlier samples unchanged
    ri = torch.arange(n_rays).repeat_interleave(n)
    packed = PackedRaySamples(
        rays, batched.starts.reshape(-1), batched.ends.reshape(-1), ri, packed_info_from_ray_indices(ri, n_rays)
    )
    out_p = VolumeRenderer(opaque_far=True)(
        FieldOutputs(density=dens.reshape(-1, 1), rgb=rgb.reshape(-1, 3)), packed, bg
    )
    torch.testing.assert_close(out_p.rgb, out.rgb)
    torch.testing.assert_close(out_p.weights, out.weights.reshape(-1))


def test_packed_rendering_gradcheck():
    ri, info, counts, g = _random_packed(n_rays=4, max_count=5, seed=5)
    n = int(counts.sum())
    dist = torch.rand(n, generator=g, dtype=torch.float64) * 0.5 + 0.05
    dens = (torch.rand(n, generator=g, dtype=torch.float64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda d: render_weights_packed(d, dist, ri, info)[0], (dens,))


# ----------------------------------------------------------------------------- ray / box
def test_ray_aabb_axis_aligned_and_grazing():
    box = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    o = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, 2.0, 0.0], [-3.0, 1.0, 0.5], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    t0, t1, hit = ray_aabb_intersect(o, d, box)
    assert hit[:, 0].tolist() == [True, False, True, True, False]  # grazing along the y=1 face counts
    torch.testing.assert_close(t0[0, 0], torch.tensor(2.0))
    torch.testing.assert_close(t1[0, 0], torch.tensor(4.0))
    torch.testing.assert_close(t0[2, 0], torch.tensor(1.0))  # t in units of the (length 2) direction
    torch.testing.assert_close(t1[3, 0], torch.tensor(1.0))
    assert not torch.isnan(t0).any() and not torch.isnan(t1).any()


def test_ray_aabb_random_rays_against_dense_float64_sampling():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(200, 3, generator=g, dtype=torch.float64) * 2
    d = torch.randn(200, 3, generator=g, dtype=torch.float64)
    boxes = torch.tensor([[-1, -0.5, -1, 1, 0.5, 0.3], [0, 0, 0, 2, 2, 2]], dtype=torch.float64)
    t0, t1, hit = ray_aabb_intersect(o, d, boxes)
    ts = torch.linspace(0, 10, 20001, dtype=torch.float64)
    pts = o[:, None, None, :] + ts[None, :, None, None] * d[:, None, None, :]  # [n, t, 1, 3]
    inside = ((pts >= boxes[:, :3]) & (pts <= boxes[:, 3:])).all(-1)  # [n, t, boxes]
    dense_hit = inside.any(1)
    assert torch.equal(hit, dense_hit)
    first = torch.where(inside.any(1), ts[inside.float().argmax(1)], torch.zeros(()))
    torch.testing.assert_close(torch.where(hit, t0.clamp_min(0), 0 * t0), first, atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------- step rule and marching
@pytest.mark.parametrize("cone", [0.0, 0.05])
def test_step_rule_closed_form_matches_iteration(cone):
    s0 = torch.tensor([0.0, 0.3, 2.0], dtype=torch.float64)
    step = 0.05
    rule = StepRule(s0, step, cone)
    k = torch.arange(60, dtype=torch.float64)[None].expand(3, -1)
    closed = rule.start(k)
    for r in range(3):
        s = float(s0[r])
        for i in range(60):
            assert closed[r, i].item() == pytest.approx(s, rel=1e-9, abs=1e-12)
            s += min(max(s * cone, step), 1e10)
    for i in (0, 7, 37, 59):
        torch.testing.assert_close(rule.index(closed[:, i]), k[:, i], atol=1e-6, rtol=0)


def _serial_march(o, d, near, far, grid, step, cone):
    """Per-ray serial walk (nerfacc semantics with the exact step rule), float64."""
    out = []
    box = grid.aabbs[-1].double()
    for r in range(len(o)):
        dn = float(d[r].norm())
        u = d[r].double() / dn
        t0, t1, hit = ray_aabb_intersect(o[r : r + 1].double(), u[None], box)
        lo, hi = max(float(t0), near * dn), min(float(t1), far * dn)
        s = near * dn
        while hit and s < hi:
            dt = min(max(s * cone, step), 1e10)
            mid = s + dt / 2
            if lo <= mid < hi and grid.occupied((o[r].double() + mid * u)[None].float())[0]:
                out.append((r, s / dn, (s + dt) / dn))
            s += dt
    return out


@pytest.mark.parametrize("cone,levels", [(0.0, 1), (0.02, 2)])
def test_march_equals_serial_walk_on_random_grid(cone, levels):
    torch.manual_seed(0)
    grid = OccupancyGrid(aabb=torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=8, levels=levels)
    grid.binaries.copy_(torch.rand_like(grid.occs) > 0.6)
    g = torch.Generator().manual_seed(1)
    o = torch.randn(40, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    d = torch.randn(40, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -1.0])
    rays = _bundle(o, d, near=0.5, far=6.0)
    packed = march_rays(rays, grid, step_size=0.03, cone_angle=cone)
    ref = _serial_march(o, d, 0.5, 6.0, grid, 0.03, cone)
    assert packed.n_samples == len(ref) > 100
    torch.testing.assert_close(packed.ray_indices, torch.tensor([r for r, _, _ in ref]))
    torch.testing.assert_close(
        packed.starts.double(), torch.tensor([a for _, a, _ in ref], dtype=torch.float64), atol=2e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        packed.ends.double(), torch.tensor([b for _, _, b in ref], dtype=torch.float64), atol=2e-5, rtol=1e-5
    )
    assert torch.equal(packed.packed_info, packed_info_from_ray_indices(packed.ray_indices, len(rays)))


def test_march_visits_exactly_the_occupied_cells():
    grid = OccupancyGrid(aabb=torch.tensor([0.0, 0, 0, 1, 1, 1]), resolution=4)
    grid.binaries.zero_()
    grid.binaries[0, 1, 2, :] = True  # a row of cells along z at x-cell 1, y-cell 2
    grid.binaries[0, 3, 0, 0] = True  # a cell the ray never meets
    rays = _bundle([[0.3, 0.6, 2.0]], [[0.0, 0.0, -1.0]], near=0.0, far=5.0)
    packed = march_rays(rays, grid, step_size=0.01)
    mids = rays.origins + packed.mids[:, None] * rays.directions
    cells = {tuple(c) for c in (mids * 4).floor().long().tolist()}
    assert cells == {(1, 2, 0), (1, 2, 1), (1, 2, 2), (1, 2, 3)}
    assert packed.n_samples == 100  # the unit column, 0.01 steps
    grid.binaries[0, 1, 2, 1] = False
    assert march_rays(rays, grid, step_size=0.01).n_samples == 75


def test_march_empty_grid_gives_no_samples_and_stratified_stays_in_range():
    grid = OccupancyGrid(aabb=torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=8)
    rays = _bundle(torch.tensor([[0.0, 0.0, 3.0]] * 5), torch.tensor([[0.0, 0.0, -1.0]] * 5), near=1.0, far=5.0)
    full = march_rays(rays, grid, step_size=0.1, stratified=True)
    assert torch.all(full.mids >= 2.0) and torch.all(full.mids < 4.0)
    assert torch.equal(full.packed_info[:, 1], torch.full((5,), 20))
    grid.binaries.zero_()
    empty = march_rays(rays, grid, step_size=0.1)
    assert empty.n_samples == 0 and torch.equal(empty.packed_info[:, 1], torch.zeros(5, dtype=torch.long))
    out = VolumeRenderer()(FieldOutputs(density=torch.zeros(0, 1), rgb=torch.zeros(0, 3)), empty, torch.ones(3))
    assert torch.equal(out.rgb, torch.ones(5, 3)) and torch.equal(out.opacity, torch.zeros(5, 1))


def test_occupancy_lookup_uses_finest_level():
    grid = OccupancyGrid(aabb=torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=2, levels=3)
    grid.binaries.zero_()
    grid.binaries[1, 1, 1, 1] = True  # level 1 covers [-2, 2]: cell (1,1,1) = [0, 2]^3
    pts = torch.tensor([[0.5, 0.5, 0.5], [1.5, 1.5, 1.5], [3.0, 3.0, 3.0], [5.0, 0.0, 0.0]])
    assert grid.occupied(pts).tolist() == [False, True, False, False]  # first point is in level 0 (empty)


def test_grid_update_warmup_ema_and_mean_threshold():
    grid = OccupancyGrid(aabb=torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=4, warmup_updates=1)
    grid.update(lambda x: (x[:, 0] > 0).float() * 0.5, threshold=0.01)
    assert torch.equal(grid.binaries[0, 2:], torch.ones_like(grid.binaries[0, 2:]))
    assert not grid.binaries[0, :2].any()
    # after warm-up: occupied cells decay instead of being replaced
    torch.manual_seed(0)
    grid.update(lambda x: torch.zeros(len(x)), threshold=0.01, decay=0.5)
    values = set(grid.occs.unique().tolist())
    assert values <= {0.0, 0.25, 0.5} and 0.25 in values  # only the re-evaluated cells decay (nerfacc)
    grid.update_fraction = 1.0
    grid.update(lambda x: torch.zeros(len(x)), threshold=0.01, decay=0.5)
    assert set(grid.occs.unique().tolist()) <= {0.0, 0.125, 0.25} and grid.occs.max() <= 0.25
    # all densities tiny: threshold falls to the mean so the grid does not go empty
    grid2 = OccupancyGrid(aabb=torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=4, warmup_updates=1)
    grid2.update(lambda x: 1e-4 * (x[:, 1] > 0).float(), threshold=0.01)
    assert 0.4 < grid2.occupancy_fraction() < 0.6


def test_prune_drops_samples_behind_an_opaque_slab():
    grid = OccupancyGrid(aabb=torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=4)
    rays = _bundle([[0.0, 0.0, 3.0]], [[0.0, 0.0, -1.0]], near=0.0, far=6.0)
    packed = march_rays(rays, grid, step_size=0.05)

    def slab(x):
        return (torch.abs(x[:, 2]) < 0.2).float()[:, None] * 100.0

    pruned = prune_samples(packed, slab, early_stop_eps=1e-4)
    assert pruned.n_samples < packed.n_samples
    assert pruned.mids.max() < 3.0 + 0.2 + 0.05  # nothing far behind the slab
    sparse = prune_samples(packed, slab, early_stop_eps=0.0, alpha_thre=0.01)
    assert torch.all((rays.origins[0, 2] - sparse.mids).abs() < 0.2 + 0.05)
