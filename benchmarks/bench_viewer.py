"""Viewer and export figures on a trained run (default: the demo run, ``make demo``), CPU.

Viewer (a real headless Chromium tab over DevTools, the server in this process):
  * page load -> first frame and -> first full-resolution frame;
  * frames/s and resolution of the low-res frames while the camera moves (the server drives the tab's
    camera along an orbit every 50 ms, as a dragging user would; the browser echoes each move);
  * seconds from the last move to the full-resolution frame.
Export: point cloud (training views), marching-cubes and TSDF meshes: points / vertices and seconds.

    .venv/bin/python benchmarks/bench_viewer.py [--run runs/demo] [--max-res 512] [--target-fps 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(cond, timeout: float) -> float:
    start = time.perf_counter()
    while not cond():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("benchmark condition not met in time")
        time.sleep(0.01)
    return time.perf_counter() - start


def serve(run: Path, max_res: int, target_fps: float = 8.0):
    """A viewer server on ``run`` (this process, a free port) -> (loaded scene, server)."""
    from neural3d.viewer import SceneHandle, ViewerServer

    import neural3d

    loaded = neural3d.load(run)
    server = ViewerServer(
        SceneHandle(loaded, dataset=loaded.dataset()),
        port=free_port(),
        max_side=max_res,
        target_fps=target_fps,
        verbose=False,
    )
    return loaded, server


def open_tab(browser, server, timeout: float) -> tuple[str, float, float, float]:
    """Open the viewer in a tab -> (DevTools session, t0, seconds to the first frame sent, to the first full one)."""
    counts = server.frames_by_client
    t0 = time.perf_counter()
    _, sess = browser.open(server.url)
    first = wait(lambda: any(c["low"] + c["full"] for c in counts.values()), timeout)
    full = wait(lambda: any(c["full"] for c in counts.values()), timeout) + first
    return sess, t0, first, full


def bench_viewer(run: Path, max_res: int, target_fps: float, move_s: float, hide_cameras: bool = False) -> None:
    from neural3d.viewer.camera import c2w_to_viser
    from neural3d.viewer.headless import HeadlessChromium

    from neural3d.media.paths import orbit_path

    _, server = serve(run, max_res, target_fps)
    server.set_decorations_visible(not hide_cameras)  # software WebGL draws 40 textured frustums slowly
    browser = HeadlessChromium(size=(1024, 768))
    try:
        _, t0, first, first_full = open_tab(browser, server, 120)
        session = next(iter(server.sessions.values()))
        print(
            f"page load -> first frame {first:.2f} s, -> first full-resolution frame {first_full:.2f} s "
            f"({time.perf_counter() - t0:.1f} s wall)"
        )
        lay = server.layout
        n_moves = int(move_s / 0.05)
        poses = orbit_path(lay.target, lay.scale, 20.0, n_moves, up=lay.up, sweep_deg=90.0).double().numpy()
        stats = session.worker.stats
        low0, fps0 = stats.low_res, len(stats.low_res_fps)
        start = time.perf_counter()
        for c2w in poses:  # the user drags the camera
            wxyz, pos = c2w_to_viser(c2w)
            with session.client.atomic():
                session.client.camera.wxyz, session.client.camera.position = wxyz, pos
            time.sleep(0.05)
        moving = time.perf_counter() - start
        low = stats.low_res - low0
        full0 = stats.full_res
        to_full = wait(lambda: stats.full_res > full0, 120)
        sizes = stats.full_size
        inst = np.array(stats.low_res_fps[fps0:])
        print(
            f"while moving ({moving:.1f} s, target {target_fps:g} fps): {low} low-res frames = {low / moving:.2f} "
            f"frames/s delivered at {stats.low_size[1]}x{stats.low_size[0]} (last); "
            f"render-only {np.median(inst):.1f} frames/s (median); "
            f"{stats.interrupted} stale full renders interrupted; {session.worker.rate.rays_per_s:,.0f} rays/s"
        )
        print(
            f"last move -> full resolution {sizes[1]}x{sizes[0]}: {stats.full_res_s[-1]:.2f} s "
            f"(incl. the {session.worker.still_delay:.2f} s rest delay; waited {to_full:.2f} s)"
        )
        direct_moving(session, poses, target_fps)
    finally:
        browser.close()
        server.stop()


def direct_moving(session, poses, target_fps: float) -> None:
    """The same orbit fed straight into the tab's render worker at 20 Hz (no browser round trip): the
    renderer's own frame rate while moving, and the time to full resolution after the last move."""
    from neural3d.viewer.camera import CameraState

    w = session.worker
    state = session.camera_state
    s = w.stats
    low0, full0 = s.low_res, s.full_res
    start = time.perf_counter()
    for c2w in poses:
        w.update_camera(CameraState(c2w, state.fov, state.aspect))
        time.sleep(0.05)
    moving = time.perf_counter() - start
    wait(lambda: s.full_res > full0, 300)
    print(
        f"direct feed at 20 Hz ({moving:.1f} s, target {target_fps:g} fps): {(s.low_res - low0) / moving:.2f} "
        f"low-res frames/s at {s.low_size[1]}x{s.low_size[0]} (last); last move -> full resolution "
        f"{s.full_size[1]}x{s.full_size[0]}: {s.full_res_s[-1]:.2f} s; {w.rate.rays_per_s:,.0f} rays/s (bands), "
        f"{w.move_rate.rays_per_s:,.0f} rays/s (low-res frames)"
    )


