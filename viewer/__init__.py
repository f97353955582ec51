"""Interactive browser viewer for neural3d runs (``neural3d view RUN_DIR``), built on viser.

Modules (one concept each):

* :mod:`viewer.camera` -- browser (viser, OpenCV axes) camera <-> OpenGL ``c2w`` and
  :class:`~neural3d.core.cameras.Cameras`.
* :mod:`viewer.resolution` -- measured rays/s -> the resolution that holds a target frame rate while moving.
* :mod:`viewer.frames` -- a render dict -> the uint8 image shown (rgb with background swap, depth, opacity).
* :mod:`viewer.scene_handle` -- the model shared by all tabs, locked for live weight updates.
* :mod:`viewer.worker` -- one render thread per browser tab: low-res while moving, full-res when still,
  stale renders interrupted.
* :mod:`viewer.decorations` -- training-camera frustums with thumbnails, the scene box, initial view.
* :mod:`viewer.gui` -- per-tab controls; :mod:`viewer.path_editor` -- keyframes -> camera_path.json / mp4.
* :mod:`viewer.server` -- :class:`ViewerServer`: the viser server and its client sessions.
* :mod:`viewer.live` -- live view while training (``viewer.enabled=true``), with a pause button.
* :mod:`viewer.memory` -- glibc heap settings that give closed tabs' render memory back to the OS.
* :mod:`viewer.headless` (Chromium over DevTools) and :mod:`viewer.loopback` (a minimal websocket client):
  tests and benchmarks.

viser is imported lazily, so the pure modules (and their tests) work without it.
"""

from neural3d.viewer.scene_handle import SceneHandle

__all__ = ["SceneHandle", "ViewerServer"]


def __getattr__(name):
    if name == "ViewerServer":
        from neural3d.viewer.server import ViewerServer

        return ViewerServer
    raise AttributeError(name)
