"""The fused CPU kernel of TensoRF's vector-matrix features (``neural3d/fields/backends/cpu_vm.c``).

Against a float64 reference (random grids, points on cell borders, on the box faces and outside it), against the
PyTorch path (the same arithmetic: component products equal bit for bit on an FMA machine, sums to rounding),
the backward into the planes and lines against float64 gradients, thread-count invariance of both, the weights
cache following parameter changes, the backend choice (``auto`` falls back without a compiler; ``cpu`` refuses
what it cannot run), checkpoints unchanged.
"""

from __future__ import annotations

import pytest
import torch

from neural3d.fields.backends import c_build, cpu_vm
from neural3d.fields.tensorf_field import TensoRFField
from neural3d.fields.vm_decomposition import VMDecomposition

needs_kernel = pytest.mark.skipif(not cpu_vm.available(), reason="no C compiler to build the VM kernel")


def _grids(comps=(3, 5, 2), res=(7, 5, 9), seed=0) -> tuple[VMDecomposition, VMDecomposition]:
    """The same random grids in float32 (backend cpu) and float64 (torch)."""
    torch.manual_seed(seed)
    vm = VMDecomposition(n_components=comps, resolution=res, init_scale=1.0, backend="cpu")
    ref = VMDecomposition(n_components=comps, resolution=res, init_scale=1.0, backend="torch").double()
    ref.load_state_dict(vm.state_dict())
    return vm, ref


