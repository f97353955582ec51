"""Small multilayer perceptrons (tcnn ``FullyFusedMLP``-like when built without biases)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neural3d.fields.backends import cpu_linear


class _Exp(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.exp()


_ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "exp": _Exp,
    "none": nn.Identity,
}


_IN_PLACE = {nn.ReLU: Tensor.relu_, nn.Sigmoid: Tensor.sigmoid_}
"""In-place forms of activations, used where no gradient is recorded (the same values, one buffer less per layer:
~30 % of a 150-128-128-3 MLP's CPU time on 8,192 rows, BENCHMARKS.md "The fused VM kernel")."""


def _activate(activation: nn.Module, x: Tensor) -> Tensor:
    """``activation(x)``; in place on ``x`` (a layer's fresh output) when no gradient is recorded."""
    in_place = _IN_PLACE.get(type(activation))
    if in_place is not None and not torch.is_grad_enabled():
        return in_place(x)
    return activation(x)


def make_activation(name: str | None) -> nn.Module:
    """Activation module by (case-insensitive) name: relu, sigmoid, softplus, tanh, exp, none/None."""
    key = "none" if name is None else name.lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"mlp.py: unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[key]()


class MLP(nn.Module):
    """Fully connected network ``in_dim -> widths[0] -> ... -> widths[-1] -> out_dim``.

    Args:
        in_dim: input channels.
        out_dim: output channels.
        widths: hidden layer widths (empty: a single linear layer).
        activation: hidden activation name ("relu", ...).
        output_activation: output activation name or None.
        bias: add biases (tcnn's FullyFusedMLP has none: ``bias=False``).

    Layers are ``self.layers`` (``nn.Linear``, in order). Shapes: ``[*batch, in_dim] -> [*batch, out_dim]``.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int,
        widths: Sequence[int] = (64,),
        activation: str = "relu",
        output_activation: str | None = None,
        bias: bool = True,
    ):
        super().__init__()
        if in_dim <= 0 or out_dim <= 0 or any(w <= 0 for w in widths):
            raise ValueError(
                f"mlp.py: MLP dims must be positive, got in={in_dim}, widths={list(widths)}, out={out_dim}"
            )
        dims = [in_dim, *widths, out_dim]
        self.in_dim, self.out_dim = in_dim, out_dim
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in itertools.pairwise(dims))
        self.activation = make_activation(activation)
        self.output_activation = make_activation(output_activation)

    @classmethod
    def fully_fused(
        cls,
        *,
        in_dim: int,
        out_dim: int,
        n_neurons: int = 64,
        n_hidden_layers: int = 1,
        activation: str = "relu",
        output_activation: str | None = None,
        bias: bool = False,
    ) -> MLP:
        """tcnn ``FullyFusedMLP`` config equivalent: ``n_hidden_layers`` hidden layers of ``n_neurons``
        (no bias, like tcnn, unless ``bias``)."""
        return cls(
            in_dim=in_dim,
            out_dim=out_dim,
            widths=[n_neurons] * n_hidden_layers,
            activation=activation,
            output_activation=output_activation,
            bias=bias,
        )

    def hidden(self, x: Tensor) -> Tensor:
        """[*batch, in_dim] -> the last hidden layer's activations (the input of the last layer; ``x`` if none)."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"mlp.py: MLP expects [..., {self.in_dim}] inputs, got {tuple(x.shape)}")
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return x

    def forward(self, x: Tensor) -> Tensor:
        """[*batch, in_dim] -> [*batch, out_dim]."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"mlp.py: MLP expects [..., {self.in_dim}] inputs, got {tuple(x.shape)}")
        if isinstance(self.activation, nn.ReLU | nn.Identity):
            layers = [(layer.weight, layer.bias) for layer in self.layers]
            if cpu_linear.applies(x, layers):  # inference on a CPU: oneDNN, in row blocks (ReLU fused)
                y = cpu_linear.linear_stack(layers, x, relu=isinstance(self.activation, nn.ReLU))
                return _activate(self.output_activation, y)
        for layer in self.layers[:-1]:
            x = _activate(self.activation, layer(x))
        return _activate(self.output_activation, self.layers[-1](x))
