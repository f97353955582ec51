"""Benchmark plots are drawn from the JSON results (benchmarks/curves.py): redrawn without a re-run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
curves = pytest.importorskip("curves")


def _gnt_result(seconds, seed, views, gnt, nearest, reproj):
    mean = {"gnt": {"psnr": gnt}, "nearest image": {"psnr": nearest}, "reprojection": {"psnr": reproj}}
    return {
        "train_seconds": seconds,
        "unseen_seed": seed,
        "config": {"n_source_views": 6, "n_source_views_eval": views},
        "unseen": {"mean": mean},
    }


def test_gnt_series_one_point_per_result_and_flat_baselines():
    results = [
        _gnt_result(200.0, 2, 10, 25.0, 18.0, 27.0),
        _gnt_result(100.0, 2, 10, 22.0, 18.0, 27.0),
        _gnt_result(100.0, 3, 10, 21.0, 16.0, 26.0),
        _gnt_result(150.0, 2, 16, 30.0, 18.0, 27.0),  # 16 sources: not drawn by default
        _gnt_result(150.0, 4, 10, 30.0, 18.0, 27.0),  # family 4: not drawn by default
    ]
    s = curves.gnt_series(results)
    assert s["GNT, family 2, 10 sources"] == ([100.0, 200.0], [22.0, 25.0])  # sorted by training seconds
    assert s["GNT, family 3, 10 sources"] == ([100.0], [21.0])
    assert s["true-depth reprojection, family 2"] == ([100.0, 200.0], [27.0, 27.0])
    assert s["nearest image, family 3"] == ([100.0, 100.0], [16.0, 16.0])
    assert not any("16 sources" in k or "family 4" in k for k in s)


def test_distributed_series_and_race_sides():
    result = {
        "results": [
            {
                "round": 0,
                "processes": 1,
                "evals": [{"train_wall_s": 10.0, "psnr": 20.0}, {"train_wall_s": 20.0, "psnr": 22.0}],
            },
            {"round": 0, "processes": 2, "evals": [{"train_wall_s": 6.0, "psnr": 20.5}]},
        ]
    }
    assert curves.distributed_series(result) == {
        "1 process": ([10.0, 20.0], [20.0, 22.0]),
        "2 processes": ([6.0], [20.5]),
    }
    tensorf = {"sides": [{"name": "a", "curve": [[1.0, 2, 3.0]]}, {"name": "b", "curve": [[4.0, 5, 6.0]]}]}
    marching = {"c": {"curve": [[7.0, 8, 9.0]], "reached_s": None}, "note": {"x": 1}}
    assert [(s.name, s.curve) for s in curves.race_sides(tensorf)] == [("a", [(1.0, 2, 3.0)]), ("b", [(4.0, 5, 6.0)])]
    assert [(s.name, s.curve) for s in curves.race_sides(marching)] == [("c", [(7.0, 8, 9.0)])]


def test_redraw_writes_every_plot_from_the_json(tmp_path):
    import json

    from PIL import Image

    (tmp_path / "distributed.json").write_text(
        json.dumps({"results": [{"round": 0, "processes": 1, "evals": [{"train_wall_s": 1.0, "psnr": 20.0}]}]})
    )
    (tmp_path / "gnt_xscene_a.json").write_text(json.dumps(_gnt_result(5.0, 2, 10, 25.0, 18.0, 27.0)))
    race = {"tensorf_final_psnr": 25.0, "sides": [{"name": "x", "curve": [[1.0, 1, 20.0], [10.0, 9, 26.0]]}]}
    (tmp_path / "race_tensorf_lego_150cpu.json").write_text(json.dumps(race))
    assert curves.main(["--results", str(tmp_path), "--races"]) == 0
    for name in ("distributed.png", "gnt_xscene.png", "race_tensorf_lego_150cpu.png"):
        img = Image.open(tmp_path / name)
        colours = np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)
        assert img.size[0] >= 640 and len(colours) > 2  # axes and coloured lines
