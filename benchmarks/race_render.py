"""Render speed of a trained run at 100x100 (issue 24, item 4), before vs after the inference path, side by side:
``neural3d.load(...).render`` and the viewer's render worker (full-resolution path), on the same val camera.

    python benchmarks/race_render.py runs/race/race_neural3d [--frames 7] [--threads 1 2]

Variants (the same loaded model, switched between frames, so the machine's load falls on all alike):

* ``before``: the training path as evaluation used it: plain marching (every candidate step tested against the
  grid), a gradient-free density pass to prune, the field again on the kept samples; the viewer in 0.05 s bands
  (at the rays/s it measured), however small.
* ``after``: block marching (same samples), one density pass with early ray termination, densities reused,
  colour on the kept samples (:mod:`neural3d.render.inference`); the viewer renders a frame expected within
  0.25 s in one call, else in 0.05 s bands of at least 4,096 rays.
* ``after_eps`` (API only): ``after`` with ``render_color_eps = 1e-3`` (colour skipped where a ray's weights sum
  below 1e-3).
* ``vm_torch`` (TensoRF models only): ``after`` with ``vm_backend: torch``: the vector-matrix features and the
  colour MLP's input encoding through PyTorch instead of the C kernels; ``vm_torch_plain`` also without the MLPs'
  in-place activations: the ``after`` path as it was before the kernels (``--no-vm`` leaves both out).

Each thread count runs ``--frames`` rounds after one warm-up round; a round times one frame of every variant in
turn. Figures: median wall and process CPU time (``time.process_time``; on a loaded machine the one to read),
frames/s from the median wall time. The worker's time runs from the camera update to the finished image handed
to ``send`` (bands, colour conversion included; the main thread only waits). The script also prints the largest
pixel difference and the PSNR between the variants' images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

import neural3d.fields.mlp as mlp_module
from neural3d.fields.vm_decomposition import VMDecomposition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

VARIANTS = {  # sampler attributes and worker settings of each variant
    "before": {"render_fused": False, "skip_empty": False, "render_color_eps": 0.0, "frame_seconds": 0, "min_rays": 1},
    "after": {
        "render_fused": True,
        "skip_empty": True,
        "render_color_eps": 0.0,
        "frame_seconds": 0.25,
        "min_rays": 4096,
    },
    "after_eps": {"render_fused": True, "skip_empty": True, "render_color_eps": 1e-3},
}
VM_VARIANTS = {  # after, with the TensoRF kernel off; and with the MLPs' activations not in place either
    "vm_torch": {**VARIANTS["after"], "vm_backend": "torch"},
    "vm_torch_plain": {**VARIANTS["after"], "vm_backend": "torch", "plain_activations": True},
}
WORKER_VARIANTS = ("before", "after", "vm_torch_plain")
_IN_PLACE = mlp_module._IN_PLACE.copy()


def vm_grids(model) -> list[VMDecomposition]:
    return [m for m in model.modules() if isinstance(m, VMDecomposition)]


def set_variant(loaded, name: str) -> None:
    sampler = loaded.model.active_sampler
    for key in ("render_fused", "skip_empty", "render_color_eps"):
        setattr(sampler, key, VARIANTS[name][key])
    for grid in vm_grids(loaded.model):
        grid.backend = VARIANTS[name].get("vm_backend", "auto")
    # the MLPs' in-place activations without gradients (neural3d.fields.mlp), off for "vm_torch_plain"
    mlp_module._IN_PLACE.clear()
    if not VARIANTS[name].get("plain_activations"):
        mlp_module._IN_PLACE.update(_IN_PLACE)


def timed(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


class WorkerClock:
    """A viewer :class:`RenderWorker` of one variant fed one camera; :meth:`frame` times one full-resolution image."""

    def __init__(self, loaded, cam, variant: str) -> None:
        from neural3d.viewer import SceneHandle
        from neural3d.viewer.camera import CameraState
        from neural3d.viewer.worker import RenderSettings, RenderWorker

        h, w = int(cam.height[0]), int(cam.width[0])
        self.done = threading.Event()
        settings = RenderSettings(max_side=max(h, w), target_fps=8.0)
        self.worker = RenderWorker(
            SceneHandle(loaded),
            self._send,
            settings=settings,
            still_delay=0.0,
            frame_seconds=VARIANTS[variant]["frame_seconds"],
        )
        fov = 2 * float(np.arctan(0.5 * h / float(cam.fy[0])))
        c2w = cam.camera_to_worlds[0].double().cpu().numpy()
        self.state = lambda: CameraState(c2w=c2w.copy(), fov=fov, aspect=w / h)

    def _send(self, img: np.ndarray, kind: str) -> None:
        if kind == "full":
            self.done.set()

    def frame(self) -> None:
        self.done.clear()
        self.worker.update_camera(self.state())
        self.worker.request_full()
        if not self.done.wait(600):
            raise RuntimeError(f"no full-resolution frame in 600 s (worker errors: {self.worker.stats.errors})")


def summary(times: list[tuple[float, float]]) -> dict[str, float]:
    wall, cpu = statistics.median(t for t, _ in times), statistics.median(c for _, c in times)
    return {"wall_ms": 1000 * wall, "cpu_ms": 1000 * cpu, "fps": 1 / wall, "frames": len(times)}


def image_differences(loaded, cam) -> dict[str, dict[str, float]]:
    """Largest absolute difference and PSNR of each variant's ``rgb`` / ``depth`` / ``opacity`` against ``before``."""
    from neural3d.evaluation.metrics import psnr

    outs = {}
    for name in VARIANTS:
        set_variant(loaded, name)
        outs[name] = loaded.render(cam)
    ref = outs["before"]
    return {
        name: {
            **{f"max_abs_{k}": float((out[k] - ref[k]).abs().max()) for k in ("rgb", "depth", "opacity")},
            "psnr_rgb_db": float(psnr(out["rgb"].clamp(0, 1), ref["rgb"].clamp(0, 1))),
        }
        for name, out in outs.items()
        if name != "before"
    }


