"""Training augmentation of point clouds (batched, seeded by the caller's generator)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from neural3d.pointcloud.synthetic import rotation_about_up


@dataclass
class AugmentConfig:
    """Training augmentation of point clouds: scale, jitter, rotation about the up axis."""

    scale_min: float = 0.8
    """Lower end of the random isotropic scale."""
    scale_max: float = 1.25
    """Upper end of the random isotropic scale."""
    jitter_sigma: float = 0.01
    """Standard deviation of the Gaussian noise on xyz."""
    jitter_clip: float = 0.05
    """The noise is clipped to [-jitter_clip, jitter_clip]."""
    rotate_up: bool = False
    """Random rotation about the up axis (y)."""


def augment(points: Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> Tensor:
    """Scale, jitter and rotate a batch of clouds (normals, channels 3:6 when present, are rotated too).

    Args:
        points: [batch, n_points, C] with xyz first.
    Returns:
        [batch, n_points, C] new tensor.
    """
    b = points.shape[0]
    dev, dt = points.device, points.dtype

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev, dt)

    xyz, rest = points[..., :3], points[..., 3:]
    if cfg.rotate_up:
        rot = rotation_about_up(rand(b) * 2 * math.pi).transpose(1, 2)
        xyz = xyz @ rot
        if rest.shape[-1] >= 3:
            rest = torch.cat([rest[..., :3] @ rot, rest[..., 3:]], -1)
    scale = cfg.scale_min + (cfg.scale_max - cfg.scale_min) * rand(b, 1, 1)
    noise = torch.randn(points.shape[:-1] + (3,), generator=generator).to(dev, dt) * cfg.jitter_sigma
    xyz = xyz * scale + noise.clamp(-cfg.jitter_clip, cfg.jitter_clip)
    return torch.cat([xyz, rest], -1)
