"""Seconds per full GNT frame at the paper's evaluation size (LLFF factor 4: 1008x756, 192 samples, 10 views).

    python benchmarks/bench_gnt_frame.py [--data ../shared/data/nerf_llff_data/fern] [--device cuda]
                                         [--checkpoint model_720000.pth] [--rays 0] [--chunk 4096]

The model is the paper's cross-scene network (depth 8, width 64, 64 training / 192 evaluation samples,
10 nearest source views by camera-centre distance). With ``--checkpoint`` (an official GNT checkpoint)
it renders with the released weights and prints PSNR / SSIM of the frame; without one the weights are
random — the cost of a frame does not depend on them.

Timed separately: the feature network over the 10 source images, and the rays (projection, view and ray
transformers). One untimed warm-up chunk first; on CUDA every timing is synchronised and the peak memory
is printed. ``--rays N`` renders only the first N rays of the frame and extrapolates the seconds per
frame from them (a whole frame at 192 samples takes hours on a CPU); the output says when it did.
Without the fern data a generated forward-facing scene at 1008x756 stands in (same sizes, so the same cost).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

ROOT = Path(__file__).resolve().parents[1]
PAPER_EVAL = {
    "depth": 8,
    "n_samples": 64,
    "n_samples_eval": 192,
    "n_source_views": 10,
    "selection": "dist",
    "lindisp": True,
}


def load_frame_scene(data: Path, work: Path):
    """fern at factor 4 in world space (as the GNT code), or a generated 1008x756 forward-facing scene."""
    from neural3d.data import load_scene

    if (data / "poses_bounds.npy").is_file():
        scene = load_scene(data, factor=4, ndc=False, llffhold=8)
        source = f"{data} (images_4)"
    else:
        from neural3d.data.synthetic.writer import write_llff_scene

        path = work / "frame_scene"
        if not (path / "poses_bounds.npy").is_file():
            write_llff_scene(path, seed=0, res=1008, n_images=17, supersample=1)
        scene = load_scene(path, factor=None, ndc=False, llffhold=8)
        source = f"generated {path} (fern not found at {data})"
    scene.pixel_center = 0.0  # the official code casts rays through integer pixel coordinates
    return scene, source


def build_model(scene, checkpoint: str, device: str):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

    info = SceneInfo(scene.scene_box, scene.near, scene.far)
    if checkpoint:
        from neural3d.methods.gnt.official import load_official_gnt_checkpoint

        model = load_official_gnt_checkpoint(
            checkpoint, scene=info, device=device, n_samples_eval=192, n_source_views=10, selection="dist"
        )
    else:
        model = GNTModel(GNTModelConfig(**PAPER_EVAL), scene=info)
    model.attach_scene(scene)
    return model.to(device).eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def time_frame(model, scene, index: int, device: str, chunk: int, n_rays: int, with_metrics: bool = False) -> dict:
    ctx = model.render_context(scene.cameras, index).to(device)
    rays = scene.image_rays(index).flatten().to(device)
    total = len(rays)
    todo = rays if n_rays <= 0 else rays[: min(n_rays, total)]
    model(todo[: min(chunk, len(todo))], ctx)  # warm-up (kernels, allocator); computes the features once
    ctx.features = ctx.features_fine = None  # time the feature network again, from scratch
    model.clear_feature_cache()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    model._features(ctx)
    sync(device)
    feat_s = time.perf_counter() - start
    parts, start = [], time.perf_counter()
    for sub in todo.chunks(chunk):
        parts.append(model(sub, ctx)["rgb"])
    sync(device)
    ray_s = time.perf_counter() - start
    out = {
        "feature_seconds": feat_s,
        "rays_rendered": len(todo),
        "frame_rays": total,
        "ray_seconds": ray_s,
        "rays_per_s": len(todo) / ray_s,
        "seconds_per_frame": feat_s + ray_s * total / len(todo),
        "extrapolated": len(todo) < total,
    }
    if device.startswith("cuda"):
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if not out["extrapolated"] and with_metrics:  # only meaningful with trained weights
        from neural3d.evaluation.metrics import psnr, ssim

        rgb = torch.cat(parts).reshape(scene.height, scene.width, 3).cpu()
        out["psnr"], out["ssim"] = float(psnr(rgb, scene.images[index])), float(ssim(rgb, scene.images[index]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "nerf_llff_data" / "fern"))
    ap.add_argument("--work", default="runs/bench_gnt_frame")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--checkpoint", default="", help="official GNT checkpoint (.pth); default: random weights")
    ap.add_argument("--chunk", type=int, default=4096, help="rays per forward pass")
    ap.add_argument("--rays", type=int, default=0, help="render only this many rays and extrapolate (0: whole frame)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--out", default="", help="write the figures as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cpu" and args.rays <= 0:
        print("note: a whole frame at 192 samples takes hours on a CPU; consider --rays 2048")
    scene, source = load_frame_scene(Path(args.data), Path(args.work))
    index = int(scene.split_indices("test")[0])
    model = build_model(scene, args.checkpoint, args.device)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(machine())
    print(
        f"scene: {source}, view {index}, {scene.width}x{scene.height}; device {name}; "
        f"weights: {args.checkpoint or 'random'}; chunk {args.chunk}"
    )
    res = time_frame(model, scene, index, args.device, args.chunk, args.rays, with_metrics=bool(args.checkpoint))
    res.update(device=name, scene=source, width=scene.width, height=scene.height, config=PAPER_EVAL)
    how = f"extrapolated from {res['rays_rendered']} rays" if res["extrapolated"] else "whole frame"
    print(f"feature network (10 views): {res['feature_seconds']:.3f} s")
    print(f"rays: {res['rays_per_s']:.0f} rays/s over {res['rays_rendered']} rays")
    print(f"seconds per {scene.width}x{scene.height} frame at 192 samples: {res['seconds_per_frame']:.2f} ({how})")
    if "peak_memory_gib" in res:
        print(f"peak GPU memory: {res['peak_memory_gib']:.2f} GiB")
    if "psnr" in res:
        print(f"frame PSNR / SSIM: {res['psnr']:.2f} / {res['ssim']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
