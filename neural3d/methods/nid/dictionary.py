"""The neural implicit dictionary: expert bank + gate, ``y = sum_k g_k expert_k(x) + bias``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neural3d.methods.nid.combine import mix_dense, mix_sparse
from neural3d.methods.nid.experts import ExpertBank
from neural3d.methods.nid.gating import GATE_TYPES, CodebookGate, ConvGate, Gates, noisy_topk_signed, topk_signed


@dataclass
class DictOutput:
    """preds [n_signals, n_points, out_dim] and the :class:`~neural3d.methods.nid.gating.Gates` that made them."""

    preds: Tensor
    gates: Gates


class NeuralImplicitDictionary(nn.Module):
    """Expert bank with sparse signed top-k gating.

    Args:
        bank: the :class:`~neural3d.methods.nid.experts.ExpertBank`.
        gate_type: ``conv`` (amortised encoder of the signal) or ``codebook`` (one code per signal).
        topk: experts kept per signal.
        noisy: noisy top-k gating while training.
        n_signals: codebook size (``codebook``).
        in_channels, gate_hidden, gate_layers: conv gate settings (``conv``).
    """

    def __init__(
        self,
        *,
        bank: ExpertBank,
        gate_type: str = "conv",
        topk: int = 16,
        noisy: bool = False,
        n_signals: int = 0,
        in_channels: int = 3,
        gate_hidden: int = 64,
        gate_layers: int = 2,
        seed: int = 0,
    ):
        super().__init__()
        if gate_type not in GATE_TYPES:
            raise ValueError(f"nid/dictionary.py: gate type must be one of {GATE_TYPES}, got {gate_type!r}")
        if not 1 <= topk <= bank.num_experts:
            raise ValueError(f"nid/dictionary.py: topk must be in [1, num_experts={bank.num_experts}], got {topk}")
        self.bank, self.topk, self.noisy, self.gate_type = bank, topk, noisy, gate_type
        if gate_type == "conv":
            self.gate = ConvGate(
                in_channels=in_channels,
                num_experts=bank.num_experts,
                out_dim=bank.out_dim,
                hidden=gate_hidden,
                n_layers=gate_layers,
                noisy=noisy,
            )
        else:
            if n_signals < 1:
                raise ValueError("nid/dictionary.py: a codebook gate needs n_signals >= 1")
            self.gate = CodebookGate(
                n_signals=n_signals, num_experts=bank.num_experts, out_dim=bank.out_dim, noisy=noisy, seed=seed
            )

    @property
    def num_experts(self) -> int:
        return self.bank.num_experts

    @property
    def out_dim(self) -> int:
        return self.bank.out_dim

    def split_raw(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        """[n_signals, num_experts + out_dim] -> (logits [n_signals, num_experts], bias [n_signals, out_dim])."""
        return raw[:, : self.num_experts], raw[:, self.num_experts :]

    def select(self, logits: Tensor, bias: Tensor, *, sparse: bool = True, noise_raw: Tensor | None = None) -> Gates:
        """Coefficients from logits: dense (warm-up) or signed top-k (noisy while training when configured)."""
        if not sparse:
            return Gates(logits=logits, gates=logits, bias=bias)
        if self.noisy and self.training and noise_raw is not None:
            gates, idx, vals, load = noisy_topk_signed(logits, noise_raw, self.topk)
        else:
            gates, idx, vals = topk_signed(logits, self.topk)
            load = (gates != 0).sum(0).to(logits.dtype)
        return Gates(logits=logits, gates=gates, bias=bias, indices=idx, values=vals, load=load)

    def gates_for(self, images: Tensor | None = None, ids: Tensor | None = None, *, sparse: bool = True) -> Gates:
        """Gates of a batch of signals (``images`` [n_signals, p, p, C] for ``conv``, ``ids`` [n_signals] for
        ``codebook``)."""
        raw, noise = self.gate(images, ids)
        logits, bias = self.split_raw(raw)
        return self.select(logits, bias, sparse=sparse, noise_raw=noise)

    def mix(self, expert_out: Tensor, gates: Gates) -> Tensor:
        """Expert outputs [n_points, E, D] or [n_signals, n_points, E, D] -> [n_signals, n_points, D]."""
        if gates.indices is None:
            return mix_dense(expert_out, gates.gates, gates.bias)
        return mix_sparse(expert_out, gates.indices, gates.values, gates.bias)

    def forward(
        self, coords: Tensor, images: Tensor | None = None, ids: Tensor | None = None, *, sparse: bool = True
    ) -> DictOutput:
        """Evaluate a batch of signals.

        Args:
            coords: [n_points, in_dim] shared or [n_signals, n_points, in_dim] per-signal coordinates.
            images: [n_signals, p, p, C] observed signals (conv gate).
            ids: [n_signals] signal ids (codebook gate).
            sparse: top-k gating (False: dense warm-up).
        Returns:
            :class:`DictOutput` with preds [n_signals, n_points, out_dim].
        """
        gates = self.gates_for(images, ids, sparse=sparse)
        return DictOutput(preds=self.mix(self.bank(coords), gates), gates=gates)

    @torch.no_grad()
    def freeze_bank(self) -> None:
        """Stop gradients into the dictionary (fitting new signals)."""
        for p in self.bank.parameters():
            p.requires_grad_(False)
