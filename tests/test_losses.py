"""mip-NeRF 360 losses vs brute-force float64 references: outer measure, interlevel loss, distortion loss."""

import numpy as np
import pytest
import torch

from neural3d.losses import distortion_loss, interlevel_loss, outer_measure


def _random_partition(n_rays: int, n: int, g: torch.Generator, lo=0.0, hi=1.0) -> torch.Tensor:
    """[n_rays, n + 1] sorted edges with the end points ``lo``, ``hi`` and random interior edges."""
    inner, _ = torch.sort(torch.rand(n_rays, n - 1, generator=g, dtype=torch.float64) * (hi - lo) + lo, dim=-1)
    ends = torch.full((n_rays, 1), lo, dtype=torch.float64), torch.full((n_rays, 1), hi, dtype=torch.float64)
    return torch.cat([ends[0], inner, ends[1]], dim=-1)


def _weights(n_rays: int, n: int, g: torch.Generator) -> torch.Tensor:
    w = torch.rand(n_rays, n, generator=g, dtype=torch.float64) ** 3  # peaky
    return w / w.sum(-1, keepdim=True) * torch.rand(n_rays, 1, generator=g, dtype=torch.float64)


def _outer_bruteforce(t: np.ndarray, te: np.ndarray, we: np.ndarray) -> np.ndarray:
    out = np.zeros(len(t) - 1)
    for i in range(len(t) - 1):
        for j in range(len(te) - 1):
            if te[j] < t[i + 1] and te[j + 1] > t[i]:  # open intervals intersect
                out[i] += we[j]
    return out


def test_outer_measure_matches_bruteforce():
    g = torch.Generator().manual_seed(0)
    t = _random_partition(6, 17, g)
    te = _random_partition(6, 9, g, lo=0.1, hi=0.9)  # envelope not covering the ends: zero there
    we = _weights(6, 9, g)
    out = outer_measure(t, te, we)
    for r in range(6):
        np.testing.assert_allclose(
            out[r].numpy(), _outer_bruteforce(t[r].numpy(), te[r].numpy(), we[r].numpy()), rtol=1e-12, atol=1e-15
        )


def test_outer_measure_shared_edges_and_identity():
    # Same partition: each interval overlaps only itself (touching neighbours do not count).
    edges = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]], dtype=torch.float64)
    w = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    torch.testing.assert_close(outer_measure(edges, edges, w), w)
    # Coarse envelope [0, .5), [.5, 1): the fine intervals inherit their parent's weight.
    coarse = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(
        outer_measure(edges, coarse, torch.tensor([[0.3, 0.7]], dtype=torch.float64)),
        torch.tensor([[0.3, 0.3, 0.7, 0.7]], dtype=torch.float64),
    )


def test_interlevel_loss_matches_bruteforce_and_stops_gradient():
    g = torch.Generator().manual_seed(1)
    n_rays = 5
    t = _random_partition(n_rays, 12, g)
    w = _weights(n_rays, 12, g).requires_grad_(True)
    rounds = []
    for m in (7, 4):
        rounds.append((_random_partition(n_rays, m, g), (0.2 * _weights(n_rays, m, g)).requires_grad_(True)))
    loss = interlevel_loss(rounds, t, w)
    eps = np.finfo(np.float64).eps
    ref = 0.0
    for te, we in rounds:
        per = []
        for r in range(n_rays):
            bound = _outer_bruteforce(t[r].numpy(), te[r].numpy(), we[r].detach().numpy())
            wr = w[r].detach().numpy()
            per.append(np.maximum(wr - bound, 0.0) ** 2 / (wr + eps))
        ref += np.mean(per)
    assert ref > 0
    assert loss.item() == pytest.approx(ref, rel=1e-12)
    loss.backward()
    assert w.grad is None  # stop-gradient on the NeRF weights
    assert all(we.grad is not None and we.grad.abs().sum() > 0 for _, we in rounds)
    # Raising an envelope weight can only lower the loss.
    assert all(bool((we.grad <= 1e-15).all()) for _, we in rounds)


def test_interlevel_loss_zero_when_envelope_bounds():
    g = torch.Generator().manual_seed(2)
    t = _random_partition(4, 10, g)
    w = _weights(4, 10, g)
    coarse = t[:, ::2]  # every other edge: each coarse interval is the union of two fine ones
    bound = w.view(4, 5, 2).sum(-1)
    assert interlevel_loss([(coarse, bound)], t, w).item() == 0.0
    assert interlevel_loss([(coarse, 0.5 * bound)], t, w).item() > 0.0


def _distortion_bruteforce(w: np.ndarray, s: np.ndarray) -> float:
    m = 0.5 * (s[1:] + s[:-1])
    total = 0.0
    for i in range(len(w)):
        for j in range(len(w)):
            total += w[i] * w[j] * abs(m[i] - m[j])
    return total + float(np.sum(w**2 * (s[1:] - s[:-1]))) / 3.0


