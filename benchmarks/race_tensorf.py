"""The races against TensoRF (issue 24): PSNR vs training seconds, both sides in turns on one machine.

    python benchmarks/race_tensorf.py --budget 540                                  # neural3d alone
    python benchmarks/race_tensorf.py --budget 540 --tensorf /work/peers/TensoRF    # + the official TensoRF
    python benchmarks/race_tensorf.py --budget 60 model.sampler.n_samples=...       # overrides: neural3d's config
    python benchmarks/race_tensorf.py --config configs/blender_tensorf.yaml --peer-from runs/race/race.json
                                               # TensoRF's curve from an earlier run of this harness and clock
    python benchmarks/race_tensorf.py --scene fern --budget 600 --tensorf /work/peers/TensoRF
                                               # fern images_8 against TensoRF's LLFF config (flower.txt)

``--scene fern``: neural3d trains ``configs/llff_tensorf.yaml`` (default for this scene) on fern ``images_8``
(504x378, every 8th view held out: views 0, 8, 16) and is scored on that ``test`` split; the peer runs TensoRF's
``configs/flower.txt`` sized for a CPU (``TENSORF_FERN``: 64^3 -> 128^3 voxels, upsampling at 200/300/400/550,
alpha mask at 250, batch 1,024, 1,000 iterations) on the same pixels and the same held-out views. The rest of this
text describes the lego race.

neural3d trains ``configs/blender_ngp.yaml`` (as the README command: the config sizes itself to the device) on
the shared lego at factor 8 (100x100, area-downscaled, white background) and is scored on val. The peer is the
official TensoRF checkout (apchenstu/TensoRF, outside the project), run unchanged by
``benchmarks/tensorf_peer.py`` in a subprocess with its lego config sized for a CPU (64^3 -> 128^3 voxels,
upsampling at 200/300/400/550/700, alpha-mask updates at 200/400, batch 1,024, 1,000 iterations) on the same
images (neural3d's loader) and the same val views.

How time is measured: the two sides train in turns of ``--slice`` seconds (the peer blocks on its stdin between
turns), so they never run at the same time and the other engineers' load falls on both alike. Each side's clock
adds up the process CPU time (``--clock cpu``, the default: on a machine shared with other jobs it counts the
work each side got, not the time it waited for a core) or the wall time (``--clock wall``) of its own training
steps only (set-up and evaluation excluded); the other measure is recorded next to it. Both sides get
``--budget`` seconds; when TensoRF finishes its 1,000 iterations first, neural3d stops at TensoRF's final clock
(equal time). Every ``--eval-every`` seconds of its clock each side
renders the same ``--eval-images`` evenly spaced val views; at the budget each scores all val views (PSNR,
SSIM: neural3d's metrics for both). Written: ``--out``/race.json (curves, finals, steps/s, samples per ray,
peak resident memory), race.png (PSNR vs seconds).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine
from race import plot_curves

ROOT = Path(__file__).resolve().parents[1]
# the issue's CPU sizing of TensoRF's configs/lego.txt (everything else as in that file)
TENSORF_LEGO = [
    "--config", "configs/lego.txt", "--downsample_train", "8", "--N_vis", "0", "--render_test", "0",
    "--N_voxel_init", str(64**3), "--N_voxel_final", str(128**3), "--batch_size", "1024", "--n_iters", "1000",
    *[a for it in (200, 300, 400, 550, 700) for a in ("--upsamp_list", str(it))],
    *[a for it in (200, 400) for a in ("--update_AlphaMask_list", str(it))],
]  # fmt: skip
# the CPU sizing of TensoRF's configs/flower.txt for fern images_8 (BENCHMARKS.md, "TensoRF race on fern"): the
# scene and resolution, and the lego race's scaling of its schedule (node counts, steps / 10, 1,024 rays)
TENSORF_FERN = [
    "--config", "configs/flower.txt", "--downsample_train", "8", "--N_vis", "0", "--render_test", "0",
    "--render_path", "0", "--N_voxel_init", str(64**3), "--N_voxel_final", str(128**3), "--batch_size", "1024",
    "--n_iters", "1000", *[a for it in (200, 300, 400, 550) for a in ("--upsamp_list", str(it))],
    "--update_AlphaMask_list", "250",
]  # fmt: skip


@dataclass(frozen=True)
class Scene:
    """A race scene: where its data is, neural3d's data overrides, the held-out split, the peer's arguments."""

    data: str
    overrides: tuple[str, ...]
    split: str
    peer_dataset: str
    peer_args: tuple[str, ...]
    config: str


SCENES = {
    "lego": Scene(
        "nerf_synthetic/lego", ("data.factor=8",), "val", "blender", tuple(TENSORF_LEGO), "configs/blender_ngp.yaml"
    ),
    "fern": Scene(
        "nerf_llff_data/fern",
        ("data.factor=8", "data.llffhold=8"),
        "test",
        "llff",
        tuple(TENSORF_FERN),
        "configs/llff_tensorf.yaml",
    ),
}


@dataclass
class Side:
    """One racer's record: curve points ``(train seconds, step, PSNR on the eval views)`` and the final score."""

    name: str
    curve: list[tuple[float, int, float]] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    clock: float = 0.0
    cpu: float = 0.0
    wall: float = 0.0
    step: int = 0
    done: bool = False