def bench_export(run: Path) -> None:
    import neural3d
    from neural3d.export import marching_cubes_mesh, point_cloud_from_views, tsdf_mesh

    loaded = neural3d.load(run)
    scene = loaded.dataset()
    cams = scene.cameras[scene.splits["train"]]
    t = time.perf_counter()
    cloud = point_cloud_from_views(loaded, cams)
    print(
        f"point cloud: {len(cloud):,} points from {len(cams)} views ({cams.width[0]}x{cams.height[0]}) "
        f"in {time.perf_counter() - t:.1f} s"
    )
    truth_points(loaded, scene)
    for res in (64, 128):
        t = time.perf_counter()
        mesh = marching_cubes_mesh(loaded, resolution=res)
        print(
            f"marching cubes {res}^3: {len(mesh.vertices):,} vertices, {len(mesh.triangles):,} triangles "
            f"in {time.perf_counter() - t:.1f} s"
        )
    t = time.perf_counter()
    mesh = tsdf_mesh(loaded, cams)
    print(
        f"TSDF fusion ({len(cams)} views): {len(mesh.vertices):,} vertices, {len(mesh.triangles):,} triangles "
        f"in {time.perf_counter() - t:.1f} s"
    )


def truth_points(loaded, scene) -> None:
    """Rendered depth of the held-out test views against the generator's exact z-depth maps (``depth/``), if present."""
    from neural3d.export.geometry import depth_points

    errs, agree, n = [], [], 0
    for i in scene.splits.get("test", [])[:8].tolist():
        img = Path(scene.image_paths[i])
        gt_path = Path(scene.root) / "depth" / img.parent.name / f"{img.stem}.npy"
        if not gt_path.is_file():
            return
        gt = np.load(gt_path)
        d = depth_points(loaded, scene.cameras[i : i + 1])
        pred_on = (d["opacity"] >= 0.5).cpu().numpy()
        z = d["z"].cpu().numpy()
        both = pred_on & (gt > 0)
        errs.append(np.abs(z[both] - gt[both]) / gt[both])
        agree.append(float((pred_on == (gt > 0)).mean()))
        n += 1
    if n:
        e = np.concatenate(errs)
        print(
            f"  geometry vs exact depth ({n} held-out views): median |z error| {100 * np.median(e):.2f}% of depth, "
            f"90th pct {100 * np.percentile(e, 90):.2f}%; occupancy agreement {100 * np.mean(agree):.1f}% of pixels"
        )


def _grey(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Grey float64 [H, W] of an RGB(A) uint8 image, resized (bilinear) to ``size`` = (H, W)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1)[None].double()
    t = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)[0]
    return (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).numpy()


