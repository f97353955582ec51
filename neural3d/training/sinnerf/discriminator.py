"""SinNeRF's local-texture prior: a patch discriminator, DiffAugment and the hinge losses.

The discriminator is the official one (DCGAN-style, ``models/discriminator.py``), written for any power-of-two
patch size ``s >= 8``: ``log2(s) - 2`` stride-2 4 x 4 convolutions halving the resolution down to 4 x 4, the
last of them ``8 ndf`` wide and each earlier one half as wide as the next, then a 4 x 4 valid convolution to
one logit; spectral norm on every convolution, no biases, LeakyReLU(0.2), InstanceNorm (no affine) after every
convolution but the first when ``s >= 64`` (the official 64 and 128 branches; its 16 and 32 branches normalise
the first one too). Shapes: ``forward(patches [batch, 3, s, s]) -> [batch]`` logits.

Hinge losses (Lim & Ye 2017, the official ``dloss='hinge'``): discriminator
``(mean relu(1 - D(real)) + mean relu(1 + D(fake))) / 2``; generator ``-mean D(fake)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``(mean relu(1 - real) + mean relu(1 + fake)) / 2`` (scalar)."""
    return 0.5 * (torch.relu(1.0 - real_logits).mean() + torch.relu(1.0 + fake_logits).mean())


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """``-mean fake`` (scalar)."""
    return -fake_logits.mean()


def diff_augment(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """DiffAugment's ``color,cutout`` policy (Zhao et al. 2020), differentiable, one draw per image.

    Brightness ``+ U(-0.5, 0.5)``, saturation ``x (U(0, 2))`` around the channel mean, contrast ``x (U(0.5, 1.5))``
    around the image mean, then a zeroed square of half the patch side at a random position (may overhang).

    Args:
        x: [batch, 3, H, W].
    Returns:
        [batch, 3, H, W].
    """
    b, _, h, w = x.shape

    def u(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=x.device, dtype=x.dtype)

    x = x + (u(b, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (u(b, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (u(b, 1, 1, 1) + 0.5) + mean
    ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    oy = (u(b) * (h + 1 - ch % 2)).long() - ch // 2
    ox = (u(b) * (w + 1 - cw % 2)).long() - cw // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside_y = (ys >= oy[:, None, None]) & (ys < (oy + ch)[:, None, None])
    inside_x = (xs >= ox[:, None, None]) & (xs < (ox + cw)[:, None, None])
    keep = ~(inside_y & inside_x)
    return x * keep[:, None].to(x.dtype)


class PatchDiscriminator(nn.Module):
    """The official patch discriminator for ``size`` x ``size`` patches (see the module docstring).

    Args:
        size: patch side, a power of two >= 8.
        channels: base width ``ndf``.
        augment_prob: probability of :func:`diff_augment` on an input batch (training only).
    """

    def __init__(self, *, size: int, channels: int = 64, augment_prob: float = 0.25) -> None:
        super().__init__()
        levels = int(round(math.log2(size))) - 2
        if size < 8 or 2 ** (levels + 2) != size:
            raise ValueError(f"PatchDiscriminator: patch size must be a power of two >= 8, got {size}")
        self.augment_prob = float(augment_prob)
        widths = [max(1, 8 * channels // 2 ** (levels - 1 - i)) for i in range(levels)]
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(widths):
            layers.append(spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)))
            if i > 0 or size < 64:
                layers.append(nn.InstanceNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        layers.append(spectral_norm(nn.Conv2d(c_in, 1, 4, 1, 0, bias=False)))
        self.main = nn.Sequential(*layers)

    def forward(self, patches: Tensor) -> Tensor:
        """[batch, 3, size, size] in [0, 1] -> [batch] logits (augmented with ``augment_prob`` when training)."""
        if self.training and self.augment_prob > 0 and float(torch.rand(())) < self.augment_prob:
            patches = diff_augment(patches)
        return self.main(patches).flatten()
