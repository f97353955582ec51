"""Helpers shared by the benchmark scripts: machine description and PSNR-vs-time training curves."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

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
    return (
        f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {gpu}, Python {platform.python_version()}"
    )


def best_time(fn, repeats: int, *, warmup: bool = True) -> float:
    """Best wall seconds over ``repeats`` calls of ``fn()``, after one untimed call when ``warmup``."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def pixel_psnr(model, scene, split: str, n_pixels: int, seed: int = 0, chunk: int = 4096) -> float:
    """PSNR over ``n_pixels`` random pixels drawn evenly from the images of ``split`` (same pixels every call).

    An unbiased estimate of the split's pooled-MSE PSNR for methods too slow to render whole images on a
    CPU at every curve point (GNT).
    """
    model.eval()
    indices = scene.split_indices(split, nonempty=True)
    gen = torch.Generator().manual_seed(seed)
    per = max(1, n_pixels // len(indices))
    se, count = 0.0, 0
    for i in indices:
        rays = scene.image_rays(int(i)).flatten()
        pick = torch.randperm(len(rays), generator=gen)[:per].to(rays.device)
        out = model.render_rays(rays[pick], chunk=chunk, context=model.render_context(scene.cameras, int(i)))
        target = scene.images[int(i)].reshape(-1, 3)[pick]
        se += float(((out["rgb"].clamp(0, 1) - target) ** 2).sum())
        count += target.numel()
    model.train()
    from neural3d.evaluation.metrics import mse_to_psnr

    return float(mse_to_psnr(torch.tensor(se / count)))  # float32, as before


def psnr_curve(
    config: str,
    overrides: Sequence[str],
    *,
    budget_s: float,
    eval_every_s: float,
    eval_split: str,
    eval_images: int,
    out_dir: Path,
    eval_pixels: int = 0,
) -> list[tuple[float, int, float]]:
    """Train with ``config`` for ``budget_s`` seconds of training time, evaluating every ``eval_every_s``.

    Evaluation time is excluded from the clock. ``eval_pixels`` > 0: every point (the final one too) is the
    PSNR of that many random pixels of the split (:func:`pixel_psnr`) instead of whole images.
    Returns [(train_seconds, step, psnr)].
    """
    from neural3d.config import load_config
    from neural3d.evaluation.evaluate import evaluate_split
    from neural3d.training.trainer import Trainer

    cfg, _ = load_config(
        config,
        [
            *overrides,
            f"output_dir={out_dir}",
            "trainer.progress=false",
            f"trainer.max_seconds={budget_s}",
            "trainer.checkpoint_every=0",
        ],
    )
    curve: list[tuple[float, int, float]] = []
    next_eval = [eval_every_s]

    def on_step(trainer, step):
        if trainer.elapsed >= next_eval[0] and eval_pixels:
            curve.append((trainer.elapsed, step, pixel_psnr(trainer.model, trainer.scene, eval_split, eval_pixels)))
            print(
                f"  t={trainer.elapsed:7.1f}s step={step:6d} {eval_split} PSNR ({eval_pixels} px)={curve[-1][2]:.2f}",
                flush=True,
            )
            next_eval[0] += eval_every_s
        elif trainer.elapsed >= next_eval[0]:
            idx = trainer.scene.splits[eval_split]
            sub = {**trainer.scene.splits, "_curve": idx[:: max(1, len(idx) // eval_images)]}
            res = evaluate_split(trainer.model, replace(trainer.scene, splits=sub), "_curve")
            curve.append((trainer.elapsed, step, res["mean"]["psnr"]))
            print(f"  t={trainer.elapsed:7.1f}s step={step:6d} {eval_split} PSNR={res['mean']['psnr']:.2f}", flush=True)
            next_eval[0] += eval_every_s

    trainer = Trainer(cfg, overwrite=True, on_step=on_step)
    start = time.perf_counter()
    trainer.train()
    if eval_pixels:
        curve.append((trainer.elapsed, trainer.step, pixel_psnr(trainer.model, trainer.scene, eval_split, eval_pixels)))
        print(
            f"  final t={trainer.elapsed:.1f}s (wall {time.perf_counter() - start:.0f}s) step={trainer.step} "
            f"{eval_split} PSNR ({eval_pixels} px)={curve[-1][2]:.2f}",
            flush=True,
        )
        return curve
    res = evaluate_split(trainer.model, trainer.scene, eval_split)  # final point: every image of the split
    curve.append((trainer.elapsed, trainer.step, res["mean"]["psnr"]))
    print(
        f"  final t={trainer.elapsed:.1f}s (wall {time.perf_counter() - start:.0f}s) step={trainer.step} "
        f"{eval_split} PSNR={res['mean']['psnr']:.2f} SSIM={res['mean']['ssim']:.4f}",
        flush=True,
    )
    return curve


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``) so RSS measures what is live; no-op elsewhere."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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

    def __enter__(self) -> PeakMemory:
        import threading

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _release_freed_memory()  # else memory freed by an earlier, bigger job hides this one's peak
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
