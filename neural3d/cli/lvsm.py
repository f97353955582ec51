"""``neural3d lvsm ...``: LVSM commands (generalizable rendering with a transformer).

* ``neural3d lvsm eval RUN SCENE [data.KEY=V ...] [model.n_source_views_eval=N]``: metrics on an (unseen) scene
  given only its images and poses (source views from its ``train`` split); the same as ``neural3d gnt eval``.
* ``neural3d lvsm render RUN SCENE --path orbit --out video.mp4``: a camera path of that scene (one forward pass
  per frame).
* ``neural3d lvsm import CKPT --data SCENE --out RUN [model.KEY=V ...]``: wrap an official LVSM checkpoint
  (decoder-only or encoder-decoder; sizes read off its shapes) as a neural3d run; the mapping is strict.
"""

from __future__ import annotations

from neural3d.cli.gnt import _cmd_eval, _cmd_render, _IntermixedParser


def _cmd_import(args) -> int:
    from neural3d.methods.lvsm.importer import import_official

    out = import_official(args.checkpoint, args.data, args.out, overrides=args.overrides)
    print(f"[neural3d] wrote run {out} from official LVSM checkpoint {args.checkpoint}")
    return 0


def add_parser(subparsers) -> None:
    g = subparsers.add_parser("lvsm", help="LVSM: render unseen scenes, import official checkpoints")
    gsub = g.add_subparsers(dest="lvsm_command", required=True, parser_class=_IntermixedParser)

    e = gsub.add_parser("eval", help="evaluate an LVSM run on a scene given only its images and poses")
    e.add_argument("run_dir")
    e.add_argument("scene", help="scene folder (its train split gives the source views)")
    e.add_argument("overrides", nargs="*", help="data.KEY=VALUE or model.n_source_views_eval=N")
    e.add_argument("--split", default="test")
    e.add_argument("--out", default=None, help="output directory (default RUN/eval/SCENE-SPLIT)")
    e.add_argument("--max-images", type=int, default=None)
    e.add_argument("--chunk", type=int, default=None, help="ignored by LVSM (whole images)")
    e.add_argument("--device", default="auto")
    e.set_defaults(fn=_cmd_eval)

    r = gsub.add_parser("render", help="render a camera path of a scene given only its images and poses")
    r.add_argument("run_dir")
    r.add_argument("scene")
    r.add_argument("overrides", nargs="*")
    r.add_argument("--path", default="auto", help="auto | orbit | spiral | interp | test | camera_path.json")
    r.add_argument("--out", required=True, help="video.mp4 or a directory")
    r.add_argument("--frames", type=int, default=60)
    r.add_argument("--fps", type=int, default=30)
    r.add_argument("--scale", type=float, default=1.0)
    r.add_argument("--outputs", default="rgb")
    r.add_argument("--chunk", type=int, default=None, help="ignored by LVSM (whole images)")
    r.add_argument("--device", default="auto")
    r.set_defaults(fn=_cmd_render)

    i = gsub.add_parser("import", help="make a neural3d run from an official LVSM checkpoint (.pt)")
    i.add_argument("checkpoint")
    i.add_argument("--data", required=True, help="scene whose images serve as source views")
    i.add_argument("--out", required=True, help="run directory to write")
    i.add_argument("overrides", nargs="*", help="config overrides, e.g. model.pose_normalization=sources")
    i.set_defaults(fn=_cmd_import)
