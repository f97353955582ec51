"""Hash-grid backends: names and auto choice, the fused CPU (C) and Triton kernels vs the PyTorch reference
(forward and gradients), tcnn parameter copies.

Without CUDA the Triton kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET=1 is set here
before triton is imported); with CUDA they are compiled. Tests skip when triton / CUDA / tinycudann are absent.
"""

import importlib.util
import logging
import os
import sys
import time

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_TCNN = importlib.util.find_spec("tinycudann") is not None
if HAS_TRITON and not HAS_CUDA and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"

# imported after TRITON_INTERPRET is set, should they import triton (which reads it when kernels are defined)
from neural3d.fields import NGPField  # noqa: E402
from neural3d.fields.backends import candidates, cpu_kernel_available, pick_fastest, resolve_backend  # noqa: E402
from neural3d.fields.backends.cpu_hash import CpuKernelUnavailable, cpu_hash_encode  # noqa: E402
from neural3d.fields.backends.tcnn import copy_params_from_tcnn, copy_params_to_tcnn  # noqa: E402
from neural3d.fields.hashgrid import HashGridEncoding, grid_layout, hash_encode, per_level_scale_for  # noqa: E402

DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")


def _triton_usable() -> bool:
    if not HAS_TRITON:
        return False
    import triton.language as tl

    return HAS_CUDA or type(tl.zeros).__name__ == "InterpretedFunction"


needs_triton = pytest.mark.skipif(not _triton_usable(), reason="triton not installed (or imported without interpreter)")
HAS_CPU_KERNEL = cpu_kernel_available()
needs_cpu_kernel = pytest.mark.skipif(not HAS_CPU_KERNEL, reason="no C compiler to build the fused CPU kernel")


def _triton_encode(x, table, layout):
    from neural3d.fields.backends.triton_hash import triton_hash_encode

    return triton_hash_encode(x, table, layout)


# (backend name, encode function, device of its tensors, skip marker)
FUSED = [
    pytest.param(cpu_hash_encode, torch.device("cpu"), id="cpu", marks=needs_cpu_kernel),
    pytest.param(_triton_encode, DEVICE, id="triton", marks=needs_triton),
]


def _layout(F: int = 2):
    # levels 0-2 dense (res^3 <= 2^12 rows), 3-5 hashed
    return grid_layout(
        n_levels=6,
        n_features_per_level=F,
        log2_hashmap_size=12,
        base_resolution=4,
        per_level_scale=per_level_scale_for(4, 64, 6),
    )


