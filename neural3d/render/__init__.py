"""Rendering: pure volume-compositing functions and renderer modules (the renderer slot)."""

from neural3d.render.renderers import RenderOutputs, VolumeRenderer
from neural3d.render.volume import (
    accumulate,
    alphas_from_density,
    render_weights_from_alpha,
    render_weights_from_density,
    transmittance_from_alpha,
)

__all__ = [
    "RenderOutputs",
    "VolumeRenderer",
    "accumulate",
    "alphas_from_density",
    "render_weights_from_alpha",
    "render_weights_from_density",
    "transmittance_from_alpha",
]
