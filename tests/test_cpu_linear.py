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
