"""LVSM's ray conditioning: Plücker maps, the official pose normalisation, padding to the patch size.

Convention (official ``utils/data_utils.py: ProcessData.compute_rays``): cameras in OpenCV axes, a ray through
the centre of pixel (x, y) has camera direction ``((x + 0.5 - cx) / fx, (y + 0.5 - cy) / fy, 1)``, rotated to
world and normalised; origin = camera centre; Plücker = ``[o × d, d]`` (moment first). Our OpenGL cameras give the
same world rays: the OpenGL direction ``(u, -v, -1)`` times ``c2w_gl = c2w_cv · diag(1, -1, -1)`` is the OpenCV
direction times ``c2w_cv``, so the unit ``viewdirs`` of :func:`~neural3d.core.rays.image_rays` (pixel centre 0.5)
are the official directions (``tests/test_lvsm.py`` checks it).

Sizes that are not multiples of the patch size p: ray maps are extended to the next multiple with the rays of the
same camera's larger image (exact for pinhole cameras), source colours by edge replication; renders are cropped back.

Pose normalisation (official ``data/dataset_scene.py: Dataset.preprocess_poses``): centre = mean camera centre;
axes = the average camera in OpenCV axes (forward = normalised mean of the c2w z columns, right =
normalise(mean down × forward), down = forward × right); then translations divided by ``1.35 × max |t|``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neural3d.core.cameras import Cameras
from neural3d.core.rays import RayBundle, image_rays


def plucker(origins: Tensor, directions: Tensor) -> Tensor:
    """[..., 3] origins and unit directions -> [..., 6] Plücker coordinates ``[o × d, d]``."""
    return torch.cat([torch.cross(origins, directions, dim=-1), directions], dim=-1)


def normalization_frame(c2w_gl: Tensor, scale_factor: float = 1.35) -> Tensor:
    """The official pose normalisation of [n, 3|4, 4] OpenGL camera-to-worlds as a [4, 4] similarity ``S``.

    ``S @ [p, 1]`` maps a world point to the normalised frame; normalised camera-to-worlds are ``S @ c2w`` (with the
    rotation columns divided back by the scale). Directions map by ``S[:3, :3]`` then renormalisation.
    """
    c2w = c2w_gl[:, :3, :4].double()
    centre = c2w[:, :, 3].mean(0)
    forward = F.normalize(-c2w[:, :, 2].mean(0), dim=-1)  # OpenCV z = -OpenGL z
    down = -c2w[:, :, 1].mean(0)  # OpenCV y = -OpenGL y
    right = F.normalize(torch.cross(down, forward, dim=-1), dim=-1)
    down = F.normalize(torch.cross(forward, right, dim=-1), dim=-1)
    R = torch.stack([right, down, forward], dim=-1)  # average camera (OpenCV columns) -> world
    t = (c2w[:, :, 3] - centre) @ R  # centres in the average camera's frame
    scale = scale_factor * t.abs().max()
    scale = scale if float(scale) > 1e-12 else torch.ones_like(scale)  # one camera: no scaling
    S = torch.eye(4, dtype=torch.float64, device=c2w.device)
    S[:3, :3] = R.T / scale
    S[:3, 3] = -(R.T @ centre) / scale
    return S.to(c2w_gl.dtype)


def transform_rays(origins: Tensor, directions: Tensor, frame: Tensor | None) -> tuple[Tensor, Tensor]:
    """Origins and unit directions [..., 3] in the frame of ``frame`` [4, 4] (None: unchanged)."""
    if frame is None:
        return origins, directions
    frame = frame.to(origins)
    o = origins @ frame[:3, :3].T + frame[:3, 3]
    return o, F.normalize(directions @ frame[:3, :3].T, dim=-1)


def bundle_plucker(rays: RayBundle, frame: Tensor | None = None, patch_size: int = 1) -> Tensor:
    """[..., H, W] ray bundle -> [..., 6, H', W'] Plücker map (unit directions, in ``frame``), H' and W' the next
    multiples of ``patch_size``: the added pixels get the rays of the same camera's larger image (origins and
    unnormalised ``directions`` extended linearly, exact for pinhole cameras: :func:`extend_linearly`)."""
    o = extend_linearly(rays.origins.movedim(-1, -3), patch_size).movedim(-3, -1)
    d = extend_linearly(rays.directions.movedim(-1, -3), patch_size).movedim(-3, -1)
    o, d = transform_rays(o, F.normalize(d, dim=-1), frame)
    return plucker(o, d).movedim(-1, -3)


def camera_plucker(
    cameras: Cameras, pixel_center: float = 0.5, frame: Tensor | None = None, patch_size: int = 1
) -> Tensor:
    """[n, 6, H', W'] Plücker maps of ``n`` cameras of one size (padded as :func:`bundle_plucker`)."""
    return torch.stack(
        [bundle_plucker(image_rays(cameras, i, 0.0, 1.0, pixel_center), frame, patch_size) for i in range(len(cameras))]
    )


def _padding(x: Tensor, p: int) -> tuple[int, int]:
    H, W = x.shape[-2:]
    return (-H) % p, (-W) % p


def pad_to_multiple(x: Tensor, p: int) -> Tensor:
    """Pad [..., H, W] at the bottom and right by edge replication to multiples of ``p`` (the source images)."""
    H, W = x.shape[-2:]
    ph, pw = _padding(x, p)
    if ph == 0 and pw == 0:
        return x
    lead = x.shape[:-2]
    y = F.pad(x.reshape(-1, 1, H, W), (0, pw, 0, ph), mode="replicate")
    return y.reshape(*lead, H + ph, W + pw)


def extend_linearly(x: Tensor, p: int) -> Tensor:
    """Pad [..., H, W] at the bottom and right to multiples of ``p`` by linear extrapolation of the last two rows /
    columns (``x[..., H - 1 + k] = x[..., H - 1] + k (x[..., H - 1] - x[..., H - 2])``); one row or column is
    replicated. A map affine in the pixel coordinates (a pinhole camera's ray directions) is extended exactly."""
    ph, pw = _padding(x, p)
    if ph:
        step = x[..., -1:, :] - x[..., -2:-1, :] if x.shape[-2] > 1 else torch.zeros_like(x[..., -1:, :])
        k = torch.arange(1, ph + 1, dtype=x.dtype, device=x.device)[:, None]
        x = torch.cat([x, x[..., -1:, :] + k * step], dim=-2)
    if pw:
        step = x[..., :, -1:] - x[..., :, -2:-1] if x.shape[-1] > 1 else torch.zeros_like(x[..., :, -1:])
        k = torch.arange(1, pw + 1, dtype=x.dtype, device=x.device)
        x = torch.cat([x, x[..., :, -1:] + k * step], dim=-1)
    return x
