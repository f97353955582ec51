"""Viewer under waves of clients: threads and memory after tabs open and close (issue 23, item 13).

Each wave opens ``--clients`` loopback websocket clients (``viewer/loopback.py``: the handshake and camera
message of a browser tab) against one in-process :class:`ViewerServer`, waits until every one of them has been
sent a rendered frame, closes them all and waits until the server has ended their sessions. After each wave it
prints the process's threads (``/proc/self/status`` Threads: Python and native), Python threads, resident
memory (VmRSS) and what the server still holds for closed tabs.

    .venv/bin/python benchmarks/bench_viewer_clients.py --run runs/demo [--clients 20] [--waves 3]
    .venv/bin/python benchmarks/bench_viewer_clients.py --run runs/demo --viewer-src /path/to/old/viewer  # before

``--viewer-src`` imports ``neural3d.viewer`` from another checkout's ``viewer/`` folder (the rest of neural3d
from this one), to measure an older viewer side by side.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine


def use_viewer_from(folder: Path) -> None:
    """Import ``neural3d.viewer`` (and so its submodules) from ``folder`` instead of this checkout."""
    import neural3d

    spec = importlib.util.spec_from_file_location(
        "neural3d.viewer", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["neural3d.viewer"] = module
    spec.loader.exec_module(module)
    neural3d.viewer = module


def proc_status() -> dict[str, int]:
    """``Threads`` and ``VmRSS`` (kB) of this process."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def tab_threads_ended() -> bool:
    """No render worker (``viewer-render-*``) or loopback reader thread is alive any more."""
    return not any(t.name.startswith(("viewer-render", "loopback-client")) for t in threading.enumerate())


def held_for_closed_tabs(server) -> str:
    """What the server keeps of closed tabs (attributes that exist in the measured viewer version)."""
    parts = []
    for name in ("closed_workers", "recent_images", "frames_by_client"):
        value = getattr(server, name, None)
        if value is not None:
            parts.append(f"{name} {len(value)}")
    return ", ".join(parts)


def wave(server, client_cls, n_clients: int, wxyz, position) -> float:
    """Open ``n_clients`` clients (``client_cls``: :class:`LoopbackClient`), wait for a frame each, close them;
    seconds taken."""
    start = time.perf_counter()
    before = {cid: dict(c) for cid, c in server.frames_by_client.items()}
    clients = [client_cls(server.url, wxyz, position) for _ in range(n_clients)]

    def served() -> int:
        new = [c for cid, c in list(server.frames_by_client.items()) if cid not in before]
        return sum(1 for c in new if c.get("low", 0) + c.get("full", 0) > 0)

    wait(lambda: len(server.sessions) == n_clients, 600, "a session for every client")
    for c in clients:
        c.send_camera()  # the camera as a session sees it (the first message only registered the client)
    wait(lambda: served() >= n_clients, 600, "a frame for every client")
    for c in clients:
        c.close()
    wait(lambda: not server.sessions, 120, "every session to end")
    del clients
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--waves", type=int, default=3)
    p.add_argument("--max-res", type=int, default=512, help="longest side of the full-resolution renders")
    p.add_argument("--viewer-src", type=Path, default=None, help="import neural3d.viewer from this folder")
    args = p.parse_args()
    from neural3d.viewer.loopback import LoopbackClient  # this checkout's client, whichever viewer is measured

    if args.viewer_src is not None:
        use_viewer_from(args.viewer_src.resolve())
    from neural3d.viewer import SceneHandle, ViewerServer
    from neural3d.viewer.camera import c2w_to_viser

    import neural3d

    print(machine())
    print(f"viewer: {Path(sys.modules['neural3d.viewer'].__file__).parent}; loadavg {os.getloadavg()}")
    loaded = neural3d.load(args.run)
    server = ViewerServer(SceneHandle(loaded, dataset=None), port=0, max_side=args.max_res, verbose=False)
    try:
        wxyz, position = c2w_to_viser(server.layout.start_c2w)
        s = proc_status()
        print(f"start: {s['Threads']} threads ({threading.active_count()} Python), RSS {s['VmRSS'] / 1024:.0f} MB")
        rows = []
        for i in range(args.waves):
            seconds = wave(server, LoopbackClient, args.clients, wxyz, position)
            wait(tab_threads_ended, 60, "the closed tabs' render and client threads to end")
            gc.collect()
            s = proc_status()
            rows.append(s)
            print(
                f"after wave {i + 1} ({args.clients} clients, {seconds:.1f} s): {s['Threads']} threads "
                f"({threading.active_count()} Python), RSS {s['VmRSS'] / 1024:.0f} MB; "
                f"held: {held_for_closed_tabs(server)}"
            )
        first = rows[0]
        for key, label in (("Threads", "threads"), ("VmRSS", "RSS")):
            worst = max(abs(r[key] - first[key]) / first[key] for r in rows)
            print(f"{label}: largest change from the first wave {100 * worst:.1f} %")
    finally:
        server.stop()
    print(f"loadavg after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
