"""NID building blocks against dense / float64 / hand-computed references."""

from __future__ import annotations

import math

import pytest
import torch

from neural3d.apps.image_dictionary.fit import dense_ridge, fit_gradient, fit_lstsq, lstsq_on_support
from neural3d.apps.image_dictionary.patches import cut_patches, flatten_patches, fold_patches, grid_coords, patch_coords
from neural3d.methods.nid.combine import mix_dense, mix_sparse
from neural3d.methods.nid.encodings import GaussianFourierFeatures, build_encoding
from neural3d.methods.nid.experts import CoordinateMLP, ExpertBank, scratch_mlp_like
from neural3d.methods.nid.gating import noisy_topk_signed, prob_in_topk_abs, topk_signed
from neural3d.methods.nid.losses import cv_squared, l1_sparsity, recon_loss, usage_stats


def test_topk_signed_matches_a_dense_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 12, generator=g, dtype=torch.float64)
    gates, idx, vals = topk_signed(logits, 4)
    ref = torch.zeros_like(logits)
    for s in range(7):  # reference: sort by magnitude, keep 4 with sign
        order = sorted(range(12), key=lambda e: -abs(float(logits[s, e])))[:4]
        ref[s, order] = logits[s, order]
    assert torch.equal(gates, ref)
    assert torch.equal(vals, logits.gather(1, idx))
    assert (vals < 0).any() and (vals > 0).any()  # signed coefficients survive
    assert torch.equal(topk_signed(logits, 12)[0], logits)  # k = E is dense
    with pytest.raises(ValueError, match="k=13"):
        topk_signed(logits, 13)


def test_sparse_mixture_equals_dense_mixture_of_scattered_gates():
    g = torch.Generator().manual_seed(1)
    shared = torch.randn(10, 6, 3, generator=g, dtype=torch.float64)  # [P, E, D]
    per_signal = torch.randn(4, 10, 6, 3, generator=g, dtype=torch.float64)  # [S, P, E, D]
    logits = torch.randn(4, 6, generator=g, dtype=torch.float64)
    bias = torch.randn(4, 3, generator=g, dtype=torch.float64)
    gates, idx, vals = topk_signed(logits, 2)
    for out in (shared, per_signal):
        sparse = mix_sparse(out, idx, vals, bias)
        dense = mix_dense(out, gates, bias)
        # explicit loop reference
        ref = torch.zeros(4, 10, 3, dtype=torch.float64)
        for s in range(4):
            e_out = out if out.ndim == 3 else out[s]
            ref[s] = sum(gates[s, e] * e_out[:, e] for e in range(6)) + bias[s]
        assert torch.allclose(sparse, ref, atol=1e-12) and torch.allclose(dense, ref, atol=1e-12)


def test_noisy_topk_load_is_the_probability_of_staying_in_the_topk():
    torch.manual_seed(0)
    clean = torch.tensor([[2.0, -1.5, 0.3, 0.2, -0.1]], dtype=torch.float64)
    std = torch.full_like(clean, 0.5)
    noisy = clean + torch.tensor([[0.1, -0.2, 0.05, 0.0, 0.3]], dtype=torch.float64)
    p = prob_in_topk_abs(clean, noisy, std, k=2)
    # Monte Carlo: redraw one expert's noise, others fixed
    n = 100_000
    for e in range(5):
        others = torch.cat([noisy[0, :e], noisy[0, e + 1 :]]).abs().sort(descending=True).values
        t = others[1]  # the k-th largest among the others
        draws = (clean[0, e] + 0.5 * torch.randn(n, dtype=torch.float64)).abs() > t
        assert abs(float(draws.double().mean()) - float(p[0, e])) < 5e-3
    gates, _idx, _vals, load = noisy_topk_signed(clean.float(), torch.zeros(1, 5), 2)
    assert load.shape == (5,) and (gates != 0).sum() == 2


