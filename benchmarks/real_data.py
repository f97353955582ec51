"""Real data on CPU: PSNR vs training wall time on lego (factor 8, 100x100) and fern (images_8, llffhold 8).

    python benchmarks/real_data.py --scene lego --budget 900
    python benchmarks/real_data.py --scene fern --budget 1200
    python benchmarks/real_data.py --scene fern-gnt --budget 1800 --eval-pixels 4096 trainer.batch_size=256

Needs ../shared/data (or --data). Prints the curve and writes it as CSV and PNG (PSNR vs seconds) next to the run.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, psnr_curve

SCENES = {
    "lego": ("configs/blender_ngp.yaml", "nerf_synthetic/lego", ["data.factor=8", "eval.split=val"], "val"),
    "fern": ("configs/llff_ngp.yaml", "nerf_llff_data/fern", ["data.factor=8"], "test"),
    # single-scene GNT (issue 4): world rays, 10 source views; use --eval-pixels, whole images are slow on a CPU
    "fern-gnt": ("configs/gnt_llff.yaml", "nerf_llff_data/fern", ["data.factor=8"], "test"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", choices=sorted(SCENES), required=True)
    p.add_argument("--budget", type=float, default=900.0, help="training seconds")
    p.add_argument("--eval-every", type=float, default=60.0)
    p.add_argument("--eval-images", type=int, default=20, help="evenly spaced eval images per curve point (final: all)")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default; 1 on a shared machine)")
    p.add_argument(
        "--eval-pixels",
        type=int,
        default=0,
        help="curve points on this many random test pixels instead of whole images (0: whole images)",
    )
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config, rel, extra, split = SCENES[args.scene]
    path = args.data / rel
    if not path.exists():
        sys.exit(f"missing data: {path}")
    print(f"machine: {machine()}")
    print(f"{args.scene}: {config} {' '.join(extra + args.overrides)} budget {args.budget:.0f}s")
    curve = psnr_curve(
        config,
        [f"data.path={path}", f"experiment={args.scene}", *extra, *args.overrides],
        budget_s=args.budget,
        eval_every_s=args.eval_every,
        eval_split=split,
        eval_images=args.eval_images,
        out_dir=args.out,
        eval_pixels=args.eval_pixels,
    )
    out = args.out / args.scene / "psnr_curve.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["train_seconds", "step", f"{split}_psnr"])
        w.writerows(curve)
    print(f"curve: {out}")
    from neural3d.media.plot import plot_lines

    xs, ys = [float(r[0]) for r in curve], [float(r[2]) for r in curve]
    png = plot_lines({args.scene: (xs, ys)}, out.with_suffix(".png"), xlabel="training seconds", title=f"{split} PSNR")
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
