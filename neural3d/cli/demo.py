"""``neural3d demo``: generate the synthetic demo scene, train, evaluate, render an orbit video, say what next."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from pathlib import Path


def default_demo_config() -> Path:
    """``configs/demo.yaml`` as shipped inside the package (``neural3d.configs``; a wheel install has it too)."""
    from importlib.resources import files

    return Path(str(files("neural3d.configs") / "demo.yaml"))


def next_steps(run_dir: Path, video: Path, eval_dir: Path) -> list[str]:
    """The lines the demo ends with: where the results are and the commands to run next."""
    run = shlex.quote(str(run_dir))
    return [
        f"[demo] orbit video:   {video}",
        f"[demo] test views:    {eval_dir}/compare (prediction | ground truth | error), rgb/, depth/",
        f"[demo] training log:  {Path(run_dir) / 'logs' / 'metrics.csv'}",
        "[demo] next:",
        f"  neural3d view {run}                                   # explore it in the browser",
        f"  neural3d render {run} --path orbit --out orbit.mp4    # render another video",
        f"  neural3d export {run} mesh                            # a mesh of the scene",
    ]


def run_demo(config: str | None = None, overrides: Sequence[str] = ()) -> int:
    from neural3d.api import load
    from neural3d.config import load_config
    from neural3d.evaluation.evaluate import evaluate_split
    from neural3d.media.frames import render_frames, write_frames
    from neural3d.media.paths import path_cameras
    from neural3d.training.setup import regenerate_if_stale
    from neural3d.training.trainer import Trainer

    start = time.perf_counter()
    cfg, _ = load_config(config or default_demo_config(), overrides)
    s = cfg.data.synth
    regenerate_if_stale(cfg.data)  # data/demo from an older version (another seed or size)
    print(f"[demo] scene {cfg.data.path}: generated, seed {s.seed}, {s.res}x{s.res}, {s.n_train} training views")
    trainer = Trainer(cfg, overwrite=True)
    print(f"[demo] training {cfg.trainer.steps} steps into {trainer.run_dir} (device: {trainer.device})")
    trainer.train()
    loaded = load(trainer.run_dir, device=str(trainer.device))
    scene = trainer.scene
    eval_dir = trainer.run.eval_dir(cfg.eval.split)
    res = evaluate_split(loaded.model, scene, cfg.eval.split, chunk=cfg.eval.chunk, out_dir=eval_dir, progress=True)
    video = trainer.run.renders_dir / "orbit.mp4"
    cams = path_cameras(scene, cfg.render.path, n_frames=cfg.render.n_frames, scale=cfg.render.scale)
    write_frames(render_frames(loaded, cams, list(cfg.render.outputs), chunk=cfg.eval.chunk), video, fps=cfg.render.fps)
    m = res["mean"]
    print(f"[demo] {cfg.eval.split} PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}  ({len(res['per_image'])} images)")
    print(f"[demo] total wall time {time.perf_counter() - start:.0f} s (training {trainer.elapsed:.0f} s)")
    print("\n".join(next_steps(trainer.run_dir, video, eval_dir)))
    return 0
