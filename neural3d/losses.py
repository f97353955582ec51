r"""Regularisers of mip-NeRF 360 for proposal sampling (batched [n_rays, n_samples] layout).

* :func:`outer_measure`: for each interval of a target partition of a ray, the total weight of the
  intervals of another partition that overlap it (mip-NeRF 360 eq. 12, the "envelope" bound).
* :func:`interlevel_loss` (mip-NeRF 360 eq. 13, nerfstudio ``interlevel_loss``): penalises NeRF weights
  that exceed the proposal envelope. The NeRF weights are detached (stop-gradient), so only the proposal
  networks learn from it.
* :func:`distortion_loss` (mip-NeRF 360 eq. 15) in its O(n) form.

Edges may be given in any monotone parametrisation of the ray (``t``, or the normalised spacing ``s``):
the outer measure only depends on the order of the edges. The distortion loss does depend on it;
mip-NeRF 360 uses the normalised spacing ``s`` in [0, 1] (scale-free), see
:meth:`neural3d.samplers.proposal.ProposalSampler.spacing`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from neural3d.render.scan import exclusive_cumsum  # noqa: F401 (was defined here as cumsum(x) - x)


def _check_edges(edges: Tensor, weights: Tensor, name: str) -> None:
    if edges.ndim != 2 or weights.ndim != 2 or edges.shape != (weights.shape[0], weights.shape[1] + 1):
        raise ValueError(
            f"losses.py: {name} needs edges [n_rays, n_samples + 1] and weights [n_rays, n_samples], "
            f"got {tuple(edges.shape)} and {tuple(weights.shape)}"
        )


def outer_measure(edges: Tensor, env_edges: Tensor, env_weights: Tensor) -> Tensor:
    """Total envelope weight overlapping each target interval.

    For target interval ``(T_i, T_{i+1})`` returns ``sum_j env_weights_j`` over the envelope intervals
    ``(E_j, E_{j+1})`` with a non-empty open intersection, i.e. ``E_j < T_{i+1}`` and ``E_{j+1} > T_i``.

    Args:
        edges: [n_rays, n + 1] sorted target edges.
        env_edges: [n_rays, m + 1] sorted envelope edges (same parametrisation).
        env_weights: [n_rays, m] envelope weights (gradients flow into them).
    Returns:
        [n_rays, n] outer measure of each target interval.
    """
    _check_edges(env_edges, env_weights, "outer_measure")
    cum = torch.cat([torch.zeros_like(env_weights[:, :1]), torch.cumsum(env_weights, dim=-1)], dim=-1)  # [n_rays, m+1]
    starts, ends = edges[:, :-1].contiguous(), edges[:, 1:].contiguous()
    # first overlapping envelope interval: number of envelope ends <= T_i
    lo = torch.searchsorted(env_edges[:, 1:].contiguous(), starts, right=True)
    # one past the last overlapping interval: number of envelope starts < T_{i+1}
    hi = torch.searchsorted(env_edges[:, :-1].contiguous(), ends, right=False)
    hi = torch.maximum(hi, lo)
    return cum.gather(-1, hi) - cum.gather(-1, lo)


def interlevel_loss(rounds: Sequence, edges: Tensor, weights: Tensor) -> Tensor:
    r"""Proposal (interlevel) loss of mip-NeRF 360 eq. 13, summed over proposal rounds.

    ``sum_rounds mean_{rays, i} max(0, w_i - outer_i)^2 / (w_i + eps)`` where ``w`` are the NeRF weights
    (detached: stop-gradient) and ``outer`` the outer measure of the round's proposal weights.

    Args:
        rounds: proposal rounds, each with ``edges`` [n_rays, m + 1] and ``weights`` [n_rays, m]
            (:class:`~neural3d.samplers.proposal.ProposalRound`), or ``(edges, weights)`` pairs.
        edges: [n_rays, n + 1] edges of the NeRF samples (same parametrisation as the rounds' edges).
        weights: [n_rays, n] NeRF compositing weights.
    Returns:
        [] scalar loss (0 without rounds).
    """
    _check_edges(edges, weights, "interlevel_loss")
    w = weights.detach()
    target = edges.detach()
    eps = torch.finfo(w.dtype).eps
    loss = w.new_zeros(())
    for item in rounds:
        env_edges, env_weights = (item.edges, item.weights) if hasattr(item, "edges") else item
        outer = outer_measure(target, env_edges.detach(), env_weights)
        loss = loss + (torch.clamp(w - outer, min=0.0) ** 2 / (w + eps)).mean()
    return loss


def distortion_loss(weights: Tensor, edges: Tensor, *, reduce: bool = True) -> Tensor:
    r"""Distortion loss of mip-NeRF 360 eq. 15 in O(n) per ray.

    .. math::
        \sum_{i,j} w_i w_j |m_i - m_j| + \tfrac13 \sum_i w_i^2 (s_{i+1} - s_i)

    with midpoints ``m``; the double sum is ``2 sum_i w_i (m_i W_{<i} - (wm)_{<i})`` for sorted midpoints.

    Args:
        weights: [n_rays, n] compositing weights.
        edges: [n_rays, n + 1] sorted edges (normalised spacing ``s`` in mip-NeRF 360).
        reduce: return the mean over rays (True) or the per-ray values.
    Returns:
        [] mean loss, or [n_rays] per-ray losses.
    """
    _check_edges(edges, weights, "distortion_loss")
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    deltas = edges[:, 1:] - edges[:, :-1]
    inter = 2.0 * (weights * (mids * exclusive_cumsum(weights) - exclusive_cumsum(weights * mids))).sum(dim=-1)
    intra = (weights**2 * deltas).sum(dim=-1) / 3.0
    loss = inter + intra
    return loss.mean() if reduce else loss
