"""Hash grid: tcnn level table, indices vs a brute-force tcnn transcription, interpolation, gradients."""

import math

import numpy as np
import pytest
import torch

from neural3d.fields.hashgrid import (
    GridLayout,
    HashGridEncoding,
    grid_indices,
    grid_layout,
    hash_encode,
    per_level_scale_for,
)

# A small layout with dense levels (res^3 <= 2^12) and hashed ones.
SMALL = {"n_levels": 6, "n_features_per_level": 2, "log2_hashmap_size": 12, "base_resolution": 4}


def _small_layout() -> GridLayout:
    return grid_layout(**SMALL, per_level_scale=per_level_scale_for(4, 64, 6))


# ---------------------------------------------------------------------------------------------
# Brute-force reference: a per-point, per-level, per-corner transcription of tcnn's kernel_grid /
# grid_index / fast_hash using Python integers and explicit uint32 wrap-around.
# ---------------------------------------------------------------------------------------------
def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _ref_grid_index(pos_grid, hashmap_size: int, resolution: int) -> int:
    stride, index = 1, 0
    for dim in range(3):
        if stride > hashmap_size:
            break
        index = _u32(index + _u32(pos_grid[dim] * stride))
        stride = _u32(stride * resolution)
    if hashmap_size < stride:
        primes = (1, 2654435761, 805459861)
        index = 0
        for dim in range(3):
            index ^= _u32(pos_grid[dim] * primes[dim])
    return index % hashmap_size


def _ref_level(p, scale: float, resolution: int, size: int):
    pos, pos_grid = [], []
    for d in range(3):
        v = float(np.float32(float(np.float32(p[d])) * scale + 0.5))  # fma in fp32
        f = math.floor(v)
        pos.append(v - f)
        pos_grid.append(_u32(f))
    rows, weights = [], []
    for idx in range(8):
        w, local = 1.0, []
        for dim in range(3):
            if idx & (1 << dim) == 0:
                w *= 1 - pos[dim]
                local.append(pos_grid[dim])
            else:
                w *= pos[dim]
                local.append(_u32(pos_grid[dim] + 1))
        rows.append(_ref_grid_index(local, size, resolution))
        weights.append(w)
    return rows, weights


def _ref_layout_table(n_levels, F, log2_hashmap_size, base_resolution, per_level_scale):
    """tcnn GridEncodingTemplated constructor, in numpy float32."""
    offsets, sizes, scales, resolutions = [0], [], [], []
    for i in range(n_levels):
        scale = np.float32(np.exp2(np.float32(i) * np.log2(np.float32(per_level_scale)))) * np.float32(
            base_resolution
        ) - np.float32(1)
        res = int(np.ceil(scale)) + 1
        params = res**3
        params = (params + 7) // 8 * 8
        params = min(params, 1 << log2_hashmap_size)
        scales.append(float(scale))
        resolutions.append(res)
        sizes.append(params)
        offsets.append(offsets[-1] + params)
    return scales, resolutions, sizes, offsets


def _test_points(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 3, generator=g)
    edge = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5], [-0.01, 0.3, 1.02], [0.999999, 1e-7, 0.5]])
    return torch.cat([pts, edge])


def test_per_level_scale_formula():
    assert per_level_scale_for(16, 2048, 16) == pytest.approx(math.exp(math.log(128) / 15))
    assert per_level_scale_for(16, 4096, 16) == pytest.approx(1.4472692012786865)  # nerfacc's constant
    with pytest.raises(ValueError, match="hashgrid.py"):
        per_level_scale_for(16, 8, 4)


@pytest.mark.parametrize(
    "cfg",
    [
        {
            "n_levels": 16,
            "F": 2,
            "log2_hashmap_size": 19,
            "base_resolution": 16,
            "per_level_scale": per_level_scale_for(16, 2048, 16),
        },
        {"n_levels": 16, "F": 2, "log2_hashmap_size": 19, "base_resolution": 16, "per_level_scale": 1.4472692012786865},
        {
            "n_levels": 6,
            "F": 4,
            "log2_hashmap_size": 12,
            "base_resolution": 4,
            "per_level_scale": per_level_scale_for(4, 64, 6),
        },
    ],
)
def test_layout_matches_tcnn_constructor(cfg):
    layout = grid_layout(
        n_levels=cfg["n_levels"],
        n_features_per_level=cfg["F"],
        log2_hashmap_size=cfg["log2_hashmap_size"],
        base_resolution=cfg["base_resolution"],
        per_level_scale=float(np.float32(cfg["per_level_scale"])),
    )
    scales, resolutions, sizes, offsets = _ref_layout_table(
        cfg["n_levels"], cfg["F"], cfg["log2_hashmap_size"], cfg["base_resolution"], cfg["per_level_scale"]
    )
    assert layout.scales == tuple(scales)
    assert layout.resolutions == tuple(resolutions)
    assert layout.sizes == tuple(sizes) and layout.offsets == tuple(offsets)
    assert layout.n_params == offsets[-1] * cfg["F"]


