"""Fitting new signals with a frozen dictionary: least squares on a support, or gradient steps on codes.

With the bank frozen the expert outputs at the signal's coordinates are fixed, ``X`` [n_points, E, D],
and a signal's prediction ``y[p, d] = sum_e c_e X[p, e, d] + b_d`` is *linear* in its coefficients
``c`` and bias ``b``. So once the top-k support is fixed, the best coefficients solve a (weighted,
ridge-regularised) least-squares problem in closed form; all signals are solved at once with batched
normal equations in float64. Masks [n_signals, n_points] select the observed pixels; ``loss="l1"``
runs iteratively reweighted least squares (weights ``1 / max(|r|, delta)``), which converges to the
L1 fit used for inpainting / occlusion removal. With a
:class:`~neural3d.apps.image_dictionary.prior.CodePrior` the solves are MAP estimates under the Gaussian prior
of the dictionary's training codes (``(c - mu)^T Sigma^-1 (c - mu)`` instead of ``|c|^2``), which is what makes
fits from few observed pixels well posed.

:func:`fit_gradient` is the iterative alternative (Adam on the logits and bias, top-k re-selected every
step, as the official fine-tuning of codes with a frozen dictionary), with MSE or L1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neural3d.apps.image_dictionary.prior import CodePrior, map_solve, spd_solve
from neural3d.methods.nid.combine import mix_dense, mix_sparse
from neural3d.methods.nid.gating import topk_signed
from neural3d.methods.nid.losses import RECON_LOSSES, recon_loss


@dataclass
class CodeFit:
    """Solved codes of ``n_signals`` signals.

    Attributes:
        indices: [n_signals, k] support; values: [n_signals, k] coefficients; bias: [n_signals, D].
        preds: [n_signals, n_points, D] predictions at the fitted coordinates.
        history: loss per gradient step (empty for closed-form fits).
    """

    indices: Tensor
    values: Tensor
    bias: Tensor
    preds: Tensor
    history: list


def _rows(expert_out: Tensor, fit_bias: bool) -> Tensor:
    """[P, E, D] -> design matrix [P * D, E (+ D)] (rows ordered (p, d)), float64."""
    P, E, D = expert_out.shape
    X = expert_out.double().permute(0, 2, 1).reshape(P * D, E)
    if fit_bias:
        X = torch.cat([X, torch.eye(D, dtype=X.dtype, device=X.device).repeat(P, 1)], 1)
    return X


def _row_weights(mask: Tensor | None, n_signals: int, P: int, D: int, device) -> Tensor | None:
    """[n_signals, P] pixel mask -> [n_signals, P * D] row weights (None: all ones)."""
    if mask is None:
        return None
    if mask.shape != (n_signals, P):
        raise ValueError(f"nid/fit.py: mask must be [n_signals={n_signals}, n_points={P}], got {tuple(mask.shape)}")
    return mask.double().to(device)[:, :, None].expand(n_signals, P, D).reshape(n_signals, P * D)


def _solve(X: Tensor, y: Tensor, w: Tensor | None, lam: float, n_free: int) -> Tensor:
    """Weighted ridge least squares, batched over signals.

    Args:
        X: [R, M] shared or [S, R, M] per-signal design; y: [S, R]; w: [S, R] row weights or None.
        lam: ridge weight on the first ``M - n_free`` unknowns (the last ``n_free``, biases, are free).
    Returns:
        [S, M] solutions of ``min sum_r w_r (X_r x - y_r)^2 + lam |x[:M-n_free]|^2``.
    """
    if X.ndim == 2:
        if w is None:
            G = (X.T @ X).expand(y.shape[0], -1, -1)
            rhs = y @ X
        else:
            G = torch.einsum("rm,sr,rn->smn", X, w, X)
            rhs = (w * y) @ X
    else:
        wy = y if w is None else w * y
        G = torch.einsum("srm,srn->smn", X if w is None else X * w[..., None], X)
        rhs = torch.einsum("srm,sr->sm", X, wy)
    M = G.shape[-1]
    reg = torch.full((M,), float(lam), dtype=G.dtype, device=G.device)
    if n_free:
        reg[M - n_free :] = 1e-10  # keeps the system invertible when a bias is unobserved
    G = G + torch.diag(reg)
    return spd_solve(G, rhs[..., None])[..., 0]


def lstsq_on_support(
    expert_out: Tensor,
    targets: Tensor,
    indices: Tensor,
    *,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
    lam: float = 1e-6,
    fit_bias: bool = True,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Closed-form coefficients on a fixed support.

    Args:
        expert_out: [P, E, D] frozen expert outputs at the signals' coordinates.
        targets: [S, P, D]; indices: [S, k] supports.
        mask: [S, P] observed pixels; weights: [S, P * D] extra row weights (IRLS).
        lam: ridge weight on the coefficients.
        fit_bias: solve the bias too (else ``bias`` [S, D] or zero is held fixed).
    Returns:
        values [S, k], bias [S, D] (float32, on the targets' device).
    """
    P, E, D = expert_out.shape
    S, k = indices.shape
    X = _rows(expert_out, fit_bias)  # [R, E (+ D)]
    cols = indices if not fit_bias else torch.cat([indices, E + torch.arange(D, device=indices.device).expand(S, D)], 1)
    Xs = X.T[cols]  # [S, k (+ D), R]
    y = targets.double().reshape(S, P * D)
    if not fit_bias and bias is not None:
        y = y - bias.double().repeat(1, P)
    w = _row_weights(mask, S, P, D, X.device)
    if weights is not None:
        w = weights.double() if w is None else w * weights.double()
    sol = _solve(Xs.transpose(1, 2), y, w, lam, D if fit_bias else 0)
    values = sol[:, :k].to(targets.dtype)
    out_bias = sol[:, k:].to(targets.dtype) if fit_bias else (bias if bias is not None else targets.new_zeros(S, D))
    return values, out_bias


