"""Point-cloud training: config validation, CLI train/eval, loss decrease, resume, encode from a run."""

import csv
import json
from pathlib import Path

import pytest
import torch
from _progress_lines import assert_progress_lines

from neural3d.apps.point_classification.config import build_pc_config, load_pc_config
from neural3d.apps.point_classification.train import PointCloudTrainer
from neural3d.cli.main import main
from neural3d.config import ConfigError
from neural3d.pointcloud import encode

TINY = [
    "data.n_points=128",
    "model.n_centres=[32,16]",
    "model.depth=1",
    "data.synth_train_per_class=8",
    "data.synth_test_per_class=4",
    "batch_size=16",
    "progress=false",
    "log_every=1",
    "eval_every=0",
]


def _rows(run):
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


PC_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("pointcloud_*.yaml"))


@pytest.mark.parametrize("path", PC_CONFIGS, ids=lambda p: p.stem)
def test_shipped_pointcloud_configs_validate(path):
    cfg = load_pc_config(path)
    assert cfg.task in ("cls", "seg") and cfg.model.size in ("tiny", "small", "base")


def test_config_rejects_unknown_keys_and_values():
    with pytest.raises(ConfigError, match="model.dept"):
        build_pc_config({"model": {"dept": 2}})
    with pytest.raises(ConfigError, match="task"):
        build_pc_config({"task": "detect"})
    with pytest.raises(ConfigError, match="data.path"):
        build_pc_config({"data": {"kind": "modelnet40"}})
    with pytest.raises(ConfigError, match="distill"):
        build_pc_config({"distill": {"weight": 1.0}})


def test_cli_train_eval_lowers_loss(tmp_path, capsys):
    cfg = tmp_path / "pc.yaml"
    cfg.write_text(f"task: cls\noutput_dir: {tmp_path / 'runs'}\nexperiment: smoke\nlr: 3.0e-3\nwarmup_steps: 2\n")
    assert main(["pointcloud", "train", str(cfg), "steps=40", "checkpoint_every=20", *TINY, "progress=true"]) == 0
    run = tmp_path / "runs" / "smoke"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000020.pt", "step_0000040.pt"]
    losses = [float(r["train/loss"]) for r in _rows(run) if r.get("train/loss")]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    out, err = capsys.readouterr()
    assert_progress_lines(err, "pointcloud", 40)
    assert f"neural3d pointcloud eval {run}" in out  # the next command
    assert main(["pointcloud", "eval", str(run)]) == 0
    res = json.loads((run / "eval" / "metrics.json").read_text())
    assert res["step"] == 40 and res["n_shapes"] == 20 and 0.0 <= res["accuracy"] <= 1.0
    assert_progress_lines(capsys.readouterr().err, "eval", 20)
    enc = encode(torch.rand(128, 3), run)
    assert enc.tokens.shape == (1, 16, 192)
    capsys.readouterr()
    assert main(["pointcloud", "train", str(cfg), "model.bogus=1"]) == 2
    assert "model.bogus" in capsys.readouterr().err
    assert main(["pointcloud", "train", str(cfg), *TINY]) == 2  # run exists: --resume / --overwrite needed


def test_resume_continues_exactly(tmp_path):
    common = [*TINY, f"output_dir={tmp_path}", "checkpoint_every=3"]
    straight = PointCloudTrainer(build_pc_config({}, [*common, "steps=6", "experiment=a"]))
    straight.train()
    first = PointCloudTrainer(build_pc_config({}, [*common, "steps=3", "experiment=b"]))
    first.train()
    resumed = PointCloudTrainer(build_pc_config({}, [*common, "steps=6", "experiment=b"]), resume=True)
    assert resumed.step == 3
    resumed.train()
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_segmentation_training_reports_miou(tmp_path):
    cfg = build_pc_config({}, [*TINY, "task=seg", f"output_dir={tmp_path}", "steps=40", "lr=3e-3"])
    trainer = PointCloudTrainer(cfg)
    first = float(trainer.train_step()["loss"])
    metrics = trainer.train()
    last = [float(r["train/loss"]) for r in _rows(trainer.run_dir) if r.get("train/loss")][-3:]
    assert sum(last) / 3 < 0.85 * first
    assert set(metrics) == {"point_accuracy", "instance_miou"} and 0 < metrics["instance_miou"] <= 1


def test_training_with_retention_loss(tmp_path):
    from PIL import Image

    from neural3d.pointcloud.image_vit import ImageViT

    torch.manual_seed(0)
    torch.save({"model": ImageViT(size="tiny", img_size=32).state_dict()}, tmp_path / "teacher.pth")
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray((torch.rand(40, 40, 3) * 255).byte().numpy()).save(tmp_path / "imgs" / f"{i}.png")
    cfg = build_pc_config(
        {},
        [
            *TINY,
            f"output_dir={tmp_path}",
            "steps=3",
            "distill.weight=0.5",
            f"distill.teacher={tmp_path / 'teacher.pth'}",
            f"distill.images={tmp_path / 'imgs'}",
            "distill.image_size=32",
            "distill.batch_size=2",
        ],
    )
    trainer = PointCloudTrainer(cfg)
    assert trainer.distill_images.shape == (3, 3, 32, 32)
    out = trainer.train_step()
    assert "retention" in out and float(out["retention"]) >= 0.0
    assert trainer.model.blocks[0].attn.qkv.weight.grad is not None
