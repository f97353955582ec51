"""Batched pinhole cameras and conversions between camera conventions.

Conventions (see ``ARCHITECTURE.md``):

* ``camera_to_worlds`` are [n_cams, 3, 4] matrices in OpenGL/Blender axes: x right, y up, the camera
  looks down -z (as in the original NeRF code).
* Intrinsics ``fx, fy, cx, cy`` are in pixels, in *continuous* pixel coordinates: pixel (u, v) covers
  [u, u+1) x [v, v+1) and its centre is (u + 0.5, v + 0.5). This is the convention of COLMAP,
  instant-ngp and nerfstudio. The original NeRF/GNT code casts rays through integer coordinates
  (``pixel_center=0.0`` in :meth:`Cameras.pixel_grid`), which is available for matching them.
* Camera-frame ray directions are ``((x - cx) / fx, -(y - cy) / fy, -1)``: not normalised, so the ray
  parameter ``t`` is the z-depth in front of the camera.

Conversions to OpenCV/COLMAP (x right, y down, z forward) and PyTorch3D (x left, y up, z forward,
row-vector world-to-view ``X_view = X_world @ R + T``) are plain matrix algebra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

# Flips the y and z camera axes: OpenGL <-> OpenCV (an involution).
_GL_CV_FLIP = torch.tensor([1.0, -1.0, -1.0])
# OpenGL -> PyTorch3D view axes: x and z flipped.
_GL_P3D_FLIP = torch.tensor([-1.0, 1.0, -1.0])


def _as_1d(value, n: int, name: str, dtype=torch.float32, device=None) -> Tensor:
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.ndim == 0:
        t = t.expand(n).clone()
    if t.shape != (n,):
        raise ValueError(f"Cameras.{name} must have shape [{n}] or be a scalar, got {tuple(t.shape)}")
    return t


@dataclass
class Cameras:
    """A batch of pinhole cameras with optional OpenCV radial-tangential distortion.

    Attributes:
        camera_to_worlds: [n_cams, 3, 4] camera-to-world poses, OpenGL axes.
        fx, fy: [n_cams] focal lengths in pixels.
        cx, cy: [n_cams] principal point in continuous pixel coordinates.
        width, height: [n_cams] image size in pixels (int64).
        distortion: optional [n_cams, 4] OpenCV coefficients (k1, k2, p1, p2).
    """

    camera_to_worlds: Tensor
    fx: Tensor
    fy: Tensor
    cx: Tensor
    cy: Tensor
    width: Tensor
    height: Tensor
    distortion: Tensor | None = None

    def __post_init__(self) -> None:
        c2w = torch.as_tensor(self.camera_to_worlds, dtype=torch.float32)
        if c2w.ndim == 2:
            c2w = c2w[None]
        if c2w.shape[-2:] == (4, 4):
            c2w = c2w[..., :3, :]
        if c2w.ndim != 3 or c2w.shape[-2:] != (3, 4):
            raise ValueError(f"camera_to_worlds must be [n_cams, 3, 4] or [n_cams, 4, 4], got {tuple(c2w.shape)}")
        n, dev = c2w.shape[0], c2w.device
        self.camera_to_worlds = c2w
        for name in ("fx", "fy", "cx", "cy"):
            setattr(self, name, _as_1d(getattr(self, name), n, name, device=dev))
        for name in ("width", "height"):
            setattr(self, name, _as_1d(getattr(self, name), n, name, dtype=torch.int64, device=dev))
        if self.distortion is not None:
            d = torch.as_tensor(self.distortion, dtype=torch.float32, device=dev)
            if d.ndim == 1:
                d = d.expand(n, -1).clone()
            if d.shape != (n, 4):
                raise ValueError(f"distortion must be [n_cams, 4] (k1, k2, p1, p2), got {tuple(d.shape)}")
            self.distortion = None if bool((d == 0).all()) else d

    # ------------------------------------------------------------------ container protocol
    def __len__(self) -> int:
        return self.camera_to_worlds.shape[0]

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> Cameras:
        if isinstance(index, int):
            index = [index]
        kw = {
            f.name: (getattr(self, f.name)[index] if getattr(self, f.name) is not None else None) for f in fields(self)
        }
        return Cameras(**kw)

    def to(self, device) -> Cameras:
        kw = {
            f.name: (getattr(self, f.name).to(device) if getattr(self, f.name) is not None else None)
            for f in fields(self)
        }
        return Cameras(**kw)

    @property
    def device(self) -> torch.device:
        return self.camera_to_worlds.device

    @staticmethod
    def cat(cams: Sequence[Cameras]) -> Cameras:
        """Concatenate camera batches (distortion filled with zeros where absent)."""
        dist = None
        if any(c.distortion is not None for c in cams):
            dist = torch.cat(
                [c.distortion if c.distortion is not None else torch.zeros(len(c), 4, device=c.device) for c in cams]
            )
        kw = {f.name: torch.cat([getattr(c, f.name) for c in cams]) for f in fields(Cameras) if f.name != "distortion"}
        return Cameras(**kw, distortion=dist)

    def replace(self, **changes) -> Cameras:
        return replace(self, **changes)

    # ------------------------------------------------------------------ matrices
    @property
    def K(self) -> Tensor:
        """[n_cams, 3, 3] intrinsic matrices (continuous pixel coordinates)."""
        K = torch.zeros(len(self), 3, 3, device=self.device)
        K[:, 0, 0], K[:, 1, 1] = self.fx, self.fy
        K[:, 0, 2], K[:, 1, 2] = self.cx, self.cy
        K[:, 2, 2] = 1.0
        return K

    @property
    def centers(self) -> Tensor:
        """[n_cams, 3] camera centres in world coordinates."""
        return self.camera_to_worlds[:, :, 3]

    def world_to_cameras(self) -> Tensor:
        """[n_cams, 3, 4] world-to-camera (OpenGL axes) rigid transforms."""
        R, t = self.camera_to_worlds[:, :, :3], self.camera_to_worlds[:, :, 3:]
        Rt = R.transpose(1, 2)
        return torch.cat([Rt, -Rt @ t], dim=2)

    # ------------------------------------------------------------------ rays
    def pixel_grid(self, index: int = 0, pixel_center: float = 0.5) -> Tensor:
        """[H, W, 2] continuous (x, y) coordinates of the pixel centres of camera ``index``.

        ``pixel_center=0.5`` is the true centre; ``0.0`` reproduces the original NeRF/GNT code.
        """
        H, W = int(self.height[index]), int(self.width[index])
        ys, xs = torch.meshgrid(
            torch.arange(H, dtype=torch.float32, device=self.device),
            torch.arange(W, dtype=torch.float32, device=self.device),
            indexing="ij",
        )
        return torch.stack([xs, ys], dim=-1) + pixel_center

    def camera_directions(self, camera_indices: Tensor, xy: Tensor) -> Tensor:
        """Camera-frame (OpenGL) ray directions with z = -1.

        Args:
            camera_indices: [n_rays] int64.
            xy: [n_rays, 2] continuous pixel coordinates.
        Returns:
            [n_rays, 3] directions ((x-cx)/fx, -(y-cy)/fy, -1), undistorted when distortion is set.
        """
        u = (xy[:, 0] - self.cx[camera_indices]) / self.fx[camera_indices]
        v = (xy[:, 1] - self.cy[camera_indices]) / self.fy[camera_indices]
        if self.distortion is not None:
            from neural3d.core.lens_distortion import undistort_points

            uv = undistort_points(torch.stack([u, v], -1), self.distortion[camera_indices])
            u, v = uv[:, 0], uv[:, 1]
        return torch.stack([u, -v, -torch.ones_like(u)], dim=-1)

    def directions_to_world(self, camera_indices: Tensor, dirs_cam: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate camera-frame directions to world; returns (origins [n_rays, 3], directions [n_rays, 3])."""
        c2w = self.camera_to_worlds[camera_indices]
        dirs = torch.einsum("nij,nj->ni", c2w[:, :, :3], dirs_cam)
        return c2w[:, :, 3], dirs

    # ------------------------------------------------------------------ projection
    def project(self, points: Tensor, camera_indices: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Project world points into cameras (distortion applied when set).

        Args:
            points: [n_cams, n_points, 3] world points (or [n_points, 3], broadcast to all cameras).
            camera_indices: optional [n_cams] subset of cameras.
        Returns:
            xy: [n_cams, n_points, 2] continuous pixel coordinates.
            depth: [n_cams, n_points] z-depth in front of the camera (negative behind it).
        """
        cams = self if camera_indices is None else self[camera_indices]
        if points.ndim == 2:
            points = points[None].expand(len(cams), -1, -1)
        w2c = cams.world_to_cameras()
        p = torch.einsum("nij,npj->npi", w2c[:, :, :3], points) + w2c[:, None, :, 3]
        depth = -p[..., 2]
        u = p[..., 0] / depth
        v = -p[..., 1] / depth
        if cams.distortion is not None:
            from neural3d.core.lens_distortion import distort_points

            uv = distort_points(torch.stack([u, v], -1), cams.distortion[:, None, :])
            u, v = uv[..., 0], uv[..., 1]
        x = u * cams.fx[:, None] + cams.cx[:, None]
        y = v * cams.fy[:, None] + cams.cy[:, None]
        return torch.stack([x, y], dim=-1), depth

    # ------------------------------------------------------------------ conventions
    @classmethod
    def from_opencv(cls, c2w_opencv: Tensor, K: Tensor, width, height, distortion=None) -> Cameras:
        """Build from OpenCV/COLMAP camera-to-world ([n,3,4] or [n,4,4]; x right, y down, z forward) and K [n,3,3]."""
        c2w_opencv = torch.as_tensor(c2w_opencv, dtype=torch.float32)
        K = torch.as_tensor(K, dtype=torch.float32)
        c2w = c2w_opencv[..., :3, :4].clone()
        c2w[..., :3, :3] = c2w[..., :3, :3] * _GL_CV_FLIP.to(c2w)
        return cls(c2w, K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], width, height, distortion)

    def to_opencv(self) -> tuple[Tensor, Tensor]:
        """Returns (c2w_opencv [n_cams, 4, 4], K [n_cams, 3, 3])."""
        c2w = torch.eye(4, device=self.device).repeat(len(self), 1, 1)
        c2w[:, :3, :4] = self.camera_to_worlds
        c2w[:, :3, :3] = c2w[:, :3, :3] * _GL_CV_FLIP.to(c2w)
        return c2w, self.K

    def to_pytorch3d(self) -> dict[str, Tensor]:
        """PyTorch3D ``PerspectiveCameras`` arguments in screen space (``in_ndc=False``).

        Returns a dict with ``R`` [n_cams, 3, 3], ``T`` [n_cams, 3] (``X_view = X_world @ R + T``),
        ``focal_length`` [n_cams, 2], ``principal_point`` [n_cams, 2] and ``image_size`` [n_cams, 2] (H, W).
        """
        w2c = self.world_to_cameras()  # OpenGL view axes
        flip = _GL_P3D_FLIP.to(w2c)
        R_view = w2c[:, :, :3] * flip[None, :, None]  # rows flipped -> PyTorch3D view axes
        T = w2c[:, :, 3] * flip
        return {
            "R": R_view.transpose(1, 2),
            "T": T,
            "focal_length": torch.stack([self.fx, self.fy], -1),
            "principal_point": torch.stack([self.cx, self.cy], -1),
            "image_size": torch.stack([self.height, self.width], -1),
        }

    @classmethod
    def from_pytorch3d(
        cls, R: Tensor, T: Tensor, focal_length: Tensor, principal_point: Tensor, image_size: Tensor
    ) -> Cameras:
        """Inverse of :meth:`to_pytorch3d` (screen-space PyTorch3D cameras)."""
        flip = _GL_P3D_FLIP.to(R)
        R_view = R.transpose(1, 2) * flip[None, :, None]  # world->GL view rotation
        t_view = T * flip
        Rc = R_view.transpose(1, 2)
        c2w = torch.cat([Rc, -(Rc @ t_view[..., None])], dim=2)
        return cls(
            c2w,
            focal_length[:, 0],
            focal_length[:, 1],
            principal_point[:, 0],
            principal_point[:, 1],
            image_size[:, 1],
            image_size[:, 0],
        )


def check_poses(c2w: Tensor, source: str = "poses", atol: float = 1e-3) -> None:
    """Raise ValueError if camera-to-world poses contain NaN/inf or a non-rigid rotation.

    Args:
        c2w: [n_cams, 3, 4] or [n_cams, 4, 4].
        source: what to name in the message (a file path).
    """
    c2w = torch.as_tensor(c2w, dtype=torch.float64)
    bad = ~torch.isfinite(c2w.reshape(c2w.shape[0], -1)).all(-1)
    if bad.any():
        raise ValueError(f"{source}: pose(s) {bad.nonzero().flatten().tolist()[:10]} contain NaN or inf")
    R = c2w[:, :3, :3]
    eye = torch.eye(3, dtype=R.dtype)
    err = (R.transpose(1, 2) @ R - eye).abs().amax(dim=(1, 2))
    det = torch.linalg.det(R)
    bad = (err > atol) | ((det - 1).abs() > atol)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"{source}: pose {i} is not a rigid transform "
            f"(|R^T R - I| = {float(err[i]):.3g}, det R = {float(det[i]):.4g})"
        )
