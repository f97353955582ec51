"""GNT: generalizable rendering from posed source images (view transformer + ray transformer).

Modules: :mod:`~neural3d.methods.gnt.resunet` (feature extractor), :mod:`~neural3d.methods.gnt.projection`
(samples -> source-view RGB/features, mask, direction difference), :mod:`~neural3d.methods.gnt.selection`
(nearest source views), :mod:`~neural3d.methods.gnt.sampling` (point samples, fine samples),
:mod:`~neural3d.methods.gnt.transformer` (blocks, network), :mod:`~neural3d.methods.gnt.field` (field and renderer
slots), :mod:`~neural3d.methods.gnt.batches` (one-target-image training batches), :mod:`~neural3d.methods.gnt.mixture`
(cross-scene training sets), :mod:`~neural3d.methods.gnt.checkpoint` (official checkpoints <-> state dicts),
:mod:`~neural3d.methods.gnt.official` (models and runs from official checkpoints). The method is
``neural3d.methods.gnt.model`` (``method: gnt``).
"""

from neural3d.methods.gnt.checkpoint import official_to_state_dict, state_dict_to_official
from neural3d.methods.gnt.official import load_official_gnt_checkpoint
from neural3d.methods.gnt.projection import (
    ProjectedSamples,
    SourceViews,
    cameras_from_records,
    cameras_to_records,
    project_samples,
)
from neural3d.methods.gnt.resunet import ResUNet
from neural3d.methods.gnt.selection import nearest_views, random_subset
from neural3d.methods.gnt.transformer import GNTNetwork

__all__ = [
    "GNTNetwork",
    "ProjectedSamples",
    "ResUNet",
    "SourceViews",
    "cameras_from_records",
    "cameras_to_records",
    "load_official_gnt_checkpoint",
    "nearest_views",
    "official_to_state_dict",
    "project_samples",
    "random_subset",
    "state_dict_to_official",
]
