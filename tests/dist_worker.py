"""Worker of the torchrun tests (tests/test_distributed*.py): a ``neural3d`` training command with test instruments.

Run as ``python -m torch.distributed.run ... tests/dist_worker.py [options] -- TRAIN_ARGS...``; it calls
``neural3d.cli.main.main([*COMMAND, *TRAIN_ARGS])`` (``--command``, default ``train``; e.g. ``nid train-dict``)
after installing:

* ``--writes FILE``: on ranks other than 0, record every file write under ``--watch DIR`` (``open`` in a write
  mode, ``os.replace`` / ``rename``, ``mkdir``, ``mkstemp``, ``torch.save``) and write the list to
  ``FILE.rank{R}`` at exit (the test asserts it is empty);
* ``--dump DIR``: after training, every rank saves its module's state dict to ``DIR/rank{R}.pt`` (the test
  compares ranks: parameters *and* buffers such as the occupancy grid; SinNeRF: its generator's state and the
  discriminator's weights too) and, for GNT / LVSM, the indices of the
  training scenes it loaded to ``DIR/rank{R}.scenes``; every rank writes the folders it passed to
  ``neural3d.data.load_scene`` (one line per call) to ``DIR/rank{R}.loads``;
* ``--no-jitter``: marching without the stratified per-ray offset (the one per-rank random draw of an NGP
  occupancy step), GNT's depths without jitter (coarse) and with ``det`` (fine) and the uniform sampler's
  depths (NID) without jitter, so that 1 and 2 processes see the same samples;
* ``--fail-rank R --fail-step S``: rank R raises ``RuntimeError("injected failure ...")`` at step S;
* ``--kill-rank R --kill-step S``: in torchrun's first attempt only, rank R kills itself with SIGKILL at step S.
* ``--hold-rank R --hold-step S --ready DIR``: every rank writes its pid to ``DIR/rank{R}.pid`` when training
  starts; after step S rank R waits (up to 60 s) until it receives a stop signal (the test sends it one).

Without torchrun it is one process of rank 0 (``neural3d train`` with the same instruments).
"""

from __future__ import annotations

import argparse
import builtins
import os
import sys
import tempfile
from pathlib import Path

import torch


