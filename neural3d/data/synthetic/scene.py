"""A synthetic scene (primitives + materials + lights) and its exact, antialiased renderer.

:meth:`SynthScene.render` integrates every pixel over ``supersample x supersample`` stratified ray
positions (pixel (u, v) covers [u, u+1) x [v, v+1), samples at ``u + (i + 0.5) / supersample``), shades
each ray analytically (Blinn-Phong, hard shadows) and averages. Depth is the exact z-depth of the ray
through the pixel centre. Work is done in float64, chunked over rays so memory stays bounded for any
image size, and returned as float32.

Colour convention: ``rgb`` is *straight* (un-premultiplied) colour, as in Blender's RGBA PNGs, so that
``rgb * alpha + background * (1 - alpha)`` is exactly the pixel integral of the scene composited on
``background``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from .poses import pixel_rays
from .shading import Lighting, Material, blinn_phong
from .shapes import Primitive, bounding_candidates, primitive_from_dict

GENERATOR_VERSION = "1"
KINDS = ("object", "forward")
DEFAULT_CHUNK = 1 << 17  # rays per chunk (~100 MB of float64 temporaries at most)
_SHADOW_OFFSET = 1e-6


class RenderOutput(NamedTuple):
    """Rendered views (float32).

    Attributes:
        rgb: [n_cams, H, W, 3] straight (un-premultiplied) colour in [0, 1]; 0 where alpha is 0.
        alpha: [n_cams, H, W, 1] pixel coverage in [0, 1].
        depth: [n_cams, H, W] z-depth of the pixel-centre ray (along the camera's -z), 0 where it misses.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor


@dataclass
class SceneHit:
    """Nearest hit over all primitives.

    Attributes:
        t: [n_rays] ray parameter, inf where missed.
        normal: [n_rays, 3] unit world normal (zeros where missed).
        local: [n_rays, 3] hit point in the hit primitive's local frame.
        prim: [n_rays] int64 index of the hit primitive, -1 where missed.
    """

    t: Tensor
    normal: Tensor
    local: Tensor
    prim: Tensor


@dataclass(frozen=True, kw_only=True)
class SynthScene:
    """Analytic scene: ``primitives[i]`` is drawn with ``materials[i]`` under ``lighting``.

    Attributes:
        primitives: the shapes.
        materials: one material per primitive.
        lighting: directional lights and ambient.
        kind: "object" (transparent background, world z up) or "forward" (opaque backdrop, world y up).
        seed: the seed it was generated from (metadata; -1 if built by hand).
        shadows: trace hard shadows towards each light.
    """

    primitives: tuple[Primitive, ...]
    materials: tuple[Material, ...]
    lighting: Lighting
    kind: str = "object"
    seed: int = -1
    shadows: bool = True
    version: str = field(default=GENERATOR_VERSION)

    def __post_init__(self) -> None:
        if len(self.primitives) != len(self.materials):
            raise ValueError(
                f"SynthScene needs one material per primitive, got {len(self.primitives)} primitives "
                f"and {len(self.materials)} materials"
            )
        if self.kind not in KINDS:
            raise ValueError(f"SynthScene.kind must be one of {KINDS}, got {self.kind!r}")

    # --- geometry queries ---------------------------------------------------------------------
    def trace(self, origins: Tensor, dirs: Tensor) -> SceneHit:
        """Nearest hit of rays ``origins + t * dirs`` ([n_rays, 3] each) over all primitives (float64)."""
        origins, dirs = origins.double(), dirs.double()
        n = origins.shape[0]
        best = SceneHit(
            t=torch.full((n,), math.inf, dtype=torch.float64, device=origins.device),
            normal=torch.zeros(n, 3, dtype=torch.float64, device=origins.device),
            local=torch.zeros(n, 3, dtype=torch.float64, device=origins.device),
            prim=torch.full((n,), -1, dtype=torch.int64, device=origins.device),
        )
        candidates = bounding_candidates(origins, dirs, self.primitives)
        for i, prim in enumerate(self.primitives):
            idx, hit = prim.intersect_candidates(origins, dirs, candidates[i])
            closer = hit.t < best.t[idx]
            sel = idx[closer]
            best.t[sel] = hit.t[closer]
            best.normal[sel] = hit.normal[closer]
            best.local[sel] = hit.local[closer]
            best.prim[sel] = i
        return best

    def occluded(self, origins: Tensor, dirs: Tensor) -> Tensor:
        """Whether rays [n_rays, 3] x2 hit anything at t > 0 -> [n_rays] bool."""
        origins, dirs = origins.double(), dirs.double()
        blocked = torch.zeros(origins.shape[0], dtype=torch.bool, device=origins.device)
        candidates = bounding_candidates(origins, dirs, self.primitives)
        for i, prim in enumerate(self.primitives):
            idx, hit = prim.intersect_candidates(origins, dirs, candidates[i])
            blocked[idx[torch.isfinite(hit.t)]] = True
        return blocked

    def sdf(self, points: Tensor) -> Tensor:
        """Scene distance: min over primitives of their signed (thin: unsigned) distance. [*batch, 3] -> [*batch]."""
        dists = torch.stack([prim.sdf(points) for prim in self.primitives], -1)
        return dists.min(-1).values

    # --- shading ------------------------------------------------------------------------------
    def shade(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Colour of rays [n_rays, 3] x2.

        Returns:
            (rgb [n_rays, 3] (0 where missed), hit [n_rays] bool, t [n_rays] (inf where missed)), float64.
        """
        origins, dirs = origins.double(), dirs.double()
        hit = self.trace(origins, dirs)
        mask = hit.prim >= 0
        rgb = torch.zeros_like(origins)
        idx = torch.nonzero(mask).squeeze(-1)
        if idx.numel() == 0:
            return rgb, mask, hit.t
        prim, normal, local = hit.prim[idx], hit.normal[idx], hit.local[idx]
        point = origins[idx] + hit.t[idx, None] * dirs[idx]
        albedo = torch.zeros_like(point)
        for i, material in enumerate(self.materials):
            sel = torch.nonzero(prim == i).squeeze(-1)
            if sel.numel():
                albedo[sel] = material.texture(local[sel])
        specular = torch.tensor([m.specular for m in self.materials], dtype=torch.float64, device=point.device)
        shininess = torch.tensor([m.shininess for m in self.materials], dtype=torch.float64, device=point.device)
        view = -dirs[idx] / torch.linalg.vector_norm(dirs[idx], dim=-1, keepdim=True)
        visibility = self._visibility(point, normal)
        rgb[idx] = blinn_phong(albedo, normal, view, visibility, specular[prim], shininess[prim], self.lighting)
        return rgb, mask, hit.t

    def _visibility(self, point: Tensor, normal: Tensor) -> Tensor:
        """[n_rays, n_lights] 1 where each light is unoccluded (shadow rays), float64."""
        n_lights = len(self.lighting.directions)
        vis = torch.ones(point.shape[0], n_lights, dtype=torch.float64, device=point.device)
        if not self.shadows:
            return vis
        start = point + _SHADOW_OFFSET * normal
        for j, direction in enumerate(self.lighting.directions):
            d = torch.tensor(direction, dtype=torch.float64, device=point.device).expand_as(point)
            facing = torch.nonzero(normal @ d[0] > 0).squeeze(-1)  # back-facing: unlit anyway
            if facing.numel():
                vis[facing, j] = (~self.occluded(start[facing], d[facing])).double()
        return vis

    # --- images -------------------------------------------------------------------------------
    def render(
        self,
        c2w: Tensor,
        fx: float,
        fy: float,
        cx: float,
        cy: float,
        width: int,
        height: int,
        supersample: int = 2,
        chunk: int = DEFAULT_CHUNK,
    ) -> RenderOutput:
        """Antialiased RGB, coverage and exact depth of ``n_cams`` pinhole views.

        Args:
            c2w: [n_cams, 3, 4] (or [n_cams, 4, 4]) camera-to-world, OpenGL axes.
            fx, fy, cx, cy: intrinsics in pixels (continuous coordinates, pixel centres at +0.5).
            width, height: image size in pixels.
            supersample: stratified samples per pixel along each axis (>= 1).
            chunk: maximum number of rays traced at once (bounds memory).

        Returns:
            :class:`RenderOutput` (float32, on ``c2w``'s device).
        """
        c2w = _check_c2w(c2w)
        if supersample < 1 or width < 1 or height < 1:
            raise ValueError(f"render: need supersample, width, height >= 1, got {supersample}, {width}, {height}")
        s = supersample
        n_cams, dev = c2w.shape[0], c2w.device
        rgb = torch.zeros(n_cams, height, width, 3, dtype=torch.float32, device=dev)
        alpha = torch.zeros(n_cams, height, width, 1, dtype=torch.float32, device=dev)
        xs = (torch.arange(width * s, dtype=torch.float64, device=dev) + 0.5) / s
        for c0, c1, r0, r1 in _blocks(n_cams, height, width * s * s, chunk):
            ys = (torch.arange(r0 * s, r1 * s, dtype=torch.float64, device=dev) + 0.5) / s
            origins, dirs = pixel_rays(c2w[c0:c1], fx, fy, cx, cy, xs, ys)
            color, mask, _ = self.shade(origins.reshape(-1, 3), dirs.reshape(-1, 3))
            shape = (c1 - c0, r1 - r0, s, width, s)
            cover = mask.double().reshape(shape).mean((2, 4))  # [cams, rows, W]
            premult = color.reshape(*shape, 3).mean((2, 4))
            straight = torch.where(cover[..., None] > 0, premult / cover[..., None].clamp(min=1e-12), 0.0)
            rgb[c0:c1, r0:r1] = straight.clamp(0, 1).float()
            alpha[c0:c1, r0:r1, :, 0] = cover.float()
        return RenderOutput(rgb=rgb, alpha=alpha, depth=self.depth(c2w, fx, fy, cx, cy, width, height, chunk=chunk))

    def depth(
        self,
        c2w: Tensor,
        fx: float,
        fy: float,
        cx: float,
        cy: float,
        width: int,
        height: int,
        chunk: int = DEFAULT_CHUNK,
    ) -> Tensor:
        """Exact z-depth of the pixel-centre rays: -> [n_cams, H, W] float32, 0 where the ray misses."""
        c2w = _check_c2w(c2w)
        n_cams, dev = c2w.shape[0], c2w.device
        out = torch.zeros(n_cams, height, width, dtype=torch.float32, device=dev)
        xs = torch.arange(width, dtype=torch.float64, device=dev) + 0.5
        for c0, c1, r0, r1 in _blocks(n_cams, height, width, chunk):
            ys = torch.arange(r0, r1, dtype=torch.float64, device=dev) + 0.5
            origins, dirs = pixel_rays(c2w[c0:c1], fx, fy, cx, cy, xs, ys)
            t = self.trace(origins.reshape(-1, 3), dirs.reshape(-1, 3)).t
            t = torch.where(torch.isfinite(t), t, 0.0)
            out[c0:c1, r0:r1] = t.reshape(c1 - c0, r1 - r0, width).float()
        return out

    # --- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready description from which :meth:`from_dict` rebuilds the identical scene."""
        return {
            "generator": "neural3d.data.synthetic",
            "version": self.version,
            "seed": self.seed,
            "kind": self.kind,
            "shadows": self.shadows,
            "lighting": self.lighting.to_dict(),
            "primitives": [
                {**prim.to_dict(), "material": mat.to_dict()} for prim, mat in zip(self.primitives, self.materials)
            ],
        }

    @staticmethod
    def from_dict(spec: dict) -> SynthScene:
        """Inverse of :meth:`to_dict`; raises ValueError naming the missing key."""
        for key in ("kind", "lighting", "primitives"):
            if key not in spec:
                raise ValueError(f"scene description is missing the {key!r} key")
        prims, mats = [], []
        for entry in spec["primitives"]:
            entry = dict(entry)
            if "material" not in entry:
                raise ValueError("scene description: a primitive is missing its 'material' key")
            mats.append(Material.from_dict(entry.pop("material")))
            prims.append(primitive_from_dict(entry))
        return SynthScene(
            primitives=tuple(prims),
            materials=tuple(mats),
            lighting=Lighting.from_dict(spec["lighting"]),
            kind=spec["kind"],
            seed=int(spec.get("seed", -1)),
            shadows=bool(spec.get("shadows", True)),
            version=str(spec.get("version", GENERATOR_VERSION)),
        )


def _check_c2w(c2w: Tensor) -> Tensor:
    c2w = torch.as_tensor(c2w)
    if c2w.ndim == 2:
        c2w = c2w[None]
    if c2w.ndim != 3 or c2w.shape[1] not in (3, 4) or c2w.shape[2] != 4:
        raise ValueError(f"c2w must have shape [n_cams, 3, 4] or [n_cams, 4, 4], got {tuple(c2w.shape)}")
    return c2w[:, :3, :].double()


def _blocks(n_cams: int, height: int, rays_per_row: int, chunk: int) -> Iterator[tuple[int, int, int, int]]:
    """Split (cameras x pixel rows) into blocks of at most ~``chunk`` rays: yields (c0, c1, r0, r1)."""
    rays_per_cam = height * rays_per_row
    if rays_per_cam <= chunk:
        step = max(1, chunk // rays_per_cam)
        for c0 in range(0, n_cams, step):
            yield c0, min(c0 + step, n_cams), 0, height
        return
    rows = max(1, chunk // rays_per_row)
    for c in range(n_cams):
        for r0 in range(0, height, rows):
            yield c, c + 1, r0, min(r0 + rows, height)
