"""Callbacks of :class:`~neural3d.training.loop.Loop`: metrics log, checkpoints, evaluation, progress, hooks.

A callback implements any of ``on_train_begin(loop)``, ``on_step_end(loop, step)``, ``on_log(loop, step,
values, prefix)``, ``on_resume(loop, path)`` and ``on_train_end(loop)``; the loop calls them in list order.
``on_step_end`` runs after every step (``step`` counts the steps done); ``on_log`` receives rows of floats
(``prefix`` ``train`` at log steps, ``eval`` after evaluations). Only :func:`is_main_process` writes files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from neural3d.progress import ProgressBar
from neural3d.training.logger import MetricsLogger
from neural3d.training.run_dir import RunDir, is_main_process


class MetricsLog:
    """``logs/metrics.csv`` (and TensorBoard events when installed): one logger for every task.

    On resume the rows after the checkpoint's step are dropped.
    """

    def __init__(self, run_dir: RunDir, *, tensorboard: bool = True) -> None:
        if is_main_process():
            run_dir.start()  # --overwrite: the old run's logs move aside before the new log opens
        self.logger = MetricsLogger(run_dir.path, tensorboard=tensorboard) if is_main_process() else None

    def on_resume(self, loop, path: Path) -> None:
        if self.logger is not None:
            self.logger.truncate(loop.step)

    def on_log(self, loop, step: int, values: dict[str, float], prefix: str) -> None:
        if self.logger is not None:
            self.logger.log(step, values, prefix=prefix)

    def on_train_end(self, loop) -> None:
        if self.logger is not None:
            self.logger.close()


class History:
    """Keeps the logged rows in memory: ``rows[prefix]`` is a list of ``{"step", **values}``."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, float]]] = {}

    def on_log(self, loop, step: int, values: dict[str, float], prefix: str) -> None:
        self.rows.setdefault(prefix, []).append({"step": step, **values})


class PeriodicEval:
    """``task.evaluate(step, final=False)`` every ``every`` steps (not at the last step); logged as ``eval``."""

    def __init__(self, every: int) -> None:
        self.every = int(every)

    def on_step_end(self, loop, step: int) -> None:
        if self.every and step % self.every == 0 and step < loop.config.steps:
            evaluate = getattr(loop, "evaluate", loop.task.evaluate)  # Loop.evaluate: rank 0 only under torchrun
            res = evaluate(step, final=False)
            if res:
                loop.log(step, {**res, "elapsed_s": loop.elapsed}, "eval")


class Checkpointing:
    """Atomic checkpoint every ``every`` steps (the loop also saves at the end)."""

    def __init__(self, every: int) -> None:
        self.every = int(every)

    def on_step_end(self, loop, step: int) -> None:
        if self.every and step % self.every == 0:
            loop.save()


class StepHook:
    """Calls ``fn(step)`` after every step (used by :class:`~neural3d.training.trainer.Trainer.on_step`)."""

    def __init__(self, fn: Callable[[int], None]) -> None:
        self.fn = fn

    def on_step_end(self, loop, step: int) -> None:
        self.fn(step)


class Progress:
    """Training progress (:class:`neural3d.progress.ProgressBar`): a bar with rate, time left and the last loss /
    PSNR / throughput on a terminal, plain periodic lines otherwise; with ``log``, also one metrics line per
    train log through ``log`` (written above the bar).

    Args:
        enabled: False: silent.
        log: a function taking a line (e.g. ``print``); None: the bar alone.
        name: name of the bar and prefix of the lines (``[name] step 10/100 loss ...``).
    """

    def __init__(self, *, enabled: bool = True, log: Callable[[str], None] | None = None, name: str = "train") -> None:
        self.enabled, self.log, self.name = enabled and is_main_process(), log, name
        self._bar: ProgressBar | None = None

    def on_train_begin(self, loop) -> None:
        if self.enabled:
            self._bar = ProgressBar(loop.config.steps, self.name, unit="step", initial=loop.step)

    def on_step_end(self, loop, step: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_log(self, loop, step: int, values: dict[str, float], prefix: str) -> None:
        if not self.enabled or prefix != "train":
            return
        if self._bar is not None:
            post = {"loss": f"{values['loss']:.4f}"}
            if "psnr" in values:
                post["psnr"] = f"{values['psnr']:.2f}"
            key = loop.task.throughput_key
            if key and key in values:
                post[key.removesuffix("_per_s") + "/s"] = f"{values[key]:,.0f}"
            self._bar.set_postfix(**post)
        if self.log is not None:
            shown = "  ".join(f"{k} {v:.5g}" for k, v in values.items() if k not in ("lr", "elapsed_s"))
            line = f"[{self.name}] step {step}/{loop.config.steps}  {shown}  ({values['elapsed_s']:.1f} s)"
            if self._bar is not None and self._bar.mode == "bar":
                self._bar.clear()  # the line goes to log's stream (stdout): clear the bar, redraw after
                self.log(line)
                self._bar.refresh()
            else:
                self.log(line)

    def on_train_end(self, loop) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def standard_callbacks(
    run_dir: RunDir | None,
    *,
    eval_every: int,
    checkpoint_every: int,
    progress: bool,
    log: Callable[[str], None] | None = None,
    name: str = "train",
    tensorboard: bool = True,
) -> list[Any]:
    """Metrics log, progress, periodic evaluation and checkpoints, in the order every command uses."""
    cbs: list[Any] = []
    if run_dir is not None:
        cbs.append(MetricsLog(run_dir, tensorboard=tensorboard))
    cbs += [Progress(enabled=progress, log=log, name=name), PeriodicEval(eval_every)]
    if run_dir is not None:
        cbs.append(Checkpointing(checkpoint_every))
    return cbs
