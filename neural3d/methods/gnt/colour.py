"""Colour augmentation for source-view training: one random linear colour map per batch.

A source-view renderer should copy colours from its source views, so mapping the target pixels AND the
source images through the same map leaves the task unchanged while penalising a network that memorises
the training scenes' palettes (trained on a few generated scenes, GNT otherwise tints unseen ones).

The map ``out = clamp(x @ M^T, 0, 1)`` with ``M = saturation(s) @ hue_rotation(theta) @ permutation``
fixes the grey axis: white backgrounds stay white, black stays black. (A first version also shrank and
inverted each channel's range; it turned white backgrounds into random colours and the network
answered with a global tint of ~0.1 on white, costing ~6 dB on unseen white-background views.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ColourMap:
    """``out = clamp(x @ matrix^T, 0, 1)``; ``matrix`` [3, 3] with rows summing to 1 (greys are fixed)."""

    matrix: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        """[..., 3] colours in [0, 1] -> [..., 3] colours in [0, 1]."""
        return (x @ self.matrix.to(x).T).clamp(0.0, 1.0)


_GREY = torch.full((3, 3), 1.0 / 3.0)  # projection onto the grey axis (1, 1, 1) / sqrt(3)
_CROSS = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3.0)  # axis cross-product


def hue_rotation(theta: float) -> Tensor:
    """[3, 3] rotation by ``theta`` (radians) about the grey axis (Rodrigues)."""
    return math.cos(theta) * (torch.eye(3) - _GREY) + math.sin(theta) * _CROSS + _GREY


def saturation(scale: float) -> Tensor:
    """[3, 3] map ``grey + scale * (x - grey)`` with ``grey`` the channel mean."""
    return _GREY + scale * (torch.eye(3) - _GREY)


def random_colour_map(generator: torch.Generator, *, saturation_range: tuple[float, float] = (0.6, 1.4)) -> ColourMap:
    """A random channel permutation, hue rotation (uniform angle) and saturation scale (uniform in range)."""
    perm = torch.eye(3)[torch.randperm(3, generator=generator)]
    u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    theta = (2 * u[0] - 1) * math.pi
    lo, hi = saturation_range
    return ColourMap(saturation(lo + (hi - lo) * u[1]) @ hue_rotation(theta) @ perm)
