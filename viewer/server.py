"""The viser server: scene decorations shared by all tabs, one :class:`ClientSession` (GUI + render worker) per tab."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from neural3d.viewer.camera import CameraState, c2w_to_viser, vertical_fov, viser_to_c2w
from neural3d.viewer.decorations import add_scene_box, add_training_frustums
from neural3d.viewer.layout import scene_layout
from neural3d.viewer.memory import keep_large_blocks_mapped, release_native_memory
from neural3d.viewer.worker import RenderSettings, RenderWorker


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ClientSession:
    """One browser tab: its GUI, its camera, its render worker."""

    def __init__(self, server: ViewerServer, client) -> None:
        from neural3d.viewer.gui import build_camera_controls, build_render_controls, build_training_controls
        from neural3d.viewer.path_editor import PathEditor

        self.server, self.client, self.scene, self.layout = server, client, server.scene, server.layout
        self.camera_state: CameraState | None = None
        self.last_image = None  # uint8 [H, W, 3] last image sent to the tab
        self.worker = RenderWorker(
            self.scene,
            self._send,
            settings=RenderSettings(max_side=server.max_side, target_fps=server.target_fps),
            name=f"viewer-render-{client.client_id}",
        )
        self.status = build_render_controls(
            client.gui, self, start_fov=self.layout.start_fov, max_side=server.max_side, target_fps=server.target_fps
        )
        self.train_status = build_training_controls(client.gui, server.live) if server.live is not None else None
        if server.frustums:
            build_camera_controls(client.gui, self, sorted(server.frustums))
        height = int(server.dataset.cameras.height[0]) if server.dataset is not None else 256
        self.paths = PathEditor(self, server.out_dir, height)
        self._last_status = 0.0
        client.camera.on_update(self._on_camera)
        self.go_to_overview()  # explicitly: viser's initial camera is off when the world up is not an axis

    def _on_camera(self, cam) -> None:
        state = CameraState(viser_to_c2w(cam.wxyz, cam.position), float(cam.fov), float(cam.aspect))
        self.camera_state = state
        try:
            canvas_h = int(cam.image_height)
        except (AssertionError, AttributeError, TypeError):
            canvas_h = None
        if canvas_h and canvas_h != self.worker.settings.canvas_height:
            self.worker.settings.canvas_height = canvas_h  # picked up by the next render
        self.worker.update_camera(state)

    def set_fov(self, fov: float) -> None:
        self.client.camera.fov = fov  # the browser echoes a camera update, which re-renders

    def go_to_camera(self, index: int) -> None:
        """Look through training camera ``index`` (dataset index); its frustum is hidden meanwhile."""
        self.server.go_to_camera(self.client, index)

    def go_to_overview(self) -> None:
        """Back to the first view (the whole scene, no frustum in front of it)."""
        self.server.go_to_pose(self.client, self.layout.start_c2w, self.layout.start_fov, self.layout.start_camera)

    def _send(self, image, kind: str) -> None:
        if self.server.sessions.get(self.client.client_id) is not self:  # the tab has closed: drop the frame
            return
        self.client.scene.set_background_image(image, format="jpeg", jpeg_quality=90 if kind == "full" else 70)
        self.last_image = image
        self.server.record_frame(self.client.client_id, kind, image)
        now = time.perf_counter()
        if kind == "full" or now - self._last_status > 0.5:
            self._last_status = now
            h, w = image.shape[:2]
            self.status.content = f"{kind} {w}x{h} · {self.worker.rate.rays_per_s:,.0f} rays/s · step {self.scene.step}"
            if self.train_status is not None:
                live = self.server.live
                self.train_status.content = f"step {live.step}" + (" (paused)" if live.paused else "")

    def close(self) -> None:
        """Stop the render thread and drop what the tab held (its last image)."""
        self.worker.stop()
        self.last_image = None


class ViewerError(ValueError):
    """The viewer cannot serve as asked (a port out of range, an address it cannot listen on)."""


CALLBACK_THREADS = 8
"""Threads running viser's callbacks (tab connects and disconnects, camera moves, GUI events) for all tabs.
viser's own pool grows to 32 threads when many tabs connect at once and never shrinks; the render work itself
runs on each open tab's :class:`RenderWorker` thread."""


