"""Interleaved training races: several methods train in turns on one machine, each on its own clock.

Turns of ``slice_s`` seconds alternate between the methods, so load from anything else running on the
machine falls on all of them alike; evaluation time is excluded from each method's clock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageDraw


@dataclass
class Runner:
    name: str
    trainer: object
    budget_s: float
    eval_every_s: float
    next_eval: float = 0.0
    curve: list[tuple[float, int, float]] = field(default_factory=list)
    reached_s: float | None = None

    @property
    def done(self) -> bool:
        return self.reached_s is not None or self.trainer.elapsed >= self.budget_s


def _eval(trainer, split: str, n_images: int) -> float:
    from neural3d.evaluation.evaluate import evaluate_split

    idx = trainer.scene.splits[split]
    sub = {**trainer.scene.splits, "_race": idx[:: max(1, len(idx) // n_images)][:n_images]}
    return evaluate_split(trainer.model, replace(trainer.scene, splits=sub), "_race")["mean"]["psnr"]


def build_trainer(config: str, overrides: Sequence[str], out_dir: Path):
    from neural3d.config import load_config
    from neural3d.training.trainer import Trainer

    cfg, _ = load_config(
        config, [*overrides, f"output_dir={out_dir}", "trainer.progress=false", "trainer.checkpoint_every=0"]
    )
    return Trainer(cfg, overwrite=True)


def race(
    runners: list[Runner],
    *,
    target_psnr: float,
    slice_s: float = 10.0,
    split: str = "val",
    n_images: int = 2,
    log=print,
    on_round=None,
) -> list[Runner]:
    """Train all runners in turns until each reaches ``target_psnr`` (on ``n_images`` of ``split``) or its budget.

    ``on_round(runners)`` is called after every round (e.g. to set budgets from another runner's result).
    """
    for r in runners:
        r.next_eval = r.eval_every_s
    while not all(r.done for r in runners):
        if on_round is not None:
            on_round(runners)
        for r in runners:
            if r.done:
                continue
            tr, stop = r.trainer, r.trainer.elapsed + slice_s
            while tr.elapsed < stop and tr.elapsed < r.budget_s and tr.step < tr.cfg.trainer.steps:
                start = time.perf_counter()
                tr.train_step()
                tr.elapsed += time.perf_counter() - start
                if tr.elapsed >= r.next_eval:
                    psnr = _eval(tr, split, n_images)
                    r.curve.append((tr.elapsed, tr.step, psnr))
                    log(f"  {r.name:24s} t={tr.elapsed:7.1f}s step={tr.step:6d} PSNR={psnr:.2f}")
                    r.next_eval += r.eval_every_s
                    if psnr >= target_psnr:
                        r.reached_s = tr.elapsed
                        break
            if tr.step >= tr.cfg.trainer.steps:
                r.budget_s = tr.elapsed
    return runners


def plot_curves(runners: list[Runner], path: Path, *, target_psnr: float, size=(720, 440)) -> Path:
    """PSNR vs training seconds (log x axis) as a PNG drawn with PIL."""
    import math

    W, H = size
    left, right, top, bottom = 60, 20, 20, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    pts = [p for r in runners for p in r.curve]
    if not pts:
        img.save(path)
        return path
    t_lo, t_hi = max(min(p[0] for p in pts), 1e-1), max(p[0] for p in pts)
    p_lo, p_hi = min(min(p[2] for p in pts), target_psnr) - 1, max(max(p[2] for p in pts), target_psnr) + 1
    lx0, lx1 = math.log10(t_lo), math.log10(max(t_hi, t_lo * 10))

    def xy(t, p):
        x = left + (math.log10(max(t, t_lo)) - lx0) / (lx1 - lx0) * (W - left - right)
        y = top + (p_hi - p) / (p_hi - p_lo) * (H - top - bottom)
        return x, y

    d.rectangle([left, top, W - right, H - bottom], outline="black")
    for e in range(math.floor(lx0), math.ceil(lx1) + 1):
        x, _ = xy(10**e, p_lo)
        if left <= x <= W - right:
            d.line([x, H - bottom, x, H - bottom + 5], fill="black")
            d.text((x - 12, H - bottom + 8), f"{10**e:g}s", fill="black")
    for p in range(math.ceil(p_lo), math.floor(p_hi) + 1, 2):
        _, y = xy(t_lo, p)
        d.text((8, y - 6), f"{p} dB", fill="black")
    _, ty = xy(t_lo, target_psnr)
    d.line([left, ty, W - right, ty], fill=(150, 150, 150))
    colours = [(200, 30, 30), (30, 90, 200), (30, 150, 60), (160, 90, 20), (120, 40, 160)]
    for i, r in enumerate(runners):
        c = colours[i % len(colours)]
        line = [xy(t, p) for t, _, p in r.curve]
        if len(line) > 1:
            d.line(line, fill=c, width=2)
        for x, y in line:
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c)
        d.text((left + 10, top + 8 + 14 * i), r.name, fill=c)
    d.text((W // 2 - 60, H - 20), "training seconds (log)", fill="black")
    img.save(path)
    return path
