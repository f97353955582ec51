"""Proposal sampler: spacing maps, PDF resampling (KS test against the analytic CDF), rounds, schedule, learning."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from neural3d.core.rays import RayBundle
from neural3d.losses import interlevel_loss
from neural3d.render.volume import render_weights_from_density
from neural3d.samplers.proposal import (
    ProposalDensityField,
    ProposalSampler,
    anneal_power,
    spacing_to_t,
    t_to_spacing,
)

AABB = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


def _rays(n: int, near: float = 0.5, far: float = 3.5, seed: int = 0) -> RayBundle:
    """Rays from (0, 0, -2) towards +z with small random tilts; t = depth along the unnormalised direction."""
    g = torch.Generator().manual_seed(seed)
    d = torch.cat([0.1 * (torch.rand(n, 2, generator=g) - 0.5), torch.ones(n, 1)], dim=-1)
    o = torch.tensor([0.0, 0.0, -2.0]).expand(n, 3).clone()
    return RayBundle(
        origins=o,
        directions=d,
        viewdirs=torch.nn.functional.normalize(d, dim=-1),
        nears=torch.full((n,), near),
        fars=torch.full((n,), far),
    )


def _piecewise_cdf(edges: np.ndarray, pdf_mass: np.ndarray):
    """CDF of the piecewise-constant density with bin masses ``pdf_mass`` (normalised) on ``edges``."""
    mass = pdf_mass / pdf_mass.sum()
    cum = np.concatenate([[0.0], np.cumsum(mass)])
    return lambda x: np.interp(x, edges, cum)


# ---------------------------------------------------------------------------------------------- spacing
@pytest.mark.parametrize("kind", ["uniform", "lindisp", "contracted"])
def test_spacing_maps_are_inverse_and_monotone(kind):
    nears, fars = (
        torch.tensor([0.5, 2.0, 0.1], dtype=torch.float64),
        torch.tensor([3.0, 6.0, 100.0], dtype=torch.float64),
    )
    s = torch.linspace(0, 1, 101, dtype=torch.float64).expand(3, -1)
    t = spacing_to_t(s, nears, fars, kind, pivot=1.0)
    torch.testing.assert_close(t[:, 0], nears)
    torch.testing.assert_close(t[:, -1], fars)
    assert bool((t.diff(dim=-1) > 0).all())
    torch.testing.assert_close(t_to_spacing(t, nears, fars, kind, pivot=1.0), s)


def test_spacing_values():
    n, f = torch.tensor([2.0], dtype=torch.float64), torch.tensor([6.0], dtype=torch.float64)
    half = torch.tensor([[0.5]], dtype=torch.float64)
    assert spacing_to_t(half, n, f, "uniform").item() == pytest.approx(4.0)
    assert spacing_to_t(half, n, f, "lindisp").item() == pytest.approx(2 * 2 * 6 / (2 + 6))  # harmonic mean
    # contracted, pivot 1, near 0, far inf-like: linear up to t = 1 (s = 0.5 of g), then disparity.
    n0, f0 = torch.tensor([0.0], dtype=torch.float64), torch.tensor([1e12], dtype=torch.float64)
    assert spacing_to_t(torch.tensor([[0.25]], dtype=torch.float64), n0, f0, "contracted").item() == pytest.approx(0.5)
    assert spacing_to_t(torch.tensor([[0.75]], dtype=torch.float64), n0, f0, "contracted").item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="spacing must be one of"):
        spacing_to_t(half, n, f, "log")


# ------------------------------------------------------------------------------------------ resampling
def test_resampled_edges_follow_the_pdf_ks():
    sampler = ProposalSampler(aabb=AABB, n_samples=64, n_proposal_samples=(8,), histogram_padding=0.0, anneal_steps=0)
    sampler.train()
    edges = torch.tensor([0.0, 0.05, 0.2, 0.3, 0.5, 0.55, 0.8, 0.9, 1.0])
    weights = torch.tensor([0.0, 0.3, 0.05, 0.0, 0.4, 0.1, 0.02, 0.13])
    n_rays = 1000
    new = sampler.resample(edges.expand(n_rays, -1), weights.expand(n_rays, -1), 64)
    assert new.shape == (n_rays, 65) and bool((new.diff(dim=-1) >= 0).all())
    pooled = new.flatten().double().numpy()
    cdf = _piecewise_cdf(edges.double().numpy(), weights.double().numpy())
    assert stats.kstest(pooled, cdf).pvalue > 0.01
    # No sample in a zero-weight bin.
    for a, b in [(0.0, 0.05), (0.3, 0.5)]:
        assert not bool(((new > a + 1e-6) & (new < b - 1e-6)).any())
    # The test has power: a different PDF is rejected.
    other = _piecewise_cdf(edges.double().numpy(), np.ones(8))
    assert stats.kstest(pooled, other).pvalue < 1e-6


def test_resample_zero_weights_is_uniform():
    sampler = ProposalSampler(aabb=AABB, n_proposal_samples=(4,), histogram_padding=0.0, anneal_steps=0).eval()
    edges = torch.tensor([[0.0, 0.1, 0.5, 0.6, 1.0]])
    new = sampler.resample(edges, torch.zeros(1, 4), 8)  # equal mass per bin: two edges per bin, no NaN
    expected = torch.tensor([[0.0, 0.05, 0.1, 0.3, 0.5, 0.55, 0.6, 0.8, 1.0]])
    torch.testing.assert_close(new, expected, atol=1e-6, rtol=0)


def test_resample_padding_and_anneal_mix():
    sampler = ProposalSampler(
        aabb=AABB, n_proposal_samples=(4,), histogram_padding=0.05, anneal_steps=100, anneal_slope=10.0
    )
    sampler.train()
    sampler.training_step_begin(20)
    a = anneal_power(20, anneal_steps=100, slope=10.0)
    assert sampler.anneal == pytest.approx(a) and 0 < a < 1
    edges = torch.tensor([0.0, 0.1, 0.5, 0.6, 1.0])
    weights = torch.tensor([0.7, 0.0, 0.2, 0.1])
    new = sampler.resample(edges.expand(2000, -1), weights.expand(2000, -1), 32)
    mass = weights.double().numpy() ** a + 0.05
    cdf = _piecewise_cdf(edges.double().numpy(), mass)
    assert stats.kstest(new.flatten().double().numpy(), cdf).pvalue > 0.01


def test_resample_deterministic_quantiles():
    sampler = ProposalSampler(aabb=AABB, n_proposal_samples=(4,), histogram_padding=0.0, anneal_steps=0).eval()
    edges = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]], dtype=torch.float64)
    weights = torch.tensor([[0.12, 0.6, 0.0, 0.28]], dtype=torch.float64)
    new = sampler.resample(edges, weights, 10)
    cum = np.concatenate([[0.0], np.cumsum([0.12, 0.6, 0.0, 0.28])])
    expected = np.interp(np.linspace(0, 1, 11), cum, edges[0].numpy())  # inverse CDF at equal quantiles
    np.testing.assert_allclose(new[0].numpy(), expected, atol=1e-5)


def test_anneal_power_schedule():
    assert anneal_power(0, anneal_steps=1000, slope=10.0) == 0.0
    assert anneal_power(1000, anneal_steps=1000, slope=10.0) == 1.0
    assert anneal_power(5000, anneal_steps=1000, slope=10.0) == 1.0
    assert anneal_power(100, anneal_steps=1000, slope=10.0) == pytest.approx(1.0 / 1.9)  # 10*.1 / (9*.1 + 1)
    assert anneal_power(3, anneal_steps=0, slope=10.0) == 1.0


# ------------------------------------------------------------------------------------------- sampler
def _slab_density(lo: float, hi: float, value: float = 20.0):
    """Density ``value`` for lo < z < hi, else 0 ([*batch, 3] -> [*batch, 1])."""
    return lambda p: (value * ((p[..., 2:] > lo) & (p[..., 2:] < hi))).to(p.dtype)


def test_sampler_rounds_shapes_and_weights():
    torch.manual_seed(0)
    sampler = ProposalSampler(
        aabb=AABB, n_samples=24, n_proposal_samples=(48, 16), anneal_steps=0, histogram_padding=0.01
    ).train()
    rays = _rays(300)
    fns = [_slab_density(-0.2, 0.2), _slab_density(-0.2, 0.2)]
    samples, rounds = sampler(rays, density_fns=fns)
    assert samples.starts.shape == (300, 24) and len(rounds) == 2
    assert [r.weights.shape[-1] for r in rounds] == [48, 16]
    edges = samples.edges
    assert bool((edges.diff(dim=-1) >= 0).all())
    assert bool((edges >= 0.5 - 1e-5).all()) and bool((edges <= 3.5 + 1e-5).all())
    for r in rounds:  # rounds carry the compositing weights of their own intervals, t = g^-1(s)
        torch.testing.assert_close(r.edges, spacing_to_t(r.spacing, rays.nears, rays.fars))
        mids = 0.5 * (r.edges[:, 1:] + r.edges[:, :-1])
        pos = rays.origins[:, None] + mids[..., None] * rays.directions[:, None]
        dist = r.edges.diff(dim=-1) * rays.directions.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(r.weights, render_weights_from_density(fns[0](pos)[..., 0], dist))
    # The slab (depth 1.8 .. 2.2 of 0.5 .. 3.5, 13% of the ray) gets most final samples.
    mids = samples.mids
    inside = ((mids > 1.8 - 0.05) & (mids < 2.2 + 0.05)).float().mean().item()
    assert inside > 0.5
    # Final edges follow the PDF of the last round (pooled over rays with identical weights up to jitter).
    s_final = sampler.spacing(samples)
    torch.testing.assert_close(s_final, t_to_spacing(samples.edges, rays.nears, rays.fars))
    w = rounds[-1].weights + 0.01
    r0 = 0
    cdf = _piecewise_cdf(rounds[-1].spacing[r0].double().numpy(), w[r0].double().numpy())
    u = torch.tensor(cdf(s_final[r0].double().numpy()))  # one ray: its 25 edges are stratified in u
    strata = torch.floor(u * 25).long()
    assert (strata == torch.arange(25)).float().mean() > 0.9


def test_sampler_eval_is_deterministic_and_lindisp():
    sampler = ProposalSampler(aabb=AABB, n_samples=16, n_proposal_samples=(32,), spacing="lindisp").eval()
    rays = _rays(20)
    a, ra = sampler(rays)
    b, _ = sampler(rays)
    torch.testing.assert_close(a.starts, b.starts)
    assert not ra[0].weights.requires_grad
    # First round: uniform in disparity.
    inv = 1.0 / ra[0].edges
    torch.testing.assert_close(inv.diff(dim=-1), inv.diff(dim=-1)[:, :1].expand(-1, 32), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="near > 0"):
        sampler(_rays(4, near=0.0))


def test_update_schedule_controls_gradients():
    sampler = ProposalSampler(
        aabb=AABB, n_samples=8, n_proposal_samples=(16,), update_every=3, update_warmup=10
    ).train()
    rays = _rays(8)
    flags = []
    for step in (0, 9, 10, 11, 12):
        sampler.training_step_begin(step)
        _, rounds = sampler(rays)
        flags.append(rounds[0].weights.requires_grad)
    assert flags == [True, True, False, False, True]


def test_proposal_field_and_bad_config():
    field = ProposalDensityField(aabb=AABB, max_resolution=32)
    x = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]])
    d = field(x)
    assert d.shape == (2, 1) and d[0, 0] > 0 and d[1, 0] == 0
    d.sum().backward()
    assert field.encoding.params.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="proposal.py"):
        ProposalSampler(aabb=AABB, n_proposal_samples=(64, 32), proposal_max_resolutions=(128,))
    with pytest.raises(ValueError, match="proposal.py"):
        ProposalSampler(aabb=AABB, spacing="log")
    with pytest.raises(ValueError, match="proposal.py"):
        ProposalSampler(aabb=AABB, n_proposal_samples=(16,))(_rays(2), density_fns=[])


def test_proposal_fields_learn_to_bound_nerf_weights():
    # Target NeRF weights: a slab of density 20 at depth 1.8..2.2. Training only the proposal networks with the
    # interlevel loss must make their envelope bound those weights (loss falls a lot).
    torch.manual_seed(0)
    sampler = ProposalSampler(
        aabb=AABB,
        n_samples=16,
        n_proposal_samples=(24,),
        anneal_steps=0,
        proposal_max_resolutions=(16,),
        proposal_n_levels=2,
        proposal_log2_hashmap_size=10,
        update_warmup=10**6,
    )
    sampler.train()
    opt = torch.optim.Adam(sampler.parameters(), lr=2e-2, eps=1e-15)
    target = _slab_density(-0.2, 0.2)
    rays = _rays(64, seed=1)
    losses = []
    for _ in range(40):
        samples, rounds = sampler(rays)
        dist = samples.deltas * rays.directions.norm(dim=-1, keepdim=True)
        w = render_weights_from_density(target(samples.positions)[..., 0], dist)
        loss = interlevel_loss(rounds, samples.edges, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert math.isfinite(last) and last < 0.2 * first, (first, last)


def test_unbounded_contracted_spacing_runs_finite():
    sampler = ProposalSampler(
        aabb=AABB,
        n_samples=8,
        n_proposal_samples=(16, 8),
        spacing="contracted",
        spacing_pivot=1.0,
        contraction="inf",
        proposal_max_resolutions=(16, 16),
        proposal_log2_hashmap_size=10,
    ).train()
    rays = _rays(16, near=0.05, far=200.0)
    samples, rounds = sampler(rays)
    assert bool(torch.isfinite(samples.edges).all()) and float(samples.edges.max()) <= 200.0 + 1e-3
    # Half of the first round's edges (in s) lie beyond the pivot t = 1: disparity spacing outside.
    frac_beyond = (rounds[0].edges > 1.0).float().mean().item()
    assert 0.4 < frac_beyond < 0.6
    loss = interlevel_loss(rounds, samples.edges, torch.rand(16, 8))
    loss.backward()
    assert all(p.grad is not None for p in sampler.encoding_parameters())
