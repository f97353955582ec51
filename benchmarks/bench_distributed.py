"""1 vs N data-parallel processes (torchrun, gloo, CPU): step time, rays/s, PSNR against training time, and the
gradient all-reduce (bytes per step, its share of the step, how much of the hash table a step touches).

Driver (no torchrun environment)::

    python benchmarks/bench_distributed.py --nprocs 1 2 --rounds 1 --steps 300 --eval-every 100 \\
        --out benchmarks/results/distributed.json [key=value overrides of the ngp config]

``--suite gnt`` measures GNT cross-scene training instead (``configs/gnt_generalizable.yaml`` on a generated
4-scene family, scene-sharded across the ranks; no evaluation: ``--eval-every`` above ``--steps``)::

    python benchmarks/bench_distributed.py --suite gnt --nprocs 1 2 --rounds 2 --steps 40 --skip 5 \\
        --eval-every 1000000 --out benchmarks/results/distributed_gnt.json

The driver starts ``torchrun --standalone --nproc-per-node N`` of this file (``--worker``) for each N in turn,
round after round (N alternating, so load from other work on the machine falls on both alike), every process with one
intra-op thread (``OMP_NUM_THREADS=1``). Each worker trains the same config at the same *global* batch
(``trainer.batch_size``) and records per step: wall seconds, process CPU seconds, the wall seconds of the
gradient all-reduce (:func:`neural3d.training.distributed.all_reduce_gradients`, timed around the call),
``Loop.comm_bytes`` and the fraction of the hash table's gradient entries that are non-zero on that rank before
the all-reduce. Every ``--eval-every`` steps rank 0 measures val PSNR (``--eval-images`` views, not timed:
every rank waits at a barrier and the clocks restart after it). The driver prints a summary and writes
every record to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curves import plot_distributed

REPO = Path(__file__).resolve().parents[1]
LEGO = "/work/shared/data/nerf_synthetic/lego"
DEFAULTS = [
    f"data.path={LEGO}",
    "data.factor=8",
    "device=cpu",
    "model.log2_hashmap_size=17",
    "model.max_resolution=512",
    "model.sampler.resolution=64",
    "model.sampler.n_coarse=128",
    "model.sampler.decay=0.8",
    "trainer.batch_size=2048",
    "trainer.progress=false",
    "trainer.log_every=1000000",
]

# GNT cross-scene (``--suite gnt``): configs/gnt_generalizable.yaml at the CPU size of benchmarks/bench_gnt.py's
# cross-scene model (depth 4, 24 samples, 6 source views, 128 rays per step; the shipped depth-8 config costs
# 14 CPU s per step here) on a generated family of 4 scenes at 48x48 (written once by the driver; 2 per rank
# with 2 processes: scene sharding) and a generated unseen scene as the run's own.
GNT_DEFAULTS = [
    "device=cpu",
    "data.synth.enabled=false",
    "model.depth=4",
    "model.n_samples=24",
    "model.n_source_views=6",
    "trainer.batch_size=128",
    "model.family.n_scenes=4",
    "trainer.progress=false",
    "trainer.log_every=1000000",
    "trainer.eval_every=0",
]
SUITES = {
    "ngp": ("blender_ngp.yaml", DEFAULTS),
    "gnt": ("gnt_generalizable.yaml", GNT_DEFAULTS),
}


def _gnt_data(root: Path) -> list[str]:
    """Write the unseen scene and the family under ``root`` once (before any rank starts); their overrides."""
    from neural3d.data.synthetic import write_blender_scene, write_scene_family

    unseen, family = root / "unseen", root / "family"
    if not unseen.is_dir():
        write_blender_scene(unseen, seed=9001, res=48, n_train=16, n_val=2, n_test=4)
    if not family.is_dir():
        write_scene_family(family, n_scenes=4, seed=1, res=48, n_train=16, n_val=2, n_test=2)
    return [f"data.path={unseen}", f"model.family.root={family}"]


# ---------------------------------------------------------------------------------------------- worker
def _hash_touched(module) -> float | None:
    """Fraction of the hash tables' gradient entries that are non-zero (None without a hash grid)."""
    n, nz = 0, 0
    for name, p in module.named_parameters():
        if name.endswith("encoding.params") or "hash" in name:
            if p.grad is not None:
                n += p.grad.numel()
                nz += int((p.grad != 0).sum())
    return nz / n if n else None


