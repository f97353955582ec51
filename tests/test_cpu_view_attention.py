"""The C kernel of GNT's view attention (``neural3d/fields/backends/cpu_view_attention.c``) against a float64
re-implementation of the official arithmetic (attention MLP output layer, -1e9 on masked views, softmax over views,
weighted sum): widths, view counts, fully masked samples, large logits, threads, ``out=``, refusals."""

from __future__ import annotations

import pytest
import torch

from neural3d.fields.backends import cpu_view_attention
from neural3d.fields.backends.cpu_view_attention import view_attention

pytestmark = pytest.mark.skipif(not cpu_view_attention.available(), reason="no C compiler to build the kernel")


def official(y, q, w2t, b2, valid):
    """float64, as the official ``ViewAttention``: ``attn_fc`` output, masked_fill(-1e9), softmax over views, sum."""
    C, H = w2t.shape[1], w2t.shape[0]
    y, q, w2t, b2 = y.double(), q.double(), w2t.double(), b2.double()
    hidden = (y[..., C : C + H] - q[:, None]).relu()
    logits = hidden @ w2t + b2
    logits = logits.masked_fill(~valid[..., None], -1e9)
    return (torch.softmax(logits, dim=1) * y[..., :C]).sum(dim=1)


def inputs(M=37, V=10, C=64, H=8, extra=1, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(M, V, C + H + extra, generator=g)
    q = torch.randn(M, H, generator=g)
    w2t = torch.randn(H, C, generator=g) * scale
    b2 = torch.randn(C, generator=g)
    valid = torch.rand(M, V, generator=g) > 0.3
    valid[:3] = False  # samples no view sees: the official softmax of equal -1e9s, a uniform average
    valid[3, 1:] = False  # one view only
    return y, q, w2t, b2, valid


@pytest.mark.parametrize(("V", "C", "H", "extra"), [(10, 64, 8, 1), (6, 64, 8, 0), (3, 24, 3, 5), (1, 16, 2, 0)])
def test_kernel_matches_float64_official(V, C, H, extra):
    args = inputs(V=V, C=C, H=H, extra=extra)
    got = view_attention(*args)
    assert got.shape == (37, C) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), official(*args), rtol=0, atol=2e-6)
    y = args[0]
    torch.testing.assert_close(got[:3], y[:3, :, :C].mean(dim=1), rtol=0, atol=1e-6)  # unseen: uniform over views


def test_large_logits_and_threads():
    """Logits of hundreds (most weights underflow; the maximum per channel keeps the sum finite), 1 and 2 threads
    give the float64 result (to 1e-4: float32 logits of ~200 already carry rounding errors of ~1e-5)."""
    args = inputs(M=301, scale=60.0, seed=3)
    want = official(*args)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(view_attention(*args))
    finally:
        torch.set_num_threads(before)
    for got in outs:
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4)
    assert torch.equal(outs[0], outs[1])  # each sample is computed by one thread, in the same order


def test_writes_into_out_and_reads_a_slice_of_samples():
    y, q, w2t, b2, valid = inputs(M=50)
    out = torch.full((60, 64), -5.0)
    got = view_attention(y[10:40], q[10:40], w2t, b2, valid[10:40], out=out[5:35])
    assert got.data_ptr() == out[5:35].data_ptr()
    assert bool((out[:5] == -5).all()) and bool((out[35:] == -5).all())
    torch.testing.assert_close(got.double(), official(y, q, w2t, b2, valid)[10:40], rtol=0, atol=2e-6)


def test_refuses_mismatched_shapes_and_layouts():
    y, q, w2t, b2, valid = inputs()
    with pytest.raises(ValueError, match="cpu_view_attention.py: y must be"):
        view_attention(y[..., :70], q, w2t, b2, valid)  # narrower than C + H
    with pytest.raises(ValueError, match="cpu_view_attention.py: y must be"):
        view_attention(y.transpose(0, 1), q, w2t, b2, valid.t())  # a sample's views not consecutive
    with pytest.raises(ValueError, match="cpu_view_attention.py: y must be"):
        view_attention(y[:, :0], q, w2t, b2, valid[:, :0])  # no views
    with pytest.raises(ValueError, match="do not match"):
        view_attention(y, q[:, :4], w2t, b2, valid)
    with pytest.raises(ValueError, match="out must be"):
        view_attention(y, q, w2t, b2, valid, out=torch.empty(37, 64).t().contiguous().t())


def test_applies_only_to_float32_cpu_without_gradients():
    y = torch.randn(4, 3, 73)
    assert not cpu_view_attention.applies(y)  # gradients recorded
    with torch.no_grad():
        assert cpu_view_attention.applies(y)
        assert not cpu_view_attention.applies(y.double())
