"""What reduces a hash table's gradient traffic: dense float32 all-reduce (the loop's), bf16 on the wire, and a
sparse exchange of the touched rows, measured on 2 torchrun processes (gloo, CPU, one thread each).

Driver::

    python benchmarks/bench_grad_exchange.py --entries 2097152 --fractions 0.05 0.17 0.5 0.7 --reps 9 \\
        --out benchmarks/results/grad_exchange.json

A gradient of ``entries`` hash-table rows x 2 float32 features (2,097,152 rows = 16 levels x 2^17: the lego
100x100 benchmark's table; 8,388,608 rows: ``configs/blender_ngp.yaml`` as shipped) in which each rank touched a
random ``fraction`` of the rows (its own draw; the rest exactly 0, as the hash grid's gradient), summed over
the 2 ranks by:

* ``dense_fp32``: ``all_reduce`` of the whole table (what ``all_reduce_gradients`` does), one buffer;
* ``dense_fp32_1mb``: the same in 1 MB buckets (bucketing bounds the temporary buffers and lets DDP overlap
  buckets with the backward pass; it sends the same bytes);
* ``dense_bf16``: cast to bfloat16, ``all_reduce``, cast back (half the bytes; rounding error reported);
* ``sparse``: ``all_gather`` of each rank's touched-row count, then of its (int32 row index, 2 float32 values)
  padded to the largest count, and a scatter-add into a dense table (exact).

Each repetition runs the methods in a rotated order (interleaved, so the machine's load falls on all alike);
reported: medians over ``--reps`` of wall seconds (rank 0, after a barrier) and process CPU seconds (summed over
both ranks), the bytes each rank sends (payload, not gloo's framing), and the largest difference from the exact
float64 sum.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("dense_fp32", "dense_fp32_1mb", "dense_bf16", "sparse")


def _dense(grad, *, bucket_bytes: int | None = None, dtype=None):
    import torch.distributed as d

    flat = grad.reshape(-1)
    out = flat.clone() if dtype is None else flat.to(dtype)
    step = out.numel() if bucket_bytes is None else max(1, bucket_bytes // out.element_size())
    for start in range(0, out.numel(), step):
        d.all_reduce(out[start : start + step])
    return out.float().view_as(grad), out.numel() * out.element_size()


def _sparse(grad):
    import torch
    import torch.distributed as d

    world = d.get_world_size()
    rows = (grad != 0).any(dim=1).nonzero().flatten().to(torch.int32)
    count = torch.tensor([rows.numel()])
    counts = [torch.zeros_like(count) for _ in range(world)]
    d.all_gather(counts, count)
    most = int(max(c.item() for c in counts))
    idx = torch.zeros(most, dtype=torch.int32)
    val = torch.zeros(most, grad.shape[1])
    idx[: rows.numel()], val[: rows.numel()] = rows, grad[rows.long()]
    idxs, vals = [torch.empty_like(idx) for _ in range(world)], [torch.empty_like(val) for _ in range(world)]
    d.all_gather(idxs, idx)
    d.all_gather(vals, val)
    out = torch.zeros_like(grad)
    for c, i, v in zip(counts, idxs, vals):
        n = int(c.item())
        out.index_add_(0, i[:n].long(), v[:n])
    sent = 8 + most * (4 + 4 * grad.shape[1])
    return out, sent


def _run(method: str, grad):
    if method == "dense_fp32":
        return _dense(grad)
    if method == "dense_fp32_1mb":
        return _dense(grad, bucket_bytes=2**20)
    if method == "dense_bf16":
        import torch

        return _dense(grad, dtype=torch.bfloat16)
    return _sparse(grad)


def worker(args) -> None:
    import torch
    import torch.distributed as d

    torch.set_num_threads(1)
    d.init_process_group("gloo")
    rank, world = d.get_rank(), d.get_world_size()
    results = []
    for fraction in args.fractions:
        g = torch.Generator().manual_seed(1000 * rank + int(fraction * 1000))
        grad = torch.zeros(args.entries, 2)
        touched = torch.rand(args.entries, generator=g) < fraction
        grad[touched] = torch.randn(int(touched.sum()), 2, generator=g) * 1e-3
        parts = [torch.empty_like(grad) for _ in range(world)]
        d.all_gather(parts, grad)
        exact = torch.stack(parts).double().sum(0)
        union = float((exact != 0).any(dim=1).double().mean())
        rec: dict[str, list] = {m: [] for m in METHODS}
        for rep in range(args.reps):
            order = METHODS[rep % len(METHODS) :] + METHODS[: rep % len(METHODS)]
            for method in order:
                d.barrier()
                t0, c0 = time.perf_counter(), time.process_time()
                out, sent = _run(method, grad)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                cpu_all = torch.tensor([cpu], dtype=torch.float64)
                d.all_reduce(cpu_all)
                err = float((out.double() - exact).abs().max())
                rec[method].append({"wall_s": wall, "cpu_s": float(cpu_all), "sent_bytes": sent, "max_err": err})
        row = {"fraction": fraction, "union_fraction": union, "entries": args.entries}
        for m, reps in rec.items():
            row[m] = {
                "wall_s": statistics.median(r["wall_s"] for r in reps),
                "cpu_s_both_ranks": statistics.median(r["cpu_s"] for r in reps),
                "sent_bytes": max(r["sent_bytes"] for r in reps),
                "max_err": max(r["max_err"] for r in reps),
            }
        results.append(row)
        if rank == 0:
            print(json.dumps(row), flush=True)
    if rank == 0:
        meta = {"argv": sys.argv[1:], "when": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__}
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    d.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--entries", type=int, default=2_097_152)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.17, 0.5, 0.7])
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "grad_exchange.json"))
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__, "--worker"]
    cmd += ["--entries", str(args.entries), "--reps", str(args.reps), "--out", str(Path(args.out).resolve())]
    cmd += ["--fractions", *map(str, args.fractions)]
    subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), check=True, cwd=REPO)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
