"""Positional encoding (NeRF layout) and spherical harmonics (tcnn constants/ordering)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import sph_harm_y

from neural3d.fields.encodings import PositionalEncoding, SHEncoding, spherical_harmonics


def _nerf_embed(x: torch.Tensor, multires: int) -> torch.Tensor:
    """nerf-pytorch ``Embedder.embed`` with ``get_embedder(multires)`` settings, written out as in the original."""
    fns = [lambda v: v]
    for freq in 2.0 ** torch.linspace(0.0, multires - 1, steps=multires):
        for p_fn in (torch.sin, torch.cos):
            fns.append(lambda v, p_fn=p_fn, freq=freq: p_fn(v * freq))
    return torch.cat([fn(x) for fn in fns], -1)


@pytest.mark.parametrize("n_freqs, out_dim", [(10, 63), (4, 27), (0, 3)])
def test_positional_encoding_matches_nerf_embedder(n_freqs, out_dim):
    enc = PositionalEncoding(n_freqs=n_freqs)
    x = torch.randn(7, 5, 3, dtype=torch.float64)
    out = enc(x)
    assert enc.out_dim == out_dim and out.shape == (7, 5, out_dim)
    torch.testing.assert_close(out, _nerf_embed(x, n_freqs), rtol=0, atol=1e-12)


def test_positional_encoding_hand_values():
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    out = PositionalEncoding(n_freqs=2)(x)[0]
    expected = [0.5, -1.0, 2.0]
    expected += [math.sin(0.5), math.sin(-1.0), math.sin(2.0), math.cos(0.5), math.cos(-1.0), math.cos(2.0)]
    expected += [math.sin(1.0), math.sin(-2.0), math.sin(4.0), math.cos(1.0), math.cos(-2.0), math.cos(4.0)]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)


def test_positional_encoding_options():
    x = torch.tensor([[0.25, 0.0, -0.5]])
    no_input = PositionalEncoding(n_freqs=3, include_input=False)
    assert no_input.out_dim == 18
    torch.testing.assert_close(no_input(x), PositionalEncoding(n_freqs=3)(x)[:, 3:])
    lin = PositionalEncoding(n_freqs=3, log_sampling=False)  # bands linspace(1, 4, 3) = 1, 2.5, 4
    torch.testing.assert_close(lin(x)[:, 9:12], torch.sin(2.5 * x))
    with pytest.raises(ValueError, match="encodings.py"):
        PositionalEncoding(n_freqs=2)(torch.zeros(4, 2))


def _real_sh_scipy(l: int, m: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Real SH from scipy's complex Y_l^m (Condon-Shortley phase included), tcnn/Sloan sign convention."""
    y = sph_harm_y(l, abs(m), theta, phi)
    if m > 0:
        return math.sqrt(2.0) * y.real
    if m < 0:
        return math.sqrt(2.0) * y.imag
    return y.real


def _random_dirs(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return d / d.norm(dim=-1, keepdim=True)


def test_sh_against_closed_form_scipy():
    d = _random_dirs(64)
    out = spherical_harmonics(d, 4).numpy()
    theta = np.arccos(d[:, 2].numpy())
    phi = np.arctan2(d[:, 1].numpy(), d[:, 0].numpy())
    for l in range(4):
        for m in range(-l, l + 1):
            np.testing.assert_allclose(out[:, l * l + l + m], _real_sh_scipy(l, m, theta, phi), atol=1e-12)


def test_sh_hand_values():
    up = spherical_harmonics(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), 4)[0]
    expected = torch.zeros(16, dtype=torch.float64)
    expected[0] = 0.5 / math.sqrt(math.pi)
    expected[2] = math.sqrt(3.0) / (2.0 * math.sqrt(math.pi))  # sqrt(3) z / (2 sqrt(pi))
    expected[6] = math.sqrt(5.0) * 2.0 / (4.0 * math.sqrt(math.pi))  # sqrt(5) (3 z^2 - 1) / (4 sqrt(pi))
    expected[12] = math.sqrt(7.0) * 2.0 / (4.0 * math.sqrt(math.pi))  # sqrt(7) z (5 z^2 - 3) / (4 sqrt(pi))
    torch.testing.assert_close(up, expected, rtol=0, atol=1e-15)
    # tcnn signs: channel 1 = -sqrt(3) y / (2 sqrt(pi)), channel 3 = -sqrt(3) x / (2 sqrt(pi)).
    side = spherical_harmonics(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64), 2)
    c1 = math.sqrt(3.0) / (2.0 * math.sqrt(math.pi))
    torch.testing.assert_close(side[0, 3], torch.tensor(-c1, dtype=torch.float64))
    torch.testing.assert_close(side[1, 1], torch.tensor(-c1, dtype=torch.float64))


def test_sh_orthonormal_by_quadrature():
    # Gauss-Legendre in cos(theta) x uniform in phi: exact for the degree <= 6 products of bands 0..3.
    nodes, wts = np.polynomial.legendre.leggauss(12)
    n_phi = 16
    phi = 2.0 * np.pi * np.arange(n_phi) / n_phi
    z = np.repeat(nodes, n_phi)
    w = np.repeat(wts, n_phi) * (2.0 * np.pi / n_phi)
    s = np.sqrt(1.0 - z**2)
    ph = np.tile(phi, len(nodes))
    d = torch.from_numpy(np.stack([s * np.cos(ph), s * np.sin(ph), z], -1))
    y = spherical_harmonics(d, 4)
    gram = y.T @ (torch.from_numpy(w)[:, None] * y)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), rtol=0, atol=1e-12)


def test_sh_addition_theorem():
    # sum_m Y_lm(d)^2 = (2l + 1) / (4 pi) for every unit d.
    y = spherical_harmonics(_random_dirs(100, seed=1), 4)
    for l in range(4):
        band = (y[:, l * l : (l + 1) ** 2] ** 2).sum(-1)
        torch.testing.assert_close(band, torch.full_like(band, (2 * l + 1) / (4 * math.pi)), rtol=0, atol=1e-12)


def test_sh_encoding_module_shapes_and_degrees():
    d = _random_dirs(6).float().reshape(2, 3, 3)
    for degree in range(1, 5):
        enc = SHEncoding(degree=degree)
        out = enc(d)
        assert out.shape == (2, 3, degree**2) and enc.out_dim == degree**2
        torch.testing.assert_close(out, spherical_harmonics(d, 4)[..., : degree**2])
    with pytest.raises(ValueError, match="encodings.py"):
        SHEncoding(degree=5)
