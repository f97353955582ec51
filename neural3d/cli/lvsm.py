"""``neural3d lvsm ...``: LVSM commands (generalizable rendering with a transformer).

* ``neural3d lvsm eval RUN SCENE [data.KEY=V ...] [model.n_source_views_eval=N]``: metrics on an (unseen) scene
  given only its images and poses (source views from its ``train`` split); the same as ``neural3d gnt eval``.
* ``neural3d lvsm render RUN SCENE --path orbit --out video.mp4``: a camera path of that scene (one forward pass
  per frame).
* under ``torchrun`` (``torchrun --nproc-per-node N -m neural3d lvsm eval|render ...``) the ranks split the images /
  frames and rank 0 writes exactly the files one process writes (as ``neural3d gnt``).
* ``neural3d lvsm import CKPT --data SCENE --out RUN [model.KEY=V ...]``: wrap an official LVSM checkpoint
  (decoder-only or encoder-decoder; sizes read off its shapes) as a neural3d run; the mapping is strict.
"""

from __future__ import annotations

from neural3d.cli.gnt import _IntermixedParser, add_scene_commands


def _cmd_import(args) -> int:
    from neural3d.methods.lvsm.importer import import_official

    out = import_official(args.checkpoint, args.data, args.out, overrides=args.overrides)
    print(f"[neural3d] wrote run {out} from official LVSM checkpoint {args.checkpoint}")
    return 0


def add_parser(subparsers) -> None:
    g = subparsers.add_parser("lvsm", help="LVSM: render unseen scenes, import official checkpoints")
    gsub = g.add_subparsers(dest="lvsm_command", required=True, parser_class=_IntermixedParser)

    add_scene_commands(
        gsub,
        "LVSM",
        overrides_help="data.KEY=VALUE or model.n_source_views_eval=N",
        chunk_help="ignored by LVSM (whole images)",
        outputs="rgb",
    )

    i = gsub.add_parser("import", help="make a neural3d run from an official LVSM checkpoint (.pt)")
    i.add_argument("checkpoint")
    i.add_argument("--data", required=True, help="scene whose images serve as source views")
    i.add_argument("--out", required=True, help="run directory to write")
    i.add_argument("overrides", nargs="*", help="config overrides, e.g. model.pose_normalization=sources")
    i.set_defaults(fn=_cmd_import)
