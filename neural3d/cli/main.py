"""``neural3d`` command line: train, eval, render, data synth, demo."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from neural3d.cli.arg_types import Parser, positive_float, positive_int
from neural3d.cli.errors import print_error, user_error_message

# Modules that add their own sub-commands: each defines ``add_parser(subparsers)`` which registers
# its parser(s) with ``set_defaults(fn=...)``. One line per module; imports stay light (lazy inside fn).
_COMMAND_MODULES: tuple[str, ...] = (
    "neural3d.cli.pointcloud",
    "neural3d.cli.export",
    "neural3d.cli.view",
    "neural3d.cli.gnt",
    "neural3d.cli.lvsm",
    "neural3d.cli.nid",
)


def _torchrun_command(args) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N ... -m neural3d train CONFIG ...``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}"]
    if args.max_restarts:
        cmd.append(f"--max-restarts={args.max_restarts}")
    cmd += ["-m", "neural3d", "train", args.config, *args.overrides]
    cmd += [flag for flag, on in (("--resume", args.resume), ("--overwrite", args.overwrite)) if on]
    return cmd


def _wait_for_torchrun(cmd: list[str]) -> int:
    """Run torchrun and return its exit code. Ctrl-C reaches torchrun from the terminal and torchrun passes it
    to the ranks (each in its own session), so it is ignored here while waiting; a SIGTERM sent to this process
    alone is passed on to torchrun. The ranks then checkpoint the same step and stop."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _cmd_train(args) -> int:
    from neural3d.cli.run_flags import check_resumable, run_mode
    from neural3d.config import load_config
    from neural3d.training import distributed as dist
    from neural3d.training.setup import run_directory

    if args.nproc is not None and args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    if (args.nproc or 1) > 1 and not dist.launched_by_torchrun():  # one machine: let torchrun start the ranks
        return _wait_for_torchrun(_torchrun_command(args))
    from neural3d.training.trainer import Trainer

    dist.quiet_non_main()
    cfg, _ = load_config(args.config, args.overrides)
    resume, overwrite = run_mode(args)  # resumes in a group that torchrun --max-restarts restarted
    check_resumable(run_directory(cfg), bool(args.resume))  # an explicit --resume needs a run
    try:
        trainer = Trainer(cfg, resume=resume, overwrite=overwrite)
        return _train(trainer, cfg)
    finally:
        dist.shutdown()


def _train(trainer, cfg) -> int:
    from neural3d.training.run_dir import is_main_process

    main_proc = is_main_process()
    say = print if main_proc else (lambda *a, **k: None)
    world = trainer.loop.world_size
    procs = f", {world} processes" if world > 1 else ""
    say(f"[neural3d] run directory: {trainer.run_dir}  (device: {trainer.device}, method: {cfg.method}{procs})")
    live = None
    # live browser viewer (rank 0 only): a model copy refreshed from Trainer.on_step, pause button
    if cfg.viewer.enabled and main_proc:
        from neural3d.viewer.live import LiveTraining

        live = LiveTraining(trainer, cfg.viewer)
    try:
        trainer.train()
    except BaseException:
        if live is not None:
            live.close()
        raise
    ckpts = trainer.run.checkpoints_dir
    say(f"[neural3d] trained {trainer.step} steps in {trainer.elapsed:.1f} s; checkpoint in {ckpts}")
    from neural3d.cli.next_steps import after_scene_training

    ndc = bool(getattr(getattr(trainer, "scene", None), "ndc", False))
    say("\n".join(after_scene_training(trainer.run_dir, cfg.method, scene=str(cfg.data.path), ndc=ndc)))
    if live is not None:
        live.finish()
    return 0


def _split_work_device(device: str) -> str:
    """``eval`` / ``render`` under torchrun: the process group (the ranks split the images or frames, rank 0
    writes) and this rank's device (GPU ``LOCAL_RANK`` with nccl); ``device`` unchanged without torchrun."""
    from neural3d.training import distributed as dist

    dist.quiet_non_main()
    if dist.launched_by_torchrun():
        dist.init_from_env("auto", device=device)
        if dist.resolve_backend("auto", device) == "nccl" and device == "auto":
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def run_split_work(work, args) -> int:
    """``work(args, device)`` of ``eval`` / ``render`` commands: under torchrun in a process group (the ranks split
    the images or frames, rank 0 writes; :func:`_split_work_device`), destroyed at the end."""
    from neural3d.training import distributed as dist

    device = _split_work_device(args.device)
    try:
        return work(args, device)
    finally:
        dist.shutdown()