def _instrument(records: list[dict], module) -> None:
    """Time the loop's gradient all-reduce and count the touched hash entries before it."""
    import neural3d.training.distributed as dist

    reduce = dist.all_reduce_gradients

    def timed(params, world_size, **kw):
        records[-1]["hash_touched"] = _hash_touched(module)
        t0 = time.perf_counter()
        out = reduce(params, world_size, **kw)
        records[-1]["allreduce_s"] = time.perf_counter() - t0
        return out

    dist.all_reduce_gradients = timed


def worker(args, overrides: list[str]) -> None:
    import torch

    from neural3d.config import load_config
    from neural3d.evaluation.evaluate import evaluate_split
    from neural3d.training import distributed as dist
    from neural3d.training.trainer import Trainer

    torch.set_num_threads(1)
    config, defaults = SUITES[args.suite]
    cfg, _ = load_config(str(REPO / "configs" / config), [*defaults, *overrides])
    trainer = Trainer(cfg, overwrite=True)
    loop = trainer.loop
    rank, world = dist.rank_and_world()
    records: list[dict] = []
    evals: list[dict] = []
    _instrument(records, trainer.model)
    train_wall = train_cpu = 0.0
    for step in range(args.steps):
        records.append({"step": step})
        t0, c0 = time.perf_counter(), time.process_time()
        loop.train_step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        records[-1].update(wall_s=wall, cpu_s=cpu, comm_bytes=loop.comm_bytes)
        records[-1].setdefault("hash_touched", _hash_touched(trainer.model))
        train_wall, train_cpu = train_wall + wall, train_cpu + cpu
        if (step + 1) % args.eval_every == 0:
            dist.barrier()
            if rank == 0:
                res = evaluate_split(trainer.model, trainer.scene, "val", max_images=args.eval_images)
                evals.append({"step": step + 1, "train_wall_s": train_wall, "psnr": res["mean"]["psnr"]})
            dist.barrier()
    out = {"rank": rank, "world": world, "records": records, "evals": evals, "train_cpu_s": train_cpu}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"rank{rank}.json").write_text(json.dumps(out))
    dist.shutdown()


# ---------------------------------------------------------------------------------------------- projection
# Assumptions of the scaling model (not measurements): achievable NCCL all-reduce bus bandwidth per GPU for
# messages of tens of MB -- NVLink/NVSwitch inside an 8-GPU H100/H200 node, and 400 Gb/s InfiniBand (one NIC per
# GPU) between nodes -- and single-GPU compute times per step of the global batch.
BUS_BW = {"NVLink (1 node)": 300e9, "InfiniBand (2+ nodes)": 40e9}
GPU_STEP_S = (0.010, 0.050)
GPU_CONFIG_BYTES = 48_823_180  # configs/blender_ngp.yaml as shipped (16 levels, 2^19 entries x 2, MLPs), float32


def allreduce_seconds(nbytes: float, world: int, bus_bw: float) -> float:
    """Ring all-reduce time: each GPU sends and receives ``2 (W - 1) / W`` of the message (NCCL's bus bandwidth)."""
    return 2 * (world - 1) / world * nbytes / bus_bw


def projected_step(t1: float, nbytes: float, world: int, bus_bw: float) -> float:
    """Step time on ``world`` GPUs at a fixed global batch: compute ``t1 / W`` (linear in rays per GPU), then
    the gradient all-reduce (not overlapped: the loop reduces after ``backward``)."""
    return t1 / world + (allreduce_seconds(nbytes, world, bus_bw) if world > 1 else 0.0)


def print_projection(nbytes: float = GPU_CONFIG_BYTES) -> None:
    print(f"projection, {nbytes / 1e6:.1f} MB of gradient per step (model; assumptions in the source)")
    for link, bw in BUS_BW.items():
        for world in (16,) if "InfiniBand" in link else (2, 4, 8):
            for t1 in GPU_STEP_S:
                t = projected_step(t1, nbytes, world, bw)
                comm = allreduce_seconds(nbytes, world, bw)
                print(
                    f"  {link:22s} W={world:2d} t1={t1 * 1e3:4.0f} ms: step {t * 1e3:6.2f} ms, all-reduce "
                    f"{comm * 1e3:5.2f} ms ({comm / t:4.0%}), speed-up {t1 / t:4.1f}x"
                )


