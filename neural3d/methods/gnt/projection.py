"""Project ray samples into source views: bilinear RGB + features, validity mask, ray-direction difference.

Numerics follow the official GNT ``Projector``: points go through the source camera (OpenCV axes),
``pixel = (fx x + cx z, fy y + cy z) / max(z, 1e-8)`` clamped to +-1e6; a sample is valid when it is in
front of the camera (z > 0) and lands inside the image (``0 <= pixel <= size - 1``); RGB and feature
maps are read with ``grid_sample(align_corners=True, zeros padding)`` at coordinates normalised by the
SOURCE IMAGE size (also for the smaller feature map, whose corners align with the image's).

Pixel convention: our cameras put pixel centres at ``integer + pixel_center`` (0.5 by default); the
array index of a continuous coordinate x is ``x - pixel_center``. GNT's cameras have centres at
integers, which is ``pixel_center = 0`` -- then everything here equals the official code.

Official camera records (34 floats: H, W, K 4x4, c2w 4x4 OpenCV, row-major) convert with
:func:`cameras_from_records` / :func:`cameras_to_records`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from neural3d.core.cameras import Cameras


@dataclass
class SourceViews:
    """The conditioning context of GNT: posed source images of one scene.

    Attributes:
        images: [n_views, H, W, 3] RGB in [0, 1] (all views the same size).
        cameras: ``n_views`` cameras (OpenGL c2w, our intrinsics convention).
        pixel_center: offset of pixel centres in the cameras' coordinates (0.5 ours, 0.0 GNT).
        indices: optional [n_views] indices of the views in their scene.
        features: optional cached [n_views, C, h, w] feature maps (coarse network).
        features_fine: optional cached [n_views, C, h, w] feature maps for the fine network.
        attached: the views are images ``indices`` of the model's attached scene (their feature maps
            may be cached by the model across renders).
    """

    images: Tensor
    cameras: Cameras
    pixel_center: float = 0.5
    indices: Tensor | None = None
    features: Tensor | None = None
    features_fine: Tensor | None = None
    attached: bool = False

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"SourceViews.images must be [n_views, H, W, 3], got {tuple(self.images.shape)}")
        if len(self.cameras) != self.images.shape[0]:
            raise ValueError(f"SourceViews: {self.images.shape[0]} images but {len(self.cameras)} cameras")

    @property
    def n_views(self) -> int:
        return self.images.shape[0]

    def to(self, device) -> SourceViews:
        def mv(t):
            return None if t is None else t.to(device)

        return SourceViews(
            self.images.to(device),
            self.cameras.to(device),
            self.pixel_center,
            mv(self.indices),
            mv(self.features),
            mv(self.features_fine),
            self.attached,
        )


@dataclass
class ProjectedSamples:
    """Per-sample, per-view inputs of the GNT network.

    Attributes:
        rgb_feat: [n_rays, n_samples, n_views, 3 + C] bilinear RGB then features.
        ray_diff: [n_rays, n_samples, n_views, 4] unit difference of the directions from the sample to
            the target and to the source camera centre, and their dot product.
        mask: [n_rays, n_samples, n_views, 1] float, 1 where the sample projects inside the source image
            and in front of its camera.
    """

    rgb_feat: Tensor
    ray_diff: Tensor
    mask: Tensor


def project_to_pixels(points: Tensor, cameras: Cameras, pixel_center: float = 0.5) -> tuple[Tensor, Tensor]:
    """Array-index pixel coordinates of world points in every camera (official clamping).

    Args:
        points: [n_points, 3] world points.
        cameras: ``n_cams`` cameras.
        pixel_center: pixel-centre offset of the cameras' coordinates.
    Returns:
        xy: [n_cams, n_points, 2] coordinates where integer values are pixel centres.
        in_front: [n_cams, n_points] bool, z-depth > 0.
    """
    w2c = cameras.world_to_cameras()  # OpenGL axes
    p = torch.einsum("nij,pj->npi", w2c[:, :, :3], points) + w2c[:, None, :, 3]
    x, y, z = p[..., 0], -p[..., 1], -p[..., 2]  # OpenCV axes: y down, z forward
    zc = z.clamp_min(1e-8)
    u = (cameras.fx[:, None] * x + cameras.cx[:, None] * z) / zc
    v = (cameras.fy[:, None] * y + cameras.cy[:, None] * z) / zc
    xy = torch.stack([u, v], dim=-1).clamp(-1e6, 1e6) - pixel_center
    return xy, z > 0


def direction_difference(points: Tensor, target_centers: Tensor, source_centers: Tensor) -> Tensor:
    """GNT's ray-direction difference.

    Args:
        points: [n_rays, n_samples, 3].
        target_centers: [n_rays, 3] centre of the target camera of each ray.
        source_centers: [n_views, 3].
    Returns:
        [n_rays, n_samples, n_views, 4]: unit (d_target - d_source) and d_target . d_source, where
        d_* are the unit vectors from the point to the camera centres.
    """
    to_target = target_centers[:, None, None, :] - points[:, :, None, :]
    to_target = to_target / (torch.linalg.norm(to_target, dim=-1, keepdim=True) + 1e-6)
    to_source = source_centers[None, None, :, :] - points[:, :, None, :]
    to_source = to_source / (torch.linalg.norm(to_source, dim=-1, keepdim=True) + 1e-6)
    diff = to_target - to_source
    direction = diff / torch.linalg.norm(diff, dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.cat([direction, (to_target * to_source).sum(-1, keepdim=True)], dim=-1)


def project_samples(points: Tensor, target_centers: Tensor, views: SourceViews, features: Tensor) -> ProjectedSamples:
    """Sample source RGB and features at the projections of ``points``.

    Args:
        points: [n_rays, n_samples, 3] world positions.
        target_centers: [n_rays, 3] target camera centre of each ray.
        views: the source views (images [n_views, H, W, 3]).
        features: [n_views, C, h, w] feature maps of the source images.
    Returns:
        :class:`ProjectedSamples`.
    """
    n_rays, n_samples = points.shape[:2]
    H, W = views.images.shape[1:3]
    xy, in_front = project_to_pixels(points.reshape(-1, 3), views.cameras, views.pixel_center)
    scale = torch.tensor([W - 1.0, H - 1.0], dtype=xy.dtype, device=xy.device)
    grid = (2.0 * xy / scale - 1.0).reshape(views.n_views, n_rays, n_samples, 2)
    images = views.images.permute(0, 3, 1, 2).to(features.dtype)
    rgb = F.grid_sample(images, grid, align_corners=True)  # [n_views, 3, n_rays, n_samples]
    feat = F.grid_sample(features, grid, align_corners=True)
    rgb_feat = torch.cat([rgb, feat], dim=1).permute(2, 3, 0, 1)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= W - 1.0) & (xy[..., 1] >= 0) & (xy[..., 1] <= H - 1.0)
    mask = (inside & in_front).to(rgb_feat.dtype).reshape(views.n_views, n_rays, n_samples).permute(1, 2, 0)[..., None]
    ray_diff = direction_difference(points, target_centers, views.cameras.centers)
    return ProjectedSamples(rgb_feat, ray_diff, mask)


# ---------------------------------------------------------------------------------------------- records
def cameras_from_records(records: Tensor) -> Cameras:
    """Official 34-float camera records [n, 34] (H, W, K 4x4, c2w 4x4 OpenCV; row-major) -> :class:`Cameras`.

    The intrinsics are kept as they are: use them with ``pixel_center = 0`` (GNT's pixel centres).
    """
    records = torch.as_tensor(records, dtype=torch.float32)
    if records.ndim == 1:
        records = records[None]
    if records.shape[-1] != 34:
        raise ValueError(f"camera records must be [n, 34] (H, W, K 4x4, c2w 4x4), got {tuple(records.shape)}")
    K = records[:, 2:18].reshape(-1, 4, 4)
    c2w = records[:, 18:34].reshape(-1, 4, 4)
    return Cameras.from_opencv(c2w, K[:, :3, :3], records[:, 1].round().long(), records[:, 0].round().long())


def cameras_to_records(cameras: Cameras) -> Tensor:
    """:class:`Cameras` -> official records [n_cams, 34] (OpenCV c2w; intrinsics unchanged)."""
    c2w, K3 = cameras.to_opencv()
    K = torch.eye(4, device=cameras.device).repeat(len(cameras), 1, 1)
    K[:, :3, :3] = K3
    hw = torch.stack([cameras.height, cameras.width], -1).float()
    return torch.cat([hw, K.reshape(-1, 16), c2w.reshape(-1, 16)], dim=-1)
