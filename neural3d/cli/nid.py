"""``neural3d nid``: train a neural implicit dictionary, fit images with it, train a 3D scene-family dictionary."""

from __future__ import annotations


def _train_dict(args) -> int:
    from pathlib import Path

    from neural3d.apps.image_dictionary.run import train_from_config
    from neural3d.cli.run_flags import check_resumable, run_mode
    from neural3d.config import load
    from neural3d.methods.nid.config import NIDTrainConfig
    from neural3d.training import distributed as dist

    cfg = load(NIDTrainConfig, args.config, args.overrides)
    resume, overwrite = run_mode(args)
    check_resumable(Path(cfg.output_dir), bool(args.resume))
    with dist.command_session():  # under torchrun: data-parallel, rank 0 writes, evaluates and speaks
        res = train_from_config(cfg, source=args.config, resume=resume, overwrite=overwrite)
        if dist.rank_and_world()[0] != 0:
            return 0
    m = res.metrics
    print(
        f"[neural3d] dictionary: {m['num_experts']} experts, train PSNR {m['train_psnr']:.2f} dB, "
        f"load cv {m['load_cv']:.3f}, {m['dead_experts']} dead; run directory {res.run_dir}"
    )
    from neural3d.cli.next_steps import after_dictionary_training

    print("\n".join(after_dictionary_training(res.run_dir)))
    return 0


def _fit(args) -> int:
    from neural3d.apps.image_dictionary.run import fit_from_config
    from neural3d.config import load
    from neural3d.methods.nid.config import NIDFitConfig

    target, *trailing = args.target  # key=value overrides may also follow the target
    cfg = load(NIDFitConfig, args.config, [*args.overrides, *trailing])
    m = fit_from_config(cfg, target, source=args.config)
    hidden = f", hidden-region PSNR {m['psnr_hidden']:.2f} dB" if "psnr_hidden" in m else ""
    print(
        f"[neural3d] fitted {target}: PSNR {m['psnr']:.2f} dB{hidden} in {m['seconds']:.2f} s; outputs in {cfg.output}"
    )
    return 0


def _train_scenes(args) -> int:
    from pathlib import Path

    from neural3d.cli.run_flags import check_resumable, run_mode
    from neural3d.config import load
    from neural3d.methods.nid.family import NIDFamilyConfig, train_family
    from neural3d.training import distributed as dist

    cfg = load(NIDFamilyConfig, args.config, args.overrides)
    resume, overwrite = run_mode(args)
    check_resumable(Path(cfg.output_dir), bool(args.resume))
    with dist.command_session():  # under torchrun: data-parallel, rank 0 writes and speaks
        train_family(cfg, run_dir=Path(cfg.output_dir), resume=resume, overwrite=overwrite, log=dist.print_main)
        if dist.rank_and_world()[0] != 0:
            return 0
    print(
        f"[neural3d] scene-family dictionary in {cfg.output_dir}/checkpoints (use it with method: nid, "
        f"model.dictionary=<checkpoint>)"
    )
    return 0


def add_parser(subparsers) -> None:
    from neural3d.cli.run_flags import add_run_flags

    p = subparsers.add_parser("nid", help="neural implicit dictionaries (train, fit images, 3D scene families)")
    sub = p.add_subparsers(dest="nid_command", required=True)
    t = sub.add_parser("train-dict", help="train a dictionary on image patches (configs/nid_*.yaml)")
    t.add_argument("config")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=500 gate.topk=8")
    add_run_flags(t, restart_alias=True)
    t.set_defaults(fn=_train_dict)
    f = sub.add_parser("fit", help="fit an unseen image with a frozen dictionary")
    f.add_argument("config")
    f.add_argument("overrides", nargs="*", help="key=value overrides, e.g. observed_fraction=0.1 method=gradient")
    f.add_argument(
        "--target",
        required=True,
        nargs="+",
        metavar="IMAGE",
        help="image file to fit (key=value overrides may follow it)",
    )
    f.set_defaults(fn=_fit)
    s = sub.add_parser("train-scenes", help="train a 3D dictionary across a generated scene family")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=500 n_scenes=4")
    add_run_flags(s)
    s.set_defaults(fn=_train_scenes)
