"""GNT in the shared slots: a field conditioned on source views and the ray transformer as renderer.

* :class:`SourceViewField` (the scene representation): for every sample, the source views'
  bilinear RGB and image features, the validity mask and the ray-direction difference. It has no
  parameters of its own: the scene is the source images, encoded by the feature network.
* :class:`RayTransformerRenderer` (the renderer slot): the interleaved view/ray transformer stack turns
  those per-view tokens into a ray colour; its attention gives per-sample weights, the expected depth
  and opacity 1 (GNT renders no transparency).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neural3d.core.samples import RaySamples
from neural3d.fields.base import Field, FieldOutputs
from neural3d.methods.gnt.projection import SourceViews, project_samples
from neural3d.methods.gnt.transformer import GNTNetwork
from neural3d.render.renderers import RenderOutputs


class SourceViewField(Field):
    """Per-sample source-view observations. ``context`` must be a :class:`SourceViews` with ``features``.

    ``forward(samples [n_rays, n_samples], context) -> FieldOutputs(features [n_rays, n_samples, n_views, 3 + C],
    extras={"ray_diff": [..., n_views, 4], "mask": [..., n_views, 1]})``. Sample positions are the
    interval midpoints (GNT's point samples have ``starts == ends``).
    """

    def forward(self, samples: RaySamples, context: Any = None, features: Tensor | None = None) -> FieldOutputs:
        if not isinstance(context, SourceViews):
            raise TypeError("SourceViewField needs a SourceViews context (posed source images)")
        feats = features if features is not None else context.features
        if feats is None:
            raise ValueError("SourceViewField: the SourceViews context carries no feature maps")
        proj = project_samples(samples.positions, samples.rays.origins, context, feats)
        return FieldOutputs(features=proj.rgb_feat, extras={"ray_diff": proj.ray_diff, "mask": proj.mask})

    def density(self, positions: Tensor) -> Tensor:
        raise NotImplementedError("GNT has no density field; depth comes from ray-transformer attention")


class RayTransformerRenderer(GNTNetwork):
    """The GNT network used as a learned renderer (same parameters as :class:`GNTNetwork`).

    ``forward(field_outputs, samples, background=None) -> RenderOutputs(rgb [n_rays, 3],
    depth [n_rays, 1] = sum_i w_i t_i, opacity [n_rays, 1] = 1, weights [n_rays, n_samples])``. ``rgb`` is
    unclamped in training and clamped to [0, 1] in eval mode (as official evaluation).
    """

    def forward(self, outputs: FieldOutputs, samples: RaySamples, background: Any = None) -> RenderOutputs:  # type: ignore[override]
        """``background`` is unused: GNT predicts the final colour (images come composited)."""
        rgb, weights = self.run(
            outputs.features,
            outputs.extras["ray_diff"],
            outputs.extras["mask"],
            samples.positions,
            samples.rays.directions,
        )
        if not self.training:
            rgb = rgb.clamp(0.0, 1.0)
        depth = (weights * samples.mids).sum(-1, keepdim=True)
        return RenderOutputs(rgb=rgb, depth=depth, opacity=torch.ones_like(depth), weights=weights)
