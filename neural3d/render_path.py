"""Camera paths for rendering videos from a trained run: dataset paths, orbits, spirals, keyframe files."""

from __future__ import annotations

from pathlib import Path

import torch

from neural3d.cameras import Cameras


def _intrinsics_like(scene, c2w: torch.Tensor, scale: float = 1.0) -> Cameras:
    ref = scene.cameras[int(scene.splits["train"][0])] if "train" in scene.splits else scene.cameras[0]
    n = c2w.shape[0]
    w, h = int(round(int(ref.width[0]) * scale)), int(round(int(ref.height[0]) * scale))
    sx, sy = w / float(ref.width[0]), h / float(ref.height[0])
    return Cameras(c2w[:, :3, :4], ref.fx.expand(n) * sx, ref.fy.expand(n) * sy, ref.cx.expand(n) * sx,
                   ref.cy.expand(n) * sy, w, h)


def orbit_from_cameras(cams: Cameras, n_frames: int) -> torch.Tensor:
    """[n_frames, 3, 4] circle around the point the training cameras look at, at their mean height.

    The orbit axis is the mean camera up vector; radius and elevation are the training cameras' means.
    """
    from neural3d.camera_paths import orbit_path

    c2w = cams.camera_to_worlds.double()
    centers, forward = c2w[:, :, 3], -c2w[:, :, 2]
    # least-squares point closest to all optical axes
    A = torch.eye(3, dtype=c2w.dtype) - forward[:, :, None] * forward[:, None, :]
    target = torch.linalg.lstsq(A.sum(0), (A @ centers[:, :, None]).sum(0)).solution[:, 0]
    up = c2w[:, :, 1].mean(0)
    up = up / up.norm()
    rel = centers - target
    radius = float(rel.norm(dim=-1).mean())
    elev = float(torch.rad2deg(torch.asin((rel @ up / rel.norm(dim=-1)).clamp(-1, 1))).mean())
    return orbit_path(center=target.float(), radius=radius, elevation_deg=elev, n=n_frames, up=up.float()).float()


def path_cameras(scene, kind: str, n_frames: int = 60, scale: float = 1.0) -> Cameras:
    """Cameras along a named path.

    Args:
        scene: a loaded SceneData.
        kind: ``auto`` (the dataset's own path: LLFF spiral, Blender orbit), ``orbit``, ``spiral``,
            ``interp`` (through the training poses), ``test``/``val``/``train`` (that split's cameras),
            or a nerfstudio ``camera_path.json`` file.
    """
    from neural3d.camera_paths import interpolate_poses, load_camera_path

    if kind.endswith(".json"):
        path = load_camera_path(Path(kind))
        n = path.c2w.shape[0]
        focal = 0.5 * path.height / torch.tan(torch.deg2rad(torch.as_tensor(path.fov_deg, dtype=torch.float32)) / 2)
        return Cameras(path.c2w, focal.expand(n), focal.expand(n), path.width / 2, path.height / 2, path.width, path.height)
    if kind in scene.splits:
        cams = scene.cameras[scene.splits[kind]]
        return _intrinsics_like(scene, cams.camera_to_worlds, scale) if scale != 1.0 else cams
    if kind in ("auto", "spiral"):
        if scene.render_poses is not None:
            return _intrinsics_like(scene, torch.as_tensor(scene.render_poses, dtype=torch.float32)[:, :3, :4], scale)
        if kind == "spiral":
            raise ValueError(f"the dataset at {scene.root} defines no spiral path (only LLFF scenes do); use orbit")
        kind = "orbit"
    train = scene.cameras[scene.splits["train"]]
    if kind == "orbit":
        return _intrinsics_like(scene, orbit_from_cameras(train, n_frames), scale)
    if kind == "interp":
        c2w = train.camera_to_worlds
        order = torch.argsort(torch.atan2(c2w[:, 1, 3], c2w[:, 0, 3]))  # sweep around the up axis
        return _intrinsics_like(scene, interpolate_poses(c2w[order], n_frames), scale)
    raise ValueError(f"unknown render path '{kind}': use auto, orbit, spiral, interp, a split name or a camera_path.json")
