"""Viewer internals without a browser: camera conventions, resolution control, progressive and interruptible
rendering."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import torch
from _analytic_scene import ring_cameras, sphere_scene
from neural3d.viewer.camera import CameraState, c2w_to_viser, viser_to_c2w
from neural3d.viewer.frames import frame_image, swap_background
from neural3d.viewer.resolution import RateMeter, band_rows, full_height, moving_height
from neural3d.viewer.scene_handle import SceneHandle
from neural3d.viewer.worker import RenderSettings, RenderWorker


def test_viser_camera_round_trip_and_axes():
    c2w = ring_cameras(5).camera_to_worlds[3].double().numpy()
    wxyz, pos = c2w_to_viser(c2w)
    np.testing.assert_allclose(viser_to_c2w(wxyz, pos), c2w, atol=1e-7)
    # viser's (OpenCV) camera looks down its +z, with y down: opposite of OpenGL's z and y columns
    from neural3d.core.poses import quaternion_to_matrix

    R_cv = quaternion_to_matrix(torch.from_numpy(wxyz)).numpy()
    np.testing.assert_allclose(R_cv[:, 2], -c2w[:, 2], atol=1e-7)
    np.testing.assert_allclose(R_cv[:, 1], -c2w[:, 1], atol=1e-7)


def test_camera_state_rays_span_the_vertical_fov():
    from neural3d.core.rays import image_rays

    c2w = np.concatenate([np.eye(3), [[0.0], [0.0], [2.0]]], 1)
    state = CameraState(c2w, fov=math.radians(60), aspect=1.5)
    cams = state.cameras(40)
    assert int(cams.width[0]) == 60 and int(cams.height[0]) == 40
    # a ray through the top edge (y = 0) of the image is fov/2 above the optical axis
    from neural3d.core.rays import generate_rays

    top = generate_rays(cams, torch.zeros(1, dtype=torch.long), torch.tensor([[30.0, 0.0]]), 0.1, 5.0)
    d = top.viewdirs[0].double()
    assert math.isclose(math.degrees(math.atan2(float(d[1]), -float(d[2]))), 30.0, abs_tol=1e-4)
    centre = image_rays(cams, 0, 0.1, 5.0).viewdirs  # [H, W, 3]
    assert float(centre[:, :, 2].max()) < 0  # looks down -z


def test_resolution_control():
    rays_per_s, fps, aspect = 200_000.0, 10.0, 1.5
    h = moving_height(rays_per_s, fps, aspect, max_height=1000)
    assert abs(h * h * aspect * fps - rays_per_s) / rays_per_s < 0.05  # one frame takes 1/fps s
    assert moving_height(1e9, fps, aspect, max_height=300) == 300
    assert moving_height(10.0, fps, aspect, max_height=300) == 16
    assert (
        full_height(512, 2.0) == 256
        and full_height(512, 0.5) == 512
        and full_height(512, 1.0, canvas_height=300) == 300
    )
    assert band_rows(100_000, 500, seconds=0.1) == 20 and band_rows(1, 500) == 1
    m = RateMeter(smoothing=0.5)
    m.add(1000, 1.0)
    assert m.rays_per_s == 1000  # first measurement replaces the prior
    m.add(3000, 1.0)
    assert m.rays_per_s == 2000


def test_background_swap_is_exact_for_volume_compositing():
    white = sphere_scene((1.0, 1.0, 1.0))
    black = sphere_scene((0.0, 0.2, 0.0))
    cams = ring_cameras(1, size=20)
    a = white.render(cams)
    b = black.render(cams)
    swapped = swap_background(a["rgb"][0], a["opacity"][0], white.info.background, (0.0, 0.2, 0.0))
    torch.testing.assert_close(swapped, b["rgb"][0], atol=1e-6, rtol=0)


class _Collector:
    def __init__(self):
        self.items = []
        self.event = threading.Event()

    def __call__(self, img, kind):
        self.items.append((img, kind))
        self.event.set()

    def wait_for(self, kind, count=1, timeout=20.0):
        end = time.time() + timeout
        while time.time() < end:
            if sum(k == kind for _, k in self.items) >= count:
                return
            time.sleep(0.01)
        raise AssertionError(f"no {kind!r} frame within {timeout} s; got {[k for _, k in self.items]}")


def _state(i=0, n=8, aspect=1.0):
    c2w = ring_cameras(n).camera_to_worlds[i].double().numpy()
    return CameraState(c2w, fov=2 * math.atan(0.5 / 1.2), aspect=aspect)


def test_full_resolution_frame_equals_a_direct_render():
    handle = SceneHandle(sphere_scene())
    sent = _Collector()
    w = RenderWorker(handle, sent, settings=RenderSettings(max_side=48), still_delay=0.05)
    try:
        w.update_camera(_state(2))
        sent.wait_for("full")
    finally:
        w.stop()
    img = next(img for img, k in sent.items if k == "full")
    ref = frame_image(handle.render(_state(2).cameras(48)), "rgb", rendered_bg=handle.background)
    assert img.shape == (48, 48, 3)
    np.testing.assert_array_equal(img, ref)  # the banded render (shifted principal point) is the same image
    assert w.stats.first_frame_s is not None and w.stats.full_res_s


class _SlowHandle(SceneHandle):
    """Each render (a band) takes at least ``delay`` seconds; records the rendered heights."""

    def __init__(self, loaded, delay):
        super().__init__(loaded)
        self.delay, self.heights = delay, []

    def render(self, cameras, chunk=8192, context=None):
        time.sleep(self.delay)
        self.heights.append(int(cameras.height[0]))
        return super().render(cameras, chunk, context)


def test_moving_camera_gets_low_res_frames_and_interrupts_the_stale_full_render():
    handle = _SlowHandle(sphere_scene(), delay=0.03)
    sent = _Collector()
    settings = RenderSettings(max_side=64, target_fps=20)
    w = RenderWorker(handle, sent, settings=settings, still_delay=0.1, min_band_rays=1)
    w.rate.rays_per_s = w.move_rate.rays_per_s = 2000.0  # slow: small low-res frames, one-row bands
    try:
        w.update_camera(_state(0))
        sent.wait_for("low")
        deadline = time.time() + 10
        while not (len(handle.heights) >= 4 and w.stats.full_res == 0) and time.time() < deadline:
            time.sleep(0.01)  # the full-resolution render is under way (several bands done)
        for i in range(1, 6):  # the user drags the camera
            w.update_camera(_state(i, n=40))
            time.sleep(0.03)
        sent.wait_for("full")
    finally:
        w.stop()
    assert w.stats.interrupted >= 1
    full = [img for img, k in sent.items if k == "full"]
    assert len(full) == 1  # the stale full render of camera 0 was never sent
    low = [img for img, k in sent.items if k == "low"]
    assert all(img.shape[0] < 64 for img in low) and full[0].shape[0] == 64
    ref = frame_image(
        SceneHandle(sphere_scene()).render(_state(5, n=40).cameras(64)), "rgb", rendered_bg=handle.background
    )
    np.testing.assert_array_equal(full[0], ref)  # the full frame shows the final camera


@pytest.mark.parametrize(
    "rays_per_s,frame_seconds,one_call", [(1e6, 0.25, True), (2000.0, 0.25, False), (1e6, 0, False)]
)
def test_a_quick_full_frame_is_one_render_call(rays_per_s, frame_seconds, one_call):
    handle = _SlowHandle(sphere_scene(), delay=0.0)
    sent = _Collector()
    w = RenderWorker(
        handle,
        sent,
        settings=RenderSettings(max_side=40),
        still_delay=0.0,
        frame_seconds=frame_seconds,
        band_seconds=200 / rays_per_s,  # 5-row bands
        min_band_rays=1,
    )
    w.rate.rays_per_s = rays_per_s  # 1e6 rays/s: 1,600 rays take 1.6 ms; 2,000 rays/s: 0.8 s
    w.rate.add = lambda n, s: w.rate.rays_per_s  # keep the rate fixed
    try:
        w.update_camera(_state(3))
        sent.wait_for("full")
    finally:
        w.stop()
    assert w.stats.low_res == 0  # still_delay 0: straight to full resolution
    assert handle.heights == ([40] if one_call else [5] * 8)
    ref = frame_image(handle.render(_state(3).cameras(40)), "rgb", rendered_bg=handle.background)
    np.testing.assert_array_equal(next(img for img, k in sent.items if k == "full"), ref)


def test_settings_and_new_weights_rerender_and_stop_frees_the_thread():
    handle = SceneHandle(sphere_scene())
    sent = _Collector()
    w = RenderWorker(handle, sent, settings=RenderSettings(max_side=32), still_delay=0.02)
    try:
        w.update_camera(_state(1))
        sent.wait_for("full")
        w.update_settings(output="opacity")
        sent.wait_for("full", 2)
        op = sent.items[-1][0]
        assert set(np.unique(op)) <= {0, 255}  # opacity of the analytic sphere is exactly 0 or 1
        w.update_settings(output="rgb")
        sent.wait_for("full", 3)
        before = sent.items[-1][0]
        handle.update_weights({"gain": torch.tensor([0.5])}, step=7)  # live training pushes new weights
        sent.wait_for("full", 4)
        after = sent.items[-1][0]
        assert handle.step == 7 and handle.generation == 1
        assert after.astype(int).sum() < before.astype(int).sum()  # darker sphere
    finally:
        w.stop()
    assert not w.alive and w.request_full not in handle._listeners


def test_render_errors_do_not_kill_the_worker():
    class Broken(SceneHandle):
        def render(self, *a, **k):
            raise RuntimeError("boom")

    w = RenderWorker(Broken(sphere_scene()), _Collector(), still_delay=0.01)
    try:
        w.update_camera(_state())
        time.sleep(0.5)
        assert w.alive and any("boom" in e for e in w.stats.errors)
    finally:
        w.stop()


@pytest.mark.parametrize("output", ["rgb", "depth", "opacity"])
def test_frame_image_outputs(output):
    out = sphere_scene().render(ring_cameras(1, size=16))
    img = frame_image({k: v[0] for k, v in out.items()}, output)
    assert img.dtype == np.uint8 and img.shape == (16, 16, 3)
    with pytest.raises(ValueError, match="unknown viewer output"):
        frame_image({k: v[0] for k, v in out.items()}, "normals")
