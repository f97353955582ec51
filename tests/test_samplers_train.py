"""Every NGP sampler trains a few steps from the CLI on CPU; the occupancy sampler's guards."""

from __future__ import annotations

import warnings

import pytest
import torch

from neural3d.cli.main import main
from neural3d.config import build_config
from neural3d.training.trainer import Trainer

TINY = ["model.n_levels=4", "model.log2_hashmap_size=10", "model.max_resolution=32", "model.n_samples=8",
        "model.n_coarse=8", "model.grid_resolution=16", "model.grid_update_every=4", "model.step_size=0.08",
        "trainer.batch_size=128", "trainer.progress=false", "trainer.log_every=4", "trainer.checkpoint_every=0"]


def _psnr_column(run):
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("train/psnr")
    return [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]


@pytest.mark.parametrize("sampler", ["grid", "importance", "uniform", "occupancy"])
def test_cli_trains_with_each_sampler(tmp_path, tiny_blender_scene, sampler):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"method: ngp\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: {sampler}\n")
    assert main(["train", str(cfg), "trainer.steps=24", f"model.sampler={sampler}", *TINY]) == 0
    psnr = _psnr_column(tmp_path / sampler)
    assert len(psnr) == 6 and all(torch.isfinite(torch.tensor(psnr)))
    assert max(psnr[-2:]) > psnr[0]  # it learns something


def _trainer(tmp_path, scene, *overrides):
    cfg, _ = build_config({"method": "ngp", "data": {"path": str(scene)}, "output_dir": str(tmp_path),
                           "experiment": "occ"}, [*TINY, "model.sampler=occupancy", *overrides])
    return Trainer(cfg, overwrite=True)


def test_occupancy_sample_budget_keeps_a_ray_prefix(tmp_path, tiny_blender_scene):
    tr = _trainer(tmp_path, tiny_blender_scene, "model.target_samples=500")
    tr.model.train()
    batch = next(tr.loader)
    out = tr.model(batch.rays)
    mask = out["ray_mask"]
    assert 0 < int(mask.sum()) < len(mask) and bool(mask[: int(mask.sum())].all())  # a prefix
    assert float(out["n_samples"]) <= 500
    loss = tr.model.loss_dict(out, batch)["loss_rgb"]
    torch.testing.assert_close(loss, torch.mean((out["rgb"][mask] - batch.rgb[mask]) ** 2))


def test_occupancy_empty_grid_warns_and_still_trains(tmp_path, tiny_blender_scene):
    tr = _trainer(tmp_path, tiny_blender_scene, "model.grid_update_every=1000")
    tr.model.occupancy.grid.binaries.zero_()  # e.g. a wrong box or a collapsed density
    tr.model.train()
    batch = next(tr.loader)
    with pytest.warns(UserWarning, match="without samples"):
        out = tr.model(batch.rays)
    assert float(out["n_samples"]) > 0
    loss = sum(tr.model.loss_dict(out, batch).values())
    loss.backward()
    grads = [p.grad for p in tr.model.field.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    # rendering (eval) with an empty grid gives the background, without warnings
    tr.model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = tr.model(batch.rays)
    torch.testing.assert_close(ev["rgb"], tr.model.background.expand_as(ev["rgb"]))