def test_default_grid_size_matches_instant_ngp():
    # instant-ngp's NeRF grid (16 levels, F=2, 2^19, base 16, per_level_scale 1.38191, i.e. N_max = 2048) holds
    # 12,196,240 parameters (the grid part of an instant-ngp snapshot's params_binary).
    enc = HashGridEncoding()
    assert enc.params.numel() == 12196240
    assert enc.layout.resolutions[0] == 16 and enc.layout.resolutions[-1] == 2048
    assert enc.layout.hashed == (False,) * 5 + (True,) * 11


def test_indices_match_bruteforce_reference():
    layout = _small_layout()
    assert True in layout.hashed and False in layout.hashed
    pts = _test_points(40)
    big = HashGridEncoding().layout  # default config: 2^19 tables, resolutions up to 2048
    for lay in (layout, big):
        for level in range(lay.n_levels):
            rows, weights = grid_indices(
                pts, scale=lay.scales[level], resolution=lay.resolutions[level], size=lay.sizes[level]
            )
            assert rows.dtype == torch.int64 and rows.shape == (len(pts), 8) and weights.shape == (len(pts), 8)
            for i, p in enumerate(pts.tolist()):
                ref_rows, ref_w = _ref_level(p, lay.scales[level], lay.resolutions[level], lay.sizes[level])
                assert rows[i].tolist() == ref_rows, (level, p)
                np.testing.assert_allclose(weights[i].numpy(), ref_w, atol=1e-6)
            torch.testing.assert_close(weights.sum(-1), torch.ones(len(pts)))


def test_indices_non_power_of_two_hashed_level():
    # Not produced by tcnn's constructor, but grid_index's "% hashmap_size" must hold for any size.
    pts = _test_points(30, seed=2)
    for scale, res, size in [(30.25, 32, 1000), (5.5, 7, 336), (6.0, 7, 344)]:  # hashed, hashed, dense (343 <= 344)
        rows, weights = grid_indices(pts, scale=scale, resolution=res, size=size)
        for i, p in enumerate(pts.tolist()):
            ref_rows, ref_w = _ref_level(p, scale, res, size)
            assert rows[i].tolist() == ref_rows
            np.testing.assert_allclose(weights[i].numpy(), ref_w, atol=1e-6)


def test_hash_of_known_vertex():
    # Vertex (1, 2, 3) of a hashed level: (1*1) ^ (2*2654435761 mod 2^32) ^ (3*805459861 mod 2^32), mod 2^12.
    expected = (1 ^ ((2 * 2654435761) % 2**32) ^ ((3 * 805459861) % 2**32)) % 4096
    scale = 99.0  # res 100: 10^6 vertices > 4096 rows -> hashed
    p = torch.tensor([[(1 - 0.5) / scale, (2 - 0.5) / scale, (3 - 0.5) / scale]])  # pos exactly on vertex (1, 2, 3)
    rows, weights = grid_indices(p, scale=scale, resolution=100, size=4096)
    assert rows[0, 0].item() == expected
    torch.testing.assert_close(weights[0], torch.tensor([1.0] + [0.0] * 7))


def test_hash_encode_matches_bruteforce():
    layout = _small_layout()
    g = torch.Generator().manual_seed(3)
    table = torch.randn(layout.n_rows, layout.n_features, generator=g, dtype=torch.float64)
    pts = _test_points(10, seed=4)
    out = hash_encode(pts, table, layout)
    assert out.shape == (len(pts), layout.n_levels * layout.n_features) and out.dtype == torch.float64
    for i, p in enumerate(pts.tolist()):
        for level in range(layout.n_levels):
            rows, ws = _ref_level(p, layout.scales[level], layout.resolutions[level], layout.sizes[level])
            ref = sum(w * table[layout.offsets[level] + r] for r, w in zip(rows, ws))
            sl = slice(level * layout.n_features, (level + 1) * layout.n_features)
            torch.testing.assert_close(out[i, sl], ref, atol=1e-6, rtol=1e-6)


def test_hash_encode_default_layout_matches_bruteforce():
    enc = HashGridEncoding()  # 5 dense levels + 11 hashed levels of 2^19 rows
    layout = enc.layout
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        enc.params.copy_(torch.randn(enc.params.shape, generator=g))
    pts = _test_points(3, seed=8)
    out = enc(pts)
    table = enc.table().detach()
    for i, p in enumerate(pts.tolist()):
        for level in range(layout.n_levels):
            rows, ws = _ref_level(p, layout.scales[level], layout.resolutions[level], layout.sizes[level])
            ref = sum(w * table[layout.offsets[level] + r].double() for r, w in zip(rows, ws))
            torch.testing.assert_close(out[i, 2 * level : 2 * level + 2].double(), ref, atol=1e-5, rtol=1e-5)


