"""Projection matrices ``P = K [R | t]``: RQ decomposition into intrinsics and pose, in float64 numpy.

A 3x4 projection matrix is defined up to a non-zero scale ``lambda``: ``P = lambda K [R | t]`` with ``K`` upper
triangular (positive diagonal, ``K[2, 2] = 1``) and ``R`` a rotation. :func:`decompose_projection` recovers
``K``, ``R`` and the camera centre ``C = -R^T t`` (Hartley & Zisserman, "Multiple View Geometry", 6.2.4), which is
what IDR / NeuS get from ``cv2.decomposeProjectionMatrix``:

1. ``M = P[:, :3]``; if ``det M < 0`` the whole of ``P`` is negated (``-P`` is the same camera, and a proper
   camera ``K R`` has ``det = det K > 0``);
2. RQ decomposition ``M = K' Q`` (:func:`rq3`), from the QR decomposition of the row-reversed transpose;
3. signs: ``D = diag(sign(diag K'))``, ``K = K' D``, ``R = D Q`` (``D^2 = I``, so ``K R = M``); now ``K`` has a
   positive diagonal and ``det R = det M / det K > 0``, so ``R`` is a rotation;
4. ``K /= K[2, 2]`` and ``C = -M^{-1} P[:, 3]``.

The result is in the OpenCV camera frame (x right, y down, z forward) and in ``K``'s own pixel convention; the
DTU loader (:mod:`neural3d.data.dtu`) converts both to ours.
"""

from __future__ import annotations

import numpy as np

# smallest / largest singular value of M below which P is refused as singular
SINGULAR_RCOND = 1e-10
_REVERSE = np.eye(3)[::-1]  # the 3x3 exchange matrix (reverses rows or columns)


class SingularProjectionError(ValueError):
    """A projection matrix whose left 3x3 block is (numerically) singular or not finite: no camera.

    Attributes:
        indices: flat batch indices of the offending matrices.
    """

    def __init__(self, message: str, indices: list[int]):
        super().__init__(message)
        self.indices = indices


def rq3(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RQ decomposition ``M = U Q`` of 3x3 matrices: ``U`` upper triangular, ``Q`` orthogonal.

    With ``E`` the exchange matrix, ``(E M)^T = Q~ R~`` (QR) gives ``M = (E R~^T E)(E Q~^T)``, and
    ``E R~^T E`` is upper triangular. The diagonal signs of ``U`` are whatever the QR returns (see
    :func:`decompose_projection` for the fix).

    Args:
        M: [*batch, 3, 3] float64.
    Returns:
        (U [*batch, 3, 3], Q [*batch, 3, 3]).
    """
    q, r = np.linalg.qr(np.swapaxes(_REVERSE @ M, -1, -2))
    U = _REVERSE @ np.swapaxes(r, -1, -2) @ _REVERSE
    Q = _REVERSE @ np.swapaxes(q, -1, -2)
    return U, Q


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intrinsics, rotation and camera centre of projection matrices ``P = lambda K [R | t]``.

    Args:
        P: [*batch, 3, 4] (or [*batch, 4, 4], the bottom row ignored) projection matrices, any non-zero scale.
    Returns:
        K: [*batch, 3, 3] float64 upper triangular, positive diagonal, ``K[2, 2] = 1`` (``K[0, 1]`` is the skew).
        R: [*batch, 3, 3] float64 world-to-camera rotation (OpenCV camera axes), ``det R = +1``.
        C: [*batch, 3] float64 camera centre in world coordinates (``t = -R C``).
    Raises:
        SingularProjectionError: ``P`` has non-finite entries or ``P[:, :3]`` is singular (smallest singular
            value below ``SINGULAR_RCOND`` times the largest); the message lists the offending batch indices.
    """
    P = np.asarray(P, dtype=np.float64)[..., :3, :4]
    flat = P.reshape(-1, 3, 4)
    bad = ~np.isfinite(flat).all(axis=(1, 2))
    if bad.any():
        idx = np.flatnonzero(bad).tolist()
        raise SingularProjectionError(f"non-finite entries in matrix {idx[:10]}", idx)
    sv = np.linalg.svd(flat[:, :, :3], compute_uv=False)
    singular = sv[:, -1] <= SINGULAR_RCOND * sv[:, 0]
    if singular.any():
        idx = np.flatnonzero(singular).tolist()
        raise SingularProjectionError(
            f"P[:, :3] is singular in matrix {idx[:10]} (singular values {np.array2string(sv[idx[0]], precision=3)})",
            idx,
        )
    P = np.where((np.linalg.det(P[..., :3]) < 0)[..., None, None], -P, P)
    M, p4 = P[..., :3], P[..., 3]
    U, Q = rq3(M)
    signs = np.where(np.diagonal(U, axis1=-2, axis2=-1) < 0, -1.0, 1.0)  # [*batch, 3]
    K = U * signs[..., None, :]  # K = U D: scales the columns
    R = Q * signs[..., :, None]  # R = D Q: scales the rows
    K = K / K[..., 2:3, 2:3]
    C = -np.linalg.solve(M, p4[..., None])[..., 0]
    return K, R, C


def compose_projection(K: np.ndarray, R: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``P = K [R | -R C]``: [*batch, 3, 4] float64 from K [*batch, 3, 3], R [*batch, 3, 3], C [*batch, 3]."""
    K, R, C = (np.asarray(a, dtype=np.float64) for a in (K, R, C))
    t = -(R @ C[..., None])
    return K @ np.concatenate([R, t], axis=-1)
