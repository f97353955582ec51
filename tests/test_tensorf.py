"""TensoRF's vector-matrix field: the decomposition against a dense float64 reference, gradients, resampling
(upsampling keeps the function at grid-aligned points, shrinking keeps it inside the new box), checkpoints of
resized grids, the optimizer's moments of resized parameters, and the method's schedule.

The CLI run and ``--resume`` equality across an upsampling step: ``tests/test_train_commands.py`` (``tensorf``).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from _render_paths import training_and_fused_renders

from neural3d.config import ConfigError, build
from neural3d.core.packing import packed_info_from_ray_indices
from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples
from neural3d.fields.tensorf_field import TensoRFField
from neural3d.fields.vm_decomposition import MAT_MODES, VEC_MODES, VMDecomposition, sample_plane
from neural3d.methods.base import SceneInfo
from neural3d.methods.tensorf.config import TensoRFModelConfig
from neural3d.methods.tensorf.model import TensoRFModel, resolution_for, voxel_schedule
from neural3d.training.optim import drop_resized_state

BOX = [[-1.0, -0.5, -1.5], [1.0, 1.5, 0.5]]


def _vm(res=(5, 4, 6), comps=(2, 3, 1), dtype=torch.float64, seed=0) -> VMDecomposition:
    torch.manual_seed(seed)
    return VMDecomposition(n_components=comps, resolution=res, init_scale=1.0).to(dtype)


def _linear_taps(u: float, n: int) -> list[tuple[int, float]]:
    """Node indices and weights of linear interpolation at u in [-1, 1] over n nodes (align_corners=True)."""
    f = (u + 1.0) / 2.0 * (n - 1)
    i = min(int(f), n - 2)
    w = f - i
    return [(i, 1.0 - w), (i + 1, w)]


def _reference(vm: VMDecomposition, x: torch.Tensor) -> torch.Tensor:
    """[n, 3] -> [n, sum R]: plane x line per component by explicit bilinear / linear weights, in float64."""
    rows = []
    for p in x.double().tolist():
        feats = []
        for m, (a, b) in enumerate(MAT_MODES):
            plane, line = vm.planes[m][0].double(), vm.lines[m][0, :, :, 0].double()
            pa, pb = _linear_taps(p[a], plane.shape[2]), _linear_taps(p[b], plane.shape[1])
            pc = _linear_taps(p[VEC_MODES[m]], line.shape[1])
            bil = sum(wa * wb * plane[:, jb, ja] for (ja, wa), (jb, wb) in itertools.product(pa, pb))
            lin = sum(w * line[:, j] for j, w in pc)
            feats.append(bil * lin)
        rows.append(torch.cat(feats))
    return torch.stack(rows)


def test_decomposition_matches_dense_float64_reference():
    vm = _vm()
    torch.manual_seed(1)
    x = torch.rand(40, 3, dtype=torch.float64) * 2 - 1
    x[0] = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # corners of the box are grid nodes
    x[1] = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    out = vm(x)
    assert out.shape == (40, 6) and out.dtype == torch.float64
    torch.testing.assert_close(out, _reference(vm, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vm.density_sum(x), out.sum(-1), rtol=1e-12, atol=1e-12)


def test_decomposition_at_grid_nodes_is_plane_times_line():
    vm = _vm(res=(3, 5, 4))
    res = vm.resolution
    assert res == (3, 5, 4)
    idx = (2, 1, 3)  # node (i_x, i_y, i_z)
    x = torch.tensor([[-1.0 + 2.0 * idx[k] / (res[k] - 1) for k in range(3)]], dtype=torch.float64)
    expected = []
    for m, (a, b) in enumerate(MAT_MODES):
        expected.append(vm.planes[m][0, :, idx[b], idx[a]] * vm.lines[m][0, :, idx[VEC_MODES[m]], 0])
    torch.testing.assert_close(vm(x)[0], torch.cat(expected), rtol=1e-12, atol=1e-12)


def test_gradcheck_float64_tiny_grid():
    vm = _vm(res=(3, 4, 3), comps=(1, 2, 1))
    torch.manual_seed(2)
    x = torch.rand(7, 3, dtype=torch.float64) * 1.8 - 0.9
    names = [n for n, _ in vm.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in vm.parameters()]

    def fn(*ps):
        return torch.func.functional_call(vm, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-8)


def test_plane_sampling_backward_equals_grid_sample():
    torch.manual_seed(7)
    plane = torch.randn(1, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    uv = torch.rand(30, 2, dtype=torch.float64) * 2.4 - 1.2  # some outside: the border's value
    uv[0] = torch.tensor([1.0, -1.0], dtype=torch.float64)
    grad = torch.randn(3, 30, dtype=torch.float64)
    ours = sample_plane(plane, uv)
    (g_ours,) = torch.autograd.grad(ours, plane, grad)
    grid = uv.clamp(-1, 1).view(1, -1, 1, 2)
    ref = torch.nn.functional.grid_sample(plane, grid, align_corners=True)[0, :, :, 0]
    (g_ref,) = torch.autograd.grad(ref, plane, grad)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


def test_upsampling_keeps_the_function_at_grid_aligned_points():
    vm = _vm(res=(5, 4, 6))
    old = vm.resolution
    nodes = [torch.linspace(-1, 1, n, dtype=torch.float64) for n in old]
    x = torch.stack(torch.meshgrid(*nodes, indexing="ij"), -1).reshape(-1, 3)
    before = vm(x)
    vm.upsample([2 * n - 1 for n in old])  # every old node stays a node
    assert vm.resolution == (9, 7, 11)
    torch.testing.assert_close(vm(x), before, rtol=1e-12, atol=1e-12)


def test_state_dict_of_an_upsampled_grid_loads_into_a_fresh_one():
    vm = _vm()
    vm.upsample((7, 8, 9))
    fresh = _vm(seed=5)
    fresh.load_state_dict(vm.state_dict())
    assert fresh.resolution == (7, 8, 9)
    x = torch.rand(10, 3, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(fresh(x), vm(x), rtol=0, atol=0)


def test_field_shapes_and_density_outside_the_box():
    field = TensoRFField(aabb=BOX, resolution=(6, 6, 6), density_components=(2, 2, 2), app_components=(3, 3, 3))
    pos = torch.rand(4, 5, 3) * 2 - 1
    dirs = torch.nn.functional.normalize(torch.randn(4, 5, 3), dim=-1)
    density, rgb = field.query(pos, dirs)
    assert density.shape == (4, 5, 1) and rgb.shape == (4, 5, 3)
    assert (density >= 0).all() and ((rgb >= 0) & (rgb <= 1)).all()
    assert field.density(pos).shape == (4, 5, 1)
    outside = torch.tensor([[0.0, 1.6, 0.0], [1.01, 0.0, 0.0]])
    assert torch.equal(field.density(outside), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="tensorf_field.py"):
        TensoRFField(aabb=[[0, 0, 0], [0, 1, 1]], resolution=(4, 4, 4))


def test_field_density_is_softplus_of_the_component_sum():
    field = TensoRFField(aabb=BOX, resolution=(5, 5, 5), density_components=(2, 2, 2)).double()
    pos = torch.tensor([[0.3, 0.2, -0.4]], dtype=torch.float64)
    x = field.box_coordinates(pos)
    feature = _reference(field.density_grid, x).sum()
    expected = 25.0 * torch.nn.functional.softplus(feature - 10.0)
    torch.testing.assert_close(field.density(pos)[0, 0], expected, rtol=1e-12, atol=0)


def test_shrink_keeps_the_field_inside_the_new_box():
    torch.manual_seed(3)
    field = TensoRFField(aabb=BOX, resolution=(11, 11, 11), density_components=(2, 2, 2), app_components=(3, 3, 3))
    field = field.double()
    target = torch.tensor([[-0.3, 0.0, -1.0], [0.5, 0.9, 0.2]], dtype=torch.float64)
    x = target[0] + torch.rand(50, 3, dtype=torch.float64) * (target[1] - target[0])
    dirs = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    before = field.query(x, dirs)
    field.shrink(target)
    new = field.aabb
    assert (new[0] <= target[0]).all() and (new[1] >= target[1]).all()
    assert (new[0] > torch.tensor(BOX[0], dtype=torch.float64)).any()
    assert field.density_grid.resolution != (11, 11, 11)
    for a, b in zip(field.query(x, dirs), before):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_packed_forward_skips_colour_only_where_weights_are_negligible():
    torch.manual_seed(4)
    field = TensoRFField(aabb=BOX, resolution=(6, 6, 6), density_components=(2, 2, 2), app_components=(3, 3, 3))
    with torch.no_grad():
        for p in field.density_grid.parameters():
            p.mul_(8.0)  # a field with opaque and empty parts
    n_rays, per = 6, 10
    origins = torch.tensor([[0.0, 0.5, -3.0]]).repeat(n_rays, 1)
    dirs = torch.nn.functional.normalize(torch.randn(n_rays, 3) * 0.2 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    rays = RayBundle(origins, dirs, dirs, torch.full((n_rays,), 1.0), torch.full((n_rays,), 5.0))
    starts = torch.linspace(1.0, 4.9, per).repeat(n_rays)
    ri = torch.arange(n_rays).repeat_interleave(per)
    samples = PackedRaySamples(rays, starts, starts + 0.39, ri, packed_info_from_ray_indices(ri, n_rays))
    out = field(samples)
    density, rgb = field.query(samples.positions, samples.viewdirs)
    torch.testing.assert_close(out.density, density)
    from neural3d.render.packed import render_weights_packed

    w, _, _ = render_weights_packed(density[:, 0], samples.distances, ri, samples.packed_info)
    seen = w > field.app_weight_thre
    assert seen.any() and (~seen).any()
    torch.testing.assert_close(out.rgb[seen], rgb[seen])
    assert torch.equal(out.rgb[~seen], torch.zeros_like(out.rgb[~seen]))


def test_drop_resized_state_forgets_only_resized_parameters():
    a, b = torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))
    opt = torch.optim.Adam([a, b], lr=0.1)
    (a.sum() + b.sum()).backward()
    opt.step()
    assert drop_resized_state(opt) == 0
    a.data = torch.randn(6, 3)
    a.grad = torch.ones(6, 3)
    assert drop_resized_state(opt) == 1
    assert a not in opt.state and b in opt.state
    opt.step()  # fresh moments of the new shape
    assert opt.state[a]["exp_avg"].shape == (6, 3)


def test_voxel_schedule_and_resolution():
    assert voxel_schedule(64**3, 128**3, 0) == []
    counts = voxel_schedule(64**3, 128**3, 5)
    assert len(counts) == 5 and counts[-1] == 128**3 and counts == sorted(counts)
    ratios = torch.tensor(counts[1:], dtype=torch.float64) / torch.tensor(counts[:-1], dtype=torch.float64)
    torch.testing.assert_close(ratios, torch.full_like(ratios, 8 ** (1 / 5)), rtol=1e-5, atol=0)
    assert resolution_for(64**3, torch.tensor([[-1.5] * 3, [1.5] * 3])) == [64, 64, 64]
    assert resolution_for(1000, torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, 0.5]])) == [20, 10, 5]


def _model(**overrides) -> TensoRFModel:
    cfg = build(TensoRFModelConfig, {"n_voxels_init": 6**3, "n_voxels_final": 12**3, **overrides})
    scene = SceneInfo(torch.tensor(BOX), 2.0, 6.0, background=torch.ones(3))
    return TensoRFModel(cfg, scene=scene)


def test_model_schedule_upsamples_shrinks_and_follows_the_step():
    torch.manual_seed(6)
    comps = {"density_components": [2, 2, 2], "app_components": [3, 3, 3]}
    model = _model(upsample_steps=[2, 4], shrink_step=3, alpha_mask_thre=1e-3, **comps)  # softplus(-10): empty
    assert model.field.density_grid.resolution == (6, 6, 6)
    step0 = model.sampler.step_size
    torch.testing.assert_close(torch.tensor(step0), torch.tensor(0.5 * 2.0 / 5))
    assert model.l1_weight(2) == 8e-5 and model.l1_weight(3) == 4e-5
    model.training_step_begin(2)
    assert model.field.density_grid.resolution == voxel_count_res(model, 0)
    assert model.sampler.step_size < step0
    with torch.no_grad():  # an occupied corner: the box shrinks around it
        for p in model.field.density_grid.parameters():
            p.zero_()
        model.field.density_grid.planes[0][:, :, :3, :3] = 3.0
        model.field.density_grid.lines[0][:, :, :, :] = 3.0
    model.training_step_begin(3)
    assert (model.field.aabb[1] < torch.tensor(BOX[1])).any()


def voxel_count_res(model: TensoRFModel, i: int) -> tuple[int, ...]:
    return tuple(resolution_for(model.voxel_counts[i], model.field.aabb))


def test_config_rejects_a_bad_schedule():
    with pytest.raises(ConfigError, match="upsample_steps"):
        _model(upsample_steps=[300, 200])
    with pytest.raises(ConfigError, match="n_voxels_final"):
        _model(n_voxels_final=10)


def test_blender_config_builds_the_tensorf_method_sized_to_the_device():
    from neural3d.config import load_config

    path = str(Path(__file__).resolve().parents[1] / "configs" / "blender_tensorf.yaml")
    gpu, gpu_model = load_config(path, ["device=cuda"])
    cpu, cpu_model = load_config(path, ["device=cpu"])
    assert cpu.method == gpu.method == "tensorf" and cpu_model.sampler.type == "occupancy"
    assert cpu_model.n_voxels_final < gpu_model.n_voxels_final and cpu.trainer.steps < gpu.trainer.steps
    assert gpu_model.upsample_steps == [2000, 3000, 4000, 5500, 7000]  # the official lego schedule


def _rendering_model(app_weight_thre: float) -> TensoRFModel:
    """A small model with dense random grids (opaque and empty regions) and a carved occupancy grid, in eval."""
    torch.manual_seed(11)
    comps = {"density_components": [4, 4, 4], "app_components": [4, 4, 4]}
    model = _model(app_weight_thre=app_weight_thre, **comps)
    with torch.no_grad():
        for p in model.field.density_grid.parameters():
            p.normal_(0.0, 1.5)
        model.sampler.update_grid(model.field.density)
    return model.eval()


def _box_rays(n: int) -> RayBundle:
    g = torch.Generator().manual_seed(5)
    origins = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.5, 4.0])
    target = torch.rand(n, 3, generator=g) * (torch.tensor(BOX[1]) - torch.tensor(BOX[0])) + torch.tensor(BOX[0])
    d = torch.nn.functional.normalize(target - origins, dim=-1)
    return RayBundle(origins, d, d, torch.full((n,), 2.0), torch.full((n,), 6.0))


def test_fused_render_equals_the_forward_path_when_every_sample_is_coloured():
    """``app_weight_thre = 0``: both paths colour every kept sample (measured: equal to 1.2e-7)."""
    model = _rendering_model(0.0)
    ref, fast = training_and_fused_renders(model, _box_rays(300), chunk=96)
    for k in ("rgb", "depth", "opacity"):
        torch.testing.assert_close(fast[k], ref[k], atol=1e-6, rtol=0)
    assert float(ref["opacity"].max()) > 0.99 and float(ref["opacity"].min()) < 0.01  # opaque and empty rays


def test_fused_render_colours_by_the_forward_paths_weight_rule():
    """The default ``app_weight_thre`` leaves samples of weight <= 1e-4 black in ``forward``; the fused path applies
    the same rule (``Field.color_weight_thre``), so both give the same image; colouring every kept sample instead
    moves pixels by at most the weight left out."""
    model = _rendering_model(1e-4)
    ref, fast = training_and_fused_renders(model, _box_rays(300), chunk=96)
    for k in ("rgb", "depth", "opacity"):
        torch.testing.assert_close(fast[k], ref[k], atol=1e-6, rtol=0)
    model.field.app_weight_thre = 0.0  # the fused path now colours every kept sample
    with torch.no_grad():
        every = model.render_rays(_box_rays(300), chunk=96)
    difference = float((every["rgb"] - ref["rgb"]).abs().max())
    assert 0.0 < difference < 2e-3  # the rule matters on these rays, within its bound


# ---------------------------------------------------------------------------------------------- LLFF settings
def _tv_reference(plane: torch.Tensor) -> float:
    """TensoRF's ``TVLoss`` of a [1, R, H, W] plane by explicit sums in float64: ``2 (sum_dH / count_H + sum_dW /
    count_W)`` with ``count_H = R (H - 1) W`` and ``count_W = R H (W - 1)``."""
    p = plane[0].double().tolist()
    r, h, w = len(p), len(p[0]), len(p[0][0])
    rows = sum((p[c][i + 1][j] - p[c][i][j]) ** 2 for c in range(r) for i in range(h - 1) for j in range(w))
    cols = sum((p[c][i][j + 1] - p[c][i][j]) ** 2 for c in range(r) for i in range(h) for j in range(w - 1))
    return 2.0 * (rows / (r * (h - 1) * w) + cols / (r * h * (w - 1)))


def test_plane_tv_matches_a_float64_hand_computation():
    from neural3d.fields.vm_decomposition import plane_tv

    vm = _vm(res=(5, 4, 6), comps=(2, 3, 1))
    for plane in vm.planes:
        torch.testing.assert_close(plane_tv(plane), torch.tensor(_tv_reference(plane), dtype=torch.float64))
    expected = sum(_tv_reference(p) for p in vm.planes)  # the lines are not regularised
    torch.testing.assert_close(vm.plane_tv(), torch.tensor(expected, dtype=torch.float64))
    flat = torch.full((1, 2, 3, 4), 0.7, dtype=torch.float64)
    assert float(plane_tv(flat)) == 0.0


def test_plane_tv_gradient_pulls_toward_smooth():
    from neural3d.fields.vm_decomposition import plane_tv

    plane = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    plane[0, 0, 2, 2] = 1.0  # a spike
    plane.requires_grad_(True)
    plane_tv(plane).backward()
    grad = plane.grad[0, 0]
    assert grad[2, 2] > 0  # descent lowers the spike
    for i, j in ((1, 2), (3, 2), (2, 1), (2, 3)):
        assert grad[i, j] < 0  # and raises its neighbours
    assert float(grad.abs()[0, 0]) == 0.0  # nodes without a differing neighbour feel nothing
    rough = torch.randn(1, 3, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    values = []
    for _ in range(10):  # gradient descent on the TV alone smooths a random plane
        rough.requires_grad_(True)
        tv = plane_tv(rough)
        (grad,) = torch.autograd.grad(tv, rough)
        values.append(float(tv.detach()))
        rough = (rough - 5.0 * grad).detach()
    assert values == sorted(values, reverse=True) and values[-1] < 0.5 * values[0]


def test_relu_density_is_the_scaled_relu_of_the_feature():
    torch.manual_seed(3)
    field = TensoRFField(aabb=BOX, resolution=(5, 6, 4), density_activation="relu", distance_scale=25.0)
    x = torch.rand(64, 3) * (torch.tensor(BOX[1]) - torch.tensor(BOX[0])) + torch.tensor(BOX[0])
    feature = field.density_grid.density_sum(field.box_coordinates(x))
    assert (feature < 0).any() and (feature > 0).any()
    torch.testing.assert_close(field.density(x)[:, 0], 25.0 * feature.clamp_min(0.0))
    with pytest.raises(ValueError, match="density_activation"):
        TensoRFField(aabb=BOX, resolution=(5, 6, 4), density_activation="exp")


def test_tv_losses_follow_tensorf_weights_and_decay():
    from neural3d.methods.tensorf.model import TV_SCALE

    comps = {"density_components": [2, 1, 1], "app_components": [3, 1, 1]}
    model = _model(tv_weight_density=1.0, tv_weight_app=0.5, tv_decay=0.1, tv_decay_steps=100, **comps)
    assert model.tv_weights(99) == pytest.approx((0.1, 0.05))  # weight x 0.1 ** ((step + 1) / 100)
    assert model.tv_weights(0) == pytest.approx((0.1 ** (1 / 100), 0.5 * 0.1 ** (1 / 100)))
    model.train()
    model.training_step_begin(49)
    rays = _box_rays(32)
    out = model(rays)
    batch = type("Batch", (), {"rgb": torch.rand(32, 3)})()
    losses = model.loss_dict(out, batch)
    w = 0.1**0.5
    torch.testing.assert_close(losses["loss_tv_density"], w * TV_SCALE * model.field.density_grid.plane_tv())
    torch.testing.assert_close(losses["loss_tv_app"], 0.5 * w * TV_SCALE * model.field.app_grid.plane_tv())
    assert "loss_l1" in losses  # the Blender default keeps its L1
    assert "loss_tv_density" not in _model(**comps).train().loss_dict(out, batch)  # off by default
    with pytest.raises(ConfigError, match="tv_weight"):
        _model(tv_weight_app=-1.0)


def test_llff_config_holds_tensorf_llff_facts_and_resolves_the_tv_decay():
    from neural3d.config import load_config

    path = str(Path(__file__).resolve().parents[1] / "configs" / "llff_tensorf.yaml")
    gpu, gpu_model = load_config(path, ["device=cuda"])
    cpu, cpu_model = load_config(path, ["device=cpu"])
    assert gpu.method == cpu.method == "tensorf"
    assert gpu_model.density_components == [16, 4, 4] and gpu_model.app_components == [48, 12, 12]
    assert gpu_model.density_activation == "relu" and gpu_model.view_pe == gpu_model.feature_pe == 0
    assert gpu_model.tv_weight_density == gpu_model.tv_weight_app == 1.0 and gpu_model.l1_weight_initial == 0.0
    assert gpu_model.upsample_steps == [2000, 3000, 4000, 5500] and gpu_model.shrink_step == 2500
    assert gpu_model.tv_decay_steps == gpu.trainer.steps == 25000  # resolved from the trainer
    assert cpu_model.tv_decay_steps == cpu.trainer.steps < gpu.trainer.steps
    assert cpu_model.n_voxels_final < gpu_model.n_voxels_final


def test_llff_tensorf_trains_in_the_ndc_box(tmp_path, tiny_llff_scene):
    """A few steps of ``configs/llff_tensorf.yaml`` on a tiny NDC scene: the field and the marching grid use the
    loader's NDC box, every loss is finite and the colour loss falls."""
    from neural3d.config import load_config
    from neural3d.training.trainer import Trainer

    path = str(Path(__file__).resolve().parents[1] / "configs" / "llff_tensorf.yaml")
    tiny = ["model.n_voxels_init=4096", "model.n_voxels_final=32768", "model.upsample_steps=[10]"]
    tiny += ["model.shrink_step=12", "model.sampler.resolution=16", "trainer.batch_size=256", "trainer.steps=24"]
    run = [f"data.path={tiny_llff_scene}", "data.factor=1", f"output_dir={tmp_path}", "device=cpu"]
    cfg, _ = load_config(path, [*run, *tiny, "trainer.progress=false", "trainer.checkpoint_every=0"])
    trainer = Trainer(cfg, overwrite=True)
    assert trainer.scene.ndc
    box = trainer.scene.scene_box.float()
    torch.testing.assert_close(trainer.model.field.aabb, box)
    torch.testing.assert_close(trainer.model.sampler.grid.aabbs[0].reshape(2, 3), box)
    losses = []
    for _ in range(24):
        out = trainer.train_step()
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values())
        losses.append(float(out["loss"]))
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
    model, batch = trainer.model.train(), trainer.loop.task.next_batch(24)
    terms = model.loss_dict(model(batch.rays), batch)
    assert set(terms) == {"loss_rgb", "loss_tv_density", "loss_tv_app"}  # no L1 on LLFF
