"""A small software rasteriser for mesh previews (the README gallery's mesh picture), torch only, CPU or GPU.

Z-buffered, flat-shaded triangles seen by a pinhole camera in the project's conventions (ARCHITECTURE.md):
``c2w`` is an OpenGL camera-to-world matrix (x right, y up, looking down -z), ``K`` the pixel intrinsics,
and pixel ``(row i, column j)`` is sampled at its centre ``(j + 0.5, i + 0.5)``, the point where
``image_rays(..., pixel_center=0.5)`` shoots its ray. A pixel is covered by a triangle when its centre lies
inside the triangle's projection; the depth kept is the z-depth (distance along the camera's -z axis) of
the nearest covering triangle, interpolated perspective-correctly (1 / z is linear in screen space).

The work is vectorised over triangles: each triangle is tested against every pixel centre of its
bounding box (boxes padded to the largest box in a group of similar size), and the nearest depth per pixel
is a ``scatter_reduce(amin)``. No OpenGL, EGL or browser is needed, so it runs on a headless machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Raster:
    """What each pixel of a rasterised image sees."""

    depth: Tensor
    """[H, W] z-depth of the nearest triangle, ``inf`` where no triangle covers the pixel centre."""
    face: Tensor
    """[H, W] index of that triangle (long), -1 where none."""


def project(points: Tensor, c2w: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel coordinates and z-depth of world points.

    Args:
        points: [n, 3] world points.
        c2w: [3, 4] or [4, 4] OpenGL camera-to-world.
        K: [3, 3] intrinsics (fx, fy, cx, cy in pixels; u to the right, v down).
    Returns:
        uv: [n, 2] (u, v) in pixels (continuous; the centre of pixel (i, j) is (j + 0.5, i + 0.5)).
        z: [n] depth in front of the camera (positive in front, along the camera's -z axis).
    """
    R, t = c2w[:3, :3], c2w[:3, 3]
    cam = (points - t) @ R  # [n, 3] camera coordinates (OpenGL): R^T (p - t)
    z = -cam[:, 2]
    u = K[0, 0] * cam[:, 0] / z + K[0, 1] * (-cam[:, 1]) / z + K[0, 2]
    v = K[1, 1] * (-cam[:, 1]) / z + K[1, 2]
    return torch.stack([u, v], dim=-1), z


