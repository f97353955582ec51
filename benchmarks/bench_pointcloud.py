"""Point-cloud ViT benchmarks (issue 7), CPU-friendly; every comparison runs side by side in one process.

Sections (``--only`` picks some):

* ``synthetic``: test accuracy vs training wall time on the synthetic shape classes (goal >= 95% < 10 min).
* ``modelnet``: the shared ModelNet40 sample loads and a DeiT-tiny-depth model trains a few steps.
* ``throughput``: shapes/s (inference and training) for tiny / small / base widths, interleaved repetitions.
* ``fern``: point-conditioned field vs the hash-grid (ngp) field on fern, trained alternately step by step;
  test PSNR (a fixed random subset of the test pixels, same for both) vs each method's own training time.

Usage: ``python benchmarks/bench_pointcloud.py [--only synthetic,fern] [--fern-seconds 300]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine


def load() -> str:
    return "load avg " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_synthetic(out: Path, budget_s: float) -> None:
    from neural3d.apps.point_classification.config import load_pc_config
    from neural3d.apps.point_classification.train import PointCloudTrainer

    cfg = load_pc_config(
        "configs/pointcloud_synthetic.yaml",
        # cosine schedule over 400 steps; the time budget stops earlier
        [f"output_dir={out}", "progress=false", "steps=400", "warmup_steps=10", "eval_every=0", "checkpoint_every=0"],
    )
    tr = PointCloudTrainer(cfg, overwrite=True)
    print(
        f"[synthetic] {len(tr.train_set)} train / {len(tr.test_set)} test shapes, "
        f"{cfg.data.synth_classes} classes, {cfg.data.n_points} points, depth {cfg.model.depth}; {load()}"
    )
    reached = None
    while tr.step < cfg.steps and tr.elapsed < budget_s:
        t0 = time.perf_counter()
        tr.train_step()
        tr.elapsed += time.perf_counter() - t0
        if tr.step % 25 == 0:
            acc = tr.evaluate()["accuracy"]
            print(f"  t={tr.elapsed:6.1f}s step={tr.step:4d} test accuracy={acc:.3f}", flush=True)
            if acc >= 0.95 and reached is None:
                reached = (tr.elapsed, tr.step, acc)
            if reached and tr.step >= reached[1] + 50:
                break
    print(f"[synthetic] >=95% reached: {reached}  ({load()})")


def bench_modelnet(out: Path) -> None:
    from neural3d.apps.point_classification.config import load_pc_config
    from neural3d.apps.point_classification.train import PointCloudTrainer

    path = SHARED_DATA / "modelnet40_sample"
    if not path.is_dir():
        print("[modelnet] sample absent, skipped")
        return
    cfg = load_pc_config(
        "configs/pointcloud_modelnet40.yaml",
        [f"data.path={path}", f"output_dir={out}", "steps=5", "batch_size=3", "progress=false", "warmup_steps=1"],
    )
    t0 = time.perf_counter()
    tr = PointCloudTrainer(cfg, overwrite=True)
    print(
        f"[modelnet] loaded {len(tr.train_set)} train / {len(tr.test_set)} test shapes "
        f"{tuple(tr.train_set.points.shape)} in {time.perf_counter() - t0:.2f}s; depth 12, 1024 points + normals"
    )
    for _ in range(cfg.steps):
        t0 = time.perf_counter()
        loss = float(tr.train_step()["loss"])
        print(f"  step {tr.step}: loss {loss:.3f} ({time.perf_counter() - t0:.2f}s)", flush=True)
    print(f"[modelnet] test {tr.evaluate()}  ({load()})")


def bench_throughput(reps: int, batch: int) -> None:
    from neural3d.pointcloud import PointViT

    models = {
        s: PointViT(size=s, depth=12, task="cls", n_classes=40, n_centres=(512, 256)) for s in ("tiny", "small", "base")
    }
    pts = torch.rand(batch, 1024, 3) * 2 - 1
    times = {s: {"infer": [], "train": []} for s in models}
    for _ in range(reps):  # interleaved: every size sees the same machine load
        for s, m in models.items():
            with torch.no_grad():
                t0 = time.perf_counter()
                m.eval()(pts)
                times[s]["infer"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m.train()(pts).logsumexp(-1).mean().backward()
            times[s]["train"].append(time.perf_counter() - t0)
    print(f"[throughput] batch {batch} x 1024 points, 512->256 tokens, 12 blocks, median of {reps}; {load()}")
    base = None
    for s, t in times.items():
        inf = batch / sorted(t["infer"])[reps // 2]
        trn = batch / sorted(t["train"])[reps // 2]
        base = base or inf
        n = sum(p.numel() for p in models[s].parameters()) / 1e6
        print(
            f"  {s:5s} ({n:5.1f}M params): inference {inf:7.2f} shapes/s  train {trn:6.2f} shapes/s  "
            f"(inference x{inf / base:.2f} of tiny)"
        )


def bench_fern(out: Path, budget_s: float, eval_every_s: float, n_pixels: int) -> None:
    from neural3d.config import load_config
    from neural3d.evaluation.metrics import mse_to_psnr
    from neural3d.training.trainer import Trainer

    fern = SHARED_DATA / "nerf_llff_data" / "fern"
    if not fern.is_dir():
        print("[fern] shared fern absent, skipped")
        return
    common = [
        f"data.path={fern}",
        f"output_dir={out}",
        "trainer.progress=false",
        "trainer.checkpoint_every=0",
        "trainer.steps=100000",
    ]
    runs = {
        "point_field": Trainer(
            load_config(
                "configs/llff_pointfield.yaml", [*common, f"model.points_path={fern}", "trainer.batch_size=1024"]
            )[0],
            overwrite=True,
        ),
        "ngp": Trainer(load_config("configs/llff_ngp.yaml", [*common, "trainer.batch_size=1024"])[0], overwrite=True),
    }
    scene = runs["ngp"].scene
    test = scene.split_indices("test")
    g = torch.Generator().manual_seed(0)
    cam = test[torch.randint(len(test), (n_pixels,), generator=g)]
    xy = torch.stack(
        [torch.randint(scene.width, (n_pixels,), generator=g), torch.randint(scene.height, (n_pixels,), generator=g)],
        -1,
    )
    rays = scene.rays(cam, xy.float() + scene.pixel_center)
    target = scene.images[cam, xy[:, 1], xy[:, 0]]
    print(f"[fern] factor 8, batch 1024 rays, test PSNR on {n_pixels} random test pixels; {load()}")
    next_eval = dict.fromkeys(runs, eval_every_s)
    while any(tr.elapsed < budget_s for tr in runs.values()):
        for name, tr in runs.items():
            if tr.elapsed >= budget_s:
                continue
            t0 = time.perf_counter()
            tr.train_step()
            tr.elapsed += time.perf_counter() - t0
            if tr.elapsed >= next_eval[name] or tr.elapsed >= budget_s:
                tr.model.eval()
                pred = tr.model.render_rays(rays, chunk=4096)["rgb"]
                psnr = mse_to_psnr(((pred - target) ** 2).mean())
                print(f"  {name:11s} t={tr.elapsed:6.1f}s step={tr.step:5d} test PSNR={float(psnr):.2f}", flush=True)
                next_eval[name] += eval_every_s
    steps = {k: tr.step / tr.elapsed for k, tr in runs.items()}
    print(
        "[fern] steps/s: "
        + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
        + f"  (ngp / point_field = {steps['ngp'] / steps['point_field']:.1f}x)  ({load()})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="synthetic,modelnet,throughput,fern")
    p.add_argument("--out", default="runs/bench_pointcloud")
    p.add_argument("--synthetic-seconds", type=float, default=600)
    p.add_argument("--fern-seconds", type=float, default=300)
    p.add_argument("--fern-eval-every", type=float, default=60)
    p.add_argument("--fern-pixels", type=int, default=4096)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads (small models: 1 avoids oversubscription)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"machine: {machine()}; {load()}")
    out = Path(a.out)
    only = a.only.split(",")
    if "synthetic" in only:
        bench_synthetic(out, a.synthetic_seconds)
    if "modelnet" in only:
        bench_modelnet(out)
    if "throughput" in only:
        bench_throughput(a.reps, a.batch)
    if "fern" in only:
        bench_fern(out, a.fern_seconds, a.fern_eval_every, a.fern_pixels)


if __name__ == "__main__":
    main()
