"""Behaviour fingerprint of every trainable workflow: a few seeded CPU steps each, final losses + weight hashes.

Each case trains through the ``neural3d`` command line (in a subprocess, so only the CLI contract is relied on:
commands, config files and ``key=value`` overrides), on tiny generated scenes, with a fixed seed, ``device=cpu``
and one torch thread. Per case it records:

* the final logged losses as exact floats (``logs/metrics.csv``, else ``metrics.json``, else the stdout log);
* a hash of the final checkpoint's model weights that does not depend on parameter names (sha256 over the
  sorted per-tensor digests of dtype + shape + bytes), the per-key digests (to diagnose a difference after
  renames) and the number of tensors;
* the wall time of the run.

Run it against a checkout (the package is imported from ``--repo``, default: the current folder)::

    cd /work/wt-baseline && PYTHONPATH=/work/wt-baseline /work/main/.venv/bin/python \\
        /work/main/benchmarks/behaviour_check.py --out /tmp/behaviour.json
    ... --only ngp_grid,gnt                      # a subset
    ... --compare benchmarks/results/behaviour_before.json     # run, then compare with an earlier result
    python benchmarks/behaviour_check.py --from-json A.json --compare B.json   # compare two results, no run

``--work DIR`` keeps scenes and runs (default: a fresh temporary folder, deleted afterwards). Compare only
results made with the same ``--threads`` (default 1): with 2 threads the GNT, point-field and point-cloud
weights differ in the last bits. Two runs with the same settings give bit-identical hashes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

STEPS = 40  # optimisation steps of every case (NID fit: its own small counts)
SEED = 0
TIME_KEYS = re.compile(r"(elapsed|seconds|rays_per_s|time)", re.I)  # logged values that are not behaviour

# ---------------------------------------------------------------------------------------------- cases
# Arguments after `neural3d`, whitespace-separated; each word is then filled from Ctx.values() ({runs}, {steps}, ...).
TRAIN = (
    "train {configs}/{config} output_dir={runs} experiment={name} trainer.steps={steps} device=cpu seed={seed}"
    " trainer.progress=false trainer.log_every=5 trainer.eval_every=0 trainer.checkpoint_every=0"
    " trainer.mixed_precision=off"
)
TINY_NGP = (
    "model.n_levels=4 model.log2_hashmap_size=10 model.max_resolution=32 model.n_samples=8 model.n_coarse=8"
    " model.grid_resolution=16 model.grid_update_every=4 model.step_size=0.08 model.marching_backend=torch"
    " trainer.batch_size=128"
)
NGP = "data.path={scenes}/blender model.sampler={sampler} model.hashgrid_backend={backend} " + TINY_NGP
PROPOSAL = (
    "model.proposal_samples=[16] model.proposal_max_resolutions=[32] model.proposal_log2_hashmap_size=10"
    " model.proposal_update_warmup=8 model.proposal_update_every=2 model.distortion_loss_mult=0.002"
)
TINY_GNT = "model.depth=2 model.n_samples=8 model.n_source_views=3 trainer.batch_size=64 eval.chunk=256"
NID_MODEL = "model.num_experts=8 model.topk=4 model.hidden_dim=32 model.n_layers=2 model.n_samples=16"
NID_SCENE = (
    "data.synth.res=16 data.synth.n_train=6 data.synth.n_val=1 data.synth.n_test=1 trainer.batch_size=128 " + NID_MODEL
)
POINT_FIELD = (
    "model.n_points=256 model.n_centres=[32,16] model.depth=1 model.n_coarse=16 model.n_samples=8"
    " model.grid_resolution=8 model.n_candidates=8 trainer.batch_size=128"
)
ARGS = {
    "nerf": "data.path={scenes}/blender model.width=32 model.depth=3 model.skips=[1] model.n_coarse=8 model.n_fine=8"
    " trainer.batch_size=128",
    "ngp_llff": "data.path={scenes}/llff data.factor=1 model.hashgrid_backend=torch " + TINY_NGP,
    "gnt": "data.path={scenes}/blender " + TINY_GNT,
    "gnt_generalizable": "data.path={scenes}/gnt_unseen data.synth.res=24 data.synth.n_train=6 data.synth.n_val=1"
    " data.synth.n_test=1 model.family.root={scenes}/gnt_family model.family.n_scenes=2 model.family.res=24"
    " model.family.n_train=6 " + TINY_GNT,
    "nid_scene": "data.path={scenes}/nid_new_scene " + NID_SCENE,
    "nid_scene_dict": "data.path={scenes}/nid_new_scene_dict model.dictionary={family_checkpoint} " + NID_SCENE,
    "point_field": "data.path={scenes}/llff data.factor=1 model.points_path='' " + POINT_FIELD,
    "point_field_fern": "data.path={fern} model.points_path={fern} " + POINT_FIELD,
    "nid_family": "nid train-scenes {configs}/nid_family.yaml family={scenes}/nid_family n_scenes=2 res=12 n_train=4"
    " n_test=1 steps={steps} scenes_per_step=2 rays_per_scene=64 log_every=5 checkpoint_every={steps} seed={seed}"
    " output_dir={runs}/nid_family " + NID_MODEL,
    "nid_dict": "nid train-dict {configs}/nid_lego.yaml data.folders=[{scenes}/blender/train]"
    " data.max_images_per_folder=8 data.synth_scenes=0 data.image_size=16 data.patch_size=8 experts.num_experts=16"
    " experts.hidden_dim=32 experts.n_layers=2 experts.n_fourier_features=32 gate.topk=4 steps={steps}"
    " warmup_steps=5 batch_size=16 log_every=5 checkpoint_every={steps} seed={seed} device=cpu"
    " output_dir={runs}/nid_dict --restart",
    "nid_fit": "nid fit {configs}/nid_fit.yaml dictionary={runs}/nid_dict output={runs}/nid_fit method=gradient"
    " steps=10 finetune_steps=5 finetune_select=fixed observed_fraction=0.5 seed={seed} device=cpu"
    " --target {fit_target}",
    "pointcloud": "pointcloud train {configs}/pointcloud_synthetic.yaml output_dir={runs} experiment=pointcloud"
    " steps={steps} data.n_points=128 model.n_centres=[32,16] model.depth=1 data.synth_train_per_class=8"
    " data.synth_test_per_class=4 batch_size=16 progress=false log_every=5 eval_every=0 checkpoint_every=0"
    " seed={seed} device=cpu --overwrite",
}
SCENES = {  # generated once per work folder with `neural3d data synth`
    "blender": "--layout blender --res 24 --seed 1 --views 8",
    "llff": "--layout llff --res 32 --seed 2 --views 9",
}


@dataclass
class Ctx:
    """Where a run puts things: the checkout (configs), scenes and run directories."""

    repo: Path
    work: Path
    steps: int

    @property
    def scenes(self) -> Path:
        return self.work / "scenes"

    @property
    def runs(self) -> Path:
        return self.work / "runs"

    @property
    def fern(self) -> Path:
        return self.repo.parent / "shared" / "data" / "nerf_llff_data" / "fern"

    def values(self) -> dict[str, object]:
        """What the argument templates refer to (configs/, or neural3d/configs/ where they moved)."""
        configs = self.repo / "configs"
        fit_targets = sorted((self.scenes / "blender" / "val").glob("*.png"))
        return {
            "configs": configs if configs.is_dir() else self.repo / "neural3d" / "configs",
            "scenes": self.scenes,
            "runs": self.runs,
            "steps": self.steps,
            "seed": SEED,
            "fern": self.fern,
            "family_checkpoint": find_checkpoint(self.runs / "nid_family"),
            "fit_target": fit_targets[0] if fit_targets else None,
        }


def fill(template: str, values: dict[str, object]) -> list[str]:
    """Split a template into words, then fill each word's {placeholders} (so paths with spaces stay one word)."""
    return [word.format(**values) for word in template.split()]


