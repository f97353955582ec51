"""Static scene content: training-camera frustums with thumbnails and the scene box (the first view and the
frustum size: :mod:`neural3d.viewer.layout`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from neural3d.viewer.camera import c2w_to_viser, vertical_fov
from neural3d.viewer.layout import SceneLayout


def thumbnail(image: torch.Tensor, max_side: int = 64) -> np.ndarray:
    """uint8 [h, w, 3] thumbnail (area average) of an image [H, W, 3] in [0, 1], longest side <= max_side."""
    img = image.float().cpu().permute(2, 0, 1)[None]
    H, W = img.shape[-2:]
    s = min(1.0, max_side / max(H, W))
    if s < 1.0:
        img = torch.nn.functional.interpolate(img, size=(max(1, round(H * s)), max(1, round(W * s))), mode="area")
    return (img[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def viser_frustum_scale(depth: float, fov: float, aspect: float) -> float:
    """viser's ``scale`` of a frustum whose image plane lies ``depth`` in front of its apex.

    viser's client normalises a frustum to unit volume before scaling (``CameraFrustumVariants.tsx``: x, y, z =
    tan(fov/2)·aspect, tan(fov/2), 1, divided by cbrt(x·y·z / 3)), so ``scale`` alone is not the depth: for a
    40° field of view a ``scale`` s draws a frustum 2.9 s deep.
    """
    y = math.tan(0.5 * fov)
    return depth * (y * y * aspect / 3.0) ** (1.0 / 3.0)


def training_indices(dataset, max_cameras: int = 200) -> list[int]:
    """Dataset indices of the training cameras shown (at most ``max_cameras``, evenly spaced)."""
    idx = dataset.splits.get("train", torch.arange(len(dataset.cameras)))
    if len(idx) > max_cameras:
        idx = idx[torch.linspace(0, len(idx) - 1, max_cameras).round().long()]
    return [int(i) for i in idx.tolist()]


def add_training_frustums(
    scene_api,
    dataset,
    layout: SceneLayout,
    on_click: Callable[[object, int], None] | None = None,
    max_cameras: int = 200,
    thumb_side: int = 48,
) -> dict[int, object]:
    """One frustum per training camera (at most ``max_cameras``), ``layout.frustum_size`` deep (a fraction of
    the camera spacing, so thumbnails stay small next to the scene), its image as a thumbnail.

    Returns:
        ``{dataset index: handle}``; ``on_click(client, index)`` is called when a tab clicks a frustum.
    """
    cams = dataset.cameras.to("cpu")
    handles = {}
    for i in training_indices(dataset, max_cameras):
        wxyz, pos = c2w_to_viser(cams.camera_to_worlds[i].double().numpy())
        h, w = float(cams.height[i]), float(cams.width[i])
        fov = vertical_fov(float(cams.fy[i]), h)
        frustum = scene_api.add_camera_frustum(
            f"/training_cameras/{i:04d}",
            fov=fov,
            aspect=w / h,
            scale=viser_frustum_scale(layout.frustum_size, fov, w / h),
            image=thumbnail(dataset.images[i], thumb_side),
            format="jpeg",
            wxyz=wxyz,
            position=pos,
            color=(40, 90, 200),
            thickness=1.5,
            thickness_units="screen",
        )
        if on_click is not None:
            frustum.on_click(_clicked(on_click, i))
        handles[i] = frustum
    return handles


def _clicked(on_click: Callable[[object, int], None], index: int):
    """Click callback of frustum ``index``: ``on_click(client, index)`` for the clicking tab."""

    def click(event) -> None:
        if event.client is not None:
            on_click(event.client, index)

    return click


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