# ---------------------------------------------------------------------------------------------- driver
def _launch(nproc: int, args, overrides: list[str], out: Path, run_dir: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += [str(Path(__file__).resolve()), "--worker", "--out", str(out), "--steps", str(args.steps)]
    cmd += ["--eval-every", str(args.eval_every), "--eval-images", str(args.eval_images), "--suite", args.suite, "--"]
    cmd += [*overrides, f"output_dir={run_dir}", f"experiment=n{nproc}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    subprocess.run(cmd, env=env, check=True, cwd=REPO)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


def _summary(ranks: list[dict], batch: int, skip: int) -> dict:
    """Medians over steps ``skip``.. (the first steps warm up the allocator and the occupancy grid)."""
    r0 = ranks[0]["records"][skip:]
    step_wall = statistics.median(max(rk["records"][i]["wall_s"] for rk in ranks) for i in range(skip, len(r0) + skip))
    out = {
        "processes": ranks[0]["world"],
        "step_wall_s": step_wall,
        "rays_per_s": batch / step_wall,
        "steps_per_s": 1.0 / step_wall,
        "cpu_s_per_step_per_process": statistics.median(r["cpu_s"] for r in r0),
        "cpu_s_per_step_by_rank": [statistics.median(r["cpu_s"] for r in rk["records"][skip:]) for rk in ranks],
        "evals": ranks[0]["evals"],
    }
    out["steps_per_s_one_core_each"] = 1.0 / max(out["cpu_s_per_step_by_rank"])  # each process with a core
    if ranks[0]["world"] > 1:
        out["allreduce_s"] = statistics.median(r["allreduce_s"] for r in r0)
        out["allreduce_share"] = out["allreduce_s"] / step_wall
        out["comm_bytes_per_step"] = r0[-1]["comm_bytes"]
    touched = [r["hash_touched"] for r in r0 if r.get("hash_touched") is not None]
    if touched:
        out["hash_touched_median"] = statistics.median(touched)
    return out


def _batch_size(suite: str, overrides: list[str]) -> int:
    """The run's global ``trainer.batch_size`` (the last override, else the suite's config file)."""
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("trainer.batch_size=")]
    if given:
        return int(given[-1])
    from neural3d.config import load_config

    return int(load_config(str(REPO / "configs" / SUITES[suite][0]), [])[0].trainer.batch_size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-images", type=int, default=10)
    p.add_argument("--skip", type=int, default=20, help="warm-up steps left out of the medians")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "distributed.json"))
    p.add_argument("--project", action="store_true", help="print the 8-GPU projection model only")
    p.add_argument("--suite", choices=sorted(SUITES), default="ngp", help="ngp on lego, or GNT cross-scene")
    p.add_argument("--plot", action="store_true", help="only redraw the PSNR-vs-seconds PNG from the --out JSON")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    overrides = [o for o in args.overrides if o != "--"]
    if args.worker:
        worker(args, overrides)
        return
    if args.plot:
        print(f"wrote {plot_distributed(Path(args.out))}")
        return
    if args.project:
        print_projection()
        return
    defaults = SUITES[args.suite][1]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.suite == "gnt":
            overrides = [*_gnt_data(Path(tmp) / "data"), *overrides]
        batch = _batch_size(args.suite, [*defaults, *overrides])
        for rnd in range(args.rounds):
            for n in args.nprocs:
                ranks = _launch(n, args, overrides, Path(tmp) / f"r{rnd}n{n}", Path(tmp) / "runs")
                s = _summary(ranks, batch, args.skip)
                results.append({"round": rnd, **s, "ranks": ranks})
                shown = {k: v for k, v in s.items() if k != "evals"}
                print(
                    json.dumps(shown),
                    [(e["step"], round(e["train_wall_s"], 1), round(e["psnr"], 2)) for e in s["evals"]],
                )
    meta = {"argv": sys.argv[1:], "overrides": [*defaults, *overrides], "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}))
    plot = f", {plot_distributed(Path(args.out))}" if args.suite == "ngp" else ""  # GNT: steps/s only, no curve
    print(f"wrote {args.out}{plot}")


if __name__ == "__main__":
    main()
