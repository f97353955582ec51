"""LVSM: view synthesis with a transformer from posed source images (decoder-only and encoder-decoder).

Modules: :mod:`~neural3d.methods.lvsm.network` (tokenizers, QK-norm blocks, both variants),
:mod:`~neural3d.methods.lvsm.rays` (Plücker maps, official pose normalisation, padding),
:mod:`~neural3d.methods.lvsm.batches` (whole-image training batches on GNT's scene mixtures),
:mod:`~neural3d.methods.lvsm.official` (official state dicts), :mod:`~neural3d.methods.lvsm.importer`
(runs from official checkpoints). The method is ``neural3d.methods.lvsm.model`` (``method: lvsm``).
"""

from neural3d.methods.lvsm.network import LVSMNetwork, patchify, unpatchify
from neural3d.methods.lvsm.official import official_to_state_dict, state_dict_to_official
from neural3d.methods.lvsm.rays import normalization_frame, plucker

__all__ = [
    "LVSMNetwork",
    "normalization_frame",
    "official_to_state_dict",
    "patchify",
    "plucker",
    "state_dict_to_official",
    "unpatchify",
]
