"""Fast ray marching on CPU (or GPU): training throughput per sampler, time-to-PSNR race, render speed.

    python benchmarks/bench_marching.py throughput [--seconds 30]
    python benchmarks/bench_marching.py race [--target 24] [--ngp-budget 900] [--ratio 10]
    python benchmarks/bench_marching.py render
    python benchmarks/bench_marching.py roofline

Scene: lego at factor 8 (100x100) from ../shared/data (else a generated 100px scene). Methods:
(a) NeRF coarse/fine 64+128, (b) hash grid, dense 64 uniform samples, (c) hash grid + occupancy grid,
(d) hash grid + proposal sampler. All measurements of one command run in one process, interleaved
(turns of a few seconds), and print ``os.getloadavg()`` so a loaded machine is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, PeakMemory, machine
from race import Runner, build_trainer, plot_curves, race

NGP = "configs/blender_ngp.yaml"
# hash grid sized for 100x100 images on a CPU (the 800x800 defaults are 16 levels, 2^19, 2048)
CPU_GRID = ["model.n_levels=12", "model.log2_hashmap_size=15", "model.max_resolution=256"]
METHODS = {
    "a nerf 64+128": ("configs/blender_nerf.yaml", ["trainer.batch_size=1024"]),
    "b ngp dense 64": (
        NGP,
        [*CPU_GRID, "model.sampler.type=uniform", "model.sampler.n_samples=64", "trainer.batch_size=2048"],
    ),
    # step ~ one pixel footprint at the object's distance (100 px, focal 139, distance 4 -> 0.03)
    "c ngp occupancy": (
        NGP,
        [
            *CPU_GRID,
            "model.sampler.type=occupancy",
            "model.sampler.resolution=32",
            "model.sampler.step_size=0.03",
            "trainer.batch_size=2048",
            "model.sampler.target_samples=65536",
        ],
    ),
    "d ngp proposal": (
        NGP,
        [
            *CPU_GRID,
            "model.sampler.type=proposal",
            "model.sampler.round_samples=[64]",
            "model.sampler.max_resolutions=[128]",
            "trainer.batch_size=2048",
        ],
    ),
}


def scene_overrides(tmp: Path) -> list[str]:
    lego = SHARED_DATA / "nerf_synthetic" / "lego"
    if lego.exists():
        return [f"data.path={lego}", "data.factor=8"]
    from neural3d.data.synthetic import write_blender_scene

    return [f"data.path={write_blender_scene(tmp / 'scene', seed=0, res=100)}", "data.factor=1"]


def available(names, tmp):
    """Build a trainer per method; methods this checkout does not have yet are reported and skipped."""
    out = {}
    for name in names:
        config, ov = METHODS[name]
        try:
            out[name] = build_trainer(
                config, [*ov, *scene_overrides(tmp), f"experiment={name.split()[0]}"], tmp / "runs"
            )
        except (ValueError, KeyError) as e:
            print(f"  {name}: skipped ({e})")
    return out


def samples_per_ray(trainer, metrics) -> float:
    if "samples_per_ray" in metrics:
        return float(metrics["samples_per_ray"])
    c = trainer.model.config
    if hasattr(c, "n_fine"):
        return c.n_coarse + (c.n_coarse + c.n_fine + 1 if c.n_fine else 0)
    return c.sampler.n_samples  # ngp: the sampler section's field samples


def throughput(args, tmp) -> dict:
    trainers = available(list(METHODS), tmp)
    stats = {n: {"steps": 0, "time": 0.0, "samples": 0.0, "rays": 0.0} for n in trainers}
    for tr in trainers.values():
        for _ in range(3):  # warm-up: allocator, first grid update
            tr.train_step()
    end = time.perf_counter() + args.seconds * len(trainers)
    while time.perf_counter() < end:
        for name, tr in trainers.items():
            turn = time.perf_counter() + 2.0
            while time.perf_counter() < turn:
                t0 = time.perf_counter()
                m = tr.train_step()
                dt = time.perf_counter() - t0
                s = stats[name]
                s["steps"] += 1
                s["time"] += dt
                rays = float(m.get("rays_used", tr.cfg.trainer.batch_size))  # a sample budget may drop rays
                s["rays"] += rays
                s["samples"] += samples_per_ray(tr, m) * rays
    print(f"{'method':18s} {'rays/s':>9s} {'samples/s':>11s} {'samples/ray':>11s} {'rays/s vs a':>11s}")
    base, rows = None, {}
    for name, s in stats.items():
        rays = s["rays"] / s["time"]
        base = base or rays
        rows[name] = {
            "rays_per_s": rays,
            "samples_per_s": s["samples"] / s["time"],
            "samples_per_ray": s["samples"] / s["rays"],
        }
        print(
            f"{name:18s} {rays:9,.0f} {rows[name]['samples_per_s']:11,.0f} {rows[name]['samples_per_ray']:11.1f} "
            f"{rays / base:11.1f}",
            flush=True,
        )
    return rows


def run_race(args, tmp) -> dict:
    trainers = available(["c ngp occupancy", "a nerf 64+128"], tmp)
    fast = Runner(
        "c ngp occupancy", trainers["c ngp occupancy"], budget_s=args.ngp_budget, eval_every_s=args.eval_every
    )
    runners = [fast]
    if "a nerf 64+128" in trainers:
        runners.append(
            Runner(
                "a nerf 64+128",
                trainers["a nerf 64+128"],
                budget_s=args.ngp_budget * args.ratio,
                eval_every_s=args.nerf_eval_every,
            )
        )

    def budgets(rs):  # once (c) reaches the target, NeRF gets `ratio` times its time
        if fast.reached_s is not None and len(rs) > 1:
            rs[1].budget_s = min(rs[1].budget_s, fast.reached_s * args.ratio)

    race(runners, target_psnr=args.target, slice_s=10.0, on_round=budgets, n_images=args.eval_images)
    png = plot_curves(runners, Path(args.out) / "marching_race.png", target_psnr=args.target)
    result = {r.name: {"reached_s": r.reached_s, "budget_s": r.budget_s, "curve": r.curve} for r in runners}
    for r in runners:
        msg = (
            f"reached {args.target} dB at {r.reached_s:.0f} s"
            if r.reached_s
            else f"not reached in {r.trainer.elapsed:.0f} s"
        )
        print(f"{r.name:18s} {msg}")
    if fast.reached_s and len(runners) > 1:
        slow = runners[1]
        t_slow = slow.reached_s or slow.trainer.elapsed
        bound = "=" if slow.reached_s else ">="
        print(f"time-to-{args.target} dB ratio (a)/(c) {bound} {t_slow / fast.reached_s:.1f}x   plot: {png}")
    return result


def render_speed(args, tmp) -> dict:
    from neural3d.evaluation.evaluate import render_image
    from neural3d.evaluation.metrics import psnr

    trainers = available(list(METHODS), tmp)
    rows = {}
    for name, tr in trainers.items():
        t0, steps = time.perf_counter(), 0
        while steps < args.train_steps and time.perf_counter() - t0 < args.train_seconds:
            tr.train_step()
            steps += 1
        idx = int(tr.scene.splits["val"][0])
        tr.model.eval()
        with PeakMemory(tr.device) as mem:
            t0 = time.perf_counter()
            out = render_image(tr.model, tr.scene, idx, chunk=args.chunk)
            dt = time.perf_counter() - t0
        n = tr.scene.height * tr.scene.width
        value = float(psnr(out["rgb"].clamp(0, 1), tr.scene.images[idx][..., :3]))
        rows[name] = {"rays_per_s": n / dt, "seconds_per_image": dt, "peak_mb": mem.peak_mb, "psnr": value}
        print(
            f"{name:18s} render {n / dt:9,.0f} rays/s  ({dt:.2f} s per {tr.scene.width}x{tr.scene.height} image, "
            f"peak memory +{mem.peak_mb:.0f} MB above the model, chunk {args.chunk}; val PSNR {value:.2f} "
            f"after {steps} training steps)",
            flush=True,
        )
        rows[name]["train_steps"] = steps
    return rows


def roofline(args, tmp) -> dict:
    """Arithmetic per sample of the NGP field next to this machine's measured matmul rate."""
    from neural3d.fields import NGPField

    f = NGPField(aabb=torch.tensor([[-1.5] * 3, [1.5] * 3]))
    enc = f.encoding
    levels, feats = enc.n_levels, enc.n_features_per_level
    interp = levels * 8 * feats * 2 + levels * 8 * 3  # trilinear blend + weights
    mlp = sum(2 * m.in_features * m.out_features for m in f.modules() if isinstance(m, torch.nn.Linear))
    sh = 16 * 3
    flops = interp + mlp + sh
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    rate = 5 * 2 * n**3 / (time.perf_counter() - t0)
    limit = rate / (3 * flops)  # forward + backward ~ 3x forward
    print(
        f"field forward FLOPs/sample ~{flops:,} (MLPs {mlp:,}, interpolation {interp:,}); fp32 matmul {rate / 1e9:.1f} "
        f"GFLOP/s -> training limit ~{limit:,.0f} samples/s"
    )
    return {"flops_per_sample": flops, "matmul_gflops": rate / 1e9, "samples_per_s_limit": limit}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["throughput", "race", "render", "roofline"])
    p.add_argument("--seconds", type=float, default=30.0, help="throughput: training seconds per method")
    p.add_argument("--target", type=float, default=24.0)
    p.add_argument("--ngp-budget", type=float, default=900.0)
    p.add_argument("--ratio", type=float, default=10.0, help="race: NeRF gets this multiple of (c)'s time")
    p.add_argument("--eval-every", type=float, default=15.0, help="race: eval period of (c), training seconds")
    p.add_argument("--nerf-eval-every", type=float, default=200.0, help="race: eval period of NeRF")
    p.add_argument("--eval-images", type=int, default=2, help="race: val images per evaluation (same for all)")
    p.add_argument("--train-steps", type=int, default=200, help="render: at most this many steps before rendering")
    p.add_argument("--train-seconds", type=float, default=120.0, help="render: at most this long training first")
    p.add_argument("--chunk", type=int, default=8192, help="render: rays per chunk")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default); use 1 on a "
        "machine shared with other jobs, where oversubscribed OpenMP threads are many times slower",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    print(f"machine: {machine()}\nload average before: {os.getloadavg()}")
    result = {"throughput": throughput, "race": run_race, "render": render_speed, "roofline": roofline}[args.what](
        args, tmp
    )
    print(f"load average after: {os.getloadavg()}")
    (Path(args.out) / f"marching_{args.what}.json").write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
