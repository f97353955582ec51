"""Inference MLPs on a CPU: ``F.linear`` (MKL sgemm) against oneDNN in row blocks (``fields/backends/cpu_linear.py``).

The MLPs of the render path at the sizes of a 100x100 lego frame (the ngp density and colour MLPs, TensoRF's colour
MLP), in turns that alternate between the two paths in one process; medians of wall time per call over rounds;
the max abs difference between the two outputs. Also the single products behind them (GFLOP/s).

    python benchmarks/bench_cpu_linear.py [--threads 1 2] [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from neural3d.fields.backends import cpu_linear
from neural3d.fields.mlp import MLP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_time, machine  # noqa: E402

CASES = {  # name: (in, hidden widths, out, output activation, rows)
    "ngp density MLP (32-64-16)": (32, (64,), 16, None, 160_000),
    "ngp colour MLP (31-64-64-3)": (31, (64, 64), 3, "sigmoid", 140_000),
    "TensoRF colour MLP (150-128-128-3)": (150, (128, 128), 3, "sigmoid", 80_000),
}


def _mlp_case(name: str, rounds: int) -> dict:
    in_dim, widths, out_dim, out_act, rows = CASES[name]
    torch.manual_seed(0)
    mlp = MLP(in_dim=in_dim, out_dim=out_dim, widths=widths, output_activation=out_act)
    x = torch.randn(rows, in_dim)
    times: dict[str, list[float]] = {"F.linear": [], "oneDNN": []}
    outputs = {}
    with torch.no_grad():
        for r in range(rounds):
            order = ("F.linear", "oneDNN") if r % 2 == 0 else ("oneDNN", "F.linear")
            for path in order:
                cpu_linear.set_enabled(path == "oneDNN")
                try:
                    outputs[path] = mlp(x)
                    times[path].append(best_time(lambda: mlp(x), 3, warmup=False))  # (warmed up above)
                finally:
                    cpu_linear.set_enabled(True)
    flops = 2 * rows * sum(a * b for a, b in zip([in_dim, *widths], [*widths, out_dim], strict=True))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "rows": rows,
        "ms": {k: round(v * 1e3, 2) for k, v in med.items()},
        "gflops": {k: round(flops / v / 1e9, 1) for k, v in med.items()},
        "ratio": round(med["F.linear"] / med["oneDNN"], 2),
        "max_abs_diff": float((outputs["F.linear"] - outputs["oneDNN"]).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not cpu_linear.enabled():
        raise SystemExit("bench_cpu_linear.py: this PyTorch build has no oneDNN linear op (nothing to compare)")
    results = {"machine": machine(), "runs": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in CASES:
            res = _mlp_case(name, args.rounds)
            results["runs"][f"{name}, {threads} thread(s)"] = res
            print(
                f"{name:36s} {threads} thr  F.linear {res['ms']['F.linear']:7.2f} ms ({res['gflops']['F.linear']:5.1f} "
                f"GFLOP/s)  oneDNN {res['ms']['oneDNN']:7.2f} ms ({res['gflops']['oneDNN']:5.1f})  "
                f"ratio {res['ratio']:.2f}x  max diff {res['max_abs_diff']:.1e}",
                flush=True,
            )
    if args.json is not None:
        from neural3d.training.run_dir import atomic_write_text

        atomic_write_text(json.dumps(results, indent=2), args.json)


if __name__ == "__main__":
    main()
