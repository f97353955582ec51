"""One sampler protocol for every sampler (padded and packed), ``distances`` on both layouts, the field contract."""

from __future__ import annotations

import pytest
import torch

from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples, RaySamples
from neural3d.fields.base import FieldOutputs
from neural3d.samplers import (
    GridSampler,
    ImportanceSampler,
    OccupancySampler,
    PDFSampler,
    ProposalSampler,
    Sampler,
    UniformSampler,
    WeightedSamples,
)
from neural3d.samplers.density_grid import DensityGrid
from neural3d.samplers.grid_update import ema_max_update_, select_cells
from neural3d.samplers.occupancy_grid import OccupancyGrid

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _rays(n: int = 24, seed: int = 0) -> RayBundle:
    """Rays from z = 2.5 towards -z, tilted, with unnormalised directions (|d| != 1)."""
    g = torch.Generator().manual_seed(seed)
    xy = 0.8 * (torch.rand(n, 2, generator=g) - 0.5)
    d = torch.cat([0.2 * (torch.rand(n, 2, generator=g) - 0.5), -torch.ones(n, 1)], -1) * 1.3
    o = torch.cat([xy, torch.full((n, 1), 2.5)], -1)
    return RayBundle(o, d, torch.nn.functional.normalize(d, dim=-1), torch.full((n,), 0.5), torch.full((n,), 3.5))


def _slab(p: torch.Tensor) -> torch.Tensor:
    """[*batch, 3] -> [*batch, 1]: density 30 in the slab |z| < 0.3 inside the box, 0 elsewhere."""
    inside = (p.abs() < 1.0).all(-1, keepdim=True)
    return ((p[..., 2:].abs() < 0.3) & inside).float() * 30.0


class _SlabField(torch.nn.Module):
    """The density hooks stateful samplers read: ``density`` and, on the unit cube, ``unit_density``."""

    def density(self, p):
        return _slab(p)

    def unit_density(self, x):
        return _slab(AABB[0] + x * (AABB[1] - AABB[0]))


def _samplers() -> dict[str, Sampler]:
    occ = OccupancySampler(aabb=AABB, resolution=16, step_size=0.05, warmup_updates=1, update_every=1, backend="torch")
    return {
        "uniform": UniformSampler(n_samples=16),
        "pdf": PDFSampler(n_samples=8),
        "importance": ImportanceSampler(n_coarse=16, n_samples=8),
        "grid": GridSampler(aabb=AABB, resolution=16, update_every=1, n_coarse=32, n_samples=8, n_uniform=4),
        "occupancy": occ,
        "proposal": ProposalSampler(
            aabb=AABB, n_samples=8, n_proposal_samples=(16,), proposal_max_resolutions=(16,), proposal_n_levels=2
        ),
    }


def _sample(name: str, sampler: Sampler, rays: RayBundle):
    prior = None
    if name == "pdf":
        coarse = UniformSampler(n_samples=16).eval().sample(rays)
        prior = WeightedSamples(coarse, torch.rand(coarse.starts.shape, generator=torch.Generator().manual_seed(1)))
    return sampler.sample(rays, density_fn=_slab, prior=prior)


