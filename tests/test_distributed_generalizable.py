"""GNT and LVSM under real torchrun processes (CPU, gloo): ``gnt|lvsm eval|render`` split across ranks write what one
process writes, byte for byte; on a scene mixture every rank loads only the scenes it trains on."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_distributed import _load, _max_diff, _torchrun, _train
from test_distributed_tasks import _counting_loaders, family  # noqa: F401  (family: a fixture)

from neural3d.cli.main import main

MODELS = {
    "gnt": "{depth: 1, n_samples: 8, n_source_views: 2, pool_factor: 1}",
    "lvsm": "{width: 64, n_layers: 1, patch_size: 8, n_views_min: 2, n_views_max: 2}",
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[Path, Path]:
    """(the training scene, an unseen scene with 3 test views: an odd number for 2 ranks)."""
    from neural3d.data.synthetic import write_blender_scene

    root = tmp_path_factory.mktemp("dist_gen")
    train = write_blender_scene(root / "train", seed=0, res=32, n_train=4, n_val=1, n_test=1, supersample=1)
    unseen = write_blender_scene(root / "unseen", seed=5, res=32, n_train=4, n_val=0, n_test=3, supersample=1)
    return train, unseen


def _config(tmp_path: Path, method: str, scene: Path, model_extra: str = "", steps: int = 1) -> Path:
    model = MODELS[method][:-1] + (f", {model_extra}}}" if model_extra else "}")
    cfg = tmp_path / f"{method}.yaml"
    cfg.write_text(
        f"""method: {method}
device: cpu
data: {{path: {scene}, pixel_center: 0.0}}
output_dir: {tmp_path / "runs"}
model: {model}
trainer: {{steps: {steps}, batch_size: {32 if method == "gnt" else 1}, progress: false, log_every: 1}}
"""
    )
    return cfg


def _same_files(a: Path, b: Path, n: int) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == n, (files_a, files_b)
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.parametrize("method", ["gnt", "lvsm"])
def test_eval_and_render_of_an_unseen_scene_under_torchrun_equal_one_process(tmp_path, scenes, method):
    train, unseen = scenes
    assert main(["train", str(_config(tmp_path, method, train)), "experiment=r"]) == 0
    run = str(tmp_path / "runs" / "r")
    ev = [method, "eval", run, str(unseen), "--split", "test"]
    assert main([*ev, "--out", str(tmp_path / "eval1")]) == 0
    res = _torchrun(2, "-m", "neural3d", *ev, "--out", str(tmp_path / "eval2"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _same_files(tmp_path / "eval1", tmp_path / "eval2", 3 * 3 + 1)  # rgb, depth, compare per image; metrics.json
    assert res.stdout.count("metrics and images") == 1  # rank 0 alone reports

    rd = [method, "render", run, str(unseen), "--path", "orbit", "--frames", "3"]
    assert main([*rd, "--out", str(tmp_path / "frames1")]) == 0
    res = _torchrun(2, "-m", "neural3d", *rd, "--out", str(tmp_path / "frames2"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _same_files(tmp_path / "frames1", tmp_path / "frames2", 3)


def test_lvsm_mixture_ranks_load_only_their_scenes(tmp_path, scenes):
    """A 3-scene family on 2 ranks (written by rank 0): each family scene is loaded once, by the rank that trains
    on it (besides the run's own scene, which every rank loads); the replicas end bit-equal."""
    fam = tmp_path / "fam"
    extra = f"targets_per_step: 2, family: {{root: {fam}, n_scenes: 3, res: 32, n_train: 4}}"
    cfg = _config(tmp_path, "lvsm", scenes[0], extra, steps=2)
    _train(2, cfg, "mix", worker_opts=("--dump", str(tmp_path / "d")))
    r0, r1 = _load(tmp_path / "d" / "rank0.pt"), _load(tmp_path / "d" / "rank1.pt")
    assert all(v == 0 for v in _max_diff(r0, r1).values()), "ranks differ"
    assert [(tmp_path / "d" / f"rank{r}.scenes").read_text() for r in range(2)] == ["0 2", "1"]
    loads = [(tmp_path / "d" / f"rank{r}.loads").read_text().splitlines() for r in range(2)]
    family_loads = [sorted(Path(p).name for p in rank if Path(p).parent == fam.resolve()) for rank in loads]
    assert family_loads == [["scene_000", "scene_002"], ["scene_001"]]
    assert all(rank.count(str(scenes[0].resolve())) == 1 for rank in loads)  # the run's own scene, once


def test_lvsm_scene_sharding_draws_only_the_ranks_scenes(family):  # noqa: F811
    """In-process: 3 scenes of equal weight on 2 ranks; nothing loads before the rank is known, each rank loads
    and draws its part; a rank's frame is taken over all the targets it drew (one process's step of its scene)."""
    from neural3d.methods.lvsm.batches import ImageBatches

    frames: list[int] = []

    def frame(scene, c2w):
        frames.append(len(c2w))
        return None

    kw = {"n_views_min": 1, "n_views_max": 1, "pool_factor": 1, "method": lambda s: "vector", "frame": frame}
    for rank, part in enumerate([{0, 2}, {1}]):
        loads: list[int] = []
        b = ImageBatches(_counting_loaders(family, loads), n_targets=2, seed=3, **kw)
        assert loads == []
        b.shard(rank, 2)
        drawn = [next(b) for _ in range(8)]
        assert {x.scene_index for x in drawn} <= part and sorted(loads) == sorted(part) == b.loaded()
        assert all(tuple(x.rays.shape) == (12, 12) for x in drawn)  # one of the step's 2 targets
        assert drawn[0].loss_scale == pytest.approx(2 * len(part) / 3)
        assert set(frames) == {1 + 2}  # 1 source view + both targets
