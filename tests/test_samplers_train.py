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
    "trainer.batch_size=128",
    "trainer.progress=false",
    "trainer.log_every=4",
    "trainer.checkpoint_every=0",
]


def _psnr_column(run):
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("train/psnr")
    return [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]


# tiny settings of each sampler type (its model.sampler section)
SAMPLER = {
    "grid": ["n_samples=8", "n_coarse=8", "resolution=16", "update_every=4"],
    "importance": ["n_samples=8", "n_coarse=8"],
    "uniform": ["n_samples=8"],
    "occupancy": ["resolution=16", "update_every=4", "step_size=0.08"],
    "proposal": [
        "n_samples=8",
        "round_samples=[16]",
        "max_resolutions=[32]",
        "log2_hashmap_size=10",
        "update_warmup=8",
        "update_every=2",
    ],
}


def tiny_sampler(kind: str, *extra: str) -> list[str]:
    return [f"model.sampler.type={kind}", *(f"model.sampler.{kv}" for kv in [*SAMPLER[kind], *extra])]


PROPOSAL = [*tiny_sampler("proposal"), "model.distortion_loss_mult=0.002"]


@pytest.mark.parametrize("sampler", ["grid", "importance", "uniform", "occupancy", "proposal"])
def test_cli_trains_with_each_sampler(tmp_path, tiny_blender_scene, sampler):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"method: ngp\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: {sampler}\n"
    )
    extra = PROPOSAL if sampler == "proposal" else tiny_sampler(sampler)
    assert main(["train", str(cfg), "trainer.steps=24", *TINY, *extra]) == 0
    psnr = _psnr_column(tmp_path / sampler)
    assert len(psnr) == 6 and all(torch.isfinite(torch.tensor(psnr)))
    assert max(psnr[-2:]) > psnr[0]  # it learns something


def _trainer(tmp_path, scene, *extra):
    return _trainer_with(tmp_path, scene, tiny_sampler("occupancy", *extra))


def test_occupancy_sample_budget_keeps_a_ray_prefix(tmp_path, tiny_blender_scene):
    tr = _trainer(tmp_path, tiny_blender_scene, "target_samples=500")
    tr.model.train()
    batch = next(tr.loader)
    out = tr.model(batch.rays)
    mask = out.loss_mask
    assert 0 < int(mask.sum()) < len(mask) and bool(mask[: int(mask.sum())].all())  # a prefix
    assert out.samples.n_samples <= 500 and out.samples.n_rays == int(mask.sum())
    torch.testing.assert_close(out.samples.ray_subset, mask.nonzero()[:, 0])
    loss = tr.model.loss_dict(out, batch)["loss_rgb"]
    torch.testing.assert_close(loss, torch.mean((out["rgb"][mask] - batch.rgb[mask]) ** 2))
    # the rays left out show the background, as rays without samples do
    torch.testing.assert_close(out.rgb[~mask], tr.model.background.expand(int((~mask).sum()), 3))
    metrics = tr.model.metrics_dict(out, batch)
    assert float(metrics["rays_used"]) == int(mask.sum())


def test_occupancy_empty_grid_warns_and_still_trains(tmp_path, tiny_blender_scene):
    tr = _trainer(tmp_path, tiny_blender_scene, "update_every=1000")
    tr.model.sampler.grid.binaries.zero_()  # e.g. a wrong box or a collapsed density
    tr.model.train()
    batch = next(tr.loader)
    with pytest.warns(UserWarning, match="without samples"):
        out = tr.model(batch.rays)
    assert out.samples.n_samples > 0
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
    tr = _trainer_with(tmp_path, tiny_blender_scene, PROPOSAL)
    tr.model.train()
    tr.model.training_step_begin(0)
    batch = next(tr.loader)
    losses = tr.model.loss_dict(tr.model(batch.rays), batch)
    assert set(losses) == {"loss_rgb", "loss_interlevel", "loss_distortion"}
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values())
    tr.model.eval()
    out = tr.model(batch.rays)
    assert not any(k.startswith("loss_") for k in out)
    assert tr.model.loss_dict(out, batch).keys() == {"loss_rgb"}  # eval: no sampler or distortion losses


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
            *tiny_sampler("grid", "weighting=density"),
            "model.distortion_loss_mult=0.01",
            "model.eval_sampler.type=importance",
            "model.eval_sampler.n_coarse=32",
            "model.eval_sampler.n_samples=16",
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
    assert tr.model.active_sampler is tr.model.eval_sampler
    s = tr.model.eval_sampler.sample(rays, density_fn=tr.model.field.density)
    assert s.n_samples == 32 + 16 + 1  # the coarse intervals split at the 16 new edges
    hits_slab = (s.positions[..., 2] - 0.2).abs() < 0.12
    crossing = hits_slab.any(-1)
    assert crossing.sum() > 10
    assert hits_slab[crossing].float().sum(-1).mean() > 16  # the 16 PDF samples (and coarse ones) sit in the slab
    calls = []
    fixed = s.__class__.from_edges
    monkeypatch.setattr(
        tr.model.eval_sampler,
        "sample",
        lambda r, **kw: (
            calls.append(len(r))
            or fixed(r, torch.linspace(0, 1, 9).expand(len(r), 9) * (r.fars - r.nears)[:, None] + r.nears[:, None])
        ),
    )
    out = tr.model(rays)
    assert calls == [64] and out["rgb"].shape == (64, 3)
    tr.model.train()
    tr.model(rays)
    assert calls == [64]  # training keeps the training sampler
    with pytest.raises(ValueError, match="eval_sampler"):
        _trainer_with(tmp_path, tiny_blender_scene, ["model.eval_sampler.type=fine"])
