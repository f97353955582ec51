"""Point-cloud ops and ViT blocks against independent float64 / brute-force references."""

import math

import numpy as np
import pytest
import torch

from neural3d.pointcloud.ops import (
    build_candidate_table,
    farthest_point_sample,
    interpolate_features,
    knn,
    knn_from_candidates,
    square_distance,
)
from neural3d.pointcloud.vit import Block


def _fps_reference(xyz: np.ndarray, m: int) -> list[int]:
    """Textbook greedy farthest point sampling, float64, one point at a time."""
    chosen = [0]
    d = np.full(len(xyz), np.inf)
    for _ in range(m - 1):
        d = np.minimum(d, ((xyz - xyz[chosen[-1]]) ** 2).sum(-1))
        chosen.append(int(np.argmax(d)))
    return chosen


def test_fps_matches_reference_and_is_well_spread():
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(3, 500, 3, generator=g, dtype=torch.float64)
    idx = farthest_point_sample(xyz, 40)
    for b in range(3):
        assert idx[b].tolist() == _fps_reference(xyz[b].numpy(), 40)
        chosen = xyz[b, idx[b]]
        assert len(set(idx[b].tolist())) == 40
        sep = torch.cdist(chosen, chosen) + torch.eye(40, dtype=xyz.dtype) * 1e9
        cover = torch.cdist(xyz[b], chosen).min(1).values.max()
        # greedy max-min property: every point lies within the smallest separation of the chosen set
        assert cover <= sep.min() + 1e-12
    # FPS spreads better than random subsets: larger min separation
    rand = xyz[0, torch.randperm(500, generator=g)[:40]]
    sep_rand = (torch.cdist(rand, rand) + torch.eye(40, dtype=xyz.dtype) * 1e9).min()
    sep_fps = (torch.cdist(xyz[0, idx[0]], xyz[0, idx[0]]) + torch.eye(40, dtype=xyz.dtype) * 1e9).min()
    assert sep_fps > 2 * sep_rand


def test_fps_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_centres"):
        farthest_point_sample(torch.rand(1, 5, 3), 6)
    with pytest.raises(ValueError, match="batch"):
        farthest_point_sample(torch.rand(5, 3), 2)


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(2, 300, 3, generator=g, dtype=torch.float64)
    q = torch.rand(2, 70, 3, generator=g, dtype=torch.float64)
    d, i = knn(q, pts, 5, chunk=16)
    full = ((q[:, :, None] - pts[:, None]) ** 2).sum(-1)
    ref_d, ref_i = full.sort(-1)
    assert torch.equal(i, ref_i[..., :5])
    torch.testing.assert_close(d, ref_d[..., :5], rtol=0, atol=1e-12)
    torch.testing.assert_close(square_distance(q, pts), full, rtol=0, atol=1e-12)


def test_grid_candidate_knn_is_exact_with_ample_candidates():
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(400, 3, generator=g, dtype=torch.float64)
    box = torch.tensor([[0.0] * 3, [1.0] * 3], dtype=torch.float64)
    table = build_candidate_table(pts, box, 8, 64)
    q = torch.rand(500, 3, generator=g, dtype=torch.float64)
    d, i = knn_from_candidates(q, pts, table, box, 8, 4)
    ref_d, ref_i = knn(q[None], pts[None], 4)
    assert torch.equal(i, ref_i[0])
    torch.testing.assert_close(d, ref_d[0], rtol=0, atol=1e-12)
    # too few candidates: still k valid, ascending neighbours, never closer than the true ones
    d2, _ = knn_from_candidates(q, pts, build_candidate_table(pts, box, 8, 4), box, 8, 4)
    assert (d2 >= ref_d[0] - 1e-12).all() and (d2[:, 1:] >= d2[:, :-1]).all()


def test_interpolate_features_reproduces_linear_functions_at_centres():
    g = torch.Generator().manual_seed(3)
    centres = torch.rand(1, 50, 3, generator=g, dtype=torch.float64)
    feats = torch.randn(1, 50, 4, generator=g, dtype=torch.float64)
    out = interpolate_features(centres, centres, feats)
    torch.testing.assert_close(out, feats, rtol=1e-6, atol=1e-6)  # a point on a centre takes its feature
    q = torch.rand(1, 20, 3, generator=g, dtype=torch.float64)
    d, i = knn(q, centres, 3)
    w = 1.0 / (d.sqrt() + 1e-8)
    ref = (feats[0][i[0]] * (w / w.sum(-1, keepdim=True))[0, :, :, None]).sum(1)
    torch.testing.assert_close(interpolate_features(q, centres, feats)[0], ref)


def _block_reference(x: np.ndarray, sd: dict, heads: int) -> np.ndarray:
    """Pre-norm ViT block with explicit float64 matmuls (timm semantics)."""

    def ln(v, w, b):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * w + b

    p = {k: v.numpy() for k, v in sd.items()}
    c = x.shape[1]
    hd = c // heads
    h = ln(x, p["norm1.weight"], p["norm1.bias"])
    qkv = h @ p["attn.qkv.weight"].T + p["attn.qkv.bias"]
    out = np.zeros_like(x)
    for head in range(heads):
        q = qkv[:, head * hd : (head + 1) * hd]
        k = qkv[:, c + head * hd : c + (head + 1) * hd]
        v = qkv[:, 2 * c + head * hd : 2 * c + (head + 1) * hd]
        s = q @ k.T / math.sqrt(hd)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        out[:, head * hd : (head + 1) * hd] = a @ v
    x = x + out @ p["attn.proj.weight"].T + p["attn.proj.bias"]
    h = ln(x, p["norm2.weight"], p["norm2.bias"])
    h = h @ p["mlp.fc1.weight"].T + p["mlp.fc1.bias"]
    from scipy.special import erf

    h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
    return x + h @ p["mlp.fc2.weight"].T + p["mlp.fc2.bias"]


@pytest.mark.parametrize("dim,heads", [(48, 3), (64, 4)])
def test_vit_block_matches_float64_reference(dim, heads):
    torch.manual_seed(0)
    blk = Block(dim=dim, num_heads=heads).double()
    with torch.no_grad():
        for p in blk.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 9, dim, dtype=torch.float64)
    out = blk(x).detach().numpy()
    sd = blk.state_dict()
    for b in range(2):
        np.testing.assert_allclose(out[b], _block_reference(x[b].numpy(), sd, heads), rtol=1e-10, atol=1e-10)
