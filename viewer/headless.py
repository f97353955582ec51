"""Drive headless Chromium over the DevTools protocol (tests and benchmarks of the viewer).

Why not ``chromium --screenshot``: its virtual-time budget runs ahead of the (websocket-fed) page, so
the shot can be taken before the first frame arrives. Over DevTools the caller decides when to shoot:
open tabs, wait until the server has rendered for them, capture, close them. Only the ``websockets``
package (a viser dependency) is needed.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self


def find_chromium() -> str | None:
    """Path of a Chromium / Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


class HeadlessChromium:
    """A headless Chromium process and a DevTools connection to it.

    Args:
        executable: browser binary (default: :func:`find_chromium`).
        size: window size (width, height) of new tabs.
    """

    def __init__(
        self, executable: str | None = None, *, size: tuple[int, int] = (800, 600), timeout: float = 60.0
    ) -> None:
        from websockets.sync.client import connect

        exe = executable or find_chromium()
        if exe is None:
            raise FileNotFoundError("Chromium not found (Debian: apt-get install chromium)")
        self.size = size
        self._profile = tempfile.TemporaryDirectory(prefix="neural3d-chromium-")
        self.proc = subprocess.Popen(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--enable-unsafe-swiftshader",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={self._profile.name}",
                f"--window-size={size[0]},{size[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = self._devtools_url(timeout)
        self.ws = connect(url, max_size=None, open_timeout=timeout)
        self._ids = itertools.count(1)

    def _devtools_url(self, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on (ws://\S+)", line or "")
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited with code {self.proc.returncode} before DevTools started")
        raise TimeoutError("Chromium did not start DevTools in time")

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        end = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(end - time.monotonic(), 0.01)))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str) -> tuple[str, str]:
        """Open ``url`` in a new tab -> (target id, session id)."""
        target = self.call(
            "Target.createTarget", {"url": url, "newWindow": True, "width": self.size[0], "height": self.size[1]}
        )["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return target, session

    def wait_for_frames(self, session: str, n: int = 2, timeout: float = 60.0) -> None:
        """Return once the tab has drawn ``n`` more animation frames (what is on screen is what was sent)."""
        js = f"new Promise(r => {{ let k = {int(n)}; const f = () => (--k > 0 ? requestAnimationFrame(f) : r(1)); "
        js += "requestAnimationFrame(f); })"
        self.call("Runtime.evaluate", {"expression": js, "awaitPromise": True}, session=session, timeout=timeout)

    def screenshot(self, session: str, path) -> Path:
        """PNG screenshot of a tab."""
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close_tab(self, target: str) -> None:
        self.call("Target.closeTarget", {"targetId": target})

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self._profile.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