def test_cv_squared_and_l1_against_hand_computed_values():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    mean, var = 3.0, ((4 + 1 + 0 + 9) / 3)  # unbiased variance 14/3
    assert cv_squared(x).item() == pytest.approx(var / mean**2, rel=1e-6)
    assert cv_squared(torch.ones(5)).item() == pytest.approx(0.0, abs=1e-9)
    assert cv_squared(torch.tensor([3.0])).item() == 0.0
    logits = torch.tensor([[1.0, -2.0, 4.0], [0.0, 1.0, -1.0]])
    assert l1_sparsity(logits).item() == pytest.approx(9.0 / 6)
    assert l1_sparsity(logits, l1_exp=2.0).item() == pytest.approx((1 + 2 / 2 + 4 / 4 + 0 + 1 / 2 + 1 / 4) / 6)
    # |g| importance: signed gates that cancel in a plain sum still count
    from neural3d.methods.nid.gating import Gates

    g = Gates(logits=logits, gates=torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), bias=torch.zeros(2, 1))
    assert torch.equal(g.importance, torch.tensor([2.0, 0.0]))
    stats = usage_stats(torch.tensor([[1.0, 0.0, 0.0], [2.0, -1.0, 0.0]]))
    assert stats["dead_experts"] == 1 and stats["load_cv"] == pytest.approx(math.sqrt(2 / 3) / 1.0)


def test_recon_loss_masks_and_kinds():
    pred, target = torch.zeros(1, 4, 3), torch.ones(1, 4, 3)
    pred[0, 0] = 1.0
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert recon_loss(pred, target, "mse", mask).item() == pytest.approx(0.5)
    assert recon_loss(pred, 3 * target, "l1").item() == pytest.approx((2 * 3 + 3 * 9) / 12)
    with pytest.raises(ValueError, match="recon loss"):
        recon_loss(pred, target, "huber")


def _linear_problem(seed=0, S=3, P=40, E=10, D=3, k=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(P, E, D, generator=g)
    idx = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(S)])
    vals = torch.randn(S, k, generator=g) + torch.sign(torch.randn(S, k, generator=g))
    bias = torch.randn(S, D, generator=g)
    return X, idx, vals, bias, mix_sparse(X, idx, vals, bias)


def test_least_squares_recovers_exact_codes_and_chooses_the_true_support():
    X, idx, vals, bias, y = _linear_problem()
    v, b = lstsq_on_support(X, y, idx, lam=0.0)
    assert torch.allclose(v, vals, atol=1e-4) and torch.allclose(b, bias, atol=1e-4)
    fit = fit_lstsq(X, y, 3, lam_dense=1e-8, lam=0.0)
    assert torch.equal(fit.indices.sort(1).values, idx.sort(1).values)
    assert torch.allclose(fit.preds, y, atol=1e-4)


def test_least_squares_equals_gradient_solve_at_convergence():
    X, idx, _, _, y = _linear_problem(seed=3)
    y = y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(9))  # not exactly representable
    mask = torch.rand(3, 40, generator=torch.Generator().manual_seed(4)) > 0.3
    v_ls, b_ls = lstsq_on_support(X.double(), y.double(), idx, mask=mask, lam=0.0)
    grad = fit_gradient(X, y, 3, support=idx, mask=mask, steps=800, lr=1e-1, lr_final=1e-3)
    assert torch.allclose(grad.values.double(), v_ls, atol=1e-4)
    assert torch.allclose(grad.bias.double(), b_ls, atol=1e-4)
    # masked-out pixels have no influence
    y2 = y.clone()
    y2[~mask] = 100.0
    v2, _b2 = lstsq_on_support(X.double(), y2.double(), idx, mask=mask, lam=0.0)
    assert torch.allclose(v2, v_ls, atol=1e-8)


def test_l1_irls_ignores_outliers_that_bias_least_squares():
    X, idx, _vals, _bias, y = _linear_problem(seed=5, P=60)
    corrupted = y.clone()
    corrupted[:, :6] += 5.0  # 10 % gross outliers
    l2 = fit_lstsq(X, corrupted, 3, indices=idx, loss="mse")
    l1 = fit_lstsq(X, corrupted, 3, indices=idx, loss="l1", irls_iters=20, irls_delta=1e-6)
    err_l2 = (l2.preds - y).abs().max()
    err_l1 = (l1.preds - y).abs().max()
    assert err_l1 < 1e-2 < err_l2


def test_dense_ridge_tends_to_least_squares():
    X, _, _, _, y = _linear_problem(seed=6)
    coef, b = dense_ridge(X, y, lam=1e-9)
    pred = mix_dense(X, coef, b)
    assert torch.allclose(pred, y, atol=1e-3)


