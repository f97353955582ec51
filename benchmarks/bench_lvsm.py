"""LVSM against GNT and two baselines on unseen generated scenes, at equal CPU training time.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lvsm.py --work /tmp/bench_lvsm --cpu-seconds 600 \\
        --eval-every 120 --out benchmarks/results/lvsm_vs_gnt.json            # all three runs in one process

    # or one process per run (each keeps its own CPU clock), continuing runs that used 120 s, then merged:
    ... --runs gnt --resume-from 120 --out part_gnt.json   (likewise lvsm-decoder-only, lvsm-encoder-decoder)
    ... --phase eval --resume-from 120 --out part_120.json                     # the curve's point at 120 s
    ... --merge part_*.json --out benchmarks/results/lvsm_vs_gnt.json          # + the PSNR-vs-CPU-s plot (.png)
    ... --phase speed --out benchmarks/results/lvsm_render_speed.json

1. The data of GNT's cross-scene bench (``bench_gnt.write_data``): 32 generated 48×48 object scenes (seed 1,
   16 training views each) to train on, and the unseen family (seed 2: 3 scenes × 4 test views) to evaluate on.
2. The runs train from scratch (or continue, ``--resume-from``: exact resume) in interleaved turns of ``--slice``
   seconds, each until it has used ``--cpu-seconds`` of this process's CPU time (``time.process_time``, one torch
   thread): GNT at the bench's size (depth 4, 24 samples, 6 sources), LVSM decoder-only and LVSM
   encoder-decoder at bench sizes (``LVSM_SIZES``). Every ``--eval-every`` CPU seconds all runs are saved and
   evaluated (not counted in the clock): a point of the curve; the JSON and its plot are rewritten (atomically).
3. On the 12 unseen test views, side by side: each run (GNT with the paper's 10 nearest sources, LVSM with
   ``--lvsm-sources``), the nearest source image itself, and the target's TRUE depth reprojected from the
   nearest source that sees it (an oracle). PSNR / SSIM.
4. ``--phase speed``: frames/s of one LVSM forward pass per frame at 64² and 256² (bench sizes; paper sizes at
   64²), the encoder-decoder with and without reusing its encoded latents, GNT's rays/s and frames/s at the same
   sizes, all in process CPU time; parameters and FLOPs per frame (``torch.utils.flop_counter`` and by hand).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gnt import ADAM, BENCH_MODEL, reprojection_baseline, write_data  # noqa: E402
from common import machine  # noqa: E402

LVSM_SIZES = {
    "lvsm-decoder-only": {"variant": "decoder_only", "width": 128, "n_layers": 4},
    "lvsm-encoder-decoder": {
        "variant": "encoder_decoder",
        "width": 128,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "n_latents": 64,
    },
}
LVSM_TRAIN = {"patch_size": 8, "n_views_min": 2, "n_views_max": 6, "targets_per_step": 2}
LVSM_OPTIM = {
    "optimizer": "adamw",
    "lr": 4e-4,
    "schedule": "constant",
    "warmup_steps": 100,
    "betas": [0.9, 0.95],
    "eps": 1e-8,
    "weight_decay": 0.05,
    "grad_clip": 1.0,
}
PAPER = {
    "lvsm decoder-only, paper (768, 24 layers)": {"variant": "decoder_only", "width": 768, "n_layers": 24},
    "lvsm encoder-decoder, paper (768, 12 + 12, 3072 latents)": {
        "variant": "encoder_decoder",
        "width": 768,
        "encoder_layers": 12,
        "decoder_layers": 12,
        "n_latents": 3072,
    },
}


def _config(method: str, name: str, work: Path, fam: Path, eval_scene: Path, res: int, n_train: int, model: dict):
    from neural3d.config import build_config

    family = {"root": str(fam), "n_scenes": n_train, "layout": "blender", "res": res}
    optim = {**ADAM, "lr": 1e-3, "lr_final": 5e-4} if method == "gnt" else LVSM_OPTIM
    cfg, _ = build_config(
        {
            "method": method,
            "experiment": name,
            "output_dir": str(work / "runs"),
            "seed": 0,
            "data": {"path": str(eval_scene)},
            "model": {**model, "family": family},
            "trainer": {
                "steps": 10_000_000,
                "batch_size": 128,
                "log_every": 50,
                "checkpoint_every": 0,
                "eval_every": 0,
                "progress": False,
                "optim": optim,
            },
        }
    )
    return cfg


def train_interleaved(
    trainers: dict, milestones: list[float], slice_s: float, on_milestone=None, start: float = 0.0
) -> dict:
    """Turns of ``slice_s`` wall seconds per trainer until each has used ``milestones[i]`` of CPU time (``start``:
    CPU seconds the resumed runs had used); at every milestone all runs are saved and ``on_milestone(cpu_seconds,
    stats)`` is called (its time is not counted)."""
    used = dict.fromkeys(trainers, start)
    wall = dict.fromkeys(trainers, 0.0)
    stats: dict = {}
    for target in sorted(milestones):
        while any(used[k] < target for k in trainers):
            for name, tr in trainers.items():
                if used[name] >= target:
                    continue
                w0, c0 = time.perf_counter(), time.process_time()
                while time.perf_counter() - w0 < slice_s and used[name] + time.process_time() - c0 < target:
                    tr.train_step()
                used[name] += time.process_time() - c0
                wall[name] += time.perf_counter() - w0
            print(
                "  " + "  ".join(f"{k}: {trainers[k].step} steps, {used[k]:.0f} cpu-s" for k in trainers),
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        for tr in trainers.values():
            tr.save()
        stats = {
            k: {"steps": trainers[k].step, "cpu_seconds": used[k], "wall_seconds": wall[k], "load": os.getloadavg()[0]}
            for k in trainers
        }
        if on_milestone is not None:
            on_milestone(target, stats)
    return stats


def evaluate(runs: dict[str, tuple[Path, int]], scenes: list[Path]) -> dict:
    """Every run (and, with GNT, both baselines on GNT's sources) on every test view of ``scenes``: PSNR, SSIM."""
    import neural3d
    from neural3d.evaluation.evaluate import render_image
    from neural3d.evaluation.metrics import psnr, ssim

    rows = []
    for path in scenes:
        loaded = {
            name: neural3d.load(run, data={"path": str(path)}, model={"n_source_views_eval": n}, device="cpu")
            for name, (run, n) in runs.items()
        }
        scene = next(iter(loaded.values())).model.attached_scene
        for t in scene.split_indices("test").tolist():
            gt, row = scene.images[t], {"scene": path.name, "view": t}
            preds = {}
            for name, ld in loaded.items():
                ctx = ld.model.render_context(scene.cameras, t)
                preds[name] = render_image(ld.model, ld.model.attached_scene, t, chunk=1024, context=ctx)["rgb"]
                if name == "gnt":
                    preds["nearest image"] = scene.images[int(ctx.indices[0])]
                    preds["reprojection (true depth)"] = reprojection_baseline(scene, t, ctx.indices)
            for k, img in preds.items():
                row[k] = {"psnr": float(psnr(img, gt)), "ssim": float(ssim(img, gt))}
            rows.append(row)
            print(f"  {path.name} view {t}: " + "  ".join(f"{k} {row[k]['psnr']:.2f}" for k in preds), flush=True)
    methods = [k for k in rows[0] if k not in ("scene", "view")]
    mean = {m: {q: float(np.mean([r[m][q] for r in rows])) for q in ("psnr", "ssim")} for m in methods}
    return {"per_view": rows, "mean": mean, "n_views": len(rows)}


def _lvsm_model(kw: dict, info):
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig

    return LVSMModel(LVSMModelConfig(**{**LVSM_TRAIN, **kw}), scene=info).eval()


def lvsm_flops(kw: dict, size: int, n_sources: int, reuse: bool = False) -> float:
    """FLOPs of one LVSM frame (``n_sources`` source views, size² pixels), counted by ``torch.utils.flop_counter``
    on the meta device (no compute). ``reuse``: encoder-decoder latents encoded beforehand (the decoder alone)."""
    from torch.utils.flop_counter import FlopCounterMode

    from neural3d.methods.lvsm.network import LVSMNetwork

    cfg = {**LVSM_TRAIN, **kw}
    with torch.device("meta"):
        net = LVSMNetwork(
            cfg["variant"],
            dim=cfg["width"],
            head_dim=64,
            mlp_ratio=4,
            n_layers=cfg.get("n_layers", 2),
            encoder_layers=cfg.get("encoder_layers", 1),
            decoder_layers=cfg.get("decoder_layers", 1),
            n_latents=cfg.get("n_latents", 64),
            patch_size=cfg["patch_size"],
            qk_norm=True,
        )
        src = torch.empty(1, n_sources, 9, size, size)
        tgt = torch.empty(1, 1, 6, size, size)
        with torch.no_grad():
            latents = net.encode(src) if reuse else None
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            if cfg["variant"] == "encoder_decoder":
                net.decode(latents if reuse else net.encode(src), tgt)
            else:
                net(src, tgt)
    return float(fc.get_total_flops())


def lvsm_flops_analytic(kw: dict, size: int, n_sources: int, reuse: bool = False) -> float:
    """FLOPs of one LVSM frame counted by hand (2 per multiply-add; matmuls only: norms, GELU, softmax left out).

    A block over N tokens of width d: qkv 6Nd², attention output 2Nd², MLP 16Nd² (ratio 4), scores QKᵀ and their
    product with V 2N²d each -> 24Nd² + 4N²d. Tokenizers 2·tokens·(c·p²)·d, decoder 2n·d·3p². ``reuse``: the
    encoder-decoder's latents are encoded once for many frames (decoder only).
    """
    cfg = {**LVSM_TRAIN, **kw}
    d, p = cfg["width"], cfg["patch_size"]
    n = (size // p) ** 2  # patches of one view

    def blocks(layers: int, tokens: int) -> float:
        return layers * (24 * tokens * d * d + 4 * tokens * tokens * d)

    src_tok, tgt_tok, dec = 2 * n_sources * n * 9 * p * p * d, 2 * n * 6 * p * p * d, 2 * n * d * 3 * p * p
    if cfg["variant"] == "decoder_only":
        return src_tok + tgt_tok + dec + blocks(cfg["n_layers"], (n_sources + 1) * n)
    lat = cfg["n_latents"]
    encoder = src_tok + blocks(cfg["encoder_layers"], lat + n_sources * n)
    return (0 if reuse else encoder) + tgt_tok + dec + blocks(cfg["decoder_layers"], n + lat)


def _resized(base, size: int):
    """``base`` with its images and intrinsics scaled to size × size."""
    from dataclasses import replace

    c, scale = base.cameras, size / base.width
    full = torch.full_like(c.width, size)
    cams = replace(c, fx=c.fx * scale, fy=c.fy * scale, cx=c.cx * scale, cy=c.cy * scale, width=full, height=full)
    images = torch.nn.functional.interpolate(base.images.permute(0, 3, 1, 2), size=(size, size), mode="bilinear")
    return replace(base, images=images.permute(0, 2, 3, 1).contiguous(), cameras=cams, depths=None, alphas=None)


def _lvsm_speed_jobs(res: dict, jobs: list, scene, rays, t: int, size: int, n_sources: int, info) -> None:
    """Add LVSM's render jobs at ``size``² (bench sizes, and the paper sizes at 64²) and their FLOPs to ``res``."""
    from neural3d.methods.lvsm.batches import LVSMContext

    sizes = {**LVSM_SIZES, **(PAPER if size == 64 else {})}
    for name, kw in sizes.items():
        m = _lvsm_model({**kw, "n_source_views_eval": n_sources}, info)
        m.attach_scene(scene)
        ctx = m.render_context(scene.cameras, t)
        variants = [("", LVSMContext(ctx.views, ctx.frame), False)]  # without latents: encoded in every forward
        if kw["variant"] == "encoder_decoder":
            with torch.no_grad():
                variants.append((", latents reused", m.encode_context(ctx), True))
        for suffix, c, reuse in variants:
            key = f"{name}{suffix} @ {size}²"
            res[key] = {
                "params": sum(p.numel() for p in m.parameters()),
                "frames": 0,
                "seconds": 0.0,
                "gflops_per_frame": lvsm_flops(kw, size, n_sources, reuse) / 1e9,
                "gflops_per_frame_analytic": lvsm_flops_analytic(kw, size, n_sources, reuse) / 1e9,
            }
            jobs.append((key, m, rays, c, 1.0))
    if size == 256:
        for name, kw in PAPER.items():
            res[f"{name} @ {size}²"] = {
                "gflops_per_frame": lvsm_flops(kw, size, n_sources) / 1e9,
                "gflops_per_frame_analytic": lvsm_flops_analytic(kw, size, n_sources) / 1e9,
                "params": _lvsm_params(kw, info),
            }


def _lvsm_params(kw: dict, info) -> int:
    """Parameters of an LVSM of config ``kw``, built on the meta device."""
    with torch.device("meta"):
        return sum(p.numel() for p in _lvsm_model(kw, info).parameters())


def _gnt_speed_job(res: dict, jobs: list, scene, rays, t: int, size: int, info) -> None:
    """GNT at ``size``²: 1,024 rays per call with the source feature maps cached (as across the frames of a camera
    path in one scene); FLOPs per frame = per-ray FLOPs (256 rays counted) × pixels, the feature maps apart."""
    from torch.utils.flop_counter import FlopCounterMode

    from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

    m = GNTModel(GNTModelConfig(**{**BENCH_MODEL, "n_source_views_eval": 10}), scene=info).eval()
    m.attach_scene(scene)
    ctx = m.render_context(scene.cameras, t)
    with torch.no_grad():
        m._features(ctx)  # cache the feature maps: the per-ray cost alone is counted below
        with FlopCounterMode(display=False) as fc:
            m.render_rays(rays.flatten()[:256], chunk=1024, context=ctx)
        with FlopCounterMode(display=False) as feat:
            m.feature_net(ctx.images[:1].permute(0, 3, 1, 2))
    key = f"gnt (bench size, 48 samples, 10 sources) @ {size}²"
    res[key] = {
        "params": sum(p.numel() for p in m.parameters()),
        "frames": 0,
        "seconds": 0.0,
        "gflops_per_frame": fc.get_total_flops() * size * size / 256 / 1e9,
        "feature_gflops_per_source_view": feat.get_total_flops() / 1e9,
    }
    jobs.append((key, m, rays.flatten()[:1024], ctx, 1024 / (size * size)))


def render_speed(scene_path: Path, seconds: float, n_sources: int, methods: Sequence[str] = ("lvsm", "gnt")) -> dict:
    """Frames/s (one LVSM forward pass per frame; GNT: 1,024 rays per call), round robin; params, FLOPs/frame.

    Time is this process's CPU time (``time.process_time``, one thread) per call, so the load of other processes
    counts little. LVSM FLOPs: ``torch.utils.flop_counter`` on the meta device (exact op shapes, no compute) and
    counted by hand (:func:`lvsm_flops_analytic`); GNT's per ray from 256 real rays (feature maps cached), scaled, the
    feature maps' FLOPs per source view apart. The paper-size LVSMs run at 64² only (a 256² frame with 6 sources is
    about 6 TFLOPs: minutes on one core); at 256² their FLOPs and parameters are counted.
    """
    from neural3d.data import load_scene
    from neural3d.methods.base import SceneInfo

    base = load_scene(scene_path)
    info = SceneInfo(base.scene_box, base.near, base.far)
    res: dict = {}
    jobs: list = []
    for size in (64, 256):
        scene = _resized(base, size)
        t = int(scene.split_indices("test")[0])
        rays = scene.image_rays(t)
        if "lvsm" in methods:
            _lvsm_speed_jobs(res, jobs, scene, rays, t, size, n_sources, info)
        if "gnt" in methods:
            _gnt_speed_job(res, jobs, scene, rays, t, size, info)
    spent = 0.0
    with torch.no_grad():
        while spent < seconds:
            for key, m, r, ctx, frames in jobs:
                start = time.process_time()
                m.render_rays(r, chunk=1024, context=ctx)
                res[key]["seconds"] += time.process_time() - start
                res[key]["frames"] += frames
            spent = sum(r.get("seconds", 0.0) for r in res.values())
            print(f"  speed round: {spent:.0f} cpu-s (load {os.getloadavg()[0]:.1f})", flush=True)
    for key, r in res.items():
        if "seconds" in r:
            r["frames_per_s"] = r["frames"] / max(r["seconds"], 1e-9)
            size = int(key.rsplit("@ ", 1)[1][:-1])
            r["rays_per_s"] = r["frames_per_s"] * size * size
            r["gflops_per_s"] = r["frames_per_s"] * r["gflops_per_frame"]
        print(f"  {key}: {json.dumps({k: round(v, 4) for k, v in r.items()})}", flush=True)
    return res


def write_results(out: dict, path: Path | None) -> None:
    """The JSON (atomically) and, when there is a curve, its PSNR-vs-CPU-seconds plot next to it."""
    if path is None:
        return
    from neural3d.training.run_dir import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(out, indent=2), path)
    if out.get("curve"):
        plot_curve(out, path.with_suffix(".png"))


def plot_curve(out: dict, png: Path) -> Path:
    """Mean unseen-view PSNR of every run against its training CPU seconds; the baselines as flat lines."""
    from neural3d.media.plot import plot_lines

    curve = out["curve"]
    xs = [pt["cpu_seconds"] for pt in curve]
    series = {}
    for name in dict.fromkeys(k for pt in curve for k in pt["mean"]):
        pts = [(pt["cpu_seconds"], pt["mean"][name]["psnr"]) for pt in curve if name in pt["mean"]]
        series[name] = ([x for x, _ in pts], [y for _, y in pts])
    for name, m in out.get("unseen", {}).get("mean", {}).items():
        if name not in series:
            series[name] = ([xs[0], xs[-1]], [m["psnr"], m["psnr"]])
    return plot_lines(
        series, png, xlabel="training CPU seconds (process time, 1 thread)", title="PSNR, 12 unseen views"
    )


def merge_results(paths: list[Path]) -> dict:
    """One result from the JSONs of runs trained in separate processes: curve points joined by CPU seconds, the
    newest evaluation of each method (baselines included) as ``unseen``."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    points: dict[float, dict] = {}
    for part in parts:
        for pt in part.get("curve", []):
            merged = points.setdefault(
                pt["cpu_seconds"], {"cpu_seconds": pt["cpu_seconds"], "training": {}, "mean": {}}
            )
            merged["training"].update(pt.get("training", {}))
            merged["mean"].update(pt["mean"])
    newest = sorted(parts, key=lambda part: max((pt["cpu_seconds"] for pt in part.get("curve", [])), default=0))
    mean: dict = {}
    for part in newest:
        mean.update(part.get("unseen", {}).get("mean", {}))
    return {
        "machine": parts[-1].get("machine"),
        "parts": {str(p): part.get("args") for p, part in zip(paths, parts)},
        "curve": [points[k] for k in sorted(points)],
        "unseen": {
            "mean": mean,
            "per_view": {str(p): part.get("unseen", {}).get("per_view") for p, part in zip(paths, parts)},
        },
        "render": next((part["render"] for part in parts if "render" in part), None),
    }


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_lvsm"))
    ap.add_argument("--cpu-seconds", type=float, default=600.0, help="CPU training time of each run")
    ap.add_argument("--eval-every", type=float, default=120.0, help="CPU seconds between points of the curve")
    ap.add_argument("--slice", type=float, default=20.0, help="wall seconds per turn")
    ap.add_argument("--res", type=int, default=48)
    ap.add_argument("--n-train-scenes", type=int, default=32)
    ap.add_argument("--lvsm-sources", type=int, default=6, help="LVSM's source views at evaluation")
    ap.add_argument("--speed-seconds", type=float, default=60.0, help="CPU seconds of the render-speed round robin")
    ap.add_argument("--speed-methods", default="lvsm,gnt", help="methods the speed phase (re)measures")
    ap.add_argument("--phase", choices=["all", "train", "eval", "speed"], default="all")
    ap.add_argument("--runs", default=",".join(["gnt", *LVSM_SIZES]), help="comma-separated runs to train / evaluate")
    ap.add_argument(
        "--resume-from",
        type=float,
        default=0.0,
        help="the runs in WORK/runs used this many CPU seconds: train continues them (exact resume), eval records "
        "its point of the curve there",
    )
    ap.add_argument("--merge", type=Path, nargs="*", default=None, help="merge these result JSONs into --out")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lvsm_vs_gnt.json"))
    return ap.parse_args()


def main() -> None:
    a = _arguments()
    if a.merge:
        write_results(merge_results(a.merge), a.out)
        return
    torch.set_num_threads(1)
    from neural3d.training.trainer import Trainer

    fam, unseen = write_data(a.work, a.n_train_scenes, 3, a.res)
    out: dict = {}
    if a.out and a.out.exists():
        out = json.loads(a.out.read_text())
    out.update(machine=machine(), args={k: str(v) for k, v in vars(a).items()})
    specs = {"gnt": ("gnt", BENCH_MODEL), **{k: ("lvsm", {**LVSM_TRAIN, **v}) for k, v in LVSM_SIZES.items()}}
    specs = {k: specs[k] for k in a.runs.split(",")}
    runs = {name: (a.work / "runs" / name, 10 if m == "gnt" else a.lvsm_sources) for name, (m, _) in specs.items()}
    out.setdefault("curve", [])

    def on_milestone(cpu_s: float, stats: dict) -> None:  # "unseen": the newest point, baselines included
        c0 = time.process_time()
        out["unseen"], out["training"] = evaluate(runs, unseen), stats
        point = {"cpu_seconds": cpu_s, "training": stats, "eval_cpu_seconds": time.process_time() - c0}
        out["curve"].append({**point, "mean": {k: v for k, v in out["unseen"]["mean"].items() if k in runs}})
        write_results(out, a.out)

    if a.phase in ("all", "train"):
        trainers = {
            name: Trainer(
                _config(m, name, a.work, fam, unseen[0], a.res, a.n_train_scenes, kw),
                overwrite=not a.resume_from,
                resume=bool(a.resume_from),
            )
            for name, (m, kw) in specs.items()
        }
        n_points = math.ceil(a.cpu_seconds / a.eval_every)
        milestones = [min(a.eval_every * (i + 1), a.cpu_seconds) for i in range(n_points)]
        milestones = [m for m in milestones if m > a.resume_from]
        train_interleaved(trainers, milestones, a.slice, on_milestone, start=a.resume_from)
        del trainers
    elif a.phase == "eval":
        on_milestone(a.resume_from, {})
    if a.phase in ("all", "speed"):
        measured = render_speed(unseen[0], a.speed_seconds, a.lvsm_sources, a.speed_methods.split(","))
        out["render"] = {**out.get("render", {}), **measured}
    write_results(out, a.out)
    print(json.dumps(out.get("unseen", {}).get("mean", {}), indent=1))


if __name__ == "__main__":
    main()
