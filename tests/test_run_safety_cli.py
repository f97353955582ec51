"""Runs are safe through the command line: real trainers, a real second process, real signals (issue 23, 1-6).

Tiny NGP runs of the resume-rule test (``test_train_commands``): 6 steps, checkpoints at 3 and 6.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_distributed import REPO, TIMEOUT, WORKER, _env
from test_train_commands import _ngp

from neural3d.cli.main import main


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.05)


def _model(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.slow
def test_failed_overwrites_leave_the_old_run_intact(tmp_path, tiny_blender_scene, capsys):
    argv = _ngp(tmp_path, tiny_blender_scene)
    run = tmp_path / "r"
    assert main(argv) == 0
    old = _files(run)
    assert {"checkpoints/step_0000003.pt", "checkpoints/step_0000006.pt", "logs/metrics.csv"} <= set(old)
    broken = shutil.copytree(tiny_blender_scene, tmp_path / "broken")
    next((broken / "train").glob("*.png")).unlink()
    capsys.readouterr()
    assert main([*argv, f"data.path={broken}", "--overwrite"]) == 2  # a missing image: refused before anything moves
    assert main([*argv, "trainer.batch_size=0", "--overwrite"]) == 2
    assert _files(run) == old
    err = capsys.readouterr().err
    assert err.count("neural3d: error:") == 2 and "batch_size" in err
    # the new run starts (the old one moves aside), diverges at step 2 before any checkpoint: the old run comes back
    with pytest.warns(UserWarning, match="previous run is restored"):
        assert main([*argv, "trainer.optim.lr=1e30", "--overwrite"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "non-finite loss (nan) at step 2: training stopped" in err[0]
    assert _files(run) == old and not (run / ".overwritten").exists() and not (run / ".lock").exists()


@pytest.mark.slow
def test_eval_and_render_use_the_newest_readable_checkpoint_and_refuse_nonfinite_weights(
    tmp_path, tiny_blender_scene, capsys
):
    argv = _ngp(tmp_path, tiny_blender_scene)
    run = tmp_path / "r"
    assert main(argv) == 0
    latest = run / "checkpoints" / "step_0000006.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match=r"step_0000006.pt \(.*\) unreadable; using step_0000003.pt"):
        assert main(["eval", str(run), "--device", "cpu", "--max-images", "1"]) == 0
    assert "step 3" in capsys.readouterr().out
    frames = ["render", str(run), "--device", "cpu", "--path", "test", "--outputs", "rgb"]
    with pytest.warns(UserWarning, match="using step_0000003.pt"):
        assert main([*frames, "--out", str(tmp_path / "frames")]) == 0
    state = torch.load(run / "checkpoints" / "step_0000003.pt", weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and "encoding" in k)
    state["model"][name][0] = float("nan")
    torch.save(state, latest)
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    assert main([*frames, "--out", str(tmp_path / "frames2")]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{latest}: 1 of") == 2 and "NaN or infinite" in err and "diverged" in err


@pytest.mark.slow
def test_a_second_trainer_is_refused_and_ctrl_c_checkpoints_for_an_exact_resume(tmp_path, tiny_blender_scene, capsys):
    argv = _ngp(tmp_path, tiny_blender_scene)
    straight = [a.replace("experiment=r", "experiment=straight") for a in argv]
    assert main(straight) == 0
    ready = tmp_path / "ready"
    worker = [sys.executable, str(WORKER), "--hold-rank=0", "--hold-step=2", f"--ready={ready}", "--", *argv[1:]]
    first = subprocess.Popen(worker, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready / "rank0.holding", first)  # trained 2 steps, holds the lock
        capsys.readouterr()
        assert main([*argv, "--resume"]) == 2
        assert main([*argv, "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert err.count(f"is in use: pid {first.pid} on host") == 2 and "dist_worker.py" in err and "since" in err
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=TIMEOUT)
    finally:
        first.kill()
    assert first.returncode == 130, out + err
    run = tmp_path / "r"
    ckpt = run / "checkpoints" / "step_0000002.pt"
    line = f"[neural3d] interrupted by SIGINT at step 2: checkpoint {ckpt}; continue with --resume"
    assert err.strip().splitlines() == [line]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002.pt"]
    assert not (run / ".lock").exists()
    assert main([*argv, "--resume"]) == 0
    a = _model(tmp_path / "straight" / "checkpoints" / "step_0000006.pt")
    b = _model(run / "checkpoints" / "step_0000006.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


_CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
print("child ready", flush=True)
time.sleep(60)
sys.exit(1)
"""


def test_nproc_launcher_ignores_ctrl_c_and_passes_sigterm_on(tmp_path):
    """``neural3d train --nproc N`` waits for torchrun: Ctrl-C is torchrun's to pass on; SIGTERM is forwarded."""
    child = [sys.executable, "-c", _CHILD]
    parent = f"import sys; from neural3d.cli.main import _wait_for_torchrun; sys.exit(_wait_for_torchrun({child!r}))"
    proc = subprocess.Popen([sys.executable, "-c", parent], env=_env(), cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "child ready"
        proc.send_signal(signal.SIGINT)  # to the launcher alone: ignored, it keeps waiting
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143  # the child got it and exited 143, which the launcher returns
    finally:
        proc.kill()