def check_listen_address(host: str, port: int) -> None:
    """Raise :class:`ViewerError` naming ``host:port`` unless this process can listen there.

    viser gives up silently -- and its constructor then waits forever -- on a port outside 0-65535 or an address
    that is not this machine's; a port in use is fine (viser takes the next free one, and :attr:`ViewerServer.url`
    says which).
    """
    if not 0 <= int(port) <= 65535:
        raise ViewerError(f"viewer port must be in 0-65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ViewerError(f"cannot listen on {host}:{port}: unknown host ({e})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as e:
            import errno

            if e.errno != errno.EADDRINUSE:
                raise ViewerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _bound_callback_pool(server) -> None:
    """Run viser's callbacks on :data:`CALLBACK_THREADS` threads instead of its growing 32-thread pool (viser keeps
    the pool in ``_thread_executor`` and reads it whenever it dispatches; left alone if a viser version differs)."""
    pool = getattr(server, "_thread_executor", None)
    if isinstance(pool, ThreadPoolExecutor):
        server._thread_executor = ThreadPoolExecutor(max_workers=CALLBACK_THREADS, thread_name_prefix="viewer-callback")


class ViewerServer:
    """Serve a scene to browsers.

    Per-tab state (the session, its render thread, its recent images, its frame counts) lives while the tab is
    open and is freed when it closes; viser's callbacks share a bounded pool (:data:`CALLBACK_THREADS`); large
    heap blocks are mapped on their own while it serves (:func:`keep_large_blocks_mapped`, process-wide), so
    the memory of closed tabs' renders returns to the OS.

    Args:
        scene: :class:`viewer.scene_handle.SceneHandle`.
        host, port: where to listen (127.0.0.1 by default; a warning is printed for other addresses; port 0: any
            free port). An address this process cannot listen on raises :class:`ViewerError`.
        max_side: default longest side of still renders.
        target_fps: default frame rate while moving.
        out_dir: default folder for camera paths and videos.
        live: optional :class:`viewer.live.LiveTraining` (adds the pause button).
    """

    def __init__(
        self,
        scene,
        *,
        host: str = "127.0.0.1",
        port: int = 7007,
        max_side: int = 512,
        target_fps: float = 8.0,
        out_dir: Path | None = None,
        live=None,
        verbose: bool = True,
    ) -> None:
        import viser

        self.scene, self.live = scene, live
        self.dataset = scene.dataset
        self.max_side, self.target_fps = int(max_side), float(target_fps)
        run_dir = getattr(scene.loaded, "run_dir", None)
        self.out_dir = Path(out_dir) if out_dir is not None else Path(run_dir or ".") / "renders"
        self.layout = scene_layout(scene.loaded.info, self.dataset)
        self.sessions: dict[int, ClientSession] = {}
        self.frames_by_client: dict[int, dict[str, int]] = {}  # open tabs: client id -> frames sent, by kind
        self.recent_images: dict = {}  # open tabs: client id -> the last few uint8 images sent
        self.closed_tabs = 0  # tabs that connected and closed (their state is freed)
        self._lock = threading.Lock()
        check_listen_address(host, port)
        keep_large_blocks_mapped()
        if not is_loopback(host):
            print(
                f"[viewer] WARNING: listening on {host}, not a loopback address: anyone who can reach this "
                "machine can open the viewer (and render / write files through it)"
            )
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        _bound_callback_pool(self.server)
        self.host, self.port = host, self.server.get_port()
        self._decorate()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        if verbose:
            print(f"[viewer] open {self.url}  (Ctrl-C to stop)")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def _decorate(self) -> None:
        s, lay = self.server.scene, self.layout
        s.set_up_direction(tuple(float(x) for x in lay.up))
        cam = self.server.initial_camera
        eye, forward = lay.start_c2w[:, 3], -lay.start_c2w[:, 2]
        depth = max(float((lay.target - eye) @ forward), 1e-3 * lay.scale)
        cam.position = tuple(float(x) for x in eye)
        cam.look_at = tuple(float(x) for x in eye + depth * forward)  # on the first view's optical axis
        cam.up = tuple(float(x) for x in lay.up)
        cam.fov = float(lay.start_fov)
        box = add_scene_box(s, self.scene.loaded.info)
        self.frustums = (
            add_training_frustums(s, self.dataset, lay, on_click=self.go_to_camera) if self.dataset is not None else {}
        )
        self.decorations = ([box] if box is not None else []) + list(self.frustums.values())
        self.show_cameras, self.hidden_camera = True, None
        self._hide_frustum(lay.start_camera)  # a forward-facing first view sits on training camera 0

    def set_decorations_visible(self, visible: bool) -> None:
        """Show / hide the training-camera frustums and the scene box (shared by all tabs)."""
        self.show_cameras = bool(visible)
        for handle in self.decorations:
            handle.visible = visible
        self._hide_frustum(self.hidden_camera)

    def _hide_frustum(self, index: int | None) -> None:
        """Hide the frustum of the camera a view sits on (it would fill the view), show the one hidden before."""
        old = self.frustums.get(self.hidden_camera) if self.hidden_camera is not None else None
        if old is not None:
            old.visible = self.show_cameras
        self.hidden_camera = index
        if index is not None and index in self.frustums:
            self.frustums[index].visible = False

    def go_to_camera(self, client, index: int) -> None:
        """Move ``client``'s view onto training camera ``index`` (dataset index): its pose and field of view."""
        cams = self.dataset.cameras
        if not 0 <= int(index) < len(cams):
            raise ValueError(f"camera index must be in [0, {len(cams) - 1}], got {index}")
        c2w = cams.camera_to_worlds[int(index)].double().cpu().numpy()
        self.go_to_pose(client, c2w, vertical_fov(float(cams.fy[index]), float(cams.height[index])), int(index))

    def go_to_pose(self, client, c2w: np.ndarray, fov: float, camera: int | None = None) -> None:
        """Move ``client``'s view to an OpenGL pose [3, 4] with vertical ``fov``; ``camera``: the training camera
        it sits on (its frustum is hidden), or None."""
        wxyz, pos = c2w_to_viser(c2w)
        forward = -c2w[:, 2]
        depth = max(float((self.layout.target - pos) @ forward), 1e-3 * self.layout.scale)
        with client.atomic():
            client.camera.position = pos
            client.camera.look_at = pos + depth * forward  # the orbit pivot on the new optical axis
            client.camera.wxyz = wxyz
            client.camera.fov = fov
        self._hide_frustum(camera)

    def _connect(self, client) -> None:
        session = ClientSession(self, client)
        with self._lock:
            self.sessions[client.client_id] = session
            self.frames_by_client.setdefault(client.client_id, {"low": 0, "full": 0})
        session._on_camera(client.camera)  # viser connects a tab on its first camera message: render that view now

    def _disconnect(self, client) -> None:
        """Free everything the tab held: its session (GUI, camera), render thread, images and counters."""
        with self._lock:
            session = self.sessions.pop(client.client_id, None)
            self.recent_images.pop(client.client_id, None)
            self.frames_by_client.pop(client.client_id, None)
            self.closed_tabs += session is not None
        if session is not None:
            session.close()
            release_native_memory()

    def record_frame(self, client_id: int, kind: str, image=None) -> None:
        with self._lock:
            if client_id not in self.sessions:  # a frame finished after its tab closed
                return
            if image is not None:
                recent = self.recent_images.setdefault(client_id, [])
                recent.append(image)
                del recent[:-4]
            counts = self.frames_by_client.setdefault(client_id, {"low": 0, "full": 0})
            counts[kind] = counts.get(kind, 0) + 1

    def stop(self) -> None:
        with self._lock:
            sessions = list(self.sessions.values())
            self.sessions.clear()
        for s in sessions:
            s.close()
        self.server.stop()
