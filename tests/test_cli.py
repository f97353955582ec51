"""The command line: data synth, LLFF (NDC) training, camera_path.json rendering, clear errors."""

from __future__ import annotations

import json

import imageio.v3 as iio
import torch

from neural3d.cli.main import main
from neural3d.media.camera_path_json import CameraPath, save_camera_path

TINY = [
    "model.n_levels=4",
    "model.log2_hashmap_size=10",
    "model.max_resolution=32",
    "model.sampler.n_samples=8",
    "model.sampler.n_coarse=16",
    "model.sampler.resolution=16",
    "trainer.batch_size=256",
    "trainer.progress=false",
]


def test_data_synth_writes_a_loadable_scene(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--layout", "llff", "--res", "24", "--seed", "5"]) == 0
    assert "wrote synthetic llff scene" in capsys.readouterr().out
    from neural3d.data import load_scene

    scene = load_scene(out, factor=1)
    assert scene.ndc and scene.images.shape[1:] == (18, 24, 3)


def test_llff_ndc_training_and_camera_path_render(tmp_path, tiny_llff_scene):
    cfg = tmp_path / "llff.yaml"
    cfg.write_text(
        f"method: ngp\ndata: {{path: {tiny_llff_scene}, factor: 1}}\noutput_dir: {tmp_path}\nexperiment: r\n"
    )
    assert main(["train", str(cfg), "trainer.steps=20", *TINY]) == 0
    run = tmp_path / "r"
    assert main(["eval", str(run)]) == 0  # llffhold=8 test split
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["per_image"] and all(torch.isfinite(torch.tensor(r["psnr"])) for r in metrics["per_image"])
    # a nerfstudio camera path: 3 frames, 20x16, through the scene's first poses
    from neural3d.data import load_scene

    scene = load_scene(tiny_llff_scene, factor=1)
    path = tmp_path / "camera_path.json"
    save_camera_path(
        path,
        CameraPath(c2w=scene.cameras.camera_to_worlds[:3], fov_deg=torch.full((3,), 50.0), width=20, height=16, fps=10),
    )
    frames_dir = tmp_path / "frames"
    assert (
        main(["render", str(run), "--path", str(path), "--out", str(frames_dir), "--outputs", "rgb,depth,opacity"]) == 0
    )
    frames = sorted(frames_dir.glob("*.png"))
    assert len(frames) == 3 and iio.imread(frames[0]).shape == (16, 60, 3)  # three panels side by side


def test_bad_inputs_give_one_clear_error(tmp_path, capsys, tiny_blender_scene):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"method: ngp\ndata: {{path: {tmp_path / 'nowhere'}}}\noutput_dir: {tmp_path}\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "does not exist" in err and "Traceback" not in err
    assert main(["train", str(cfg), "trainer.stepz=3"]) == 2
    assert "trainer.stepz" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "no_run")]) == 2
    assert "cannot load run" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "no_run"), "--out", str(tmp_path / "x.gif")]) == 2


def test_eval_and_render_a_chosen_checkpoint(tmp_path, capsys, tiny_blender_scene):
    """``--checkpoint STEP|PATH``: that step's weights, its own eval folder (the latest's stays), one-line errors."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"method: ngp\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: r\n")
    assert main(["train", str(cfg), "trainer.steps=20", "trainer.checkpoint_every=10", *TINY]) == 0
    run = tmp_path / "r"
    assert main(["eval", str(run), "--max-images", "1"]) == 0
    assert main(["eval", str(run), "--max-images", "1", "--checkpoint", "10"]) == 0
    latest = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    early = json.loads((run / "eval" / "test_step0000010" / "metrics.json").read_text())
    assert (latest["step"], early["step"]) == (20, 10)
    assert early["mean"]["psnr"] != latest["mean"]["psnr"]  # other weights
    by_path = tmp_path / "by_path"
    ckpt = run / "checkpoints" / "step_0000010.pt"
    assert main(["eval", str(run), "--max-images", "1", "--checkpoint", str(ckpt), "--out", str(by_path)]) == 0
    assert json.loads((by_path / "metrics.json").read_text())["mean"] == early["mean"]
    frames = tmp_path / "frames"
    assert main(["render", str(run), "--checkpoint", "10", "--path", "test", "--out", str(frames)]) == 0
    assert sorted(frames.glob("*.png"))
    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "15"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint of step 15" in err and "steps 10, 20" in err and "Traceback" not in err
    assert main(["render", str(run), "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x")]) == 2
    assert "none.pt" in capsys.readouterr().err
