"""Line plots as PNG with PIL alone (no matplotlib): a run's ``logs/metrics.csv``, benchmark curves.

One-liner (PSNR against training seconds of a run)::

    python -m neural3d.media.plot runs/demo/logs/metrics.csv --y train/psnr --x train/elapsed_s --out psnr.png
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from pathlib import Path

COLORS = (  # matplotlib's tab10 order
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def read_metrics(path: Path, x: str, y: str) -> tuple[list[float], list[float]]:
    """The (x, y) pairs of the rows of a ``metrics.csv`` that have both columns (rows of other prefixes skip)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and (x not in rows[0] or y not in rows[0]):
        raise ValueError(f"{path}: no column {x!r} or {y!r}; columns: {', '.join(rows[0])}")
    pairs = [(float(r[x]), float(r[y])) for r in rows if r.get(x) not in (None, "") and r.get(y) not in (None, "")]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log(raw, 10))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def plot_lines(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    out: Path,
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    size: tuple[int, int] = (640, 400),
) -> Path:
    """Draw ``{label: (xs, ys)}`` as coloured lines with axes, ticks and a legend; write the PNG ``out``."""
    from PIL import Image, ImageDraw

    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys)]
    if not pts:
        raise ValueError("plot_lines: nothing to plot")
    W, H = size
    left, right, top, bottom = 60, 16, 30, 44
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (W - left - right), H - bottom - (y - y0) / (y1 - y0) * (H - top - bottom)

    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.rectangle([left, top, W - right, H - bottom], outline=(0, 0, 0))
    for t in _ticks(x0, x1):
        u, _ = at(t, y0)
        d.line([u, H - bottom, u, H - bottom + 4], fill=(0, 0, 0))
        d.text((u - 10, H - bottom + 6), f"{t:g}", fill=(0, 0, 0))
    for t in _ticks(y0, y1):
        _, v = at(x0, t)
        d.line([left - 4, v, W - right, v], fill=(225, 225, 225))
        d.text((4, v - 6), f"{t:g}", fill=(0, 0, 0))
    for k, (label, (xs, ys)) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        line = [at(x, y) for x, y in zip(xs, ys)]
        if len(line) > 1:
            d.line(line, fill=color, width=2)
        for u, v in line if len(line) < 30 else []:
            d.ellipse([u - 2, v - 2, u + 2, v + 2], fill=color)
        d.text((left + 8, top + 6 + 14 * k), label, fill=color)
    d.text((left, 8), title, fill=(0, 0, 0))
    d.text(((W - len(xlabel) * 6) / 2, H - 18), xlabel, fill=(0, 0, 0))
    d.text((4, 8), ylabel if not title else "", fill=(0, 0, 0))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m neural3d.media.plot", description="plot columns of metrics.csv files")
    p.add_argument("csv", nargs="+", help="metrics.csv files (one line each)")
    p.add_argument("--x", default="step", help="x column (e.g. step, train/elapsed_s)")
    p.add_argument("--y", default="train/psnr", help="y column (e.g. train/psnr, train/loss, eval/psnr)")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args(argv)
    series = {str(Path(c).parent.parent.name or c): read_metrics(Path(c), args.x, args.y) for c in args.csv}
    out = plot_lines(series, Path(args.out), xlabel=args.x, title=f"{args.y} vs {args.x}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
