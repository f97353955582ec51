"""Render speed of a trained run at 100x100 (issue 24, item 4): frames/s of ``neural3d.load(...).render`` and of
the viewer's render worker (full-resolution path, row bands), both on the same val camera.

    python benchmarks/race_render.py runs/race/race_neural3d [--frames 20] [--threads 2]

The worker is fed one camera and its ``still_delay`` set to 0, so every request is one full-resolution render
(``RenderSettings.max_side`` = the image size); the time is from the request to the finished image handed to
``send`` (banding, colour conversion included). Figures are the median wall and process CPU time over
``--frames`` renders after one warm-up (on a loaded machine the CPU time is the one to read); the machine's load
average is printed next to them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine


def api_seconds(loaded, cam, frames: int) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per ``LoadedScene.render`` of the one-camera ``cam``."""
    loaded.render(cam)
    times = []
    for _ in range(frames):
        start, cpu = time.perf_counter(), time.process_time()
        loaded.render(cam)
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return times


def worker_seconds(loaded, cam, frames: int) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds from a camera update to the full-resolution image of the viewer's
    :class:`RenderWorker` (the main thread only waits meanwhile, so the process CPU time is the worker's)."""
    from neural3d.viewer import SceneHandle
    from neural3d.viewer.camera import CameraState
    from neural3d.viewer.worker import RenderSettings, RenderWorker

    h, w = int(cam.height[0]), int(cam.width[0])
    done = threading.Event()

    def send(img: np.ndarray, kind: str) -> None:
        if kind == "full":
            done.set()

    settings = RenderSettings(max_side=max(h, w), target_fps=8.0)
    worker = RenderWorker(SceneHandle(loaded), send, settings=settings, still_delay=0.0)
    fov = 2 * float(np.arctan(0.5 * h / float(cam.fy[0])))
    c2w = cam.camera_to_worlds[0].double().cpu().numpy()
    times = []
    try:
        for i in range(frames + 1):
            done.clear()
            state = CameraState(c2w=c2w.copy(), fov=fov, aspect=w / h)
            start, cpu = time.perf_counter(), time.process_time()
            worker.update_camera(state)
            worker.request_full()
            if not done.wait(600):
                raise RuntimeError(f"no full-resolution frame in 600 s (worker errors: {worker.stats.errors})")
            if i:  # the first one warms up
                times.append((time.perf_counter() - start, time.process_time() - cpu))
    finally:
        worker.stop()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory (a trained checkpoint)")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--view", type=int, default=0, help="position in the val split")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import neural3d

    loaded = neural3d.load(args.run)
    scene = loaded.dataset()
    i = int(scene.splits["val"][args.view])
    cam = scene.cameras[i : i + 1]
    print(f"machine: {machine()}; load average {os.getloadavg()}", flush=True)
    for name, fn in (("LoadedScene.render", api_seconds), ("viewer RenderWorker (full res)", worker_seconds)):
        times = fn(loaded, cam, args.frames)
        med, med_cpu = statistics.median(t for t, _ in times), statistics.median(c for _, c in times)
        print(
            f"{name:32s} {int(cam.height[0])}x{int(cam.width[0])}: median {med * 1000:.1f} ms wall "
            f"({1 / med:.1f} frames/s), {med_cpu * 1000:.1f} ms process CPU, {len(times)} frames",
            flush=True,
        )


if __name__ == "__main__":
    main()
