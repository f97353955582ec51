"""``ngp`` on a generated DTU scene (IDR / NeuS layout): held-out PSNR / SSIM for the DTU split conventions.

The scene is ``neural3d data synth --layout dtu`` (seed 3, ``--res`` wide, 4:3, 49 views on a DTU-like cap,
masks over a constant backdrop). Each setting trains ``configs/dtu_ngp.yaml`` through the ``neural3d train``
command line (masked images on black, unit-sphere box) with the demo's CPU-sized model (``CPU_MODEL``: 12
hash levels, table 2^15, density grid 48^3, 24 samples per ray, batch 2048) for the same steps and seed, then
renders the first ``--eval-images`` test views:

* ``pixelnerf-9`` / ``pixelnerf-3``: the pixelNeRF / RegNeRF split with 9 or 3 training views, 25 test views;
* ``llffhold-42``: every 8th view held out (7 test views), 42 training views.

Metrics: PSNR / SSIM of the whole composited image (the functions ``neural3d eval`` uses), and the masked
PSNR of the few-view DTU papers (RegNeRF: prediction and target both multiplied by the object mask, then the
whole-image PSNR). Training time is the process CPU time (``resource.getrusage``, all threads) and the wall time.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_dtu.py --steps 1200 --out benchmarks/results/dtu_ngp.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "pixelnerf-9": ["data.dtu_split=pixelnerf", "data.dtu_train_views=9"],
    "pixelnerf-3": ["data.dtu_split=pixelnerf", "data.dtu_train_views=3"],
    "llffhold-42": ["data.dtu_split=llffhold"],
}
# CPU-sized model: the demo's (configs/demo.yaml) hash grid and density-grid sampler
CPU_MODEL = [
    "model.sampler.n_samples=24",
    "model.sampler.n_coarse=128",
    "model.sampler.resolution=48",
    "model.sampler.decay=0.8",
    "model.n_levels=12",
    "model.log2_hashmap_size=15",
    "model.max_resolution=256",
    "trainer.optim.lr_final=1e-3",
]


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@torch.no_grad()
def evaluate(scene, split: str, max_images: int) -> dict[str, float]:
    """Mean PSNR / SSIM of whole images and the RegNeRF-style masked PSNR ``psnr(pred * mask, target * mask)``.

    One render per image (``render_rays`` in chunks of 4096); the metrics are ``neural3d.evaluation.metrics``'.
    """
    from neural3d.evaluation.metrics import psnr, ssim

    data = scene.dataset()
    rows = []
    for i in data.split_indices(split, nonempty=True)[:max_images].tolist():
        out = scene.model.render_rays(
            data.image_rays(i), chunk=4096, context=scene.model.render_context(data.cameras, i)
        )
        pred, target, mask = out["rgb"].clamp(0, 1).reshape(data.images[i].shape), data.images[i], data.alphas[i]
        rows.append([float(psnr(pred, target)), float(ssim(pred, target)), float(psnr(pred * mask, target * mask))])
    mean = torch.tensor(rows, dtype=torch.float64).mean(0).tolist()
    return {"psnr": mean[0], "ssim": mean[1], "masked_psnr": mean[2], "images": len(rows)}


def run(scene_dir: Path, name: str, overrides: list[str], steps: int, eval_images: int, work: Path) -> dict:
    from neural3d.api import load
    from neural3d.cli.main import main as cli

    argv = ["train", str(ROOT / "configs" / "dtu_ngp.yaml"), f"data.path={scene_dir}", "data.factor=1"]
    argv += [*CPU_MODEL, *overrides, f"output_dir={work}", f"experiment={name}", f"trainer.steps={steps}", "seed=0"]
    argv += ["trainer.batch_size=2048", "trainer.progress=false", "trainer.checkpoint_every=0"]
    argv += ["trainer.eval_every=0", "device=cpu", "--overwrite"]
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    assert cli(argv) == 0, name
    cpu, wall = _cpu_seconds() - cpu0, time.perf_counter() - wall0
    scene = load(work / name)
    scene.model.eval()
    row = {"train_views": len(scene.dataset().splits["train"]), **evaluate(scene, "test", eval_images)}
    row.update(train_cpu_seconds=cpu, train_wall_seconds=wall)
    print(name, json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--eval-images", type=int, default=25)
    p.add_argument("--only", default="", help="comma-separated settings; default: all")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    from neural3d.data.synthetic import write_dtu_scene

    work = a.work or Path(tempfile.mkdtemp(prefix="bench_dtu_"))
    scene_dir = work / f"dtu_seed3_res{a.res}"
    if not (scene_dir / "cameras_sphere.npz").is_file():
        write_dtu_scene(scene_dir, seed=3, res=a.res)
    settings = {k: v for k, v in SETTINGS.items() if not a.only or k in a.only.split(",")}
    result = {"machine": machine(), "steps": a.steps, "res": a.res, "runs": {}}
    for name, overrides in settings.items():
        result["runs"][name] = run(scene_dir, name, overrides, a.steps, a.eval_images, work)
        if a.out:
            a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