@dataclass
class Case:
    name: str
    args: str  # argument template (after `neural3d`); `neural3d train` cases: the overrides only
    config: str = ""  # `neural3d train` cases: the config file
    needs: tuple[str, ...] = ()  # cases whose outputs this one reads
    skip: Callable[[Ctx], str] = lambda ctx: ""  # why the case cannot run here ("": it can)
    artifact: str = ""  # no checkpoint: hash the pixels of this output image instead
    extra: dict[str, str] = field(default_factory=dict)  # further template values

    def argv(self, ctx: Ctx) -> list[str]:
        template = f"{TRAIN} {self.args}" if self.config else self.args
        return fill(template, {**ctx.values(), "config": self.config, "name": self.name, **self.extra})

    def run_dir(self, ctx: Ctx) -> Path:
        return ctx.runs / self.name


def _no_compiler(ctx: Ctx) -> str:
    return "" if any(shutil.which(c) for c in ("cc", "gcc", "clang")) else "no C compiler for the cpu hash-grid kernel"


def _no_fern(ctx: Ctx) -> str:
    return "" if (ctx.fern / "poses_bounds.npy").is_file() else f"no shared fern data at {ctx.fern}"


def _ngp(sampler: str, backend: str = "torch") -> Case:
    name = f"ngp_{sampler}" + ("" if backend == "torch" else f"_{backend}")
    args = NGP + (" " + PROPOSAL if sampler == "proposal" else "")
    case = Case(name, args, "blender_ngp.yaml", extra={"sampler": sampler, "backend": backend})
    if backend == "cpu":
        case.skip = _no_compiler
    return case


