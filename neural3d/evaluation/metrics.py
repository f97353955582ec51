"""Image-quality metrics used by the NeRF / GNT evaluations: PSNR and SSIM.

Images are float tensors in [0, 1] of shape [*batch, H, W, 3] (data range 1). Every metric returns
one value per image, shape [*batch] (a 0-d tensor for a single image); average over images yourself,
as the papers do (mean of per-image PSNR / SSIM).

SSIM is the standard evaluation SSIM of the NeRF line of work (mip-NeRF / JAX ``compute_ssim``,
equal to ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` and to ``tf.image.ssim``): separable 11x11 Gaussian
window with sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid' filtering (no padding: the SSIM map is
[H - 10, W - 10]), SSIM map averaged per channel and then over channels. Like mip-NeRF, the local
variances are clipped to be non-negative and the covariance to |cov| <= sqrt(var0 * var1); this
only changes results where float rounding produced impossible statistics.

Metrics are computed in float64 internally and returned in the input's floating dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["gaussian_window_1d", "mse_to_psnr", "psnr", "ssim"]


def _check_images(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    """Validate a pair of images [*batch, H, W, C] for metric ``name``."""
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.dim() < 3:
        raise ValueError(f"{name}: expected images [*batch, H, W, C], got shape {tuple(pred.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise ValueError(f"{name}: expected float images in [0, 1], got {pred.dtype} and {target.dtype}")


def mse_to_psnr(mse: torch.Tensor | float) -> torch.Tensor | float:
    """PSNR in dB for data range 1: ``-10 * log10(mse)``, the one PSNR formula of the package.

    Args:
        mse: mean squared error, a tensor of any shape [*batch], or a Python number.

    Returns:
        psnr: [*batch] tensor in mse's dtype, +inf where mse == 0; for a Python number, a Python float
        (computed in double precision with :func:`math.log10`).
    """
    if isinstance(mse, (int, float)):
        return -10.0 * math.log10(mse) if mse > 0 else math.inf
    return -10.0 * torch.log10(torch.as_tensor(mse))


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio per image (data range 1).

    Args:
        pred: [*batch, H, W, 3] predicted image in [0, 1].
        target: [*batch, H, W, 3] ground truth in [0, 1].
        mask: optional [*batch, H, W] or [*batch, H, W, 1] pixel weights (bool or float); the MSE is
            the mask-weighted mean over the selected pixels and all channels.

    Returns:
        psnr: [*batch] in dB, in pred's dtype.
    """
    _check_images(pred, target, "psnr")
    sq = (pred.double() - target.double()) ** 2  # [*batch, H, W, C]
    if mask is None:
        mse = sq.mean(dim=(-3, -2, -1))
    else:
        weights = _mask_weights(mask, pred.shape)  # [*batch, H, W, 1]
        denom = weights.sum(dim=(-3, -2, -1)) * pred.shape[-1]
        if bool((denom <= 0).any()):
            raise ValueError("psnr: mask selects no pixel for at least one image")
        mse = (sq * weights).sum(dim=(-3, -2, -1)) / denom
    return mse_to_psnr(mse).to(pred.dtype)


def _mask_weights(mask: torch.Tensor, image_shape: torch.Size) -> torch.Tensor:
    """Turn a mask [*batch, H, W] or [*batch, H, W, 1] into float64 weights [*batch, H, W, 1]."""
    if mask.shape == image_shape[:-1]:
        mask = mask.unsqueeze(-1)
    if mask.shape != image_shape[:-1] + (1,):
        raise ValueError(
            f"psnr: mask shape {tuple(mask.shape)} must be {tuple(image_shape[:-1])} or "
            f"{tuple(image_shape[:-1]) + (1,)}"
        )
    weights = mask.double()
    if bool((weights < 0).any()):
        raise ValueError("psnr: mask weights must be non-negative")
    return weights


def gaussian_window_1d(size: int = 11, sigma: float = 1.5, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian window as in mip-NeRF's ``compute_ssim``.

    Returns:
        window: [size], sums to 1, centred (taps at offsets -(size // 2) .. size // 2 for odd size).
    """
    half = size // 2
    shift = (2 * half - size + 1) / 2
    x = (torch.arange(size, dtype=dtype, device=device) - half + shift) / sigma
    window = torch.exp(-0.5 * x**2)
    return window / window.sum()


def _blur_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian blur.

    Args:
        x: [n, 1, H, W].
        window: [k] 1-D window.

    Returns:
        blurred: [n, 1, H - k + 1, W - k + 1].
    """
    k = window.shape[0]
    x = F.conv2d(x, window.view(1, 1, k, 1))  # along H
    return F.conv2d(x, window.view(1, 1, 1, k))  # along W


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    max_val: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image (the NeRF / mip-NeRF / GNT evaluation SSIM, see module doc).

    Args:
        pred: [*batch, H, W, C] image in [0, max_val], H and W >= filter_size.
        target: [*batch, H, W, C] image, same shape.
        max_val: data range (1 for images in [0, 1]).

    Returns:
        ssim: [*batch] mean of the [H - 10, W - 10, C] SSIM map, in pred's dtype.
    """
    _check_images(pred, target, "ssim")
    *batch, height, width, channels = pred.shape
    if height < filter_size or width < filter_size:
        raise ValueError(f"ssim: images must be at least {filter_size}x{filter_size}, got {height}x{width}")
    window = gaussian_window_1d(filter_size, filter_sigma, device=pred.device)

    def planes(img: torch.Tensor) -> torch.Tensor:  # [*batch, H, W, C] -> [n * C, 1, H, W] float64
        return img.double().reshape(-1, height, width, channels).permute(0, 3, 1, 2).reshape(-1, 1, height, width)

    x, y = planes(pred), planes(target)
    mu_x, mu_y = _blur_valid(x, window), _blur_valid(y, window)
    var_x = (_blur_valid(x * x, window) - mu_x**2).clamp_min(0.0)
    var_y = (_blur_valid(y * y, window) - mu_y**2).clamp_min(0.0)
    cov = _blur_valid(x * y, window) - mu_x * mu_y
    cov = torch.sign(cov) * torch.minimum(torch.sqrt(var_x * var_y), cov.abs())

    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    numer = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denom = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    ssim_map = (numer / denom).reshape(-1, channels, height - filter_size + 1, width - filter_size + 1)
    return ssim_map.mean(dim=(1, 2, 3)).reshape(batch).to(pred.dtype)
