"""Camera-path editor of one tab: keyframes from the current view -> preview, camera_path.json, mp4."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import torch
from neural3d.viewer.camera import c2w_to_viser

from neural3d.media.camera_path_json import CameraPath, save_camera_path
from neural3d.media.paths import interpolate_poses


class Keyframes:
    """Ordered key poses (OpenGL c2w [3, 4] float64) with vertical fov (degrees) and aspect."""

    def __init__(self) -> None:
        self.c2w: list[np.ndarray] = []
        self.fov_deg: list[float] = []
        self.aspect: list[float] = []

    def __len__(self) -> int:
        return len(self.c2w)

    def add(self, c2w: np.ndarray, fov_deg: float, aspect: float) -> None:
        self.c2w.append(np.asarray(c2w, dtype=np.float64)[:3, :4].copy())
        self.fov_deg.append(float(fov_deg))
        self.aspect.append(float(aspect))

    def clear(self) -> None:
        self.c2w, self.fov_deg, self.aspect = [], [], []

    def path(self, n_frames: int, height: int, fps: float) -> tuple[CameraPath, CameraPath]:
        """(camera path of ``n_frames`` interpolated poses, the keyframes) at ``height`` rows and the first key's
        aspect.

        Poses follow :func:`neural3d.media.paths.interpolate_poses` (slerp + Catmull-Rom); the fov is linear.
        """
        if len(self) < 2:
            raise ValueError(f"a camera path needs at least 2 keyframes, have {len(self)}")
        if n_frames < 2:
            raise ValueError(f"a camera path needs at least 2 frames, got {n_frames}")
        keys = torch.from_numpy(np.stack(self.c2w))
        c2w = interpolate_poses(keys, n_frames).float()
        t = np.linspace(0.0, len(self) - 1.0, n_frames)
        fov = torch.from_numpy(np.interp(t, np.arange(len(self)), self.fov_deg)).float()
        width = max(1, round(height * self.aspect[0]))
        cp = CameraPath(c2w, fov, width, int(height), float(fps))
        kp = CameraPath(
            keys.float(),
            torch.tensor(self.fov_deg).float(),
            width,
            int(height),
            float(fps),
            aspect=torch.tensor(self.aspect).float(),
        )
        return cp, kp


class _Locked:
    """``LoadedScene``-like ``render`` that holds the scene lock (live training may swap weights meanwhile)."""

    def __init__(self, scene) -> None:
        self.scene = scene

    def render(self, cameras, chunk: int = 8192):
        with self.scene.lock:
            return self.scene.loaded.render(cameras, chunk=chunk)


class PathEditor:
    """GUI folder and actions of the camera-path editor of one tab.

    Args:
        session: the tab's :class:`viewer.server.ClientSession` (camera, scene, client).
        out_dir: default folder for camera_path.json and the mp4.
        height: default video height (rows).
    """

    def __init__(self, session, out_dir: Path, height: int) -> None:
        self.session = session
        self.keys = Keyframes()
        self._busy = threading.Lock()
        gui = session.client.gui
        with gui.add_folder("Camera path", expand_by_default=False):
            self.add_btn = gui.add_button("Add keyframe (current view)")
            self.clear_btn = gui.add_button("Clear keyframes")
            self.frames = gui.add_number("Frames", initial_value=60, min=2, max=10000, step=1)
            self.fps = gui.add_number("FPS", initial_value=30, min=1, max=120, step=1)
            self.height = gui.add_number("Video height", initial_value=int(height), min=16, max=4096, step=1)
            self.json_path = gui.add_text("camera_path.json", initial_value=str(out_dir / "camera_path.json"))
            self.video_path = gui.add_text("Video", initial_value=str(out_dir / "camera_path.mp4"))
            self.preview_btn = gui.add_button("Preview")
            self.save_btn = gui.add_button("Save camera_path.json")
            self.render_btn = gui.add_button("Render mp4")
            self.status = gui.add_markdown("0 keyframes")
        self.add_btn.on_click(lambda _: self.add_current())
        self.clear_btn.on_click(lambda _: self.clear())
        self.preview_btn.on_click(lambda _: self._background(self.preview))
        self.save_btn.on_click(lambda _: self._report(self.save))
        self.render_btn.on_click(lambda _: self._background(self.render))

    # ------------------------------------------------------------------ actions
    def add_current(self) -> None:
        state = self.session.camera_state
        if state is None:
            return
        self.keys.add(state.c2w, math.degrees(state.fov), state.aspect)
        self._draw()

    def clear(self) -> None:
        self.keys.clear()
        self._draw()

    def camera_path(self) -> tuple[CameraPath, CameraPath]:
        return self.keys.path(int(self.frames.value), int(self.height.value), float(self.fps.value))

    def save(self, path: Path | None = None) -> Path:
        cp, kp = self.camera_path()
        path = Path(path or self.json_path.value)
        save_camera_path(path, cp, keyframes=kp)
        self.status.content = f"saved {cp.n_frames} frames to `{path}`"
        return path

    def preview(self) -> None:
        """Move this tab's camera along the path at its frame rate."""
        cp, _ = self.camera_path()
        cam = self.session.client.camera
        for i in range(cp.n_frames):
            wxyz, pos = c2w_to_viser(cp.c2w[i].double().numpy())
            with self.session.client.atomic():
                cam.wxyz, cam.position = wxyz, pos
            time.sleep(1.0 / cp.fps)
        self.status.content = f"previewed {cp.n_frames} frames"

    def render(self, video: Path | None = None) -> Path:
        """Save camera_path.json and render it to an mp4 with :mod:`neural3d.media.frames` (rgb of this tab's
        output)."""
        from neural3d.media.frames import render_frames, write_frames
        from neural3d.media.paths import path_cameras

        json_path = self.save()
        video = Path(video or self.video_path.value)
        cams = path_cameras(None, str(json_path))
        output = self.session.worker.settings.output
        n = len(cams)

        def frames():
            start = time.perf_counter()
            # neural3d.media.frames's frames (depth colour range fixed on the first frame), under the scene lock
            for i, frame in enumerate(render_frames(_Locked(self.session.scene), cams, [output], progress=False)):
                self.status.content = (
                    f"rendering frame {i + 1}/{n} ({(i + 1) / (time.perf_counter() - start):.2f} frames/s)"
                )
                yield frame

        write_frames(frames(), video, fps=round(float(self.fps.value)))
        self.status.content = f"wrote {n} frames to `{video}`"
        return video

    # ------------------------------------------------------------------ helpers
    def _report(self, fn) -> None:
        try:
            fn()
        except (ValueError, OSError) as e:
            self.status.content = f"**error:** {e}"

    def _background(self, fn) -> None:
        if not self._busy.acquire(blocking=False):
            self.status.content = "busy: wait for the current preview / render"
            return

        def run():
            try:
                self._report(fn)
            finally:
                self._busy.release()

        threading.Thread(target=run, name="viewer-path", daemon=True).start()

    def _draw(self) -> None:
        scene = self.session.client.scene
        scene.remove_by_name("/camera_path")
        for i, (c2w, fov, aspect) in enumerate(zip(self.keys.c2w, self.keys.fov_deg, self.keys.aspect)):
            wxyz, pos = c2w_to_viser(c2w)
            scene.add_camera_frustum(
                f"/camera_path/key_{i:03d}",
                fov=math.radians(fov),
                aspect=aspect,
                scale=0.1 * self.session.layout.scale,
                color=(220, 40, 40),
                wxyz=wxyz,
                position=pos,
            )
        if len(self.keys) >= 2:
            pts = np.stack([c[:, 3] for c in self.keys.c2w])
            scene.add_spline_catmull_rom(
                "/camera_path/spline", pts, color=(220, 40, 40), thickness=0.01 * self.session.layout.scale
            )
        self.status.content = f"{len(self.keys)} keyframes"
