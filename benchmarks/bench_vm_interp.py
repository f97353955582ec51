"""Cost of TensoRF's plane interpolation on a CPU: ``F.grid_sample`` forward + backward against two gather
formulations (issue 24; BENCHMARKS.md, "TensoRF's VM field").

    python benchmarks/bench_vm_interp.py --threads 1 --out benchmarks/results/bench_vm_interp.json

One plane [1, R, 128, 128] sampled at n random points (R = 16: density, 48: appearance), the gradient of a
random [R, n] upstream. Candidates:

* ``grid_sample``: torch's ``F.grid_sample(align_corners=True)`` forward and its own backward (the official code).
* ``gather``: channels-last table [H*W, R], four corner rows gathered, weighted and summed (autograd's scatter).
* ``embedding_bag``: the same four rows and weights through ``F.embedding_bag(mode="sum", per_sample_weights)``.
* ``grid_sample + index_add`` (the library's :func:`neural3d.fields.vm_decomposition.sample_plane`):
  ``grid_sample`` forward, a backward that scatters ``weight x grad`` into the plane with ``index_add_``.

Process CPU time, best of 3 rounds of 4 calls each, candidates interleaved within a round.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

from neural3d.fields.vm_decomposition import linear_taps, sample_plane


def _corners(uv, h, w):
    x0, wx = linear_taps(uv[:, 0], w)
    y0, wy = linear_taps(uv[:, 1], h)
    c = y0 * w + x0
    index = torch.stack([c, c + 1, c + w, c + w + 1], 1)  # [n, 4]
    weight = torch.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy], 1)
    return index, weight


def grid_sample(plane, table, uv):
    return F.grid_sample(plane, uv.view(1, -1, 1, 2), align_corners=True)[0, :, :, 0]


def gather(plane, table, uv):
    index, weight = _corners(uv, *plane.shape[2:])
    return (table[index] * weight[..., None]).sum(1).T


def embedding_bag(plane, table, uv):
    index, weight = _corners(uv, *plane.shape[2:])
    return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum").T


def library(plane, table, uv):
    return sample_plane(plane, uv)


CANDIDATES = {
    "grid_sample": grid_sample,
    "gather": gather,
    "embedding_bag": embedding_bag,
    "grid_sample + index_add": library,
}


def measure(r: int, n: int, res: int, rounds: int = 3, calls: int = 4) -> dict:
    torch.manual_seed(0)
    uv = torch.rand(n, 2) * 2 - 1
    plane = torch.randn(1, r, res, res, requires_grad=True)
    table = plane.detach()[0].permute(1, 2, 0).reshape(-1, r).clone().requires_grad_()
    grad = torch.randn(r, n)
    best = {k: (float("inf"), float("inf")) for k in CANDIDATES}
    for _ in range(rounds):
        for name, fn in CANDIDATES.items():
            fwd = bwd = 0.0
            for _ in range(calls):
                t0 = time.process_time()
                out = fn(plane, table, uv)
                t1 = time.process_time()
                out.backward(grad)
                fwd, bwd = fwd + t1 - t0, bwd + time.process_time() - t1
                plane.grad = table.grad = None
            if fwd + bwd < sum(best[name]):
                best[name] = (fwd / calls * 1e3, bwd / calls * 1e3)
    return {k: {"forward_ms": round(f, 2), "backward_ms": round(b, 2)} for k, (f, b) in best.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--res", type=int, default=128)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for r in (16, 48):
        for n in (40_000, 100_000):
            row = {"components": r, "points": n, **measure(r, n, args.res)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
