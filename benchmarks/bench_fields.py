"""Micro-benchmark: forward + backward throughput of NeRFField and NGPField on CPU.

Usage: python benchmarks/bench_fields.py [--n-samples 65536] [--repeats 3] [--threads N]
Prints samples/s (forward only, and forward + backward); no thresholds.
"""

from __future__ import annotations

import argparse
import time

import torch

from neural3d.fields import NeRFField, NGPField


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(name: str, field: torch.nn.Module, positions: torch.Tensor, viewdirs: torch.Tensor, repeats: int) -> None:
    n = positions.shape[0]

    def forward():
        with torch.no_grad():
            field.query(positions, viewdirs)

    def forward_backward():
        field.zero_grad(set_to_none=True)
        density, rgb = field.query(positions, viewdirs)
        (density.sum() + rgb.sum()).backward()

    t_f = _time(forward, repeats)
    t_fb = _time(forward_backward, repeats)
    n_params = sum(p.numel() for p in field.parameters())
    print(
        f"{name:10s} params={n_params:>10,d}  forward {n / t_f:>12,.0f} samples/s ({t_f * 1e3:7.1f} ms)  "
        f"fwd+bwd {n / t_fb:>12,.0f} samples/s ({t_fb * 1e3:7.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.n_samples
    positions = torch.rand(n, 3) * 3.0 - 1.5
    viewdirs = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {n} samples, best of {args.repeats}")
    bench("NeRFField", NeRFField(), positions, viewdirs, args.repeats)
    bench("NGPField", NGPField(aabb=[[-1.5] * 3, [1.5] * 3]), positions, viewdirs, args.repeats)


if __name__ == "__main__":
    main()
