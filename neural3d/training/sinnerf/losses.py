"""SinNeRF's geometry losses on patches and rays (pure functions).

Shapes: patches are [batch, C, H, W]; masks [batch, 1, H, W] bool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_smooth_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Smooth-L1 (beta 1, the official ``SL1Loss``) averaged over ``mask`` (all when None); 0 on an empty mask."""
    if mask is None:
        return F.smooth_l1_loss(pred, target)
    mask = mask.expand_as(pred)
    if not bool(mask.any()):
        return pred.sum() * 0.0
    return F.smooth_l1_loss(pred[mask], target[mask])


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the pixels of ``mask`` (broadcast over channels); 0 on an empty mask."""
    mask = mask.expand_as(pred)
    if not bool(mask.any()):
        return pred.sum() * 0.0
    return F.mse_loss(pred[mask], target[mask])


def edge_aware_smoothness(depth: Tensor, image: Tensor) -> Tensor:
    """kornia's ``inverse_depth_smoothness_loss`` (applied to depth, as the official code):

    ``mean |dx depth| exp(-mean_c |dx image|) + mean |dy depth| exp(-mean_c |dy image|)``
    with forward differences ``dx f = f[..., :-1] - f[..., 1:]``.

    Args:
        depth: [batch, 1, H, W].
        image: [batch, 3, H, W] guide (its gradients are not taken).
    """
    image = image.detach()
    dx_d = depth[..., :, :-1] - depth[..., :, 1:]
    dy_d = depth[..., :-1, :] - depth[..., 1:, :]
    wx = torch.exp(-(image[..., :, :-1] - image[..., :, 1:]).abs().mean(1, keepdim=True))
    wy = torch.exp(-(image[..., :-1, :] - image[..., 1:, :]).abs().mean(1, keepdim=True))
    return (dx_d * wx).abs().mean() + (dy_d * wy).abs().mean()
