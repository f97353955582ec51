"""GNT cross-scene benchmark on CPU: train on generated scenes, evaluate on UNSEEN generated scenes.

    python benchmarks/bench_gnt.py [--work runs/bench_gnt] [--train-seconds 1200] [--phase all|train|eval]

1. Writes a family of ``--n-train-scenes`` synthetic object scenes (Blender layout, ``--res`` px, 16
   training views each) and ``--n-eval-scenes`` further scenes from another family seed (never trained on).
2. Trains GNT across the training family for ``--train-seconds`` of training time (resumable: rerun to
   continue the same run). ``--anneal-steps N`` then fine-tunes those weights for N steps with a decaying
   learning rate (a second run, ``gnt-xscene-anneal``), and that run is the one evaluated.
   ``--anneal-from RUN --anneal-views V --anneal-lr LR --anneal-name NAME`` chain further stages (e.g. 10
   training sources, from the anneal's weights); the evaluated run's stages are followed back through
   ``model.init_checkpoint`` and reported with their steps and seconds. ``--anneal-scenes N`` trains that
   stage on a larger family of the same seed (``WORK/family_N``; its first scenes are the main run's).
3. On every test view of every unseen scene, side by side: GNT (source views = the ``--eval-source-views``
   nearest of that scene's training images -- 10, the paper's evaluation protocol, although training draws
   6; no optimisation) against two baselines on the same views and the same source views --
   * ``nearest image``: the nearest source image itself;
   * ``reprojection``: the target's TRUE depth (the generator's exact depth maps) back-projected and
     read from the nearest source view that sees the point (z-test against the source's true depth).
   PSNR / SSIM per method, their differences, and GNT's render rays/s. ``--unseen-seed S`` evaluates on
   another unseen family (a check that the recipe was not fitted to the usual one, seed 2).
4. Rays/s and FLOPs per ray of the network at the benchmark size and the paper size (depth 8, 64 and
   192 samples, 10 views), measured interleaved; ``os.getloadavg()`` printed (the CPU is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine
from curves import RESULTS, gnt_result_files, plot_gnt

BENCH_MODEL = {
    "depth": 4,
    "n_samples": 24,
    "n_samples_eval": 48,
    "n_source_views": 6,
    "pool_factor": 2,
    "dropout": 0.0,
    "lindisp": True,
    "colour_augment": True,
}
ADAM = {"warmup_steps": 50, "betas": [0.9, 0.999], "eps": 1e-8}


def _family(folder: Path, n: int, seed: int, res: int, n_test: int) -> Path:
    """``folder``: a generated family of ``n`` Blender-layout scenes (16 training views each), written once."""
    from neural3d.data.synthetic import write_scene_family

    if not (folder / "family.json").is_file():
        write_scene_family(folder, n_scenes=n, seed=seed, layout="blender", res=res, n_train=16, n_val=1, n_test=n_test)
    return folder


def write_data(work: Path, n_train: int, n_eval: int, res: int, unseen_seed: int = 2) -> tuple[Path, list[Path]]:
    """The training family (seed 1) and the unseen family ``unseen_seed``'s scene folders."""
    fam = _family(work / "family", n_train, 1, res, n_test=1)
    unseen = _family(
        work / ("unseen" if unseen_seed == 2 else f"unseen_seed{unseen_seed}"), n_eval, unseen_seed, res, n_test=4
    )
    return fam, sorted(p for p in unseen.iterdir() if p.is_dir())


def larger_family(work: Path, n: int, res: int) -> Path:
    """``work/family_{n}``: the training family's seed (1) with ``n`` scenes; its first scenes are the family's."""
    return _family(work / f"family_{n}", n, 1, res, n_test=1)


