"""Training throughput on CPU (or GPU): rays/s and samples/s per method, measured side by side.

    python benchmarks/bench_train.py [--scene PATH] [--seconds 30]

Default scene: lego at factor 8 (100x100) from ../shared/data, else a generated 100px scene.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine

METHODS = {
    "nerf 64+128": ("configs/blender_nerf.yaml", ["trainer.batch_size=1024"]),
    "ngp grid 24 (demo size)": ("configs/demo.yaml", ["trainer.batch_size=4096"]),
    "ngp grid 32 (default)": ("configs/blender_ngp.yaml", ["trainer.batch_size=4096"]),
    "ngp uniform 64": (
        "configs/blender_ngp.yaml",
        ["model.sampler.type=uniform", "model.sampler.n_samples=64", "trainer.batch_size=2048"],
    ),
}


def samples_per_ray(model) -> int:
    c = model.config
    if hasattr(c, "n_fine"):
        return c.n_coarse + (c.n_coarse + c.n_fine + 1 if c.n_fine else 0)
    return c.sampler.n_samples  # ngp: the sampler section's field samples


def measure(config: str, overrides: list[str], scene: Path, seconds: float, out: Path) -> tuple[float, float]:
    from neural3d.config import load_config
    from neural3d.training.trainer import Trainer

    cfg, _ = load_config(
        config,
        [
            *overrides,
            f"data.path={scene}",
            f"output_dir={out}",
            "trainer.progress=false",
            "trainer.checkpoint_every=0",
            "data.factor=1" if "lego" not in str(scene) else "data.factor=8",
        ],
    )
    tr = Trainer(cfg, overwrite=True)
    for _ in range(3):  # warm-up (allocator, first grid update)
        tr.train_step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tr.train_step()
        n += 1
    if tr.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - start
    rays = n * cfg.trainer.batch_size / dt
    return rays, rays * samples_per_ray(tr.model)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", type=Path, default=None)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    scene = args.scene or SHARED_DATA / "nerf_synthetic" / "lego"
    if not scene.exists():
        from neural3d.data.synthetic import write_blender_scene

        scene = write_blender_scene(tmp / "scene", seed=0, res=100)
    print(f"machine: {machine()}\nscene: {scene}")
    print(f"{'method':28s} {'rays/s':>10s} {'samples/s':>12s} {'ratio vs nerf (rays/s)':>24s}")
    base = None
    for name, (config, ov) in METHODS.items():
        rays, samples = measure(config, ov, scene, args.seconds, tmp / "runs")
        base = base or rays
        print(f"{name:28s} {rays:10,.0f} {samples:12,.0f} {rays / base:24.1f}", flush=True)


if __name__ == "__main__":
    main()
