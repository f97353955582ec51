"""Static scene content: training-camera frustums with thumbnails, the scene box, the up direction, the first view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from neural3d.viewer.camera import c2w_to_viser, vertical_fov


@dataclass
class SceneLayout:
    """Where things are: derived from the training cameras (or the scene box when there is no dataset).

    Attributes:
        up: [3] world up (mean camera up).
        target: [3] point the cameras look at (orbit pivot).
        scale: typical camera-to-target distance.
        start_c2w: [3, 4] OpenGL pose of the first view.
        start_fov: its vertical field of view (radians).
    """

    up: np.ndarray
    target: np.ndarray
    scale: float
    start_c2w: np.ndarray
    start_fov: float


def look_target(c2w: np.ndarray) -> np.ndarray | None:
    """Least-squares point closest to all optical axes of c2w [n, 3, 4]; None when ill-conditioned (parallel axes)."""
    centers, fwd = c2w[:, :, 3], -c2w[:, :, 2]
    A = np.eye(3)[None] - fwd[:, :, None] * fwd[:, None, :]
    M, b = A.sum(0), (A @ centers[:, :, None]).sum(0)[:, 0]
    if len(c2w) < 2 or np.linalg.cond(M) > 1e4:
        return None
    return np.linalg.solve(M, b)


def _between_cameras(c2w: np.ndarray) -> np.ndarray:
    """[3, 4] pose half-way between training camera 0 and its nearest neighbour (no frustum in the way)."""
    if len(c2w) < 2:
        return c2w[0].copy()
    from neural3d.media.paths import interpolate_poses

    d = np.linalg.norm(c2w[1:, :, 3] - c2w[0, :, 3], axis=1)
    keys = torch.from_numpy(np.stack([c2w[0], c2w[1 + int(np.argmin(d))]]))
    return interpolate_poses(keys, 3, position="linear")[1].numpy()


def scene_layout(info, dataset=None) -> SceneLayout:
    """Layout from the training cameras of ``dataset`` (SceneData) or, without it, from ``info.scene_box``."""
    if dataset is not None and len(dataset.cameras) > 0:
        idx = dataset.splits.get("train", torch.arange(len(dataset.cameras)))
        cams = dataset.cameras[idx].to("cpu")
        c2w = cams.camera_to_worlds.double().numpy()
        up = c2w[:, :, 1].mean(0)
        up /= np.linalg.norm(up)
        target = look_target(c2w)
        dist = np.linalg.norm(c2w[:, :, 3] - (target if target is not None else c2w[:, :, 3].mean(0)), axis=1)
        scale = float(np.median(dist)) if target is not None else float(np.ptp(c2w[:, :, 3], 0).max() or 1.0)
        if target is None:  # forward-facing: pivot in front of the mean camera
            target = c2w[:, :, 3].mean(0) - c2w[:, :, 2].mean(0) * 2.0 * scale
        start = _between_cameras(c2w)  # no frustum in the way
        if not info.ndc:  # object-centric: pulled back so the camera rig is in view (NDC scenes end at the rig)
            start[:, 3] = target + 1.5 * (start[:, 3] - target)
        return SceneLayout(up, target, max(scale, 1e-3), start, vertical_fov(float(cams.fy[0]), float(cams.height[0])))
    box = info.scene_box.double().cpu().numpy()
    center, extent = box.mean(0), float(np.ptp(box, 0).max())
    eye = center + np.array([0.0, -1.5, 0.8]) * extent
    from neural3d.core.poses import look_at

    c2w = look_at(torch.tensor(eye), torch.tensor(center), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).numpy()
    return SceneLayout(np.array([0.0, 0.0, 1.0]), center, 1.7 * extent, c2w, np.radians(50.0))


def thumbnail(image: torch.Tensor, max_side: int = 64) -> np.ndarray:
    """uint8 [h, w, 3] thumbnail (area average) of an image [H, W, 3] in [0, 1], longest side <= max_side."""
    img = image.float().cpu().permute(2, 0, 1)[None]
    H, W = img.shape[-2:]
    s = min(1.0, max_side / max(H, W))
    if s < 1.0:
        img = torch.nn.functional.interpolate(img, size=(max(1, round(H * s)), max(1, round(W * s))), mode="area")
    return (img[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def add_training_frustums(
    scene_api, dataset, layout: SceneLayout, max_cameras: int = 200, thumb_side: int = 64
) -> list:
    """One frustum per training camera (at most ``max_cameras``, evenly spaced) with its image as a thumbnail;
    clicking one moves the tab's camera to it."""
    idx = dataset.splits.get("train", torch.arange(len(dataset.cameras)))
    if len(idx) > max_cameras:
        idx = idx[torch.linspace(0, len(idx) - 1, max_cameras).round().long()]
    cams = dataset.cameras.to("cpu")
    size = 0.08 * layout.scale
    centers = cams.camera_to_worlds[idx.cpu(), :, 3].double()
    if len(centers) > 1:  # no larger than half the typical spacing (forward-facing rigs are tight)
        d = torch.cdist(centers, centers) + torch.eye(len(centers), dtype=torch.float64) * 1e30
        size = min(size, 0.5 * float(d.min(1).values.median()))
    handles = []
    for i in idx.tolist():
        wxyz, pos = c2w_to_viser(cams.camera_to_worlds[i].double().numpy())
        h, w = float(cams.height[i]), float(cams.width[i])
        frustum = scene_api.add_camera_frustum(
            f"/training_cameras/{i:04d}",
            fov=vertical_fov(float(cams.fy[i]), h),
            aspect=w / h,
            scale=size,
            image=thumbnail(dataset.images[i], thumb_side),
            format="jpeg",
            wxyz=wxyz,
            position=pos,
            color=(40, 90, 200),
            thickness=1.5,
            thickness_units="screen",
        )
        frustum.on_click(_jump_to(wxyz, pos))
        handles.append(frustum)
    return handles


def _jump_to(wxyz: np.ndarray, position: np.ndarray):
    """Click callback: move the clicking tab's camera to a training camera's pose."""

    def jump(event) -> None:
        client = event.client
        if client is not None:
            with client.atomic():
                client.camera.wxyz, client.camera.position = wxyz, position

    return jump


def add_scene_box(scene_api, info):
    """Wireframe scene box (not for NDC scenes, whose box lives in NDC space); returns the handle or None."""
    if info.ndc:
        return None
    box = info.scene_box.double().cpu().numpy()
    return scene_api.add_box(
        "/scene_box",
        color=(230, 120, 30),
        dimensions=tuple(np.ptp(box, 0)),
        position=tuple(box.mean(0)),
        wireframe=True,
    )
