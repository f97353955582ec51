"""Regenerate the README gallery (``docs/gallery/``) with the project's own commands: ``make gallery``.

    python scripts/make_gallery.py [--out docs/gallery] [--gnt-steps 300] [--skip-gnt]

Every picture comes from a ``neural3d`` command run in a subprocess, exactly as a user would type it:

1. ``neural3d demo`` (only when ``runs/demo`` has no checkpoint; an existing demo run is reused);
2. ``neural3d render runs/demo --path orbit --frames 6 --outputs rgb,depth --out FOLDER/`` -> ``demo_orbit.png``:
   a contact strip of the orbit, colour above, depth (turbo, near = warm) below;
3. ``neural3d eval runs/demo --split test`` (when ``runs/demo/eval/test`` is missing) -> ``demo_compare.png``:
   a held-out view, prediction | ground truth | error;
4. ``python -m neural3d.media.plot runs/demo/logs/metrics.csv ...`` -> ``demo_psnr.png``: training PSNR
   against training seconds;
5. ``neural3d export runs/demo mesh`` -> ``demo_mesh.png``: the marching-cubes mesh (vertex colours) drawn by
   :mod:`neural3d.media.raster` (a software rasteriser: no display, GPU or browser needed);
6. ``neural3d train configs/gnt_generalizable.yaml experiment=gallery-gnt ...`` (a small cross-scene GNT, trained
   for ``--gnt-steps`` steps on the generated family; resumed / reused when present), then
   ``neural3d gnt eval runs/gallery-gnt data/gnt_unseen`` -> ``gnt_unseen.png``: test views of a generated scene
   the network never saw (its training views are the source views), prediction | ground truth | error;
7. ``python benchmarks/bench_viewer.py --run runs/demo --first-view FOLDER`` -> ``viewer_first_view.png``: the
   browser viewer's first view of the demo (headless Chromium; skipped with a note when Chromium is missing).

Writes ``gallery.json`` (the commands run, PSNRs, steps, seconds) and rewrites the README block between
``<!-- gallery:start -->`` and ``<!-- gallery:end -->`` with the pictures and their measured captions.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GNT_OVERRIDES = (  # the bench's CPU size (benchmarks/bench_gnt.py BENCH_MODEL) on the config's generated family
    "model.depth=4",
    "model.n_samples=24",
    "model.n_samples_eval=48",
    "model.n_source_views=6",
    "trainer.batch_size=128",
    "trainer.eval_every=0",
    "trainer.checkpoint_every=100",
)
START, END = "<!-- gallery:start -->", "<!-- gallery:end -->"


def run(args: list[str], log: list[dict]) -> float:
    """Run ``neural3d ARGS`` (or ``python -m MODULE``) in the repository root; returns its wall seconds."""
    cmd = [sys.executable, "-m", *args]
    shown = ("neural3d" if args[0] == "neural3d" else f"python -m {args[0]}") + " "
    shown += " ".join(shlex.quote(a) for a in args[1:])
    print(f"[gallery] $ {shown}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    seconds = time.perf_counter() - t0
    log.append({"command": shown, "wall_s": round(seconds, 1)})
    return seconds


def rel(path: Path) -> str:
    """``path`` relative to the repository root when inside it (the commands are run from there)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def latest_step(run_dir: Path) -> int:
    """Step of the newest checkpoint of a run directory (0: none)."""
    steps = [int(p.stem.split("_")[-1]) for p in (run_dir / "checkpoints").glob("step_*.pt")]
    return max(steps, default=0)


def save_image(img, path: Path, scale: int = 1) -> Path:
    """Write a PIL image (nearest-neighbour upscaled ``scale`` x) atomically; returns the path."""
    from PIL import Image

    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)
    return path


def stack(images: list, *, vertical: bool, gap: int = 2):
    """Paste PIL images side by side (or one above the other) on white with ``gap`` pixels between them."""
    from PIL import Image

    if vertical:
        size = (max(i.width for i in images), sum(i.height for i in images) + gap * (len(images) - 1))
    else:
        size = (sum(i.width for i in images) + gap * (len(images) - 1), max(i.height for i in images))
    out, at = Image.new("RGB", size, "white"), 0
    for im in images:
        out.paste(im, (0, at) if vertical else (at, 0))
        at += (im.height if vertical else im.width) + gap
    return out


def orbit_strip(frames_dir: Path, out: Path):
    """``rgb | depth`` orbit frames -> colour strip above, depth strip below."""
    from PIL import Image

    frames = [Image.open(p).convert("RGB") for p in sorted(frames_dir.glob("*.png"))]
    if not frames:
        raise FileNotFoundError(f"{frames_dir}: no rendered frames")
    half = frames[0].width // 2
    rgb = [f.crop((0, 0, half, f.height)) for f in frames]
    depth = [f.crop((half, 0, f.width, f.height)) for f in frames]
    return save_image(stack([stack(rgb, vertical=False), stack(depth, vertical=False)], vertical=True), out)


