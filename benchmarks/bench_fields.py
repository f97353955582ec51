"""Micro-benchmark: forward + backward throughput of NeRFField and NGPField on CPU, and the hash-grid backends.

Usage: python benchmarks/bench_fields.py [--n-samples 65536] [--repeats 3] [--threads N]
Prints samples/s (forward only, and forward + backward) and, side by side in the same run, the hash encoding
and NGPField with the PyTorch reference backend (``torch``) and the fused C kernel (``cpu``), with the ratio;
no thresholds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from neural3d.fields import NeRFField, NGPField
from neural3d.fields.backends import cpu_kernel_available
from neural3d.fields.hashgrid import HashGridEncoding

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_time  # noqa: E402


def bench(
    name: str, field: torch.nn.Module, positions: torch.Tensor, viewdirs: torch.Tensor, repeats: int
) -> tuple[float, float]:
    n = positions.shape[0]

    def forward():
        with torch.no_grad():
            field.query(positions, viewdirs)

    def forward_backward():
        field.zero_grad(set_to_none=True)
        density, rgb = field.query(positions, viewdirs)
        (density.sum() + rgb.sum()).backward()

    t_f = best_time(forward, repeats)
    t_fb = best_time(forward_backward, repeats)
    n_params = sum(p.numel() for p in field.parameters())
    print(
        f"{name:10s} params={n_params:>10,d}  forward {n / t_f:>12,.0f} samples/s ({t_f * 1e3:7.1f} ms)  "
        f"fwd+bwd {n / t_fb:>12,.0f} samples/s ({t_fb * 1e3:7.1f} ms)"
    )
    return t_f, t_fb


def bench_encoding(
    name: str, backend: str, kwargs: dict, positions01: torch.Tensor, repeats: int
) -> tuple[float, float]:
    """Hash encoding alone: forward, and forward + backward into the table."""
    enc = HashGridEncoding(**kwargs, backend=backend)

    def forward():
        with torch.no_grad():
            enc(positions01)

    def forward_backward():
        enc.zero_grad(set_to_none=True)
        enc(positions01).sum().backward()

    t_f, t_fb = best_time(forward, repeats), best_time(forward_backward, repeats)
    print(f"{name:34s} forward {t_f * 1e3:7.1f} ms   fwd+bwd {t_fb * 1e3:7.1f} ms")
    return t_f, t_fb


def compare_backends(positions: torch.Tensor, viewdirs: torch.Tensor, repeats: int) -> None:
    """torch vs cpu hash-grid backends, side by side: the encoding alone and the whole NGPField."""
    if not cpu_kernel_available():
        print("hash-grid backend 'cpu' unavailable (no C compiler): skipping the backend comparison")
        return
    positions01 = (positions + 1.5) / 3.0
    layouts = {
        "default (16 levels, 2^19)": {},
        "fern CPU (12 levels, 2^16, 512)": {"n_levels": 12, "log2_hashmap_size": 16, "max_resolution": 512},
    }
    for label, kwargs in layouts.items():
        times = {
            b: bench_encoding(f"encoding {b:5s} {label}", b, kwargs, positions01, repeats) for b in ("torch", "cpu")
        }
        print(
            f"  -> cpu / torch speed-up: forward {times['torch'][0] / times['cpu'][0]:.1f}x, "
            f"fwd+bwd {times['torch'][1] / times['cpu'][1]:.1f}x"
        )
        fields = {b: NGPField(aabb=[[-1.5] * 3, [1.5] * 3], backend=b, **kwargs) for b in ("torch", "cpu")}
        times = {b: bench(f"NGP/{b}", f, positions, viewdirs, repeats) for b, f in fields.items()}
        print(
            f"  -> NGPField cpu / torch speed-up: forward {times['torch'][0] / times['cpu'][0]:.1f}x, "
            f"fwd+bwd {times['torch'][1] / times['cpu'][1]:.1f}x"
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
    compare_backends(positions, viewdirs, args.repeats)


if __name__ == "__main__":
    main()
