"""Mixing expert outputs with per-signal coefficients (vectorised: gather + einsum, no expert loops).

Expert outputs come either shared by all signals (one set of coordinates, e.g. patch coordinates:
[n_points, num_experts, out_dim]) or per signal ([n_signals, n_points, num_experts, out_dim]).
The result is ``y[s, p] = sum_k values[s, k] * expert[indices[s, k]](x_p) + bias[s]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mix_sparse(expert_out: Tensor, indices: Tensor, values: Tensor, bias: Tensor | None = None) -> Tensor:
    """Top-k mixture.

    Args:
        expert_out: [n_points, num_experts, out_dim] (shared) or [n_signals, n_points, num_experts, out_dim].
        indices, values: [n_signals, k] selected experts and their signed coefficients.
        bias: optional [n_signals, out_dim].
    Returns:
        [n_signals, n_points, out_dim].
    """
    n_signals, k = indices.shape
    if expert_out.ndim == 3:
        n_points, _, out_dim = expert_out.shape
        chosen = expert_out.index_select(1, indices.reshape(-1)).reshape(n_points, n_signals, k, out_dim)
        y = torch.einsum("sk,pskd->spd", values.to(chosen.dtype), chosen)
    elif expert_out.ndim == 4:
        _, n_points, _, out_dim = expert_out.shape
        idx = indices[:, None, :, None].expand(n_signals, n_points, k, out_dim)
        chosen = expert_out.gather(2, idx)
        y = torch.einsum("sk,spkd->spd", values.to(chosen.dtype), chosen)
    else:
        raise ValueError(f"nid/combine.py: expert_out must be 3-d or 4-d, got {tuple(expert_out.shape)}")
    return y if bias is None else y + bias[:, None, :]


def mix_dense(expert_out: Tensor, gates: Tensor, bias: Tensor | None = None) -> Tensor:
    """Dense mixture over all experts (warm-up); shapes as :func:`mix_sparse` with gates [n_signals, num_experts]."""
    if expert_out.ndim == 3:
        y = torch.einsum("se,ped->spd", gates.to(expert_out.dtype), expert_out)
    elif expert_out.ndim == 4:
        y = torch.einsum("se,sped->spd", gates.to(expert_out.dtype), expert_out)
    else:
        raise ValueError(f"nid/combine.py: expert_out must be 3-d or 4-d, got {tuple(expert_out.shape)}")
    return y if bias is None else y + bias[:, None, :]
