"""``neural3d gnt ...``: generalizable rendering commands.

* ``neural3d gnt eval RUN SCENE [data.KEY=V ...] [model.n_samples=192 ...]``: metrics on an (unseen)
  scene given only its images and poses -- source views come from its ``train`` split, targets from
  ``--split`` (default test). No optimisation.
* ``neural3d gnt render RUN SCENE --path orbit --out video.mp4``: render a camera path of that scene.
* ``neural3d gnt import CKPT --data SCENE --out RUN``: wrap an official GNT checkpoint as a neural3d run
  (then ``neural3d eval RUN`` / ``neural3d render RUN`` / ``neural3d.load(RUN)`` work).
"""

from __future__ import annotations

import json
from pathlib import Path

from neural3d.config import ConfigError

_RUNTIME_MODEL_KEYS = (
    "n_samples",
    "n_samples_eval",
    "n_fine",
    "n_source_views",
    "n_source_views_eval",
    "lindisp",
    "selection",
)


def _split_overrides(items) -> tuple[dict, dict]:
    """``data.KEY=VALUE`` / ``model.KEY=VALUE`` strings -> (data dict, model dict) with YAML-typed values."""
    from omegaconf import OmegaConf

    data, model = {}, {}
    for item in items:
        if "=" not in item or not item.startswith(("data.", "model.")):
            raise ConfigError(f"override '{item}' must look like data.KEY=VALUE or model.KEY=VALUE")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value}"]))["v"]
        if section == "model" and name not in _RUNTIME_MODEL_KEYS:
            raise ConfigError(f"model.{name} cannot change at render time; allowed: {', '.join(_RUNTIME_MODEL_KEYS)}")
        (data if section == "data" else model)[name] = parsed
    return data, model


def load_for_scene(run_dir, scene_path, overrides=(), device: str = "auto"):
    """:func:`neural3d.load` of ``run_dir`` rendering from the scene at ``scene_path``."""
    from neural3d.api import load

    data, model = _split_overrides(overrides)
    if not Path(scene_path).exists():
        raise FileNotFoundError(f"scene '{scene_path}' does not exist")
    data.setdefault("ndc", False)  # GNT casts world-space rays, also through forward-facing scenes
    loaded = load(
        run_dir, device=device, data={**data, "path": str(scene_path), "synth": {"enabled": False}}, model=model
    )
    if not loaded.model.needs_scene:
        raise ValueError(f"{run_dir}: method '{loaded.config.method}' does not render from source views")
    return loaded


def _cmd_eval(args) -> int:
    from neural3d.evaluation.evaluate import evaluate_split

    loaded = load_for_scene(args.run_dir, args.scene, args.overrides, args.device)
    scene = loaded.model.attached_scene
    out_dir = Path(args.out) if args.out else Path(args.run_dir) / "eval" / f"{Path(args.scene).name}-{args.split}"
    res = evaluate_split(
        loaded.model,
        scene,
        args.split,
        chunk=args.chunk or loaded.config.eval.chunk,
        out_dir=out_dir,
        max_images=args.max_images,
    )
    res.update(step=loaded.step, scene=str(Path(args.scene).resolve()))
    (out_dir / "metrics.json").write_text(json.dumps(res, indent=2))
    means = "  ".join(f"{k.upper()} {v:.4f}" for k, v in res["mean"].items())
    print(f"[neural3d] {args.scene} {args.split} ({len(res['per_image'])} images, step {loaded.step}): {means}")
    print(f"[neural3d] metrics and images: {out_dir}")
    return 0


def _cmd_render(args) -> int:
    from neural3d.media.frames import render_frames, write_frames
    from neural3d.media.paths import path_cameras

    loaded = load_for_scene(args.run_dir, args.scene, args.overrides, args.device)
    cams = path_cameras(loaded.model.attached_scene, args.path, n_frames=args.frames, scale=args.scale)
    outputs = [o.strip() for o in args.outputs.split(",") if o.strip()]
    out = write_frames(
        render_frames(loaded, cams, outputs, chunk=args.chunk or loaded.config.eval.chunk), Path(args.out), fps=args.fps
    )
    print(f"[neural3d] wrote {len(cams)} frames ({', '.join(outputs)}) of {args.scene} to {out}")
    return 0