def _cmd_eval(args) -> int:
    return run_split_work(_eval, args)


def _eval(args, device) -> int:
    from neural3d.api import load
    from neural3d.evaluation.evaluate import evaluate_split, maybe_lpips
    from neural3d.media.frames import check_output
    from neural3d.training.run_dir import RunDir, atomic_write_text, chosen_checkpoint, is_main_process

    if args.out:
        check_output(Path(args.out), directory=True)
    checkpoint = chosen_checkpoint(args.run_dir, args.checkpoint)
    loaded = load(args.run_dir, checkpoint=checkpoint, device=device)
    scene = loaded.dataset().to(loaded.device)
    split = args.split or loaded.config.eval.split
    default_dir = split if checkpoint is None else f"{split}_step{loaded.step:07d}"  # the latest's stays apart
    out_dir = Path(args.out) if args.out else RunDir(args.run_dir).eval_dir(default_dir)
    ecfg = loaded.config.eval
    for key in ("lpips_backbone", "lpips_linear", "lpips_net"):
        if getattr(args, key) is not None:
            ecfg[key] = getattr(args, key)
    lpips_fn = maybe_lpips(ecfg, loaded.device)
    res = evaluate_split(
        loaded.model,
        scene,
        split,
        chunk=loaded.config.eval.chunk,
        out_dir=out_dir,
        lpips_fn=lpips_fn,
        max_images=args.max_images,
        distributed=True,
        progress=True,
    )
    if not is_main_process():
        return 0
    res["step"] = loaded.step
    atomic_write_text(json.dumps(res, indent=2), out_dir / "metrics.json")
    means = "  ".join(f"{k.upper()} {v:.4f}" for k, v in res["mean"].items())
    print(f"[neural3d] {split} ({len(res['per_image'])} images, step {loaded.step}): {means}")
    print(f"[neural3d] metrics and images: {out_dir}")
    return 0


def _cmd_render(args) -> int:
    return run_split_work(_render, args)


def _render(args, device) -> int:
    from neural3d.api import load
    from neural3d.media.frames import check_output, parse_outputs, render_frames, write_frames
    from neural3d.media.paths import path_cameras
    from neural3d.training.run_dir import chosen_checkpoint, is_main_process

    check_output(Path(args.out))  # before the model is loaded and any rank renders
    outputs = parse_outputs(args.outputs)
    loaded = load(args.run_dir, checkpoint=chosen_checkpoint(args.run_dir, args.checkpoint), device=device)
    scene = loaded.dataset()
    cams = path_cameras(scene, args.path, n_frames=args.frames, scale=args.scale)
    frames = render_frames(loaded, cams, outputs, chunk=loaded.config.eval.chunk, distributed=True)
    if not is_main_process():  # torchrun: this rank renders its share of the frames; rank 0 writes them all
        for _ in frames:
            pass
        return 0
    out = write_frames(frames, Path(args.out), fps=args.fps)
    print(f"[neural3d] wrote {len(cams)} frames ({', '.join(outputs)}) to {out}")
    return 0


def _cmd_synth(args) -> int:
    from neural3d.data.synthetic import cli_synth

    out = cli_synth(args.out, args.layout, args.res, args.seed, args.views)
    print(f"[neural3d] wrote synthetic {args.layout} scene (seed {args.seed}, {args.res}px) to {out}")
    return 0


def _cmd_demo(args) -> int:
    from neural3d.cli.demo import run_demo

    return run_demo(args.config, args.overrides)


_CHECKPOINT_HELP = "a checkpoint of the run: its step (e.g. 5000) or a .pt path (default: the newest readable one)"


