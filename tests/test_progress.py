"""The shared progress reporter: periodic whole lines when the stream is not a terminal, a bar redrawn in place
(rate, time left) on a terminal -- tested on a real pseudo-terminal -- and the training loop's use of it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

import neural3d.progress
from neural3d.progress import ProgressBar, format_duration, format_rate, progress, resolve_mode

PROGRESS_FILE = neural3d.progress.__file__


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _lines_bar(total, **kw):
    stream, clock = io.StringIO(), FakeClock()
    return ProgressBar(total, "job", unit="step", mode="lines", stream=stream, clock=clock, **kw), stream, clock


def test_formats():
    assert format_duration(0) == "0:00" and format_duration(61.4) == "1:01" and format_duration(3725) == "1:02:05"
    assert format_duration(float("inf")) == "?" and format_duration(float("nan")) == "?"
    assert format_rate(11.34, "step") == "11.3 step/s" and format_rate(0.5, "frame") == "2.0 s/frame"
    assert format_rate(0.0, "step") == "? step/s"


def test_lines_mode_writes_a_line_every_ten_percent_and_no_carriage_return():
    bar, stream, clock = _lines_bar(1000)
    for _ in range(1000):
        clock.t += 0.01  # 100 steps/s
        bar.update()
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10  # 10 %, 20 %, ..., 90 %, and the closing line at 100 %
    assert lines[0].startswith("[job] 100/1000 (10%)") and "100.0 step/s" in lines[0]
    assert "0:01 elapsed, 0:09 left" in lines[0]  # 1 s for 100 steps, 900 to go at 100/s
    assert lines[-1].startswith("[job] 1000/1000 (100%)") and "left" not in lines[-1]


def test_lines_mode_also_writes_after_every_s_seconds():
    bar, stream, clock = _lines_bar(1000, every_s=5.0)
    for _ in range(30):  # 3 % in 30 s: no 10 % boundary, but 5 s intervals
        clock.t += 1.0
        bar.update()
    assert len(stream.getvalue().splitlines()) == 6
    bar.set_postfix(loss=0.012345, psnr="27.10")
    clock.t += 5.0
    bar.update()
    assert stream.getvalue().splitlines()[-1].endswith("loss 0.01235  psnr 27.10")


def test_resumed_bar_counts_rate_from_the_resume():
    bar, stream, clock = _lines_bar(100, initial=50)
    clock.t += 10.0
    bar.update(10)  # 10 steps in 10 s since the resume, 40 left
    assert bar.rate == pytest.approx(1.0) and bar.remaining_s == pytest.approx(40.0)
    assert stream.getvalue().startswith("[job] 60/100 (60%)")


def test_bar_mode_redraws_one_line_in_place():
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(200, "render", unit="frame", mode="bar", stream=stream, clock=clock, refresh_s=0.5)
    for _ in range(200):
        clock.t += 0.1
        bar.update()
    bar.write("a message")
    bar.close()
    text = stream.getvalue()
    assert text.count("\n") == 2  # the message and the final newline: everything else is redrawn in place
    assert text.count("\r") >= 35  # a redraw every ~0.5 s of the 20 s
    last = text.rstrip("\n").split("\r")[-1]
    assert "100%" in last and "200/200" in last and "10.0 frame/s" in last


def test_off_and_disabled_write_nothing():
    for kw in ({"mode": "off"}, {"enabled": False}):
        stream = io.StringIO()
        for _ in progress(range(5), desc="x", stream=stream, **kw):
            pass
        assert stream.getvalue() == ""
    with pytest.raises(ValueError, match="progress mode"):
        resolve_mode("fancy", io.StringIO())


def test_environment_overrides_auto(monkeypatch):
    monkeypatch.setenv("NEURAL3D_PROGRESS", "off")
    assert resolve_mode("auto", io.StringIO()) == "off"
    monkeypatch.setenv("NEURAL3D_PROGRESS", "")
    assert resolve_mode("auto", io.StringIO()) == "lines"


# the module alone (standard library only), without importing the neural3d package (torch): a fast child process
_SCRIPT = f"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("progress", {str(PROGRESS_FILE)!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
for _ in mod.progress(range(40), desc="work", unit="step", refresh_s=0.0, every_percent=25):
    time.sleep(0.01)
print("done")
"""


def _run(stdout, stderr, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _SCRIPT], stdout=stdout, stderr=stderr, env=env)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_auto_mode_on_a_real_terminal_and_in_a_pipe():
    env = {k: v for k, v in os.environ.items() if k != "NEURAL3D_PROGRESS"}
    master, slave = os.openpty()
    try:
        proc = _run(slave, slave, env)
        os.close(slave)
        out = b""
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        proc.wait(60)
    finally:
        os.close(master)
    text = out.decode("utf-8", "replace")
    assert text.count("\r") >= 10 and "100%" in text and "40/40" in text and "step/s" in text
    piped = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    assert "\r" not in piped.stderr
    lines = piped.stderr.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("[work] 40/40 (100%)"), lines  # 25/50/75 % + the end
    assert piped.stdout == "done\n"


def test_training_loop_reports_progress_as_lines_when_not_a_terminal(tmp_path, capsys):
    from test_training_loop import ToyTask

    from neural3d.training.callbacks import Progress
    from neural3d.training.loop import Loop, LoopConfig

    loop = Loop(ToyTask(), LoopConfig(steps=20, log_every=5), callbacks=[Progress(name="toy")])
    loop.run()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("[toy]")]
    assert lines[-1].startswith("[toy] 20/20 (100%)") and "step/s" in lines[-1] and "loss" in lines[-1]
    assert len(lines) == 10  # every 10 %: 2, 4, ..., 18 steps, and the end
