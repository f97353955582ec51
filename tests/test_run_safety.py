"""Runs are safe (issue 23, items 1-6), on the shared loop with a toy task and on a run directory alone.

Signals are real (``os.kill`` of this process from a step hook); locks are held by a real second process.
The command-line versions (real trainers, a real signal from outside) are in ``test_run_safety_cli.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_training_loop import ToyTask, _loop

from neural3d.training.callbacks import Checkpointing, MetricsLog, StepHook
from neural3d.training.loop import Loop, LoopConfig
from neural3d.training.previous_run import ASIDE
from neural3d.training.run_dir import RunDir
from neural3d.training.run_lock import RunLockedError
from neural3d.training.stops import NonFiniteError, TrainingInterrupted


def _weights(loop) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in loop.task.module.state_dict().items()}


def _files(run: Path) -> dict[str, bytes]:
    """Every file of a run (relative path -> bytes), the lock file aside."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


class NaNAt(ToyTask):
    """The toy task whose targets are NaN at the given (0-based) steps."""

    def __init__(self, bad_steps: tuple[int, ...]) -> None:
        super().__init__(seed=0)
        self.bad_steps = set(bad_steps)

    def loss_and_metrics(self, batch, step: int):
        x, y = batch
        if step in self.bad_steps:
            y = torch.full_like(y, float("nan"))
        return super().loss_and_metrics((x, y), step)


# ---------------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_the_current_step_and_resume_is_exact(tmp_path, signum):
    straight, hist_a = _loop(tmp_path / "a", steps=8, checkpoint_every=4, log_every=1)
    straight.run()
    loop, _ = _loop(tmp_path / "b", steps=8, checkpoint_every=4, log_every=1)
    loop.callbacks.append(StepHook(lambda step: step == 3 and os.kill(os.getpid(), signum)))
    with pytest.raises(TrainingInterrupted) as info:
        loop.run()
    stop = info.value
    assert stop.step == 3 and stop.exit_code == 128 + signum and loop.step == 3
    assert stop.checkpoint == tmp_path / "b" / "checkpoints" / "step_0000003.pt" and stop.checkpoint.is_file()
    assert "\n" not in str(stop) and "--resume" in str(stop) and signal.Signals(signum).name in str(stop)
    assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL)  # handlers restored
    torch.manual_seed(99)  # a fresh process
    resumed, hist_c = _loop(tmp_path / "b", steps=8, checkpoint_every=4, log_every=1, task=ToyTask(seed=0))
    assert resumed.resume().name == "step_0000003.pt"
    resumed.run()
    a, c = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert [r["loss"] for r in hist_a.rows["train"] if r["step"] > 3] == [r["loss"] for r in hist_c.rows["train"]]


