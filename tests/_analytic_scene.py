"""An analytic 'trained run' for exporter and viewer tests: a sphere rendered exactly (no training).

``SphereModel`` renders rays against a sphere of radius ``R`` at the origin: depth is the first hit ``t``,
opacity 1 on hits, colour ``0.5 + 0.5 * p / R`` at the hit point ``p``; its density is ``S * (R - |p|)``.
"""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf

from neural3d.api import LoadedScene
from neural3d.core.cameras import Cameras
from neural3d.core.poses import look_at
from neural3d.methods.base import Model, SceneInfo

R, S = 0.6, 100.0


class _Field(torch.nn.Module):
    def density(self, positions):
        return (S * (R - positions.norm(dim=-1, keepdim=True))).float()


class SphereModel(Model):
    def __init__(self, *, scene: SceneInfo) -> None:
        super().__init__(None, scene=scene)
        self.field = _Field()
        self.gain = torch.nn.Parameter(torch.ones(1))  # colour gain: lets tests swap weights (live training)

    def forward(self, rays, context=None):
        o, d = rays.origins.double(), rays.directions.double()
        a, b, c = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - R * R
        disc = b * b - 4 * a * c
        t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
        hit = (disc > 0) & (t >= rays.nears) & (t <= rays.fars)
        p = o + t[..., None] * d
        col = ((0.5 + 0.5 * p / R) * self.gain.double()).clamp(0, 1)
        acc = hit.double()[..., None]
        rgb = col * acc + (1 - acc) * self.background.double()
        depth = torch.where(hit, t, rays.fars.double())[..., None]
        return {"rgb": rgb.float(), "depth": depth.float(), "opacity": acc.float()}


def sphere_scene(background=(1.0, 1.0, 1.0)) -> LoadedScene:
    info = SceneInfo(
        scene_box=torch.tensor([[-1.0] * 3, [1.0] * 3]), near=0.5, far=6.0, background=torch.tensor(background)
    )
    cfg = OmegaConf.create({"eval": {"chunk": 4096}, "method": "sphere"})
    return LoadedScene(SphereModel(scene=info).eval(), info, cfg, run_dir=None, step=0, pixel_center=0.5)


def ring_cameras(n: int = 8, size: int = 40, radius: float = 3.0, elevation: float = 0.4) -> Cameras:
    """[n] cameras on a ring around the origin looking at it (z up), ``size`` x ``size`` pixels."""
    a = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    eye = torch.stack([radius * torch.cos(a), radius * torch.sin(a), torch.full_like(a, radius * elevation)], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 3)).float()
    f = torch.full((n,), 1.2 * size)
    return Cameras(c2w, f, f, torch.full((n,), size / 2), torch.full((n,), size / 2), size, size)
