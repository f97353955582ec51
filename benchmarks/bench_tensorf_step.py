"""CPU cost of one ``tensorf`` training step, variants side by side from the same checkpoint (issue 24).

    python benchmarks/bench_tensorf_step.py RUN_DIR --steps 40 --threads 1

``RUN_DIR``: a ``tensorf`` run with a checkpoint (e.g. the race's ``runs/race/race_neural3d``). Each variant is a
trainer resumed from a copy of it, and the variants train in interleaved turns of 5 steps (the machine's other load
falls on all alike); the figure is process CPU time per step. Variants:

* ``default``: the run's config.
* ``colour everywhere``: ``model.app_weight_thre=0`` (the appearance evaluated on every sample after pruning).
* ``grid_sample backward``: torch's own ``grid_sample`` backward instead of the ``index_add_`` one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

import neural3d.fields.vm_decomposition as vm

VARIANTS = {"default": [], "colour everywhere": ["model.app_weight_thre=0"], "grid_sample backward": []}


@contextlib.contextmanager
def torch_grid_sample_backward(on: bool):
    """Swap ``sample_plane`` for plain ``grid_sample`` (autograd's backward) while ``on``."""
    saved = vm.sample_plane
    if on:
        vm.sample_plane = lambda plane, uv: torch.nn.functional.grid_sample(
            plane, uv.clamp(-1, 1).view(1, -1, 1, 2), align_corners=True
        )[0, :, :, 0]
    try:
        yield
    finally:
        vm.sample_plane = saved


def trainer_from(run: Path, work: Path, name: str, overrides: list[str]):
    from neural3d.config import load_config
    from neural3d.training.trainer import Trainer

    copy = work / name.replace(" ", "_")
    shutil.copytree(run, copy)
    for lock in copy.glob("*.lock"):
        lock.unlink()
    base = [f"output_dir={work}", f"experiment={copy.name}", "trainer.progress=false", "trainer.checkpoint_every=0"]
    cfg, _ = load_config(str(copy / "config.yaml"), [*base, "trainer.eval_every=0", "trainer.steps=100000", *overrides])
    return Trainer(cfg, resume=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--steps", type=int, default=40, help="measured steps per variant (after 5 warm-up steps)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {k: trainer_from(args.run, Path(tmp), k, o) for k, o in VARIANTS.items()}
        cpu = dict.fromkeys(trainers, 0.0)
        samples = dict.fromkeys(trainers, 0.0)
        for rnd in range(1 + args.steps // 5):
            for name, tr in trainers.items():
                with torch_grid_sample_backward(name == "grid_sample backward"):
                    t0 = time.process_time()
                    for _ in range(5):
                        out = tr.train_step()
                    if rnd > 0:  # the first round warms up
                        cpu[name] += time.process_time() - t0
                        samples[name] += float(out.get("samples_per_ray", 0.0)) / (args.steps // 5)
    n = 5 * (args.steps // 5)
    rows = {k: {"cpu_ms_per_step": round(cpu[k] / n * 1e3, 1), "samples_per_ray": round(samples[k], 1)} for k in cpu}
    print(json.dumps(rows, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
