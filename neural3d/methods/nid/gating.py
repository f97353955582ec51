"""Gating: per-signal expert coefficients (signed, top-k by magnitude) and a per-signal output bias.

A gate network maps a batch of ``n_signals`` signals to raw outputs [n_signals, num_experts + out_dim]:
``num_experts`` logits (the signed coefficients) and an ``out_dim`` bias, as the official NID code
(``gate_generator(output_size=num_experts + out_dim)``). Two gate networks:

* :class:`ConvGate` (amortised): a small conv encoder of the observed signal (patch) -> logits + bias;
* :class:`CodebookGate` (auto-decoder): one learned code per training signal, looked up by id.

Sparse gating keeps, per signal, the ``k`` logits of largest magnitude with their sign
(:func:`topk_signed`); noisy top-k (Shazeer et al. 2017) adds learned Gaussian noise before the
selection while training (:func:`noisy_topk_signed`) and returns a differentiable expected load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

GATE_TYPES = ("conv", "codebook")


@dataclass
class Gates:
    """Selected coefficients of a batch of signals.

    Attributes:
        logits: [n_signals, num_experts] raw (clean) logits.
        gates: [n_signals, num_experts] dense coefficients (zeros outside the top-k in sparse mode).
        bias: [n_signals, out_dim] per-signal output bias.
        indices: [n_signals, k] selected experts (None in dense mode).
        values: [n_signals, k] their signed coefficients (None in dense mode).
        load: [num_experts] signals routed to each expert (differentiable expectation with noisy gating).
    """

    logits: Tensor
    gates: Tensor
    bias: Tensor
    indices: Tensor | None = None
    values: Tensor | None = None
    load: Tensor | None = None

    @property
    def importance(self) -> Tensor:
        """[num_experts] summed |coefficient| per expert (|g|, so signed gates cannot cancel)."""
        return self.gates.abs().sum(0)


def topk_signed(logits: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the ``k`` logits of largest magnitude per row, with their signs.

    Args:
        logits: [n_signals, num_experts].
        k: 1 <= k <= num_experts.
    Returns:
        gates [n_signals, num_experts] (zeros elsewhere), indices [n_signals, k], values [n_signals, k].
    """
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"nid/gating.py: top-k needs 1 <= k <= num_experts={logits.shape[-1]}, got k={k}")
    indices = logits.abs().topk(k, dim=-1).indices
    values = logits.gather(-1, indices)
    gates = torch.zeros_like(logits).scatter(-1, indices, values)
    return gates, indices, values


def prob_in_topk_abs(clean: Tensor, noisy: Tensor, noise_std: Tensor, k: int) -> Tensor:
    """Probability that each expert stays in the top-k by magnitude when its noise is redrawn.

    The threshold is the k-th largest |noisy| among the *other* experts: the (k+1)-th largest overall for
    an expert currently in, the k-th for one currently out. With noise ``n ~ N(0, s^2)`` on the clean
    logit ``c``: ``P(|c + n| > t) = Phi((c - t) / s) + Phi((-c - t) / s)``.

    Args:
        clean, noisy, noise_std: [n_signals, num_experts]; k < num_experts.
    Returns:
        [n_signals, num_experts] probabilities (differentiable in ``clean`` and ``noise_std``).
    """
    top = noisy.abs().topk(k + 1, dim=-1).values
    is_in = noisy.abs() >= top[:, k - 1 : k]
    threshold = torch.where(is_in, top[:, k : k + 1], top[:, k - 1 : k])
    normal = torch.distributions.Normal(torch.zeros((), device=clean.device), torch.ones((), device=clean.device))
    return normal.cdf((clean - threshold) / noise_std) + normal.cdf((-clean - threshold) / noise_std)


def noisy_topk_signed(
    logits: Tensor, noise_raw: Tensor, k: int, eps: float = 1e-2, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Noisy top-k: select by |logits + N(0, softplus(noise_raw) + eps)|.

    Returns:
        gates, indices, values (as :func:`topk_signed`, from the noisy logits) and the expected load
        [num_experts] (sum over signals of :func:`prob_in_topk_abs`; the hard count when k = num_experts).
    """
    std = nn.functional.softplus(noise_raw) + eps
    noise = torch.randn(logits.shape, device=logits.device, dtype=logits.dtype, generator=generator)
    noisy = logits + noise * std
    gates, indices, values = topk_signed(noisy, k)
    if k < logits.shape[-1]:
        load = prob_in_topk_abs(logits, noisy, std, k).sum(0)
    else:
        load = (gates != 0).sum(0).to(logits.dtype)
    return gates, indices, values, load


class ConvGate(nn.Module):
    """Amortised gate: conv encoder of a patch -> [num_experts logits, out_dim bias] (+ noise logits).

    ``n_layers`` 3x3 convs with ReLU (the first at stride 1, the others at stride 2), global mean pooling,
    then linear heads. (The official ``SimpleConvImgEncoder`` uses stride-1 5x5 convs and sum pooling;
    strides keep it cheap on CPU, mean pooling keeps the scale independent of the patch size.)

    Args:
        in_channels: signal channels.
        num_experts, out_dim: sizes of the outputs.
        hidden: conv channels.
        n_layers: conv layers.
        noisy: also predict per-expert noise scales (noisy top-k).

    Shapes: ``forward(images [n_signals, p, p, C]) -> ([n_signals, num_experts + out_dim], noise or None)``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_experts: int,
        out_dim: int,
        hidden: int = 64,
        n_layers: int = 2,
        noisy: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers += [
                nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, stride=1 if i == 0 else 2, padding=1),
                nn.ReLU(),
            ]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, num_experts + out_dim)
        self.noise_head = nn.Linear(hidden, num_experts) if noisy else None
        self.in_channels = in_channels

    def forward(self, images: Tensor, ids: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if images is None or images.ndim != 4 or images.shape[-1] != self.in_channels:
            shape = None if images is None else tuple(images.shape)
            raise ValueError(
                f"nid/gating.py: ConvGate expects images [n_signals, p, p, {self.in_channels}], got {shape}"
            )
        h = self.convs(images.permute(0, 3, 1, 2)).mean(dim=(2, 3))
        return self.head(h), (None if self.noise_head is None else self.noise_head(h))


class CodebookGate(nn.Module):
    """Auto-decoder gate: a learned [num_experts + out_dim] code per training signal, looked up by id.

    Codes start ~ N(0, 1 / (num_experts + out_dim)) (the scale of the official ``nn.Embedding(max_norm=1)``
    codes). Noisy gating adds a learned per-expert noise scale shared by all signals.

    Shapes: ``forward(images, ids [n_signals]) -> ([n_signals, num_experts + out_dim], noise or None)``.
    """

    def __init__(self, *, n_signals: int, num_experts: int, out_dim: int, noisy: bool = False, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        width = num_experts + out_dim
        self.codes = nn.Parameter(torch.randn(n_signals, width, generator=gen) / width**0.5)
        self.noise = nn.Parameter(torch.zeros(num_experts)) if noisy else None

    def forward(self, images: Tensor | None, ids: Tensor) -> tuple[Tensor, Tensor | None]:
        if ids is None:
            raise ValueError("nid/gating.py: CodebookGate needs signal ids")
        raw = self.codes[ids]
        return raw, (None if self.noise is None else self.noise.expand(raw.shape[0], -1))
