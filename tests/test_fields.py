"""MLP, contraction, NeRFField (nerf-pytorch layout) and NGPField (nerfacc NGPRadianceField)."""

import math

import pytest
import torch
import torch.nn.functional as F

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.fields import MLP, FieldOutputs, NeRFField, NGPField, SceneBox, contract, normalize_positions, trunc_exp


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


# ----------------------------------------------------------------------------------------- MLP
def test_mlp_shapes_bias_and_activations():
    mlp = MLP(in_dim=5, out_dim=3, widths=[16, 8], output_activation="sigmoid")
    assert [(l.in_features, l.out_features) for l in mlp.layers] == [(5, 16), (16, 8), (8, 3)]
    out = mlp(torch.randn(2, 4, 5))
    assert out.shape == (2, 4, 3) and out.min() > 0 and out.max() < 1
    fused = MLP.fully_fused(in_dim=31, out_dim=3, n_neurons=64, n_hidden_layers=2)
    assert len(fused.layers) == 3 and all(l.bias is None for l in fused.layers)
    assert sum(p.numel() for p in fused.parameters()) == 31 * 64 + 64 * 64 + 64 * 3
    with pytest.raises(ValueError, match="mlp.py"):
        MLP(in_dim=3, out_dim=1, activation="gelu-ish")
    with pytest.raises(ValueError, match="mlp.py"):
        mlp(torch.randn(3, 4))


def test_mlp_matches_manual_forward():
    mlp = MLP(in_dim=3, out_dim=2, widths=[4], activation="relu")
    x = torch.randn(6, 3)
    w0, b0, w1, b1 = mlp.layers[0].weight, mlp.layers[0].bias, mlp.layers[1].weight, mlp.layers[1].bias
    torch.testing.assert_close(mlp(x), torch.relu(x @ w0.T + b0) @ w1.T + b1)


def test_mlp_without_gradients_activates_in_place_to_the_same_values():
    mlp = MLP(in_dim=7, out_dim=3, widths=[32, 16], output_activation="sigmoid")
    x = torch.randn(50, 7)
    with_grad = mlp(x)
    assert with_grad.requires_grad
    with torch.no_grad():
        hidden = mlp.layers[0](x)
        in_place = mlp(x)
    assert torch.equal(in_place, with_grad.detach()) and not in_place.requires_grad
    assert torch.equal(mlp.layers[0](x).detach(), hidden)  # the input and the layers are untouched


