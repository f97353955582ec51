"""DensityGrid cache and GridImportanceSampler."""

import pytest
import torch

from neural3d.core.rays import RayBundle
from neural3d.samplers.density_grid import DensityGrid, GridImportanceSampler


def test_lookup_is_exact_at_cell_centres_and_trilinear_between():
    g = DensityGrid(resolution=4)
    g.values.copy_(torch.arange(64, dtype=torch.float32).view(4, 4, 4))  # values[z, y, x] = 16 z + 4 y + x
    centres = torch.tensor([[0.125, 0.375, 0.625], [0.875, 0.125, 0.375]])  # (x, y, z)
    torch.testing.assert_close(g.lookup(centres), torch.tensor([16 * 2 + 4 * 1 + 0.0, 16 * 1 + 0 + 3.0]))
    mid = torch.tensor([[0.25, 0.375, 0.625]])  # halfway between x cells 0 and 1: linear in x
    torch.testing.assert_close(g.lookup(mid), torch.tensor([36.5]))
    assert g.lookup(torch.tensor([[1.5, 0.5, 0.5]])).item() == 0.0  # outside the cube


def test_update_takes_max_of_decayed_and_new():
    g = DensityGrid(resolution=8, decay=0.5, update_fraction=1.0, warmup_updates=1)
    g.update(lambda x: (x[:, :1] > 0.5).float() * 4.0)  # density 4 where x > 0.5
    assert g.values[:, :, 4:].min().item() == 4.0 and g.values[:, :, :4].max().item() == 0.0
    g.update(lambda x: torch.zeros(x.shape[0], 1))
    assert g.values[:, :, 4:].min().item() == 2.0  # decayed, not replaced
    assert int(g.n_updates) == 2


def test_warmup_updates_replace_values():
    g = DensityGrid(resolution=4, decay=0.5, update_fraction=0.1, warmup_updates=2)
    g.update(lambda x: torch.full((x.shape[0], 1), 3.0))
    g.update(lambda x: torch.full((x.shape[0], 1), 0.001))  # still warm-up: every cell replaced
    assert torch.allclose(g.values, torch.tensor(0.001))
    g.update(lambda x: torch.full((x.shape[0], 1), 1.0))  # after warm-up: a random 10% subset, max rule
    updated = (g.values == 1.0).float().mean().item()
    assert 0.0 < updated <= 0.1 + 1e-6 and torch.allclose(g.values[g.values != 1.0], torch.tensor(0.0005))


def test_samples_concentrate_where_the_grid_is_dense():
    torch.manual_seed(0)
    g = DensityGrid(resolution=32, update_fraction=1.0)
    g.update(lambda x: ((x[:, 2:] - 0.3).abs() < 0.05).float() * 50.0)  # a slab around z = 0.3
    n = 64
    o = torch.tensor([[0.5, 0.5, 1.2]]).expand(n, 3)
    d = torch.tensor([[0.0, 0.0, -1.0]]).expand(n, 3)
    rays = RayBundle(o, d, d, torch.full((n,), 0.1), torch.full((n,), 1.2))
    s, hit = GridImportanceSampler(n_coarse=128, n_samples=16, n_uniform=0).train()(rays, g, lambda p: p)
    assert hit.all()
    z = s.positions[..., 2]
    frac_in_slab = ((z - 0.3).abs() < 0.1).float().mean().item()  # slab +- one grid cell of trilinear blur
    assert frac_in_slab > 0.95  # uniform sampling would put 0.2 / 1.1 = 18% there
    assert (s.deltas >= 0).all() and s.n_samples == 16