def run(loaded, cam, threads: int, frames: int) -> dict[str, dict]:
    torch.set_num_threads(threads)
    workers = {name: WorkerClock(loaded, cam, name) for name in WORKER_VARIANTS if name in VARIANTS}
    api: dict[str, list] = {name: [] for name in VARIANTS}
    viewer: dict[str, list] = {name: [] for name in workers}
    try:
        for i in range(frames + 1):  # round 0 warms up
            for name in VARIANTS:
                set_variant(loaded, name)
                t = timed(lambda: loaded.render(cam))
                if name in workers:
                    tw = timed(workers[name].frame)
                    if i:
                        viewer[name].append(tw)
                if i:
                    api[name].append(t)
    finally:
        for w in workers.values():
            w.worker.stop()
    return {
        "LoadedScene.render": {k: summary(v) for k, v in api.items()},
        "viewer RenderWorker (full res)": {k: summary(v) for k, v in viewer.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory (a trained checkpoint with the occupancy sampler)")
    p.add_argument("--frames", type=int, default=7)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--view", type=int, default=0, help="position in the val split")
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    p.add_argument("--no-vm", action="store_true", help="leave out the TensoRF kernel variants")
    args = p.parse_args()
    import neural3d

    loaded = neural3d.load(args.run)
    if vm_grids(loaded.model) and not args.no_vm:
        VARIANTS.update(VM_VARIANTS)
    scene = loaded.dataset()
    i = int(scene.splits["val"][args.view])
    cam = scene.cameras[i : i + 1]
    h, w = int(cam.height[0]), int(cam.width[0])
    result = {"machine": machine(), "run": str(args.run), "size": [h, w], "load_before": os.getloadavg()}
    result["image_vs_before"] = image_differences(loaded, cam)
    print(f"machine: {result['machine']}; load average {result['load_before']}", flush=True)
    for name, diff in result["image_vs_before"].items():
        print(f"image {name} vs before: {diff}", flush=True)
    for threads in args.threads:
        figures = run(loaded, cam, threads, args.frames)
        result[f"threads_{threads}"] = figures
        for path, by_variant in figures.items():
            base = by_variant["before"]
            plain = by_variant.get("vm_torch_plain")
            for name, f in by_variant.items():
                vs_plain = f"; wall {plain['wall_ms'] / f['wall_ms']:.2f}x of vm_torch_plain" if plain else ""
                print(
                    f"{threads} thread(s) {path:32s} {name:14s} {h}x{w}: {f['wall_ms']:7.1f} ms wall "
                    f"({f['fps']:5.1f} frames/s), {f['cpu_ms']:7.1f} ms CPU; CPU {base['cpu_ms'] / f['cpu_ms']:.2f}x, "
                    f"wall {base['wall_ms'] / f['wall_ms']:.2f}x of before{vs_plain}",
                    flush=True,
                )
    result["load_after"] = os.getloadavg()
    print(f"load average after: {result['load_after']}")
    if args.out:
        from neural3d.training.run_dir import atomic_write_text

        atomic_write_text(json.dumps(result, indent=1), args.out)


if __name__ == "__main__":
    main()
