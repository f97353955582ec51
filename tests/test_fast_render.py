"""The inference render path: block marching (empty-space skipping), the fused density / colour render and its
worker threads, each against the plain path it replaces (bit for bit where the arithmetic is the same)."""

from __future__ import annotations

import threading

import pytest
import torch
from _render_paths import training_and_fused_renders

from neural3d.core.rays import RayBundle
from neural3d.fields.base import Field
from neural3d.methods.base import SceneInfo
from neural3d.methods.ngp.config import NGPModelConfig
from neural3d.methods.ngp.model import NGPModel
from neural3d.render import VolumeRenderer, cpu_workers, inference
from neural3d.render.inference import field_callbacks, render_marched
from neural3d.samplers import cpu_march
from neural3d.samplers.config import OccupancySamplerConfig
from neural3d.samplers.empty_space import block_half_limit, block_steps, dilated_binaries, near_occupied
from neural3d.samplers.marching import march_rays, prune_samples
from neural3d.samplers.occupancy import OccupancySampler
from neural3d.samplers.occupancy_grid import OccupancyGrid

BOX = torch.tensor([-1.0, -1, -1, 1, 1, 1])


def _rays(n: int, seed: int, inside: int = 0) -> RayBundle:
    """[n] rays from a sphere of radius 3 towards the box (the first ``inside`` start inside it), ``t``-scaled."""
    g = torch.Generator().manual_seed(seed)
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 3.0
    o[:inside] = torch.rand(inside, 3, generator=g) * 1.6 - 0.8
    d = -o + torch.randn(n, 3, generator=g) * 0.6
    d = d * (0.5 + torch.rand(n, 1, generator=g))  # directions of any length: t is not world distance
    near = torch.where(torch.arange(n) < inside, torch.zeros(n), torch.full((n,), 0.5))
    return RayBundle(o, d, torch.nn.functional.normalize(d, dim=-1), near, torch.full((n,), 9.0))


def _grid(levels: int, fraction: float, seed: int, resolution: int = 16) -> OccupancyGrid:
    grid = OccupancyGrid(aabb=BOX, resolution=resolution, levels=levels)
    g = torch.Generator().manual_seed(seed)
    grid.binaries.copy_(torch.rand(grid.binaries.shape, generator=g) < fraction)
    return grid


def _same(a, b) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("starts", "ends", "ray_indices", "packed_info"))


# ----------------------------------------------------------------------------- block marching
@pytest.mark.parametrize(
    "levels,cone,fraction,stratified",
    [(1, 0.0, 0.05, False), (1, 0.0, 0.4, True), (2, 0.0, 0.1, False), (3, 0.02, 0.1, True), (1, 0.01, 0.08, False)],
)
def test_block_march_equals_plain_march_bit_for_bit(levels, cone, fraction, stratified):
    grid, rays = _grid(levels, fraction, seed=levels), _rays(300, seed=2, inside=40)
    step = 0.013
    assert block_steps(grid, step) > 1  # the block path runs

    def march(**kw):
        torch.manual_seed(0)
        return march_rays(rays, grid, step_size=step, cone_angle=cone, stratified=stratified, **kw)

    plain = march(skip_empty=False, backend="torch")
    fast, small = march(backend="torch"), march(chunk_steps=500, backend="torch")
    assert plain.n_samples > 1000 and _same(plain, fast) and _same(plain, small)
    if cone == 0 and cpu_march.available():  # the C kernel, with and without its block test
        assert _same(plain, march(backend="cpu")) and _same(plain, march(backend="cpu", skip_empty=False))


