"""SinNeRF single-view training (``sinnerf:``) at equal steps: novel-view PSNR / SSIM of its ablations.

Scenes: a generated Blender scene (64 x 64, exact depth from ``depth/``) and, when the shared data is present,
lego at 100 x 100 (``data.factor=8``; the official lego reference view, train image 20) whose reference depth
is an ORACLE: rendered by an ``ngp`` run trained on the 99 other train views (``--oracle-steps``). Variants
(same seed, steps, batches, model):

  a  plain ngp on the one view (colour of the reference rays only)
  b  + geometry pseudo-labels: reference depth and warped depth on an unseen patch (official weights 8, 8)
  b+rgb  b + the warped-colour term (weight 1; the official code does not train on it)
  c  b + texture: the patch discriminator (hinge, weight 0.01) in the second half (two-stage schedule)
  d  + semantics: needs local DINO ViT-S/16 weights (``--dino``); without them it is not run

Held-out views: every image of the scene other than the reference (other train views, val, test) whose viewing
direction is within ``--max-angle`` degrees of the reference's (seen from the world origin), as the official
lego evaluation uses test views near the reference. Each run is a ``neural3d train`` process with one thread
(``OMP_NUM_THREADS=1``); up to ``--jobs`` run at once; the CPU seconds are each process's own.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_sinnerf.py --steps 400 --out benchmarks/results/sinnerf.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEGO_REFERENCE = 20
MODEL = [
    "model.n_levels=8",
    "model.log2_hashmap_size=15",
    "model.sampler.type=occupancy",
    "model.sampler.resolution=32",
    "trainer.batch_size=512",
]
OFF = ["sinnerf.semantic.weight=0", "sinnerf.texture.weight=0"]
VARIANTS = {
    "a_plain": ["sinnerf.geometry.reference_depth=0", "sinnerf.geometry.warp_depth=0", *OFF],
    "b_geometry": OFF,
    "b_geometry_rgb": [*OFF, "sinnerf.geometry.warp_rgb=1.0"],
    "c_texture": ["sinnerf.semantic.weight=0", "sinnerf.texture.weight=0.01"],
}


def _lego_others(work: Path, lego: Path) -> Path:
    """A Blender folder of lego's train views without the reference (and its val views), by absolute paths."""
    out = work / "lego_others"
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        meta = json.loads((lego / f"transforms_{split}.json").read_text())
        frames = [f for i, f in enumerate(meta["frames"]) if split != "train" or i != LEGO_REFERENCE]
        for f in frames:
            f["file_path"] = str((lego / f["file_path"]).resolve())
        (out / f"transforms_{split}.json").write_text(json.dumps({**meta, "frames": frames}))
    return out


