"""The objective of dictionary training and what is measured on a trained dictionary.

:func:`build_dictionary` builds the model of a :class:`~neural3d.methods.nid.config.NIDTrainConfig`;
:func:`step_loss` is one evaluation of the training objective (dense L1 warm-up or sparse top-k gates,
cv^2 balancing); :func:`dictionary_prior`, :func:`usage_over` and :func:`train_psnr` measure the result.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from neural3d.apps.image_dictionary.patches import flatten_patches
from neural3d.apps.image_dictionary.prior import CodePrior, code_prior_from_codes
from neural3d.config import instantiate
from neural3d.evaluation.metrics import mse_to_psnr
from neural3d.methods.nid.dictionary import NeuralImplicitDictionary
from neural3d.methods.nid.experts import ExpertBank
from neural3d.methods.nid.losses import cv_squared, l1_sparsity, recon_loss, usage_stats


def build_dictionary(
    cfg, n_signals: int, in_channels: int = 3, out_dim: int = 3, in_dim: int = 2, seed: int = 0
) -> NeuralImplicitDictionary:
    """The dictionary described by the ``experts`` and ``gate`` sections of a :class:`NIDTrainConfig`."""
    bank = instantiate(ExpertBank, cfg.experts, in_dim=in_dim, out_dim=out_dim, seed=seed)
    g = cfg.gate  # the dictionary names the gate's settings gate_*
    return instantiate(
        NeuralImplicitDictionary,
        g,
        bank=bank,
        gate_type=g.type,
        gate_hidden=g.hidden,
        gate_layers=g.n_layers,
        n_signals=n_signals,
        in_channels=in_channels,
        seed=seed,
    )


def step_loss(
    model: NeuralImplicitDictionary,
    coords: Tensor,
    patches: Tensor,
    ids: Tensor,
    targets: Tensor,
    cfg,
    warm: bool,
    batch_sum: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One training objective evaluation (no host synchronisation).

    Args:
        coords: [P, 2] patch coordinates; patches: [B, p, p, C] gate inputs; ids: [B] signal ids;
        targets: [B, P, C] pixel values at ``coords``; warm: dense warm-up phase.
        batch_sum: maps the per-expert sums over this batch (importance, load, [num_experts]) to their sums
            over the global batch (data-parallel: a differentiable all-reduce); None: this batch is global.
    Returns:
        (loss, logs): ``loss``, ``psnr`` and ``balance`` as detached scalar tensors.
    """
    out = model(coords, images=patches, ids=ids, sparse=not warm)
    recon = recon_loss(out.preds, targets, cfg.loss.recon)
    g = out.gates
    total = batch_sum or (lambda x: x)
    if warm:
        balance = cv_squared(total(g.importance))
        loss = recon + cfg.loss.l1 * l1_sparsity(g.logits, cfg.loss.l1_exp) + cfg.loss.cv * balance
    else:
        balance = cv_squared(total(g.load)) + cv_squared(total(g.importance))
        loss = recon + cfg.loss.cv * balance
    mse = torch.mean((out.preds.detach() - targets) ** 2)
    return loss, {
        "loss": loss.detach(),
        "psnr": mse_to_psnr(mse.clamp_min(1e-10)),
        "balance": balance.detach(),
    }


@torch.no_grad()
def dictionary_prior(
    model: NeuralImplicitDictionary, patches: Tensor | None = None, chunk: int = 1024
) -> CodePrior | None:
    """Gaussian prior of the training codes: the codebook's codes, or the conv gate's outputs on ``patches``
    [n, p, p, C] (None for a conv gate without patches)."""
    if model.gate_type == "codebook":
        raw = model.gate.codes.detach()
    elif patches is not None:
        raw = torch.cat([model.gate(patches[i : i + chunk], None)[0] for i in range(0, patches.shape[0], chunk)], 0)
    else:
        return None
    logits, bias = model.split_raw(raw)
    return code_prior_from_codes(logits, bias, model.topk)


@torch.no_grad()
def usage_over(model: NeuralImplicitDictionary, patches: Tensor, chunk: int = 2048) -> dict:
    """Expert usage (load cv, dead experts) of the sparse gates of every training patch."""
    gates = []
    for i in range(0, patches.shape[0], chunk):
        ids = torch.arange(i, min(i + chunk, patches.shape[0]), device=patches.device)
        gates.append(model.gates_for(patches[ids], ids, sparse=True).gates)
    return usage_stats(torch.cat(gates, 0))


@torch.no_grad()
def train_psnr(model: NeuralImplicitDictionary, coords: Tensor, patches: Tensor, chunk: int = 1024) -> float:
    """PSNR of the mean squared error over all training patches, each with its own (sparse) gates.

    Pooled rather than a mean of per-patch PSNRs: a constant patch (white background) that the dictionary
    reproduces exactly has an infinite PSNR and would make the mean infinite.
    """
    se, count = 0.0, 0
    for i in range(0, patches.shape[0], chunk):
        ids = torch.arange(i, min(i + chunk, patches.shape[0]), device=patches.device)
        pred = model(coords, images=patches[ids], ids=ids, sparse=True).preds.clamp(0, 1)
        target = flatten_patches(patches[ids])
        se += float(((pred - target) ** 2).sum())
        count += target.numel()
    return mse_to_psnr(max(se / max(count, 1), 1e-12))