def test_block_march_keeps_a_single_cell_met_at_a_grazing_angle():
    grid = _grid(1, 0.0, seed=0, resolution=8)
    grid.binaries[0, 5, 2, 6] = True
    g = torch.Generator().manual_seed(3)
    centre = torch.tensor([0.375, -0.375, 0.625])  # the cell's centre; rays pass near its corners and edges
    target = centre + (torch.rand(2000, 3, generator=g) - 0.5) * 0.3
    o = target + torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1) * 4
    d = target - o
    rays = RayBundle(o, d, torch.nn.functional.normalize(d, dim=-1), torch.zeros(2000), torch.full((2000,), 2.0))
    plain = march_rays(rays, grid, step_size=0.011, skip_empty=False, backend="torch")
    assert plain.n_samples > 500 and _same(plain, march_rays(rays, grid, step_size=0.011, backend="torch"))
    if cpu_march.available():
        assert _same(plain, march_rays(rays, grid, step_size=0.011, backend="cpu"))


@pytest.mark.skipif(not cpu_march.available(), reason="no C compiler for the marching kernel")
def test_cpu_march_kernel_equals_torch_on_a_trained_like_grid_and_rays_from_inside():
    # A blob-shaped grid (connected occupied regions, as a trained grid has), rays starting inside and outside,
    # cells at the box faces, 1 and 2 levels; every sample bit for bit, in the same order.
    for levels in (1, 2):
        grid = OccupancyGrid(aabb=BOX, resolution=32, levels=levels)
        ijk = torch.stack(torch.meshgrid(*[torch.arange(32)] * 3, indexing="ij"), -1).float()
        blob = ((ijk - 15.5).norm(dim=-1) < 9) | ((ijk - torch.tensor([31.0, 0, 31])).norm(dim=-1) < 4)
        grid.binaries.copy_(blob.expand_as(grid.binaries))
        rays = _rays(2000, seed=9 + levels, inside=300)
        for stratified in (False, True):
            torch.manual_seed(1)
            ref = march_rays(rays, grid, step_size=0.007, stratified=stratified, backend="torch")
            torch.manual_seed(1)
            assert ref.n_samples > 10_000 and _same(ref, march_rays(rays, grid, step_size=0.007, stratified=stratified))


def test_cpu_march_backend_refuses_what_it_cannot_march():
    grid, rays = _grid(1, 0.1, seed=1), _rays(10, seed=1)
    with pytest.raises(ValueError, match="cone_angle 0"):
        march_rays(rays, grid, step_size=0.01, cone_angle=0.01, backend="cpu")
    with pytest.raises(ValueError, match="march backend must be one of"):
        march_rays(rays, grid, step_size=0.01, backend="fast")
    with pytest.raises(ValueError, match="cone_angle 0"):
        OccupancySampler(aabb=BOX, resolution=8, cone_angle=0.01, backend="cpu").resolve_backend(torch.device("cpu"))
    auto = OccupancySampler(aabb=BOX, resolution=8, cone_angle=0.01).resolve_backend(torch.device("cpu"))
    assert auto == "torch"  # growing steps: the torch march


def test_near_occupied_is_conservative():
    grid = _grid(2, 0.03, seed=5, resolution=8)
    dilated, h = dilated_binaries(grid), block_half_limit(grid)
    g = torch.Generator().manual_seed(6)
    p = (torch.rand(3000, 3, generator=g) * 2 - 1) * 2.2  # inside and around both levels
    axis = torch.linspace(-h, h, 5)
    offsets = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    hit = grid.occupied((p[:, None] + offsets).reshape(-1, 3)).view(len(p), -1).any(-1)
    near = near_occupied(grid, dilated, p)
    assert int(hit.sum()) > 100 and bool(near[hit].all())
    assert int(near.sum()) < len(p)  # and it does skip


# ----------------------------------------------------------------------------- the fused render
def _model(*, opaque_far: bool = False, alpha_thre: float = 0.0, **sampler) -> NGPModel:
    torch.manual_seed(0)
    cfg = NGPModelConfig(
        n_levels=4,
        log2_hashmap_size=10,
        max_resolution=32,
        opaque_far=opaque_far,
        sampler=OccupancySamplerConfig(resolution=16, step_size=0.02, alpha_thre=alpha_thre, **sampler),
    )
    model = NGPModel(cfg, scene=SceneInfo(BOX.reshape(2, 3).clone(), 0.5, 9.0, False, torch.ones(3)))
    with torch.no_grad():
        model.field.encoding.params.normal_(0.0, 2.0)
        model.field.mlp_base.layers[-1].weight[0].mul_(16.0)  # densities from ~0 to opaque: rays stop early
        model.sampler.update_grid(model.field.density)
    return model.eval()