def test_distortion_matches_double_sum():
    g = torch.Generator().manual_seed(3)
    s = _random_partition(7, 23, g)
    w = _weights(7, 23, g)
    per_ray = distortion_loss(w, s, reduce=False)
    ref = np.array([_distortion_bruteforce(w[r].numpy(), s[r].numpy()) for r in range(7)])
    np.testing.assert_allclose(per_ray.numpy(), ref, rtol=1e-12)
    assert distortion_loss(w, s).item() == pytest.approx(ref.mean(), rel=1e-12)


def test_distortion_is_the_continuous_integral():
    # Eq. 15 is the exact double integral of the step function w(u) = w_i / delta_i, so splitting every
    # interval in K equal parts (weights w_i / K) must not change it; one interval gives w^2 delta / 3.
    g = torch.Generator().manual_seed(4)
    s = _random_partition(3, 6, g)
    w = _weights(3, 6, g)
    K = 5
    frac = torch.linspace(0, 1, K + 1, dtype=torch.float64)[:-1]
    fine = (s[:, :-1, None] + frac * (s[:, 1:] - s[:, :-1])[..., None]).flatten(1)
    fine = torch.cat([fine, s[:, -1:]], dim=-1)
    fine_w = (w[..., None] / K).expand(-1, -1, K).flatten(1)
    torch.testing.assert_close(distortion_loss(fine_w, fine, reduce=False), distortion_loss(w, s, reduce=False))
    one = distortion_loss(torch.tensor([[0.6]], dtype=torch.float64), torch.tensor([[0.2, 0.5]], dtype=torch.float64))
    assert one.item() == pytest.approx(0.36 * 0.3 / 3)


def test_distortion_gradient_matches_bruteforce_autograd():
    g = torch.Generator().manual_seed(5)
    s = _random_partition(2, 8, g)
    w = _weights(2, 8, g).requires_grad_(True)
    distortion_loss(w, s).backward()
    w2 = w.detach().clone().requires_grad_(True)
    m = 0.5 * (s[:, 1:] + s[:, :-1])
    ref = (w2[:, :, None] * w2[:, None, :] * (m[:, :, None] - m[:, None, :]).abs()).sum((1, 2))
    ref = (ref + (w2**2 * (s[:, 1:] - s[:, :-1])).sum(-1) / 3).mean()
    ref.backward()
    torch.testing.assert_close(w.grad, w2.grad)


def test_bad_shapes():
    with pytest.raises(ValueError, match="losses.py"):
        distortion_loss(torch.rand(3, 4), torch.rand(3, 4))
    with pytest.raises(ValueError, match="losses.py"):
        interlevel_loss([], torch.rand(3, 5), torch.rand(2, 4))


def test_exclusive_cumsum_is_exact_next_to_a_1e10_optical_depth():
    # An NDC ray's opaque last interval has optical depth ~1e10 (VolumeRenderer(opaque_far=True)). The old form
    # cumsum(x) - x recovers the sum before it by cancellation and loses it to rounding; the shifted cumsum adds
    # only the earlier entries, so it is exact whatever follows.
    from neural3d.render.scan import exclusive_cumsum
    from neural3d.render.volume import transmittance_from_density

    tau = torch.tensor([[0.1, 0.2, 0.3, 1e10], [1e10, 0.5, 0.25, 0.125]], dtype=torch.float64)
    exact = torch.tensor(  # Python floats are float64 and add in the same order
        [[0.0, 0.1, 0.1 + 0.2, 0.1 + 0.2 + 0.3], [0.0, 1e10, 1e10 + 0.5, 1e10 + 0.5 + 0.25]], dtype=torch.float64
    )
    old = torch.cumsum(tau, dim=-1) - tau
    assert (old[0, 3] - exact[0, 3]).abs() > 1e-8  # the old form's error: ~1e-7, from the ulp of 1e10 (1.9e-6)
    new = exclusive_cumsum(tau)
    assert torch.equal(new, exact)
    assert torch.equal(exclusive_cumsum(tau.T, dim=0), exact.T)  # any axis
    # in float32 the old form loses the whole sum (ulp(1e10) = 1024): the last sample would see T = 1, not exp(-0.6)
    tau32 = tau.float()
    assert float((torch.cumsum(tau32, -1) - tau32)[0, 3]) == 0.0
    torch.testing.assert_close(exclusive_cumsum(tau32)[0, 3], torch.tensor(0.6))
    trans = transmittance_from_density(tau32, torch.ones_like(tau32))
    torch.testing.assert_close(trans[0, 3], torch.exp(torch.tensor(-0.6)))
    # the distortion loss uses it: a 1e10-long last interval does not perturb the earlier terms
    w = torch.tensor([[0.2, 0.3, 0.1, 0.4]], dtype=torch.float64)
    edges = torch.tensor([[0.0, 0.1, 0.3, 0.6, 1e10]], dtype=torch.float64)
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    brute = (w[:, :, None] * w[:, None, :] * (mids[:, :, None] - mids[:, None, :]).abs()).sum((-1, -2))
    brute = brute + (w**2 * (edges[:, 1:] - edges[:, :-1])).sum(-1) / 3
    torch.testing.assert_close(distortion_loss(w, edges, reduce=False), brute, rtol=1e-12, atol=0)