def test_dense_level_injective_and_row_major():
    layout = _small_layout()
    level = 1
    res, scale, size = layout.resolutions[level], layout.scales[level], layout.sizes[level]
    assert not layout.hashed[level]
    v = torch.stack(torch.meshgrid(*[torch.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pts = (v.float() - 0.25) / scale  # pos = v + 0.25 -> cell v
    rows, _ = grid_indices(pts, scale=scale, resolution=res, size=size)
    corner0 = rows[:, 0]
    assert corner0.unique().numel() == res**3 and int(corner0.max()) < size
    assert torch.equal(corner0, v[:, 0] + v[:, 1] * res + v[:, 2] * res * res)


def test_trilinear_exact_on_linear_table():
    layout = _small_layout()
    level = 1
    res, scale = layout.resolutions[level], layout.scales[level]
    r = torch.arange(layout.sizes[level])
    vx, vy, vz = r % res, (r // res) % res, r // (res * res)
    a = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    table = torch.zeros(layout.n_rows, layout.n_features, dtype=torch.float64)
    off = layout.offsets[level]
    table[off : off + len(r), 0] = a[0] * vx + a[1] * vy + a[2] * vz + 0.7
    table[off : off + len(r), 1] = vx.double()
    g = torch.Generator().manual_seed(5)
    pts = torch.rand(200, 3, generator=g) * (res - 1.5) / scale  # keep cell + 1 < res (no wrap-around)
    out = hash_encode(pts, table, layout)[:, 2 * level : 2 * level + 2]
    pos = pts.double() * scale + 0.5
    torch.testing.assert_close(out[:, 0], pos @ a + 0.7, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1], pos[:, 0], atol=1e-5, rtol=0)


def test_gradcheck_table_float64():
    layout = grid_layout(
        n_levels=3, n_features_per_level=2, log2_hashmap_size=5, base_resolution=2, per_level_scale=2.0
    )
    assert layout.hashed[-1]
    g = torch.Generator().manual_seed(6)
    table = torch.randn(layout.n_rows, 2, generator=g, dtype=torch.float64, requires_grad=True)
    pts = torch.rand(12, 3, generator=g)
    assert torch.autograd.gradcheck(lambda t: hash_encode(pts, t, layout), (table,))


def test_module_layout_params_and_output_order():
    enc = HashGridEncoding(**SMALL, max_resolution=64)
    assert list(enc.state_dict()) == ["params"] and enc.params.shape == (enc.layout.n_params,)
    assert enc.params.abs().max() <= 1e-4 and enc.params.std() > 1e-5  # tcnn init U(-1e-4, 1e-4)
    assert enc.tcnn_config()["per_level_scale"] == pytest.approx(per_level_scale_for(4, 64, 6), rel=1e-6)
    with torch.no_grad():  # only level 3's rows non-zero -> only its 2 channels respond
        enc.params.zero_()
        lo, hi = enc.layout.offsets[3], enc.layout.offsets[4]
        enc.params[lo * 2 : hi * 2] = 1.0
    out = enc(torch.rand(4, 5, 3))
    assert out.shape == (4, 5, 12)
    torch.testing.assert_close(out[..., 6:8], torch.ones(4, 5, 2))
    assert out[..., :6].abs().max() == 0 and out[..., 8:].abs().max() == 0


def test_table_gradients_are_weights():
    enc = HashGridEncoding(**SMALL, max_resolution=64)
    pts = torch.rand(1, 3)
    enc(pts)[0, 0].backward()  # level 0, feature 0
    rows, w = grid_indices(
        pts, scale=enc.layout.scales[0], resolution=enc.layout.resolutions[0], size=enc.layout.sizes[0]
    )
    expected = torch.zeros(enc.layout.n_rows)
    expected.index_add_(0, rows[0], w[0])
    torch.testing.assert_close(enc.params.grad.view(-1, 2)[:, 0], expected)
    assert enc.params.grad.view(-1, 2)[:, 1].abs().max() == 0


def test_bad_inputs():
    layout = _small_layout()
    with pytest.raises(ValueError, match="hashgrid.py"):
        hash_encode(torch.rand(4, 2), torch.zeros(layout.n_rows, 2), layout)
    with pytest.raises(ValueError, match="hashgrid.py"):
        hash_encode(torch.rand(4, 3), torch.zeros(3, 2), layout)
    with pytest.raises(ValueError, match="hashgrid.py"):
        HashGridEncoding(n_features_per_level=3)


def test_position_gradients_match_finite_differences():
    layout = _small_layout()
    g = torch.Generator().manual_seed(9)
    table = torch.randn(layout.n_rows, layout.n_features, generator=g, dtype=torch.float64)
    pts = (torch.rand(20, 3, generator=g) * 0.8 + 0.1).requires_grad_(True)
    probe = torch.randn(20, layout.n_levels * layout.n_features, generator=g, dtype=torch.float64)
    (hash_encode(pts, table, layout) * probe).sum().backward()
    h = 1e-4
    for d in range(3):
        step = torch.zeros(1, 3)
        step[0, d] = h
        with torch.no_grad():
            plus = (hash_encode(pts + step, table, layout) * probe).sum(-1)
            minus = (hash_encode(pts - step, table, layout) * probe).sum(-1)
        fd = (plus - minus) / (2 * h)
        # A sample may straddle a cell face (kink); the rest must agree.
        close = (fd - pts.grad[:, d].double()).abs() < 1e-2 * (1 + fd.abs())
        assert close.float().mean() > 0.9, (d, fd, pts.grad[:, d])
