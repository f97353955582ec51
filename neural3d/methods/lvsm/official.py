"""Official LVSM checkpoints (Haian-Jin/LVSM) -> our state dicts.

The official ``Images2LatentScene`` names its modules as :class:`~neural3d.methods.lvsm.network.LVSMNetwork`
does (our model holds it as ``net``), so the mapping is: drop ``loss_computer.*`` (the frozen VGG of the
perceptual loss) and a DDP ``module.`` prefix, prefix ``net.``. Loading is strict (the official ``load_ckpt``
uses ``strict=False``, which hides mismatches).

The official checkpoints file is ``{"model": state dict, ...}``; released models were trained at 256×256
(RealEstate10K: ``image_size`` 256, square crop) with poses normalised by the official loader -- use
``pose_normalization: sources`` (or ``scene``) and 256² renders in OpenCV-equivalent rays (our cameras convert,
see :mod:`neural3d.methods.lvsm.rays`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

DROPPED_PREFIXES = ("loss_computer.",)


def official_to_state_dict(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official model state dict -> :class:`~neural3d.methods.lvsm.model.LVSMModel` state dict."""
    out = {}
    for key, value in official.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name.startswith(DROPPED_PREFIXES):
            continue
        out["net." + name] = value
    return out


def state_dict_to_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict -> the official names (without ``loss_computer.*``)."""
    return {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}


def load_official_weights(path: str | Path) -> dict[str, Tensor]:
    """Read an official checkpoint file (``{"model": ...}`` or a bare state dict) -> our state dict."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    return official_to_state_dict(state)
