"""GNT's fused inference path (neural3d/methods/gnt/fused.py) against the reference arithmetic and the float64
re-implementation of the official code (tests/gnt_reference.py): network and whole renders at 64 and 192 samples,
rendering in different chunks and groups, folded weights following weight updates, training untouched."""

from __future__ import annotations

import pytest
import torch
from gnt_reference import random_official_checkpoint, ref_gnt, ref_project, ref_rays, ref_resunet, ref_z_vals
from test_gnt_model import rig

from neural3d.core.rays import generate_rays
from neural3d.methods.base import SceneInfo
from neural3d.methods.gnt import SourceViews, cameras_from_records, cameras_to_records, official_to_state_dict
from neural3d.methods.gnt.fused import fold_network
from neural3d.methods.gnt.model import GNTModel
from neural3d.methods.gnt.official import config_from_official
from neural3d.methods.gnt.transformer import GNTNetwork


def network_inputs(n_rays: int, n_samples: int, n_views: int, seed: int = 1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    rgb_feat = torch.rand(n_rays, n_samples, n_views, 35, generator=g).to(dtype)
    ray_diff = torch.nn.functional.normalize(torch.randn(n_rays, n_samples, n_views, 4, generator=g), dim=-1)
    mask = (torch.rand(n_rays, n_samples, n_views, 1, generator=g) > 0.3).float()
    mask[0, :5] = 0  # samples seen by no view: the official code then averages all views uniformly
    points = torch.randn(n_rays, n_samples, 3, generator=g)
    ray_dirs = torch.randn(n_rays, 3, generator=g)
    return rgb_feat, ray_diff.to(dtype), mask.to(dtype), points.to(dtype), ray_dirs.to(dtype)


def official_network(depth: int, seed: int) -> tuple[GNTNetwork, dict]:
    ckpt = random_official_checkpoint(depth, seed=seed)
    model = official_model(ckpt)
    return model.renderer, ckpt


def official_model(ckpt: dict, **overrides) -> GNTModel:
    cfg = config_from_official(ckpt, **overrides)
    model = GNTModel(cfg, scene=SceneInfo(torch.zeros(2, 3), 0.1, 10.0))
    model.load_state_dict(official_to_state_dict(ckpt), strict=True)
    return model.eval()


@pytest.mark.parametrize("n_samples", [64, 192])
def test_fused_network_equals_reference_and_float64_official(n_samples):
    net, ckpt = official_network(4, seed=3)
    inputs = network_inputs(3, n_samples, 6)
    with torch.no_grad():
        fused = net.run(*inputs)
        reference = net.reference(*inputs)
    P = {k: v.double() for k, v in ckpt["net_coarse"].items()}
    rgb64, w64 = ref_gnt(P, *(x.double() for x in inputs), depth=4)
    for got, ref, want in zip(fused, reference, (rgb64, w64)):
        assert torch.allclose(got, ref, atol=1e-5, rtol=0)
        assert torch.allclose(got.double(), want, atol=1e-5, rtol=0)
    # the fully masked samples take part: uniform weights over views, as the official softmax of equal -1e9s
    assert torch.isfinite(fused[0]).all() and torch.isfinite(fused[1]).all()


def test_fused_path_in_float64_equals_the_official_function_to_rounding():
    """In float64 the only differences are the regrouping (and exp(-80) for masked views): far below 1e-10."""
    net, ckpt = official_network(4, seed=4)
    net = net.double()
    inputs = network_inputs(2, 64, 5, seed=2, dtype=torch.float64)
    with torch.no_grad():
        rgb, w = net.run(*inputs)
    P = {k: v.double() for k, v in ckpt["net_coarse"].items()}
    rgb64, w64 = ref_gnt(P, *inputs, depth=4)
    assert torch.allclose(rgb, rgb64, atol=1e-10, rtol=0) and torch.allclose(w, w64, atol=1e-12, rtol=0)


def test_fused_path_only_without_gradients_in_eval_mode(monkeypatch):
    import neural3d.methods.gnt.transformer as transformer

    net, _ = official_network(2, seed=5)
    calls = []
    real = transformer.fused_forward
    monkeypatch.setattr(transformer, "fused_forward", lambda *a: calls.append(1) or real(*a))
    inputs = network_inputs(2, 8, 3)
    rgb, _ = net.run(*inputs)  # eval mode, gradients on: the reference (trainable, differentiable)
    assert rgb.requires_grad and not calls
    net.train()
    with torch.no_grad():
        net.run(*inputs)  # training mode: dropout, the reference
    assert not calls
    net.eval()
    with torch.no_grad():
        net.run(*inputs)
    assert calls == [1]
    net.fused_inference = False
    with torch.no_grad():
        net.run(*inputs)
    assert calls == [1]


def test_folded_weights_follow_weight_updates():
    net, _ = official_network(2, seed=6)
    inputs = network_inputs(2, 16, 4)
    with torch.no_grad():
        net.run(*inputs)
        first = net.folded_weights()
        assert net.folded_weights() is first  # cached while the weights stay
        net.view_blocks[1].attn.k_fc.weight.mul_(1.5)  # an in-place update, like an optimizer step
        rgb, w = net.run(*inputs)
        assert net.folded_weights() is not first
        ref_rgb, ref_w = net.reference(*inputs)
    assert torch.allclose(rgb, ref_rgb, atol=1e-5, rtol=0) and torch.allclose(w, ref_w, atol=1e-5, rtol=0)
    net.load_state_dict({k: v + 0.01 for k, v in net.state_dict().items()})
    with torch.no_grad():
        rgb, _ = net.run(*inputs)
        assert torch.allclose(rgb, net.reference(*inputs)[0], atol=1e-5, rtol=0)


def test_folded_view_maps_are_the_products_of_the_layers():
    net, _ = official_network(2, seed=8)
    attn = net.view_blocks[0].attn
    f = fold_network(net).views[0]
    C, H = 64, 8
    assert f.token_w.shape == (C + H + 1, C + H + 1) and f.logit_w.shape == (C, H + 1)
    assert torch.allclose(f.token_w[:C, :C], attn.v_fc.weight @ attn.k_fc.weight, atol=1e-6)
    assert torch.allclose(f.token_w[C : C + H, :C], attn.attn_fc[0].weight @ attn.k_fc.weight, atol=1e-6)
    assert torch.equal(f.token_w[-1], torch.eye(C + H + 1)[-1])  # the constant 1 carries the biases
    assert torch.allclose(f.query_w, attn.attn_fc[0].weight @ attn.q_fc.weight, atol=1e-6)


def official_scene(n_views: int = 3):
    eyes = [(3.0, 0.4, 1.0), (2.6, -1.2, 1.1), (2.8, 1.5, 0.6), (3.2, -0.3, 1.6), (2.9, 0.9, 1.3)][: n_views + 1]
    cams = rig(eyes, size=(24, 20), f=22.0)
    rec = cameras_to_records(cams).double()
    g = torch.Generator().manual_seed(2)
    src_imgs = torch.rand(n_views, 20, 24, 3, generator=g)
    return rec, src_imgs


@pytest.mark.parametrize("n_samples", [64, 192])
def test_fused_render_equals_reference_render_and_official_pipeline(n_samples):
    """Whole renders (official conventions: records, integer pixel centres, inverse depth): fused vs reference
    vs the float64 official pipeline, rgb and depth to 1e-5."""
    ckpt = random_official_checkpoint(4, seed=9)
    fused = official_model(ckpt, n_samples=n_samples)
    reference = official_model(ckpt, n_samples=n_samples, fused_inference=False)
    rec, src_imgs = official_scene()
    pixels = torch.tensor([[0, 0], [5, 7], [12, 10], [23, 19], [17, 3], [9, 15]], dtype=torch.float64)
    near, far = 1.5, 4.5
    rays = generate_rays(
        cameras_from_records(rec[:1]), torch.zeros(len(pixels), dtype=torch.long), pixels.float(), near, far
    )
    views = SourceViews(src_imgs, cameras_from_records(rec[1:]), pixel_center=0.0)
    with torch.no_grad():
        a = fused(rays, views)
        b = reference(rays, views)
    P_f = {k: v.double() for k, v in ckpt["feature_net"].items()}
    P_n = {k: v.double() for k, v in ckpt["net_coarse"].items()}
    feats = ref_resunet(P_f, src_imgs.double().permute(0, 3, 1, 2))
    o, d = ref_rays(rec[0], pixels)
    z = ref_z_vals(near, far, n_samples)[None].expand(len(pixels), -1)
    pts = o[:, None] + z[..., None] * d[:, None]
    rgb_ref, w_ref = ref_gnt(P_n, *ref_project(pts, rec[0], src_imgs.double(), rec[1:], feats), pts, d, depth=4)
    assert torch.allclose(a.rgb, b.rgb, atol=1e-5, rtol=0) and torch.allclose(a.depth, b.depth, atol=1e-5, rtol=0)
    # against float64 the float32 feature network and projection already differ by ~1e-5 (the reference path
    # as well, 2.7e-5 here: test_full_pipeline_matches_official_numerics), so the bound is the reference path's
    assert torch.allclose(a.rgb.double(), rgb_ref.clamp(0, 1), atol=1e-4, rtol=0)
    assert torch.allclose(a.depth[:, 0].double(), (w_ref * z).sum(-1), atol=1e-4, rtol=0)
    assert torch.allclose(a.weights, b.weights, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_rendering_does_not_depend_on_chunks_or_groups(fused):
    ckpt = random_official_checkpoint(2, seed=10)
    rec, src_imgs = official_scene()
    rays = generate_rays(
        cameras_from_records(rec[:1]),
        torch.zeros(60, dtype=torch.long),
        torch.stack([torch.arange(60) % 24, torch.arange(60) // 24 * 7], -1).float(),
        1.5,
        4.5,
    )
    views = SourceViews(src_imgs, cameras_from_records(rec[1:]), pixel_center=0.0)
    outs = []
    for chunk, rows in ((60, 0), (7, 0), (60, 64 * 3), (13, 5 * 64 * 3), (60, 1)):
        model = official_model(ckpt, n_samples=64, n_fine=16, fused_inference=fused, pass_view_rows=rows)
        outs.append(model.render_rays(rays, chunk=chunk, context=views))
    for out in outs[1:]:
        for k in ("rgb", "depth", "opacity"):
            assert torch.allclose(out[k], outs[0][k], atol=1e-5, rtol=0), k  # matmul rounding varies with row counts


def test_grouped_pass_keeps_training_gradients_whole():
    """With gradients the network sees the caller's whole chunk (no grouping), and the fused path is off."""
    ckpt = random_official_checkpoint(2, seed=12)
    model = official_model(ckpt, n_samples=16, pass_view_rows=1).train()
    rec, src_imgs = official_scene()
    rays = generate_rays(
        cameras_from_records(rec[:1]), torch.zeros(4, dtype=torch.long), torch.rand(4, 2) * 20, 1.5, 4.5
    )
    seen = []
    model.renderer.register_forward_hook(lambda m, args, out: seen.append(out.rgb.shape[0]))
    out = model(rays, SourceViews(src_imgs, cameras_from_records(rec[1:]), pixel_center=0.0))
    out.rgb.sum().backward()
    assert seen == [4] and model.renderer.feat_fc[0].weight.grad is not None


@pytest.mark.parametrize("backends", ["onednn+kernel", "torch"])
@pytest.mark.parametrize("attend_rows", [2560, 7])
def test_cpu_backends_and_attention_blocks_give_the_reference(backends, attend_rows, monkeypatch):
    """The fused path with oneDNN products and the C view attention in blocks of samples (whole blocks and a
    tail), and with both switched off (PyTorch arithmetic, as on a GPU): the reference and float64 to 1e-5."""
    from neural3d.fields.backends import cpu_linear, cpu_view_attention
    from neural3d.methods.gnt import fused

    monkeypatch.setattr(fused, "ATTEND_ROWS", attend_rows)
    if backends == "torch":
        monkeypatch.setattr(cpu_view_attention, "applies", lambda y: False)
        monkeypatch.setitem(cpu_linear._state, "enabled", False)
    net, ckpt = official_network(2, seed=13)
    inputs = network_inputs(5, 64, 7, seed=4)  # 320 samples x 7 views: products above cpu_linear.MIN_FLOPS
    with torch.no_grad():
        fused_out = net.run(*inputs)
        reference = net.reference(*inputs)
    P = {k: v.double() for k, v in ckpt["net_coarse"].items()}
    want = ref_gnt(P, *(x.double() for x in inputs), depth=2)
    for got, ref, exact in zip(fused_out, reference, want):
        assert torch.allclose(got, ref, atol=1e-5, rtol=0)
        assert torch.allclose(got.double(), exact, atol=1e-5, rtol=0)


def test_cpu_backends_are_used_on_float32_cpu_only(monkeypatch):
    from neural3d.fields.backends import cpu_linear, cpu_view_attention

    if not (cpu_linear.enabled() and cpu_view_attention.available()):
        pytest.skip("no oneDNN linear op or no C compiler here")
    calls = {"kernel": 0, "onednn": 0}
    kernel, onednn = cpu_view_attention.view_attention, cpu_linear._onednn_linear
    monkeypatch.setattr(
        cpu_view_attention,
        "view_attention",
        lambda *a, **k: calls.__setitem__("kernel", calls["kernel"] + 1) or kernel(*a, **k),
    )
    monkeypatch.setattr(
        cpu_linear, "_onednn_linear", lambda *a: calls.__setitem__("onednn", calls["onednn"] + 1) or onednn(*a)
    )
    net, _ = official_network(2, seed=14)
    inputs = network_inputs(4, 64, 6)
    with torch.no_grad():
        net.double().run(*(x.double() for x in inputs))
        assert calls == {"kernel": 0, "onednn": 0}
        net.float().run(*inputs)
    assert calls["kernel"] > 0 and calls["onednn"] > 0