CASES: list[Case] = [
    Case("nerf", ARGS["nerf"], "blender_nerf.yaml"),
    *[_ngp(s) for s in ("grid", "importance", "uniform", "occupancy", "proposal")],
    _ngp("grid", "cpu"),
    Case("ngp_llff", ARGS["ngp_llff"], "llff_ngp.yaml"),
    Case("gnt", ARGS["gnt"], "gnt_blender.yaml"),
    Case("gnt_generalizable", ARGS["gnt_generalizable"], "gnt_generalizable.yaml"),
    Case("nid_scene", ARGS["nid_scene"], "nid_scene.yaml"),
    Case("nid_family", ARGS["nid_family"]),
    Case("nid_scene_dict", ARGS["nid_scene_dict"], "nid_scene.yaml", needs=("nid_family",)),
    Case("nid_dict", ARGS["nid_dict"]),
    Case("nid_fit", ARGS["nid_fit"], needs=("nid_dict",), artifact="fit.png"),
    Case("point_field", ARGS["point_field"], "llff_pointfield.yaml"),
    Case("point_field_fern", ARGS["point_field_fern"], "llff_pointfield.yaml", skip=_no_fern),
    Case("pointcloud", ARGS["pointcloud"]),
]


# ---------------------------------------------------------------------------------------------- running
def cli_runner(repo: Path) -> list[str]:
    """``python -c`` that calls the ``neural3d`` entry point named in the checkout's pyproject.toml."""
    target = "neural3d.cli.main:main"
    pyproject = repo / "pyproject.toml"
    if pyproject.is_file():
        target = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}).get("neural3d", target)
    module, func = target.split(":")
    code = f"import sys; from {module} import {func} as m; sys.exit(m(sys.argv[1:]))"
    return [sys.executable, "-c", code]


def child_env(repo: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo), *filter(None, [env.get("PYTHONPATH", "")])])
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0", TQDM_DISABLE="1", NEURAL3D_DEBUG="1")
    return env


