"""Gaussian code prior and MAP code fits against float64 / gradient / explicit references."""

from __future__ import annotations

import pytest
import torch

from neural3d.apps.image_dictionary.fit import fit_lstsq, map_fit
from neural3d.apps.image_dictionary.patches import cut_patches, cut_patches_strided, fold_patches_mean
from neural3d.apps.image_dictionary.prior import CodePrior, code_prior_from_codes, map_solve
from neural3d.methods.nid.combine import mix_dense
from neural3d.methods.nid.gating import topk_signed


def _spd(n: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T / n + 0.1 * torch.eye(n, dtype=torch.float64)


def test_map_solve_equals_a_gradient_solve_of_the_same_objective():
    g = torch.Generator().manual_seed(0)
    S, R, M, lam = 3, 7, 10, 0.3  # fewer rows than unknowns: only the prior makes it well posed
    A = torch.randn(R, M, generator=g, dtype=torch.float64)
    y = torch.randn(S, R, generator=g, dtype=torch.float64)
    w = torch.rand(S, R, generator=g, dtype=torch.float64)
    prec, mean = torch.linalg.inv(_spd(M, g)), torch.randn(M, generator=g, dtype=torch.float64)
    closed = map_solve(A, y, w, lam, prec, mean)
    z = torch.zeros(S, M, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [z], lr=1.0, max_iter=500, tolerance_grad=1e-13, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def objective():
        opt.zero_grad()
        d = z - mean
        value = (w * (z @ A.T - y) ** 2).sum() + lam * torch.einsum("sm,mn,sn->", d, prec, d)
        value.backward()
        return value

    opt.step(objective)
    assert torch.allclose(z.detach(), closed, atol=1e-7)
    # per-signal design rows give the same answer as the shared ones
    per_signal = map_solve(A.expand(S, R, M), y, w, lam, prec.expand(S, M, M), mean.expand(S, M))
    assert torch.allclose(per_signal, closed, atol=1e-10)


def test_code_prior_is_the_mean_and_covariance_of_the_sparsified_codes():
    g = torch.Generator().manual_seed(1)
    logits, bias = torch.randn(50, 6, generator=g), torch.randn(50, 2, generator=g)
    prior = code_prior_from_codes(logits, bias, topk=2)
    z = torch.cat([topk_signed(logits.double(), 2)[0], bias.double()], 1).numpy()
    import numpy as np

    assert np.allclose(prior.mean.numpy(), z.mean(0)) and np.allclose(prior.cov.numpy(), np.cov(z.T))
    assert (prior.mean[:6] != 0).all()  # top-2 of 6 with zeros elsewhere, averaged
    back = CodePrior.from_state(prior.to_state())
    assert torch.equal(back.mean, prior.mean) and torch.equal(back.cov, prior.cov)
    with pytest.raises(ValueError, match="cov"):
        CodePrior(mean=torch.zeros(3), cov=torch.eye(2))


def _correlated_problem(seed: int, P: int = 24, E: int = 12, D: int = 2, rank: int = 3, n_train: int = 400):
    """Expert outputs [P, E, D] and codes [n, E + D] = mu + low-rank correlated noise."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(P, E, D, generator=g, dtype=torch.float64)
    mu = torch.randn(E + D, generator=g, dtype=torch.float64)
    basis = torch.randn(rank, E + D, generator=g, dtype=torch.float64)

    def codes(n):
        return (
            mu
            + torch.randn(n, rank, generator=g, dtype=torch.float64) @ basis
            + 0.01 * torch.randn(n, E + D, generator=g, dtype=torch.float64)
        )

    return X, codes(n_train), codes(5)


def test_the_prior_fills_in_an_underdetermined_fit():
    X, train, new = _correlated_problem(seed=2)
    P, E, _ = X.shape
    prior = code_prior_from_codes(train[:, :E], train[:, E:], topk=E)
    y = mix_dense(X, new[:, :E], new[:, E:])  # [5, P, D] clean signals
    mask = torch.zeros(5, P)
    mask[:, :3] = 1.0  # 3 observed points x 2 channels = 6 equations for 14 unknowns
    observed = y * mask[..., None]
    ridge = fit_lstsq(X, observed, E, mask=mask, lam_dense=1e-3, lam=1e-3)
    mapfit = fit_lstsq(X, observed, E, mask=mask, prior=prior, prior_weight=1e-3)
    err_ridge = ((ridge.preds - y) ** 2).mean()
    err_map = ((mapfit.preds - y) ** 2).mean()
    assert err_map < 0.01 * err_ridge
    assert torch.allclose(mapfit.preds, y, atol=0.2)
    # the observed points are still fitted
    assert torch.allclose(mapfit.preds[:, :3], y[:, :3], atol=2e-2)  # values ~10


def test_map_fit_on_a_support_uses_the_marginal_prior():
    X, train, new = _correlated_problem(seed=3)
    P, E, D = X.shape
    prior = code_prior_from_codes(train[:, :E], train[:, E:], topk=E)
    y = mix_dense(X, new[:, :E], new[:, E:]) + 0.1
    idx, vals, bias = map_fit(X, y, 4, prior, lam=0.5)
    assert idx.shape == (5, 4) and vals.shape == (5, 4) and bias.shape == (5, D)
    for s in range(5):  # explicit float64 reference for one signal at a time
        cols = torch.cat([idx[s], E + torch.arange(D)])
        A = torch.cat([X.permute(0, 2, 1).reshape(P * D, E), torch.eye(D, dtype=X.dtype).repeat(P, 1)], 1)[:, cols]
        cov = prior.cov + 1e-4 * prior.cov.diagonal().mean() * torch.eye(E + D, dtype=X.dtype)
        Pm = torch.linalg.inv(cov[cols][:, cols])
        ref = torch.linalg.solve(A.T @ A + 0.5 * Pm, A.T @ y[s].reshape(-1) + 0.5 * Pm @ prior.mean[cols])
        assert torch.allclose(torch.cat([vals[s], bias[s]]), ref, atol=1e-8)


def test_strided_patches_cut_and_average_back():
    images = torch.rand(2, 12, 16, 3)
    assert torch.equal(cut_patches_strided(images, 4, 4), cut_patches(images, 4))
    over = cut_patches_strided(images, 4, 2)
    assert over.shape == (2 * 5 * 7, 4, 4, 3)
    assert torch.allclose(over[8], images[0, 2:6, 2:6])  # patch (row 1, col 1) of the 5 x 7 grid
    assert torch.allclose(fold_patches_mean(over, 12, 16, 2), images, atol=1e-6)
    # folding averages: pixel (2, 2) lies in 4 patches; their mean is what comes back
    ones = torch.ones_like(over)
    ones[0] = 5.0  # patch (0, 0) covers pixels [0, 4) x [0, 4)
    folded = fold_patches_mean(ones, 12, 16, 2)[0]
    assert float(folded[0, 0, 0]) == 5.0 and float(folded[2, 2, 0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="stride 3"):
        cut_patches_strided(images, 4, 3)


def test_spd_solve_is_batched_threaded_and_exact():
    # torch 2.13's CPU batched LU solve fails with > 1 thread (MKL "Pivots given to lu_solve ..."); the MAP and
    # ridge solves factorise by Cholesky instead: check it at the size of a real fit, with 2 threads
    from neural3d.apps.image_dictionary.prior import spd_inverse, spd_solve

    g = torch.Generator().manual_seed(0)
    A = torch.randn(169, 259, 300, generator=g, dtype=torch.float64)
    G = A @ A.transpose(1, 2) + torch.eye(259, dtype=torch.float64)
    b = torch.randn(169, 259, 1, generator=g, dtype=torch.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = spd_solve(G, b)
    finally:
        torch.set_num_threads(before)
    assert float((G @ x - b).abs().max()) < 1e-9
    # a singular PSD matrix still factorises (diagonal jitter) and gives a least-squares-like answer
    v = torch.randn(5, 1, generator=g, dtype=torch.float64)
    P = v @ v.T
    y = spd_solve(P, P @ torch.ones(5, 1, dtype=torch.float64))
    assert torch.isfinite(y).all() and float((P @ y - P @ torch.ones(5, 1, dtype=torch.float64)).abs().max()) < 1e-6
    torch.testing.assert_close(
        spd_inverse(G[:2]) @ G[:2], torch.eye(259, dtype=torch.float64).expand(2, -1, -1), atol=1e-8, rtol=0
    )
