"""A minimal viser websocket client, for tests and benchmarks of the viewer without a browser.

It speaks the part of viser's protocol a browser tab uses to become a client: it connects with the
``viser-v<version>`` subprotocol, sends one camera message (viser registers a client, and runs the
server's connect callbacks, on its first camera message) and drains what the server sends (the server counts
the frames it renders for each client: ``ViewerServer.frames_by_client``). Many of them fit in one process, so a
benchmark can open and close waves of tabs quickly. Needs only viser's own dependencies (``websockets``, ``msgspec``).
"""

from __future__ import annotations

import threading


def camera_message(wxyz, position, fov: float = 0.9, width: int = 160, height: int = 120) -> bytes:
    """A ``ViewerCameraMessage`` as the browser sends it (msgpack).

    Args:
        wxyz: [4] camera rotation (R_world_camera, scalar first) in viser's OpenCV axes.
        position: [3] camera centre (world).
        fov: vertical field of view (radians).
        width, height: the canvas size reported (pixels).
    """
    import msgspec

    position = [float(x) for x in position]
    msg = {
        "type": "ViewerCameraMessage",
        "wxyz": [float(x) for x in wxyz],
        "position": position,
        "fov": float(fov),
        "near": 0.01,
        "far": 1000.0,
        "image_height": int(height),
        "image_width": int(width),
        "look_at": [0.0, 0.0, 0.0],
        "up_direction": [0.0, 0.0, 1.0],
    }
    return msgspec.msgpack.encode(msg)


class LoopbackClient:
    """One browser-tab-like client of a viser server.

    Args:
        url: the server's ``http://host:port`` (as :attr:`ViewerServer.url`).
        wxyz, position: the camera pose sent on connect (viser's OpenCV axes: :func:`viewer.camera.c2w_to_viser`).
        timeout: seconds allowed for the websocket handshake.

    Attributes:
        messages: websocket messages received so far.
    """

    def __init__(self, url: str, wxyz, position, *, timeout: float = 30.0) -> None:
        import viser
        from websockets.sync.client import connect

        ws_url = url.replace("http://", "ws://", 1)
        self.ws = connect(ws_url, subprotocols=[f"viser-v{viser.__version__}"], open_timeout=timeout, max_size=None)
        self.messages = 0
        self._reader = threading.Thread(target=self._drain, name="loopback-client", daemon=True)
        self._reader.start()
        self._pose = (wxyz, position)
        self.send_camera()

    def send_camera(self) -> None:
        """Send the camera again (as a browser does while it sets up its view; viser runs the server's connect
        callbacks on the first camera message, so a tab's session sees the camera moves after that one)."""
        self.ws.send(camera_message(*self._pose))

    def _drain(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for _ in self.ws:
                self.messages += 1
        except ConnectionClosed:
            pass

    def close(self) -> None:
        """Close the connection (as closing the tab) and wait for the reader thread."""
        self.ws.close()
        self._reader.join(10.0)