@pytest.mark.parametrize("name", ["uniform", "pdf", "importance", "grid", "occupancy", "proposal"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_sampler_implements_the_protocol(name, mode):
    torch.manual_seed(0)
    sampler = _samplers()[name]
    assert isinstance(sampler, Sampler)
    sampler.train(mode == "train")
    sampler.step_begin(0, _SlabField())  # stateful ones refresh their grids (step 0 is an update step)
    rays = _rays()
    samples = _sample(name, sampler, rays)
    assert isinstance(samples, PackedRaySamples if name == "occupancy" else RaySamples)
    sub = rays if samples.ray_subset is None else rays[samples.ray_subset]
    if isinstance(samples, RaySamples):  # padded: [n_rays, n_samples], contiguous, sorted
        assert samples.starts.shape == samples.ends.shape == (samples.n_rays, samples.n_samples)
        assert torch.equal(samples.starts[:, 1:], samples.ends[:, :-1]) and bool((samples.deltas >= 0).all())
        lo, hi = samples.starts[:, 0], samples.ends[:, -1]
        edges = sampler.spacing_edges(samples)
        assert edges.shape == (samples.n_rays, samples.n_samples + 1)
        assert float(edges.min()) >= -1e-6 and float(edges.max()) <= 1 + 1e-6
    else:  # packed: flat, ray_indices sorted, packed_info consistent
        assert samples.starts.shape == samples.ends.shape == samples.ray_indices.shape == (samples.n_samples,)
        assert bool((samples.ray_indices[1:] >= samples.ray_indices[:-1]).all()) and samples.n_samples > 0
        assert int(samples.packed_info[:, 1].sum()) == samples.n_samples
        lo, hi = samples.starts, samples.ends
        sub = sub[samples.ray_indices]
    assert samples.rays.origins.shape[0] == samples.n_rays
    assert bool((lo >= sub.nears - 1e-5).all()) and bool((hi <= sub.fars + 1e-5).all())
    weights = torch.rand(samples.starts.shape)
    losses = sampler.loss_dict(samples, weights)
    assert isinstance(losses, dict) and all(k.startswith("loss_") for k in losses)
    if name == "proposal":
        assert set(losses) == ({"loss_interlevel"} if mode == "train" else set())
    if mode == "eval":  # deterministic
        again = _sample(name, sampler, rays)
        assert torch.equal(again.starts, samples.starts) and torch.equal(again.ends, samples.ends)


def test_samplers_that_need_inputs_say_so():
    rays = _rays(4)
    with pytest.raises(ValueError, match="PDFSampler.sample needs prior"):
        PDFSampler(n_samples=4).sample(rays)
    with pytest.raises(ValueError, match="ImportanceSampler.sample needs density_fn"):
        ImportanceSampler(n_coarse=4, n_samples=4).sample(rays)
    with pytest.raises(ValueError, match="OccupancySampler.sample needs density_fn"):
        OccupancySampler(aabb=AABB, backend="torch").sample(rays)


def test_grid_sampler_skips_empty_rays_and_the_model_rule_for_them():
    sampler = GridSampler(aabb=AABB, resolution=16, update_every=1, n_coarse=32, n_samples=8).eval()
    sampler.step_begin(0, _SlabField())
    rays = _rays(8)
    rays.origins[:4, 0] += 10.0  # these miss the box: no occupied space
    samples = sampler.sample(rays)
    assert samples.ray_subset.tolist() == [4, 5, 6, 7] and samples.n_rays == 4
    assert sampler.supervise_skipped_rays and not OccupancySampler.supervise_skipped_rays


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_distances_on_both_layouts_match_the_recomputed_lengths(dtype):
    rays = _rays(6)
    rays = RayBundle(*(getattr(rays, k).to(dtype) for k in ("origins", "directions", "viewdirs", "nears", "fars")))
    padded = UniformSampler(n_samples=5).train().sample(rays)
    norm = torch.linalg.norm(rays.directions, dim=-1, keepdim=True)
    assert torch.equal(padded.distances, (padded.ends - padded.starts) * norm)
    valid = torch.rand(padded.starts.shape, generator=torch.Generator().manual_seed(0)) > 0.3
    packed = PackedRaySamples.from_padded(padded, valid)
    assert torch.equal(packed.distances, padded.distances[valid])
    back, mask = packed.to_padded()
    torch.testing.assert_close(back.distances[mask], padded.distances[valid], rtol=0, atol=0)


def test_select_rays_keeps_each_rays_samples_and_records_the_subset():
    padded = UniformSampler(n_samples=4).eval().sample(_rays(5))
    packed = PackedRaySamples.from_padded(padded, torch.rand(5, 4, generator=torch.Generator().manual_seed(2)) > 0.4)
    index = torch.tensor([1, 3, 4])
    sub = packed.select_rays(index)
    assert torch.equal(sub.ray_subset, index) and sub.n_rays == 3
    for i, r in enumerate(index.tolist()):
        assert torch.equal(sub.starts[sub.ray_indices == i], packed.starts[packed.ray_indices == r])
    assert torch.equal(sub.positions, packed.positions[torch.isin(packed.ray_indices, index)])


def test_the_grid_update_rule_is_shared_and_differs_only_in_what_decays():
    values = torch.tensor([4.0, 4.0, 4.0, 4.0])
    ema_max_update_(
        values, torch.tensor([1, 1, 2]), torch.tensor([1.0, 3.0, 0.0]), replace=False, decay=0.5, decay_all=True
    )
    assert values.tolist() == [2.0, 3.0, 2.0, 2.0]  # every cell decays; cell 1 keeps its last max(decay * old, new)
    values = torch.tensor([4.0, 4.0, 4.0, 4.0])
    ema_max_update_(values, torch.tensor([2]), torch.tensor([1.0]), replace=False, decay=0.5, decay_all=False)
    assert values.tolist() == [4.0, 4.0, 2.0, 4.0]  # only the re-evaluated cell decays
    ema_max_update_(values, torch.arange(4), torch.zeros(4), replace=True, decay=0.5, decay_all=False)
    assert values.tolist() == [0.0] * 4
    assert torch.equal(select_cells(5, warmup=True, fraction=0.1, device="cpu"), torch.arange(5))
    torch.manual_seed(0)
    cells = select_cells(100, warmup=False, fraction=0.1, device="cpu", occupied=torch.arange(50))
    assert len(cells) == 20 and bool((cells < 100).all())
    # each grid keeps its own cell order: DensityGrid [z, y, x], OccupancyGrid [level, x, y, z]
    dg, og = (
        DensityGrid(resolution=4, update_fraction=1.0),
        OccupancyGrid(aabb=torch.tensor([0.0] * 3 + [1.0] * 3), resolution=4),
    )
    dg.update(lambda x: (x[:, :1] > 0.5).float())
    og.update(lambda x: (x[:, 0] > 0.5).float())
    assert dg.values[:, :, 2:].min() == 1 and dg.values[:, :, :2].max() == 0  # x is the last axis
    assert og.occs[0, 2:].min() == 1 and og.occs[0, :2].max() == 0  # x is the first axis


def _field_calls(model, monkeypatch) -> list:
    from neural3d.fields.base import Field

    calls = []
    for module in model.modules():
        if isinstance(module, Field):
            original = module.forward

            def wrapped(samples, context=None, _orig=original):
                out = _orig(samples, context)
                calls.append(out)
                return out

            monkeypatch.setattr(module, "forward", wrapped)
    return calls


@pytest.mark.parametrize("method", ["nerf", "ngp", "nid", "point_field"])
def test_every_method_runs_its_fields_through_forward(method, monkeypatch):
    from neural3d.methods.base import ModelOutputs, SceneInfo
    from neural3d.methods.registry import get_method

    small = {
        "nerf": {"width": 16, "depth": 2, "skips": [], "n_coarse": 8, "n_fine": 8},
        "ngp": {"n_levels": 2, "log2_hashmap_size": 8, "max_resolution": 16},
        "nid": {"num_experts": 4, "topk": 2, "hidden_dim": 16, "n_layers": 1, "n_samples": 8, "n_importance": 4},
        "point_field": {"n_points": 64, "n_centres": [32, 16], "n_coarse": 8, "n_samples": 8},
    }[method]
    m = get_method(method)
    model = m.model_class(m.config_class(**small), scene=SceneInfo(AABB.clone(), 0.5, 3.5, False, torch.ones(3)))
    calls = _field_calls(model, monkeypatch)
    model.train()
    model.training_step_begin(0)
    rays = _rays(6)
    out = model(rays)
    assert isinstance(out, ModelOutputs) and out["rgb"].shape == (6, 3) and list(out) == list(out.keys())
    assert calls and all(isinstance(c, FieldOutputs) for c in calls)
    assert set(model.loss_dict(out, type("B", (), {"rgb": torch.rand(6, 3)})())) >= {"loss_rgb"}


def test_one_spacing_map_for_every_sampler():
    from neural3d.samplers import proposal, uniform
    from neural3d.samplers.spacing import spacing_to_t

    assert uniform.spacing_to_t is spacing_to_t and proposal.spacing_to_t is spacing_to_t
    s = torch.rand(3, 5, dtype=torch.float64)
    n, f = torch.full((3,), 2.0, dtype=torch.float64), torch.full((3,), 6.0, dtype=torch.float64)
    assert torch.equal(spacing_to_t(s, n, f), n[:, None] * (1.0 - s) + f[:, None] * s)  # NeRF's lerp, bit for bit
    lindisp = 1.0 / (1.0 / n[:, None] * (1.0 - s) + 1.0 / f[:, None] * s)
    assert torch.equal(spacing_to_t(s, n, f, "lindisp"), lindisp)
    with pytest.warns(DeprecationWarning, match="lindisp: bool"):
        assert torch.equal(spacing_to_t(s, n, f, True), lindisp)  # the old uniform.py signature


def test_gnt_point_samplers_follow_the_protocol():
    from neural3d.methods.gnt.sampling import FinePointSampler, PointSampler, depth_samples, fine_depth_samples

    rays = _rays(5)
    coarse = PointSampler(n_samples=6, n_samples_eval=9)
    assert isinstance(coarse, Sampler) and coarse.train().sample(rays).n_samples == 6
    s = coarse.eval().sample(rays)
    assert s.n_samples == 9 and torch.equal(s.starts, s.ends)
    assert torch.equal(s.starts, depth_samples(rays.nears, rays.fars, 9, lindisp=True, jitter=False))
    w = torch.rand(5, 9, generator=torch.Generator().manual_seed(0))
    fine = FinePointSampler(n_fine=4).eval().sample(rays, prior=WeightedSamples(s, w))
    assert torch.equal(fine.starts, fine_depth_samples(s.starts, w, 4, lindisp=True, det=True)) and fine.n_samples == 13
    with pytest.raises(ValueError, match="needs prior"):
        FinePointSampler(n_fine=4).sample(rays)


def test_pdf_sampler_eval_seed_jitters_deterministically():
    coarse = UniformSampler(n_samples=8).eval().sample(_rays(4))
    prior = WeightedSamples(coarse, torch.rand(4, 8, generator=torch.Generator().manual_seed(3)))
    seeded = PDFSampler(n_samples=6, include_input=False, eval_seed=0).eval()
    a, b = seeded.sample(coarse.rays, prior=prior), seeded.sample(coarse.rays, prior=prior)
    det = PDFSampler(n_samples=6, include_input=False).eval().sample(coarse.rays, prior=prior)
    assert torch.equal(a.starts, b.starts) and not torch.equal(a.starts, det.starts)
