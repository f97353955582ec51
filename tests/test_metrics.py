"""Tests for neural3d.evaluation.metrics against float64 NumPy / SciPy references and analytic cases."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from neural3d.evaluation.metrics import gaussian_window_1d, mse_to_psnr, psnr, ssim

C1, C2 = 0.01**2, 0.03**2


def _ssim_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """skimage-style SSIM (gaussian_weights, sigma 1.5, population covariance), float64, [H, W, C]."""

    def blur(z):
        return scipy.ndimage.gaussian_filter(z, sigma=1.5, truncate=3.5, mode="reflect")[5:-5, 5:-5]

    vals = []
    for c in range(a.shape[-1]):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        s = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
        vals.append(s.mean())
    return float(np.mean(vals))


def _ssim_explicit(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with an explicit 11x11 2-D window sum over all valid positions (float64, [H, W, C])."""
    r = np.arange(-5, 6)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def blur(z):  # [H, W, C] -> [H-10, W-10, C]
        win = np.lib.stride_tricks.sliding_window_view(z, (11, 11), axis=(0, 1))  # [H-10, W-10, C, 11, 11]
        return np.einsum("hwcij,ij->hwc", win, g)

    a, b = a.astype(np.float64), b.astype(np.float64)
    ma, mb = blur(a), blur(b)
    va, vb, cab = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
    s = ((2 * ma * mb + C1) * (2 * cab + C2)) / ((ma**2 + mb**2 + C1) * (va + vb + C2))
    return float(s.mean(axis=(0, 1)).mean())


def _pair(seed: int, shape=(40, 52, 3), noise=0.1):
    rng = np.random.default_rng(seed)
    target = scipy.ndimage.gaussian_filter(rng.random(shape), sigma=(2, 2, 0))
    target = (target - target.min()) / (target.max() - target.min())
    pred = np.clip(target + noise * rng.standard_normal(shape), 0, 1)
    return pred, target


def test_gaussian_window_matches_mipnerf_definition():
    w = gaussian_window_1d(11, 1.5).numpy()
    x = np.arange(11) - 5
    ref = np.exp(-0.5 * (x / 1.5) ** 2)
    np.testing.assert_allclose(w, ref / ref.sum(), rtol=0, atol=1e-15)


def test_psnr_matches_numpy():
    pred, target = _pair(0)
    ref = -10 * np.log10(np.mean((pred - target) ** 2))
    out = psnr(torch.tensor(pred, dtype=torch.float64), torch.tensor(target, dtype=torch.float64))
    assert out.shape == ()
    assert abs(out.item() - ref) < 1e-10


def test_psnr_batch_and_mask():
    rng = np.random.default_rng(1)
    pred, target = rng.random((2, 3, 8, 9, 3)), rng.random((2, 3, 8, 9, 3))
    mask = rng.random((2, 3, 8, 9)) > 0.4
    out = psnr(torch.tensor(pred), torch.tensor(target), mask=torch.tensor(mask))
    assert out.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            d = (pred[i, j] - target[i, j])[mask[i, j]]
            assert abs(out[i, j].item() + 10 * np.log10(np.mean(d**2))) < 1e-10
    # a [.., 1] float mask gives the same values
    out2 = psnr(torch.tensor(pred), torch.tensor(target), mask=torch.tensor(mask[..., None], dtype=torch.float32))
    torch.testing.assert_close(out, out2)


