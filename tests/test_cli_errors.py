"""Bad flags and bad situations on the command line: one line naming the thing, exit status 2, no traceback.

Issue 23, items 7 and 12: out-of-range numbers (parser and config), ``--resume`` without a run, a checkpoint that
does not fit the configured model, an unwritable ``--out``, a failed checkpoint write, a viewer port out of
range (which used to hang forever), a checkpoint that would run code, a bad ``--device``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from test_cli import TINY

from neural3d.cli.main import main
from neural3d.config import ConfigError, build_config


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and all(n in err for n in needles), err
    return err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_blender_scene):
    from _tiny_run import tiny_trained_run

    return tiny_trained_run(tmp_path_factory, tiny_blender_scene)


def copy_of(run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the shared run (``tmp_path/run``) and a config that trains into it."""
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    cfg = tmp_path / "cfg.yaml"
    scene = (run.parent / "cfg.yaml").read_text().split("path: ")[1].split("}")[0]
    cfg.write_text(f"method: ngp\ndata: {{path: {scene}}}\noutput_dir: {tmp_path}\nexperiment: run\n")
    return dst, cfg


# ------------------------------------------------------------------------------------------ parser
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["render", "RUN", "--out", "x.mp4", "--frames", "0"], "--frames: must be >= 1, got 0"),
        (["render", "RUN", "--out", "x.mp4", "--frames", "-4"], "--frames: must be >= 1, got -4"),
        (["render", "RUN", "--out", "x.mp4", "--scale", "0"], "--scale: must be > 0, got 0"),
        (["render", "RUN", "--out", "x.mp4", "--fps", "0"], "--fps: must be >= 1"),
        (["eval", "RUN", "--max-images", "-1"], "--max-images: must be >= 1"),
        (["view", "RUN", "--port", "-1"], "--port: must be in [0, 65535], got -1"),
        (["view", "RUN", "--port", "70000"], "--port: must be in [0, 65535], got 70000"),
        (["view", "RUN", "--max-res", "0"], "--max-res: must be >= 1"),
        (["data", "synth", "--out", "s", "--res", "0"], "--res: must be >= 1"),
        (["gnt", "render", "RUN", "SCENE", "--out", "x.mp4", "--frames", "0"], "--frames: must be >= 1"),
        (["export", "RUN", "mesh", "--resolution", "0"], "--resolution: must be >= 1"),
        (["train", "c.yaml", "--nproc", "0"], "--nproc: must be >= 1"),
    ],
)
def test_out_of_range_flags_are_one_parser_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = one_line_error(capsys, needle)
    assert err.startswith("neural3d") and "--help" in err


def test_view_port_out_of_range_exits_from_the_entry_point(tmp_path):
    """``neural3d view --port 70000`` used to wait forever for a viser server that never started."""
    proc = subprocess.run(
        [sys.executable, "-m", "neural3d", "view", str(tmp_path), "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--port" in proc.stderr and "Traceback" not in proc.stderr


def test_viewer_server_refuses_what_it_cannot_listen_on():
    pytest.importorskip("viser", reason="viser not installed (pip install 'neural3d[viewer]')")
    from neural3d.viewer.server import ViewerError, check_listen_address

    for host, port, needle in (("127.0.0.1", 70000, "0-65535"), ("127.0.0.1", -1, "0-65535")):
        with pytest.raises(ViewerError, match=needle):
            check_listen_address(host, port)
    with pytest.raises(ViewerError, match="cannot listen on 203.0.113.7:0"):  # TEST-NET-3: not this machine
        check_listen_address("203.0.113.7", 0)
    check_listen_address("127.0.0.1", 0)  # any free port is fine


# ------------------------------------------------------------------------------------------ config ranges
@pytest.mark.parametrize(
    "override, needle",
    [
        ("trainer.steps=0", "'trainer.steps' must be >= 1, got 0"),
        ("trainer.steps=-5", "'trainer.steps' must be >= 1, got -5"),
        ("trainer.batch_size=0", "'trainer.batch_size' must be >= 1"),
        ("trainer.log_every=0", "'trainer.log_every' must be >= 1"),
        ("trainer.checkpoint_every=-1", "'trainer.checkpoint_every' must be >= 0"),
        ("render.scale=0", "'render.scale' must be > 0"),
        ("render.n_frames=0", "'render.n_frames' must be >= 1"),
        ("viewer.port=70000", "'viewer.port' must be in [0, 65535]"),
        ("data.factor=0", "'data.factor' must be >= 1"),
        ("augment.pgd_steps=-1", "'augment.pgd_steps' must be >= 0"),
    ],
)
def test_counts_out_of_range_are_rejected_when_the_config_is_built(override, needle):
    with pytest.raises(ConfigError) as exc:
        build_config({}, [override])
    assert needle in str(exc.value) and str(exc.value).startswith("overrides:")


def test_other_training_configs_check_their_counts():
    from neural3d.apps.point_classification.config import build_pc_config
    from neural3d.config import build
    from neural3d.methods.nid.config import NIDTrainConfig
    from neural3d.methods.nid.family import NIDFamilyConfig

    with pytest.raises(ConfigError, match="'steps' must be >= 1, got 0"):
        build(NIDTrainConfig, None, ["steps=0"])
    with pytest.raises(ConfigError, match="'rays_per_scene' must be >= 1"):
        build(NIDFamilyConfig, None, ["rays_per_scene=0"])
    with pytest.raises(ConfigError, match="'batch_size' must be >= 1"):
        build_pc_config({}, ["batch_size=0"])


def test_train_with_zero_steps_writes_nothing(tmp_path, capsys, tiny_blender_scene):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"method: ngp\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: z\n")
    assert main(["train", str(cfg), "trainer.steps=0"]) == 2
    one_line_error(capsys, "trainer.steps", ">= 1")
    assert not (tmp_path / "z").exists()


# ------------------------------------------------------------------------------------------ runs
def test_resume_without_a_run_is_an_error_not_a_fresh_run(tmp_path, capsys, tiny_blender_scene):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"method: ngp\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: typo\n")
    assert main(["train", str(cfg), "trainer.steps=2", *TINY, "--resume"]) == 2
    one_line_error(capsys, "--resume", str(tmp_path / "typo"), "does not exist")
    assert not (tmp_path / "typo").exists()
    (tmp_path / "typo").mkdir()  # a folder without checkpoints is no run either
    assert main(["train", str(cfg), "trainer.steps=2", *TINY, "--resume"]) == 2
    one_line_error(capsys, "holds no checkpoints")


