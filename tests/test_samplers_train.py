"""Every NGP sampler trains a few steps from the CLI on CPU; the occupancy sampler's guards."""

from __future__ import annotations

import warnings

import pytest
import torch

from neural3d.cli.main import main
from neural3d.config import build_config
from neural3d.training.trainer import Trainer

TINY = [
    "model.n_levels=4",
    "model.log2_hashmap_size=10",
    "model.max_resolution=32",
    "model.n_samples=8",
    "model.n_coarse=8",
    "model.grid_resolution=16",
    "model.grid_update_every=4",
    "model.step_size=0.08",
    "trainer.batch_size=128",
    "trainer.progress=false",
    "trainer.log_every=4",
    "trainer.checkpoint_every=0",
]


def _psnr_column(run):
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("train/psnr")
    return [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]


PROPOSAL = [
    "model.proposal_samples=[16]",
    "model.proposal_max_resolutions=[32]",
    "model.proposal_log2_hashmap_size=10",
    "model.proposal_update_warmup=8",
    "model.proposal_update_every=2",
    "model.distortion_loss_mult=0.002",
]


@pytest.mark.parametrize("sampler", ["grid", "importance", "uniform", "occupancy", "proposal"])
def test_cli_trains_with_each_sampler(tmp_path, tiny_blender_scene, sampler):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"method: ngp\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: {sampler}\n"
    )
    extra = PROPOSAL if sampler == "proposal" else []
    assert main(["train", str(cfg), "trainer.steps=24", f"model.sampler={sampler}", *TINY, *extra]) == 0
    psnr = _psnr_column(tmp_path / sampler)
    assert len(psnr) == 6 and all(torch.isfinite(torch.tensor(psnr)))
    assert max(psnr[-2:]) > psnr[0]  # it learns something


def _trainer(tmp_path, scene, *overrides):
    return _trainer_with(tmp_path, scene, ["model.sampler=occupancy", *overrides])


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


def test_proposal_losses_present_in_training_only(tmp_path, tiny_blender_scene):
    tr = _trainer_with(tmp_path, tiny_blender_scene, ["model.sampler=proposal", *PROPOSAL])
    tr.model.train()
    tr.model.training_step_begin(0)
    batch = next(tr.loader)
    losses = tr.model.loss_dict(tr.model(batch.rays), batch)
    assert set(losses) == {"loss_rgb", "loss_interlevel", "loss_distortion"}
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values())
    tr.model.eval()
    assert not any(k.startswith("loss_") for k in tr.model(batch.rays))


def _trainer_with(tmp_path, scene, overrides):
    cfg, _ = build_config(
        {"method": "ngp", "data": {"path": str(scene)}, "output_dir": str(tmp_path), "experiment": "p"},
        [*TINY, *overrides],
    )
    return Trainer(cfg, overwrite=True)


def test_grid_sampler_distortion_loss_and_field_importance_eval(tmp_path, tiny_blender_scene, monkeypatch):
    tr = _trainer_with(
        tmp_path,
        tiny_blender_scene,
        [
            "model.sampler=grid",
            "model.distortion_loss_mult=0.01",
            "model.grid_weighting=density",
            "model.eval_sampler=importance",
            "model.eval_n_coarse=32",
            "model.eval_n_fine=16",
        ],
    )
    tr.model.train()
    tr.model.training_step_begin(0)
    batch = next(tr.loader)
    losses = tr.model.loss_dict(tr.model(batch.rays), batch)
    assert set(losses) == {"loss_rgb", "loss_distortion"} and float(losses["loss_distortion"].detach()) > 0
    sum(losses.values()).backward()
    # evaluation places samples by the field's own weights: with an analytic slab density they gather there
    rays = batch.rays[:64]

    def slab(p):
        return ((p[..., 2:] - 0.2).abs() < 0.1).float() * 100.0

    monkeypatch.setattr(tr.model.field, "density", slab)
    tr.model.eval()
    s = tr.model.field_importance_samples(rays)
    assert s.n_samples == 32 + 16 + 1  # the coarse intervals split at the 16 new edges
    hits_slab = (s.positions[..., 2] - 0.2).abs() < 0.12
    crossing = hits_slab.any(-1)
    assert crossing.sum() > 10
    assert hits_slab[crossing].float().sum(-1).mean() > 16  # the 16 PDF samples (and coarse ones) sit in the slab
    calls = []
    monkeypatch.setattr(
        tr.model,
        "field_importance_samples",
        lambda r: (
            calls.append(len(r))
            or s.__class__.from_edges(
                r, torch.linspace(0, 1, 9).expand(len(r), 9) * (r.fars - r.nears)[:, None] + r.nears[:, None]
            )
        ),
    )
    out = tr.model(rays)
    assert calls == [64] and out["rgb"].shape == (64, 3)
    tr.model.train()
    tr.model(rays)
    assert calls == [64]  # training keeps the training sampler
    with pytest.raises(ValueError, match="eval_sampler"):
        _trainer_with(tmp_path, tiny_blender_scene, ["model.eval_sampler=fine"])