def build_parser() -> argparse.ArgumentParser:
    from neural3d.cli.run_flags import add_run_flags

    p = Parser(prog="neural3d", description="Neural rendering and 3D scenes in PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a method on a scene from a YAML config")
    t.add_argument("config", help="YAML config, e.g. configs/demo.yaml")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.steps=500 data.path=data/lego")
    add_run_flags(t)
    t.add_argument(
        "--nproc",
        type=positive_int,
        default=None,
        help="data-parallel processes on this machine: re-launches the command under torchrun "
        "(trainer.batch_size stays the global batch); for several machines run torchrun yourself (README)",
    )
    t.add_argument(
        "--max-restarts", type=int, default=0, help="with --nproc: torchrun restarts of a failed group (resumes)"
    )
    t.set_defaults(fn=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a run: metrics JSON + rendered images")
    e.add_argument("run_dir")
    e.add_argument("--split", default=None, help="dataset split (default: the config's eval.split)")
    e.add_argument("--out", default=None, help="output directory (default: RUN_DIR/eval/SPLIT)")
    e.add_argument("--max-images", type=positive_int, default=None)
    e.add_argument("--lpips-backbone", default=None, help="local torchvision VGG16/AlexNet weights (.pth)")
    e.add_argument("--lpips-linear", default=None, help="local lpips linear-layer weights (weights/v0.1/vgg.pth)")
    e.add_argument("--lpips-net", default=None, choices=["vgg", "alex"])
    e.add_argument(
        "--checkpoint", default=None, help=_CHECKPOINT_HELP + "; outputs then go to RUN_DIR/eval/SPLIT_stepN"
    )
    e.add_argument("--device", default="auto")
    e.set_defaults(fn=_cmd_eval)

    r = sub.add_parser("render", help="render a camera path to an mp4 or an image folder")
    r.add_argument("run_dir")
    r.add_argument(
        "--path", default="auto", help="auto | orbit | spiral | interp | test | val | train | camera_path.json"
    )
    r.add_argument("--out", required=True, help="video.mp4 or a directory")
    r.add_argument("--frames", type=positive_int, default=60, help="frames for orbit/interp paths")
    r.add_argument("--fps", type=positive_int, default=30)
    r.add_argument("--scale", type=positive_float, default=1.0, help="resolution scale relative to the training images")
    r.add_argument("--outputs", default="rgb,depth", help="comma list of rgb, depth, opacity (side by side)")
    r.add_argument("--checkpoint", default=None, help=_CHECKPOINT_HELP)
    r.add_argument("--device", default="auto")
    r.set_defaults(fn=_cmd_render)

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="generate a procedural, analytically ray-traced scene")
    s.add_argument("--out", required=True)
    s.add_argument("--layout", choices=["blender", "llff", "dtu"], default="blender")
    s.add_argument("--res", type=positive_int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--views",
        type=int,
        default=None,
        help="blender: training views; llff, dtu: all images (default: the layout's own: 40, 20, 49)",
    )
    s.set_defaults(fn=_cmd_synth)

    m = sub.add_parser("demo", help="generate the demo scene, train, evaluate and render an orbit video")
    m.add_argument("--config", default=None, help="config (default: the packaged configs/demo.yaml)")
    m.add_argument("overrides", nargs="*")
    m.set_defaults(fn=_cmd_demo)
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod).add_parser(sub)
    return p


def _say_stopped(message: str) -> None:
    """One line on stderr (under torchrun from rank 0 only: every rank stops the same way)."""
    if os.environ.get("RANK", "0") in ("", "0"):
        print(f"[neural3d] {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; an error of the user's input is one line on stderr and exit status 2 (:mod:`cli.errors`);
    a training stopped by a signal or a non-finite loss is one line and its own exit code (130, 143, 3)."""
    from neural3d.training.stops import TrainingStopped

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except TrainingStopped as e:  # a signal (checkpoint saved) or a non-finite loss: one line, its exit code
        _say_stopped(str(e))
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside training (loading, evaluating) or a second Ctrl-C
        _say_stopped("interrupted")
        return 130
    except (OSError, ValueError, RuntimeError) as e:
        message = user_error_message(e)
        if message is None or os.environ.get("NEURAL3D_DEBUG"):
            raise
        print_error(message)
        return 2


if __name__ == "__main__":
    sys.exit(main())