def eval_views(n_total: int, n: int) -> list[int]:
    """``n`` evenly spaced view positions of ``n_total`` (the same rule as the peer's)."""
    return list(range(n_total))[:: max(1, n_total // n)][:n]


class Neural3dSide:
    """neural3d's trainer with its own clock (training steps only) and evaluations on val."""

    def __init__(self, args, overrides: list[str]) -> None:
        from neural3d.config import load_config
        from neural3d.training.trainer import Trainer

        scene = SCENES[args.scene]
        self.split = scene.split
        base = [f"data.path={args.data / scene.data}", *scene.overrides, f"eval.split={scene.split}"]
        base += [f"output_dir={args.out}"]
        base += ["experiment=race_neural3d", "trainer.progress=false", "trainer.checkpoint_every=0"]
        cfg, _ = load_config(str(ROOT / args.config), [*base, *overrides])
        self.trainer = Trainer(cfg, overwrite=True)
        self.args, self.side = args, Side(f"neural3d ({args.config})")
        self.next_eval, self.samples, self.rays = args.eval_every, 0.0, 0
        self.budget = args.budget  # lowered to the peer's final clock when the peer ends first

    def _subset(self, n: int):
        scene = self.trainer.scene
        idx = scene.splits[self.split]
        sub = {**scene.splits, "_race": idx[eval_views(len(idx), n)]}
        return replace(scene, splits=sub)

    def evaluate(self, n_images: int | None) -> dict:
        from neural3d.evaluation.evaluate import evaluate_split

        tr = self.trainer
        scene = self._subset(self.args.final_images or len(tr.scene.splits[self.split]))
        scene = scene if n_images is None else self._subset(n_images)
        split = "_race"
        res = evaluate_split(tr.model, scene, split)
        tr.model.train()
        mean = res["mean"]
        if n_images is None:  # the curve's views, for a point comparable with the curve
            n_val = len(tr.scene.splits[self.split])
            final = eval_views(n_val, self.args.final_images or n_val)
            curve = [final.index(v) for v in eval_views(n_val, self.args.eval_images) if v in final]
            mean["psnr_eval_views"] = sum(res["per_image"][i]["psnr"] for i in curve) / len(curve)
        return mean

    def run_turn(self, until: float, log) -> None:
        tr, s, a = self.trainer, self.side, self.args
        while not s.done:
            if s.clock >= self.budget or tr.step >= tr.cfg.trainer.steps:
                self.finish(log)
                break
            if s.clock >= until:
                break
            start, cpu = time.perf_counter(), time.process_time()
            out = tr.train_step()
            s.cpu += time.process_time() - cpu
            s.wall += time.perf_counter() - start
            s.clock = s.cpu if a.clock == "cpu" else s.wall
            s.step = tr.step
            if "samples_per_ray" in out:
                self.samples += float(out["samples_per_ray"]) * float(out.get("rays_used", 1.0))
                self.rays += int(out.get("rays_used", 1.0))
            if s.clock >= self.next_eval:
                psnr = self.evaluate(a.eval_images)["psnr"]
                s.curve.append((s.clock, s.step, psnr))
                log(f"  {s.name:28s} t={s.clock:6.1f}s step={s.step:5d} PSNR={psnr:.2f}")
                self.next_eval += a.eval_every

    def finish(self, log) -> None:
        s = self.side
        self.trainer.save()  # the race's model, for benchmarks/race_render.py
        res = self.evaluate(None)
        s.done = True
        s.final = {
            "t": s.clock,
            "cpu_s": s.cpu,
            "wall_s": s.wall,
            "step": s.step,
            "steps_per_s": s.step / max(s.clock, 1e-9),
            "rays_per_s": s.step * self.trainer.cfg.trainer.batch_size / max(s.clock, 1e-9),
            "batch_size": self.trainer.cfg.trainer.batch_size,
            "samples_per_ray": self.samples / self.rays if self.rays else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **res,
            "n_images": self.args.final_images or len(self.trainer.scene.splits[self.split]),
        }
        s.curve.append((s.clock, s.step, res["psnr_eval_views"]))
        scores = f"{self.split} PSNR={res['psnr']:.2f} SSIM={res['ssim']:.4f}"
        log(f"  {s.name:28s} final t={s.clock:.1f}s step={s.step} {scores}")


class PeerSide:
    """The TensoRF subprocess (``tensorf_peer.py``), driven one turn at a time over a JSON-lines pipe."""

    def __init__(self, args) -> None:
        cmd = [sys.executable, str(Path(__file__).with_name("tensorf_peer.py")), "--tensorf", str(args.tensorf)]
        cmd += ["--budget", str(args.budget), "--eval-every", str(args.eval_every)]
        cmd += ["--eval-images", str(args.eval_images), "--final-images", str(args.final_images)]
        scene = SCENES[args.scene]
        cmd += ["--threads", str(args.threads), "--clock", args.clock, "--dataset", scene.peer_dataset, "--"]
        data = (args.data / scene.data).resolve()
        cmd += [*scene.peer_args, "--datadir", str(data), "--basedir", str((args.out / "tensorf").resolve())]
        self.log_file = open(args.out / "tensorf.log", "w")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file, text=True
        )
        self.side = Side(f"TensoRF (official, CPU-sized {args.scene})")
        self.command = cmd

    def _read(self, log) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the TensoRF peer exited (code {self.proc.wait()}); see {self.log_file.name}")
        msg = json.loads(line)
        s = self.side
        s.clock, s.step = msg["t"], msg["step"]
        if msg["event"] == "eval":
            s.curve.append((msg["t"], msg["step"], msg["psnr"]))
            log(f"  {s.name:28s} t={msg['t']:6.1f}s step={msg['step']:5d} PSNR={msg['psnr']:.2f}")
        elif msg["event"] == "final":
            s.done, s.final = True, msg
            s.curve.append((msg["t"], msg["step"], msg["psnr_eval_views"]))
            scores = f"held-out PSNR={msg['psnr']:.2f} SSIM={msg['ssim']:.4f}"
            log(f"  {s.name:28s} final t={msg['t']:.1f}s step={msg['step']} {scores}")
        return msg

    def start(self, log) -> None:
        while self._read(log)["event"] != "turn":  # set-up done, waiting for its first turn
            pass

    def run_turn(self, until: float, log) -> None:
        if self.side.done:
            return
        self.proc.stdin.write(json.dumps({"cmd": "run", "until": until}) + "\n")
        self.proc.stdin.flush()
        while self._read(log)["event"] not in ("turn", "final"):
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.log_file.close()


def peer_from(path: Path, args) -> Side:
    """TensoRF's side of an earlier race (``race.json``), checked to be comparable: same clock, same views."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"--peer-from {path}: cannot read it ({err})") from err
    peers = [s for s in earlier.get("sides", []) if s["name"].startswith("TensoRF") and s.get("final")]
    if not peers:
        raise SystemExit(f"--peer-from {path}: no finished TensoRF side in it")
    if not str(earlier.get("clock", "")).startswith(args.clock):
        raise SystemExit(f"--peer-from {path}: its clock is '{earlier.get('clock')}', this run's is {args.clock}")
    settings = earlier.get("settings", {})
    for key in ("scene", "eval_images", "final_images"):
        if key in settings and settings[key] != getattr(args, key):
            raise SystemExit(
                f"--peer-from {path}: it used --{key.replace('_', '-')} {settings[key]}, not {getattr(args, key)}"
            )
    peer = peers[0]
    return Side(f"{peer['name']} [from {path}]", [tuple(p) for p in peer["curve"]], peer["final"], done=True)


def time_to(curve: list[tuple[float, int, float]], psnr: float) -> float | None:
    """First curve time at which PSNR reaches ``psnr`` (None: never)."""
    return next((t for t, _, p in curve if p >= psnr), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=540.0, help="training seconds of each side")
    p.add_argument("--eval-every", type=float, default=60.0, help="curve point every this many training seconds")
    p.add_argument("--eval-images", type=int, default=10, help="evenly spaced val views per curve point")
    p.add_argument("--final-images", type=int, default=0, help="evenly spaced val views of the final score (0: all)")
    p.add_argument("--slice", type=float, default=10.0, help="seconds of one turn")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each side")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="seconds counted: process CPU or wall")
    p.add_argument("--tensorf", type=Path, default=None, help="TensoRF checkout: race it too")
    p.add_argument(
        "--peer-from",
        type=Path,
        default=None,
        help="race.json of an earlier run of this script with the peer: reuse its TensoRF curve (same clock and views)",
    )
    p.add_argument("--scene", choices=sorted(SCENES), default="lego", help="lego (val) or fern (test)")
    p.add_argument("--config", default=None, help="neural3d config (relative to the repo; default: the scene's)")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=Path("runs/race"))
    p.add_argument("overrides", nargs="*", help="neural3d config overrides (key=value)")
    args = p.parse_args()
    args.config = args.config or SCENES[args.scene].config
    if args.tensorf is not None and args.peer_from is not None:
        p.error("--tensorf runs the peer, --peer-from reuses an earlier run of it: give one of them")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"machine: {machine()}")
    ours = Neural3dSide(args, args.overrides)
    sides: list = [ours]
    if args.tensorf is not None:  # the peer's turn comes first in each round: its end sets neural3d's budget
        peer = PeerSide(args)
        peer.start(log)
        sides.insert(0, peer)
    reused = None
    if args.peer_from is not None:
        reused = peer_from(args.peer_from, args)
        ours.budget = min(ours.budget, reused.final["t"])  # equal time
        log(f"TensoRF's curve from {args.peer_from}: final t={reused.final['t']:.1f}s PSNR={reused.final['psnr']:.2f}")
    until, wall = 0.0, time.perf_counter()
    try:
        while not all(s.side.done for s in sides):
            until += args.slice
            for s in sides:
                s.run_turn(until, log)
                if s is not ours and s.side.done and not ours.side.done:
                    ours.budget = min(ours.budget, s.side.final["t"])  # equal time
    finally:
        if args.tensorf is not None:
            peer.close()
    result = {
        "machine": machine(),
        "command": " ".join(sys.argv),
        "wall_s": time.perf_counter() - wall,
        "clock": f"{args.clock} seconds of each side's training steps, in alternating turns (cpu_s, wall_s: both)",
        "settings": {
            k: getattr(args, k) for k in ("scene", "budget", "eval_every", "eval_images", "final_images", "threads")
        },
        "sides": [{"name": s.side.name, "curve": s.side.curve, "final": s.side.final} for s in sides],
    }
    if reused is not None:
        result["peer_from"] = f"{args.peer_from}: TensoRF's curve reused from that run (not run again here)"
        result["sides"].insert(0, {"name": reused.name, "curve": reused.curve, "final": reused.final})
    peer_side = peer.side if args.tensorf is not None else reused
    if peer_side is not None:
        target = peer_side.final["psnr_eval_views"]  # the curves' views
        reached = time_to(ours.side.curve, target)
        result["tensorf_final_psnr"] = target
        result["neural3d_time_to_tensorf_final_s"] = reached
        result["ratio_to_tensorf_time"] = None if reached is None else reached / peer_side.final["t"]
        log(f"neural3d reached TensoRF's final {target:.2f} dB at {reached} s (TensoRF: {peer_side.final['t']:.0f} s)")
    (args.out / "race.json").write_text(json.dumps(result, indent=2))
    curves = ([] if reused is None else [reused]) + [s.side for s in sides]
    plot_curves(curves, args.out / "race.png", target_psnr=curves[0].final["psnr_eval_views"])
    log(f"wrote {args.out / 'race.json'}, {args.out / 'race.png'}")


if __name__ == "__main__":
    main()
