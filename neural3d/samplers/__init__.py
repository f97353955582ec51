"""Samplers: rays (+ optional coarse weights or a density field) -> :class:`~neural3d.samples.RaySamples`."""

from neural3d.samplers.pdf import PDFSampler, sample_pdf
from neural3d.samplers.uniform import UniformSampler, spacing_to_t, stratified_spacing

__all__ = ["PDFSampler", "UniformSampler", "sample_pdf", "spacing_to_t", "stratified_spacing"]
