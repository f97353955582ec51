"""Python API: ``encode(points, model)`` -> tokens and per-point features of a point cloud.

>>> from neural3d.pointcloud import encode, PointViT
>>> enc = encode(torch.rand(1024, 3) * 2 - 1, PointViT(size="tiny", depth=2, task="encode"))  # doctest: +SKIP
>>> enc.tokens.shape, enc.point_features().shape        # doctest: +SKIP
(torch.Size([1, 128, 192]), torch.Size([1, 1024, 192]))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neural3d.pointcloud.encoder import Encoded, PointViT
from neural3d.pointcloud.synthetic import normalize_unit_sphere


@torch.no_grad()
def encode(points: Tensor | np.ndarray, model: PointViT | str | Path, *, normalize: bool = True) -> Encoded:
    """Encode point clouds with a point ViT (a module, or a ``neural3d pointcloud train`` run directory).

    Args:
        points: [n_points, C] or [batch, n_points, C] (xyz first; C must match the model's ``in_dim``).
        model: PointViT or run directory (its latest checkpoint).
        normalize: centre and scale each cloud to the unit sphere first (as the training data).
    Returns:
        :class:`Encoded`: ``cls`` [batch, dim], ``tokens`` [batch, n_tokens, dim], ``centres`` [batch, n_tokens, 3];
        ``point_features()`` gives [batch, n_points, dim].
    """
    if not isinstance(model, PointViT):
        from neural3d.apps.point_classification.train import load_pc_run

        model = load_pc_run(model)[0]
    x = torch.as_tensor(points, dtype=torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != model.in_dim:
        raise ValueError(
            f"encode: points must be [n_points, {model.in_dim}] or [batch, n_points, {model.in_dim}], "
            f"got {tuple(x.shape)}"
        )
    if normalize:
        x = torch.cat([normalize_unit_sphere(x[..., :3]), x[..., 3:]], -1)
    model.eval()
    return model.encode(x.to(next(model.parameters()).device))