def test_a_second_ctrl_c_interrupts_at_once(tmp_path):
    loop, _ = _loop(tmp_path, steps=8)

    def twice(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    loop.callbacks.append(StepHook(twice))
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert loop.step == 2 and signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------------------------------------- non-finite
def test_a_nonfinite_loss_stops_at_once_and_keeps_the_last_finite_checkpoint(tmp_path):
    loop, _ = _loop(tmp_path, steps=10, checkpoint_every=2, task=NaNAt((4,)))  # the 5th step
    before = {}
    loop.callbacks.append(StepHook(lambda step: before.update(_weights(loop)) if step == 4 else None))
    with pytest.raises(NonFiniteError) as info:
        loop.run()
    msg = str(info.value)
    assert "non-finite loss (nan) at step 5" in msg and str(tmp_path / "checkpoints" / "step_0000004.pt") in msg
    assert info.value.exit_code == 3 and "\n" not in msg
    assert [p.name for p in RunDir(tmp_path).checkpoints()] == ["step_0000002.pt", "step_0000004.pt"]
    assert all(torch.equal(before[k], v) for k, v in _weights(loop).items())  # no optimizer step taken
    saved = torch.load(tmp_path / "checkpoints" / "step_0000004.pt", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in saved.values())


def test_skip_drops_the_bad_batches_and_carries_on(tmp_path):
    loop, history = _loop(tmp_path, steps=8, log_every=1, nonfinite="skip", task=NaNAt((2, 5)))
    seen = []
    loop.callbacks.append(StepHook(lambda step: seen.append(_weights(loop))))
    with pytest.warns(UserWarning, match=r"non-finite loss \(nan\) at step [36]: batch skipped \([12] so far\)"):
        loop.run()
    assert loop.step == 8 and loop.skipped == 2
    for skipped in (3, 6):  # the weights after a skipped step are those before it
        assert all(torch.equal(seen[skipped - 2][k], seen[skipped - 1][k]) for k in seen[0])
    assert all(torch.isfinite(v).all() for v in seen[-1].values())
    assert history.rows["train"][-1]["nonfinite_skipped"] == 2.0
    state = torch.load(RunDir(tmp_path).latest_checkpoint(), weights_only=True)
    assert state["nonfinite_skipped"] == 2


def test_nonfinite_parameters_are_never_saved(tmp_path):
    loop, _ = _loop(tmp_path, steps=6, checkpoint_every=2)
    loop.callbacks.insert(0, StepHook(lambda step: step == 4 and loop.task.module.bias.data.fill_(float("inf"))))
    with pytest.raises(NonFiniteError, match=r"non-finite parameters at step 4 \(bias\).*step_0000002.pt \(kept\)"):
        loop.run()
    assert [p.name for p in RunDir(tmp_path).checkpoints()] == ["step_0000002.pt"]


def test_loop_config_checks_the_nonfinite_mode():
    from neural3d.config import ConfigError, build_config
    from neural3d.training.scene_task import scene_loop_config

    with pytest.raises(ValueError, match="nonfinite must be one of stop, skip"):
        LoopConfig(steps=1, nonfinite="ignore")
    with pytest.raises(ConfigError, match=r"'trainer\.nonfinite' must be one of \['stop', 'skip'\], got 'ignore'"):
        build_config({"method": "ngp"}, ["trainer.nonfinite=ignore"])
    cfg, _ = build_config({"method": "ngp"}, ["trainer.nonfinite=skip"])
    assert scene_loop_config(cfg).nonfinite == "skip"


# ---------------------------------------------------------------------------------------------- checkpoints
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_the_newest_readable_checkpoint_is_used_with_a_warning_naming_both(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3):
        run.save_checkpoint(step, {"step": step})
    _truncate(run.checkpoints()[-1])
    with pytest.warns(UserWarning, match=r"step_0000003.pt \(.*\) unreadable; using step_0000002.pt"):
        path, state = run.load_checkpoint()
    assert path.name == "step_0000002.pt" and state["step"] == 2
    for p in run.checkpoints():
        p.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"no readable checkpoint: step_0000003.pt .*step_0000002.*step_0000001") as e:
        run.load_checkpoint()
    assert "\n" not in str(e.value)


def test_resume_skips_a_truncated_latest_checkpoint(tmp_path):
    loop, _ = _loop(tmp_path, steps=6, checkpoint_every=2)
    loop.run()
    _truncate(tmp_path / "checkpoints" / "step_0000006.pt")
    fresh, _ = _loop(tmp_path, steps=6, checkpoint_every=2, task=ToyTask(seed=0))
    with pytest.warns(UserWarning, match=r"step_0000006.pt \(.*\) unreadable; using step_0000004.pt"):
        assert fresh.resume().name == "step_0000004.pt" and fresh.step == 4
    fresh.run()  # rewrites step 6 whole
    assert torch.load(tmp_path / "checkpoints" / "step_0000006.pt", weights_only=True)["step"] == 6


def test_stray_temporary_files_are_removed_and_nothing_else(tmp_path):
    run = RunDir(tmp_path)
    run.save_checkpoint(1, {"step": 1})
    ours = [run.checkpoints_dir / ".step_0000002.pt.k3x_9a0z.tmp", tmp_path / ".config.yaml.tmp"]
    theirs = [
        run.checkpoints_dir / ".step_0000002.pt.notes.tmp.bak",
        run.checkpoints_dir / "step_0000002.pt.tmp",
        run.checkpoints_dir / ".step_0000002.pt.TOOLONGNAME.tmp",
        tmp_path / "notes.tmp",
    ]
    for p in ours + theirs:
        p.write_bytes(b"x" * 10)
    run.prepare(resume=True)
    run.release()
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