def test_resume_without_a_run_other_training_commands(tmp_path, capsys):
    nid = tmp_path / "nid.yaml"
    nid.write_text(f"output_dir: {tmp_path / 'nid'}\n")
    from neural3d.cli.run_flags import NoRunToResumeError, check_resumable

    with pytest.raises(NoRunToResumeError, match="no run to continue"):
        check_resumable(tmp_path / "nid", True)
    check_resumable(tmp_path / "nid", False)  # without --resume: a new run
    assert main(["nid", "train-dict", str(nid), "--resume"]) == 2
    one_line_error(capsys, "--resume", "nid")
    assert main(["pointcloud", "train", str(nid), f"output_dir={tmp_path}", "--resume"]) == 2
    one_line_error(capsys, "--resume", "pointcloud")


def test_existing_run_without_flags_is_one_line(trained_run, tmp_path, capsys):
    from test_end_to_end import TINY_NGP

    run, cfg = copy_of(trained_run, tmp_path)
    assert main(["train", str(cfg), *TINY_NGP]) == 2
    one_line_error(capsys, str(run), "--resume", "--overwrite")


def test_resume_with_a_changed_model_shape_names_the_parameter_and_both_shapes(trained_run, tmp_path, capsys):
    from test_end_to_end import TINY_NGP

    run, cfg = copy_of(trained_run, tmp_path)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    tiny = [o for o in TINY_NGP if not o.startswith("model.log2_hashmap_size")]
    assert main(["train", str(cfg), "trainer.steps=60", *tiny, "model.log2_hashmap_size=11", "--resume"]) == 2
    err = one_line_error(capsys, "checkpoint does not fit the model", "has shape [", "in the checkpoint but [")
    assert "size mismatch" not in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing lost


def test_state_dict_mismatch_message_of_torch_errors():
    from neural3d.cli.errors import state_dict_mismatch

    small, big = torch.nn.Linear(2, 3), torch.nn.Linear(2, 4)
    with pytest.raises(RuntimeError) as exc:
        big.load_state_dict(small.state_dict())
    msg = state_dict_mismatch(exc.value)
    assert "'weight' has shape [3, 2] in the checkpoint but [4, 2] in the model (and 1 more parameter)" in msg
    with pytest.raises(RuntimeError) as exc:
        torch.nn.Sequential(small, torch.nn.ReLU(), big).load_state_dict({})
    assert "missing keys" in state_dict_mismatch(exc.value) and '"0.weight"' in state_dict_mismatch(exc.value)
    assert state_dict_mismatch(RuntimeError("CUDA out of memory")) is None  # not ours: a traceback


