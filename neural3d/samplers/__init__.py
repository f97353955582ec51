"""Samplers: rays (+ optional coarse weights or a density field) -> RaySamples or PackedRaySamples."""

from neural3d.samplers.pdf import PDFSampler, sample_pdf
from neural3d.samplers.uniform import UniformSampler, spacing_to_t, stratified_spacing

__all__ = [
    "OccupancySampler",
    "PDFSampler",
    "ProposalSampler",
    "UniformSampler",
    "sample_pdf",
    "spacing_to_t",
    "stratified_spacing",
]


def __getattr__(name: str):
    # the heavier samplers import lazily (they pull in fields and the nerfacc bridge)
    if name == "OccupancySampler":
        from neural3d.samplers.occupancy import OccupancySampler

        return OccupancySampler
    if name == "ProposalSampler":
        from neural3d.samplers.proposal import ProposalSampler

        return ProposalSampler
    raise AttributeError(f"module 'neural3d.samplers' has no attribute '{name}'")