def import_official(checkpoint, data_path, out_dir, *, pixel_center: float = 0.0, overrides=()) -> Path:
    """Write a neural3d run directory around an official GNT checkpoint; returns the run directory."""
    from omegaconf import OmegaConf

    from neural3d.config import build_config, to_yaml
    from neural3d.methods.gnt.checkpoint import config_from_official, official_to_state_dict, read_checkpoint
    from neural3d.training import checkpoint as ckpt_io
    from neural3d.training.setup import load_scene_from_config, scene_info

    raw = read_checkpoint(checkpoint)
    model_cfg = OmegaConf.to_container(config_from_official(raw))
    cfg, _ = build_config(
        {
            "method": "gnt",
            "model": model_cfg,
            "data": {"path": str(data_path), "ndc": False, "pixel_center": pixel_center},
        },
        overrides,
        source=str(checkpoint),
    )
    info = scene_info(load_scene_from_config(cfg.data))
    out = Path(out_dir)
    state = {
        "step": 0,
        "elapsed": 0.0,
        "method": "gnt",
        "config": OmegaConf.to_container(cfg, resolve=True),
        "scene": info.state(),
        "model": official_to_state_dict(raw),
    }
    ckpt_io.save_checkpoint(out, 0, state)
    ckpt_io.atomic_write_text(to_yaml(cfg), out / "config.yaml")
    ckpt_io.atomic_write_text(
        json.dumps(
            {
                "method": "gnt",
                "scene": info.state(),
                "data_path": str(Path(data_path).resolve()),
                "imported_from": str(Path(checkpoint).resolve()),
            },
            indent=2,
        ),
        out / "run.json",
    )
    return out


def _cmd_import(args) -> int:
    out = import_official(
        args.checkpoint, args.data, args.out, pixel_center=args.pixel_center, overrides=args.overrides
    )
    print(f"[neural3d] wrote run {out} from official GNT checkpoint {args.checkpoint}")
    return 0


def add_parser(subparsers) -> None:
    g = subparsers.add_parser("gnt", help="generalizable rendering (GNT): unseen scenes, official checkpoints")
    gsub = g.add_subparsers(dest="gnt_command", required=True)

    e = gsub.add_parser("eval", help="evaluate a GNT run on a scene given only its images and poses")
    e.add_argument("run_dir")
    e.add_argument("scene", help="scene folder (its train split gives the source views)")
    e.add_argument("overrides", nargs="*", help="data.KEY=VALUE (e.g. data.factor=4) or model.n_samples=192")
    e.add_argument("--split", default="test")
    e.add_argument("--out", default=None, help="output directory (default RUN/eval/SCENE-SPLIT)")
    e.add_argument("--max-images", type=int, default=None)
    e.add_argument("--chunk", type=int, default=None, help="rays per forward pass (memory bound)")
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
    r.add_argument("--outputs", default="rgb,depth")
    r.add_argument("--chunk", type=int, default=None)
    r.add_argument("--device", default="auto")
    r.set_defaults(fn=_cmd_render)

    i = gsub.add_parser("import", help="make a neural3d run from an official GNT checkpoint (.pth)")
    i.add_argument("checkpoint")
    i.add_argument("--data", required=True, help="scene whose images serve as source views")
    i.add_argument("--out", required=True, help="run directory to write")
    i.add_argument("--pixel-center", type=float, default=0.0, help="0.0 reproduces GNT's rays (default)")
    i.add_argument("overrides", nargs="*", help="config overrides, e.g. model.n_samples=192 data.factor=4")
    i.set_defaults(fn=_cmd_import)