def canvas_pearson(shot: np.ndarray, render: np.ndarray, panel_px: int = 340, notice_px: int = 190) -> float:
    """Pearson correlation of a screenshot with a render (grey, render resized to the screenshot) over the
    canvas left of the GUI panel and below the software-WebGL notice (the first-view test's measure)."""
    size = shot.shape[:2]
    a, b = _grey(shot, size), _grey(render, size)
    rows, cols = slice(notice_px, size[0]), slice(0, size[1] - panel_px)
    a, b = a[rows, cols].ravel(), b[rows, cols].ravel()
    if a.std() == 0 or b.std() == 0:  # a blank page (nothing drawn yet) correlates with nothing
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def bench_first_view(run: Path, max_res: int, out: Path, size=(1024, 768), settle_s: float = 60.0) -> None:
    """Page load -> first unobstructed full-resolution frame *on screen*, as a user opens the viewer.

    Times (from the DevTools call that opens the tab): the server sends the first frame and the first
    full-resolution frame; then screenshots every ~0.5 s until ``settle_s`` after that frame, each correlated
    with the server's full-resolution render (``canvas_pearson``). Shown = the first screenshot whose
    correlation reaches 95 % of the last one's. Also the correlation with the frustum layer alone (a white render
    on the same page): a frustum-obstructed view correlates with the layer, an unobstructed one with the render.
    """
    import imageio.v3 as iio
    from neural3d.viewer.headless import HeadlessChromium

    _, server = serve(run, max_res)
    browser = HeadlessChromium(size=size)
    out.mkdir(parents=True, exist_ok=True)
    try:
        sess, t0, first, full = open_tab(browser, server, 300)
        session = next(iter(server.sessions.values()))
        render = server.recent_images[session.client.client_id][-1]
        shots: list[tuple[float, float]] = []
        while not shots or shots[-1][0] < full + settle_s:
            path = browser.screenshot(sess, out / "first_view.png")
            shots.append((time.perf_counter() - t0, canvas_pearson(iio.imread(path), render)))
            time.sleep(0.5)
        print(
            "screenshots (s after page load, Pearson r with the render): "
            + ", ".join(f"{t:.1f} {r:.2f}" for t, r in shots)
        )
        final = shots[-1][1]
        shown = next((t for t, r in shots if final > 0.2 and r >= 0.95 * final), float("nan"))
        session.worker.stop()  # nothing may replace the blank render below
        session.client.scene.set_background_image(np.full_like(render, 255), format="png")  # the layer alone
        time.sleep(1.0)
        browser.wait_for_frames(sess, 3)
        layer = canvas_pearson(iio.imread(browser.screenshot(sess, out / "frustum_layer.png")), iio.imread(path))
        print(
            f"first view ({render.shape[1]}x{render.shape[0]} render, {size[0]}x{size[1]} tab): page load -> first "
            f"frame sent {first:.2f} s, -> first full-resolution frame sent {full:.2f} s, -> shown on screen "
            f"{shown:.2f} s (screenshots every ~{(shots[-1][0] - shots[0][0]) / max(len(shots) - 1, 1):.1f} s); "
            f"Pearson r of the screenshot with the render {final:.3f}, of the frustum layer with the screenshot "
            f"{layer:.3f}; screenshot: {out / 'first_view.png'}"
        )
    finally:
        browser.close()
        server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--max-res", type=int, default=512)
    p.add_argument("--target-fps", type=float, default=8.0)
    p.add_argument("--move-seconds", type=float, default=5.0)
    p.add_argument("--skip-export", action="store_true")
    p.add_argument("--hide-cameras", action="store_true", help="hide the frustums (lighter page for software WebGL)")
    p.add_argument(
        "--first-view",
        type=Path,
        default=None,
        metavar="DIR",
        help="only time page load -> the first view's full-resolution frame on screen (screenshots in DIR)",
    )
    args = p.parse_args()
    run = Path(args.run)
    if not run.is_dir():
        print(f"no run at {run}: run `make demo` first (or pass --run)")
        return 1
    print(machine())
    print(f"loadavg before: {os.getloadavg()}")
    if args.first_view is not None:
        bench_first_view(run, args.max_res, args.first_view)
        print(f"loadavg after: {os.getloadavg()}")
        return 0
    bench_viewer(run, args.max_res, args.target_fps, args.move_seconds, args.hide_cameras)
    print(f"loadavg: {os.getloadavg()}")
    if not args.skip_export:
        bench_export(run)
    print(f"loadavg after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