def _run_trainer(
    work: Path, name: str, fam: Path, n_train: int, eval_scene: Path, res: int, trainer: dict, seed: int = 0, **model
) -> Path:
    """Train (or resume) run ``work/runs/name`` on the generated family; returns the run directory."""
    from neural3d.config import build_config
    from neural3d.training import checkpoint as ckpt
    from neural3d.training.trainer import Trainer

    cfg, _ = build_config(
        {
            "method": "gnt",
            "experiment": name,
            "output_dir": str(work / "runs"),
            "seed": seed,
            "data": {"path": str(eval_scene)},
            "model": {
                **BENCH_MODEL,
                **model,
                "family": {"root": str(fam), "n_scenes": n_train, "layout": "blender", "res": res},
            },
            "trainer": {
                "batch_size": 128,
                "log_every": 25,
                "checkpoint_every": 100,
                "eval_every": 0,
                "progress": False,
                **trainer,
            },
        }
    )
    run = work / "runs" / name
    trainer = Trainer(cfg, resume=ckpt.latest_checkpoint(run) is not None, overwrite=True)
    goal = f"{cfg.trainer.max_seconds:.0f} s" if cfg.trainer.max_seconds else f"step {cfg.trainer.steps}"
    print(f"training {trainer.run_dir} from step {trainer.step} ({trainer.elapsed:.0f} s done) to {goal}", flush=True)
    trainer.train()
    print(f"trained {trainer.step} steps in {trainer.elapsed:.0f} s of training time", flush=True)
    return run


def train(work: Path, fam: Path, n_train: int, eval_scene: Path, seconds: float, res: int) -> Path:
    """The main run: constant-ish learning rate (1e-3, exp towards 5e-4 over 1M steps), bounded by seconds."""
    optim = {**ADAM, "lr": 1e-3, "lr_final": 5e-4}
    return _run_trainer(
        work, "gnt-xscene", fam, n_train, eval_scene, res, {"steps": 1_000_000, "max_seconds": seconds, "optim": optim}
    )


def anneal_name(views: int, name: str = "") -> str:
    if name:
        return name
    return "gnt-xscene-anneal" if views == BENCH_MODEL["n_source_views"] else f"gnt-xscene-anneal-v{views}"


def anneal(
    work: Path,
    fam: Path,
    n_train: int,
    eval_scene: Path,
    steps: int,
    res: int,
    base: Path,
    lr: float = 5e-4,
    views: int = BENCH_MODEL["n_source_views"],
    name: str = "",
) -> Path:
    """Fine-tune ``base``'s latest weights for ``steps`` with the learning rate decaying ``lr`` -> 2.5e-5.

    A separate run (:func:`anneal_name`, fresh Adam moments, other batches: seed 1) initialised from
    ``base``'s latest checkpoint at its first start, training with ``views`` source views; resumable.
    """
    from neural3d.training import checkpoint as ckpt

    init = ckpt.latest_checkpoint(base)
    if init is None:
        raise SystemExit(f"--anneal-steps: {base} has no checkpoint to start from")
    optim = {**ADAM, "lr": lr, "lr_final": 2.5e-5, "schedule": "exp"}
    return _run_trainer(
        work,
        anneal_name(views, name),
        fam,
        n_train,
        eval_scene,
        res,
        {"steps": steps, "max_seconds": 0.0, "optim": optim},
        seed=1,
        init_checkpoint=str(init),
        n_source_views=views,
    )


def _stages(run: Path) -> list[dict]:
    """The training stages behind ``run``'s latest weights, first first: {run, steps, seconds, scenes, source_views}.

    Follows ``model.init_checkpoint`` back through the runs it names, counting each at the checkpoint used.
    """
    from omegaconf import OmegaConf

    from neural3d.training import checkpoint as ckpt

    stages, path = [], ckpt.latest_checkpoint(run)
    while path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        run_dir = Path(path).parent.parent
        model = OmegaConf.load(run_dir / "config.yaml").model
        stages.insert(
            0,
            {
                "run": run_dir.name,
                "steps": int(state["step"]),
                "seconds": float(state["elapsed"]),
                "scenes": int(model.family.n_scenes),
                "source_views": int(model.n_source_views),
            },
        )
        init = model.get("init_checkpoint", "")
        path = Path(init) if init and (Path(init).parent.parent / "config.yaml").is_file() else None
    return stages


