"""One render thread per browser tab: progressive, interruptible rendering of the tab's camera.

While the camera moves the worker renders at the resolution that holds ``target_fps`` at the measured
rays/s; once the camera has rested for ``still_delay`` seconds it renders the full resolution in row bands
and abandons that render as soon as the camera moves again (stale frames are never sent).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from neural3d.viewer.camera import CameraState
from neural3d.viewer.frames import frame_image
from neural3d.viewer.resolution import RateMeter, band_rows, full_height, moving_height


@dataclass
class RenderSettings:
    """What a tab asked for (changed from the GUI).

    Attributes:
        output: rgb | depth | opacity.
        max_side: longest side of the full-resolution render (pixels).
        target_fps: frame rate to hold while moving.
        background: [3] in [0, 1], or None for the model's own.
        canvas_height: browser canvas rows (caps the full render), None if unknown.
    """

    output: str = "rgb"
    max_side: int = 512
    target_fps: float = 8.0
    background: tuple[float, float, float] | None = None
    canvas_height: int | None = None


@dataclass
class WorkerStats:
    frames: int = 0  # images sent
    low_res: int = 0
    full_res: int = 0
    interrupted: int = 0
    first_frame_s: float | None = None  # from the first camera to the first image sent
    full_res_s: list[float] = field(default_factory=list)  # last camera move -> full image sent (incl. still_delay)
    low_res_fps: list[float] = field(default_factory=list)  # 1 / seconds of each low-res render
    last_size: tuple[int, int] = (0, 0)  # (H, W) of the last image
    full_size: tuple[int, int] = (0, 0)  # (H, W) of the last full-resolution image
    low_size: tuple[int, int] = (0, 0)  # (H, W) of the last low-resolution image
    errors: list[str] = field(default_factory=list)


class RenderWorker:
    """Render thread of one tab.

    Args:
        scene: :class:`viewer.scene_handle.SceneHandle`.
        send: called with each finished uint8 [H, W, 3] image and ``"low"`` / ``"full"`` / ``"partial"``.
        still_delay: seconds without camera updates before the full-resolution render starts.
        min_height: smallest moving-render height.
        chunk: rays per model call inside a render (``LoadedScene.render``).
        band_seconds: work per row band of a full-resolution render (the camera is checked between bands).
        frame_seconds: a full-resolution frame expected (at the measured rays/s) to take at most this long is
            rendered in one call, not in bands: one march and no per-band overheads (0: always bands).
        min_band_rays: the smallest band (rays, whole rows): every render call has a fixed cost (rays, chunking,
            early-termination rounds: ~7 ms of CPU on the lego race's model), which small bands multiply.
    """

    def __init__(
        self,
        scene,
        send: Callable[[np.ndarray, str], None],
        *,
        settings: RenderSettings | None = None,
        still_delay: float = 0.3,
        min_height: int = 16,
        chunk: int = 8192,
        name: str = "viewer-render",
        band_seconds: float = 0.05,
        frame_seconds: float = 0.25,
        min_band_rays: int = 4096,
    ) -> None:
        self.scene = scene
        self.send = send
        self.settings = settings or RenderSettings()
        self.still_delay = still_delay
        self.min_height = min_height
        self.chunk = chunk
        self.band_seconds, self.frame_seconds, self.min_band_rays = band_seconds, frame_seconds, min_band_rays
        model = getattr(getattr(scene, "loaded", None), "model", None)
        self._whole_images = bool(getattr(model, "renders_whole_images", False))
        self.rate = RateMeter()  # rays/s of full-resolution bands (sizes the bands)
        self.move_rate = RateMeter()  # rays/s of whole low-res frames, per-frame overheads included (sizes them)
        self.stats = WorkerStats()
        self._cond = threading.Condition()
        self._camera: CameraState | None = None
        self._version = 0  # bumped on every camera / settings / weights change
        self._skip_low = False  # a weights or settings change at rest goes straight to full resolution
        self._moved_at = 0.0
        self._first_camera_at: float | None = None
        self._stop = False
        self.scene.add_listener(self.request_full)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ inputs (any thread)
    def update_camera(self, state: CameraState) -> None:
        with self._cond:
            now = time.perf_counter()
            if self._first_camera_at is None:
                self._first_camera_at = now
            self._camera, self._moved_at = state, now
            self._version += 1
            self._skip_low = False
            self._cond.notify_all()

    def update_settings(self, **changes) -> None:
        """Change :class:`RenderSettings` fields and re-render at full resolution."""
        with self._cond:
            self.settings = replace(self.settings, **changes)
        self.request_full()

    def request_full(self) -> None:
        """Re-render the current view at full resolution (new weights, new settings)."""
        with self._cond:
            self._version += 1
            self._skip_low = True
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (an ongoing band finishes first) and detach from the scene."""
        self.scene.remove_listener(self.request_full)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        done_version, full_version = -1, -1
        while True:
            with self._cond:
                while not self._stop:
                    if self._camera is not None and self._version != done_version:
                        break
                    rest = self.still_delay - (time.perf_counter() - self._moved_at)
                    if self._camera is not None and full_version != self._version and rest <= 0:
                        break
                    self._cond.wait(timeout=max(rest, 0.01) if full_version != self._version and self._camera else None)
                if self._stop:
                    return
                version, camera, settings, skip_low = self._version, self._camera, self.settings, self._skip_low
                resting = time.perf_counter() - self._moved_at >= self.still_delay
            try:
                if version != done_version and not (skip_low or resting):
                    self._render_low(camera, settings)
                    done_version = version
                else:
                    done_version = version
                    if self._render_full(camera, settings, version):
                        full_version = version
            except Exception as e:  # noqa: BLE001  (any model error: keep the tab alive, report it once per kind)
                msg = f"{type(e).__name__}: {e}"
                if msg not in self.stats.errors:
                    self.stats.errors.append(msg)
                    print(f"[viewer] render error: {msg}")
                done_version = full_version = version
                time.sleep(0.2)

    def _stale(self, version: int) -> bool:
        return self._version != version or self._stop

    def _emit(self, img: np.ndarray, kind: str) -> None:
        self.send(img, kind)
        s = self.stats
        s.frames += 1
        s.last_size = (int(img.shape[0]), int(img.shape[1]))
        if s.first_frame_s is None and self._first_camera_at is not None:
            s.first_frame_s = time.perf_counter() - self._first_camera_at

    def _image(self, out, settings: RenderSettings) -> np.ndarray:
        return frame_image(out, settings.output, rendered_bg=self.scene.background, background=settings.background)

    def _render_low(self, camera: CameraState, settings: RenderSettings) -> None:
        full_h = full_height(settings.max_side, camera.aspect, settings.canvas_height)
        h = moving_height(self.move_rate.rays_per_s, settings.target_fps, camera.aspect, full_h, self.min_height)
        cams = camera.cameras(h)
        start = time.perf_counter()
        out = self.scene.render(cams, self.chunk)
        dt = time.perf_counter() - start
        self.move_rate.add(h * int(cams.width[0]), dt)
        self.stats.low_res += 1
        self.stats.low_size = (h, int(cams.width[0]))
        self.stats.low_res_fps.append(1.0 / max(dt, 1e-9))
        self._emit(self._image(out, settings), "low")

    def _render_full(self, camera: CameraState, settings: RenderSettings, version: int) -> bool:
        """Render in row bands; False (nothing sent) when the camera moved meanwhile."""
        moved_at = self._moved_at
        h = full_height(settings.max_side, camera.aspect, settings.canvas_height)
        cams = camera.cameras(h)
        w = int(cams.width[0])
        parts: dict[str, list[torch.Tensor]] = {}
        row = 0
        while row < h:
            if self._stale(version):
                self.stats.interrupted += 1
                return False
            rows = max(band_rows(self.rate.rays_per_s, w, seconds=self.band_seconds), -(-self.min_band_rays // w))
            rows = min(rows, h - row)
            if self._whole_images or (row == 0 and h * w <= self.rate.rays_per_s * self.frame_seconds):
                rows = h - row  # one call (one march): LVSM's whole images, or a frame quick enough to wait for
            band = cams.replace(cy=cams.cy - row, height=torch.full_like(cams.height, rows))
            start = time.perf_counter()
            out = self.scene.render(band, self.chunk)
            self.rate.add(rows * w, time.perf_counter() - start)
            for k, v in out.items():
                parts.setdefault(k, []).append(v)
            row += rows
        if self._stale(version):
            self.stats.interrupted += 1
            return False
        full = {k: torch.cat(v, 0) for k, v in parts.items()}
        self.stats.full_res += 1
        self.stats.full_size = (h, w)
        self._emit(self._image(full, settings), "full")
        self.stats.full_res_s.append(time.perf_counter() - moved_at)
        return True
