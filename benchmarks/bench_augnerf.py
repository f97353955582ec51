"""Aug-NeRF (``augment:``) against plain training, side by side: cost per step and held-out quality.

``--cost``: seconds per training step (forward + backward, no optimizer) of plain and augmented training on the
same batch, for ``nerf`` and ``ngp`` (occupancy sampler), median of ``--repeats`` steps.

``--suite``: the measured settings (lego 100x100 with 20 and all train views, fern ``images_8``, lego with 30 %
salt-and-pepper training images; ngp, occupancy sampler): plain, each level alone (sparse lego) and all three
at equal steps, and plain again at Aug-NeRF's CPU time. ``--out`` keeps finished runs (an interrupted suite
resumes).

``--train``: plain vs Aug-NeRF with the same steps, seed and batches, on lego 100x100 (``../shared/data``, when
present; evaluated on val) and a generated Blender scene (on test); PSNR / SSIM of ``--eval-images`` views. Each
run goes through the ``neural3d train`` command line; ``--corrupt 0.3`` trains on salt-and-pepper corrupted
images (robustness).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_augnerf.py --cost
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_augnerf.py --train --method ngp --steps 300
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_augnerf.py --suite all --steps 500 --eval-images 8 \
        --work /tmp/augnerf_suite --out benchmarks/results/augnerf_suite.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALL_ON = ["augment.coords.enabled=true", "augment.features.enabled=true", "augment.outputs.enabled=true"]
OFF = [f"augment.{level}.enabled=false" for level in ("coords", "features", "outputs")]
METHOD = {
    "nerf": ("augnerf_blender.yaml", ["trainer.batch_size=256"]),  # full NeRF: 64 + 128 samples, width 256
    "ngp": ("blender_ngp.yaml", ["model.sampler.type=occupancy", "trainer.batch_size=1024"]),
}


def _scenes(work: Path) -> dict[str, Path]:
    from neural3d.data.synthetic import write_blender_scene

    scenes = {}
    lego = SHARED_DATA / "nerf_synthetic" / "lego"
    if lego.is_dir():
        scenes["lego100"] = lego
    gen = work / "generated"
    if not gen.exists():
        write_blender_scene(gen, seed=3, res=64, n_train=40, n_val=4, n_test=8)
    scenes["generated64"] = gen
    return scenes


def _factor(name: str) -> list[str]:
    return ["data.factor=8"] if name == "lego100" else []


def cost(scene: Path, repeats: int) -> dict:
    """Seconds per step (forward + backward) of plain and augmented training on one fixed batch, steps alternated."""
    from neural3d.config import load_config
    from neural3d.training.scene_task import SceneTask

    out = {}
    for method, (config, extra) in METHOD.items():
        tasks = {}
        for label, aug in (("plain", OFF), ("augnerf", [*ALL_ON, "augment.pgd_steps=1"])):
            overrides = [f"data.path={scene}", "device=cpu", *extra, *aug, *_factor(scene.name)]
            cfg, _ = load_config(ROOT / "configs" / config, overrides)
            task = SceneTask(cfg)
            task.model.train()
            task.step_begin(0)
            tasks[label] = (task, task.next_batch(0))
        times: dict[str, list[float]] = {label: [] for label in tasks}
        for _ in range(repeats + 1):
            for label, (task, batch) in tasks.items():
                t0 = time.perf_counter()
                loss, _ = task.loss_and_metrics(batch, 0)
                loss.backward()
                task.model.zero_grad(set_to_none=True)
                times[label].append(time.perf_counter() - t0)
        row = {label: statistics.median(t[1:]) for label, t in times.items()}
        row["ratio"] = row["augnerf"] / row["plain"]
        out[method] = row
        print(f"{method}: plain {row['plain']:.3f} s/step, augnerf {row['augnerf']:.3f} s/step, x{row['ratio']:.2f}")
    return out


LEVELS = ("coords", "features", "outputs")
VARIANTS = {
    "plain": OFF,
    "all": ALL_ON,
    **{f"{lvl}_only": [f"augment.{o}.enabled={str(o == lvl).lower()}" for o in LEVELS] for lvl in LEVELS},
}
LLFF_NGP = ("llff_ngp.yaml", ["model.sampler.type=occupancy", "trainer.batch_size=1024"])


def train_run(
    work: Path, run: str, config: str, overrides: list[str], steps: int, eval_split: str, eval_images: int
) -> dict:
    """One ``neural3d train`` run (same seed and batches for every variant) and its held-out PSNR / SSIM.

    ``seconds`` is wall time, ``cpu_seconds`` this process's CPU time (all threads) during training: on a
    shared machine the second is the fairer clock for equal-time comparisons.
    """
    from neural3d.api import load
    from neural3d.cli.main import main as cli
    from neural3d.evaluation.evaluate import evaluate_split

    argv = ["train", str(ROOT / "configs" / config), f"output_dir={work}", f"experiment={run}", *overrides]
    argv += [f"trainer.steps={steps}", "trainer.progress=false", "device=cpu", "seed=0"]
    argv += ["trainer.checkpoint_every=0", "trainer.eval_every=0", "--overwrite"]
    t0, c0 = time.perf_counter(), time.process_time()
    assert cli(argv) == 0, run
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    scene = load(work / run)
    res = evaluate_split(scene.model, scene.dataset(), eval_split, max_images=eval_images, chunk=4096)
    row = {**{k: float(v) for k, v in res["mean"].items()}, "steps": steps, "seconds": seconds}
    row["cpu_seconds"] = cpu_seconds
    print(run, json.dumps(row), flush=True)
    return row


def train(scenes: dict[str, Path], method: str, steps: int, eval_images: int, corrupt: float, work: Path) -> dict:
    """Test PSNR / SSIM of plain and Aug-NeRF runs with the same steps and seed."""
    config, extra = METHOD[method]
    results = {}
    for name, path in scenes.items():
        for label in ("plain", "all"):
            overrides = [f"data.path={path}", *_factor(name), *extra, *VARIANTS[label]]
            if corrupt > 0:
                overrides += [f"data.corruption.salt_pepper={corrupt}", "data.corruption.seed=0"]
            split = "val" if name == "lego100" else "test"  # the shared lego has train and val only
            results[f"{name}-{method}-{label}"] = train_run(
                work, f"{name}-{method}-{label}", config, overrides, steps, split, eval_images
            )
    return results


def settings() -> dict[str, tuple[str, list[str], str, tuple[str, ...]]]:
    """The measured settings: name -> (config, overrides, eval split, variants). ngp, occupancy sampler."""
    lego, fern = SHARED_DATA / "nerf_synthetic" / "lego", SHARED_DATA / "nerf_llff_data" / "fern"
    blender, blender_extra = METHOD["ngp"]
    lego_args = [f"data.path={lego}", "data.factor=8", *blender_extra]
    corrupt = ["data.corruption.salt_pepper=0.3", "data.corruption.seed=0"]
    return {
        "lego100_sparse20": (blender, [*lego_args, "data.n_train_views=20"], "val", tuple(VARIANTS)),
        "lego100_full": (blender, lego_args, "val", ("plain", "all")),
        "fern8": (LLFF_NGP[0], [f"data.path={fern}", "data.factor=8", *LLFF_NGP[1]], "test", ("plain", "all")),
        "lego100_saltpepper30": (blender, [*lego_args, *corrupt], "val", ("plain", "all")),
    }


def suite(names: list[str], steps: int, eval_images: int, work: Path, out: Path | None, result: dict) -> dict:
    """Every variant of each setting at equal steps, then plain again at Aug-NeRF's CPU time (equal time).

    The equal-time plain run trains ``steps x cpu(all) / cpu(plain)`` steps (its learning-rate schedule
    stretched to them): what a user gets by spending Aug-NeRF's compute on plain training instead.
    """
    table = result.setdefault("suite", {})
    for name in names:
        config, overrides, split, variants = settings()[name]
        rows = table.setdefault(name, {})
        for label in variants:
            if label not in rows:
                rows[label] = train_run(
                    work, f"{name}-{label}", config, [*overrides, *VARIANTS[label]], steps, split, eval_images
                )
                if out:
                    out.write_text(json.dumps(result, indent=2))
        ratio = rows["all"]["cpu_seconds"] / rows["plain"]["cpu_seconds"]
        if "plain_equal_time" not in rows:
            rows["plain_equal_time"] = train_run(
                work, f"{name}-plain-eqtime", config, [*overrides, *OFF], round(steps * ratio), split, eval_images
            )
        if out:
            out.write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cost", action="store_true")
    p.add_argument("--train", action="store_true")
    p.add_argument("--method", choices=list(METHOD), default="ngp")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--eval-images", type=int, default=4)
    p.add_argument("--corrupt", type=float, default=0.0, help="salt-and-pepper fraction of the training images")
    p.add_argument("--only", default="", help="comma-separated scene names (lego100, generated64); default: all")
    p.add_argument(
        "--suite",
        default="",
        help="comma-separated settings (lego100_sparse20, lego100_full, fern8, lego100_saltpepper30) or 'all': "
        "every variant (plain, each level alone, all three) at equal steps, and plain at equal CPU time",
    )
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_augnerf_"))
    result: dict = {"machine": machine()}
    if a.out and a.out.exists():  # resume an interrupted suite: finished runs are kept
        result = json.loads(a.out.read_text())
    if a.suite:
        names = list(settings()) if a.suite == "all" else a.suite.split(",")
        suite(names, a.steps, a.eval_images, work, a.out, result)
    scenes = _scenes(work) if a.cost or a.train else {}
    if a.only:
        scenes = {k: v for k, v in scenes.items() if k in a.only.split(",")}
    if a.cost:
        result["cost"] = cost(next(iter(scenes.values())), a.repeats)
    if a.train:
        result["train"] = train(scenes, a.method, a.steps, a.eval_images, a.corrupt, work)
    if a.out:
        a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
