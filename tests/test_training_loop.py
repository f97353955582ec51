"""The shared training loop with a toy task: cadences, host syncs, time limit, pause, clipping, resume; run_dir."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

from neural3d.training.callbacks import Checkpointing, History, MetricsLog, PeriodicEval, StepHook
from neural3d.training.loop import Loop, LoopConfig
from neural3d.training.run_dir import RunDir, RunExistsError, is_main_process, latest_checkpoint
from neural3d.training.task import TaskBase, TrainTask


class SyncCounter:
    """A metric that counts how often the loop converts it to a Python float (a host synchronisation)."""

    calls = 0

    def __float__(self) -> float:
        SyncCounter.calls += 1
        return 1.0


class ToyTask(TaskBase):
    """Linear regression on random batches drawn from a seeded generator (plus global-RNG noise)."""

    throughput_key = "items_per_s"
    items_per_step = 8

    def __init__(self, seed: int = 0, final_eval: bool = True) -> None:
        torch.manual_seed(seed)
        self.device = torch.device("cpu")
        self.module = nn.Linear(3, 1)
        self.generator = torch.Generator().manual_seed(seed)
        self.final_eval = final_eval
        self.evaluated: list[tuple[int, bool]] = []
        self.begun: list[int] = []

    def configure_optimizers(self, total_steps: int):
        opt = torch.optim.Adam(self.module.parameters(), lr=0.05)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / (2 * total_steps))

    def step_begin(self, step: int) -> None:
        self.begun.append(step)

    def next_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(8, 3, generator=self.generator)  # [8, 3]
        return x, x.sum(-1, keepdim=True) + 0.01 * torch.randn(8, 1)  # global RNG too

    def loss_and_metrics(self, batch, step: int):
        x, y = batch
        loss = torch.mean((self.module(x) - y) ** 2)
        return 100.0 * loss, {"sync": SyncCounter()}

    def evaluate(self, step: int, *, final: bool) -> dict[str, float]:
        self.evaluated.append((step, final))
        return {"score": float(step)} if (self.final_eval or not final) else {}

    def state_dict(self, step: int) -> dict:
        return {"model": self.module.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.generator.set_state(state["generator"])


def _loop(tmp_path, steps=10, task=None, **kw) -> tuple[Loop, History]:
    cfg = LoopConfig(steps=steps, **{"log_every": 3, "progress": False, **kw})
    history = History()
    run = RunDir(tmp_path)
    callbacks = [MetricsLog(run, tensorboard=False), PeriodicEval(cfg.eval_every), Checkpointing(cfg.checkpoint_every)]
    loop = Loop(task or ToyTask(), cfg, run_dir=run, callbacks=[*callbacks, history])
    return loop, history


def test_toy_task_satisfies_the_protocol():
    assert isinstance(ToyTask(), TrainTask)


def test_cadences_and_host_syncs_only_at_log_steps(tmp_path):
    SyncCounter.calls = 0
    loop, history = _loop(tmp_path, steps=10, eval_every=5, checkpoint_every=4)
    final = loop.run()
    assert loop.step == 10 and loop.task.begun == list(range(10))
    assert [r["step"] for r in history.rows["train"]] == [3, 6, 9, 10]
    assert SyncCounter.calls == 4  # one float() per log step, none in between
    assert loop.task.evaluated == [(5, False), (10, True)]  # periodic eval not at the last step; final eval
    assert [r["step"] for r in history.rows["eval"]] == [5, 10] and final == {"score": 10.0}
    row = history.rows["train"][-1]
    assert {"loss", "sync", "items_per_s", "lr", "elapsed_s"} <= row.keys()
    assert [p.name for p in RunDir(tmp_path).checkpoints()] == ["step_0000004.pt", "step_0000008.pt", "step_0000010.pt"]
    csv = RunDir(tmp_path).metrics_csv.read_text().splitlines()
    assert csv[0].startswith("step,train/loss") and len(csv) == 1 + 4 + 2


def test_run_returns_the_last_train_log_without_a_final_evaluation(tmp_path):
    loop, _ = _loop(tmp_path, steps=4, task=ToyTask(final_eval=False))
    out = loop.run()
    assert out["loss"] == loop.last_metrics["loss"] and "lr" not in out


def test_max_seconds_stops_and_saves(tmp_path):
    loop, _ = _loop(tmp_path, steps=10, max_seconds=1.0)
    loop.elapsed = 5.0  # as if restored from a checkpoint that used up the budget
    loop.run()
    assert loop.step == 0 and latest_checkpoint(tmp_path).name == "step_0000000.pt"


def test_pause_idles_until_cleared(tmp_path):
    loop, _ = _loop(tmp_path, steps=5)
    loop.paused = True
    threading.Timer(0.3, lambda: setattr(loop, "paused", False)).start()
    t0 = time.perf_counter()
    loop.run()
    assert loop.step == 5 and time.perf_counter() - t0 >= 0.3


def test_gradient_clipping_bounds_the_global_norm(tmp_path):
    norms = []
    loop, _ = _loop(tmp_path, steps=3, grad_clip=0.5)
    grads = lambda: torch.cat([p.grad.flatten() for p in loop.task.module.parameters()])  # noqa: E731
    loop.callbacks.append(StepHook(lambda step: norms.append(float(grads().norm()))))
    loop.run()
    assert len(norms) == 3 and max(norms) <= 0.5 + 1e-5


def test_resume_gives_bit_identical_weights_and_logs(tmp_path):
    a, hist_a = _loop(tmp_path / "a", steps=8, checkpoint_every=4)
    a.run()
    b, _ = _loop(tmp_path / "b", steps=8, checkpoint_every=4)
    b.run()
    (tmp_path / "b" / "checkpoints" / "step_0000008.pt").unlink()
    torch.manual_seed(123)  # a fresh process: the global RNG comes from the checkpoint
    c, hist_c = _loop(tmp_path / "b", steps=8, checkpoint_every=4, task=ToyTask(seed=0))
    assert c.resume().name == "step_0000004.pt" and c.step == 4
    c.run()
    for k, v in a.task.module.state_dict().items():
        assert torch.equal(v, c.task.module.state_dict()[k])
    losses = [r["loss"] for r in hist_a.rows["train"] if r["step"] > 4]
    assert losses == [r["loss"] for r in hist_c.rows["train"]]
    csv = RunDir(tmp_path / "b").metrics_csv.read_text().splitlines()
    assert [line.split(",")[0] for line in csv[1:]] == ["3", "6", "8", "8"]  # rows after step 4 replaced


def test_old_checkpoints_without_loop_keys_still_resume(tmp_path):
    loop, _ = _loop(tmp_path, steps=4)
    loop.run()
    state = torch.load(latest_checkpoint(tmp_path), weights_only=True)
    for key in ("elapsed", "rng_cpu"):  # written by the NID loops before the shared one
        del state[key]
    fresh, _ = _loop(tmp_path, steps=6)
    fresh.load_state_dict(state)
    assert fresh.step == 4 and fresh.elapsed == 0.0


# ---------------------------------------------------------------------------------------------- run_dir
def test_run_dir_resume_rule(tmp_path):
    run = RunDir(tmp_path / "r")
    run.prepare()  # a new run: nothing to decide
    run.save_checkpoint(1, {"x": torch.zeros(1)})
    run.write_json("logs/metrics.csv", [])
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        run.prepare()
    run.prepare(resume=True)
    assert run.latest_checkpoint().name == "step_0000001.pt" and run.metrics_csv.is_file()
    run.prepare(overwrite=True)  # the old run stays until the new one writes, and is deleted at its checkpoint
    assert run.latest_checkpoint().name == "step_0000001.pt" and run.metrics_csv.is_file()
    run.write_config("new: 1\n")
    assert run.checkpoints() == [] and not run.metrics_csv.exists()
    run.save_checkpoint(2, {"x": torch.ones(1)})
    run.release()
    assert [p.name for p in run.checkpoints()] == ["step_0000002.pt"] and not (run.path / ".overwritten").exists()


def test_run_dir_checkpoints_keep_the_newest_in_step_order(tmp_path):
    run = RunDir(tmp_path)
    for step in (5, 100, 20, 1000):
        run.save_checkpoint(step, {"step": step}, keep=3)
    assert [p.name for p in run.checkpoints()] == ["step_0000020.pt", "step_0000100.pt", "step_0001000.pt"]
    path, state = run.load_checkpoint()
    assert path.name == "step_0001000.pt" and state["step"] == 1000
    assert not list(tmp_path.glob("checkpoints/*.tmp"))


def test_run_dir_files_and_errors(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.read_meta() == {}
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        run.load_checkpoint()
    run.write_meta({"method": "ngp"})
    run.write_config("a: 1\n")
    assert run.read_meta() == {"method": "ngp"} and run.read_config_text() == "a: 1\n"
    with pytest.raises(FileNotFoundError, match="holds no checkpoints"):
        run.load_checkpoint()
    assert run.eval_dir("test") == tmp_path / "r" / "eval" / "test" and is_main_process()


def test_old_checkpoint_module_names_still_work(tmp_path):
    from neural3d.training import checkpoint

    checkpoint.save_checkpoint(tmp_path, 3, {"a": 1})
    assert checkpoint.latest_checkpoint(tmp_path) == checkpoint.checkpoint_path(tmp_path, 3)
    assert checkpoint.list_checkpoints(tmp_path) == [tmp_path / "checkpoints" / "step_0000003.pt"]


def test_loop_config_validates():
    with pytest.raises(ValueError, match="mixed_precision"):
        LoopConfig(steps=1, mixed_precision="fp8")
    with pytest.raises(ValueError, match="log_every"):
        LoopConfig(steps=1, log_every=0)
    assert LoopConfig(steps=1, mixed_precision="False").mixed_precision == "off"  # YAML `off` in a str field
