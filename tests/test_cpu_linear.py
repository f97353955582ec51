"""oneDNN row-block matmuls for inference MLPs (``neural3d/fields/backends/cpu_linear.py``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neural3d.fields.backends import cpu_linear
from neural3d.fields.mlp import MLP

pytestmark = pytest.mark.skipif(not cpu_linear.enabled(), reason="this PyTorch build has no oneDNN linear op")


def _reference(layers, x, relu=True):
    h = x.double()
    for i, (w, b) in enumerate(layers):
        h = F.linear(h, w.double(), None if b is None else b.double())
        if relu and i < len(layers) - 1:
            h = h.relu()
    return h


def _layers(dims, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(o, i, generator=g) / i**0.5, torch.randn(o, generator=g) if bias else None)
        for i, o in zip(dims[:-1], dims[1:], strict=True)
    ]


@pytest.mark.parametrize("rows", [511, 512, 700, 4096, 9000, 20000])
@pytest.mark.parametrize("threads", [1, 2])
def test_linear_stack_matches_float64(rows, threads, monkeypatch):
    """Whole blocks, a padded partial block and a tail below PAD_ROWS all give the float64 products."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layers = _layers([150, 128, 128, 3])
        x = torch.randn(rows, 150, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert cpu_linear.applies(x, layers) == (rows >= cpu_linear.PAD_ROWS)
            y = cpu_linear.linear_stack(layers, x)
        assert y.shape == (rows, 3) and y.dtype == torch.float32
        torch.testing.assert_close(y.double(), _reference(layers, x), rtol=0, atol=2e-5)
    finally:
        torch.set_num_threads(before)


def test_batch_dims_no_bias_no_relu_and_strided_input():
    layers = _layers([32, 64, 16], bias=False)
    base = torch.randn(3, 700, 40, generator=torch.Generator().manual_seed(2))
    x = base[..., 4:36]  # not contiguous
    with torch.no_grad():
        y = cpu_linear.linear_stack(layers, x, relu=False)
    assert y.shape == (3, 700, 16)
    torch.testing.assert_close(y.double(), _reference(layers, x, relu=False), rtol=0, atol=2e-5)


def test_applies_only_without_gradients_on_float32_cpu():
    layers = _layers([8, 8])
    x = torch.randn(4096, 8)
    assert not cpu_linear.applies(x, layers)  # gradients recorded
    with torch.no_grad():
        assert cpu_linear.applies(x, layers)
        assert not cpu_linear.applies(x.double(), layers)
        assert not cpu_linear.applies(x[:100], layers)
        assert not cpu_linear.applies(x, [(w.double(), b) for w, b in layers])


def test_mlp_inference_equals_training_path_and_can_be_switched_off():
    torch.manual_seed(3)
    mlp = MLP(in_dim=31, out_dim=3, widths=(64, 64), output_activation="sigmoid")
    x = torch.randn(5000, 31)
    train_path = mlp(x).detach()
    with torch.no_grad():
        fast = mlp(x)
        cpu_linear.set_enabled(False)
        try:
            assert not cpu_linear.applies(x, [(lin.weight, lin.bias) for lin in mlp.layers])
            slow = mlp(x)
        finally:
            cpu_linear.set_enabled(True)
    torch.testing.assert_close(fast, train_path, rtol=0, atol=1e-6)
    torch.testing.assert_close(slow, train_path, rtol=0, atol=1e-6)


def test_a_failing_op_falls_back_once_with_a_warning(monkeypatch, caplog):
    layers = _layers([16, 32, 4])
    x = torch.randn(2048, 16)

    def broken(*args):
        raise RuntimeError("no kernel for this CPU")

    monkeypatch.setattr(cpu_linear, "_onednn_block", lambda *a: broken())
    monkeypatch.setitem(cpu_linear._state, "failed", False)
    with torch.no_grad(), caplog.at_level("WARNING", logger="neural3d.backends"):
        y = cpu_linear.linear_stack(layers, x)
        assert not cpu_linear.enabled()
        assert not cpu_linear.applies(x, layers)
    assert "oneDNN linear failed" in caplog.text
    torch.testing.assert_close(y.double(), _reference(layers, x), rtol=0, atol=2e-5)


@pytest.mark.parametrize(("rows", "mode"), [(1216, "relu"), (1216, "residual"), (700, "none"), (3, "relu")])
def test_single_layer_matches_float64(rows, mode):
    """``linear``: one layer with the ReLU or a residual fused; below MIN_FLOPS (3 rows) through F.linear."""
    ((w, b),) = _layers([64, 256], seed=4)
    x = torch.randn(2, rows, 64, generator=torch.Generator().manual_seed(5))
    res = torch.randn(2, rows, 256) if mode == "residual" else None
    with torch.no_grad():
        y = cpu_linear.linear(x, w, b, relu=mode == "relu", residual=res)
    want = F.linear(x.double(), w.double(), b.double())
    want = want.relu() if mode == "relu" else want if res is None else want + res.double()
    assert y.shape == (2, rows, 256) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), want, rtol=0, atol=2e-5)


def test_single_layer_uses_onednn_only_where_it_pays(monkeypatch):
    calls = []
    real = cpu_linear._onednn_linear
    monkeypatch.setattr(cpu_linear, "_onednn_linear", lambda *a: calls.append(a[0].shape) or real(*a))
    ((w, b),) = _layers([64, 64], seed=6)
    big, small = torch.randn(1024, 64), torch.randn(8, 64)  # 8.4 MFLOP, 66 kFLOP
    assert 2 * 8 * 64 * 64 < cpu_linear.MIN_FLOPS <= 2 * 1024 * 64 * 64
    with torch.no_grad():
        cpu_linear.linear(big, w, b)
        cpu_linear.linear(small, w, b)
        cpu_linear.linear(big.double(), w.double(), b.double())
    y = cpu_linear.linear(big, w, b)  # gradients recorded: F.linear
    assert calls == [big.shape] and y.requires_grad is False and y.grad_fn is None
    w.requires_grad_(True)
    assert cpu_linear.linear(big, w, b).grad_fn is not None


def test_single_layer_refuses_relu_with_residual_and_falls_back_when_the_op_fails(monkeypatch, caplog):
    ((w, b),) = _layers([64, 64], seed=7)
    x = torch.randn(1024, 64)
    with pytest.raises(ValueError, match="relu and residual"):
        cpu_linear.linear(x, w, b, relu=True, residual=x)

    def broken(*args):
        raise RuntimeError("no kernel for this CPU")

    monkeypatch.setattr(cpu_linear, "_onednn_linear", broken)
    monkeypatch.setitem(cpu_linear._state, "failed", False)
    with torch.no_grad(), caplog.at_level("WARNING", logger="neural3d.backends"):
        y = cpu_linear.linear(x, w, b, residual=x)
        assert not cpu_linear.enabled()
    assert "oneDNN linear failed" in caplog.text
    torch.testing.assert_close(y.double(), F.linear(x.double(), w.double(), b.double()) + x.double(), rtol=0, atol=2e-5)
