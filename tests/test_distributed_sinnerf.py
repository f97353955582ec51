"""SinNeRF under real torchrun processes (CPU, gloo): the reference rays and every unseen patch split across ranks.

Every patch term is on (warped depth and colour, smoothness, DINO [CLS] with local random weights, the
discriminator's hinge loss) and the stage switch and pose warm-up happen inside the run. 2 processes equal 1
process within ``test_distributed.ATOL`` (the same sums in another order); the ranks agree bit for bit, the
discriminator and the pose / patch stream included; a 2-process checkpoint resumes on 1 process. DiffAugment is
off (``texture.augment_prob=0``): it draws from the per-rank stream (module docstring of
``neural3d.training.sinnerf.strategy``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from test_distributed import ATOL, _load, _max_diff, _train
from test_sinnerf import SMALL, TINY_NGP, dino_file  # noqa: F401  (dino_file: a fixture)

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sinnerf_ngp.yaml"


def _overrides(tmp_path: Path, scene: Path, dino: Path) -> list[str]:
    return [
        f"data.path={scene}",
        f"output_dir={tmp_path / 'runs'}",
        "device=cpu",
        "trainer.steps=4",
        "trainer.checkpoint_every=2",
        "trainer.batch_size=64",
        "trainer.progress=false",
        "trainer.log_every=1",
        "trainer.eval_images=1",
        *TINY_NGP,
        *SMALL,
        "sinnerf.geometry.warp_rgb=0.5",
        "sinnerf.geometry.smoothness=0.1",
        f"sinnerf.semantic.weights={dino}",
        "sinnerf.semantic.input_size=32",
        "sinnerf.semantic.refresh_prob=0.5",
        "sinnerf.texture.augment_prob=0",
        "sinnerf.schedule.stage2_step=2",
        "sinnerf.schedule.stage1_texture=true",
        "sinnerf.schedule.stage2_semantic=true",
        "sinnerf.schedule.stage2_stride=1",
        "sinnerf.poses.warmup_steps=3",
    ]


def _close(a: dict, b: dict) -> None:
    diffs = _max_diff(a, b)
    assert diffs["sinnerf.generator"] == 0, "the pose / patch stream differs"
    assert max(diffs.values()) <= ATOL, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]


def test_sinnerf_two_processes_equal_one_and_resume_on_one(tmp_path, tiny_blender_scene, dino_file):  # noqa: F811
    args = _overrides(tmp_path, tiny_blender_scene, dino_file)
    _train(1, CONFIG, "one", *args, worker_opts=("--no-jitter", "--dump", str(tmp_path / "d1")))
    _train(2, CONFIG, "two", *args, worker_opts=("--no-jitter", "--dump", str(tmp_path / "d2")))
    one, r0, r1 = (_load(tmp_path / p) for p in ("d1/rank0.pt", "d2/rank0.pt", "d2/rank1.pt"))
    assert any(k.startswith("sinnerf.discriminator.") for k in r0)
    assert all(v == 0 for v in _max_diff(r0, r1).values()), "ranks differ"
    _close(one, r0)
    # the terms were all on: the logged rows of rank 0 (means over the ranks) name every one of them
    log = (tmp_path / "runs" / "two" / "logs" / "metrics.csv").read_text().splitlines()[0]
    for term in ("ref_depth", "warp_depth", "warp_rgb", "smoothness", "semantic", "texture_g", "texture_d"):
        assert f"train/{term}" in log, log

    # resume the 2-process run from its step-2 checkpoint on 1 process: the same state at step 4
    runs = tmp_path / "runs"
    shutil.copytree(runs / "two", runs / "resumed")
    (runs / "resumed" / "checkpoints" / "step_0000004.pt").unlink()
    _train(1, CONFIG, "resumed", *args, "--resume", worker_opts=("--no-jitter", "--dump", str(tmp_path / "d3")))
    _close(_load(tmp_path / "d3" / "rank0.pt"), r0)
    a = _load(runs / "resumed" / "checkpoints" / "step_0000004.pt")
    b = _load(runs / "two" / "checkpoints" / "step_0000004.pt")
    d_a, d_b = (x["auxiliary_optimizers"]["discriminator"]["state"] for x in (a, b))
    assert d_a.keys() == d_b.keys() and d_a  # one Adam state for the discriminator, whatever the world size
    assert all(float((d_a[i]["exp_avg"] - d_b[i]["exp_avg"]).abs().max()) <= ATOL for i in d_a)


def test_padded_shards_cover_the_items_once_in_order():
    from neural3d.training.distributed import gather_shards, padded_shard

    for n in (1, 5, 8, 64):
        for world in (1, 2, 3, 4):
            parts = [padded_shard(n, r, world) for r in range(world)]
            assert len({len(p) for p in parts}) == 1 and len(parts[0]) == -(-n // world)
            assert torch.equal(torch.cat(parts)[:n], torch.arange(n))
    assert [p.tolist() for p in (padded_shard(5, 0, 2), padded_shard(5, 1, 2))] == [[0, 1, 2], [3, 4, 4]]
    x = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(gather_shards(x, 2), x[:2])  # one process: the part is the whole