def _depth_map(scene, index: int) -> torch.Tensor:
    p = Path(scene.image_paths[index])
    return torch.from_numpy(np.load(p.parent.parent / "depth" / p.parent.name / f"{p.stem}.npy"))


def reprojection_baseline(scene, target: int, sources: torch.Tensor) -> torch.Tensor:
    """[H, W, 3]: target's true depth back-projected, coloured by the nearest source view that sees it."""
    from neural3d.methods.gnt.projection import project_to_pixels

    H, W = scene.height, scene.width
    depth = _depth_map(scene, target).reshape(-1)
    rays = scene.image_rays(target).flatten()  # pixel centres (u + 0.5, v + 0.5), t = z-depth
    pts = rays.origins + depth[:, None] * rays.directions
    cams = scene.cameras[sources]
    xy, front = project_to_pixels(pts, cams, scene.pixel_center)  # [V, P, 2] array-index coordinates
    grid = (2 * xy / torch.tensor([W - 1.0, H - 1.0]) - 1)[:, :, None]  # [V, P, 1, 2]
    imgs = scene.images[sources].permute(0, 3, 1, 2)
    col = torch.nn.functional.grid_sample(imgs, grid, align_corners=True)[..., 0].permute(0, 2, 1)  # [V, P, 3]
    src_depth = torch.stack([_depth_map(scene, int(i)) for i in sources])[:, None]
    sd = torch.nn.functional.grid_sample(src_depth, grid, mode="nearest", align_corners=True)[:, 0, :, 0]  # [V, P]
    w2c = cams.world_to_cameras()
    z = -(torch.einsum("vij,pj->vpi", w2c[:, :, :3], pts) + w2c[:, None, :, 3])[..., 2]
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= W - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= H - 1)
    visible = inside & front & ((sd - z).abs() < 0.03 * z)
    first = torch.where(visible.any(0), visible.float().argmax(0), torch.zeros_like(depth, dtype=torch.long))
    out = col[first, torch.arange(pts.shape[0])]
    out[depth <= 0] = scene.background.to(out)  # empty pixels show the background
    return out.reshape(H, W, 3)


def evaluate(run: Path, scenes: list[Path], n_views: int) -> dict:
    import neural3d
    from neural3d.evaluation.evaluate import render_image
    from neural3d.evaluation.metrics import psnr, ssim

    rows, gnt_time, gnt_rays = [], 0.0, 0
    for path in scenes:
        loaded = neural3d.load(run, data={"path": str(path)}, model={"n_source_views_eval": n_views}, device="cpu")
        model, scene = loaded.model, loaded.model.attached_scene
        for t in scene.split_indices("test").tolist():
            ctx = model.render_context(scene.cameras, t)
            gt = scene.images[t]
            start = time.perf_counter()
            out = render_image(model, scene, t, chunk=1024, context=ctx)
            gnt_time += time.perf_counter() - start
            gnt_rays += scene.height * scene.width
            preds = {
                "gnt": out["rgb"],
                "nearest image": scene.images[int(ctx.indices[0])],
                "reprojection": reprojection_baseline(scene, t, ctx.indices),
            }
            row = {"scene": path.name, "view": t}
            for k, img in preds.items():
                row[k] = {"psnr": float(psnr(img, gt)), "ssim": float(ssim(img, gt))}
            rows.append(row)
            print(
                f"  {path.name} view {t}: "
                + "  ".join(f"{k} {row[k]['psnr']:.2f}/{row[k]['ssim']:.3f}" for k in preds),
                flush=True,
            )
    methods = ("gnt", "nearest image", "reprojection")
    mean = {m: {q: float(np.mean([r[m][q] for r in rows])) for q in ("psnr", "ssim")} for m in methods}
    wins = {m: int(sum(r["gnt"]["psnr"] > r[m]["psnr"] for r in rows)) for m in methods[1:]}
    return {
        "per_view": rows,
        "mean": mean,
        "gnt_wins_psnr": wins,
        "n_views": len(rows),
        "gnt_render_rays_per_s": gnt_rays / max(gnt_time, 1e-9),
    }


