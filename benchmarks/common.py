"""Helpers shared by the benchmark scripts: machine description and PSNR-vs-time training curves."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}, Python {platform.python_version()}")


def psnr_curve(config: str, overrides: Sequence[str], *, budget_s: float, eval_every_s: float, eval_split: str,
               eval_images: int, out_dir: Path) -> list[tuple[float, int, float]]:
    """Train with ``config`` for ``budget_s`` seconds of training time, evaluating every ``eval_every_s``.

    Evaluation time is excluded from the clock. Returns [(train_seconds, step, psnr)].
    """
    from neural3d.config import load_config
    from neural3d.evaluation import evaluate_split
    from neural3d.training.trainer import Trainer

    cfg, _ = load_config(config, [*overrides, f"output_dir={out_dir}", "trainer.progress=false",
                                  f"trainer.max_seconds={budget_s}", "trainer.checkpoint_every=0"])
    curve: list[tuple[float, int, float]] = []
    next_eval = [eval_every_s]

    def on_step(trainer, step):
        if trainer.elapsed >= next_eval[0]:
            idx = trainer.scene.splits[eval_split]
            sub = {**trainer.scene.splits, "_curve": idx[:: max(1, len(idx) // eval_images)]}
            res = evaluate_split(trainer.model, replace(trainer.scene, splits=sub), "_curve")
            curve.append((trainer.elapsed, step, res["mean"]["psnr"]))
            print(f"  t={trainer.elapsed:7.1f}s step={step:6d} {eval_split} PSNR={res['mean']['psnr']:.2f}", flush=True)
            next_eval[0] += eval_every_s

    trainer = Trainer(cfg, overwrite=True, on_step=on_step)
    start = time.perf_counter()
    trainer.train()
    res = evaluate_split(trainer.model, trainer.scene, eval_split)  # final point: every image of the split
    curve.append((trainer.elapsed, trainer.step, res["mean"]["psnr"]))
    print(f"  final t={trainer.elapsed:.1f}s (wall {time.perf_counter() - start:.0f}s) step={trainer.step} "
          f"{eval_split} PSNR={res['mean']['psnr']:.2f} SSIM={res['mean']['ssim']:.4f}", flush=True)
    return curve


class PeakMemory:
    """Peak memory above the level at entry while the ``with`` body runs: CUDA allocator peak on GPU,
    resident set size sampled every ``period_s`` from ``/proc/self/statm`` on CPU (Linux).

    ``peak_mb`` is set on exit.
    """

    def __init__(self, device: str | torch.device = "cpu", period_s: float = 0.002) -> None:
        self.device, self.period_s, self.peak_mb = torch.device(device), period_s, 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        import threading

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = self._peak = self._rss()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(self.period_s):
                self._peak = max(self._peak, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._rss())
        self.peak_mb = (peak - self._base) / 2**20