# --------------------------------------------------------------------------------- contraction
@pytest.mark.parametrize("order", ["inf", "l2"])
def test_contraction_identity_continuity_and_range(order):
    g = torch.Generator().manual_seed(0)
    d = torch.randn(500, 3, generator=g, dtype=torch.float64)
    ord_ = math.inf if order == "inf" else 2
    d = d / torch.linalg.vector_norm(d, ord=ord_, dim=-1, keepdim=True)  # unit sphere of the norm
    inner = d * torch.rand(500, 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(contract(inner, order), inner, rtol=0, atol=0)
    eps = 1e-7
    torch.testing.assert_close(contract(d * (1 + eps), order), contract(d * (1 - eps), order), rtol=0, atol=1e-6)
    far = d * torch.logspace(0, 8, 500, dtype=torch.float64)[:, None]
    c = contract(far, order)
    norms = torch.linalg.vector_norm(c, ord=ord_, dim=-1)
    assert norms.max() < 2 and (norms[1:] >= norms[:-1] - 1e-12).all()  # monotone in radius
    torch.testing.assert_close(
        norms, torch.where(norms > 1, 2 - 1 / torch.linalg.vector_norm(far, ord=ord_, dim=-1), norms)
    )


def test_contraction_hand_values():
    x = torch.tensor([[2.0, 0.0, 0.0], [2.0, 2.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(contract(x, "inf"), torch.tensor([[1.5, 0, 0], [1.5, 1.5, 0]], dtype=torch.float64))
    r = 2 * math.sqrt(2)
    k = (2 - 1 / r) / r * 2
    torch.testing.assert_close(contract(x, "l2"), torch.tensor([[1.5, 0, 0], [k, k, 0]], dtype=torch.float64))
    zero = torch.zeros(1, 3, requires_grad=True)
    contract(zero, "l2").sum().backward()
    assert torch.isfinite(zero.grad).all()
    with pytest.raises(ValueError, match="contraction.py"):
        contract(x, "l1")


def test_scene_box_and_normalize_positions():
    box = SceneBox(torch.tensor([[-1.0, 0.0, 2.0], [3.0, 1.0, 4.0]]))
    pts = torch.tensor([[-1.0, 0.0, 2.0], [3.0, 1.0, 4.0], [1.0, 0.5, 3.0]])
    torch.testing.assert_close(box.normalize(pts), torch.tensor([[0.0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5]]))
    torch.testing.assert_close(
        SceneBox.ndc().normalize(torch.tensor([[-1.0, 0.0, 1.0]])), torch.tensor([[0.0, 0.5, 1.0]])
    )
    far = torch.tensor([[1e6, -1e6, 3.0], [1.0, 0.5, 3.0]])
    u = normalize_positions(far, box.aabb, "inf")
    assert (u >= 0).all() and (u <= 1).all()
    torch.testing.assert_close(u[1], torch.tensor([0.5, 0.5, 0.5]))  # box centre -> cube centre
    corner = normalize_positions(torch.tensor([[3.0, 1.0, 4.0]]), box.aabb, "l2")  # box corner: |.|_2 = sqrt 3
    torch.testing.assert_close(corner, (contract(torch.ones(1, 3), "l2") + 2) / 4)
    with pytest.raises(ValueError, match="contraction.py"):
        SceneBox(torch.zeros(2, 3))


# ------------------------------------------------------------------------------------ NeRF field
def _nerf_param_count(D=8, W=256, in_pts=63, in_views=27, skips=(4,)):
    n = in_pts * W + W
    n += sum(((W + in_pts) if i in skips else W) * W + W for i in range(D - 1))
    n += (in_views + W) * (W // 2) + W // 2  # views_linears.0
    n += W * W + W + W + 1 + (W // 2) * 3 + 3  # feature, alpha, rgb
    return n


def test_nerf_field_param_count_and_state_dict_layout():
    field = NeRFField()
    assert _nerf_param_count() == 595844
    assert sum(p.numel() for p in field.parameters()) == 595844
    expected = {f"pts_linears.{i}.weight": (256, 63 if i == 0 else (319 if i == 5 else 256)) for i in range(8)}
    expected.update({f"pts_linears.{i}.bias": (256,) for i in range(8)})
    expected.update(
        {
            "views_linears.0.weight": (128, 283),
            "views_linears.0.bias": (128,),
            "feature_linear.weight": (256, 256),
            "feature_linear.bias": (256,),
            "alpha_linear.weight": (1, 256),
            "alpha_linear.bias": (1,),
            "rgb_linear.weight": (3, 128),
            "rgb_linear.bias": (3,),
        }
    )
    assert {k: tuple(v.shape) for k, v in field.state_dict().items()} == expected
    no_dirs = NeRFField(use_viewdirs=False, output_ch=5)  # nerf-pytorch: input_ch_views = 0 without viewdirs
    assert tuple(no_dirs.views_linears[0].weight.shape) == (128, 256)
    assert tuple(no_dirs.output_linear.weight.shape) == (5, 256)


def _nerf_pytorch_forward(field: NeRFField, pts: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """nerf-pytorch ``NeRF.forward`` on ``torch.cat([embed(pts), embeddirs(dirs)])`` with the field's weights."""

    def embed(x, multires):
        out = [x]
        for freq in 2.0 ** torch.linspace(0.0, multires - 1, steps=multires):
            out += [torch.sin(x * freq), torch.cos(x * freq)]
        return torch.cat(out, -1)

    input_pts, input_views = embed(pts, 10), embed(dirs, 4)
    h = input_pts
    for i, layer in enumerate(field.pts_linears):
        h = F.relu(F.linear(h, layer.weight, layer.bias))
        if i in [4]:
            h = torch.cat([input_pts, h], -1)
    alpha = F.linear(h, field.alpha_linear.weight, field.alpha_linear.bias)
    feature = F.linear(h, field.feature_linear.weight, field.feature_linear.bias)
    h = torch.cat([feature, input_views], -1)
    h = F.relu(F.linear(h, field.views_linears[0].weight, field.views_linears[0].bias))
    rgb = F.linear(h, field.rgb_linear.weight, field.rgb_linear.bias)
    return torch.cat([rgb, alpha], -1)


def test_nerf_field_matches_nerf_pytorch_forward_any_batch_shape():
    torch.manual_seed(0)
    field = NeRFField().double()
    pts = torch.randn(2, 3, 5, 3, dtype=torch.float64)
    dirs = _unit(torch.randn(2, 3, 5, 3, dtype=torch.float64))
    raw = field.raw(pts, dirs)
    assert raw.shape == (2, 3, 5, 4)
    torch.testing.assert_close(
        raw, _nerf_pytorch_forward(field, pts.reshape(-1, 3), dirs.reshape(-1, 3)).reshape(2, 3, 5, 4)
    )
    density, rgb = field.query(pts, dirs)
    assert density.shape == (2, 3, 5, 1) and rgb.shape == (2, 3, 5, 3)
    torch.testing.assert_close(density, F.relu(raw[..., 3:]))
    torch.testing.assert_close(rgb, torch.sigmoid(raw[..., :3]))
    torch.testing.assert_close(field.density(pts), density)
    torch.testing.assert_close(field.raw_density(pts), raw[..., 3:])


def test_nerf_field_no_viewdirs_and_bad_dirs():
    field = NeRFField(depth=3, width=16, skips=(1,), use_viewdirs=False)
    pts = torch.randn(5, 3)
    raw = field.raw(pts, torch.zeros(5, 3))
    torch.testing.assert_close(raw, field.output_linear(field._trunk(pts)))
    torch.testing.assert_close(field.density(pts), F.relu(raw[..., 3:]))
    with pytest.raises(ValueError, match="nerf_field.py"):
        NeRFField(depth=2, width=8).query(torch.randn(4, 3), torch.randn(5, 3))


def test_nerf_field_gradients_flow():
    field = NeRFField(depth=4, width=32, skips=(2,))
    d, c = field.query(torch.randn(64, 3), _unit(torch.randn(64, 3)))
    (d.sum() + c.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())


# ------------------------------------------------------------------------------------- NGP field
def _tiny_ngp(**kw) -> NGPField:
    cfg = {
        "aabb": [[-1.0] * 3, [1.0] * 3],
        "n_levels": 8,
        "log2_hashmap_size": 14,
        "base_resolution": 4,
        "max_resolution": 64,
        "hidden_dim": 32,
    }
    cfg.update(kw)
    return NGPField(**cfg)


def test_trunc_exp_value_and_clamped_gradient():
    x = torch.tensor([0.0, 1.0, 20.0], dtype=torch.float64, requires_grad=True)
    y = trunc_exp(x)
    torch.testing.assert_close(y, torch.exp(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.exp(torch.tensor([0.0, 1.0, 15.0], dtype=torch.float64)))


def test_ngp_field_shapes_zero_outside_and_structure():
    torch.manual_seed(0)
    field = _tiny_ngp()
    assert [l.out_features for l in field.mlp_base.layers] == [32, 16]
    assert [l.in_features for l in field.mlp_head.layers] == [16 + 15, 32, 32]
    pos = torch.rand(4, 6, 3) * 4 - 2  # many points outside [-1, 1]^3
    dirs = _unit(torch.randn(4, 6, 3))
    density, rgb = field.query(pos, dirs)
    assert density.shape == (4, 6, 1) and rgb.shape == (4, 6, 3)
    outside = (pos.abs() >= 1).any(-1, keepdim=True)
    assert outside.any() and (~outside).any()
    assert (density[outside] == 0).all() and (density[~outside] > 0).all()
    assert rgb.min() > 0 and rgb.max() < 1
    torch.testing.assert_close(field.density(pos), density)
    # Freshly initialised grid ~ 0 -> raw density ~ 0 -> density ~ exp(-1) inside (nerfacc's bias).
    assert density[~outside].sub(math.exp(-1)).abs().max() < 0.5


def test_ngp_field_contracted_scene_has_density_everywhere():
    field = _tiny_ngp(contraction="inf", aabb=SceneBox.ndc())
    far = torch.tensor([[50.0, -3.0, 7.0], [0.1, 0.2, 0.3], [-1e4, 1e4, 0.0]])
    assert (field.density(far) > 0).all()


def test_ngp_field_gradients_flow_and_forward_with_samples():
    torch.manual_seed(0)
    field = _tiny_ngp()
    n_rays, n_samples = 8, 5
    dirs = torch.randn(n_rays, 3)
    rays = RayBundle(
        origins=torch.zeros(n_rays, 3),
        directions=dirs,
        viewdirs=_unit(dirs),
        nears=torch.zeros(n_rays),
        fars=torch.full((n_rays,), 0.5),
    )
    edges = torch.linspace(0.0, 0.5, n_samples + 1).expand(n_rays, -1)
    out = field(RaySamples.from_edges(rays, edges))
    assert isinstance(out, FieldOutputs)
    assert out.density.shape == (n_rays, n_samples, 1) and out.rgb.shape == (n_rays, n_samples, 3)
    (out.density.sum() + out.rgb.sum()).backward()
    assert field.encoding.params.grad.abs().sum() > 0
    for name, p in field.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_ngp_field_fits_sphere_density():
    torch.manual_seed(0)
    field = _tiny_ngp()
    opt = torch.optim.Adam(field.parameters(), lr=1e-2, eps=1e-15)

    def target(x):
        return 5.0 * torch.sigmoid(30.0 * (0.5 - x.norm(dim=-1, keepdim=True)))

    for _ in range(150):
        x = torch.rand(1024, 3) * 2 - 1
        loss = (field.density(x) - target(x)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.rand(4096, 3) * 2 - 1
    with torch.no_grad():
        err = (field.density(x) - target(x)).abs()
    baseline = (target(x) - target(x).mean()).abs().mean()  # mean-absolute error of the best constant (~0.6)
    assert err.mean() < 0.05 and err.mean() < 0.05 * baseline


def test_ngp_field_bad_args():
    with pytest.raises(ValueError, match="ngp_field.py"):
        _tiny_ngp(aabb=[[1.0] * 3, [-1.0] * 3])
    with pytest.raises(ValueError, match="ngp_field.py"):
        _tiny_ngp(contraction="sphere")
    with pytest.raises(ValueError, match="ngp_field.py"):
        _tiny_ngp().query(torch.rand(4, 3), torch.rand(5, 3))
