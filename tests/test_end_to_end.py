"""Tiny end-to-end runs on CPU: train -> eval -> render -> load -> render from Python; resume equality."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest
import torch
from _progress_lines import assert_progress_lines

import neural3d
from neural3d.cli.main import main
from neural3d.config import build_config
from neural3d.training.trainer import RunExistsError, Trainer

TINY_NGP = [
    "model.n_levels=4",
    "model.log2_hashmap_size=10",
    "model.max_resolution=32",
    "model.sampler.n_samples=12",
    "model.sampler.n_coarse=12",
    "trainer.batch_size=256",
    "trainer.progress=false",
    "trainer.log_every=5",
]


def _write_cfg(tmp_path, scene, method="ngp"):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"method: {method}\ndata: {{path: {scene}}}\noutput_dir: {tmp_path / 'runs'}\nexperiment: e2e\n")
    return cfg


@pytest.mark.slow
def test_train_eval_render_load(tmp_path, tiny_blender_scene, capsys, monkeypatch):
    monkeypatch.delenv("NEURAL3D_PROGRESS", raising=False)
    cfg = _write_cfg(tmp_path, tiny_blender_scene)
    argv = ["train", str(cfg), "trainer.steps=120", "trainer.checkpoint_every=60", *TINY_NGP, "trainer.progress=true"]
    assert main(argv) == 0
    run = tmp_path / "runs" / "e2e"
    assert (run / "config.yaml").is_file() and (run / "logs" / "metrics.csv").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000060.pt", "step_0000120.pt"]
    # training lowered the loss: last logged train PSNR well above the first
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("train/psnr")
    first, last = float(rows[1].split(",")[col]), float(rows[-1].split(",")[col])
    assert last > first + 3.0

    out, err = capsys.readouterr()
    assert_progress_lines(err, "train", 120)
    assert f"neural3d eval {run}" in out and f"neural3d view {run}" in out  # the next commands
    assert main(["eval", str(run), "--split", "test"]) == 0
    assert_progress_lines(capsys.readouterr().err, "eval test", 2)
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert len(metrics["per_image"]) == 2 and metrics["mean"]["psnr"] > 14.0
    assert (run / "eval" / "test" / "rgb").is_dir() and len(list((run / "eval" / "test" / "depth").iterdir())) == 2
    # LPIPS from local weight files (random values in the torchvision / lpips layouts)
    from test_lpips import lpips_linear_state_dict, torchvision_state_dict

    torch.save(torchvision_state_dict("vgg"), tmp_path / "vgg.pth")
    torch.save(lpips_linear_state_dict("vgg"), tmp_path / "lin.pth")
    assert (
        main(
            [
                "eval",
                str(run),
                "--split",
                "val",
                "--lpips-net",
                "vgg",
                "--lpips-backbone",
                str(tmp_path / "vgg.pth"),
                "--lpips-linear",
                str(tmp_path / "lin.pth"),
            ]
        )
        == 0
    )
    val = json.loads((run / "eval" / "val" / "metrics.json").read_text())
    assert val["mean"]["lpips"] > 0 and all("lpips" in r for r in val["per_image"])

    video = tmp_path / "orbit.mp4"
    capsys.readouterr()
    assert main(["render", str(run), "--path", "orbit", "--frames", "4", "--out", str(video)]) == 0
    assert_progress_lines(capsys.readouterr().err, "render", 4)
    frames = list(iio.imiter(video))
    assert len(frames) == 4 and frames[0].shape[1] >= 2 * 24  # rgb | depth side by side

    scene = neural3d.load(run)
    assert scene.step == 120
    data = scene.dataset()
    i = int(data.splits["test"][0])
    out = scene.render(data.cameras[i : i + 1])
    assert out["rgb"].shape == (1, 24, 24, 3) and out["depth"].shape == (1, 24, 24)
    # the Python render equals the evaluation render and is close to the ground truth
    ref = neural3d.evaluation.evaluate.render_image(scene.model, data, i)["rgb"]
    torch.testing.assert_close(out["rgb"][0], ref)
    # the same pose via c2w/K, at another resolution, with a small chunk (bounded memory path)
    c = data.cameras[i]
    out2 = scene.render(
        c2w=c.camera_to_worlds[0], K=c.K[0] * torch.tensor([[2.0], [2.0], [1.0]]), width=48, height=48, chunk=100
    )
    assert out2["rgb"].shape == (1, 48, 48, 3) and torch.isfinite(out2["rgb"]).all()


def test_existing_run_needs_resume_or_overwrite(tmp_path, tiny_blender_scene):
    cfg, _ = build_config(
        {"method": "ngp", "data": {"path": str(tiny_blender_scene)}, "output_dir": str(tmp_path), "experiment": "x"},
        ["trainer.steps=2", *TINY_NGP],
    )
    Trainer(cfg).train()
    with pytest.raises(RunExistsError, match="--resume"):
        Trainer(cfg)
    Trainer(cfg, overwrite=True)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "method,extra",
    [
        ("ngp", TINY_NGP),
        (
            "nerf",
            [
                "model.width=32",
                "model.depth=3",
                "model.skips=[1]",
                "model.n_coarse=8",
                "model.n_fine=8",
                "trainer.batch_size=128",
                "trainer.progress=false",
            ],
        ),
    ],
)
def test_resume_continues_the_same_run(tmp_path, tiny_blender_scene, method, extra):
    base = {"method": method, "data": {"path": str(tiny_blender_scene)}, "output_dir": str(tmp_path)}
    ov = ["trainer.steps=12", "trainer.checkpoint_every=6", *extra]
    cfg_a, _ = build_config({**base, "experiment": "straight"}, ov)
    a = Trainer(cfg_a)
    a.train()

    cfg_b, _ = build_config({**base, "experiment": "interrupted"}, ov)

    def stop(trainer, step):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg_b, on_step=stop).train()
    cfg_c, _ = build_config({**base, "experiment": "interrupted"}, [*ov, "trainer.optim.lr=0.123"])
    with pytest.warns(UserWarning, match=r"trainer\.optim\.lr .*-> 0\.123\) not applied"):
        c = Trainer(cfg_c, resume=True)
    c.run.release()  # it will not train: hand the run back (one trainer at a time holds a run)
    b = Trainer(cfg_b, resume=True)
    assert b.step == 6
    b.train()
    pa, pb = _params(a.model), _params(b.model)
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=0, atol=0, msg=f"parameter {k} differs after resume")