def _points(n: int, seed: int, device: torch.device = DEVICE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    inside = torch.rand(n, 3, generator=g)
    outside = torch.rand(n // 10, 3, generator=g) * 1.4 - 0.2  # exercises the uint32 wrap-around
    return torch.cat([inside, outside]).to(device)


# ----------------------------------------------------------------------------------------------- names
def test_backend_names_and_auto_candidates():
    with pytest.raises(ValueError, match="hashgrid.py"):
        HashGridEncoding(n_levels=2, backend="cuda")
    with pytest.raises(ValueError, match="tcnn"):
        resolve_backend("tcnn", torch.device("cpu"))
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    assert candidates(torch.device("cpu")) == (["cpu", "torch"] if HAS_CPU_KERNEL else ["torch"])
    assert resolve_backend("auto", torch.device("cpu")) == ("cpu" if HAS_CPU_KERNEL else "torch")
    with pytest.raises(ValueError, match="backend 'cpu' needs CPU tensors"):
        resolve_backend("cpu", torch.device("meta"))
    expected = (["tcnn"] if HAS_TCNN else []) + (["triton"] if HAS_TRITON else []) + ["torch"]
    assert candidates(torch.device("cuda")) == expected


def test_pick_fastest_times_candidates_and_skips_failures(caplog):
    def slow():
        time.sleep(0.02)

    def broken():
        raise RuntimeError("no kernel image for this GPU")

    with caplog.at_level(logging.INFO, logger="neural3d.backends"):
        assert pick_fastest({"triton": broken, "tcnn": slow, "torch": lambda: None}, repeats=2) == "torch"
    assert "'triton' failed its probe" in caplog.text and "'auto' -> torch" in caplog.text
    assert pick_fastest({"b": lambda: time.sleep(0.15), "a": slow}, repeats=1) == "a"
    with pytest.raises(RuntimeError, match="no kernel image"):
        pick_fastest({"triton": broken})


def test_auto_measures_under_no_grad_and_keeps_grads():
    # Exercise HashGridEncoding._measure on CPU with two real candidates (torch twice under two names is
    # enough to check that the probe runs under no_grad and leaves params.grad alone).
    enc = HashGridEncoding(n_levels=2, log2_hashmap_size=8, base_resolution=4, max_resolution=8)
    enc.params.grad = torch.full_like(enc.params, 7.0)
    with torch.no_grad():
        choice = enc._measure(["torch", "torch"], torch.device("cpu"), n_probe=64)
    assert choice == "torch"
    assert bool((enc.params.grad == 7.0).all())


def test_auto_module_on_cpu_equals_reference():
    enc = HashGridEncoding(n_levels=3, log2_hashmap_size=10, base_resolution=4, max_resolution=32)
    assert enc.backend == "auto"
    x = torch.rand(50, 3)
    torch.testing.assert_close(enc(x), hash_encode(x, enc.table(), enc.layout), rtol=0, atol=0)


# ------------------------------------------------------------------------------------ fused kernels
@pytest.mark.parametrize("F", [1, 2, 4])
@pytest.mark.parametrize("encode, device", FUSED)
def test_fused_forward_and_gradients_match_torch(encode, device, F):
    layout = _layout(F)
    g = torch.Generator().manual_seed(F)
    table = torch.randn(layout.n_rows, F, generator=g).to(device).requires_grad_(True)
    x = _points(1500, seed=F, device=device).requires_grad_(True)
    probe = torch.randn(x.shape[0], layout.n_levels * F, generator=g).to(device)
    out = encode(x, table, layout)
    (out * probe).sum().backward()
    grads = table.grad.clone(), x.grad.clone()
    table.grad, x.grad = None, None
    ref = hash_encode(x, table, layout)
    (ref * probe).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grads[0], table.grad, rtol=1e-5, atol=1e-5)  # summation order differs
    torch.testing.assert_close(grads[1], x.grad, rtol=1e-4, atol=1e-4 * float(x.grad.abs().max()))


@pytest.mark.parametrize("encode, device", FUSED)
def test_fused_default_layout_and_dtype(encode, device):
    enc = HashGridEncoding()  # 5 dense + 11 hashed levels of 2^19 rows
    g = torch.Generator().manual_seed(0)
    table = (torch.randn(enc.layout.n_rows, 2, generator=g, dtype=torch.float64) * 0.1).to(device)
    x = _points(200, seed=1, device=device)
    out = encode(x, table, enc.layout)
    assert out.dtype == torch.float64 and out.shape == (x.shape[0], 32)
    torch.testing.assert_close(out, hash_encode(x, table, enc.layout), rtol=1e-5, atol=1e-6)
    assert encode(x[:0], table.float(), enc.layout).shape == (0, 32)


@needs_cpu_kernel
def test_cpu_kernel_threads_give_the_same_numbers():
    # The table gradient is split over levels (no atomics), so it is bit-identical for any thread count.
    layout = _layout(2)
    table = torch.randn(layout.n_rows, 2, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    x = torch.rand(20000, 3, generator=torch.Generator().manual_seed(4))
    results, threads = [], torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            table.grad = None
            out = cpu_hash_encode(x, table, layout)
            out.square().sum().backward()
            results.append((out.detach(), table.grad.clone()))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@needs_cpu_kernel
@pytest.mark.parametrize("F", [1, 2, 4, 8])
def test_cpu_kernel_simd_path_is_bit_identical_to_scalar(F):
    # The AVX-512 forward path (16 points a vector) against the scalar path, bit for bit: points inside, outside
    # (uint32 wrap-around), on the far face (a dense level's index reaches its size: the group falls back to
    # the scalar modulo), far out of the int32 cell range (fallback) and a count that leaves a scalar tail.
    from neural3d.fields.backends import cpu_hash

    if not cpu_hash.simd_enabled():
        pytest.skip("this CPU has no AVX-512: only the scalar path exists")
    layout = _layout(F)
    g = torch.Generator().manual_seed(F)
    table = torch.randn(layout.n_rows, F, generator=g)
    x = torch.cat([_points(3000, seed=F, device=torch.device("cpu")), torch.ones(40, 3), torch.zeros(17, 3)])
    x[100:116, 1] = 3e9  # one group of cells beyond int32 (the scalar path wraps them as uint32)
    x = x[torch.randperm(len(x), generator=g)].contiguous()
    outs = []
    try:
        for enabled in (False, True):
            cpu_hash.set_simd(enabled)
            outs.append(cpu_hash_encode(x, table, layout))
    finally:
        cpu_hash.set_simd(True)
    assert torch.equal(outs[0], outs[1])
    assert torch.allclose(outs[1], hash_encode(x, table, layout), atol=1e-5, rtol=1e-5)


def _graph_names(t: torch.Tensor) -> set[str]:
    """Names of the autograd nodes that produced ``t``."""
    names, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            names.add(type(node).__name__)
            stack.extend(fn for fn, _ in node.next_functions)
    return names


@needs_cpu_kernel
def test_auto_on_cpu_uses_the_kernel_for_float32_and_the_reference_for_float64():
    enc = HashGridEncoding(n_levels=3, log2_hashmap_size=10, base_resolution=4, max_resolution=32)
    assert enc.backend_for(torch.device("cpu")) == "cpu"
    x = torch.rand(64, 3)
    out = enc(x)
    assert any("CpuHashEncode" in n for n in _graph_names(out))
    enc64 = HashGridEncoding(n_levels=3, log2_hashmap_size=10, base_resolution=4, max_resolution=32).double()
    out64 = enc64(x.double())
    assert out64.dtype == torch.float64 and not any("CpuHashEncode" in n for n in _graph_names(out64))
    with pytest.raises(ValueError, match="needs CPU tensors"):
        cpu_hash_encode(x.to("meta"), enc.table().detach(), enc.layout)


def test_without_a_compiler_auto_falls_back_to_torch(monkeypatch):
    from neural3d.fields import backends
    from neural3d.fields.backends import cpu_hash

    monkeypatch.setattr(cpu_hash, "find_compiler", lambda: None)
    with pytest.raises(CpuKernelUnavailable, match="no C compiler"):
        cpu_hash.load_library.__wrapped__()  # uncached: the cached library of this machine is not consulted
    monkeypatch.setattr(backends, "cpu_kernel_available", lambda: False)
    assert candidates(torch.device("cpu")) == ["torch"]
    with pytest.raises(ValueError, match="backend 'cpu' needs"):
        resolve_backend("cpu", torch.device("cpu"))
    enc = HashGridEncoding(n_levels=2, log2_hashmap_size=8, base_resolution=4, max_resolution=8)
    assert enc.backend_for(torch.device("cpu")) == "torch"


def test_cpu_kernel_build_failure_names_the_compiler(tmp_path):
    from neural3d.fields.backends import cpu_hash

    with pytest.raises(CpuKernelUnavailable, match="failed"):
        cpu_hash._build("false", [], tmp_path / "lib.so")  # a "compiler" that always fails
    assert not any(tmp_path.iterdir())  # no half-written library left behind


@pytest.mark.parametrize(
    "backend, device",
    [
        pytest.param("cpu", torch.device("cpu"), marks=needs_cpu_kernel),
        pytest.param("triton", DEVICE, marks=needs_triton),
    ],
)
def test_ngp_field_fused_backend_equals_torch_backend(backend, device):
    torch.manual_seed(0)
    kwargs = {
        "aabb": [[-1.0] * 3, [1.0] * 3],
        "n_levels": 4,
        "log2_hashmap_size": 10,
        "base_resolution": 4,
        "max_resolution": 64,
        "hidden_dim": 16,
    }
    fields = [NGPField(**kwargs, backend=b).to(device) for b in ("torch", backend)]
    fields[1].load_state_dict(fields[0].state_dict())
    with torch.no_grad():
        for f in fields:  # larger table values than the 1e-4 init so the comparison means something
            f.encoding.params.copy_(torch.linspace(-1, 1, f.encoding.params.numel(), device=device).sin())
    x = (torch.rand(300, 3) * 1.8 - 0.9).to(device)
    d = torch.nn.functional.normalize(torch.randn(300, 3), dim=-1).to(device)
    outs = []
    for f in fields:
        density, rgb = f.query(x, d)
        (density.sum() + rgb.sum()).backward()
        outs.append((density, rgb, {n: p.grad for n, p in f.named_parameters()}))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-6)
    for name, grad in outs[0][2].items():
        torch.testing.assert_close(outs[1][2][name], grad, rtol=1e-4, atol=1e-5, msg=name)


# ------------------------------------------------------------------------------------------------ tcnn
class _FakeTcnnEncoding(torch.nn.Module):
    """Stands in for ``tinycudann.Encoding``: a flat ``params`` vector."""

    def __init__(self, n: int):
        super().__init__()
        self.params = torch.nn.Parameter(torch.zeros(n))


def test_tcnn_param_copy_both_ways():
    enc = HashGridEncoding(n_levels=3, log2_hashmap_size=10, base_resolution=4, max_resolution=32)
    fake = _FakeTcnnEncoding(enc.layout.n_params)
    copy_params_to_tcnn(enc, fake)
    torch.testing.assert_close(fake.params.detach(), enc.params.detach())
    with torch.no_grad():
        fake.params.mul_(-3.0)
    copy_params_from_tcnn(enc, fake)
    torch.testing.assert_close(enc.params.detach(), fake.params.detach())
    with pytest.raises(ValueError, match="tcnn.py"):
        copy_params_to_tcnn(enc, _FakeTcnnEncoding(10))


@pytest.mark.skipif(not (HAS_CUDA and HAS_TCNN), reason="needs CUDA and tinycudann")
def test_tcnn_matches_torch():
    from neural3d.fields.backends.tcnn import make_tcnn_encoding, tcnn_encode

    enc = HashGridEncoding(n_levels=8, log2_hashmap_size=14, base_resolution=8, max_resolution=256).cuda()
    with torch.no_grad():
        enc.params.uniform_(-1, 1)
    x = torch.rand(4096, 3, device="cuda")
    ref = hash_encode(x, enc.table(), enc.layout)
    torch.testing.assert_close(tcnn_encode(enc, x), ref, rtol=1e-4, atol=1e-4)
    tc = make_tcnn_encoding(enc).cuda()
    copy_params_to_tcnn(enc, tc)
    torch.testing.assert_close(tc(x).float(), ref, rtol=1e-4, atol=1e-4)
