"""The C encodings (``neural3d/fields/backends/cpu_encoding.c``): NeRF's frequency layout written into a column slice,
against a float64 reference (Cephes' sine / cosine with their range reduction, libm beyond it, inf and NaN), thread
invariance, refusals, and TensoRF's colour input with and without it; tiny-cuda-nn's spherical harmonics bit for bit
against PyTorch's, and the ngp colour input with and without them."""

from __future__ import annotations

import pytest
import torch

import neural3d.fields.ngp_field as ngp_field
import neural3d.fields.tensorf_field as tensorf_field
from neural3d.fields.backends import cpu_encoding
from neural3d.fields.backends.cpu_encoding import frequency_encode_into, spherical_harmonics_into
from neural3d.fields.encodings import PositionalEncoding, spherical_harmonics
from neural3d.fields.ngp_field import NGPField

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
        monkeypatch.setattr(tensorf_field, "encoding_kernel_applies", lambda *tensors: False)
        plain = field._mlp_input(features, dirs)
    assert len(calls) == 2 and fused.shape == plain.shape == (500, 150)
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=2e-7)
    grad = field._mlp_input(features.requires_grad_(), dirs)  # a gradient: the PyTorch path
    assert grad.requires_grad and len(calls) == 2


# ----------------------------------------------------------------------------- spherical harmonics
@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_spherical_harmonics_equal_pytorch_bit_for_bit_in_a_column_slice(degree):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.nn.functional.normalize(torch.randn(3001, 3, generator=g), dim=-1)
    dirs[:6] = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0], [-1.0, 0, 0], [0, 0, -1.0], [0.6, 0.0, 0.8]])
    width = degree * degree
    buffer = torch.full((len(dirs), width + 4), -7.0)
    out = spherical_harmonics_into(dirs, degree, buffer[:, 3 : 3 + width])
    assert out.data_ptr() == buffer[:, 3:].data_ptr()
    assert bool((buffer[:, :3] == -7).all()) and bool((buffer[:, 3 + width :] == -7).all())  # left alone
    assert torch.equal(out, spherical_harmonics(dirs, degree))  # the same float32 products in the same order
    torch.testing.assert_close(out.double(), spherical_harmonics(dirs.double(), degree), rtol=0, atol=1e-6)


def test_spherical_harmonics_refuse_wrong_shapes():
    dirs = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="degree 1..4"):
        spherical_harmonics_into(dirs, 5, torch.empty(4, 25))
    with pytest.raises(ValueError, match="out must be float32"):
        spherical_harmonics_into(dirs, 4, torch.empty(4, 9))
    with pytest.raises(ValueError, match="out must be float32"):
        spherical_harmonics_into(dirs, 2, torch.empty(4, 4, dtype=torch.float64))


def test_ngp_colour_input_is_the_same_with_the_kernel_or_without(monkeypatch):
    torch.manual_seed(4)
    field = NGPField(aabb=[[-1.0] * 3, [1.0] * 3], n_levels=2, log2_hashmap_size=8, max_resolution=16)
    features = torch.randn(700, field.geo_feat_dim)
    dirs = torch.nn.functional.normalize(torch.randn(700, 3), dim=-1)
    calls = []

    def counted(*args):
        calls.append(1)
        return spherical_harmonics_into(*args)

    monkeypatch.setattr(ngp_field, "spherical_harmonics_into", counted)
    with torch.no_grad():
        fused = field._head_input(dirs, features)
        monkeypatch.setattr(ngp_field, "encoding_kernel_applies", lambda *tensors: False)
        plain = field._head_input(dirs, features)
    assert len(calls) == 1 and torch.equal(fused, plain)
    assert torch.equal(field._head_input(dirs, features.requires_grad_()), plain)  # a gradient: torch, one call
    assert len(calls) == 1
