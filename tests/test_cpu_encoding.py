"""The C frequency encoding (``neural3d/fields/backends/cpu_encoding.c``): NeRF's layout written into a column slice,
against a float64 reference (Cephes' sine / cosine with their range reduction, libm beyond it, inf and NaN), thread
invariance, refusals, and TensoRF's colour input with and without it."""

from __future__ import annotations

import pytest
import torch

import neural3d.fields.tensorf_field as tensorf_field
from neural3d.fields.backends import cpu_encoding
from neural3d.fields.backends.cpu_encoding import frequency_encode_into
from neural3d.fields.encodings import PositionalEncoding

pytestmark = pytest.mark.skipif(not cpu_encoding.available(), reason="no C compiler to build the encoding kernel")


def _inputs(n=600, c=7, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g) * 4.0
    x[0, :6] = torch.tensor([0.0, -0.0, 1e-30, 2048.0, -2049.5, 3e4])  # around and beyond |b x| = 8192 (b up to 4)
    x[1, :3] = torch.tensor([float("inf"), float("-inf"), float("nan")])
    x[2, :4] = torch.pi * torch.tensor([0.25, 0.5, -0.75, 1.0])  # octant borders
    return x


@pytest.mark.parametrize("include_input", [True, False])
@pytest.mark.parametrize("n_freqs", [1, 3])
def test_encoding_matches_float64_reference_in_a_column_slice(include_input, n_freqs):
    x = _inputs()
    enc = PositionalEncoding(n_freqs=n_freqs, in_dim=7, include_input=include_input)
    expected = enc(x.double())
    buffer = torch.full((len(x), enc.out_dim + 5), -7.0)
    out = frequency_encode_into(x, enc.freq_bands, buffer[:, 2 : 2 + enc.out_dim], include_input=include_input)
    assert out.data_ptr() == buffer[:, 2:].data_ptr()
    assert bool((buffer[:, :2] == -7).all()) and bool((buffer[:, 2 + enc.out_dim :] == -7).all())  # left alone
    assert torch.equal(out.isnan(), expected.isnan())
    finite = expected.isfinite()
    torch.testing.assert_close(out.double()[finite], expected[finite], rtol=0, atol=2e-7)  # |values| <= 1 but x
    torch.testing.assert_close(out, enc(x), rtol=1e-6, atol=2e-7, equal_nan=True)  # PyTorch's float32 encoding


def test_encoding_results_do_not_depend_on_the_thread_count():
    x = _inputs(n=3000)
    bands = torch.tensor([1.0, 2.0])
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(frequency_encode_into(x, bands, torch.empty(3000, 35)))
    finally:
        torch.set_num_threads(before)
    for o in outs[1:]:
        assert torch.equal(o.isnan(), outs[0].isnan()) and torch.equal(o.nan_to_num(), outs[0].nan_to_num())


def test_encoding_refuses_a_wrong_output():
    x = torch.rand(4, 3)
    with pytest.raises(ValueError, match="out must be float32"):
        frequency_encode_into(x, torch.tensor([1.0]), torch.empty(4, 8))
    with pytest.raises(ValueError, match="out must be float32"):
        frequency_encode_into(x, torch.tensor([1.0]), torch.empty(9, 4).T)  # [4, 9] with strided columns


def test_tensorf_colour_input_is_the_same_with_the_kernel_or_without(monkeypatch):
    torch.manual_seed(2)
    field = tensorf_field.TensoRFField(aabb=[[-1.0] * 3, [1.0] * 3], resolution=(6, 7, 8), init_scale=0.5)
    features = torch.randn(500, 27) * 2
    dirs = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return frequency_encode_into(*args, **kwargs)

    monkeypatch.setattr(tensorf_field, "frequency_encode_into", counted)
    with torch.no_grad():
        fused = field._mlp_input(features, dirs)
        assert len(calls) == 2  # the features' and the directions' encodings
        monkeypatch.setattr(tensorf_field, "encoding_kernel_available", lambda: False)
        plain = field._mlp_input(features, dirs)
    assert len(calls) == 2 and fused.shape == plain.shape == (500, 150)
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=2e-7)
    grad = field._mlp_input(features.requires_grad_(), dirs)  # a gradient: the PyTorch path
    assert grad.requires_grad and len(calls) == 2