def test_patch_cut_fold_round_trip_and_coordinates():
    images = torch.rand(2, 8, 12, 3)
    patches = cut_patches(images, 4)
    assert patches.shape == (2 * 2 * 3, 4, 4, 3)
    assert torch.equal(patches[7], images[1, 0:4, 4:8])  # image 1 (6 patches each), patch row 0, col 1
    assert torch.equal(fold_patches(patches, 8, 12), images)
    # equals torch's unfold (the official evaluation folds with F.fold)
    unf = torch.nn.functional.unfold(images.permute(0, 3, 1, 2), 4, stride=4)  # [n, C*16, L]
    ref = unf.reshape(2, 3, 4, 4, -1).permute(0, 4, 2, 3, 1).reshape(-1, 4, 4, 3)
    assert torch.equal(ref, patches)
    c = patch_coords(4)
    assert (
        c.shape == (16, 2) and torch.allclose(c[1], torch.tensor([-1 / 3, -1.0])) and torch.equal(c[-1], torch.ones(2))
    )
    assert torch.equal(flatten_patches(patches)[:, 5], patches[:, 1, 1])  # row-major like the coordinates
    assert torch.equal(grid_coords(1, 3)[:, 1], torch.zeros(3))
    with pytest.raises(ValueError, match="divide"):
        cut_patches(images, 5)


def test_encodings_and_bank_shapes_and_siren_init():
    x = torch.rand(5, 2) * 2 - 1
    for name in ("fourier", "pe", "identity"):
        enc = build_encoding(name, in_dim=2, n_freqs=3, n_features=8)
        assert enc(x).shape == (5, enc.out_dim)
    ff = GaussianFourierFeatures(in_dim=2, n_features=8, scale=3.0, seed=1)
    proj = x @ ff.B.T
    assert torch.allclose(ff(x), torch.cat([proj.sin(), proj.cos()], -1))
    bank = ExpertBank(in_dim=2, out_dim=3, num_experts=5, hidden_dim=16, n_layers=2)
    out = bank(x)
    assert out.shape == (5, 5, 3)
    # expert e owns rows [3e, 3e+3) of the wide last layer
    h = bank.trunk.features(bank.encoding(x))
    w, b = bank.trunk.last.weight[6:9], bank.trunk.last.bias[6:9]
    assert torch.allclose(out[:, 2], h @ w.T + b, atol=1e-6)
    siren = CoordinateMLP(in_dim=4, out_dim=2, hidden_dim=32, n_layers=2, activation="sine")
    assert siren.hidden[0].weight.abs().max() <= 1 / 4
    assert siren.hidden[1].weight.abs().max() <= math.sqrt(6 / 32) / 30
    net = scratch_mlp_like(bank)
    assert net(x).shape == (5, 3)
    with pytest.raises(ValueError, match="encoding"):
        build_encoding("hash", in_dim=2)


def test_nid_configs_reject_unknown_keys_naming_them(tmp_path):
    from neural3d.config import ConfigError, load
    from neural3d.methods.nid.config import NIDFitConfig, NIDTrainConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("gate: {topq: 3}\n")
    with pytest.raises(ConfigError, match="gate.topq"):
        load(NIDTrainConfig, bad)
    bad.write_text("method: newton\n")
    with pytest.raises(ConfigError, match="'method' must be one of"):
        load(NIDFitConfig, bad)
    good = tmp_path / "good.yaml"
    good.write_text("experts: {num_experts: 8}\n")
    cfg = load(NIDTrainConfig, good, ["gate.topk=2"])
    assert cfg.experts.num_experts == 8 and cfg.gate.topk == 2


def test_shipped_nid_configs_validate():
    from pathlib import Path

    from neural3d.config import build, load, load_config
    from neural3d.methods.nid.config import NIDFitConfig, NIDTrainConfig
    from neural3d.methods.nid.family import NIDFamilyConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    assert load(NIDTrainConfig, root / "nid_lego.yaml").gate.topk == 64
    assert load(NIDFitConfig, root / "nid_fit.yaml").method == "lstsq"
    from neural3d.config import load_yaml

    fam = build(NIDFamilyConfig, load_yaml(root / "nid_family.yaml"))
    _, model_cfg = load_config(root / "nid_scene.yaml")
    assert model_cfg.num_experts == fam.model.num_experts and model_cfg.topk == fam.model.topk
