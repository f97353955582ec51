"""Cost of the loop's per-step non-finite check (``trainer.nonfinite``) on a default hash-grid NeRF step.

Two measurements, both in process CPU time (``time.process_time``), so load from other processes counts less:

* the check alone (``step_flags`` on the model's real gradients plus the host read), repeated;
* whole training steps with and without the check, in interleaved turns (two trainers of one config, the check
  replaced by ``lambda loss: True`` in one of them), so any load falls on both alike.

Run: ``python benchmarks/bench_nonfinite_check.py [--data DIR] [--steps 5] [--rounds 6] [--batch 1024]``
(``--rounds 0``: the check and its alternatives only).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from common import SHARED_DATA, machine

from neural3d.training.nonfinite import step_flags

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "blender_ngp.yaml"


def _trainer(data: Path, out: Path, name: str, batch: int):
    from neural3d.config import load_config
    from neural3d.training.trainer import Trainer

    overrides = [f"data.path={data}", "data.factor=8", "device=cpu", f"trainer.batch_size={batch}"]
    overrides += [f"output_dir={out}", f"experiment={name}", "trainer.progress=false", "trainer.checkpoint_every=0"]
    cfg, _ = load_config(str(CONFIG), overrides)
    return Trainer(cfg, overwrite=True)


def _cpu_ms(fn, repeats: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1e3


def _check_alone(trainer, repeats: int) -> float:
    """CPU ms per step of the check, and of the alternatives it was chosen over, on the model's real gradients."""
    loss = trainer.loop.task.loss_and_metrics(trainer.loop.task.next_batch(0), 0)[0]
    loss.backward()
    params = list(trainer.model.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    print(f"{sum(g.numel() for g in grads) / 1e6:.1f} M gradient values, {repeats} repeats each:")
    per = _cpu_ms(lambda: step_flags(loss, params).tolist(), repeats)
    print(f"  step_flags (aminmax per tensor): {per:.2f} ms")
    others = {
        "infinity norm (_foreach_norm)": lambda: torch.stack(list(torch._foreach_norm(grads, math.inf))).max().item(),
        "isfinite(g).all()": lambda: torch.stack([torch.isfinite(g).all() for g in grads]).all().item(),
        "float64 sum": lambda: torch.stack([g.sum(dtype=torch.float64) for g in grads]).sum().item(),
    }
    for name, fn in others.items():
        print(f"  {name}: {_cpu_ms(fn, repeats):.2f} ms")
    return per / 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(SHARED_DATA / "nerf_synthetic" / "lego"))
    p.add_argument("--steps", type=int, default=5, help="steps per turn")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch", type=int, default=1024)
    a = p.parse_args()
    torch.manual_seed(0)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        checked = _trainer(Path(a.data), Path(tmp), "checked", a.batch)
        unchecked = _trainer(Path(a.data), Path(tmp), "unchecked", a.batch)
        unchecked.loop._finite_or_skip = lambda loss: True
        alone = _check_alone(checked, 20)
        if a.rounds == 0:
            return
        cpu = {"checked": 0.0, "unchecked": 0.0}
        for _ in range(a.rounds):
            for name, t in (("checked", checked), ("unchecked", unchecked)):
                start = time.process_time()
                for _ in range(a.steps):
                    t.train_step()
                cpu[name] += time.process_time() - start
    n = a.rounds * a.steps
    c, u = cpu["checked"] / n, cpu["unchecked"] / n
    print(f"step with check {c * 1e3:.1f} ms, without {u * 1e3:.1f} ms (CPU time, {n} steps each, interleaved)")
    print(f"ratio {c / u:.3f}; the check alone is {alone / u * 100:.1f} % of a step")


if __name__ == "__main__":
    main()
