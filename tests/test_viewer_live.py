"""Live training in the viewer (weights pushed from Trainer.on_step, pause), the camera-path editor, the CLI."""

from __future__ import annotations

import math
import socket
import threading
import time
from contextlib import contextmanager

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from _analytic_scene import ring_cameras, sphere_scene
from neural3d.viewer.camera import CameraState
from neural3d.viewer.scene_handle import SceneHandle
from neural3d.viewer.server import is_loopback
from test_end_to_end import TINY_NGP

from neural3d.config import build_config
from neural3d.media.camera_path_json import load_camera_path

viser = pytest.importorskip("viser", reason="viser not installed (pip install 'neural3d[viewer]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(tmp_path, scene, steps, **viewer):
    ov = [
        f"trainer.steps={steps}",
        *TINY_NGP,
        "viewer.enabled=true",
        f"viewer.port={free_port()}",
        "viewer.keep_alive=false",
        *[f"viewer.{k}={v}" for k, v in viewer.items()],
    ]
    cfg, _ = build_config(
        {"method": "ngp", "data": {"path": str(scene)}, "output_dir": str(tmp_path), "experiment": "live"}, ov
    )
    return cfg


def test_live_training_pushes_weights_and_pauses(tmp_path, tiny_blender_scene):
    from neural3d.viewer.live import LiveTraining
    from neural3d.viewer.worker import RenderSettings, RenderWorker

    from neural3d.training.trainer import Trainer

    cfg = _cfg(tmp_path, tiny_blender_scene, steps=12, update_every=4)
    pause_at = {"step": 6}

    def previous_hook(trainer, step):  # an on_step set before the viewer: still called (chained)
        if step == pause_at["step"]:
            trainer.paused = True

    trainer = Trainer(cfg, on_step=previous_hook)
    live = LiveTraining(trainer, cfg.viewer, verbose=False)
    frames = []
    # what a browser tab does: a worker rendering the live scene from a training camera
    worker = RenderWorker(
        live.scene, lambda img, kind: frames.append(kind), settings=RenderSettings(max_side=24), still_delay=0.01
    )
    c = trainer.scene.cameras.to("cpu")
    worker.update_camera(
        CameraState(
            c.camera_to_worlds[0].double().numpy(), 2 * math.atan(0.5 * float(c.height[0]) / float(c.fy[0])), 1.0
        )
    )
    thread = threading.Thread(target=trainer.train)
    thread.start()
    try:
        deadline = time.time() + 120
        while not live.paused and time.time() < deadline:
            time.sleep(0.02)
        assert live.paused and live.step == 6
        time.sleep(0.5)
        assert live.step == 6 and thread.is_alive()  # paused: no optimisation steps
        live.set_paused(False)  # the GUI's resume button
        thread.join(120)
        assert not thread.is_alive() and trainer.step == 12
    finally:
        trainer.paused = False
        thread.join(60)
        worker.stop()
        live.finish(keep_alive=False)
    assert live.scene.generation == 4  # steps 4, 8, 12 and the final push
    assert live.scene.step == 12 and "full" in frames
    for k, v in trainer.model.state_dict().items():  # the viewer's copy holds the final weights
        torch.testing.assert_close(live.scene.loaded.model.state_dict()[k], v, rtol=0, atol=0)
    assert live.scene.loaded.model is not trainer.model and trainer.on_step is previous_hook


def test_cli_train_with_viewer_and_cli_view(tmp_path, tiny_blender_scene, capsys):
    from neural3d.cli.main import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"method: ngp\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: run\n")
    port = free_port()
    assert (
        main(
            [
                "train",
                str(cfg),
                "trainer.steps=4",
                *TINY_NGP,
                "viewer.enabled=true",
                f"viewer.port={port}",
                "viewer.keep_alive=false",
                "viewer.update_every=2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}" in out
    port = free_port()
    assert main(["view", str(tmp_path / "run"), "--port", str(port), "--serve-seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}" in out and "WARNING" not in out
    assert main(["view", str(tmp_path / "missing"), "--port", str(free_port())]) == 2


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")


# ---------------------------------------------------------------- camera-path editor (GUI faked)


class _Handle:
    def __init__(self, value=None):
        self.value, self.content, self.label = value, value, None

    def on_click(self, fn):
        self.click = fn

    def on_update(self, fn):
        self.update = fn


class _FakeGui:
    @contextmanager
    def add_folder(self, *a, **k):
        yield

    def add_button(self, label, **k):
        return _Handle()

    def add_number(self, label, initial_value, **k):
        return _Handle(initial_value)

    def add_text(self, label, initial_value, **k):
        return _Handle(initial_value)

    def add_markdown(self, content, **k):
        return _Handle(content)


class _FakeScene:
    def __init__(self):
        self.names = []

    def remove_by_name(self, name):
        self.names = [n for n in self.names if not n.startswith(name)]

    def add_camera_frustum(self, name, **k):
        self.names.append(name)

    def add_spline_catmull_rom(self, name, points, **k):
        self.names.append(name)
        self.spline = points


class _FakeSession:
    def __init__(self, scene):
        from types import SimpleNamespace

        from neural3d.viewer.layout import scene_layout
        from neural3d.viewer.worker import RenderSettings

        self.client = SimpleNamespace(gui=_FakeGui(), scene=_FakeScene())
        self.scene = scene
        self.layout = scene_layout(scene.loaded.info)
        self.worker = SimpleNamespace(settings=RenderSettings(output="rgb"))
        self.camera_state = None


def test_path_editor_saves_nerfstudio_json_and_renders_it(tmp_path):
    from neural3d.viewer.path_editor import PathEditor

    from neural3d.cli.main import main  # noqa: F401  (the CLI reads the same file below)

    session = _FakeSession(SceneHandle(sphere_scene()))
    editor = PathEditor(session, tmp_path, height=20)
    editor.frames.value, editor.fps.value = 9, 12
    poses = ring_cameras(8).camera_to_worlds.double().numpy()
    for i, fov in ((0, 40.0), (2, 50.0), (4, 60.0)):  # three keyframes from "the current view"
        session.camera_state = CameraState(poses[i], math.radians(fov), 1.5)
        editor.add_current()
    assert len(editor.keys) == 3 and "/camera_path/spline" in session.client.scene.names
    path = editor.save()
    cp = load_camera_path(path)
    assert cp.n_frames == 9 and (cp.width, cp.height) == (30, 20) and cp.fps == 12
    torch.testing.assert_close(cp.c2w[0], torch.from_numpy(poses[0]).float(), atol=1e-5, rtol=0)  # starts at key 0
    torch.testing.assert_close(cp.c2w[4], torch.from_numpy(poses[2]).float(), atol=1e-5, rtol=0)  # passes key 1
    torch.testing.assert_close(cp.fov_deg, torch.linspace(40, 60, 9), atol=1e-4, rtol=0)
    video = editor.render(tmp_path / "path.mp4")
    frames = list(iio.imiter(video))
    assert len(frames) == 9 and frames[0].shape[:2] == (20, 30)
    assert np.abs(frames[0].astype(int) - 255).max() > 50  # the sphere is visible, not a blank frame
    editor.clear()
    assert not any(n.startswith("/camera_path/") for n in session.client.scene.names)
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        editor.save()