def _record_writes(watch: Path, out: Path, rank: int) -> None:
    seen: list[str] = []
    watch = watch.resolve()

    def note(path, what):
        try:
            p = Path(os.fspath(path)).resolve()
        except TypeError:
            return
        if p == watch or watch in p.parents:
            seen.append(f"{what} {p}")

    real_open, real_replace, real_rename = builtins.open, os.replace, os.rename
    real_mkdir, real_mkstemp, real_save = os.mkdir, tempfile.mkstemp, torch.save

    def open_(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            note(file, "open")
        return real_open(file, mode, *a, **k)

    def replace_(src, dst, *a, **k):
        note(dst, "replace")
        return real_replace(src, dst, *a, **k)

    def rename_(src, dst, *a, **k):
        note(dst, "rename")
        return real_rename(src, dst, *a, **k)

    def mkdir_(path, *a, **k):
        note(path, "mkdir")
        return real_mkdir(path, *a, **k)

    def mkstemp_(*a, **k):
        note(k.get("dir") or tempfile.gettempdir(), "mkstemp")
        return real_mkstemp(*a, **k)

    def save_(obj, f, *a, **k):
        if isinstance(f, (str, os.PathLike)):
            note(f, "torch.save")
        return real_save(obj, f, *a, **k)

    builtins.open, os.replace, os.rename, os.mkdir, tempfile.mkstemp, torch.save = (
        open_,
        replace_,
        rename_,
        mkdir_,
        mkstemp_,
        save_,
    )

    import atexit

    def dump():
        with real_open(f"{out}.rank{rank}", "w") as f:
            f.write("\n".join(seen))

    atexit.register(dump)


def _hold_for_a_signal(a, rank: int) -> None:
    import time

    from neural3d.training.loop import Loop

    step_fn, run = Loop.train_step, Loop.run

    def run_announced(self):
        Path(a.ready).mkdir(parents=True, exist_ok=True)
        (Path(a.ready) / f"rank{rank}.pid").write_text(str(os.getpid()))
        return run(self)

    def holding(self):
        out = step_fn(self)
        if self.rank == a.hold_rank and self.step == a.hold_step:
            (Path(a.ready) / f"rank{rank}.holding").write_text(str(self.step))
            end = time.monotonic() + 60
            while not self.stop_requested and time.monotonic() < end:
                time.sleep(0.02)
        return out

    Loop.run, Loop.train_step = run_announced, holding


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--writes", default=None)
    p.add_argument("--watch", default=None)
    p.add_argument("--dump", default=None)
    p.add_argument("--no-jitter", action="store_true")
    p.add_argument("--fail-rank", type=int, default=-1)
    p.add_argument("--fail-step", type=int, default=-1)
    p.add_argument("--kill-rank", type=int, default=-1)
    p.add_argument("--kill-step", type=int, default=-1)
    p.add_argument("--command", default="train")
    p.add_argument("--hold-rank", type=int, default=-1)
    p.add_argument("--hold-step", type=int, default=-1)
    p.add_argument("--ready", default=None)
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    a = p.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    torch.set_num_threads(1)
    if a.writes and rank != 0:
        _record_writes(Path(a.watch), Path(a.writes), rank)
    if a.no_jitter:
        from neural3d.samplers.occupancy import OccupancySampler

        march = OccupancySampler.march
        OccupancySampler.march = lambda self, rays, *, stratified, use_grid=True: march(
            self, rays, stratified=False, use_grid=use_grid
        )
        import neural3d.methods.gnt.sampling as gnt

        coarse, fine = gnt.depth_samples, gnt.fine_depth_samples
        gnt.depth_samples = lambda *args, **k: coarse(*args, **{**k, "jitter": False})
        gnt.fine_depth_samples = lambda *args, **k: fine(*args, **{**k, "det": True})
        import neural3d.samplers.uniform as uniform

        spacing = uniform.stratified_spacing
        uniform.stratified_spacing = lambda *args, **k: spacing(*args, **{**k, "jitter": False})
    from neural3d.training.loop import Loop

    first_attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0
    if a.fail_rank >= 0 or a.kill_rank >= 0:
        step_fn = Loop.train_step

        def failing(self):
            if self.rank == a.fail_rank and self.step == a.fail_step:
                raise RuntimeError(f"injected failure on rank {self.rank} at step {self.step}")
            if first_attempt and self.rank == a.kill_rank and self.step == a.kill_step:
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
            return step_fn(self)

        Loop.train_step = failing
    if a.ready:
        _hold_for_a_signal(a, rank)
    if a.dump:
        import neural3d.data

        loads: list[str] = []  # every scene folder this rank loads (load_scene is looked up at call time)
        load_scene = neural3d.data.load_scene

        def counted_load(path, *args, **kw):
            loads.append(str(Path(path).resolve()))
            return load_scene(path, *args, **kw)

        neural3d.data.load_scene = counted_load
        run = Loop.run

        def run_and_dump(self):
            out = run(self)
            state = {k: v.detach().cpu().clone() for k, v in self.task.module.state_dict().items()}
            sinnerf = getattr(self.task, "sinnerf", None)
            if sinnerf is not None:  # SinNeRF: its pose / patch stream and the discriminator's weights
                state["sinnerf.generator"] = sinnerf.generator.get_state()
                if sinnerf.discriminator is not None:
                    disc = sinnerf.discriminator.state_dict()
                    state.update({f"sinnerf.discriminator.{k}": v.detach().cpu().clone() for k, v in disc.items()})
            Path(a.dump).mkdir(parents=True, exist_ok=True)
            torch.save(state, Path(a.dump) / f"rank{rank}.pt")
            loader = getattr(self.task, "loader", None)
            if hasattr(loader, "loaded"):  # GNT / LVSM: the scenes this rank loaded
                (Path(a.dump) / f"rank{rank}.scenes").write_text(" ".join(map(str, loader.loaded())))
            (Path(a.dump) / f"rank{rank}.loads").write_text("\n".join(loads))
            return out

        Loop.run = run_and_dump
    from neural3d.cli.main import main as cli_main

    args = [x for x in a.train_args if x != "--"]
    return cli_main([*a.command.split(), *args])


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)())
