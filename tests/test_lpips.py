"""Tests for neural3d.evaluation.lpips: torchvision / lpips key layouts, properties, float64 reference pipeline."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neural3d.evaluation.lpips import LPIPS

# Independent description of the architectures (torchvision module indices of the convs).
# (index, c_in, c_out, kernel, stride, padding)
VGG_CONVS = [(i, ci, co, 3, 1, 1) for i, ci, co in [
    (0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
    (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)]]  # fmt: skip
ALEX_CONVS = [(0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
              (10, 256, 256, 3, 1, 1)]  # fmt: skip
# Reference forward programs: conv index, "pool", or "tap" (after the preceding conv's ReLU).
VGG_PROGRAM = [0, 2, "tap", "pool2", 5, 7, "tap", "pool2", 10, 12, 14, "tap", "pool2", 17, 19, 21, "tap", "pool2",
               24, 26, 28, "tap"]  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3  # fmt: skip
ALEX_PROGRAM = [0, "tap", "pool3", 3, "tap", "pool3", 6, "tap", 8, "tap", 10, "tap"]  # relu1 .. relu5
CHANNELS = {"vgg": [64, 128, 256, 512, 512], "alex": [64, 192, 384, 256, 256]}
CONVS = {"vgg": VGG_CONVS, "alex": ALEX_CONVS}
PROGRAMS = {"vgg": VGG_PROGRAM, "alex": ALEX_PROGRAM}
SIZES = {"vgg": (32, 36), "alex": (64, 67)}


def torchvision_state_dict(net: str, seed: int = 0) -> dict:
    """Random weights in torchvision's key layout (classifier entries are small stand-ins)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, ci, co, k, _, _ in CONVS[net]:
        sd[f"features.{i}.weight"] = torch.randn(co, ci, k, k, generator=g) * (2.0 / (ci * k * k)) ** 0.5
        sd[f"features.{i}.bias"] = 0.01 * torch.randn(co, generator=g)
    for i in (0, 3, 6) if net == "vgg" else (1, 4, 6):
        sd[f"classifier.{i}.weight"] = torch.randn(4, 3, generator=g)
        sd[f"classifier.{i}.bias"] = torch.randn(4, generator=g)
    return sd


def lpips_linear_state_dict(net: str, seed: int = 1) -> dict:
    """Random non-negative heads in the lpips package's key layout."""
    g = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": 1e-2 * torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(CHANNELS[net])}