def _points(res=(7, 5, 9), n=500, seed=1) -> torch.Tensor:
    """[n, 3] float32 points: random, on cell borders (grid-node coordinates), on the box faces and outside."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 2.4 - 1.2
    k = n // 4
    for axis in range(3):  # a quarter on grid planes along each axis (cell borders, incl. the faces -1 and +1)
        nodes = torch.randint(0, res[axis], (k,), generator=g)
        x[axis * k : (axis + 1) * k, axis] = -1.0 + 2.0 * nodes.float() / (res[axis] - 1)
    x[0], x[1], x[2] = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([1.0, -1.0, 0.0])
    return x


@needs_kernel
@pytest.mark.parametrize("comps", [(3, 5, 2), (16, 16, 16), (1, 1, 1)])
def test_kernel_matches_float64_reference(comps):
    vm, ref = _grids(comps)
    x = _points()
    with torch.no_grad():
        assert vm.uses_kernel(x)
        out, dens = vm(x), vm.density_sum(x)
        expected = ref(x.double().clamp(-1, 1))
    assert out.shape == (len(x), sum(comps)) and out.dtype == torch.float32 and dens.shape == (len(x),)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dens.double(), expected.sum(-1), rtol=1e-5, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("out_dim", [27, 1, 32, 40])
def test_fused_basis_matches_float64_reference(out_dim):
    vm, ref = _grids((16, 12, 20))
    basis = torch.randn(out_dim, 48)
    x = _points()
    with torch.no_grad():
        out = vm.projected(x, basis)
        expected = ref(x.double().clamp(-1, 1)) @ basis.double().T
    assert out.shape == (len(x), out_dim)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad(), pytest.raises(ValueError, match="basis must be"):
        vm.projected(x, torch.randn(out_dim, 47))
    basis.requires_grad_()  # a gradient for the matrix: the PyTorch path, same values
    with_grad = vm.projected(x, basis)
    assert with_grad.requires_grad
    torch.testing.assert_close(with_grad.detach(), out, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_kernel_equals_the_torch_path():
    """Same operations as ``grid_sample`` (its fused multiply-adds) and ``sample_line``: equal products; the density
    sums are sequential per mode as ``sum(0)`` over 16 rows."""
    vm, _ = _grids((16, 16, 16), res=(31, 17, 23))
    x = _points((31, 17, 23), n=4000)
    with torch.no_grad():
        fast, fast_sum = vm(x), vm.density_sum(x)
        vm.backend = "torch"
        slow, slow_sum = vm(x), vm.density_sum(x)
    torch.testing.assert_close(fast, slow, rtol=2e-7, atol=1e-7)
    torch.testing.assert_close(fast_sum, slow_sum, rtol=1e-6, atol=1e-6)
    assert float((fast == slow).float().mean()) > 0.99  # bit-equal but for a CPU without FMA


@needs_kernel
def test_kernel_results_do_not_depend_on_the_thread_count():
    vm, _ = _grids((8, 8, 8), res=(20, 20, 20))
    x = _points((20, 20, 20), n=3000)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            with torch.no_grad():
                outs.append((vm(x), vm.density_sum(x)))
    finally:
        torch.set_num_threads(before)
    for out, dens in outs[1:]:
        assert torch.equal(out, outs[0][0]) and torch.equal(dens, outs[0][1])


@needs_kernel
def test_nan_points_give_nan_and_empty_inputs_work():
    vm, _ = _grids()
    x = torch.tensor([[0.1, float("nan"), 0.2], [0.0, 0.0, 0.0]])
    with torch.no_grad():
        out, dens = vm(x), vm.density_sum(x)
        assert vm(x[:0]).shape == (0, 10) and vm.density_sum(x[:0]).shape == (0,)
    assert bool(out[0].isnan().all()) and bool(dens[0].isnan()) and bool(out[1].isfinite().all())


@needs_kernel
def test_weights_cache_follows_parameter_changes():
    vm, _ = _grids()
    x = _points()
    with torch.no_grad():
        first = vm(x)
        vm.planes[1].mul_(2.0)  # in place: the version counter moves
        torch.testing.assert_close(vm(x)[:, 3:8], 2.0 * first[:, 3:8], rtol=1e-6, atol=1e-6)
        vm.upsample((9, 7, 11))  # new storage and shapes
        vm.backend = "torch"
        ref = vm(x)
        vm.backend = "cpu"
        torch.testing.assert_close(vm(x), ref, rtol=1e-6, atol=1e-6)


@needs_kernel
@pytest.mark.parametrize("optimizer", ["fused", "foreach"])
def test_weights_cache_follows_optimizer_steps(optimizer):
    """torch's fused Adam (the trainer's on CPU) changes the grids in place without moving their version counters:
    the cache must not serve the old copies after a step."""
    vm, _ = _grids()
    x = _points()
    opt = torch.optim.Adam(vm.parameters(), lr=0.05, **{optimizer: True})
    for _ in range(2):
        vm.density_sum(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            fast = vm(x)
            vm.backend = "torch"
            slow = vm(x)
            vm.backend = "cpu"
        torch.testing.assert_close(fast, slow, rtol=2e-7, atol=1e-7)


@needs_kernel
@pytest.mark.parametrize("reduce", [False, True])
def test_kernel_gradients_match_float64_and_do_not_depend_on_the_thread_count(reduce):
    vm, ref = _grids((16, 5, 9), res=(9, 6, 11))
    x = _points((9, 6, 11), n=2000)
    g = torch.Generator().manual_seed(4)
    grad = torch.randn(len(x), generator=g) if reduce else torch.randn(len(x), 30, generator=g)
    assert vm.uses_kernel(x)  # points need no gradient; the planes and lines do
    assert not vm.uses_kernel(x.clone().requires_grad_())  # a gradient for the points: the PyTorch path
    expected_out = ref.density_sum(x.double()) if reduce else ref(x.double())
    expected = torch.autograd.grad(expected_out, list(ref.parameters()), grad.double())
    before, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = vm.density_sum(x) if reduce else vm(x)
            assert "VMFeatures" in type(out.grad_fn).__name__  # the kernel's backward
            results.append(torch.autograd.grad(out, list(vm.parameters()), grad))
    finally:
        torch.set_num_threads(before)
    for got, want in zip(results[0], expected):
        assert got.shape == want.shape and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    for other in results[1:]:  # each thread owns bands of rows: the same sums in the same order
        assert all(torch.equal(a, b) for a, b in zip(other, results[0]))


def _field_and_queries(seed: int, resolution, n: int, **kwargs):
    """A random TensoRF field and [n, 3] positions (some outside its box) and unit directions."""
    torch.manual_seed(seed)
    field = TensoRFField(aabb=[[-1.0] * 3, [1.0] * 3], resolution=resolution, init_scale=0.5, **kwargs)
    return field, torch.rand(n, 3) * 2.4 - 1.2, torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)


def _set_backend(field: TensoRFField, backend: str) -> None:
    for grid in (field.density_grid, field.app_grid):
        grid.backend = backend


@needs_kernel
def test_training_gradients_of_the_field_match_the_torch_path():
    field, pos, dirs = _field_and_queries(5, (10, 12, 9), 3000, density_shift=0.0)
    grads = {}
    for backend in ("cpu", "torch"):
        _set_backend(field, backend)
        density, rgb = field.query(pos, dirs)
        loss = density.square().mean() + (rgb - 0.3).square().mean()
        grads[backend] = torch.autograd.grad(loss, [p for p in field.parameters() if p.requires_grad])
    for a, b in zip(grads["cpu"], grads["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert all(float(g.abs().max()) > 0 for g in grads["cpu"])  # every parameter got a gradient


@needs_kernel
def test_field_renders_the_same_with_either_backend():
    field, pos, dirs = _field_and_queries(3, (12, 10, 14), 2000)
    results = {}
    for backend in ("cpu", "torch"):
        _set_backend(field, backend)
        with torch.no_grad():
            density, feats = field.density_and_features(pos)
            results[backend] = (density, field.color(feats, dirs))
    torch.testing.assert_close(results["cpu"][0], results["torch"][0], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(results["cpu"][1], results["torch"][1], rtol=1e-6, atol=1e-6)
    assert float(results["cpu"][0].max()) > 0  # not a trivially empty field


def test_checkpoint_layout_is_unchanged():
    field = TensoRFField(aabb=[[-1.0] * 3, [1.0] * 3], resolution=(4, 5, 6), vm_backend="torch")
    keys = {k for k in field.state_dict() if "_grid." in k}
    expected = {f"{g}_grid.{kind}.{m}" for g in ("density", "app") for kind in ("planes", "lines") for m in range(3)}
    assert keys == expected
    other = TensoRFField(aabb=[[-1.0] * 3, [1.0] * 3], resolution=(4, 5, 6), vm_backend="auto")
    other.load_state_dict(field.state_dict())  # the backend is no state: loads either way, strictly


def test_backend_names_and_refusals():
    with pytest.raises(ValueError, match="vector-matrix backend must be one of"):
        VMDecomposition(n_components=(1, 1, 1), resolution=(2, 2, 2), backend="triton")
    vm = VMDecomposition(n_components=(1, 1, 1), resolution=(2, 2, 2), backend="cpu").double()
    with torch.no_grad(), pytest.raises(ValueError, match="needs float32 CPU tensors"):
        vm(torch.zeros(3, 3, dtype=torch.float64))
    vm.backend = "auto"  # float64: the PyTorch path, no error
    with torch.no_grad():
        assert vm(torch.zeros(3, 3, dtype=torch.float64)).dtype == torch.float64


def test_without_a_compiler_auto_falls_back_and_cpu_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent")
    monkeypatch.setenv("NEURAL3D_CACHE_DIR", str(tmp_path))
    cpu_vm.load_library.cache_clear()
    try:
        with pytest.raises(c_build.CpuKernelUnavailable, match="nonexistent"):
            cpu_vm.load_library()
        assert not cpu_vm.available()
        vm = VMDecomposition(n_components=(2, 2, 2), resolution=(3, 3, 3))
        x = torch.rand(10, 3) * 2 - 1
        with torch.no_grad():
            assert not vm.uses_kernel(x)
            assert vm(x).shape == (10, 6)
            vm.backend = "cpu"
            with pytest.raises(ValueError, match="backend 'cpu' cannot be built here"):
                vm(x)
        assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no half-written library left behind
    finally:
        cpu_vm.load_library.cache_clear()  # later tests build (or load) the real library again
    with pytest.raises(c_build.CpuKernelUnavailable, match="no C compiler"):
        cpu_vm._KERNEL.load(None)
