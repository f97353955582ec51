"""``neural3d gnt ...``: generalizable rendering commands.

* ``neural3d gnt eval RUN SCENE [data.KEY=V ...] [model.n_samples=192 ...]``: metrics on an (unseen)
  scene given only its images and poses -- source views come from its ``train`` split, targets from
  ``--split`` (default test). No optimisation.
* ``neural3d gnt render RUN SCENE --path orbit --out video.mp4``: render a camera path of that scene.
* ``neural3d gnt import CKPT --data SCENE --out RUN [model.KEY=V ...]``: wrap an official GNT checkpoint as a
  neural3d run (then ``neural3d eval RUN`` / ``neural3d render RUN`` / ``neural3d.load(RUN)`` work).

Under ``torchrun`` (``torchrun --nproc-per-node N -m neural3d gnt eval|render ...``) the ranks split the images /
frames and rank 0 writes exactly the files one process writes. Options and overrides may come in any order.
The work is done by :func:`neural3d.api.load_for_scene` and :func:`neural3d.methods.gnt.official.import_official`;
this module only parses arguments.
"""

from __future__ import annotations

import json
from pathlib import Path

from neural3d.cli.arg_types import Parser, positive_float, positive_int


class _IntermixedParser(Parser):
    """A sub-command parser that takes options and ``key=value`` overrides in any order.

    Plain argparse fills the ``overrides`` positional (``nargs="*"``) with the positionals before the first option,
    so ``import CKPT --data S --out R model.x=y`` would reject ``model.x=y``; intermixed parsing collects them all.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _cmd_eval(args) -> int:
    from neural3d.cli.main import run_split_work

    return run_split_work(_eval, args)  # torchrun: the ranks split the images, rank 0 writes


def _eval(args, device: str) -> int:
    from neural3d.api import load_for_scene
    from neural3d.evaluation.evaluate import evaluate_split
    from neural3d.media.frames import check_output
    from neural3d.training.run_dir import RunDir, is_main_process

    if args.out:
        check_output(Path(args.out), directory=True)
    loaded = load_for_scene(args.run_dir, args.scene, args.overrides, device)
    scene = loaded.model.attached_scene
    out_dir = Path(args.out) if args.out else RunDir(args.run_dir).eval_dir(f"{Path(args.scene).name}-{args.split}")
    res = evaluate_split(
        loaded.model,
        scene,
        args.split,
        chunk=args.chunk or loaded.config.eval.chunk,
        out_dir=out_dir,
        max_images=args.max_images,
        distributed=True,
        progress=True,
    )
    if not is_main_process():
        return 0
    res.update(step=loaded.step, scene=str(Path(args.scene).resolve()))
    (out_dir / "metrics.json").write_text(json.dumps(res, indent=2))
    means = "  ".join(f"{k.upper()} {v:.4f}" for k, v in res["mean"].items())
    print(f"[neural3d] {args.scene} {args.split} ({len(res['per_image'])} images, step {loaded.step}): {means}")
    print(f"[neural3d] metrics and images: {out_dir}")
    return 0


def _cmd_render(args) -> int:
    from neural3d.cli.main import run_split_work

    return run_split_work(_render, args)  # torchrun: the ranks split the frames, rank 0 writes


def _render(args, device: str) -> int:
    from neural3d.api import load_for_scene
    from neural3d.media.frames import check_output, parse_outputs, render_frames, write_frames
    from neural3d.media.paths import path_cameras
    from neural3d.training.run_dir import is_main_process

    check_output(Path(args.out))  # before the model is loaded and the frames rendered
    outputs = parse_outputs(args.outputs)
    loaded = load_for_scene(args.run_dir, args.scene, args.overrides, device)
    cams = path_cameras(loaded.model.attached_scene, args.path, n_frames=args.frames, scale=args.scale)
    chunk = args.chunk or loaded.config.eval.chunk
    frames = render_frames(loaded, cams, outputs, chunk=chunk, distributed=True)
    if not is_main_process():  # this rank renders its share of the frames; rank 0 writes them all
        for _ in frames:
            pass
        return 0
    out = write_frames(frames, Path(args.out), fps=args.fps)
    print(f"[neural3d] wrote {len(cams)} frames ({', '.join(outputs)}) of {args.scene} to {out}")
    return 0


def _cmd_import(args) -> int:
    from neural3d.methods.gnt.official import import_official

    out = import_official(
        args.checkpoint, args.data, args.out, pixel_center=args.pixel_center, overrides=args.overrides
    )
    print(f"[neural3d] wrote run {out} from official GNT checkpoint {args.checkpoint}")
    return 0


def add_scene_commands(gsub, name: str, *, overrides_help: str, chunk_help: str, outputs: str) -> None:
    """``eval`` and ``render`` of a source-view method (GNT, LVSM) on a scene given only its images and poses."""
    e = gsub.add_parser("eval", help=f"evaluate a {name} run on a scene given only its images and poses")
    e.add_argument("run_dir")
    e.add_argument("scene", help="scene folder (its train split gives the source views)")
    e.add_argument("overrides", nargs="*", help=overrides_help)
    e.add_argument("--split", default="test")
    e.add_argument("--out", default=None, help="output directory (default RUN/eval/SCENE-SPLIT)")
    e.add_argument("--max-images", type=positive_int, default=None)
    e.add_argument("--chunk", type=positive_int, default=None, help=chunk_help)
    e.add_argument("--device", default="auto")
    e.set_defaults(fn=_cmd_eval)

    r = gsub.add_parser("render", help="render a camera path of a scene given only its images and poses")
    r.add_argument("run_dir")
    r.add_argument("scene")
    r.add_argument("overrides", nargs="*")
    r.add_argument("--path", default="auto", help="auto | orbit | spiral | interp | test | camera_path.json")
    r.add_argument("--out", required=True, help="video.mp4 or a directory")
    r.add_argument("--frames", type=positive_int, default=60)
    r.add_argument("--fps", type=positive_int, default=30)
    r.add_argument("--scale", type=positive_float, default=1.0)
    r.add_argument("--outputs", default=outputs)
    r.add_argument("--chunk", type=positive_int, default=None, help=chunk_help)
    r.add_argument("--device", default="auto")
    r.set_defaults(fn=_cmd_render)


def add_parser(subparsers) -> None:
    g = subparsers.add_parser("gnt", help="generalizable rendering (GNT): unseen scenes, official checkpoints")
    gsub = g.add_subparsers(dest="gnt_command", required=True, parser_class=_IntermixedParser)

    add_scene_commands(
        gsub,
        "GNT",
        overrides_help="data.KEY=VALUE (e.g. data.factor=4) or model.n_samples=192",
        chunk_help="rays per forward pass (memory bound)",
        outputs="rgb,depth",
    )

    i = gsub.add_parser("import", help="make a neural3d run from an official GNT checkpoint (.pth)")
    i.add_argument("checkpoint")
    i.add_argument("--data", required=True, help="scene whose images serve as source views")
    i.add_argument("--out", required=True, help="run directory to write")
    i.add_argument("--pixel-center", type=float, default=0.0, help="0.0 reproduces GNT's rays (default)")
    i.add_argument("overrides", nargs="*", help="config overrides, e.g. model.n_samples=192 data.factor=4")
    i.set_defaults(fn=_cmd_import)
