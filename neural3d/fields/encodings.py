"""Fixed (parameter-free) input encodings: NeRF positional encoding and real spherical harmonics.

* :class:`PositionalEncoding` reproduces the original NeRF ``get_embedder`` output layout
  ``[x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]``
  (each entry a block of ``in_dim`` channels), so first-layer weights of NeRF checkpoints line up.
* :class:`SHEncoding` evaluates real spherical harmonics with the constants, signs and ordering of
  tiny-cuda-nn's ``SphericalHarmonics`` encoding (``include/tiny-cuda-nn/encodings/spherical_harmonics.h``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PositionalEncoding(nn.Module):
    """NeRF frequency encoding ``gamma(x)``.

    Args:
        n_freqs: number of frequency bands ``L`` (NeRF: 10 for positions, 4 for directions).
        include_input: prepend the raw input (NeRF default: True).
        log_sampling: bands ``2^0 .. 2^(L-1)`` (True, NeRF default) or linearly spaced ``1 .. 2^(L-1)``.
        in_dim: number of input channels (3).

    Shapes: ``[*batch, in_dim] -> [*batch, out_dim]`` with
    ``out_dim = in_dim * (include_input + 2 * n_freqs)`` (63 for L=10, 27 for L=4).
    """

    def __init__(self, *, n_freqs: int, include_input: bool = True, log_sampling: bool = True, in_dim: int = 3):
        super().__init__()
        if n_freqs < 0:
            raise ValueError(f"encodings.py: PositionalEncoding n_freqs must be >= 0, got {n_freqs}")
        self.n_freqs = n_freqs
        self.include_input = include_input
        self.in_dim = in_dim
        max_freq = float(n_freqs - 1)
        if log_sampling:
            bands = 2.0 ** torch.linspace(0.0, max_freq, steps=n_freqs)
        else:
            bands = torch.linspace(1.0, 2.0**max_freq, steps=n_freqs)
        self.register_buffer("freq_bands", bands, persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.n_freqs)

    def forward(self, x: Tensor) -> Tensor:
        """[*batch, in_dim] -> [*batch, out_dim]."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(
                f"encodings.py: PositionalEncoding expects [..., {self.in_dim}] inputs, got {tuple(x.shape)}"
            )
        # [*batch, L, in_dim]: scaled copies, then interleave sin/cos per band -> [*batch, L, 2, in_dim].
        scaled = x[..., None, :] * self.freq_bands.to(x)[:, None]
        periodic = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2).flatten(-3)
        return torch.cat([x, periodic], dim=-1) if self.include_input else periodic


# tiny-cuda-nn constants (spherical_harmonics.h, generated from Sloan's "Stupid SH tricks" recurrences).
_C0 = 0.28209479177387814
_C1 = 0.48860251190291987
_C2 = (1.0925484305920792, 0.94617469575755997, 0.31539156525251999, 0.54627421529603959)
_C3 = (0.59004358992664352, 2.8906114426405538, 0.45704579946446572, 0.3731763325901154, 1.4453057213202769)


def spherical_harmonics(dirs: Tensor, degree: int = 4) -> Tensor:
    """Real spherical harmonics in tiny-cuda-nn order.

    Output channel ``l*l + l + m`` holds band ``l`` (``0 <= l < degree``), order ``m`` (``-l..l``); the
    functions are orthonormal on the unit sphere and equal ``sqrt(2) Re/Im`` of the complex ``Y_l^m``
    *with* the Condon-Shortley phase (so e.g. channel 1 is ``-0.4886 y`` and channel 3 is ``-0.4886 x``).

    Args:
        dirs: [*batch, 3] unit directions in [-1, 1] (NOT tcnn's (d + 1) / 2 mapping; that shift is
            undone inside tcnn, so ``spherical_harmonics(d) == tcnn_SH((d + 1) / 2)``).
        degree: number of bands, 1..4 (tcnn's ``degree``; 4 -> 16 channels, highest band l = 3).
    Returns:
        [*batch, degree**2].
    """
    if not 1 <= degree <= 4:
        raise ValueError(f"encodings.py: spherical_harmonics degree must be in 1..4, got {degree}")
    if dirs.shape[-1] != 3:
        raise ValueError(f"encodings.py: spherical_harmonics expects [..., 3] directions, got {tuple(dirs.shape)}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree > 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _C2[0] * x * y,
            -_C2[0] * y * z,
            _C2[1] * zz - _C2[2],
            -_C2[0] * x * z,
            _C2[3] * (xx - yy),
        ]
    if degree > 3:
        out += [
            _C3[0] * y * (-3.0 * xx + yy),
            _C3[1] * x * y * z,
            _C3[2] * y * (1.0 - 5.0 * zz),
            _C3[3] * z * (5.0 * zz - 3.0),
            _C3[2] * x * (1.0 - 5.0 * zz),
            _C3[4] * z * (xx - yy),
            _C3[0] * x * (-xx + 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


class SHEncoding(nn.Module):
    """Spherical-harmonics direction encoding (tcnn ``SphericalHarmonics``), see :func:`spherical_harmonics`.

    Args:
        degree: number of SH bands (tcnn convention; 4 -> 16 output channels).

    Shapes: ``[*batch, 3]`` unit directions in [-1, 1] -> ``[*batch, degree**2]``.
    """

    def __init__(self, *, degree: int = 4):
        super().__init__()
        if not 1 <= degree <= 4:
            raise ValueError(f"encodings.py: SHEncoding degree must be in 1..4, got {degree}")
        self.degree = degree

    @property
    def out_dim(self) -> int:
        return self.degree**2

    def forward(self, dirs: Tensor) -> Tensor:
        """[*batch, 3] -> [*batch, degree**2]."""
        return spherical_harmonics(dirs, self.degree)
