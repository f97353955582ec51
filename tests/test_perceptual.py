"""LVSM's official VGG-19 perceptual loss: MatConvNet file layout, the loss formula, and its use in LVSM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neural3d.evaluation.perceptual import VGG19_LAYERS, VGGPerceptualLoss, read_matconvnet_vgg19

CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]  # the official code's layer_indices


def _write_matconvnet(path, seed=0):
    """A file in the layout of imagenet-vgg-verydeep-19.mat: ``layers`` cell of structs {name, type, weights}."""
    import scipy.io

    rng = np.random.default_rng(seed)
    layers = np.empty((1, len(VGG19_LAYERS) + 6), dtype=object)  # + the classifier layers the real file holds
    weights = {}
    for i in range(layers.shape[1]):
        spec = VGG19_LAYERS[i] if i < len(VGG19_LAYERS) else ("fc",)
        if spec[0] == "conv":
            _, c_in, c_out, k, _, _ = spec
            w = (rng.standard_normal((k, k, c_in, c_out)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
            b = (rng.standard_normal((c_out, 1)) * 0.1).astype(np.float32)
            cell = np.empty((1, 2), dtype=object)
            cell[0, 0], cell[0, 1] = w, b
            layers[0, i] = {"name": f"conv{i}", "type": "conv", "weights": cell, "pad": np.ones((1, 4))}
            weights[i] = (w, b)
        else:
            layers[0, i] = {"name": f"{spec[0]}{i}", "type": spec[0]}
    scipy.io.savemat(path, {"layers": layers})
    return weights


def test_matconvnet_layout_reads_as_the_official_code_does(tmp_path):
    import scipy.io

    path = tmp_path / "imagenet-vgg-verydeep-19.mat"
    weights = _write_matconvnet(path)
    state = read_matconvnet_vgg19(path)
    assert sorted(int(k.split(".")[1]) for k in state if k.endswith("weight")) == CONV_INDICES
    official_layers = scipy.io.loadmat(path)["layers"][0]
    for i in CONV_INDICES:
        w_official = torch.from_numpy(official_layers[i][0][0][2][0][0]).permute(3, 2, 0, 1)  # the official indexing
        assert torch.equal(state[f"features.{i}.weight"], w_official)
        assert torch.equal(state[f"features.{i}.weight"], torch.from_numpy(weights[i][0]).permute(3, 2, 0, 1))
        assert torch.equal(state[f"features.{i}.bias"], torch.from_numpy(weights[i][1]).reshape(-1))
    loss = VGGPerceptualLoss.from_file(path)
    assert isinstance(loss.features[4], torch.nn.AvgPool2d) and len(loss.features) == 32
    assert not any(p.requires_grad for p in loss.parameters())


def _reference_loss(state, pred, target):
    """The official formula in float64, written out block by block (features[0:4], [4:9], [9:14], [14:23], [23:32])."""
    mean = torch.tensor([123.6800, 116.7790, 103.9390], dtype=torch.float64).reshape(1, 3, 1, 1)

    def run(x, lo, hi):
        for i in range(lo, hi):
            kind = VGG19_LAYERS[i][0]
            if kind == "conv":
                x = F.conv2d(x, state[f"features.{i}.weight"].double(), state[f"features.{i}.bias"].double(), padding=1)
            elif kind == "relu":
                x = x.clamp_min(0)
            else:
                x = F.avg_pool2d(x, 2, 2)
        return x

    x = pred.double().permute(0, 3, 1, 2) * 255.0 - mean
    y = target.double().permute(0, 3, 1, 2) * 255.0 - mean
    e = [(x - y).abs().mean()]
    for (lo, hi), scale in zip(
        [(0, 4), (4, 9), (9, 14), (14, 23), (23, 32)], [1 / 2.6, 1 / 4.8, 1 / 3.7, 1 / 5.6, 10 / 1.5]
    ):
        x, y = run(x, lo, hi), run(y, lo, hi)
        e.append((x - y).abs().mean() * scale)
    return sum(e) / 255.0


def test_loss_matches_the_official_formula_in_float64(tmp_path):
    path = tmp_path / "vgg.mat"
    _write_matconvnet(path, seed=1)
    loss = VGGPerceptualLoss.from_file(path)
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 32, 32, 3, generator=g), torch.rand(2, 32, 32, 3, generator=g)
    expected = _reference_loss(read_matconvnet_vgg19(path), pred, target)
    assert torch.allclose(loss(pred, target).double(), expected, rtol=1e-4)
    assert loss(target, target) == 0


def test_zero_network_leaves_the_pixel_term(tmp_path):
    """With all weights zero every feature is 0: the loss is e0 / 255 = mean |pred - target| by hand."""
    loss = VGGPerceptualLoss()
    for p in loss.parameters():
        p.data.zero_()
    pred, target = torch.zeros(1, 16, 16, 3), torch.zeros(1, 16, 16, 3)
    pred[0, :8] = 0.5  # half the pixels differ by 0.5
    assert torch.allclose(loss(pred, target), torch.tensor(0.25))


def test_state_dict_file_equals_mat_file(tmp_path):
    mat = tmp_path / "vgg.mat"
    _write_matconvnet(mat, seed=2)
    pt = tmp_path / "vgg19_features.pth"
    torch.save({**read_matconvnet_vgg19(mat), "classifier.0.weight": torch.zeros(2, 2)}, pt)
    x, y = torch.rand(1, 16, 16, 3), torch.rand(1, 16, 16, 3)
    assert torch.equal(VGGPerceptualLoss.from_file(mat)(x, y), VGGPerceptualLoss.from_file(pt)(x, y))


def test_missing_and_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagenet-vgg-verydeep-19.mat"):
        VGGPerceptualLoss.from_file(tmp_path / "nope.mat")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="bad.mat"):
        VGGPerceptualLoss.from_file(bad)


def test_lvsm_trains_with_the_perceptual_term(tmp_path):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig

    path = tmp_path / "vgg.mat"
    _write_matconvnet(path, seed=3)
    info = SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 2.0, 6.0)
    cfg = LVSMModelConfig(width=64, n_layers=1, perceptual_weight=0.5, perceptual_weights=str(path))
    model = LVSMModel(cfg, scene=info)
    assert not any(k.startswith("_perceptual") or "features" in k for k in model.state_dict())

    class Batch:
        rays = type("Rays", (), {"shape": (16, 16)})()  # the loss reads the image size only
        rgb = torch.rand(256, 3)

    rgb = torch.rand(256, 3, requires_grad=True)
    out = type("Out", (), {"rgb": rgb})()
    losses = model.loss_dict(out, Batch())
    expected = 0.5 * VGGPerceptualLoss.from_file(path)(rgb.reshape(1, 16, 16, 3), Batch.rgb.reshape(1, 16, 16, 3))
    assert torch.allclose(losses["loss_perceptual"], expected)
    sum(losses.values()).backward()
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0
    with pytest.warns(UserWarning, match="perceptual_weights names no local VGG-19 file"):
        LVSMModel(LVSMModelConfig(width=64, n_layers=1, perceptual_weight=0.5), scene=info)