def mesh_picture(mesh_path: Path, out: Path, size: tuple[int, int] = (480, 320)) -> dict:
    """Draw the exported mesh with the software rasteriser; returns its vertex / triangle counts."""
    import numpy as np
    import open3d as o3d
    import torch
    from PIL import Image

    from neural3d.media.raster import render_mesh

    mesh = o3d.io.read_triangle_mesh(str(mesh_path))
    v = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float64))
    f = torch.from_numpy(np.asarray(mesh.triangles, dtype=np.int64))
    colors = torch.from_numpy(np.asarray(mesh.vertex_colors, dtype=np.float64)) if mesh.has_vertex_colors() else None
    img = render_mesh(v, f, *size, colors=colors, azimuth_deg=-60.0, elevation_deg=35.0, fov_deg=35.0, margin=0.75)
    save_image(Image.fromarray((img.numpy() * 255).round().astype(np.uint8)), out)
    return {"vertices": len(v), "triangles": len(f)}


def compare_sheet(compare_dir: Path, out: Path, n: int, scale: int) -> Path:
    """The first ``n`` ``compare/*.png`` images (prediction | ground truth | error) one above the other."""
    from PIL import Image

    paths = sorted(compare_dir.glob("*.png"))[:n]
    if not paths:
        raise FileNotFoundError(f"{compare_dir}: no compare images")
    return save_image(stack([Image.open(p).convert("RGB") for p in paths], vertical=True), out, scale)


def demo_pictures(out: Path, work: Path, log: list[dict]) -> dict:
    """Pictures 1-5 (the demo run); returns their figures."""
    demo = ROOT / "runs" / "demo"
    reused = latest_step(demo) > 0
    if not reused:
        run(["neural3d", "demo"], log)
    frames = work / "orbit"
    run(["neural3d", "render", "runs/demo", "--path", "orbit", "--frames", "6", "--outputs", "rgb,depth",
         "--out", f"{rel(frames)}/"], log)  # fmt: skip
    orbit_strip(frames, out / "demo_orbit.png")
    eval_dir = demo / "eval" / "test"
    if not (eval_dir / "metrics.json").is_file():
        run(["neural3d", "eval", "runs/demo", "--split", "test"], log)
    compare_sheet(eval_dir / "compare", out / "demo_compare.png", n=1, scale=1)
    run(["neural3d.media.plot", "runs/demo/logs/metrics.csv", "--y", "train/psnr", "--x", "train/elapsed_s",
         "--out", rel(out / "demo_psnr.png")], log)  # fmt: skip
    mesh = work / "mesh.ply"
    run(["neural3d", "export", "runs/demo", "mesh", "--out", rel(mesh)], log)
    counts = mesh_picture(mesh, out / "demo_mesh.png")
    metrics = json.loads((eval_dir / "metrics.json").read_text())["mean"]
    return {"demo_step": latest_step(demo), "demo_run_reused": reused, "demo_test_psnr": metrics["psnr"],
            "demo_test_ssim": metrics["ssim"], "mesh": counts}  # fmt: skip


def gnt_pictures(out: Path, work: Path, steps: int, log: list[dict]) -> dict:
    """Picture 6 (GNT on an unseen generated scene); returns its figures."""
    gnt = ROOT / "runs" / "gallery-gnt"
    have = latest_step(gnt)
    if have < steps:
        resume = ["--resume"] if have else ["--overwrite"]
        run(["neural3d", "train", "configs/gnt_generalizable.yaml", "experiment=gallery-gnt", *GNT_OVERRIDES,
             f"trainer.steps={steps}", *resume], log)  # fmt: skip
    ev = work / "gnt_eval"
    run(["neural3d", "gnt", "eval", "runs/gallery-gnt", "data/gnt_unseen", "--out", rel(ev)], log)
    compare_sheet(ev / "compare", out / "gnt_unseen.png", n=4, scale=2)
    res = json.loads((ev / "metrics.json").read_text())
    run_info = json.loads((gnt / "run.json").read_text()) if (gnt / "run.json").is_file() else {}
    return {"gnt_step": latest_step(gnt), "gnt_psnr": res["mean"]["psnr"], "gnt_ssim": res["mean"]["ssim"],
            "gnt_images": len(res["per_image"]), "gnt_run": run_info.get("method", "gnt")}  # fmt: skip