# ---------------------------------------------------------------------------------------------- overwrite
def _loop_on(run: RunDir, steps: int, task=None) -> Loop:
    """A toy loop writing to an already prepared ``run`` (checkpoint at the end only)."""
    cfg = LoopConfig(steps=steps, log_every=1, progress=False)
    return Loop(task or ToyTask(), cfg, run_dir=run, callbacks=[MetricsLog(run, tensorboard=False), Checkpointing(0)])


def _old_run(path: Path) -> dict[str, bytes]:
    loop, _ = _loop(path, steps=4, checkpoint_every=2)
    loop.run()
    RunDir(path).write_config("old: 1\n")
    return _files(path)


def test_overwrite_moves_the_old_run_aside_and_deletes_it_at_the_first_checkpoint(tmp_path):
    old = _old_run(tmp_path)
    run = RunDir(tmp_path)
    run.prepare(overwrite=True)
    assert _files(tmp_path) == {**old, ".lock": (tmp_path / ".lock").read_bytes()}  # nothing moved yet
    loop = _loop_on(run, steps=3)  # MetricsLog starts the run: the old one moves aside
    assert (tmp_path / ASIDE / "checkpoints" / "step_0000004.pt").read_bytes() == old["checkpoints/step_0000004.pt"]
    loop.run()
    assert sorted(_files(tmp_path)) == ["checkpoints/step_0000003.pt", "logs/metrics.csv"]


def test_a_new_run_failing_before_its_first_checkpoint_restores_the_old_one(tmp_path):
    old = _old_run(tmp_path)
    run = RunDir(tmp_path)
    run.prepare(overwrite=True)
    loop = _loop_on(run, steps=5, task=NaNAt((1,)))
    with pytest.raises(NonFiniteError), pytest.warns(UserWarning, match="previous run is restored"):
        loop.run()
    assert _files(tmp_path) == old


def test_an_overwrite_killed_midway_is_finished_by_the_next_trainer(tmp_path):
    old = _old_run(tmp_path)
    aside = tmp_path / ASIDE
    aside.mkdir()
    os.replace(tmp_path / "checkpoints", aside / "checkpoints")  # killed after the first rename
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".step_0000001.pt.abcdefgh.tmp").write_bytes(b"half")  # and mid-write
    run = RunDir(tmp_path)
    with pytest.warns(UserWarning, match="earlier --overwrite was interrupted.*restored"):
        run.prepare(resume=True)
    run.release()
    assert _files(tmp_path) == old


# ---------------------------------------------------------------------------------------------- lock
_HOLDER = """
import sys, time
from neural3d.training.run_lock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _hold_lock(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_in_use_is_refused_naming_its_holder_and_a_dead_holder_is_taken_over(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        with pytest.raises(RunLockedError) as info:
            RunDir(tmp_path).prepare()
        msg = str(info.value)
        assert f"pid {holder.pid}" in msg and "on host" in msg and "since 20" in msg and "-c" in msg
    finally:
        holder.kill()  # SIGKILL: the holder cannot clean up; the kernel drops its flock
        holder.wait(timeout=30)
    run = RunDir(tmp_path)
    with pytest.warns(UserWarning, match=rf"stale lock of pid {holder.pid} .*no longer running"):
        run.prepare()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    run.release()
    assert not (tmp_path / ".lock").exists()
    run.prepare()  # released cleanly: no warning, nothing stale
    run.release()


def test_the_lock_is_released_when_training_ends_and_when_setup_fails(tmp_path):
    run = RunDir(tmp_path)
    run.prepare()
    _loop_on(run, steps=2).run()
    assert not (tmp_path / ".lock").exists()
    run.prepare(resume=True)
    with pytest.raises(RuntimeError), run.releasing_on_error():
        raise RuntimeError("setup failed")
    assert not (tmp_path / ".lock").exists()
    start = time.monotonic()
    RunDir(tmp_path).prepare(resume=True)  # free again
    assert time.monotonic() - start < 30


def test_a_file_system_without_locks_trains_unlocked_with_a_warning(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    run = RunDir(tmp_path)
    with pytest.warns(UserWarning, match="does not support locks .*No locks available.*not be detected"):
        run.prepare()
    run.release()
    assert not (tmp_path / ".lock").exists()