def test_density_weighting_samples_the_visible_surface_where_occupancy_spreads():
    # two slabs the rays cross (z = 0.8 first, then 0.3), both far above the threshold; the grid's
    # compositing weights put the samples at the front slab, occupancy spreads them over both
    torch.manual_seed(0)
    g = DensityGrid(resolution=32, update_fraction=1.0)
    g.update(lambda x: (((x[:, 2:] - 0.3).abs() < 0.05) | ((x[:, 2:] - 0.8).abs() < 0.05)).float() * 200.0)
    n = 64
    o, d = torch.tensor([[0.5, 0.5, 1.2]]).expand(n, 3), torch.tensor([[0.0, 0.0, -1.0]]).expand(n, 3)
    rays = RayBundle(o, d, d, torch.full((n,), 0.1), torch.full((n,), 1.2))
    fronts = {}
    for weighting in ("occupancy", "density"):
        s, _ = GridImportanceSampler(n_coarse=128, n_samples=16, n_uniform=0, weighting=weighting).train()(
            rays, g, lambda p: p
        )
        z = s.positions[..., 2]
        fronts[weighting] = ((z - 0.8).abs() < 0.1).float().mean().item()
    assert 0.35 < fronts["occupancy"] < 0.65  # half the occupied length is the front slab
    assert fronts["density"] > 0.95
    with pytest.raises(ValueError, match="weighting"):
        GridImportanceSampler(n_coarse=8, n_samples=4, weighting="opacity")


def test_uniform_samples_are_merged_in():
    g = DensityGrid(resolution=8)
    n = 4
    o, d = torch.tensor([[0.5, 0.5, 1.2]]).expand(n, 3), torch.tensor([[0.0, 0.0, -1.0]]).expand(n, 3)
    rays = RayBundle(o, d, d, torch.full((n,), 0.1), torch.full((n,), 1.2))
    s, _ = GridImportanceSampler(n_coarse=32, n_samples=8, n_uniform=4).eval()(rays, g, lambda p: p)
    assert s.n_samples == 8 + 4 + 1
    edges = torch.linspace(0.1, 1.2, 5)
    assert all(bool(torch.isclose(s.edges, e).any(-1).all()) for e in edges)  # uniform edges are present
    assert (s.deltas >= 0).all()


def test_rays_missing_occupied_space_are_flagged():
    g = DensityGrid(resolution=8, update_fraction=1.0)
    g.update(lambda x: ((x[:, :1] - 0.5).abs() < 0.2).float())  # occupied slab around x = 0.5
    o = torch.tensor([[0.5, 0.5, 1.2], [0.05, 0.5, 1.2]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    rays = RayBundle(o, d, d, torch.full((2,), 0.1), torch.full((2,), 1.2))
    _, hit = GridImportanceSampler(n_coarse=32, n_samples=8).eval()(rays, g, lambda p: p)
    assert hit.tolist() == [True, False]


def test_ngp_model_with_an_empty_grid_warns_and_trains_on_all_rays():
    import pytest

    from neural3d.methods.base import SceneInfo
    from neural3d.methods.ngp.model import NGPModel, NGPModelConfig
    from neural3d.samplers.config import GridSamplerConfig

    cfg = NGPModelConfig(
        n_levels=2,
        log2_hashmap_size=8,
        max_resolution=16,
        sampler=GridSamplerConfig(n_samples=4, n_coarse=8, resolution=4, threshold=1e9),
    )  # nothing can be occupied
    model = NGPModel(cfg, scene=SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.5, 3.0, False, torch.ones(3)))
    model.training_step_begin(0)
    n = 16
    o, d = torch.tensor([[0.0, 0.0, 2.0]]).expand(n, 3), torch.tensor([[0.0, 0.0, -1.0]]).expand(n, 3)
    rays = RayBundle(o, d, d, torch.full((n,), 0.5), torch.full((n,), 3.0))
    with pytest.warns(UserWarning, match="marks every ray of the batch empty"):
        out = model.train()(rays)
    out["rgb"].sum().backward()
    assert model.field.encoding.params.grad.abs().sum() > 0  # the field still learns
    model.eval()
    assert torch.equal(model(rays)["rgb"], torch.ones(n, 3))  # eval: empty grid renders the background