def reference_lpips(net: str, backbone: dict, linear: dict, x: np.ndarray, y: np.ndarray) -> float:
    """Explicit float64 LPIPS for single images [H, W, 3] in [0, 1]."""
    convs = {c[0]: c for c in CONVS[net]}
    shift = np.array([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    scale = np.array([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)

    def taps(img):
        h = torch.from_numpy(((2 * img.transpose(2, 0, 1)[None] - 1) - shift) / scale)
        out = []
        for op in PROGRAMS[net]:
            if op == "tap":
                out.append(h[0].numpy())
            elif op == "pool2":
                h = F.max_pool2d(h, 2, 2)
            elif op == "pool3":
                h = F.max_pool2d(h, 3, 2)
            else:
                _, _, _, _, s, p = convs[op]
                w, b = backbone[f"features.{op}.weight"].double(), backbone[f"features.{op}.bias"].double()
                h = torch.relu(F.conv2d(h, w, b, stride=s, padding=p))
        return out

    total = 0.0
    for k, (f0, f1) in enumerate(zip(taps(x), taps(y))):  # [C, h, w]
        n0 = f0 / (np.sqrt((f0**2).sum(0, keepdims=True)) + 1e-10)
        n1 = f1 / (np.sqrt((f1**2).sum(0, keepdims=True)) + 1e-10)
        w = linear[f"lin{k}.model.1.weight"].double().numpy().reshape(-1)
        total += np.einsum("c,chw->hw", w, (n0 - n1) ** 2).mean()
    return float(total)


@pytest.fixture(scope="module", params=["vgg", "alex"])
def loaded(request, tmp_path_factory):
    net = request.param
    d = tmp_path_factory.mktemp(f"lpips_{net}")
    backbone, linear = torchvision_state_dict(net), lpips_linear_state_dict(net)
    torch.save(backbone, d / "backbone.pth")
    torch.save(linear, d / "lin.pth")
    model = LPIPS.from_files(net, d / "backbone.pth", d / "lin.pth")
    return net, model, backbone, linear, d


def _images(net, n=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SIZES[net], 3, generator=g, dtype=dtype)


def test_loads_exact_key_layouts(loaded):
    net, model, backbone, linear, _ = loaded
    feats = model.net.features.state_dict()
    expected = {k[len("features.") :] for k in backbone if k.startswith("features.")}
    assert set(feats) == expected
    for k, v in feats.items():
        assert torch.equal(v, backbone["features." + k])
    for k, lin in enumerate(model.lins):
        assert torch.equal(lin.model[1].weight, linear[f"lin{k}.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters())


def test_rejects_bad_state_dicts(loaded):
    net, model, backbone, linear, _ = loaded
    missing = {k: v for k, v in backbone.items() if k != "features.0.bias"}
    with pytest.raises(ValueError, match="missing keys.*0.bias"):
        model.load_backbone_state_dict(missing)
    with pytest.raises(ValueError, match="unexpected"):
        model.load_backbone_state_dict({**backbone, "features.1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected keys in backbone"):
        model.load_backbone_state_dict({**backbone, "net.slice1.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="wrong shapes"):
        model.load_linear_state_dict({**linear, "lin0.model.1.weight": torch.zeros(1, 3, 1, 1)})
    with pytest.raises(ValueError, match="missing keys"):
        model.load_linear_state_dict({k: v for k, v in linear.items() if not k.startswith("lin4")})


def test_missing_files_explain_where_to_get_them(tmp_path):
    lin = tmp_path / "vgg.pth"
    torch.save(lpips_linear_state_dict("vgg"), lin)
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        LPIPS.from_files("vgg", tmp_path / "nope.pth", lin)
    with pytest.raises(FileNotFoundError, match="weights/v0.1/alex.pth"):
        LPIPS.from_files("alex", lin, tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="unknown net"):
        LPIPS.from_files("squeeze", lin, lin)


def test_identity_symmetry_positivity(loaded):
    net, model, *_ = loaded
    x, y = _images(net, seed=1), _images(net, seed=2)
    assert torch.equal(model(x, x), torch.zeros(2))
    d_xy, d_yx = model(x, y), model(y, x)
    assert d_xy.shape == (2,)
    torch.testing.assert_close(d_xy, d_yx)
    assert bool((d_xy > 0).all())
    # a small perturbation is closer than an unrelated image
    assert bool((model(x, (x + 0.01 * (y - 0.5)).clamp(0, 1)) < d_xy).all())


def test_matches_float64_reference(loaded):
    net, model, backbone, linear, _ = loaded
    model64 = LPIPS(net=net).double()
    model64.load_backbone_state_dict(backbone)
    model64.load_linear_state_dict(linear)
    x, y = _images(net, seed=3, dtype=torch.float64), _images(net, seed=4, dtype=torch.float64)
    out = model64(x, y)
    for i in range(2):
        ref = reference_lpips(net, backbone, linear, x[i].numpy(), y[i].numpy())
        assert abs(out[i].item() - ref) < 1e-10 * max(1.0, abs(ref))
    # float32 model agrees to float32 precision
    torch.testing.assert_close(model(x.float(), y.float()), out.float(), rtol=1e-4, atol=1e-6)


def test_batch_shape_and_input_gradient(loaded):
    net, model, *_ = loaded
    x = _images(net, n=6, seed=5).reshape(2, 3, *SIZES[net], 3)
    y = _images(net, n=6, seed=6).reshape(2, 3, *SIZES[net], 3)
    out = model(x, y)
    assert out.shape == (2, 3)
    torch.testing.assert_close(out[1, 2], model(x[1, 2], y[1, 2]))
    x.requires_grad_(True)
    model(x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="equal shape"):
        model(x[0], y)
