"""Rays: the :class:`RayBundle` container, ray generation from cameras and NDC rays.

``directions`` are not normalised: their camera-frame z component is -1, so the ray parameter ``t``
measures z-depth (original NeRF convention). ``viewdirs`` are the unit world-space directions used for
view-dependent colour; for NDC rays they stay the directions of the original (world) rays, as in the
original NeRF code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from neural3d.core.cameras import Cameras


@dataclass
class RayBundle:
    """A batch of rays.

    Attributes:
        origins: [*batch, 3] ray origins.
        directions: [*batch, 3] ray directions (camera-frame z = -1, or NDC directions).
        viewdirs: [*batch, 3] unit world-space viewing directions.
        nears: [*batch] start of the ray segment, in units of ``t``.
        fars: [*batch] end of the ray segment.
        camera_indices: [*batch] int64 index of the camera each ray comes from (-1: unknown).
        pixels: [*batch, 2] int64 (x, y) pixel indices (-1: unknown).
    """

    origins: Tensor
    directions: Tensor
    viewdirs: Tensor
    nears: Tensor
    fars: Tensor
    camera_indices: Tensor | None = None
    pixels: Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        return self.origins.shape[:-1]

    @property
    def device(self) -> torch.device:
        return self.origins.device

    def __len__(self) -> int:
        return self.origins.shape[0]

    def _map(self, fn) -> RayBundle:
        return RayBundle(
            **{f.name: (fn(getattr(self, f.name)) if getattr(self, f.name) is not None else None) for f in fields(self)}
        )

    def __getitem__(self, index) -> RayBundle:
        return self._map(lambda t: t[index])

    def to(self, device) -> RayBundle:
        return self._map(lambda t: t.to(device))

    def contiguous(self) -> RayBundle:
        """The same rays with every tensor contiguous (camera rays share one origin through a stride-0 view,
        which makes each gather of it several times slower)."""
        return self._map(Tensor.contiguous)

    def flatten(self) -> RayBundle:
        """Reshape [*batch] to [n_rays]."""
        n = self.shape.numel()
        return self._map(lambda t: t.reshape(n, *t.shape[len(self.shape) :]))

    def reshape(self, *shape: int) -> RayBundle:
        nb = len(self.shape)
        return self._map(lambda t: t.reshape(*shape, *t.shape[nb:]))

    @staticmethod
    def cat(bundles: Sequence[RayBundle]) -> RayBundle:
        out = {}
        for f in fields(RayBundle):
            vals = [getattr(b, f.name) for b in bundles]
            out[f.name] = None if any(v is None for v in vals) else torch.cat(vals, 0)
        return RayBundle(**out)

    def chunks(self, size: int):
        """Yield consecutive [size] slices of a flat bundle."""
        for i in range(0, len(self), size):
            yield self[i : i + size]


def _normalize(v: Tensor) -> Tensor:
    return v / torch.linalg.norm(v, dim=-1, keepdim=True).clamp_min(1e-12)


def generate_rays(
    cameras: Cameras,
    camera_indices: Tensor,
    xy: Tensor,
    near: float | Tensor,
    far: float | Tensor,
) -> RayBundle:
    """World-space rays through continuous pixel coordinates.

    Args:
        cameras: the camera batch.
        camera_indices: [n_rays] int64.
        xy: [n_rays, 2] continuous pixel coordinates (pixel centres at integer + 0.5).
        near, far: scalars or [n_rays].
    Returns:
        [n_rays] RayBundle (``pixels`` = floor of ``xy``).
    """
    dirs_cam = cameras.camera_directions(camera_indices, xy)
    origins, dirs = cameras.directions_to_world(camera_indices, dirs_cam)
    n = dirs.shape[0]
    nears = torch.as_tensor(near, dtype=dirs.dtype, device=dirs.device).expand(n).clone()
    fars = torch.as_tensor(far, dtype=dirs.dtype, device=dirs.device).expand(n).clone()
    return RayBundle(origins, dirs, _normalize(dirs), nears, fars, camera_indices, xy.floor().long())


def image_rays(cameras: Cameras, index: int, near, far, pixel_center: float = 0.5) -> RayBundle:
    """All rays of one camera image as an [H, W] bundle."""
    grid = cameras.pixel_grid(index, pixel_center)
    H, W = grid.shape[:2]
    idx = torch.full((H * W,), index, dtype=torch.long, device=cameras.device)
    rays = generate_rays(cameras, idx, grid.reshape(-1, 2), near, far)
    rays.pixels = torch.stack(
        torch.meshgrid(torch.arange(W, device=idx.device), torch.arange(H, device=idx.device), indexing="xy"), -1
    ).reshape(-1, 2)
    return rays.reshape(H, W)


def ndc_rays(rays: RayBundle, *, width: float, height: float, focal: float, near_plane: float = 1.0) -> RayBundle:
    """Map rays to normalised device coordinates for forward-facing scenes (original NeRF ``ndc_rays``).

    Origins are first moved to the plane z = -near_plane; the NDC ray then runs t in [0, 1] from that
    plane to infinity. ``viewdirs`` keep the world directions.

    Args:
        rays: [*batch] RayBundle with world origins/directions (camera looks down -z).
        width, height, focal: intrinsics of the reference camera (pixels).
        near_plane: the NDC near plane (1.0 after LLFF bound scaling).
    Returns:
        [*batch] RayBundle in NDC with nears 0 and fars 1.
    """
    o, d = rays.origins, rays.directions
    t = -(near_plane + o[..., 2]) / d[..., 2]
    o = o + t[..., None] * d
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = d.unbind(-1)
    o0 = -1.0 / (width / (2.0 * focal)) * ox / oz
    o1 = -1.0 / (height / (2.0 * focal)) * oy / oz
    o2 = 1.0 + 2.0 * near_plane / oz
    d0 = -1.0 / (width / (2.0 * focal)) * (dx / dz - ox / oz)
    d1 = -1.0 / (height / (2.0 * focal)) * (dy / dz - oy / oz)
    d2 = -2.0 * near_plane / oz
    return RayBundle(
        torch.stack([o0, o1, o2], -1),
        torch.stack([d0, d1, d2], -1),
        rays.viewdirs,
        torch.zeros_like(rays.nears),
        torch.ones_like(rays.fars),
        rays.camera_indices,
        rays.pixels,
    )


def apply_ndc(rays: RayBundle, ndc_params: tuple[float, float, float] | None) -> RayBundle:
    """:func:`ndc_rays` with ``(width, height, focal)`` when given, else the rays unchanged."""
    if ndc_params is None:
        return rays
    width, height, focal = ndc_params
    return ndc_rays(rays, width=width, height=height, focal=focal, near_plane=1.0)
