"""Volume rendering and samplers against analytic and float64 references."""

import math

import pytest
import torch

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.fields.base import FieldOutputs
from neural3d.render import VolumeRenderer
from neural3d.render.volume import (
    alphas_from_density,
    render_weights_from_alpha,
    render_weights_from_density,
    transmittance_from_density,
)
from neural3d.samplers import PDFSampler, UniformSampler, sample_pdf


def _rays(n, near=2.0, far=6.0, dirs=None):
    o = torch.zeros(n, 3, dtype=torch.float64)
    d = dirs if dirs is not None else torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64).expand(n, 3)
    return RayBundle(
        o,
        d,
        d / d.norm(dim=-1, keepdim=True),
        torch.full((n,), near, dtype=torch.float64),
        torch.full((n,), far, dtype=torch.float64),
    )


@pytest.mark.parametrize("sigma,n", [(0.3, 7), (2.0, 64), (10.0, 200)])
def test_constant_slab_transmittance(sigma, n):
    # density sigma inside [3, 5] along t, zero elsewhere; rays with |d| = 1.5 so distances scale.
    d = torch.tensor([[0.0, 0.9, -1.2]], dtype=torch.float64)  # norm 1.5
    rays = _rays(1, dirs=d)
    # slab boundaries 3 and 5 fall on interval edges
    f64 = {"dtype": torch.float64}
    edges = torch.cat(
        [
            torch.linspace(2, 3, n + 1, **f64)[:-1],
            torch.linspace(3, 5, n + 1, **f64)[:-1],
            torch.linspace(5, 6, n + 1, **f64),
        ]
    )[None]
    samples = RaySamples.from_edges(rays, edges)
    inside = (samples.mids > 3) & (samples.mids < 5)
    density = torch.where(inside, torch.tensor(sigma, **f64), torch.tensor(0.0, **f64))
    out = VolumeRenderer()(
        FieldOutputs(density=density[..., None], rgb=torch.ones(*density.shape, 3, dtype=torch.float64)),
        samples,
        background=torch.zeros(3, dtype=torch.float64),
    )
    expected_opacity = 1 - math.exp(-sigma * 2.0 * 1.5)
    assert out.opacity.item() == pytest.approx(expected_opacity, abs=1e-12)
    T = transmittance_from_density(density, samples.deltas * 1.5)
    assert T[0, -1].item() == pytest.approx(math.exp(-sigma * 3.0), rel=1e-12)
    # expected depth of a slab: analytic mean of t under sigma e^{-sigma*1.5*(t-3)} on [3,5] (discretised midpoint rule)
    k = sigma * 1.5
    t_exact = 3 + (1 / k - 2 * math.exp(-2 * k) / (1 - math.exp(-2 * k)))
    assert out.depth.item() == pytest.approx(t_exact, abs=5.0 / n)


def test_weights_from_alpha_equal_log_space():
    torch.manual_seed(0)
    density = torch.rand(16, 32, dtype=torch.float64) * 5
    dist = torch.rand(16, 32, dtype=torch.float64) * 0.2
    w1 = render_weights_from_density(density, dist)
    w2 = render_weights_from_alpha(alphas_from_density(density, dist))
    torch.testing.assert_close(w1, w2, atol=1e-8, rtol=1e-6)
    # explicit loop reference
    ref = torch.zeros_like(w1)
    for i in range(32):
        ref[:, i] = torch.exp(-(density[:, :i] * dist[:, :i]).sum(-1)) * (1 - torch.exp(-density[:, i] * dist[:, i]))
    torch.testing.assert_close(w1, ref, atol=1e-12, rtol=1e-10)


def test_renderer_gradients_match_float64_finite_differences():
    torch.manual_seed(1)
    rays = _rays(3)
    samples = UniformSampler(n_samples=8).eval()(rays)
    dens = (torch.rand(3, 8, 1, dtype=torch.float64) * 2).requires_grad_()
    rgb = torch.rand(3, 8, 3, dtype=torch.float64).requires_grad_()
    bg = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)

    def fn(d, c):
        return VolumeRenderer()(FieldOutputs(density=d, rgb=c), samples, bg).rgb

    assert torch.autograd.gradcheck(fn, (dens, rgb))


def test_uniform_sampler_ranges_and_lindisp():
    rays = _rays(5, near=1.0, far=10.0)
    s = UniformSampler(n_samples=9, lindisp=True).eval()(rays)
    edges = s.edges[0]
    assert edges[0].item() == pytest.approx(1.0) and edges[-1].item() == pytest.approx(10.0)
    inv = 1 / edges
    torch.testing.assert_close(inv[1:] - inv[:-1], torch.full((9,), (0.1 - 1.0) / 9, dtype=torch.float64))
    train = UniformSampler(n_samples=9).train()(rays)
    assert (train.deltas >= 0).all() and (train.starts >= 1.0).all() and (train.ends <= 10.0).all()
    torch.testing.assert_close(train.ends[:, :-1], train.starts[:, 1:])


def test_sample_pdf_inverts_known_cdf():
    # deterministic u: samples must be the exact inverse CDF of the piecewise-constant PDF
    bins = torch.tensor([[0.0, 1.0, 3.0, 4.0]], dtype=torch.float64)
    weights = torch.tensor([[1.0, 2.0, 1.0]], dtype=torch.float64)
    s = sample_pdf(bins, weights, 5, jitter=False, padding=0.0)
    # CDF at edges: 0, .25, .75, 1 ; u = 0, .25, .5, .75, 1 -> 0, 1, 2, 3, 4
    torch.testing.assert_close(s, torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]], dtype=torch.float64))


def test_sample_pdf_reproduces_distribution():
    g = torch.Generator().manual_seed(0)
    n_bins = 10
    bins = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)[None].repeat(2000, 1)
    w = torch.rand(n_bins, generator=g, dtype=torch.float64) ** 2
    s = sample_pdf(bins, w[None].repeat(2000, 1), 64, jitter=True, padding=0.0, generator=g)
    hist = torch.histc(s.flatten().float(), bins=n_bins, min=0, max=1).double()
    hist /= hist.sum()
    torch.testing.assert_close(hist, w / w.sum(), atol=3e-3, rtol=0)
    assert (s[:, 1:] >= s[:, :-1]).all()


def test_pdf_sampler_zero_weights_uniform_and_merge():
    rays = _rays(4)
    coarse = UniformSampler(n_samples=8).eval()(rays)
    fine = PDFSampler(n_samples=16).eval()(coarse, torch.zeros(4, 8, dtype=torch.float64))
    assert fine.n_samples == 8 + 16 + 1
    assert (fine.deltas >= 0).all()
    assert fine.starts[:, 0].eq(2.0).all() and fine.ends[:, -1].eq(6.0).all()
