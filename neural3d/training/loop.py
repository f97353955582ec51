"""The training loop shared by every task: steps, time limit, cadences, pause, autocast, gradient clipping.

One step of :class:`Loop` (``task`` is a :class:`~neural3d.training.task.TrainTask`)::

    task.module.train(); task.step_begin(step); batch = task.next_batch(step)
    with autocast: loss, metrics = task.loss_and_metrics(batch, step)
    optimizer.zero_grad(set_to_none=True); loss.backward(); clip_grad_norm_(module, grad_clip)
    optimizer.step(); scheduler.step()
    for name, aux in auxiliary optimizers:               # e.g. a GAN discriminator (none for most tasks)
        with autocast: aux_loss, aux_metrics = task.auxiliary_loss(name, step)   # None: skipped
        aux.zero_grad(set_to_none=True); aux_loss.backward(); aux.step()
    step += 1

Metrics stay on the device until a log step (``step % log_every == 0`` or the last step): the only host
synchronisation of the loop. After each step the callbacks run in order (periodic evaluation, checkpoints,
user hooks such as the live viewer); at the end the loop saves a checkpoint and runs the task's final
evaluation. Checkpoints hold the loop's keys (``step``, ``elapsed``, ``optimizer``, ``scheduler``,
``rng_cpu``, ``rng_cuda``, and ``auxiliary_optimizers`` when the task has some) next to the task's, and
:meth:`Loop.resume` restores all of them, so N steps equal N/2 + resume + N/2 bit for bit.

Under torchrun (a process group of ``W > 1`` ranks, :mod:`neural3d.training.distributed`) the same step
also: runs ``task.step_begin`` on the random stream shared by all ranks and re-seeds the rank's own stream
for the rest of the step, averages the gradients over the ranks after ``backward`` (before clipping),
averages the logged train metrics, agrees on ``max_seconds`` stops, evaluates on rank 0 only and checks at
every checkpoint that the replicas agree. With one process none of that runs.

Safety (every task): after ``backward`` the loss and the gradients are checked for NaN / infinity
(:mod:`neural3d.training.nonfinite`, one host synchronisation per step): ``nonfinite="stop"`` raises
:class:`~neural3d.training.stops.NonFiniteError` before the optimizer step (nothing of the bad state is saved;
parameters are checked again before each checkpoint), ``"skip"`` drops the batch. A SIGINT / SIGTERM
(:mod:`neural3d.training.signals`) ends the run after the step in progress with a checkpoint of that step and
:class:`~neural3d.training.stops.TrainingInterrupted`. Under torchrun both flags are agreed by one small
all-reduce per step, so every rank stops (or skips) at the same step. :meth:`Loop.run` releases the run
directory (its lock, an ``--overwrite`` in progress) when it ends, however it ends.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neural3d.training import distributed as dist
from neural3d.training.nonfinite import NONFINITE_MODES, nonfinite_names, step_flags
from neural3d.training.optim import drop_resized_state
from neural3d.training.run_dir import RunDir, is_main_process
from neural3d.training.signals import StopSignals
from neural3d.training.stops import NonFiniteError, TrainingInterrupted
from neural3d.training.task import TrainTask


@dataclass
class LoopConfig:
    """Cadences and numerics of a training run (built from each command's config section)."""

    steps: int
    """Optimisation steps in total (a resumed run continues up to it)."""
    max_seconds: float = 0.0
    """Stop after this many seconds of training, carried across resumes (0: no limit)."""
    log_every: int = 50
    """Log (and synchronise with the device) every this many steps, and at the last."""
    eval_every: int = 0
    """Periodic ``task.evaluate`` every this many steps, not at the last (0: off)."""
    checkpoint_every: int = 0
    """Save every this many steps (0: only at the end)."""
    grad_clip: float = 0.0
    """Clip the global gradient norm of ``task.module`` to this (0: off)."""
    mixed_precision: str = "off"
    """``off`` | ``auto`` | ``bf16`` | ``fp16`` (autocast on CUDA only; auto = bf16); checked when constructed."""
    progress: bool = True
    """Show a progress bar (or log lines, see :class:`~neural3d.training.callbacks.Progress`)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    seed: int = 0
    """The run seed; under torchrun each rank's random stream of step ``s`` is derived from ``(seed, rank, s)``
    (unused by one process)."""
    nonfinite: str = "stop"
    """A NaN / infinite loss or gradient: ``stop`` (raise :class:`~neural3d.training.stops.NonFiniteError`,
    keep the last finite checkpoint) or ``skip`` (drop the batch, no optimizer step); checked when constructed."""

    def __post_init__(self) -> None:
        # YAML 1.1 reads a bare `off` / `on` as a boolean, which a str config field then holds as "False" / "True"
        self.mixed_precision = {"False": "off", "True": "auto"}.get(str(self.mixed_precision), self.mixed_precision)
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.mixed_precision not in ("off", "auto", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be off, auto, bf16 or fp16, got '{self.mixed_precision}'")
        if self.nonfinite not in NONFINITE_MODES:
            raise ValueError(f"nonfinite must be one of {', '.join(NONFINITE_MODES)}, got '{self.nonfinite}'")


class Loop:
    """Train ``task`` for ``config.steps`` steps, writing to ``run_dir`` (None: nothing is written).

    Attributes:
        step: optimisation steps done. ``elapsed``: training seconds (carried across resumes).
        paused: set by a viewer's pause button; the loop idles until it is cleared.
        last_metrics: the train metrics of the latest log step, as floats.
    """

    def __init__(
        self,
        task: TrainTask,
        config: LoopConfig,
        *,
        run_dir: RunDir | None = None,
        callbacks: Sequence[Any] = (),
    ) -> None:
        self.task, self.config, self.run_dir = task, config, run_dir
        self.callbacks = list(callbacks)
        self.optimizer, self.scheduler = task.configure_optimizers(config.steps)
        configure_aux = getattr(task, "configure_auxiliary_optimizers", None)
        self.aux_optimizers: dict[str, torch.optim.Optimizer] = configure_aux(config.steps) if configure_aux else {}
        self.step, self.elapsed, self.paused = 0, 0.0, False
        self.last_metrics: dict[str, float] = {}
        self._window = (time.perf_counter(), 0)  # throughput window: (start, steps)
        self.rank, self.world_size = dist.rank_and_world()
        self.comm_bytes = 0  # gradient bytes all-reduced by the latest step (data-parallel runs)
        self.skipped = 0  # batches dropped for a non-finite loss or gradient (nonfinite="skip")
        self._signals: StopSignals | None = None  # installed while run() trains
        self._stop_signal = 0  # a SIGINT / SIGTERM to stop at (agreed by the ranks under torchrun)
        self._rng: dist.RankRNG | None = None
        if self.world_size > 1:
            task.set_rank(self.rank, self.world_size)
            dist.broadcast_module_(task.module)  # identical start, whatever each rank's initialisation drew
            self._rng = dist.RankRNG(config.seed, self.rank, task.device)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: the loop's keys and the task's (flat, see the module docstring)."""
        state: dict[str, Any] = {
            "step": self.step,
            "elapsed": self.elapsed,
            **self.task.state_dict(self.step),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "nonfinite_skipped": self.skipped,
        }
        if self.aux_optimizers:
            state["auxiliary_optimizers"] = {k: opt.state_dict() for k, opt in self.aux_optimizers.items()}
        if self.task.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.task.device)
        if self._rng is not None:  # the stream shared by the ranks (the rank streams follow from the step)
            state.update(self._rng.state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; keys missing from older checkpoints (``elapsed``, RNG) are left as they are."""
        self.task.load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for name, opt in self.aux_optimizers.items():
            if name not in state.get("auxiliary_optimizers", {}):
                raise KeyError(f"checkpoint has no state for the auxiliary optimizer '{name}'")
            opt.load_state_dict(state["auxiliary_optimizers"][name])
        if self._rng is not None:
            self._rng.load(state)
        elif "rng_cpu" in state:
            torch.set_rng_state(state["rng_cpu"].cpu())
        if "rng_cuda" in state and self.task.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), self.task.device)
        self.step, self.elapsed = int(state["step"]), float(state.get("elapsed", 0.0))
        self.skipped = int(state.get("nonfinite_skipped", 0))

    def save(self) -> Path | None:
        """Write ``checkpoints/step_XXXXXXX.pt`` of the current step (None without a run directory).

        Parameters holding NaN / infinity are never saved: :class:`NonFiniteError` instead.
        """
        if self.run_dir is None:
            return None
        bad = nonfinite_names(self.task.module)
        if bad:
            raise NonFiniteError(
                f"non-finite parameters at step {self.step} ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
                f"training stopped without saving them; {self._last_checkpoint_text()}"
            )
        if self.world_size > 1:
            differ = dist.replicas_agree(self.task.module)
            if differ:
                raise RuntimeError(f"data-parallel replicas differ between ranks at step {self.step}: {differ[:8]}")
            if not is_main_process():
                return self.run_dir.checkpoints_dir / f"step_{self.step:07d}.pt"
        return self.run_dir.save_checkpoint(self.step, self.state_dict(), keep=self.config.keep_checkpoints)

    def _last_checkpoint_text(self) -> str:
        last = None if self.run_dir is None else self.run_dir.latest_checkpoint()
        if last is None:
            return "no checkpoint of this run was written before it"
        return f"the last finite checkpoint is {last} (kept)"

    def resume(self) -> Path | None:
        """Continue from the run directory's newest readable checkpoint (None: there is none, start at step 0)."""
        if self.run_dir is None or self.run_dir.latest_checkpoint() is None:
            return None
        path, state = self.run_dir.load_checkpoint(map_location=self.task.device)
        self.load_state_dict(state)
        for cb in self.callbacks:
            if hasattr(cb, "on_resume"):
                cb.on_resume(self, path)
        return path

    # ------------------------------------------------------------------ one step
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 / fp16 autocast on CUDA as ``mixed_precision`` says; a no-op elsewhere."""
        mp = self.config.mixed_precision
        if self.task.device.type != "cuda" or mp == "off":
            return contextlib.nullcontext()
        dtype = torch.float16 if mp == "fp16" else torch.bfloat16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def train_step(self) -> dict[str, Tensor]:
        """One optimisation step; returns detached scalar tensors (no host sync here)."""
        task = self.task
        task.module.train()
        if self._rng is not None:
            self._rng.run_shared(task.step_begin, self.step)
            self._rng.seed_rank_stream(self.step)
        else:
            task.step_begin(self.step)
        batch = task.next_batch(self.step)
        with self.autocast():
            loss, metrics = task.loss_and_metrics(batch, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:
            self.comm_bytes = dist.all_reduce_gradients(task.module.parameters(), self.world_size)
        if self._finite_or_skip(loss):
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(task.module.parameters(), self.config.grad_clip)
            drop_resized_state(self.optimizer)  # a grid resampled by step_begin restarts its moments
            self.optimizer.step()
        self.scheduler.step()
        for name, optimizer in self.aux_optimizers.items():
            metrics.update(self._auxiliary_step(name, optimizer))
        self.step += 1
        return {"loss": loss.detach(), **metrics}

    def _finite_or_skip(self, loss: Tensor) -> bool:
        """True: take the optimizer step. False: ``skip`` drops this batch. Raises under ``stop``.

        One host synchronisation; under torchrun one all-reduce that also agrees on a stop signal.
        """
        flags = step_flags(loss, self.task.module.parameters())  # [loss bad, gradient bad]
        if self.world_size > 1:
            received = self._signals.received if self._signals is not None else None
            flags = torch.cat([flags, flags.new_tensor([float(received or 0)])])
            flags = dist.max_over_ranks(flags)
            self._stop_signal = int(flags[2].item())
        loss_bad, grad_bad = (bool(x) for x in flags[:2].tolist())
        if not (loss_bad or grad_bad):
            return True
        what = f"loss ({float(loss.detach()):g})" if loss_bad else "gradients"
        step = self.step + 1
        if self.config.nonfinite == "stop":
            raise NonFiniteError(
                f"non-finite {what} at step {step}: training stopped; {self._last_checkpoint_text()}. Lower "
                f"trainer.optim.lr, set trainer.optim.grad_clip, or trainer.nonfinite=skip to skip such batches"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        if is_main_process() and (self.skipped <= 3 or self.skipped % 100 == 0):
            warnings.warn(f"non-finite {what} at step {step}: batch skipped ({self.skipped} so far)", stacklevel=3)
        return False

    def _auxiliary_step(self, name: str, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
        """One update of an auxiliary optimizer on ``task.auxiliary_loss`` (gradients averaged across ranks)."""
        with self.autocast():
            result = self.task.auxiliary_loss(name, self.step)
        if result is None:
            return {}
        loss, metrics = result
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            dist.all_reduce_gradients(params, self.world_size)
        optimizer.step()
        return metrics

    # ------------------------------------------------------------------ the run
    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        """Hand a row of scalars (``train`` / ``eval``) to every callback with ``on_log``."""
        for cb in self.callbacks:
            if hasattr(cb, "on_log"):
                cb.on_log(self, step, values, prefix)

    def _is_log_step(self) -> bool:
        return self.step % self.config.log_every == 0 or self.step == self.config.steps

    def evaluate(self, step: int, *, final: bool) -> dict[str, float]:
        """``task.evaluate``; under torchrun on rank 0 only (the others return {})."""
        if self.world_size > 1 and not is_main_process():
            return {}
        return self.task.evaluate(step, final=final)

    def _log_train(self, out: dict[str, Tensor]) -> None:
        if self.world_size > 1:
            out = dist.all_reduce_mean(out, self.world_size)
        start, n = self._window
        now = time.perf_counter()
        self.last_metrics = {k: float(v) for k, v in out.items()}  # the host sync
        row = dict(self.last_metrics)
        if self.task.throughput_key:
            row[self.task.throughput_key] = n * self.task.items_per_step / max(now - start, 1e-9)
        row.update(lr=self.scheduler.get_last_lr()[0], elapsed_s=self.elapsed)
        if self.skipped:
            row["nonfinite_skipped"] = float(self.skipped)
        self._window = (time.perf_counter(), 0)
        self.log(self.step, row, "train")

    def _time_is_up(self) -> bool:
        up = bool(self.config.max_seconds) and self.elapsed >= self.config.max_seconds
        if self.world_size > 1 and self.config.max_seconds:
            return dist.any_rank(up, self.task.device)  # every rank stops at the same step
        return up

    def run(self) -> dict[str, float]:
        """Train up to ``config.steps`` (or ``max_seconds``); returns the final evaluation, else the last train log.

        Raises :class:`TrainingInterrupted` after saving a checkpoint when a SIGINT / SIGTERM arrives, and
        :class:`NonFiniteError` (``nonfinite="stop"``). The run directory is released at the end, however it ends.
        """
        try:
            with StopSignals() as self._signals:
                self._train_to_the_end()
                signum = self._received_signal()
                path = self.save()
            self._signals = None
            if signum:
                raise TrainingInterrupted(signum, self.step, path)
        finally:
            self._signals = None
            if self.run_dir is not None:
                self.run_dir.release()
        final = self.evaluate(self.step, final=True)
        if final:
            self.log(self.step, {**final, "elapsed_s": self.elapsed}, "eval")
        return final or self.last_metrics

    @property
    def stop_requested(self) -> int:
        """The SIGINT / SIGTERM number the run will stop at after the current step (0: none)."""
        if self._signals is not None and self._signals.received:
            return int(self._signals.received)
        return self._stop_signal

    def _received_signal(self) -> int:
        """The stop signal (0: none): this process's own, or the one the ranks agreed on in the last step."""
        if self.world_size > 1:
            return self._stop_signal
        return int(self._signals.received or 0) if self._signals is not None else 0

    def _train_to_the_end(self) -> None:
        for cb in self.callbacks:
            if hasattr(cb, "on_train_begin"):
                cb.on_train_begin(self)
        self._window = (time.perf_counter(), 0)
        try:
            while self.step < self.config.steps and not self._received_signal() and not self._time_is_up():
                if self.paused:
                    time.sleep(0.05)
                    self._window = (time.perf_counter(), 0)
                    continue
                start = time.perf_counter()
                out = self.train_step()
                self.elapsed += time.perf_counter() - start
                self._window = (self._window[0], self._window[1] + 1)
                if self._is_log_step():
                    self._log_train(out)
                for cb in self.callbacks:
                    if hasattr(cb, "on_step_end"):
                        cb.on_step_end(self, self.step)
        finally:
            for cb in self.callbacks:
                if hasattr(cb, "on_train_end"):
                    cb.on_train_end(self)