def _run(argv: list[str], log: Path, evaluate: tuple | None) -> subprocess.Popen:
    """One ``neural3d train`` process (one thread), then its held-out evaluation (``_evaluate(*evaluate)``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'benchmarks'}"
    code = (
        "import json, sys, time, torch; torch.set_num_threads(1); from neural3d.cli.main import main; "
        "t = time.process_time(); rc = main(sys.argv[1:]); "
        "print('CPU_SECONDS', time.process_time() - t, flush=True)\n"
        f"if rc == 0 and {evaluate!r} is not None:\n"
        f"    import bench_sinnerf; print('EVAL_JSON', json.dumps(bench_sinnerf._evaluate(*{evaluate!r})))\n"
        "sys.exit(rc)"
    )
    out = log.open("w")
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=out, stderr=subprocess.STDOUT, env=env)


def _log_value(log: Path, key: str) -> str:
    for line in log.read_text().splitlines():
        if line.startswith(key + " "):
            return line.split(" ", 1)[1]
    raise RuntimeError(f"{log}: the run failed (no {key}):\n{log.read_text()[-3000:]}")


def _train_all(jobs: list[tuple[str, list[str], tuple | None]], work: Path, parallel: int) -> dict[str, dict]:
    """Run ``neural3d train`` argument lists (and their evaluations), ``parallel`` at a time: per run its CPU
    seconds (training) and evaluation. A run whose log already has them (an earlier invocation on the same
    ``--work``) is not run again."""
    done: dict[str, dict] = {}

    def finished(name: str, evaluate: tuple | None) -> dict | None:
        log = work / f"{name}.log"
        text = log.read_text() if log.is_file() else ""
        if "CPU_SECONDS" not in text or (evaluate is not None and "EVAL_JSON" not in text):
            return None
        res = {"cpu_s": float(_log_value(log, "CPU_SECONDS"))}
        return {**res, **json.loads(_log_value(log, "EVAL_JSON"))} if evaluate is not None else res

    pending, running = [], {}
    for name, argv, evaluate in jobs:
        res = finished(name, evaluate)
        if res is None:
            pending.append((name, argv, evaluate))
        else:
            done[name] = res
    while pending or running:
        while pending and len(running) < parallel:
            name, argv, evaluate = pending.pop(0)
            running[name] = (_run(argv, work / f"{name}.log", evaluate), evaluate)
        for name, (proc, evaluate) in list(running.items()):
            if proc.poll() is not None:
                res = finished(name, evaluate)
                if res is None:
                    raise RuntimeError(f"{name} failed:\n{(work / f'{name}.log').read_text()[-3000:]}")
                done[name] = res
                print(name, json.dumps(done[name]), flush=True)
                del running[name]
        time.sleep(2)
    return done


def _held_out(scene, reference: int, max_angle: float) -> list[int]:
    import torch

    centres = scene.cameras.centers
    ref = centres[reference] / centres[reference].norm()
    cos = (centres / centres.norm(dim=-1, keepdim=True)) @ ref
    angles = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    views = [i for i in range(scene.n_images) if i != reference and float(angles[i]) <= max_angle]
    return sorted(views, key=lambda i: float(angles[i]))  # nearest first


def _evaluate(run: str, reference_view: int, max_angle: float, max_views: int) -> dict:
    import torch

    from neural3d.api import load
    from neural3d.evaluation.evaluate import render_image
    from neural3d.evaluation.metrics import psnr, ssim

    loaded = load(run, device="cpu")
    scene = loaded.dataset()
    views = _held_out(scene, int(scene.split_indices("train")[reference_view]), max_angle)[:max_views]
    ps, ss = [], []
    with torch.no_grad():
        for i in views:
            rgb = render_image(loaded.model, scene, i, chunk=4096)["rgb"].clamp(0, 1)
            ps.append(float(psnr(rgb, scene.images[i])))
            ss.append(float(ssim(rgb, scene.images[i])))
    return {"psnr": sum(ps) / len(ps), "ssim": sum(ss) / len(ss), "views": len(views)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--oracle-steps", type=int, default=800)
    p.add_argument("--max-angle", type=float, default=45.0)
    p.add_argument("--max-views", type=int, default=12, help="the held-out views nearest the reference")
    p.add_argument("--variants", default="", help="comma-separated variant names (default: all)")
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--dino", default=None, help="local dino_deitsmall16_pretrain.pth: adds variant d")
    p.add_argument("--only", default="", help="comma-separated scene names (generated64, lego100)")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_sinnerf_"))
    work.mkdir(parents=True, exist_ok=True)
    from neural3d.data.synthetic import write_blender_scene

    gen = work / "generated64"
    if not gen.exists():
        write_blender_scene(gen, seed=3, res=64, n_train=20, n_val=4, n_test=8)
    # scene name -> (path, data overrides, reference index in the scene, sinnerf depth overrides)
    scenes = {"generated64": (gen, [], 0, ["sinnerf.depth.source=dataset"])}
    lego = SHARED_DATA / "nerf_synthetic" / "lego"
    common = ["device=cpu", "trainer.progress=false", "trainer.checkpoint_every=0", "seed=0", "--overwrite"]
    if lego.is_dir() and (not a.only or "lego100" in a.only):
        others = _lego_others(work, lego)
        oracle = ["train", str(ROOT / "configs" / "blender_ngp.yaml"), f"data.path={others}", "data.factor=8"]
        oracle += ["data.allow_external_paths=true", f"output_dir={work}", "experiment=lego_oracle", *MODEL]
        oracle += [f"trainer.steps={a.oracle_steps}", "trainer.eval_every=0", *common]
        _train_all([("lego_oracle", oracle, None)], work, 1)
        depth = ["sinnerf.depth.source=oracle", f"sinnerf.depth.path={work / 'lego_oracle'}"]
        scenes["lego100"] = (lego, ["data.factor=8"], LEGO_REFERENCE, depth)
    if a.only:
        scenes = {k: v for k, v in scenes.items() if k in a.only.split(",")}
    variants = {k: v for k, v in VARIANTS.items() if not a.variants or k in a.variants.split(",")}
    if a.dino:
        variants["d_semantic"] = [f"sinnerf.semantic.weights={a.dino}", "sinnerf.texture.weight=0.01"]
    jobs = []
    for name, (path, data, ref, depth) in scenes.items():
        for label, extra in variants.items():
            argv = ["train", str(ROOT / "configs" / "sinnerf_ngp.yaml"), f"data.path={path}", *data, *depth]
            argv += [f"output_dir={work}", f"experiment={name}-{label}", *MODEL, *extra]
            argv += [f"trainer.steps={a.steps}", f"sinnerf.reference_view={ref}", "sinnerf.poses.pivot=world_origin"]
            argv += [f"sinnerf.schedule.stage2_step={a.steps // 2}", "eval.split=val", "trainer.eval_every=0", *common]
            jobs.append((f"{name}-{label}", argv, (str(work / f"{name}-{label}"), ref, a.max_angle, a.max_views)))
    runs = _train_all(jobs, work, a.jobs)
    results: dict = {"machine": machine(), "steps": a.steps, "max_angle": a.max_angle, "runs": runs}
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
