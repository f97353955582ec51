"""Samplers: rays -> RaySamples or PackedRaySamples, all through one protocol (:mod:`neural3d.samplers.base`).

``sample(rays, *, density_fn=None, prior=None)``, ``step_begin(step, field)``, ``loss_dict(samples, weights)``:
:class:`UniformSampler`, :class:`PDFSampler` (resamples a ``prior``), :class:`ImportanceSampler` (a
gradient-free pass of the density), :class:`GridSampler` (a cached density grid), :class:`OccupancySampler`
(occupancy-grid marching, packed) and :class:`ProposalSampler` (proposal networks). Typed config sections and
:func:`build_sampler` are in :mod:`neural3d.samplers.config`.
"""

from neural3d.samplers.base import DensityFn, Sampler, WeightedSamples
from neural3d.samplers.pdf import ImportanceSampler, PDFSampler, sample_pdf
from neural3d.samplers.spacing import spacing_to_t, stratified_spacing, t_to_spacing
from neural3d.samplers.uniform import UniformSampler

__all__ = [
    "DensityFn",
    "GridSampler",
    "ImportanceSampler",
    "OccupancySampler",
    "PDFSampler",
    "ProposalSampler",
    "Sampler",
    "UniformSampler",
    "WeightedSamples",
    "sample_pdf",
    "spacing_to_t",
    "stratified_spacing",
    "t_to_spacing",
]


def __getattr__(name: str):
    # the heavier samplers import lazily (they pull in fields and the nerfacc bridge)
    if name == "OccupancySampler":
        from neural3d.samplers.occupancy import OccupancySampler

        return OccupancySampler
    if name == "ProposalSampler":
        from neural3d.samplers.proposal import ProposalSampler

        return ProposalSampler
    if name == "GridSampler":
        from neural3d.samplers.density_grid import GridSampler

        return GridSampler
    raise AttributeError(f"module 'neural3d.samplers' has no attribute '{name}'")
