"""The TensoRF field's C kernels against its PyTorch path, stage by stage, on a trained run (issue 24, item 4).

    python benchmarks/vm_kernel.py runs/race/race_neural3d [--rounds 9] [--threads 1 2] [--out FILE.json]

One 100x100 val frame is rendered once to record the field's inputs (``density_and_features`` calls: every sample
evaluated up to early termination; ``color`` calls: the kept samples, as `neural3d/render/inference.py` chunks
them). Then each round times, for both backends in turn (``torch``: ``vm_backend: torch`` and the MLPs' activations
not in place, the path before the kernels; ``kernel``: ``vm_backend: auto``):

* ``density``: those density calls (the VM kernel summing 3 x 16 components per point);
* ``colour``: those colour calls (VM kernel + basis, the encoding kernel, the MLP);
* ``colour MLP only``: the MLP on the same rows (the part the kernels do not touch);
* ``training step``: forward + backward + a fused Adam step (learning rate 1e-9) of 1,024 random rays of a train
  image in train mode (the kernel's backward into the planes and lines, the sampler's gradient-free density passes,
  and the rebuild of the kernel's grid copies after the step).

Figures: median process CPU time (``time.process_time``) and wall time per stage; the CPU time is the one to read on a
shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import neural3d
import neural3d.fields.mlp as mlp_module
from neural3d.core.rays import image_rays

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

_IN_PLACE = mlp_module._IN_PLACE.copy()


def set_backend(field, name: str) -> None:
    """``kernel``: the C kernels and in-place activations; ``torch``: neither (the path before the kernels)."""
    for grid in (field.density_grid, field.app_grid):
        grid.backend = "auto" if name == "kernel" else "torch"
    mlp_module._IN_PLACE.clear()
    if name == "kernel":
        mlp_module._IN_PLACE.update(_IN_PLACE)


def record_inputs(loaded, cam) -> tuple[list, list]:
    """The field's density and colour inputs while rendering ``cam`` (each call's tensors)."""
    field, density_calls, color_calls = loaded.model.field, [], []
    density_fn, color_fn = field.density_and_features, field.color
    field.density_and_features = lambda p: (density_calls.append(p.clone()), density_fn(p))[1]
    field.color = lambda f, d: (color_calls.append((f.clone(), d.clone())), color_fn(f, d))[1]
    try:
        loaded.render(cam)
    finally:
        del field.density_and_features, field.color
    return density_calls, color_calls


def training_batch(loaded, n_rays: int = 1024):
    scene = loaded.dataset()
    i = int(scene.splits["train"][0])
    rays = image_rays(scene.cameras, i, scene.near, scene.far).flatten()
    return rays[torch.randperm(len(rays.origins), generator=torch.Generator().manual_seed(0))[:n_rays]]


def stages(loaded, density_calls, color_calls, batch) -> dict:
    model, field = loaded.model, loaded.model.field
    mlp_rows = []
    with torch.no_grad():
        for f, d in color_calls:
            mlp_rows.append(field._mlp_input(field.app_grid.projected(f, field.basis.weight), d))

    def density():
        with torch.no_grad():
            for p in density_calls:
                field.density_and_features(p)

    def colour():
        with torch.no_grad():
            for f, d in color_calls:
                field.color(f, d)

    def mlp_only():
        with torch.no_grad():
            for h in mlp_rows:
                field.mlp(h)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-9, fused=True)  # as the trainer's; a negligible step

    def train_step():
        model.train()
        try:
            out = model(batch)
            ((out.rgb - 0.5) ** 2).mean().backward()
            optimizer.step()  # the kernel's channels-last copies are rebuilt after it, as in training
            optimizer.zero_grad(set_to_none=True)
        finally:
            model.eval()

    return {"density": density, "colour": colour, "colour MLP only": mlp_only, "training step": train_step}


def run(loaded, fns: dict, threads: int, rounds: int) -> dict:
    torch.set_num_threads(threads)
    times = {(stage, b): [] for stage in fns for b in ("torch", "kernel")}
    for r in range(rounds + 1):  # round 0 warms up
        for stage, fn in fns.items():
            for b in ("torch", "kernel"):
                set_backend(loaded.model.field, b)
                start, cpu = time.perf_counter(), time.process_time()
                fn()
                if r:
                    times[(stage, b)].append((time.perf_counter() - start, time.process_time() - cpu))
    set_backend(loaded.model.field, "kernel")
    out = {}
    for (stage, b), v in times.items():
        out.setdefault(stage, {})[b] = {
            "cpu_ms": 1000 * statistics.median(c for _, c in v),
            "wall_ms": 1000 * statistics.median(w for w, _ in v),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a trained tensorf run (occupancy sampler)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    args = p.parse_args()
    loaded = neural3d.load(args.run)
    scene = loaded.dataset()
    i = int(scene.splits["val"][0])
    density_calls, color_calls = record_inputs(loaded, scene.cameras[i : i + 1])
    fns = stages(loaded, density_calls, color_calls, training_batch(loaded))
    result = {
        "machine": machine(),
        "run": str(args.run),
        "density_points": sum(len(x) for x in density_calls),
        "colour_points": sum(len(f) for f, _ in color_calls),
        "load_before": os.getloadavg(),
    }
    print(
        f"{result['machine']}; load {result['load_before']}; density points {result['density_points']}, "
        f"colour points {result['colour_points']}",
        flush=True,
    )
    for threads in args.threads:
        figures = run(loaded, fns, threads, args.rounds)
        result[f"threads_{threads}"] = figures
        for stage, f in figures.items():
            t, k = f["torch"], f["kernel"]
            print(
                f"{threads} thread(s) {stage:16s} torch {t['cpu_ms']:7.1f} ms CPU ({t['wall_ms']:7.1f} wall)  "
                f"kernel {k['cpu_ms']:7.1f} ms CPU ({k['wall_ms']:7.1f} wall)  CPU {t['cpu_ms'] / k['cpu_ms']:.2f}x",
                flush=True,
            )
    result["load_after"] = os.getloadavg()
    if args.out:
        from neural3d.training.run_dir import atomic_write_text

        atomic_write_text(json.dumps(result, indent=1), args.out)


if __name__ == "__main__":
    main()