def speed_and_flops(scene_path: Path, seconds: float) -> dict:
    """Network rays/s and FLOPs/ray, bench size vs paper sizes, measured interleaved (untrained weights)."""
    from torch.utils.flop_counter import FlopCounterMode

    from neural3d.data import load_scene
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

    scene = load_scene(scene_path)
    t = int(scene.split_indices("test")[0])
    rays = scene.image_rays(t).flatten()[:256]
    sizes = {
        "bench (depth 4, 48 eval samples, 6 views)": dict(BENCH_MODEL),
        "paper (depth 8, 64 samples, 10 views)": {"depth": 8, "n_samples": 64, "n_source_views": 10},
        "paper eval (depth 8, 192 samples, 10 views)": {"depth": 8, "n_samples": 192, "n_source_views": 10},
    }
    models, ctxs, res = {}, {}, {}
    for name, kw in sizes.items():
        m = GNTModel(GNTModelConfig(**kw), scene=SceneInfo(scene.scene_box, scene.near, scene.far)).eval()
        m.attach_scene(scene)
        ctx = m.render_context(scene.cameras, t)
        with torch.no_grad():
            m._features(ctx)  # cache the feature maps: per-ray cost only
            with FlopCounterMode(display=False) as fc:
                m(rays, ctx)
            feat_flops = FlopCounterMode(display=False)
            with feat_flops:
                m.feature_net(ctx.images[:1].permute(0, 3, 1, 2))
        models[name], ctxs[name] = m, ctx
        res[name] = {
            "flops_per_ray": fc.get_total_flops() / len(rays),
            "feature_flops_per_source_pixel": feat_flops.get_total_flops() / (scene.height * scene.width),
            "rays": 0,
            "seconds": 0.0,
        }
    end = time.perf_counter() + seconds
    with torch.no_grad():
        while time.perf_counter() < end:  # round robin: the shared CPU load hits every size alike
            for name, m in models.items():
                start = time.perf_counter()
                m(rays, ctxs[name])
                res[name]["seconds"] += time.perf_counter() - start
                res[name]["rays"] += len(rays)
    for r in res.values():
        r["rays_per_s"] = r["rays"] / max(r["seconds"], 1e-9)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/bench_gnt")
    ap.add_argument(
        "--plot", action="store_true", help="only redraw benchmarks/results/gnt_xscene.png from the gnt_xscene_*.json"
    )
    ap.add_argument("--phase", choices=["all", "train", "eval"], default="all")
    ap.add_argument("--train-seconds", type=float, default=1200.0)
    ap.add_argument("--speed-seconds", type=float, default=30.0)
    ap.add_argument(
        "--anneal-steps",
        type=int,
        default=0,
        help="then fine-tune the main run's weights this many steps with a decaying learning rate, "
        "and evaluate that run",
    )
    ap.add_argument("--anneal-lr", type=float, default=5e-4, help="the anneal's initial learning rate")
    ap.add_argument(
        "--anneal-views",
        type=int,
        default=BENCH_MODEL["n_source_views"],
        help="source views while annealing (another run name when not the default)",
    )
    ap.add_argument("--anneal-name", default="", help="run name of the anneal (default from --anneal-views)")
    ap.add_argument(
        "--anneal-from", default="", help="run directory whose weights the anneal starts from (default: the main run)"
    )
    ap.add_argument("--n-train-scenes", type=int, default=32)
    ap.add_argument(
        "--anneal-scenes",
        type=int,
        default=0,
        help="anneal on this many scenes of the training family's seed (a larger family, written to "
        "WORK/family_N; its first --n-train-scenes are the main run's scenes; 0: the main family)",
    )
    ap.add_argument("--n-eval-scenes", type=int, default=3)
    ap.add_argument("--unseen-seed", type=int, default=2, help="seed of the unseen family (2: the usual one)")
    ap.add_argument("--eval-source-views", type=int, default=10, help="source views at evaluation (paper: 10)")
    ap.add_argument("--out", default="", help="results file (default WORK/results.json)")
    ap.add_argument("--res", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared, oversubscribed CPU)")
    args = ap.parse_args()
    if args.plot:
        print(f"plot: {plot_gnt(gnt_result_files(), RESULTS / 'gnt_xscene.png')}")
        return
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    print(machine())
    print(f"load average at start: {os.getloadavg()}")
    fam, unseen = write_data(work, args.n_train_scenes, args.n_eval_scenes, args.res, args.unseen_seed)
    run = work / "runs" / "gnt-xscene"
    if args.phase in ("all", "train"):
        run = train(work, fam, args.n_train_scenes, unseen[0], args.train_seconds, args.res)
    if args.anneal_steps:
        base = Path(args.anneal_from) if args.anneal_from else run
        a_fam = larger_family(work, args.anneal_scenes, args.res) if args.anneal_scenes else fam
        a_n = args.anneal_scenes or args.n_train_scenes
        run = (
            anneal(
                work,
                a_fam,
                a_n,
                unseen[0],
                args.anneal_steps,
                args.res,
                base,
                args.anneal_lr,
                args.anneal_views,
                args.anneal_name,
            )
            if args.phase in ("all", "train")
            else work / "runs" / anneal_name(args.anneal_views, args.anneal_name)
        )
    if args.phase == "train":
        return
    result = {
        "machine": machine(),
        "config": {**BENCH_MODEL, "n_source_views_eval": args.eval_source_views},
        "res": args.res,
        "n_train_scenes": args.n_train_scenes,
        "unseen_seed": args.unseen_seed,
    }
    result["stages"] = _stages(run)
    result["train_steps"] = sum(st["steps"] for st in result["stages"])
    result["train_seconds"] = sum(st["seconds"] for st in result["stages"])
    print(
        f"evaluating step {result['train_steps']} ({result['train_seconds']:.0f} s of training: "
        + ", ".join(f"{st['run']} {st['steps']} ({st['scenes']} scenes)" for st in result["stages"])
        + f") on {len(unseen)} unseen scenes"
    )
    result["unseen"] = evaluate(run, unseen, args.eval_source_views)
    result["speed"] = speed_and_flops(unseen[0], args.speed_seconds)
    result["loadavg_end"] = os.getloadavg()
    print("\nmean over", result["unseen"]["n_views"], "unseen test views (PSNR dB / SSIM):")
    for m, v in result["unseen"]["mean"].items():
        print(f"  {m:14s} {v['psnr']:6.2f} / {v['ssim']:.3f}")
    g = result["unseen"]["mean"]["gnt"]["psnr"]
    for m in ("nearest image", "reprojection"):
        print(
            f"  GNT - {m}: {g - result['unseen']['mean'][m]['psnr']:+.2f} dB; GNT better on "
            f"{result['unseen']['gnt_wins_psnr'][m]}/{result['unseen']['n_views']} views"
        )
    print(f"  GNT full-image render (incl. features): {result['unseen']['gnt_render_rays_per_s']:.0f} rays/s")
    base = None
    for name, r in result["speed"].items():
        base = base or r["rays_per_s"]
        print(
            f"  {name}: {r['rays_per_s']:8.0f} rays/s (x{r['rays_per_s'] / base:.2f}), "
            f"{r['flops_per_ray'] / 1e6:.2f} MFLOP/ray, "
            f"feature net {r['feature_flops_per_source_pixel'] / 1e3:.0f} kFLOP per source pixel"
        )
    print(f"load average at end: {result['loadavg_end']}")
    out = Path(args.out) if args.out else work / "results.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out}")
    if out.parent.resolve() == RESULTS.resolve():  # the curve over every kept result, this one included
        print(f"plot: {plot_gnt(gnt_result_files(), RESULTS / 'gnt_xscene.png')}")


if __name__ == "__main__":
    main()