@pytest.mark.parametrize("opaque_far,alpha_thre", [(False, 0.0), (True, 0.0), (False, 0.02)])
def test_fused_render_equals_the_training_path(opaque_far, alpha_thre):
    model, rays = _model(opaque_far=opaque_far, alpha_thre=alpha_thre), _rays(400, seed=1)
    ref, fast = training_and_fused_renders(model, rays, chunk=128)
    for k in ("rgb", "depth", "opacity"):
        torch.testing.assert_close(fast[k], ref[k], atol=1e-6, rtol=0)
    assert float(ref["opacity"].max()) > 0.999 and float(ref["opacity"].min()) < 0.01  # opaque and empty rays


def test_early_termination_evaluates_fewer_densities_than_marched():
    model, rays = _model(), _rays(400, seed=1)
    calls = []
    fn = model.field.density_and_features
    samples = model.sampler.march(rays, stratified=False)
    with torch.no_grad():
        render_marched(
            samples,
            lambda x: calls.append(len(x)) or fn(x),
            field_callbacks(model.field)[1],
            model.renderer,
            model.background,
        )
        kept = prune_samples(samples, model.field.density).n_samples
    assert kept <= sum(calls) < 0.95 * samples.n_samples


def test_color_eps_bounds_each_pixel_and_leaves_depth_and_opacity():
    model, rays = _model(render_color_eps=0.05), _rays(400, seed=4)
    ref, fast = training_and_fused_renders(model, rays, chunk=128)
    calls = []
    color = model.field.color
    model.field.color = lambda f, d: calls.append(len(f)) or color(f, d)
    with torch.no_grad():
        model.render_rays(rays, chunk=128)
        skipping = sum(calls)
        model.sampler.render_color_eps = 0.0
        model.render_rays(rays, chunk=128)
    assert skipping < 0.8 * (sum(calls) - skipping)  # colour ran on fewer samples
    diff = (fast["rgb"] - ref["rgb"]).abs()
    assert 0 < float(diff.max()) < 0.05
    for k in ("depth", "opacity"):
        torch.testing.assert_close(fast[k], ref[k], atol=1e-6, rtol=0)


class _Blob(Field):
    """A Gaussian blob of density with a position-dependent colour (no ``deferred_color``)."""

    def density(self, positions):
        return 40.0 * torch.exp(-8.0 * (positions**2).sum(-1, keepdim=True))

    def query(self, positions, viewdirs, context=None, perturb=None):
        return self.density(positions), torch.sigmoid(positions + viewdirs)


def test_a_field_without_deferred_color_renders_through_query():
    field, renderer, rays = _Blob(), VolumeRenderer(), _rays(200, seed=7)
    samples = march_rays(rays, None, step_size=0.02, aabb=BOX)
    ref = renderer(field(prune_samples(samples, field.density)), prune_samples(samples, field.density), torch.ones(3))
    fast = render_marched(samples, *field_callbacks(field), renderer, torch.ones(3))
    for k in ("rgb", "depth", "opacity"):
        torch.testing.assert_close(getattr(fast, k), getattr(ref, k), atol=1e-6, rtol=0)


def test_the_fused_path_runs_only_without_gradients_in_eval(monkeypatch):
    model, rays = _model(), _rays(20, seed=8)
    used = []
    real = inference.render_marched
    monkeypatch.setattr(inference, "render_marched", lambda *a, **k: used.append(1) or real(*a, **k))
    with torch.no_grad():
        model.render_rays(rays)
    assert used == [1]
    model.render_rays(rays)  # gradients on: the training path
    model.train()
    with torch.no_grad():
        model.render_rays(rays)
    assert used == [1]


