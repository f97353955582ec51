"""Render resolution from measured throughput: hold a target frame rate while the camera moves."""

from __future__ import annotations

import math


class RateMeter:
    """Exponential moving average of rendered rays per second.

    Args:
        smoothing: weight of the newest measurement (0 < smoothing <= 1).
        initial: rays/s assumed before the first measurement.
    """

    def __init__(self, *, smoothing: float = 0.3, initial: float = 20000.0) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"RateMeter smoothing must be in (0, 1], got {smoothing}")
        self.smoothing = smoothing
        self.rays_per_s = float(initial)
        self.n = 0

    def add(self, n_rays: int, seconds: float) -> float:
        """Record ``n_rays`` rendered in ``seconds``; returns the updated estimate."""
        if n_rays <= 0 or seconds <= 0:
            return self.rays_per_s
        rate = n_rays / seconds
        self.rays_per_s = rate if self.n == 0 else (1 - self.smoothing) * self.rays_per_s + self.smoothing * rate
        self.n += 1
        return self.rays_per_s


def moving_height(rays_per_s: float, target_fps: float, aspect: float, max_height: int, min_height: int = 16) -> int:
    """Rows of the image that renders in ``1 / target_fps`` s at ``rays_per_s`` with ``aspect`` = W / H.

    ``H * W = H^2 * aspect = rays_per_s / target_fps``, clamped to [min_height, max_height].
    """
    if not (target_fps > 0 and aspect > 0):
        raise ValueError(f"need target_fps > 0 and aspect > 0, got {target_fps}, {aspect}")
    h = int(math.sqrt(max(rays_per_s, 0.0) / target_fps / aspect))
    return max(min(min_height, max_height), min(h, max_height))


def full_height(max_side: int, aspect: float, canvas_height: int | None = None) -> int:
    """Rows of the still (full) render: the longest side is at most ``max_side`` and the height at most the canvas'."""
    h = max_side if aspect <= 1 else max_side / aspect
    if canvas_height:
        h = min(h, canvas_height)
    return max(1, round(h))


def band_rows(rays_per_s: float, width: int, seconds: float = 0.1) -> int:
    """Rows per band of an interruptible full render: about ``seconds`` of work each (at least 1)."""
    return max(1, int(rays_per_s * seconds / max(width, 1)))
