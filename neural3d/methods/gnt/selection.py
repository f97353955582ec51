"""Source-view selection: the nearest views of a target pose, and random subsets for training.

Methods (official ``get_nearest_pose_ids``):

* ``dist``: Euclidean distance between camera centres (forward-facing captures, LLFF);
* ``vector``: angle between the directions from a scene centre to the camera centres (object-centric
  captures on a sphere, Blender);
* ``matrix``: angle of the relative rotation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

METHODS = ("dist", "vector", "matrix")


def pose_distances(
    target_c2w: Tensor, source_c2w: Tensor, method: str = "dist", scene_center: Sequence[float] | None = None
) -> Tensor:
    """[n_targets, 3, 4] and [n_sources, 3, 4] poses -> [n_targets, n_sources] distances (radians for angles)."""
    if method not in METHODS:
        raise ValueError(f"source-view selection method must be one of {METHODS}, got '{method}'")
    if method == "dist":
        return torch.cdist(target_c2w[:, :, 3].double(), source_c2w[:, :, 3].double())
    if method == "vector":
        c = (
            torch.zeros(3, dtype=torch.float64)
            if scene_center is None
            else torch.as_tensor(scene_center, dtype=torch.float64)
        )
        a = target_c2w[:, :, 3].double() - c.to(target_c2w.device)
        b = source_c2w[:, :, 3].double() - c.to(source_c2w.device)
        a = a / (torch.linalg.norm(a, dim=-1, keepdim=True) + 1e-6)
        b = b / (torch.linalg.norm(b, dim=-1, keepdim=True) + 1e-6)
        return torch.arccos((a @ b.T).clamp(-1.0, 1.0))
    rel = torch.einsum("tji,sjk->tsik", target_c2w[:, :, :3].double(), source_c2w[:, :, :3].double())
    trace = rel.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.arccos(((trace - 1.0) / 2.0).clamp(-1 + 1e-6, 1 - 1e-6))


def nearest_views(
    target_c2w: Tensor,
    source_c2w: Tensor,
    n_views: int,
    *,
    method: str = "dist",
    exclude: Tensor | None = None,
    scene_center: Sequence[float] | None = None,
) -> Tensor:
    """Indices of the ``n_views`` nearest sources of each target, nearest first.

    Args:
        target_c2w: [n_targets, 3, 4] target poses.
        source_c2w: [n_sources, 3, 4] candidate poses.
        n_views: how many to pick (capped at the number of candidates left).
        method: ``dist`` | ``vector`` | ``matrix``.
        exclude: optional [n_targets] bool mask rows [n_targets, n_sources] of candidates that must not be
            picked (e.g. the target image itself), or [n_targets] int64 source index per target (-1: none).
        scene_center: [3] centre for ``vector`` (default origin).
    Returns:
        [n_targets, k] int64 indices into the sources, ``k = min(n_views, n_sources - excluded)``.
    """
    if n_views < 1:
        raise ValueError(f"nearest_views: n_views must be >= 1, got {n_views}")
    d = pose_distances(target_c2w, source_c2w, method, scene_center)
    n_excl = 0
    if exclude is not None:
        if exclude.dtype != torch.bool:
            idx = exclude.to(d.device).long()
            mask = torch.zeros_like(d, dtype=torch.bool)
            rows = (idx >= 0).nonzero()[:, 0]
            mask[rows, idx[rows]] = True
            exclude = mask
        exclude = exclude.to(d.device)
        d = d.masked_fill(exclude, float("inf"))
        n_excl = int(exclude.sum(-1).max()) if exclude.numel() else 0
    k = min(n_views, d.shape[1] - n_excl)
    if k < 1:
        raise ValueError(f"nearest_views: no source views left ({d.shape[1]} candidates, {n_excl} excluded)")
    return torch.argsort(d, dim=-1, stable=True)[:, :k]


def random_subset(pool: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """``k`` distinct entries of ``pool`` [n] drawn uniformly (order random). Returns [min(k, n)]."""
    perm = torch.randperm(
        pool.numel(), generator=generator, device=generator.device if generator is not None else "cpu"
    )
    return pool[perm[: min(k, pool.numel())].to(pool.device)]


def identical_poses(target_c2w: Tensor, source_c2w: Tensor, atol: float = 1e-5) -> Tensor:
    """[n_targets, n_sources] bool: the source pose equals the target pose (a target's own image)."""
    diff = (target_c2w[:, None] - source_c2w[None]).abs().flatten(2).amax(-1)
    return diff <= atol