def viewer_picture(out: Path, work: Path, log: list[dict]) -> dict:
    """Picture 7: a headless-Chromium screenshot of the viewer's first view of the demo run, and its timings."""
    import re
    import shutil

    from PIL import Image

    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        print("[gallery] no chromium: the viewer screenshot is left as it is", flush=True)
        return {}
    shots = work / "viewer"
    cmd = ["benchmarks/bench_viewer.py", "--run", "runs/demo", "--max-res", "512", "--first-view", rel(shots)]
    shown = "python " + " ".join(cmd)
    print(f"[gallery] $ {shown}", flush=True)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True, capture_output=True, text=True)
    log.append({"command": shown, "wall_s": round(time.perf_counter() - t0, 1)})
    shot = Image.open(shots / "first_view.png").convert("RGB")
    save_image(shot.resize((shot.width // 2, shot.height // 2), Image.LANCZOS), out / "viewer_first_view.png")
    m = re.search(r"first full-resolution frame sent ([\d.]+) s, -> shown on screen ([\d.]+) s", res.stdout)
    return {"viewer_full_sent_s": float(m.group(1)), "viewer_shown_s": float(m.group(2))} if m else {}


def readme_block(fig: dict) -> str:
    """The README's gallery block (pictures + captions with the measured figures)."""
    lines = [
        START,
        "*Regenerated by `make gallery` (`scripts/make_gallery.py`); every picture is the output of a `neural3d`"
        " command (the script lists them). Figures below are those of the pictures' own runs.*",
        "",
        "![demo orbit](docs/gallery/demo_orbit.png)",
        "",
        f"`neural3d demo` (128×128 generated scene, {fig['demo_step']:,} steps on CPU): six frames of"
        " `neural3d render runs/demo --path orbit --outputs rgb,depth`, colour above and depth below.",
        "",
        "| a held-out test view: prediction, ground truth, error | training PSNR vs seconds |",
        "| --- | --- |",
        "| ![compare](docs/gallery/demo_compare.png) | ![psnr](docs/gallery/demo_psnr.png) |",
        f"| `neural3d eval` (test PSNR {fig['demo_test_psnr']:.2f} dB, SSIM {fig['demo_test_ssim']:.3f} over"
        " 8 views) | `python -m neural3d.media.plot runs/demo/logs/metrics.csv` |",
        "",
    ]
    if "mesh" in fig:
        m = fig["mesh"]
        lines += [
            "![mesh](docs/gallery/demo_mesh.png)",
            "",
            f"`neural3d export runs/demo mesh`: marching cubes at 128³ with vertex colours ({m['vertices']:,}"
            f" vertices, {m['triangles']:,} triangles), drawn by `neural3d.media.raster` (flat shading, headless).",
            "",
        ]
    if "viewer_shown_s" in fig:
        lines += [
            "![viewer first view](docs/gallery/viewer_first_view.png)",
            "",
            "`neural3d view runs/demo`: the first view in headless Chromium (software WebGL, shown at half size):"
            " from outside the ring of training cameras, frustums small, the scene unobstructed. Full-resolution"
            f" frame on screen {fig['viewer_shown_s']:.0f} s after page load on the machine that made it (CPU"
            ' rendering, BENCHMARKS.md "Viewer first view").',
            "",
        ]
    if "gnt_psnr" in fig:
        lines += [
            "![GNT on an unseen scene](docs/gallery/gnt_unseen.png)",
            "",
            f"GNT on a generated scene it never saw (`neural3d gnt eval runs/gallery-gnt data/gnt_unseen`; source"
            f" views = that scene's training images, no optimisation): prediction | ground truth | error for"
            f" {min(4, fig['gnt_images'])} test views at 48×48 (shown ×2). A small network (depth 4) trained"
            f" {fig['gnt_step']:,} steps on 32 generated scenes on a CPU: {fig['gnt_psnr']:.2f} dB /"
            f" SSIM {fig['gnt_ssim']:.3f} over {fig['gnt_images']} views. That short a training gives the shapes"
            " and where they stand but not yet their colours (the colour augmentation makes it copy colours from the"
            " source views, which takes longer to learn); the bench's model, trained 50,000 steps, reaches"
            " 27–29 dB on unseen scenes (BENCHMARKS.md, GNT). `--gnt-steps` trains longer.",
            "",
        ]
    return "\n".join([*lines, END])


def update_readme(block: str, readme: Path = ROOT / "README.md") -> None:
    """Replace the text between the gallery markers (atomic write); ValueError when the markers are missing."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: no {START} ... {END} block to replace")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(head + block + tail)
    os.replace(tmp, readme)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery", help="where the pictures go")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "gallery", help="intermediate renders and meshes")
    p.add_argument("--gnt-steps", type=int, default=300, help="training steps of the gallery's GNT")
    p.add_argument("--skip-gnt", action="store_true", help="keep the GNT picture and caption as they are")
    p.add_argument("--no-readme", action="store_true", help="do not rewrite README.md's gallery block")
    p.add_argument("--skip-viewer", action="store_true", help="keep the viewer screenshot and caption as they are")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    figures_path = args.out / "gallery.json"
    old = json.loads(figures_path.read_text())["figures"] if figures_path.is_file() else {}
    figures = demo_pictures(args.out, args.work, log)
    keep = {k: v for k, v in old.items() if k.startswith("viewer_")}
    figures.update(keep if args.skip_viewer else (viewer_picture(args.out, args.work, log) or keep))
    if args.skip_gnt:
        figures.update({k: v for k, v in old.items() if k.startswith("gnt_")})
    else:
        figures.update(gnt_pictures(args.out, args.work, args.gnt_steps, log))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import machine  # benchmarks/common.py

    record = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "figures": figures,
              "commands": log}  # fmt: skip
    tmp = figures_path.with_name(".gallery.json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, figures_path)
    if not args.no_readme:
        update_readme(readme_block(figures))
    sizes = {q.name: q.stat().st_size for q in sorted(args.out.glob("*.png"))}
    print(f"[gallery] wrote {', '.join(f'{k} ({v // 1024} KB)' for k, v in sizes.items())} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
