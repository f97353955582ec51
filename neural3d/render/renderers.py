"""Renderer modules: per-sample field outputs along rays -> per-ray outputs.

A renderer takes ``(field_outputs, samples, background)`` and returns :class:`RenderOutputs`. The
emission-absorption :class:`VolumeRenderer` composites density and colour; a learned renderer (GNT's
ray transformer) consumes ``field_outputs.features`` and fills the same slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neural3d.core.samples import PackedRaySamples, RaySamples
from neural3d.fields.base import FieldOutputs
from neural3d.render.packed import accumulate_packed, render_weights_packed
from neural3d.render.volume import accumulate, composite_background, render_weights_from_density


@dataclass
class RenderOutputs:
    """Per-ray rendering results.

    Attributes:
        rgb: [n_rays, 3] colour (background composited).
        depth: [n_rays, 1] expected ``t`` of the visible surface (weights normalised by opacity).
        opacity: [n_rays, 1] accumulated opacity (sum of weights).
        weights: [n_rays, n_samples] compositing weights ([n_samples] for packed samples; None for
            renderers without them).
        extras: renderer-specific outputs.
    """

    rgb: Tensor
    depth: Tensor
    opacity: Tensor
    weights: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def expected_depth(weights: Tensor, samples: RaySamples, opacity: Tensor) -> Tensor:
    """[n_rays, 1] ``sum_i w_i t_i / sum_i w_i``, clamped to the ray's [near, far]."""
    depth = accumulate(weights, samples.mids[..., None]) / opacity.clamp_min(1e-10)
    return torch.clamp(depth, samples.starts[:, :1], samples.ends[:, -1:])


def expected_depth_packed(weights: Tensor, samples: PackedRaySamples, opacity: Tensor) -> Tensor:
    """[n_rays, 1] expected ``t`` for packed samples; rays without samples get their far bound."""
    depth = accumulate_packed(weights, samples.ray_indices, samples.n_rays, samples.mids[:, None])
    depth = depth / opacity.clamp_min(1e-10)
    return torch.where(
        opacity > 0,
        torch.clamp(depth, samples.rays.nears[:, None], samples.rays.fars[:, None]),
        samples.rays.fars[:, None].to(depth.dtype),
    )


OPAQUE_FAR_DISTANCE = 1e10  # the original NeRF's length of the last interval (raw2outputs)


class VolumeRenderer(nn.Module):
    """Emission-absorption compositing with a background colour (batched or packed samples).

    Args:
        opaque_far: give each ray's last sample an interval of length 1e10 as the original NeRF code
            does, so whatever density it has makes it opaque and its colour fills the remaining
            transmittance (the background then only shows where that density is 0). Used for NDC
            scenes, whose far bound is at infinity.
    """

    def __init__(self, opaque_far: bool = False) -> None:
        super().__init__()
        self.opaque_far = opaque_far

    def forward(
        self, outputs: FieldOutputs, samples: RaySamples | PackedRaySamples, background: Tensor | None = None
    ) -> RenderOutputs:
        """Composite.

        Args:
            outputs: density [n_rays, n_samples, 1], rgb [n_rays, n_samples, 3] (packed: [n_samples, 1|3]).
            samples: the intervals the field was evaluated on, batched [n_rays, n_samples] or packed.
            background: [3] or [n_rays, 3] colour behind the volume (None: black).
        """
        if isinstance(samples, PackedRaySamples):
            return self._packed(outputs, samples, background)
        distances = samples.distances
        if self.opaque_far:
            distances = torch.cat([distances[:, :-1], torch.full_like(distances[:, -1:], OPAQUE_FAR_DISTANCE)], -1)
        weights = render_weights_from_density(outputs.density[..., 0], distances)
        opacity = accumulate(weights)
        rgb = accumulate(weights, outputs.rgb)
        if background is not None:
            rgb = composite_background(rgb, opacity, background)
        return RenderOutputs(rgb=rgb, depth=expected_depth(weights, samples, opacity), opacity=opacity, weights=weights)

    def _packed(self, outputs: FieldOutputs, samples: PackedRaySamples, background: Tensor | None) -> RenderOutputs:
        weights = self.packed_weights(outputs.density[:, 0], samples)
        return self.composite_packed(weights, outputs.rgb, samples, background)

    def packed_weights(self, density: Tensor, samples: PackedRaySamples) -> Tensor:
        """[n_samples] compositing weights of packed samples from their [n_samples] densities (``opaque_far``:
        each ray's last interval is 1e10 long)."""
        distances = samples.distances
        if self.opaque_far:
            last = samples.packed_info[:, 0] + samples.packed_info[:, 1] - 1
            last = last[samples.packed_info[:, 1] > 0]
            distances = distances.index_fill(0, last, OPAQUE_FAR_DISTANCE)
        return render_weights_packed(density, distances, samples.ray_indices, samples.packed_info)[0]

    def composite_packed(
        self, weights: Tensor, rgb: Tensor, samples: PackedRaySamples, background: Tensor | None
    ) -> RenderOutputs:
        """Per-ray outputs from [n_samples] weights and [n_samples, 3] colours of packed samples."""
        ri, n = samples.ray_indices, samples.n_rays
        opacity = accumulate_packed(weights, ri, n)
        rgb = accumulate_packed(weights, ri, n, rgb)
        if background is not None:
            rgb = composite_background(rgb, opacity, background)
        return RenderOutputs(
            rgb=rgb, depth=expected_depth_packed(weights, samples, opacity), opacity=opacity, weights=weights
        )
