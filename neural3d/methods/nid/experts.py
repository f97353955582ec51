"""The expert bank: one shared coordinate trunk whose wide last layer holds every expert.

As in the official NID code (``INRMoE.experts``), ``num_experts`` coordinate networks share all
layers but the last; the last linear layer has ``num_experts * out_dim`` outputs, so expert ``e``
owns rows ``[e * out_dim, (e + 1) * out_dim)`` of it. Evaluating the bank once at a set of coordinates
gives every expert's output there, [n_points, num_experts, out_dim].

:class:`CoordinateMLP` is the trunk (ReLU or SIREN). With ``activation="sine"`` it follows SIREN
(Sitzmann et al. 2020): hidden activations ``sin(w0 * (W x + b))`` with ``w0 = 30``, first-layer
weights ~ U(-1/in, 1/in), later weights ~ U(-sqrt(6/in)/w0, sqrt(6/in)/w0), linear output layer.
ReLU layers use the official code's ``init_weights_relu`` (weights and biases ~ U(-1/sqrt(in), 1/sqrt(in)),
PyTorch's default).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from neural3d.methods.nid.encodings import build_encoding

ACTIVATIONS = ("relu", "sine")


class CoordinateMLP(nn.Module):
    """``in_dim -> hidden_dim x n_layers -> out_dim`` with ReLU or SIREN sine activations.

    Args:
        in_dim, out_dim: input and output channels.
        hidden_dim: width of the hidden layers.
        n_layers: number of hidden layers (>= 1).
        activation: ``relu`` or ``sine``.
        w0: SIREN frequency factor.

    Shapes: ``[*batch, in_dim] -> [*batch, out_dim]``.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 128,
        n_layers: int = 3,
        activation: str = "relu",
        w0: float = 30.0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"nid/experts.py: activation must be one of {ACTIVATIONS}, got {activation!r}")
        if n_layers < 1 or hidden_dim < 1 or in_dim < 1 or out_dim < 1:
            raise ValueError(
                f"nid/experts.py: CoordinateMLP needs positive sizes, got in={in_dim}, hidden={hidden_dim}, "
                f"n_layers={n_layers}, out={out_dim}"
            )
        dims = [in_dim] + [hidden_dim] * n_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.last = nn.Linear(hidden_dim, out_dim)
        self.activation, self.w0 = activation, float(w0)
        if activation == "sine":
            self._siren_init()

    @torch.no_grad()
    def _siren_init(self) -> None:
        for i, layer in enumerate([*self.hidden, self.last]):
            fan_in = layer.weight.shape[1]
            bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / self.w0
            layer.weight.uniform_(-bound, bound)

    def features(self, x: Tensor) -> Tensor:
        """[*batch, in_dim] -> [*batch, hidden_dim] output of the last hidden layer."""
        for layer in self.hidden:
            x = layer(x)
            x = torch.sin(self.w0 * x) if self.activation == "sine" else torch.relu(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """[*batch, in_dim] -> [*batch, out_dim]."""
        return self.last(self.features(x))


class ExpertBank(nn.Module):
    """``num_experts`` coordinate networks sharing one trunk (encoding -> MLP -> wide last layer).

    Args:
        in_dim: coordinate channels (2 for images, 3 for scenes).
        out_dim: channels of one expert's output (3 for RGB, 4 for density + RGB).
        num_experts: dictionary size.
        encoding: ``fourier`` | ``pe`` | ``identity`` (see :mod:`neural3d.methods.nid.encodings`).
        n_freqs, n_fourier_features, fourier_scale: encoding settings.
        hidden_dim, n_layers, activation, w0: trunk settings (:class:`CoordinateMLP`).
        seed: seed of the Fourier matrix.

    Shapes: ``forward([*batch, in_dim]) -> [*batch, num_experts, out_dim]``.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int,
        num_experts: int,
        encoding: str = "fourier",
        n_freqs: int = 6,
        n_fourier_features: int = 256,
        fourier_scale: float = 10.0,
        hidden_dim: int = 128,
        n_layers: int = 3,
        activation: str = "relu",
        w0: float = 30.0,
        seed: int = 0,
    ):
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"nid/experts.py: num_experts must be >= 1, got {num_experts}")
        self.in_dim, self.out_dim, self.num_experts = in_dim, out_dim, num_experts
        self.encoding = build_encoding(
            encoding, in_dim=in_dim, n_freqs=n_freqs, n_features=n_fourier_features, scale=fourier_scale, seed=seed
        )
        self.trunk = CoordinateMLP(
            in_dim=self.encoding.out_dim,
            out_dim=num_experts * out_dim,
            hidden_dim=hidden_dim,
            n_layers=n_layers,
            activation=activation,
            w0=w0,
        )

    def forward(self, coords: Tensor) -> Tensor:
        """[*batch, in_dim] coordinates -> [*batch, num_experts, out_dim] every expert's output."""
        if coords.shape[-1] != self.in_dim:
            raise ValueError(
                f"nid/experts.py: ExpertBank expects [..., {self.in_dim}] coordinates, got {tuple(coords.shape)}"
            )
        out = self.trunk(self.encoding(coords))
        return out.reshape(*coords.shape[:-1], self.num_experts, self.out_dim)


def scratch_mlp_like(bank: ExpertBank, *, seed: int = 0) -> nn.Module:
    """A plain coordinate network of the same trunk (encoding, widths, activation) with ``out_dim`` outputs.

    The from-scratch baseline of the benchmarks. Shapes: ``[*batch, in_dim] -> [*batch, out_dim]``.
    """
    enc = bank.encoding
    trunk = bank.trunk
    kind = (
        "fourier"
        if enc.__class__.__name__ == "GaussianFourierFeatures"
        else "pe"
        if enc.__class__.__name__ == "ScaledPositionalEncoding"
        else "identity"
    )
    kw = {}
    if kind == "fourier":
        kw = {"n_features": enc.out_dim, "scale": float(enc.B.std()) if enc.B.numel() > 1 else 1.0, "seed": seed}
    elif kind == "pe":
        kw = {"n_freqs": enc.pe.n_freqs}
    encoding = build_encoding(kind, in_dim=bank.in_dim, **kw)
    if kind == "fourier":
        encoding.B.copy_(enc.B)
    mlp = CoordinateMLP(
        in_dim=encoding.out_dim,
        out_dim=bank.out_dim,
        hidden_dim=trunk.last.in_features,
        n_layers=len(trunk.hidden),
        activation=trunk.activation,
        w0=trunk.w0,
    )
    return nn.Sequential(encoding, mlp)
