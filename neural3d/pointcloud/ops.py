"""Point-set operations, vectorised over batch and points (CPU and GPU): FPS, kNN, gathers, interpolation.

Shape vocabulary: ``batch`` point clouds of ``n_points`` points; ``n_centres`` sampled centres; ``k`` neighbours.
"""

from __future__ import annotations

import torch
from torch import Tensor


def square_distance(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances.

    Args:
        a: [*batch, n, 3] (any channel count C).
        b: [*batch, m, C].
    Returns:
        [*batch, n, m] squared distances (clamped at 0).
    """
    d = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :] - 2.0 * a @ b.transpose(-1, -2)
    return d.clamp_min(0.0)


def gather_points(values: Tensor, index: Tensor) -> Tensor:
    """Gather per-point values by index.

    Args:
        values: [batch, n_points, C].
        index: [batch, *idx] int64 indices into ``n_points``.
    Returns:
        [batch, *idx, C].
    """
    b, _, c = values.shape
    flat = index.reshape(b, -1)
    out = torch.gather(values, 1, flat[..., None].expand(-1, -1, c))
    return out.reshape(*index.shape, c)


def farthest_point_sample(xyz: Tensor, n_centres: int, *, start: int | Tensor = 0) -> Tensor:
    """Farthest point sampling: each new centre is the point farthest from those already chosen.

    One iteration per centre, each a vectorised update over every point of every cloud.

    Args:
        xyz: [batch, n_points, 3].
        n_centres: number of centres (<= n_points).
        start: index of the first centre (int, or [batch] tensor).
    Returns:
        [batch, n_centres] int64 indices (distinct while ``n_centres <= n_points``).
    """
    if xyz.ndim != 3:
        raise ValueError(f"farthest_point_sample: xyz must be [batch, n_points, 3], got {tuple(xyz.shape)}")
    b, n, _ = xyz.shape
    if not 0 < n_centres <= n:
        raise ValueError(f"farthest_point_sample: n_centres must be in [1, {n}], got {n_centres}")
    idx = torch.empty(b, n_centres, dtype=torch.long, device=xyz.device)
    current = torch.as_tensor(start, dtype=torch.long, device=xyz.device).expand(b).clone()
    min_d = torch.full((b, n), float("inf"), dtype=xyz.dtype, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(n_centres):
        idx[:, i] = current
        d = ((xyz - xyz[rows, current][:, None, :]) ** 2).sum(-1)
        min_d = torch.minimum(min_d, d)
        current = min_d.argmax(-1)
    return idx


def knn(query: Tensor, points: Tensor, k: int, *, chunk: int = 16384) -> tuple[Tensor, Tensor]:
    """k nearest neighbours by brute force (queries processed ``chunk`` at a time to bound memory).

    Args:
        query: [batch, n_query, 3].
        points: [batch, n_points, 3].
        k: neighbours per query (<= n_points).
        chunk: queries per distance block.
    Returns:
        (squared distances [batch, n_query, k] ascending, indices [batch, n_query, k] int64).
    """
    if query.ndim != 3 or points.ndim != 3 or query.shape[0] != points.shape[0]:
        raise ValueError(
            f"knn: expected [batch, n, 3] query and points, got {tuple(query.shape)}, {tuple(points.shape)}"
        )
    if not 0 < k <= points.shape[1]:
        raise ValueError(f"knn: k must be in [1, {points.shape[1]}], got {k}")
    dists, idxs = [], []
    for q in query.split(chunk, dim=1):
        d, i = torch.topk(square_distance(q, points), k, dim=-1, largest=False, sorted=True)
        dists.append(d)
        idxs.append(i)
    return torch.cat(dists, 1), torch.cat(idxs, 1)


def inverse_distance_weights(sq_dists: Tensor, eps: float = 1e-8) -> Tensor:
    """[*, k] squared distances -> [*, k] weights ``(1/d) / sum(1/d)`` (PointNet++ interpolation)."""
    w = 1.0 / (sq_dists.sqrt() + eps)
    return w / w.sum(-1, keepdim=True)


def interpolate_features(xyz: Tensor, centres: Tensor, features: Tensor, k: int = 3) -> Tensor:
    """Feature propagation: inverse-distance interpolation of centre features at every point.

    Args:
        xyz: [batch, n_points, 3] target points.
        centres: [batch, n_centres, 3] source positions.
        features: [batch, n_centres, C] source features.
        k: neighbours (3, PointNet++).
    Returns:
        [batch, n_points, C].
    """
    k = min(k, centres.shape[1])
    d, i = knn(xyz, centres, k)
    w = inverse_distance_weights(d)
    return (gather_points(features, i) * w[..., None]).sum(-2)


def grid_cells(xyz: Tensor, box: Tensor, resolution: int) -> Tensor:
    """[*, 3] positions -> [*] int64 flat cell index of a ``resolution``^3 grid over box [2, 3] (clamped)."""
    rel = (xyz - box[0]) / (box[1] - box[0])
    cell = (rel * resolution).floor().long().clamp(0, resolution - 1)
    return (cell[..., 2] * resolution + cell[..., 1]) * resolution + cell[..., 0]


@torch.no_grad()
def build_candidate_table(points: Tensor, box: Tensor, resolution: int, n_candidates: int) -> Tensor:
    """For every cell of a grid over ``box``, the ``n_candidates`` points nearest to the cell centre.

    Args:
        points: [n_points, 3].
        box: [2, 3] (min corner, max corner).
    Returns:
        [resolution^3, min(n_candidates, n_points)] int64 point indices (flat cells in z, y, x order).
    """
    r = resolution
    c = (torch.arange(r, device=points.device, dtype=points.dtype) + 0.5) / r
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    centres = box[0] + torch.stack([x, y, z], -1).reshape(-1, 3) * (box[1] - box[0])
    return knn(centres[None], points[None], min(n_candidates, len(points)), chunk=4096)[1][0]


def knn_from_candidates(
    query: Tensor, points: Tensor, table: Tensor, box: Tensor, resolution: int, k: int
) -> tuple[Tensor, Tensor]:
    """Approximate kNN: exact search among the candidates of each query's grid cell.

    Exact whenever a query's k nearest points are among its cell centre's candidates (dense candidates
    relative to the cell size); queries outside ``box`` use the nearest border cell.

    Args:
        query: [n_query, 3].
        points: [n_points, 3].
        table: [n_cells, n_candidates] from :func:`build_candidate_table`.
    Returns:
        (squared distances [n_query, k] ascending, indices [n_query, k] int64 into ``points``).
    """
    cand = table[grid_cells(query, box, resolution)]  # [n_query, n_candidates]
    d = ((points[cand] - query[:, None, :]) ** 2).sum(-1)
    sq, j = torch.topk(d, k, dim=-1, largest=False, sorted=True)
    return sq, torch.gather(cand, 1, j)