def test_psnr_known_values_and_errors():
    target = torch.zeros(4, 4, 3)
    assert abs(psnr(target + 0.1, target).item() - 20.0) < 1e-4  # mse 0.01 -> 20 dB
    assert torch.isinf(psnr(target, target))
    assert abs(mse_to_psnr(torch.tensor(1e-3)).item() - 30.0) < 1e-5
    with pytest.raises(ValueError, match="shape"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="no pixel"):
        psnr(target, target + 0.1, mask=torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask shape"):
        psnr(target, target, mask=torch.ones(3, 4))


@pytest.mark.parametrize("seed,noise", [(0, 0.02), (1, 0.1), (2, 0.3)])
def test_ssim_matches_scipy_and_explicit_reference(seed, noise):
    pred, target = _pair(seed, noise=noise)
    out = ssim(torch.tensor(pred), torch.tensor(target)).item()
    ref_scipy, ref_explicit = _ssim_scipy(pred, target), _ssim_explicit(pred, target)
    assert abs(ref_scipy - ref_explicit) < 1e-12  # the two references agree
    assert abs(out - ref_scipy) < 1e-10
    # float32 inputs: same value to float32 precision, float32 output
    out32 = ssim(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    assert out32.dtype == torch.float32
    assert abs(out32.item() - ref_scipy) < 1e-5


def test_ssim_uniform_random_images():
    rng = np.random.default_rng(3)
    a, b = rng.random((23, 17, 3)), rng.random((23, 17, 3))
    assert abs(ssim(torch.tensor(a), torch.tensor(b)).item() - _ssim_scipy(a, b)) < 1e-10


def test_ssim_batch_shape_and_symmetry():
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 3, 20, 21, 3)), rng.random((2, 3, 20, 21, 3))
    out = ssim(torch.tensor(a), torch.tensor(b))
    assert out.shape == (2, 3)
    assert abs(out[1, 2].item() - _ssim_scipy(a[1, 2], b[1, 2])) < 1e-10
    torch.testing.assert_close(out, ssim(torch.tensor(b), torch.tensor(a)), rtol=0, atol=1e-12)


def test_ssim_identical_is_one():
    pred, _ = _pair(5)
    assert abs(ssim(torch.tensor(pred), torch.tensor(pred)).item() - 1.0) < 1e-12


def test_ssim_constant_images_analytic():
    # constant images: variances are 0, so SSIM = (2 mu nu + C1) / (mu^2 + nu^2 + C1)
    mu, nu = 0.3, 0.7
    a, b = torch.full((16, 16, 3), mu, dtype=torch.float64), torch.full((16, 16, 3), nu, dtype=torch.float64)
    expected = (2 * mu * nu + C1) / (mu**2 + nu**2 + C1)
    assert abs(ssim(a, b).item() - expected) < 1e-10


def test_ssim_gaussian_noise_on_flat_image():
    # flat target, pred = target + N(0, s^2): structure term ~ C2 / (s_local^2 + C2), where the Gaussian-weighted
    # (biased) local variance has mean s^2 (1 - sum w^2). Luminance term ~ 1. Checked to a few percent.
    rng = np.random.default_rng(6)
    s = 0.05
    target = np.full((200, 200, 3), 0.5)
    pred = target + s * rng.standard_normal(target.shape)
    w = gaussian_window_1d(11, 1.5).numpy()
    sum_w2 = float((np.outer(w, w) ** 2).sum())
    approx = C2 / (s**2 * (1 - sum_w2) + C2)
    out = ssim(torch.tensor(pred), torch.tensor(target)).item()
    assert abs(out - _ssim_scipy(pred, target)) < 1e-10
    assert abs(out - approx) / approx < 0.06
    assert out < 0.5


def test_ssim_rejects_small_or_mismatched():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(10, 30, 3), torch.zeros(10, 30, 3))
    with pytest.raises(ValueError, match="shape"):
        ssim(torch.zeros(12, 12, 3), torch.zeros(12, 13, 3))


def test_psnr_formula_has_a_single_source():
    """``-10 log10(mse)`` is written once (evaluation/metrics.py); everything else calls mse_to_psnr / psnr."""
    import math
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "neural3d"
    allowed = {"evaluation/metrics.py"}
    hand_written = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if re.search(r"log10\(", p.read_text()) and str(p.relative_to(package)) not in allowed
    ]
    assert hand_written == []
    # a Python number stays in double precision (what the hand-written math.log10 copies computed)
    for x in (1e-12, 3.7e-5, 0.25, 1.0):
        assert mse_to_psnr(x) == -10.0 * math.log10(x)
    assert mse_to_psnr(0.0) == math.inf
    t = torch.tensor([1e-3, 0.5], dtype=torch.float32)
    assert torch.equal(mse_to_psnr(t), -10.0 * torch.log10(t))
