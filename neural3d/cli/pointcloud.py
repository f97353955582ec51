"""``neural3d pointcloud train CONFIG`` / ``neural3d pointcloud eval RUN_DIR`` (point-cloud ViTs)."""

from __future__ import annotations

import json
from pathlib import Path


def _cmd_train(args) -> int:
    from neural3d.apps.point_classification.config import load_pc_config
    from neural3d.apps.point_classification.train import PointCloudTrainer, pc_run_dir
    from neural3d.cli.run_flags import check_resumable, run_mode
    from neural3d.training import distributed as dist

    cfg = load_pc_config(args.config, args.overrides)
    resume, overwrite = run_mode(args)
    check_resumable(pc_run_dir(cfg), bool(args.resume))
    with dist.command_session():  # under torchrun: data-parallel, rank 0 writes, evaluates and speaks
        trainer = PointCloudTrainer(cfg, resume=resume, overwrite=overwrite)
        world = trainer.loop.world_size
        procs = f", {world} processes" if world > 1 else ""
        dist.print_main(
            f"[neural3d] run directory: {trainer.run_dir}  (device: {trainer.device}, task: {cfg.task}, "
            f"{len(trainer.train_set)} train / {len(trainer.test_set)} test shapes{procs})"
        )
        metrics = trainer.train()
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        dist.print_main(f"[neural3d] trained {trainer.step} steps in {trainer.elapsed:.1f} s; test {shown}")
        from neural3d.cli.next_steps import after_pointcloud_training

        dist.print_main("\n".join(after_pointcloud_training(trainer.run_dir)))
    return 0


def _cmd_eval(args) -> int:
    from neural3d.apps.point_classification.metrics import evaluate_set
    from neural3d.apps.point_classification.train import build_datasets, load_pc_run
    from neural3d.config import replace
    from neural3d.training.run_dir import RunDir

    model, cfg, state = load_pc_run(args.run_dir, device=args.device)
    if args.split:
        cfg = replace(cfg, {"data": {"test_split": args.split}}, source="--split")
    _, test = build_datasets(cfg)
    part_mask = state["meta"].get("part_mask")
    res = evaluate_set(model, test, cfg.task, batch_size=cfg.eval_batch_size, part_mask=part_mask, progress=True)
    res = {**res, "step": int(state["step"]), "n_shapes": len(test), "split": cfg.data.test_split}
    out = Path(args.out) if args.out else RunDir(args.run_dir).eval_dir() / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    shown = "  ".join(f"{k} {v:.4f}" for k, v in res.items() if isinstance(v, float))
    print(f"[neural3d] {cfg.task} {res['split']} ({len(test)} shapes, step {res['step']}): {shown}")
    print(f"[neural3d] metrics: {out}")
    return 0


def add_parser(subparsers) -> None:
    from neural3d.cli.run_flags import add_run_flags

    p = subparsers.add_parser("pointcloud", help="point-cloud ViT encoders: classification / part segmentation")
    sub = p.add_subparsers(dest="pointcloud_command", required=True)
    t = sub.add_parser("train", help="train from a YAML config (configs/pointcloud_*.yaml)")
    t.add_argument("config")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=100 model.size=small")
    add_run_flags(t)
    t.set_defaults(fn=_cmd_train)
    e = sub.add_parser("eval", help="evaluate a run on its test split; writes RUN_DIR/eval/metrics.json")
    e.add_argument("run_dir")
    e.add_argument("--split", default=None, help="data split (default: the config's data.test_split)")
    e.add_argument("--out", default=None, help="metrics JSON path")
    e.add_argument("--device", default="auto")
    e.set_defaults(fn=_cmd_eval)
