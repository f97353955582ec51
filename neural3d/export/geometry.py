"""Shared geometry for the exporters: rendered depth -> world points, NDC -> world, density access."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from neural3d.core.cameras import Cameras


def ndc_to_world(points: Tensor, ndc_params: tuple[float, float, float], near_plane: float = 1.0) -> Tensor:
    """Invert the forward-facing NDC map of :func:`neural3d.core.rays.ndc_rays` for points.

    NDC maps a world point (X, Y, Z) (Z < 0, camera space of the reference pose) to
    ``(-2f/W * X/Z, -2f/H * Y/Z, 1 + 2 n / Z)``; this is its inverse.

    Args:
        points: [*batch, 3] NDC points with z < 1.
        ndc_params: (width, height, focal) of the reference camera.
        near_plane: NDC near plane (1.0 as in :func:`neural3d.core.rays.apply_ndc`).

    Returns:
        [*batch, 3] world points.
    """
    width, height, focal = ndc_params
    x, y, z = points.unbind(-1)
    Z = 2.0 * near_plane / (z - 1.0).clamp(max=-1e-6)
    X = -x * Z * width / (2.0 * focal)
    Y = -y * Z * height / (2.0 * focal)
    return torch.stack([X, Y, Z], -1)


def to_world(points: Tensor, info) -> Tensor:
    """[*batch, 3] points in the model's ray space (NDC for forward-facing scenes) -> world."""
    return ndc_to_world(points, info.ndc_params) if info.ndc and info.ndc_params is not None else points


def unblend(rgb: Tensor, opacity: Tensor, background: Tensor | None) -> Tensor:
    """Foreground colour of pixels composited as ``rgb = c * a + (1 - a) * bg``.

    Args:
        rgb: [*batch, 3]; opacity: [*batch]; background: [3] or None (no compositing).

    Returns:
        [*batch, 3] in [0, 1].
    """
    if background is None:
        return rgb.clamp(0, 1)
    bg = background.to(rgb)
    a = opacity[..., None].clamp_min(1e-6)
    return ((rgb - (1.0 - a) * bg) / a).clamp(0, 1)


@torch.no_grad()
def depth_points(
    loaded, camera: Cameras, out: dict[str, Tensor] | None = None, *, chunk: int = 8192
) -> dict[str, Tensor]:
    """Back-project one rendered view to world points.

    Args:
        loaded: a :class:`neural3d.api.LoadedScene`.
        camera: a single camera (``len(camera) == 1``).
        out: its render (``rgb`` [1, H, W, 3], ``depth``/``opacity`` [1, H, W]); rendered here if None.

    Returns:
        dict with ``points`` [H, W, 3] world points at the expected depth, ``colors`` [H, W, 3]
        (foreground colour, background removed), ``opacity`` [H, W], ``z`` [H, W] camera z-depth
        (distance along the optical axis, > 0 in front), all on the model's device.
    """
    if len(camera) != 1:
        raise ValueError(f"depth_points: expected one camera, got {len(camera)}")
    camera = camera.to(loaded.device)
    if out is None:
        out = loaded.render(camera, chunk=chunk)
    rays = loaded.info.image_rays(camera, 0, loaded.pixel_center)  # [H, W] in the model's ray space
    depth, opacity = out["depth"][0], out["opacity"][0]
    pts = to_world(rays.origins + depth[..., None] * rays.directions, loaded.info)
    c2w = camera.camera_to_worlds[0]
    z = -((pts - c2w[:, 3]) @ c2w[:, 2])  # camera looks down -z
    colors = unblend(out["rgb"][0], opacity, loaded.info.background)
    return {"points": pts, "colors": colors, "opacity": opacity, "z": z}


def density_function(model) -> Callable[[Tensor], Tensor]:
    """The model's density ``positions [*batch, 3] -> [*batch, 1]`` (field space: NDC when the scene is).

    Looks for ``model.density`` and then the fields ``field``, ``fine_field``, ``coarse_field``.
    """
    if callable(getattr(model, "density", None)):
        return model.density
    for name in ("field", "fine_field", "coarse_field"):
        field = getattr(model, name, None)
        if field is not None and callable(getattr(field, "density", None)):
            return field.density
    raise ValueError(
        f"method {type(model).__name__} has no density field (model.density / model.field.density); "
        "export a mesh with --method tsdf instead"
    )
