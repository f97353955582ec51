"""``neural3d demo`` with reduced settings (the shipped config trains ~2 minutes; the figures are in BENCHMARKS.md):
it ends by printing the next commands, writes the side-by-side eval images, reports progress as whole lines when
its output is not a terminal, and regenerates a scene generated earlier with other settings."""

from __future__ import annotations

import json

import numpy as np
from test_packaging import DEMO_OVERRIDES

from neural3d.cli.demo import default_demo_config
from neural3d.config import load_config


def test_shipped_demo_is_a_scene_worth_looking_at():
    cfg, _ = load_config(default_demo_config(), [])
    s = cfg.data.synth
    assert s.enabled and s.res >= 128 and s.layout == "blender"
    from neural3d.data.synthetic import make_scene

    scene = make_scene(s.seed, "object")
    objects = [m for p, m in zip(scene.primitives, scene.materials) if type(p).__name__ != "Disk"]
    assert len(objects) >= 3  # several objects ...
    assert sum(m.specular > 0 for m in scene.materials) >= 2  # ... with view-dependent highlights
    assert sum(type(m.texture).__name__ != "SolidTexture" for m in scene.materials) >= 3  # ... and textures


def test_reduced_demo_prints_next_commands_and_writes_comparisons(tmp_path, monkeypatch, capsys):
    from neural3d.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEURAL3D_PROGRESS", raising=False)
    (tmp_path / "data" / "demo").mkdir(parents=True)  # an older demo scene generated with other settings
    (tmp_path / "data" / "demo" / "scene.json").write_text(
        json.dumps({"generator": "neural3d.data.synthetic", "seed": 0, "res": 64, "layout": "blender"})
    )
    assert main(["demo", *DEMO_OVERRIDES]) == 0
    out, err = capsys.readouterr()
    assert "generated with other settings" in out and "res 64 -> 16" in out
    assert json.loads((tmp_path / "data" / "demo" / "scene.json").read_text())["res"] == 16
    assert "[demo] test PSNR" in out
    assert "neural3d view runs/demo" in out and "neural3d render runs/demo --path orbit --out orbit.mp4" in out
    assert "orbit video:   runs/demo/renders/orbit.mp4" in out
    assert "\r" not in out + err  # not a terminal: whole progress lines
    assert "[train] 5/5 (100%)" in err and "[render] 2/2 (100%)" in err and "[eval test] 1/1 (100%)" in err
    import imageio.v3 as iio

    compare = iio.imread(tmp_path / "runs" / "demo" / "eval" / "test" / "compare" / "r_0.png")
    pred = iio.imread(tmp_path / "runs" / "demo" / "eval" / "test" / "rgb" / "r_0.png")
    h, w = pred.shape[:2]
    assert compare.shape[:2] == (h, 3 * w)
    np.testing.assert_array_equal(compare[:, :w, :3], pred[..., :3])  # prediction | ground truth | error


def test_metrics_csv_one_liner_plots_it(tmp_path):
    import subprocess
    import sys

    csv_path = tmp_path / "run" / "logs" / "metrics.csv"
    csv_path.parent.mkdir(parents=True)
    rows = ["step,train/loss,train/psnr,train/elapsed_s,eval/psnr"]
    rows += [f"{s},{1.0 / s},{20 + s / 10},{s * 0.5}," for s in range(10, 110, 10)] + ["100,,,,28.5"]
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "psnr.png"
    cmd = [sys.executable, "-m", "neural3d.media.plot", str(csv_path), "--x", "train/elapsed_s", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    from PIL import Image

    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    blue = (np.abs(img - np.array([31, 119, 180])).sum(-1) < 30).sum()
    assert blue > 200  # the line was drawn
    from neural3d.media.plot import read_metrics

    xs, ys = read_metrics(csv_path, "train/elapsed_s", "train/psnr")
    assert len(xs) == 10 and xs[0] == 5.0 and ys[-1] == 30.0  # the eval-only row has no train/psnr


def test_training_never_regenerates_an_existing_scene(tmp_path, capsys):
    """Only the demo regenerates its own folder; ``neural3d train`` with ``data.synth`` on another generated scene
    warns and uses it as it is (it may be the user's)."""
    from neural3d.training.setup import ensure_scene_files
    from neural3d.training.train_config import DataConfig, SynthConfig

    scene = tmp_path / "scene"
    scene.mkdir()
    spec = {"generator": "neural3d.data.synthetic", "seed": 7, "res": 20, "layout": "blender"}
    (scene / "scene.json").write_text(json.dumps(spec))
    cfg = DataConfig(path=str(scene), synth=SynthConfig(enabled=True, res=32))
    assert ensure_scene_files(cfg) == scene
    assert json.loads((scene / "scene.json").read_text()) == spec
    assert "warning" in capsys.readouterr().out