# ------------------------------------------------------------------------------------------ files
def test_unwritable_out_fails_before_rendering(trained_run, tmp_path, capsys):
    out = "/proc/neural3d-no-such-dir/video.mp4"  # /proc refuses new files, even to root
    assert main(["render", str(trained_run), "--out", out, "--frames", "2"]) == 2
    one_line_error(capsys, out, "cannot write in /proc")
    assert main(["eval", str(trained_run), "--out", "/proc/neural3d-no-such-dir"]) == 2
    one_line_error(capsys, "/proc/neural3d-no-such-dir")
    assert main(["export", str(trained_run), "pointcloud", "--out", "/proc/neural3d-no-such-dir/p.ply"]) == 2
    one_line_error(capsys, "/proc/neural3d-no-such-dir/p.ply", "cannot write in /proc")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["render", str(trained_run), "--out", str(blocker / "frames"), "--frames", "2"]) == 2
    one_line_error(capsys, "is a file, not a folder")


def test_bad_device_is_one_line(trained_run, tmp_path, capsys):
    assert main(["render", str(trained_run), "--out", str(tmp_path / "f"), "--device", "bogus"]) == 2
    one_line_error(capsys, "device 'bogus'")


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch, tiny_blender_scene):
    """Disk full at the second checkpoint (torch's zip writer reports it as this RuntimeError)."""
    import neural3d.training.run_dir as run_dir

    real_save, calls = torch.save, []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(run_dir.torch, "save", failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: types.SimpleNamespace(total=10, used=10, free=0))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"method: ngp\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: r\n")
    argv = ["train", str(cfg), "trainer.steps=4", "trainer.checkpoint_every=2", *TINY]
    assert main(argv) == 2
    one_line_error(capsys, "step_0000004.pt", "No space left on device", "unchanged")
    ckpts = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_0000002.pt"]  # no partial file left
    monkeypatch.setattr(run_dir.torch, "save", real_save)
    assert run_dir.load_checkpoint(ckpts / "step_0000002.pt")["step"] == 2


def test_atomic_save_under_a_real_file_size_limit(tmp_path):
    """RLIMIT_FSIZE makes the write fail for real; the old file survives and the error names the file."""
    script = textwrap.dedent(
        f"""
        import resource, signal, torch
        from neural3d.training.run_dir import atomic_save
        path = {str(tmp_path / "ckpt.pt")!r}
        atomic_save({{"a": torch.ones(10)}}, path)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        try:
            atomic_save({{"a": torch.zeros(100_000)}}, path)
        except OSError as e:
            print("ERR", e.filename, e.strerror)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"ERR {tmp_path / 'ckpt.pt'}" in proc.stdout and "files already there are unchanged" in proc.stdout
    assert torch.equal(torch.load(tmp_path / "ckpt.pt", weights_only=True)["a"], torch.ones(10))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran",))


def test_pickled_code_in_a_checkpoint_is_refused_in_neural3d_words(tmp_path):
    from neural3d.training.run_dir import load_checkpoint

    path = tmp_path / "step_0000001.pt"
    torch.save({"step": 1, "payload": _RunsCode()}, path)
    with pytest.raises(ValueError) as exc:
        load_checkpoint(path)
    msg = str(exc.value)
    assert "refuses to run code from checkpoint files" in msg and str(path) in msg
    assert "weights_only=False" not in msg and "weights_only` set to `False`" not in msg


def test_bad_render_outputs_fail_before_the_model_is_loaded(tmp_path, capsys):
    assert main(["render", str(tmp_path / "no_run"), "--out", str(tmp_path / "f"), "--outputs", "rgb,bogus"]) == 2
    one_line_error(capsys, "--outputs", "'bogus'")  # not "cannot load run": nothing was loaded


@pytest.mark.parametrize("command", ["gnt", "lvsm"])
def test_official_checkpoint_imports_refuse_pickled_code(command, tmp_path, capsys, tiny_blender_scene):
    path = tmp_path / "official.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": _RunsCode()}, path)
    argv = [command, "import", str(path), "--data", str(tiny_blender_scene), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = one_line_error(capsys, str(path), "refuses to run code from checkpoint files")
    assert "weights_only=False" not in err and "this ran" not in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_path_cameras_refuse_a_non_positive_scale(tiny_blender_scene):
    from neural3d.data import load_scene
    from neural3d.media.paths import path_cameras

    scene = load_scene(tiny_blender_scene)
    for scale in (0.0, -1.0):
        with pytest.raises(ValueError, match="render scale must be > 0"):
            path_cameras(scene, "orbit", n_frames=2, scale=scale)
    assert path_cameras(scene, "orbit", n_frames=2, scale=0.5).height[0] == 12  # 24 px images at half scale
