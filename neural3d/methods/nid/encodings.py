"""Coordinate encodings of the expert trunk: Gaussian random Fourier features, NeRF PE, identity.

* ``fourier``: ``[sin(x B^T), cos(x B^T)]`` with ``B ~ N(0, scale^2)`` of shape [n_features/2, in_dim]
  (Tancik et al.; the official NID ``FourierFeatMapping``, which has no 2*pi factor). ``B`` is a
  fixed buffer drawn from a seeded generator, so a checkpoint restores it exactly.
* ``pe``: the NeRF frequency encoding (:class:`~neural3d.fields.encodings.PositionalEncoding`) of
  ``pi * x``, so bands are ``2^l pi`` as in the official NID ``PositionalEncoding`` for x in [-1, 1].
* ``identity``: the raw coordinates.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from neural3d.fields.encodings import PositionalEncoding

ENCODINGS = ("fourier", "pe", "identity")


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features ``[sin(x B^T), cos(x B^T)]``.

    Args:
        in_dim: coordinate channels.
        n_features: output channels (even).
        scale: standard deviation of the entries of ``B``.
        seed: seed of the generator drawing ``B``.

    Shapes: ``[*batch, in_dim] -> [*batch, n_features]``.
    """

    def __init__(self, *, in_dim: int, n_features: int = 256, scale: float = 10.0, seed: int = 0):
        super().__init__()
        if n_features < 2 or n_features % 2:
            raise ValueError(f"nid/encodings.py: n_features must be an even number >= 2, got {n_features}")
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer("B", torch.randn(n_features // 2, in_dim, generator=gen) * float(scale))
        self.in_dim = in_dim

    @property
    def out_dim(self) -> int:
        return 2 * self.B.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """[*batch, in_dim] -> [*batch, n_features]."""
        proj = x @ self.B.to(x).T
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class ScaledPositionalEncoding(nn.Module):
    """NeRF positional encoding of ``pi * x``. Shapes: ``[*batch, in_dim] -> [*batch, out_dim]``."""

    def __init__(self, *, in_dim: int, n_freqs: int = 6):
        super().__init__()
        self.pe = PositionalEncoding(n_freqs=n_freqs, include_input=True, in_dim=in_dim)

    @property
    def out_dim(self) -> int:
        return self.pe.out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.pe(math.pi * x)


class IdentityEncoding(nn.Module):
    """``[*batch, in_dim] -> [*batch, in_dim]`` unchanged."""

    def __init__(self, *, in_dim: int):
        super().__init__()
        self.in_dim = in_dim

    @property
    def out_dim(self) -> int:
        return self.in_dim

    def forward(self, x: Tensor) -> Tensor:
        return x


def build_encoding(
    name: str, *, in_dim: int, n_freqs: int = 6, n_features: int = 256, scale: float = 10.0, seed: int = 0
) -> nn.Module:
    """Encoding by name (``fourier`` | ``pe`` | ``identity``); every result has ``out_dim``."""
    if name == "fourier":
        return GaussianFourierFeatures(in_dim=in_dim, n_features=n_features, scale=scale, seed=seed)
    if name == "pe":
        return ScaledPositionalEncoding(in_dim=in_dim, n_freqs=n_freqs)
    if name == "identity":
        return IdentityEncoding(in_dim=in_dim)
    raise ValueError(f"nid/encodings.py: unknown encoding {name!r}; expected one of {ENCODINGS}")
