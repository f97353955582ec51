"""Where things are and the first view: derived from the training cameras (or the scene box without them).

The first view shows the scene itself, with no frustum in front of it:

* object scenes (cameras around a centre): from *outside* the camera ring, looking at the centre, far enough
  that the scene box's bounding sphere fits in the field of view, from the direction (among the elevations of
  the rig) whose line of sight passes farthest from every training camera, so that no frustum is drawn over
  the scene;
* forward-facing scenes (NDC, or parallel optical axes): the first training view itself (its own frustum is
  hidden while the view sits on it, see :class:`~neural3d.viewer.server.ViewerServer`).

Frustums are sized to the spacing of the cameras (a fraction of the median nearest-neighbour distance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from neural3d.viewer.camera import vertical_fov

FRUSTUM_SPACING = 0.3  # frustum size (image-plane distance) / median nearest-neighbour spacing of the cameras


@dataclass
class SceneLayout:
    """Where things are.

    Attributes:
        up: [3] world up (mean camera up).
        target: [3] point the cameras look at (orbit pivot).
        scale: typical camera-to-target distance.
        start_c2w: [3, 4] OpenGL pose of the first view.
        start_fov: its vertical field of view (radians).
        frustum_size: world size of a training-camera frustum (its image plane's distance from its apex).
        start_camera: dataset index of the training camera the first view sits on (forward-facing), else None.
    """

    up: np.ndarray
    target: np.ndarray
    scale: float
    start_c2w: np.ndarray
    start_fov: float
    frustum_size: float = 0.1
    start_camera: int | None = None


def look_target(c2w: np.ndarray) -> np.ndarray | None:
    """Least-squares point closest to all optical axes of c2w [n, 3, 4]; None when ill-conditioned (parallel axes)."""
    centers, fwd = c2w[:, :, 3], -c2w[:, :, 2]
    A = np.eye(3)[None] - fwd[:, :, None] * fwd[:, None, :]
    M, b = A.sum(0), (A @ centers[:, :, None]).sum(0)[:, 0]
    if len(c2w) < 2 or np.linalg.cond(M) > 1e4:
        return None
    return np.linalg.solve(M, b)


def frustum_size(centers: np.ndarray, scale: float) -> float:
    """``FRUSTUM_SPACING`` x the median nearest-neighbour distance of camera centres [n, 3] (one camera: 0.08 x
    ``scale``)."""
    if len(centers) < 2:
        return 0.08 * scale
    d = np.linalg.norm(centers[:, None] - centers[None], axis=-1) + np.eye(len(centers)) * 1e30
    spacing = float(np.median(d.min(1)))
    return FRUSTUM_SPACING * spacing if spacing > 0 else 0.08 * scale


def look_at_c2w(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """OpenGL [3, 4] pose at ``eye`` looking at ``target`` with ``up`` roughly up (float64)."""
    from neural3d.core.poses import look_at

    t = torch.float64
    return look_at(torch.tensor(eye, dtype=t), torch.tensor(target, dtype=t), torch.tensor(up, dtype=t)).numpy()


def frustum_points(c2w: np.ndarray, size: float) -> np.ndarray:
    """[2n, 3]: the apex and the image-plane centre of each training frustum (c2w [n, 3, 4], depth ``size``); a
    camera on the far side of the scene faces the viewer, its thumbnail nearer the line of sight than its apex."""
    return np.concatenate([c2w[:, :, 3], c2w[:, :, 3] - size * c2w[:, :, 2]])


def clearance(eye: np.ndarray, target: np.ndarray, points: np.ndarray) -> float:
    """Smallest angle (radians) between the line of sight ``eye -> target`` and the directions to ``points``
    [n, 3] in front of the eye (pi when none is in front)."""
    axis = (target - eye) / np.linalg.norm(target - eye)
    v = points - eye
    depth = v @ axis
    front = depth > 0
    if not front.any():
        return math.pi
    cos = depth[front] / np.linalg.norm(v[front], axis=1)
    return float(np.arccos(np.clip(cos, -1.0, 1.0)).min())


def overview_pose(
    c2w: np.ndarray, target: np.ndarray, up: np.ndarray, radius: float, fov: float, size: float = 0.0
) -> np.ndarray:
    """The object-scene first view [3, 4]: outside the camera ring, looking at ``target``, the sphere of
    ``radius`` about it inside the (vertical) field of view ``fov``, along a clear line of sight.

    Candidates: 72 azimuths (from camera 0's) x 5 elevations over the rig's elevation range (clipped to 10-60
    degrees), tried from the rig's median elevation outwards; the first whose :func:`clearance` from the frustums
    (:func:`frustum_points`, depth ``size``) exceeds half the field of view wins, else the clearest.
    """
    points = frustum_points(c2w, size)
    rel = c2w[:, :, 3] - target
    ring = float(np.linalg.norm(rel, axis=1).max())
    dist = max(radius / math.sin(0.5 * fov), 1.2 * ring)
    elev = np.degrees(np.arcsin(np.clip((rel @ up) / np.linalg.norm(rel, axis=1), -1, 1)))
    lo, hi = np.clip(np.percentile(elev, [10, 90]), 10.0, 60.0)
    preferred = float(np.clip(np.median(elev), lo, hi))
    x = rel[0] - (rel[0] @ up) * up  # azimuth 0 = camera 0's
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-9 else np.cross(up, [1.0, 0.0, 0.0])
    y = np.cross(up, x)
    best, best_score = None, -1.0
    for e in sorted(np.radians(np.linspace(lo, hi, 5)), key=lambda e: abs(math.degrees(e) - preferred)):
        for a in np.radians(np.arange(0.0, 360.0, 5.0)):
            u = math.cos(e) * (math.cos(a) * x + math.sin(a) * y) + math.sin(e) * up
            eye = target + dist * u
            score = clearance(eye, target, points)
            if score > 0.5 * fov:
                return look_at_c2w(eye, target, up)
            if score > best_score + 1e-9:
                best, best_score = eye, score
    return look_at_c2w(best, target, up)


def scene_layout(info, dataset=None) -> SceneLayout:
    """Layout from the training cameras of ``dataset`` (SceneData) or, without it, from ``info.scene_box``."""
    if dataset is not None and len(dataset.cameras) > 0:
        idx = dataset.splits.get("train", torch.arange(len(dataset.cameras)))
        cams = dataset.cameras[idx].to("cpu")
        c2w = cams.camera_to_worlds.double().numpy()
        up = c2w[:, :, 1].mean(0)
        up /= np.linalg.norm(up)
        target = look_target(c2w)
        fov = vertical_fov(float(cams.fy[0]), float(cams.height[0]))
        dist = np.linalg.norm(c2w[:, :, 3] - (target if target is not None else c2w[:, :, 3].mean(0)), axis=1)
        scale = max(float(np.median(dist)) if target is not None else float(np.ptp(c2w[:, :, 3], 0).max() or 1.0), 1e-3)
        size = frustum_size(c2w[:, :, 3], scale)
        if target is None or info.ndc:  # forward-facing: the first training view
            if target is None:  # pivot in front of the mean camera
                target = c2w[:, :, 3].mean(0) - c2w[:, :, 2].mean(0) * 2.0 * scale
            return SceneLayout(up, target, scale, c2w[0].copy(), fov, size, int(idx[0]))
        box = info.scene_box.double().cpu().numpy()
        radius = 0.5 * float(np.linalg.norm(np.ptp(box, 0)))
        return SceneLayout(up, target, scale, overview_pose(c2w, target, up, radius, fov, size), fov, size)
    box = info.scene_box.double().cpu().numpy()
    center, extent = box.mean(0), float(np.ptp(box, 0).max())
    eye = center + np.array([0.0, -1.5, 0.8]) * extent
    up = np.array([0.0, 0.0, 1.0])
    return SceneLayout(up, center, 1.7 * extent, look_at_c2w(eye, center, up), np.radians(50.0), 0.08 * extent)