def _edge(a: Tensor, b: Tensor, p: Tensor) -> Tensor:
    """Twice the signed area of (a, b, p): [..., 2] points broadcast."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _cover(uv: Tensor, inv_z: Tensor, box0: Tensor, side: int, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Pixels of ``side`` x ``side`` boxes covered by their triangles, with the depth there.

    Args:
        uv: [m, 3, 2] projected corners; inv_z: [m, 3] their 1 / z; box0: [m, 2] (column, row) of each box's
            first pixel.
    Returns:
        pixel: [m, side * side] flat pixel index (-1 where not covered or off the image).
        depth: [m, side * side] z-depth there (inf where not covered).
    """
    d = torch.arange(side, device=uv.device)
    cols = box0[:, None, None, 0] + d[None, None, :]  # [m, 1, side]
    rows = box0[:, None, None, 1] + d[None, :, None]  # [m, side, 1]
    cols, rows = torch.broadcast_tensors(cols, rows)
    p = torch.stack([cols + 0.5, rows + 0.5], dim=-1).to(uv.dtype).reshape(len(uv), -1, 2)  # pixel centres
    a, b, c = (uv[:, k, None, :] for k in range(3))
    area = _edge(a, b, c)  # [m, 1]
    w0, w1, w2 = _edge(b, c, p) / area, _edge(c, a, p) / area, _edge(a, b, p) / area  # barycentrics of a, b, c
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    cols, rows = cols.reshape(len(uv), -1), rows.reshape(len(uv), -1)
    inside &= (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    iz = w0 * inv_z[:, 0:1] + w1 * inv_z[:, 1:2] + w2 * inv_z[:, 2:3]
    depth = torch.where(inside & (iz > 0), 1.0 / iz, torch.full_like(iz, math.inf))
    pixel = torch.where(inside, rows * width + cols, torch.full_like(cols, -1))
    return pixel, depth


def rasterize(
    vertices: Tensor,
    faces: Tensor,
    c2w: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    near: float = 1e-3,
    chunk: int = 1 << 22,
) -> Raster:
    """The nearest triangle at every pixel centre.

    Args:
        vertices: [n, 3] world positions; faces: [m, 3] vertex indices (long).
        c2w: [3, 4] / [4, 4] OpenGL camera-to-world; K: [3, 3] intrinsics.
        width, height: image size in pixels.
        near: triangles with a corner closer than this (or behind the camera) are skipped.
        chunk: most (triangle, pixel) pairs tested at once (memory bound).
    Returns:
        :class:`Raster` ([H, W] depth and face index).
    """
    if faces.ndim != 2 or faces.shape[-1] != 3 or vertices.ndim != 2 or vertices.shape[-1] != 3:
        raise ValueError(
            f"rasterize: vertices [n, 3] and faces [m, 3] expected, got {tuple(vertices.shape)}, {tuple(faces.shape)}"
        )
    uv_v, z_v = project(vertices, c2w.to(vertices), K.to(vertices))
    uv, z = uv_v[faces], z_v[faces]  # [m, 3, 2], [m, 3]
    keep = (z > near).all(dim=-1)
    ids = torch.nonzero(keep).squeeze(-1)
    uv, inv_z = uv[ids], 1.0 / z[ids]
    lo = (uv.amin(dim=1) - 0.5).ceil().clamp(min=0)  # first pixel whose centre can be inside
    hi = (uv.amax(dim=1) - 0.5).floor()
    hi = torch.minimum(hi, torch.tensor([width - 1, height - 1], dtype=hi.dtype, device=hi.device))
    ok = (hi >= lo).all(dim=-1)
    ids, uv, inv_z, lo, hi = ids[ok], uv[ok], inv_z[ok], lo[ok].long(), hi[ok].long()
    side = (hi - lo + 1).amax(dim=-1)  # [m'] box side in pixels
    zbuf = torch.full((height * width,), math.inf, dtype=vertices.dtype, device=vertices.device)
    hits: list[tuple[Tensor, Tensor, Tensor]] = []
    # group triangles by box size (powers of two) so small triangles do not pay for large boxes
    bucket = torch.ceil(torch.log2(side.to(torch.float64))).long()
    for b in torch.unique(bucket).tolist():
        sel = torch.nonzero(bucket == b).squeeze(-1)
        s = int(2**b)
        per = max(chunk // (s * s), 1)
        for start in range(0, len(sel), per):
            part = sel[start : start + per]
            pixel, depth = _cover(uv[part], inv_z[part], lo[part], s, width, height)
            m = pixel >= 0
            pix, dep = pixel[m], depth[m]
            face = ids[part][:, None].expand_as(pixel)[m]
            zbuf.scatter_reduce_(0, pix, dep, reduce="amin")
            hits.append((pix, dep, face))
    face_buf = torch.full((height * width,), -1, dtype=torch.long, device=vertices.device)
    for pix, dep, face in hits:  # the triangle whose depth is the minimum wins (ties: the larger index)
        win = dep == zbuf[pix]
        face_buf.scatter_reduce_(0, pix[win], face[win], reduce="amax")
    return Raster(depth=zbuf.reshape(height, width), face=face_buf.reshape(height, width))


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """[m, 3] unit normals of the triangles (right-hand rule over the corner order)."""
    a, b, c = vertices[faces].unbind(dim=1)
    return torch.nn.functional.normalize(torch.cross(b - a, c - a, dim=-1), dim=-1)


def shade(
    vertices: Tensor,
    faces: Tensor,
    raster: Raster,
    c2w: Tensor,
    *,
    colors: Tensor | None = None,
    ambient: float = 0.35,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Tensor:
    """Flat Lambertian shading with a light at the camera (two-sided: a normal's sign does not matter).

    Args:
        vertices: [n, 3]; faces: [m, 3]; raster: from :func:`rasterize` with the same mesh and ``c2w``.
        colors: [n, 3] vertex colours in [0, 1] (a face takes the mean of its corners), None: light grey.
    Returns:
        [H, W, 3] image in [0, 1].
    """
    normals = face_normals(vertices, faces)
    centres = vertices[faces].mean(dim=1)
    to_cam = torch.nn.functional.normalize(c2w[:3, 3].to(vertices) - centres, dim=-1)
    lambert = (normals * to_cam).sum(-1).abs()
    base = colors[faces].mean(dim=1) if colors is not None else torch.full_like(centres, 0.8)
    face_rgb = base * (ambient + (1.0 - ambient) * lambert)[:, None]
    img = torch.tensor(background, dtype=vertices.dtype, device=vertices.device).expand(*raster.face.shape, 3).clone()
    hit = raster.face >= 0
    img[hit] = face_rgb[raster.face[hit]].clamp(0, 1)
    return img


def orbit_camera(
    vertices: Tensor,
    width: int,
    height: int,
    *,
    azimuth_deg: float = 30.0,
    elevation_deg: float = 30.0,
    fov_deg: float = 40.0,
    up: tuple[float, float, float] = (0.0, 0.0, 1.0),
    margin: float = 1.1,
) -> tuple[Tensor, Tensor]:
    """A camera looking at the centre of the vertices' bounding box from far enough to see all of it.

    Args:
        vertices: [n, 3]; width, height: image size; azimuth / elevation: direction of the camera from the
            centre (degrees, around ``up``); fov_deg: vertical field of view; margin: extra distance factor.
    Returns:
        c2w: [3, 4] OpenGL camera-to-world; K: [3, 3].
    """
    from neural3d.core.poses import look_at

    v = vertices.to(torch.float64)
    lo, hi = v.amin(dim=0), v.amax(dim=0)
    centre, radius = (lo + hi) / 2, float((hi - lo).norm()) / 2
    upv = torch.nn.functional.normalize(torch.tensor(up, dtype=torch.float64), dim=0)
    side = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if float(side @ upv) ** 2 > 0.5:
        side = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    e1 = torch.nn.functional.normalize(side - (side @ upv) * upv, dim=0)
    e2 = torch.cross(upv, e1, dim=0)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    direction = math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * upv
    half = math.radians(min(fov_deg, fov_deg * width / height)) / 2
    distance = margin * radius / math.sin(half)
    c2w = look_at(centre + distance * direction, centre, upv)
    focal = height / 2 / math.tan(math.radians(fov_deg) / 2)
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return c2w.to(vertices.dtype), K.to(vertices.dtype)


def render_mesh(
    vertices: Tensor, faces: Tensor, width: int, height: int, *, colors: Tensor | None = None, **camera
) -> Tensor:
    """[H, W, 3] shaded picture of a mesh from :func:`orbit_camera` (``camera``: its keyword arguments)."""
    c2w, K = orbit_camera(vertices, width, height, **camera)
    raster = rasterize(vertices, faces, c2w, K, width, height)
    return shade(vertices, faces, raster, c2w, colors=colors)
