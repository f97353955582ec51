"""Viewer tabs that come and go (issue 23, item 13): loopback websocket clients (``viewer/loopback.py``) connect to
a server of a tiny trained run, get frames and disconnect; the server frees each closed tab's worker, images and
counters, and viser's callbacks run on a bounded pool, so waves of tabs leave the thread count where it was."""

from __future__ import annotations

import threading

import pytest

viser = pytest.importorskip("viser", reason="viser not installed (pip install 'neural3d[viewer]')")
pytest.importorskip("websockets", reason="websockets (a viser dependency) not installed")
from test_viewer_browser import wait_until  # noqa: E402


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_blender_scene):
    from _tiny_run import tiny_trained_run

    return tiny_trained_run(tmp_path_factory, tiny_blender_scene)


def tab_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("viewer-render", "loopback-client"))]


def test_closed_tabs_free_their_state_and_threads_stay_bounded(trained_run):
    from neural3d.viewer import SceneHandle, ViewerServer
    from neural3d.viewer.camera import c2w_to_viser
    from neural3d.viewer.loopback import LoopbackClient
    from neural3d.viewer.server import CALLBACK_THREADS

    import neural3d

    loaded = neural3d.load(trained_run)
    before = {t.ident for t in threading.enumerate()}  # other tests' threads are not this server's
    server = ViewerServer(SceneHandle(loaded, dataset=None), port=0, max_side=32, verbose=False)
    n = CALLBACK_THREADS + 4  # more tabs at once than callback threads
    try:
        wxyz, position = c2w_to_viser(server.layout.start_c2w)
        for wave in range(2):
            clients = [LoopbackClient(server.url, wxyz, position) for _ in range(n)]
            wait_until(lambda: len(server.sessions) == n, 120, "a session per client")
            workers = [s.worker for s in server.sessions.values()]
            wait_until(
                lambda: (
                    len(server.frames_by_client) == n and all(sum(c.values()) for c in server.frames_by_client.values())
                ),
                240,
                "a frame for every client",
            )  # each tab is rendered from the camera it connected with
            assert len(server.recent_images) == n and all(w.alive for w in workers)
            for c in clients:
                c.close()
            wait_until(lambda: not server.sessions, 60, "every session to end")
            wait_until(lambda ws=workers: not any(w.alive for w in ws), 60, "every render thread to stop")
            wait_until(lambda: not tab_threads(), 60, "the tabs' threads to end")
            # nothing of the closed tabs is held: no worker list, no images, no counters
            assert not server.recent_images and not server.frames_by_client
            assert not hasattr(server, "closed_workers") and server.closed_tabs == (wave + 1) * n
            callback_threads = [t for t in threading.enumerate() if t.name.startswith("viewer-callback")]
            assert 1 <= len(callback_threads) <= CALLBACK_THREADS
            # the server's threads: viser's server thread and the callback pool, whatever the number of tabs so far
            new = [t.name for t in threading.enumerate() if t.ident not in before]
            assert len(new) <= CALLBACK_THREADS + 1, new
    finally:
        server.stop()
