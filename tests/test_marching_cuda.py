"""CUDA paths equal the PyTorch references: nerfacc's traversal, compositing and ray/box test; our ops on CUDA.

Skipped without CUDA (and the nerfacc parts without a working nerfacc build).
"""

from __future__ import annotations

import pytest
import torch

from neural3d.core.rays import RayBundle
from neural3d.render.packed import render_weights_packed
from neural3d.samplers import nerfacc_backend
from neural3d.samplers.aabb import ray_aabb_intersect
from neural3d.samplers.marching import march_rays
from neural3d.samplers.occupancy_grid import OccupancyGrid

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
needs_nerfacc = pytest.mark.skipif(
    not nerfacc_backend.usable(torch.device("cuda")), reason="needs CUDA and a working nerfacc build"
)


def _rays(n=4096, device=CUDA, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    d = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -1.0])
    d = d / d.norm(dim=-1, keepdim=True)  # unit directions: t is world distance for both libraries
    return RayBundle(
        o.to(device),
        d.to(device),
        d.to(device),
        torch.full((n,), 0.5, device=device),
        torch.full((n,), 6.0, device=device),
    )


def _grid(device=CUDA, levels=2):
    torch.manual_seed(0)
    grid = OccupancyGrid(aabb=torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=32, levels=levels).to(device)
    grid.binaries.copy_(torch.rand_like(grid.occs) > 0.7)
    return grid


@needs_cuda
def test_torch_marching_on_cuda_equals_cpu():
    cpu = march_rays(_rays(device=torch.device("cpu")), _grid("cpu"), step_size=0.01)
    gpu = march_rays(_rays(), _grid(), step_size=0.01)
    assert torch.equal(gpu.ray_indices.cpu(), cpu.ray_indices)
    torch.testing.assert_close(gpu.starts.cpu(), cpu.starts, rtol=1e-5, atol=1e-5)


@needs_nerfacc
@pytest.mark.parametrize("levels", [1, 2])
def test_nerfacc_traversal_equals_torch_marching(levels):
    rays, grid = _rays(), _grid(levels=levels)
    ours = march_rays(rays, grid, step_size=0.01)
    theirs = nerfacc_backend.march(rays, grid.aabbs, grid.binaries, step_size=0.01, cone_angle=0.0, stratified=False)
    assert ours.n_samples > 10000
    # a midpoint exactly on a cell face may fall either way in float32: allow a few rays to differ
    same = ours.packed_info[:, 1] == theirs.packed_info[:, 1]
    assert int((~same).sum()) <= max(2, len(rays) // 1000)
    a, b = ours.mask(same[ours.ray_indices]), theirs.mask(same[theirs.ray_indices])
    assert torch.equal(a.ray_indices, b.ray_indices)
    torch.testing.assert_close(a.starts, b.starts, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(a.ends, b.ends, rtol=1e-5, atol=2e-5)


@needs_nerfacc
def test_nerfacc_compositing_equals_packed_rendering_forward_and_backward():
    import nerfacc

    rays, grid = _rays(), _grid()
    s = march_rays(rays, grid, step_size=0.01)
    sig = torch.rand(s.n_samples, device=CUDA).mul_(20).requires_grad_()
    w_ours, t_ours, _ = render_weights_packed(sig, s.deltas, s.ray_indices, s.packed_info)
    sig2 = sig.detach().clone().requires_grad_()
    w_theirs, t_theirs, _ = nerfacc.render_weight_from_density(
        s.starts, s.ends, sig2, ray_indices=s.ray_indices, n_rays=s.n_rays
    )
    torch.testing.assert_close(w_ours, w_theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(t_ours, t_theirs, rtol=1e-4, atol=1e-6)
    g = torch.rand_like(w_ours)
    (ga,) = torch.autograd.grad((w_ours * g).sum(), sig)
    (gb,) = torch.autograd.grad((w_theirs * g).sum(), sig2)
    torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-5)


@needs_nerfacc
def test_nerfacc_ray_aabb_equals_ours():
    import nerfacc

    rays = _rays()
    boxes = torch.tensor([[-1.0, -1, -1, 1, 1, 1], [-0.5, -0.2, -0.3, 0.4, 0.6, 0.2]], device=CUDA)
    t0, t1, hit = ray_aabb_intersect(rays.origins, rays.directions, boxes)
    n0, n1, nhit = nerfacc.ray_aabb_intersect(rays.origins, rays.directions, boxes)
    assert torch.equal(hit, nhit)
    torch.testing.assert_close(t0[hit], n0[hit], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t1[hit], n1[hit], rtol=1e-5, atol=1e-5)
