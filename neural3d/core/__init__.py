"""Core geometry: cameras, lens distortion, poses, rays and ray samples (padded and packed).

``Cameras`` (:mod:`~neural3d.core.cameras`) -> ``RayBundle`` (:mod:`~neural3d.core.rays`) -> samplers ->
``RaySamples`` / ``PackedRaySamples`` (:mod:`~neural3d.core.samples`; the packed layout helpers in
:mod:`~neural3d.core.packing`). Conventions: ARCHITECTURE.md.
"""

from neural3d.core.cameras import Cameras
from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples, RaySamples

__all__ = ["Cameras", "PackedRaySamples", "RayBundle", "RaySamples"]