def test_dilated_grid_is_the_3x3x3_neighbourhood_and_follows_grid_changes():
    grid = _grid(2, 0.02, seed=9, resolution=6)
    ref = torch.nn.functional.max_pool3d(
        torch.nn.functional.pad(grid.binaries.float()[:, None], (1,) * 6), kernel_size=3, stride=1, padding=1
    )[:, 0]
    assert torch.equal(dilated_binaries(grid), ref > 0)
    grid.binaries.zero_()
    assert not dilated_binaries(grid).any()  # the cache saw the in-place change
    grid.binaries[1, 0, 5, 2] = True
    d = dilated_binaries(grid)
    assert int(d.sum()) == 27 and bool(d[1, 0:3, 5:8, 2:5].all())


# ----------------------------------------------------------------------------- worker threads
def test_worker_threads_render_the_same_image_as_one_thread(monkeypatch):
    """Ray parts rendered by two single-threaded worker threads give the single-thread image (the march and the
    compositing are per ray; the MLP products may round differently in other row blocks)."""
    model, rays = _model(), _rays(3000, seed=5, inside=100)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        used = []
        monkeypatch.setattr(cpu_workers, "map_parts", _spy(cpu_workers.map_parts, used))
        with torch.no_grad():
            split = model.render_rays(rays, chunk=1024)
            cpu_workers.set_enabled(False)
            single = model.render_rays(rays, chunk=1024)
    finally:
        cpu_workers.set_enabled(True)
        torch.set_num_threads(before)
    assert used == [(2, 3), (1, 3)]  # (workers, parts): 3 parts of >= 1,024 rays, then 3 chunks of 1,024
    for k in ("rgb", "depth", "opacity"):
        torch.testing.assert_close(split[k], single[k], atol=1e-6, rtol=0)
    assert float(single["opacity"].max()) > 0.999


def _spy(fn, log):
    def wrapped(f, parts, workers):
        log.append((workers, len(parts)))
        return fn(f, parts, workers)

    return wrapped


def test_worker_pool_keeps_order_errors_grad_mode_and_the_callers_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = cpu_workers.map_parts(lambda i: (i, torch.get_num_threads(), torch.is_grad_enabled()), range(6), 2)
        assert [s[0] for s in seen] == list(range(6)) and {s[1] for s in seen} == {1} and all(s[2] for s in seen)
        with torch.no_grad():
            assert not any(g for *_, g in cpu_workers.map_parts(lambda i: (i, torch.is_grad_enabled()), [0, 1], 2))
        assert torch.get_num_threads() == 2
        fresh = []
        thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert fresh == [2]  # threads started later begin from the caller's count again

        def fail(i):
            if i == 3:
                raise ValueError("part 3 failed")
            return i

        with pytest.raises(ValueError, match="part 3 failed"):
            cpu_workers.map_parts(fail, range(5), 2)
    finally:
        torch.set_num_threads(before)


def test_ray_parts_cover_the_rays_in_order():
    rays = _rays(1001, seed=6)
    parts = inference._ray_parts(rays, chunk=300, workers=2)
    assert [len(p) for p in parts] == [251, 251, 251, 248]
    assert torch.equal(torch.cat([p.origins for p in parts]), rays.origins)
    assert [len(p) for p in inference._ray_parts(rays, chunk=4096, workers=1)] == [1001]
    assert [len(p) for p in inference._ray_parts(rays, chunk=4096, workers=2)] == [501, 500]  # parts >= 1,024 rays
    assert [len(p) for p in inference._ray_parts(_rays(2500, 7), chunk=4096, workers=2)] == [834, 834, 832]
    assert [len(p) for p in inference._ray_parts(rays[:0], chunk=4096, workers=2)] == [0]
    with torch.no_grad():
        empty = _model().render_rays(rays[:0].reshape(0, 7), chunk=4096)
    assert {k: tuple(v.shape) for k, v in empty.items()} == {"rgb": (0, 7, 3), "depth": (0, 7, 1), "opacity": (0, 7, 1)}
