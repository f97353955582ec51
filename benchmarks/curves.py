"""PSNR-vs-seconds plots of the benchmark results (the PNGs next to their JSON in ``benchmarks/results/``).

The benchmark scripts call these after writing their JSON (``bench_distributed.py``, ``bench_gnt.py``;
``race_tensorf.py`` and ``bench_marching.py`` draw theirs with ``race.plot_curves``), and each has ``--plot``
to redraw from the JSON already there. Redraw every plot without re-running anything:

    python benchmarks/curves.py [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
Series = dict[str, tuple[list[float], list[float]]]


@dataclass
class Side:
    """One racer's curve as ``race.plot_curves`` reads it: ``curve`` rows are (seconds, step, psnr)."""

    name: str
    """Legend label."""
    curve: list[tuple[float, int, float]] = field(default_factory=list)
    """(seconds, step, PSNR) points in time order."""


def race_sides(result: dict) -> list[Side]:
    """The racers of a ``race_tensorf.py`` result (``sides`` list) or a ``bench_marching.py`` race (name -> run)."""
    if "sides" in result:
        return [Side(s["name"], [tuple(r) for r in s["curve"]]) for s in result["sides"]]
    return [Side(name, [tuple(r) for r in run["curve"]]) for name, run in result.items() if "curve" in run]


def plot_race(json_path: Path, png: Path | None = None, target_psnr: float | None = None) -> Path:
    """Redraw a race's PNG (log seconds axis, the target PSNR as a grey line) from its JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from race import plot_curves

    result = json.loads(Path(json_path).read_text())
    sides = race_sides(result)
    if target_psnr is None:
        target_psnr = float(result.get("tensorf_final_psnr") or max(r[2] for s in sides for r in s.curve))
    return plot_curves(sides, png or Path(json_path).with_suffix(".png"), target_psnr=target_psnr)


def distributed_series(result: dict) -> Series:
    """``bench_distributed.py``: validation PSNR against training wall seconds, one line per process count/round."""
    rounds = {r["round"] for r in result["results"]}
    series: Series = {}
    for r in result["results"]:
        name = f"{r['processes']} process{'es' if r['processes'] > 1 else ''}"
        name += f" (round {r['round']})" if len(rounds) > 1 else ""
        evals = r.get("evals", [])
        series[name] = ([e["train_wall_s"] for e in evals], [e["psnr"] for e in evals])
    return series


def gnt_series(results: Sequence[dict], families: Sequence[int] = (2, 3), sources: Sequence[int] = (6, 10)) -> Series:
    """``bench_gnt.py``: GNT's mean PSNR on unseen families against its training seconds (every result file is
    one point: the run evaluated after that much training), and the two baselines of the same views.

    One line per (family, source views at evaluation: ``sources``); the true-depth reprojection (oracle) and the nearest
    source image are flat lines over the same seconds.
    """
    series: Series = {}
    span: dict[int, list[float]] = {}
    base: dict[tuple[int, str], float] = {}
    for r in sorted(results, key=lambda r: r["train_seconds"]):
        fam = int(r.get("unseen_seed", 2))
        views = r["config"].get("n_source_views_eval") or r["config"]["n_source_views"]
        if fam not in families or views not in sources:
            continue
        xs, ys = series.setdefault(f"GNT, family {fam}, {views} sources", ([], []))
        xs.append(r["train_seconds"])
        ys.append(r["unseen"]["mean"]["gnt"]["psnr"])
        span.setdefault(fam, []).append(r["train_seconds"])
        for b in ("reprojection", "nearest image"):
            base[(fam, b)] = r["unseen"]["mean"][b]["psnr"]
    for (fam, b), psnr in sorted(base.items()):
        label = "true-depth reprojection" if b == "reprojection" else b
        series[f"{label}, family {fam}"] = ([min(span[fam]), max(span[fam])], [psnr, psnr])
    return series


def plot_series(series: Series, png: Path, *, xlabel: str, title: str) -> Path:
    """Draw ``series`` with :func:`neural3d.media.plot.plot_lines` (the library's PIL plot)."""
    from neural3d.media.plot import plot_lines

    return plot_lines(series, png, xlabel=xlabel, title=title, size=(720, 440))


def plot_distributed(json_path: Path, png: Path | None = None) -> Path:
    """``distributed.json`` -> ``distributed.png``."""
    result = json.loads(Path(json_path).read_text())
    return plot_series(
        distributed_series(result),
        png or Path(json_path).with_suffix(".png"),
        xlabel="training wall seconds",
        title="lego val PSNR vs training wall seconds, 1 vs 2 processes (same global batch)",
    )


def plot_gnt(json_paths: Sequence[Path], png: Path) -> Path:
    """``gnt_xscene_*.json`` -> one PNG of GNT on unseen families against training seconds, with the baselines."""
    results = [json.loads(Path(p).read_text()) for p in json_paths]
    return plot_series(
        gnt_series(results),
        png,
        xlabel="GNT training seconds (CPU)",
        title="mean PSNR on unseen generated scenes vs GNT training seconds",
    )


def gnt_result_files(results_dir: Path = RESULTS) -> list[Path]:
    """The cross-scene GNT results kept in ``benchmarks/results``."""
    return sorted(Path(results_dir).glob("gnt_xscene_*.json"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="redraw every benchmark PSNR-vs-seconds plot from its JSON")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--races", action="store_true", help="also redraw the two race PNGs their scripts drew")
    args = p.parse_args(argv)
    d = args.results
    written = []
    races = {"race_tensorf_lego_150cpu.json": None, "race_tensorf_fern_600cpu.json": None, "marching_race.json": 24.0}
    tables = {"real_data_lego_900s.json": 24.0, "real_data_fern_sessions.json": 21.0}  # the issues' goals
    for table, target in tables.items():  # curves transcribed from BENCHMARKS.md tables (runs before JSON results)
        if (d / table).is_file():
            written.append(plot_race(d / table, target_psnr=target))
    for race, target in races.items() if args.races else ():
        if (d / race).is_file():
            written.append(plot_race(d / race, target_psnr=target))
    if (d / "distributed.json").is_file():
        written.append(plot_distributed(d / "distributed.json"))
    if gnt_result_files(d):
        written.append(plot_gnt(gnt_result_files(d), d / "gnt_xscene.png"))
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