def dense_ridge(
    expert_out: Tensor, targets: Tensor, *, mask: Tensor | None = None, weights: Tensor | None = None, lam: float = 1e-3
) -> tuple[Tensor, Tensor]:
    """Ridge coefficients over all experts (+ free bias): used to choose a support for unseen signals.

    Returns:
        coefficients [S, E], bias [S, D].
    """
    P, E, D = expert_out.shape
    S = targets.shape[0]
    X = _rows(expert_out, True)
    w = _row_weights(mask, S, P, D, X.device)
    if weights is not None:
        w = weights.double() if w is None else w * weights.double()
    sol = _solve(X, targets.double().reshape(S, P * D), w, lam, D)
    return sol[:, :E].to(targets.dtype), sol[:, E:].to(targets.dtype)


def map_fit(
    expert_out: Tensor,
    targets: Tensor,
    k: int,
    prior: CodePrior,
    *,
    lam: float,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
    indices: Tensor | None = None,
    prec: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """MAP codes under a Gaussian code prior: dense solve over all experts + bias, then (``k < E``) the
    top-k by |coefficient| (or the given ``indices``) re-solved with the prior's marginal on that support.

    Args:
        expert_out: [P, E, D]; targets: [S, P, D]; mask: [S, P]; weights: [S, P * D] (IRLS);
        indices: [S, k] fixed support; prec: precomputed ``prior.precision()`` [E + D, E + D].
    Returns:
        support [S, k], values [S, k], bias [S, D] (targets' dtype).
    """
    P, E, D = expert_out.shape
    S = targets.shape[0]
    if prior.mean.shape[0] != E + D:
        raise ValueError(
            f"nid/fit.py: the code prior has {prior.mean.shape[0]} entries, the dictionary needs E + D = {E + D}"
        )
    X = _rows(expert_out, True)  # [R, E + D]
    y = targets.double().reshape(S, P * D)
    w = _row_weights(mask, S, P, D, X.device)
    if weights is not None:
        w = weights.double() if w is None else w * weights.double()
    mean = prior.mean.to(X.device)
    if indices is None:
        z = map_solve(X, y, w, lam, prior.precision() if prec is None else prec, mean)
        if k >= E:
            support = torch.arange(E, device=X.device).expand(S, E)
            return support, z[:, :E].to(targets.dtype), z[:, E:].to(targets.dtype)
        indices = topk_signed(z[:, :E], k)[1]
    cols = torch.cat([indices, E + torch.arange(D, device=indices.device).expand(S, D)], 1)  # [S, k + D]
    z = map_solve(X.T[cols].transpose(1, 2), y, w, lam, prior.precision(cols), mean[cols])
    return indices, z[:, :-D].to(targets.dtype), z[:, -D:].to(targets.dtype)


def mix_support(expert_out: Tensor, support: Tensor, values: Tensor, bias: Tensor) -> Tensor:
    """:func:`~neural3d.methods.nid.combine.mix_sparse`, or the dense mixture when the support holds every expert.

    expert_out [P, E, D], support / values [S, k], bias [S, D] -> [S, P, D].
    """
    E = expert_out.shape[1]
    if support.shape[1] == E and torch.equal(support, torch.arange(E, device=support.device).expand_as(support)):
        return mix_dense(expert_out, values, bias).to(values.dtype)
    return mix_sparse(expert_out, support, values, bias)


def fit_lstsq(
    expert_out: Tensor,
    targets: Tensor,
    k: int,
    *,
    mask: Tensor | None = None,
    indices: Tensor | None = None,
    loss: str = "mse",
    lam_dense: float = 1e-3,
    lam: float = 1e-6,
    irls_iters: int = 10,
    irls_delta: float = 1e-3,
    fit_bias: bool = True,
    prior: CodePrior | None = None,
    prior_weight: float = 1e-3,
) -> CodeFit:
    """Support by |dense ridge coefficients| (unless ``indices`` given), then least squares on it.

    With ``prior`` the ridge solves are replaced by MAP solves under the code prior with weight
    ``prior_weight`` (:func:`map_fit`; ``k = E`` keeps every expert). ``loss="l1"`` repeats
    (support, solve) with IRLS weights ``1 / max(|residual|, irls_delta)``.

    Args:
        expert_out: [P, E, D]; targets: [S, P, D]; mask: [S, P]; indices: [S, k] fixed support.
    """
    if loss not in RECON_LOSSES:
        raise ValueError(f"nid/fit.py: loss must be one of {RECON_LOSSES}, got {loss!r}")
    if prior is not None and not fit_bias:
        raise ValueError("nid/fit.py: a code prior fit solves the bias too (fit_bias=True)")
    S, P, D = targets.shape
    weights = None
    prec = None if prior is None else prior.precision()
    for _ in range(1 + (irls_iters if loss == "l1" else 0)):
        if prior is not None:
            support, values, bias = map_fit(
                expert_out, targets, k, prior, lam=prior_weight, mask=mask, weights=weights, indices=indices, prec=prec
            )
        else:
            support = indices
            if support is None:
                coef, _ = dense_ridge(expert_out, targets, mask=mask, weights=weights, lam=lam_dense)
                support = topk_signed(coef, k)[1]
            values, bias = lstsq_on_support(
                expert_out, targets, support, mask=mask, weights=weights, lam=lam, fit_bias=fit_bias
            )
        preds = mix_support(expert_out, support, values, bias)
        resid = (preds - targets).reshape(S, P * D).abs()
        weights = 1.0 / resid.clamp_min(irls_delta)
    return CodeFit(indices=support, values=values, bias=bias, preds=preds, history=[])


def fit_gradient(
    expert_out: Tensor,
    targets: Tensor,
    k: int,
    *,
    mask: Tensor | None = None,
    init_logits: Tensor | None = None,
    init_bias: Tensor | None = None,
    steps: int = 200,
    lr: float = 1e-2,
    loss: str = "mse",
    fit_bias: bool = True,
    support: Tensor | None = None,
    target_loss: float = 0.0,
    lr_final: float | None = None,
    progress: bool = False,
) -> CodeFit:
    """Adam on the codes (logits, and bias when ``fit_bias``) of a frozen dictionary.

    Every step keeps the top-k logits by magnitude (or a fixed ``support`` [S, k], optimising its
    coefficients only). Stops early once the loss falls below ``target_loss``. With ``lr_final`` the
    learning rate decays exponentially to it over ``steps``.

    Args:
        expert_out: [P, E, D] frozen expert outputs (no gradient needed).
        targets: [S, P, D]; mask: [S, P] observed pixels.
        init_logits: [S, E] (default: zeros + 1e-3 noise); init_bias: [S, D] (default: observed mean).
        progress: a progress bar over the steps (:mod:`neural3d.progress`).
    """
    from neural3d.progress import ProgressBar

    S, P, _D = targets.shape
    E = expert_out.shape[1]
    X = expert_out.detach()
    if init_bias is None:
        w = torch.ones(S, P, 1, device=targets.device) if mask is None else mask.to(targets.dtype)[..., None]
        init_bias = (targets * w).sum(1) / w.sum(1).clamp_min(1.0)
    bias = init_bias.detach().clone().requires_grad_(fit_bias)
    if support is not None:
        if init_logits is not None:
            start = init_logits.detach().gather(1, support)
        else:
            start = torch.zeros(support.shape, device=targets.device)
        coefs = start.clone().requires_grad_(True)
    else:
        gen = torch.Generator(device=targets.device).manual_seed(0)
        start = (
            init_logits if init_logits is not None else 1e-3 * torch.randn(S, E, generator=gen, device=targets.device)
        )
        coefs = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([coefs] + ([bias] if fit_bias else []), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, (lr_final / lr) ** (1.0 / max(steps, 1)) if lr_final else 1.0)
    history = []
    with ProgressBar(steps, "fit codes", unit="step", enabled=progress) as bar:
        for _ in range(steps):
            if support is None:
                _, idx, vals = topk_signed(coefs, k)
            else:
                idx, vals = support, coefs
            value = recon_loss(mix_sparse(X, idx, vals, bias), targets, loss, mask)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            sched.step()
            history.append(float(value.detach()))
            bar.update(1)
            if history[-1] < target_loss:
                break
    with torch.no_grad():
        if support is None:
            _, idx, vals = topk_signed(coefs, k)
        else:
            idx, vals = support, coefs
        preds = mix_sparse(X, idx, vals, bias)
    return CodeFit(indices=idx, values=vals.detach(), bias=bias.detach(), preds=preds, history=history)
