"""The two render paths of a model with an occupancy sampler, for tests that compare them."""

from __future__ import annotations


def training_and_fused_renders(model, rays, chunk: int) -> tuple[dict, dict]:
    """(the chunked ``forward`` path, the fused inference path) of ``rays`` without gradients; leaves
    ``render_fused`` on (the default)."""
    import torch

    with torch.no_grad():
        model.sampler.render_fused = False
        ref = model.render_rays(rays, chunk=chunk)
        model.sampler.render_fused = True
        return ref, model.render_rays(rays, chunk=chunk)