def run_cli(runner: list[str], argv: list[str], repo: Path, env: dict[str, str]) -> tuple[int, str, float]:
    start = time.perf_counter()
    proc = subprocess.run([*runner, *argv], cwd=repo, env=env, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def make_scenes(ctx: Ctx, runner: list[str], env: dict[str, str]) -> dict[str, str]:
    """Generate the shared scenes (skipped when present); returns a content hash of each."""
    hashes = {}
    for name, args in SCENES.items():
        out = ctx.scenes / name
        if not out.exists():
            rc, log, _ = run_cli(runner, ["data", "synth", "--out", str(out), *args.split()], ctx.repo, env)
            if rc:
                raise RuntimeError(f"data synth {name} failed:\n{log[-3000:]}")
        hashes[name] = tree_hash(out)
    return hashes


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- fingerprints
def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint under ``run_dir``: highest step number in the name, else newest file."""
    files = [p for p in run_dir.rglob("*") if p.suffix in (".pt", ".pth", ".ckpt") and p.is_file()]
    if not files:
        return None

    def key(p: Path):
        nums = re.findall(r"\d+", p.stem)
        return (int(nums[-1]) if nums else -1, p.stat().st_mtime)

    return max(files, key=key)


def _tensor_dicts(obj, path: str = ""):
    """Yield (path, dict) for every dict in ``obj`` whose values are all tensors."""
    import torch

    if isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            yield path, obj
        for k, v in obj.items():
            yield from _tensor_dicts(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensor_dicts(v, f"{path}[{i}]")


def model_state(ckpt: dict) -> tuple[str, dict]:
    """The model weights in a checkpoint: its "model" entry, else the largest dict of tensors."""
    import torch

    model = ckpt.get("model") if isinstance(ckpt, dict) else None
    if isinstance(model, dict) and model and all(isinstance(v, torch.Tensor) for v in model.values()):
        return "model", model
    found = list(_tensor_dicts(ckpt))
    if not found:
        raise ValueError("no dict of tensors in the checkpoint")
    return max(found, key=lambda kv: sum(t.numel() for t in kv[1].values()))


def tensor_digest(t) -> str:
    import torch

    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint(state: dict) -> dict:
    digests = {k: tensor_digest(v) for k, v in state.items()}
    combined = hashlib.sha256("\n".join(sorted(digests.values())).encode()).hexdigest()
    return {
        "hash": combined,
        "n_tensors": len(digests),
        "numel": int(sum(v.numel() for v in state.values())),
        "digests": dict(sorted(digests.items())),
    }


def weights_fingerprint(case: Case, run_dir: Path) -> dict:
    import torch

    if case.artifact:
        import numpy as np
        from PIL import Image

        pixels = torch.from_numpy(np.asarray(Image.open(run_dir / case.artifact)).copy())
        return {"source": case.artifact, **fingerprint({case.artifact: pixels})}
    ckpt = find_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}")
    entry, state = model_state(torch.load(ckpt, map_location="cpu", weights_only=True))
    return {"source": f"{ckpt.relative_to(run_dir)}:{entry}", **fingerprint(state)}


# ---------------------------------------------------------------------------------------------- losses
def _numbers(row: dict) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        if k == "step" or v in (None, "") or TIME_KEYS.search(k):
            continue
        with contextlib.suppress(TypeError, ValueError):
            out[k] = float(v)
    return out


def csv_losses(path: Path) -> dict[str, float]:
    """Last logged value of every column of logs/metrics.csv (train rows and eval rows)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    final: dict[str, float] = {}
    for row in rows:
        final.update(_numbers(row))
    if rows:
        final["step"] = float(rows[-1]["step"])
    return final


def json_losses(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    final = _numbers({k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    history = data.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        final.update({f"history/{k}": v for k, v in _numbers(history[-1]).items()})
    return final


LOG_LINE = re.compile(r"step (\d+)/\d+\s+(.*)")
PAIR = re.compile(r"([A-Za-z_]+)\s+(-?[0-9.]+(?:e[-+]?\d+)?)")


def stdout_losses(log: str) -> dict[str, float]:
    """Values of the last ``step N/M name value ...`` line (rounded as printed)."""
    lines = list(LOG_LINE.finditer(log))
    if not lines:
        return {}
    last = lines[-1]
    values = {k: float(v) for k, v in PAIR.findall(last.group(2)) if not TIME_KEYS.search(k)}
    return {"step": float(last.group(1)), **values}


def final_losses(run_dir: Path, log: str) -> tuple[str, dict[str, float]]:
    for name, reader in (("metrics.csv", csv_losses), ("metrics.json", json_losses)):
        found = sorted(run_dir.rglob(name))
        if found:
            return str(found[0].relative_to(run_dir)), reader(found[0])
    return "stdout (as printed, rounded)", stdout_losses(log)


# ---------------------------------------------------------------------------------------------- one case
def run_case(case: Case, ctx: Ctx, runner: list[str], env: dict[str, str]) -> dict:
    reason = case.skip(ctx)
    if reason:
        return {"status": "skipped", "reason": reason}
    run_dir = case.run_dir(ctx)
    shutil.rmtree(run_dir, ignore_errors=True)
    argv = case.argv(ctx)
    rc, log, seconds = run_cli(runner, argv, ctx.repo, env)
    shown = [a.replace(str(ctx.work), "$WORK").replace(str(ctx.repo), "$REPO") for a in argv]
    result = {"status": "ok" if rc == 0 else "error", "seconds": round(seconds, 1), "argv": shown}
    if rc != 0:
        return {**result, "returncode": rc, "log_tail": log[-3000:]}
    source, losses = final_losses(run_dir, log)
    try:
        weights = weights_fingerprint(case, run_dir)
    except Exception as e:  # report and keep going with the other cases
        return {**result, "status": "error", "error": f"{type(e).__name__}: {e}", "log_tail": log[-3000:]}
    losses = {k: repr(v) for k, v in sorted(losses.items())}
    return {**result, "loss_source": source, "losses": losses, "weights": weights}


def run_all(cases: list[Case], ctx: Ctx, runner: list[str], env: dict[str, str], jobs: int) -> dict[str, dict]:
    """Run the cases, ``jobs`` at a time; a case waits for the cases it ``needs``."""
    futures = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for case in cases:
            deps = [futures[n] for n in case.needs if n in futures]

            def job(case=case, deps=deps):
                if any(d.result()["status"] != "ok" for d in deps):
                    return {"status": "skipped", "reason": f"needs {', '.join(case.needs)}"}
                res = run_case(case, ctx, runner, env)
                print(f"  {case.name:<20} {res['status']:<8} {res.get('seconds', 0):6.1f} s", flush=True)
                return res

            futures[case.name] = pool.submit(job)
        return {name: f.result() for name, f in futures.items()}


# ---------------------------------------------------------------------------------------------- output
def headline_loss(losses: dict[str, str]) -> str:
    for key in ("train/loss", "loss", "history/loss", "mse", "psnr"):
        if key in losses:
            return f"{key}={float(losses[key]):.6g}"
    return ""


def print_table(cases: dict[str, dict]) -> None:
    print(f"{'case':<20} {'status':<8} {'sec':>6} {'tensors':>7}  {'weights hash':<16}  final loss")
    for name, r in cases.items():
        w = r.get("weights", {})
        print(
            f"{name:<20} {r['status']:<8} {r.get('seconds', 0):6.1f} {w.get('n_tensors', ''):>7}  "
            f"{w.get('hash', '')[:16]:<16}  {headline_loss(r.get('losses', {})) or r.get('reason', '')}"
        )


def _norm(key: str) -> str:
    return key.split("/", 1)[1] if key.startswith("train/") else key


def loss_diff(a: dict[str, str], b: dict[str, str]) -> tuple[float, int]:
    """(max |a - b| over the loss keys both have, after dropping a ``train/`` prefix; number compared)."""
    na, nb = {_norm(k): float(v) for k, v in a.items()}, {_norm(k): float(v) for k, v in b.items()}
    common = [k for k in na if k in nb and k != "step"]
    diffs = [0.0 if na[k] == nb[k] or (math.isnan(na[k]) and math.isnan(nb[k])) else abs(na[k] - nb[k]) for k in common]
    return (max(diffs) if diffs else float("nan")), len(common)


def compare_case(a: dict, b: dict) -> tuple[str, str]:
    if a.get("status") != "ok" or b.get("status") != "ok":
        return "n/a", f"status {a.get('status', 'missing')} vs {b.get('status', 'missing')}"
    wa, wb = a["weights"], b["weights"]
    diff, n = loss_diff(a["losses"], b["losses"])
    same_loss = n > 0 and diff == 0.0
    if wa["hash"] == wb["hash"]:
        verdict = "EQUAL" if same_loss else "WEIGHTS EQUAL"
        renamed = len(set(wa["digests"]) - set(wb["digests"]))
        note = f"{renamed} keys renamed" if renamed else ""
    else:
        verdict = "DIFFERENT"
        shared = sum((Counter(wa["digests"].values()) & Counter(wb["digests"].values())).values())
        note = f"{shared}/{max(wa['n_tensors'], wb['n_tensors'])} tensors identical"
    losses = (
        f"max|dloss| {diff:.3g} over {n} keys"
        if n
        else (f"no common loss keys ({', '.join(sorted(a['losses']))} vs {', '.join(sorted(b['losses']))})")
    )
    return verdict, f"{losses}; {note}".rstrip("; ")


def print_comparison(current: dict, other: dict, other_name: str) -> int:
    """Table of equal/different per case; returns the number of cases that differ or are missing."""
    print(f"\ncomparison with {other_name}")
    print(f"{'case':<20} {'verdict':<14} detail")
    bad = 0
    for name in sorted(set(current["cases"]) | set(other["cases"]), key=lambda n: _order(n)):
        verdict, detail = compare_case(current["cases"].get(name, {}), other["cases"].get(name, {}))
        bad += verdict != "EQUAL"
        print(f"{name:<20} {verdict:<14} {detail}")
    for key in ("steps", "threads", "scenes"):
        if current["meta"].get(key) != other["meta"].get(key):
            print(f"note: meta.{key} differs: {current['meta'].get(key)} vs {other['meta'].get(key)}")
    return bad


def _order(name: str) -> int:
    names = [c.name for c in CASES]
    return names.index(name) if name in names else len(names)


# ---------------------------------------------------------------------------------------------- main
def probe(runner: list[str], repo: Path, env: dict[str, str]) -> dict:
    code = "import neural3d, torch; print(neural3d.__file__); print(torch.__version__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, check=True)
    package, torch_version = out.stdout.split()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    return {"neural3d": package, "torch": torch_version, "repo": str(repo), "git_head": head, "entry_point": runner[-1]}


def select(only: str) -> list[Case]:
    if not only:
        return list(CASES)
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - {c.name for c in CASES})
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; known: {[c.name for c in CASES]}")
    needed = set(wanted)
    for c in CASES:  # add what the chosen cases need
        if c.name in needed:
            needed.update(c.needs)
    return [c for c in CASES if c.name in needed]


def run(args) -> dict:
    repo = Path(args.repo).resolve()
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="behaviour_"))
    ctx = Ctx(repo=repo, work=work, steps=args.steps)
    runner, env = cli_runner(repo), child_env(repo, args.threads)
    meta = {
        **probe(runner, repo, env),
        "steps": args.steps,
        "seed": SEED,
        "threads": args.threads,
        "jobs": args.jobs,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"neural3d from {meta['neural3d']} (torch {meta['torch']}), work folder {work}", flush=True)
    try:
        start = time.perf_counter()
        meta["scenes"] = make_scenes(ctx, runner, env)
        cases = run_all(select(args.only), ctx, runner, env, args.jobs)
        meta["total_seconds"] = round(time.perf_counter() - start, 1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return {"meta": meta, "cases": cases}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--work", help="folder for scenes and runs (kept; default: a temporary folder, deleted)")
    p.add_argument("--only", default="", help="comma-separated case names (plus the cases they need)")
    p.add_argument("--compare", help="an earlier result JSON: print equal/different per case")
    p.add_argument("--from-json", help="do not run: take the results from this JSON (use with --compare)")
    p.add_argument("--repo", default=".", help="checkout whose package and configs/ are used (default: .)")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per run")
    p.add_argument("--jobs", type=int, default=2, help="cases run at the same time")
    args = p.parse_args(argv)
    results = json.loads(Path(args.from_json).read_text()) if args.from_json else run(args)
    print()
    print_table(results["cases"])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    failed = sum(r["status"] == "error" for r in results["cases"].values())
    if args.compare:
        failed += print_comparison(results, json.loads(Path(args.compare).read_text()), args.compare)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
