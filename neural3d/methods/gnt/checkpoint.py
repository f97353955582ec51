"""Official GNT checkpoints <-> neural3d GNT models.

An official checkpoint (``torch.save`` in VITA-Group/GNT ``train.py``) is a dict with ``net_coarse``
(the GNT network), ``feature_net`` (ResUNet), optionally ``net_fine`` (``single_net=False``), and the
optimizer / scheduler states. Parameter names map by prefix:

=====================  ==========================
official (net_*)       neural3d (renderer*)
=====================  ==========================
``rgbfeat_fc.``        ``feat_fc.``
``view_crosstrans.``   ``view_blocks.`` (view transformer)
``view_selftrans.``    ``ray_blocks.`` (ray transformer)
``q_fcs.``             ``pe_fcs.``
``norm.``, ``rgb_fc.`` unchanged
=====================  ==========================

``feature_net.*`` keeps its names. Official cameras use OpenCV c2w and pixel centres at integer
coordinates: render with ``data.pixel_center=0.0`` to reproduce them exactly.

This module is pure state-dict work and imports no model; :mod:`neural3d.methods.gnt.official` builds models and
run directories from official checkpoints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

_PREFIXES = (
    ("rgbfeat_fc.", "feat_fc."),
    ("view_crosstrans.", "view_blocks."),
    ("view_selftrans.", "ray_blocks."),
    ("q_fcs.", "pe_fcs."),
    ("norm.", "norm."),
    ("rgb_fc.", "rgb_fc."),
)
_NETS = (("net_coarse", "renderer"), ("net_fine", "renderer_fine"), ("feature_net", "feature_net"))


def _rename(key: str, table) -> str:
    for a, b in table:
        if key.startswith(a):
            return b + key[len(a) :]
    raise KeyError(f"unexpected GNT parameter '{key}'")


def _strip_module(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix("module."): v for k, v in sd.items()}


def official_to_state_dict(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    """An official checkpoint dict -> a neural3d ``GNTModel`` state dict."""
    missing = [k for k in ("net_coarse", "feature_net") if k not in ckpt]
    if missing:
        raise ValueError(f"not an official GNT checkpoint: missing {missing} (keys: {sorted(ckpt)[:8]})")
    out: dict[str, Tensor] = {}
    for src, dst in _NETS:
        sd = ckpt.get(src)
        if sd is None:
            continue
        for k, v in _strip_module(sd).items():
            out[f"{dst}.{k if src == 'feature_net' else _rename(k, _PREFIXES)}"] = v
    return out


def state_dict_to_official(state: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Inverse of :func:`official_to_state_dict` (``net_coarse`` / ``feature_net`` / ``net_fine``)."""
    back = tuple((b, a) for a, b in _PREFIXES)
    out: dict[str, dict[str, Tensor]] = {}
    for src, dst in _NETS:
        prefix = dst + "."
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            out[src] = {k if src == "feature_net" else _rename(k, back): v for k, v in sub.items()}
    return out


def official_config_fields(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~neural3d.methods.gnt.model.GNTModelConfig` fields that an official checkpoint's shapes fix.

    ``width``, ``depth`` (view-transformer blocks), ``feature_dim`` (ResUNet channels) and ``single_net`` (no
    ``net_fine``). :func:`neural3d.methods.gnt.official.config_from_official` builds the config from them.
    """
    net = _strip_module(ckpt["net_coarse"])
    depth = len({m.group(1) for k in net for m in [re.match(r"view_crosstrans\.(\d+)\.", k)] if m})
    width, in_ch = net["rgbfeat_fc.0.weight"].shape
    return {
        "width": int(width),
        "depth": depth,
        "feature_dim": int(in_ch) - 3,
        "single_net": ckpt.get("net_fine") is None,
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file (official or neural3d) as a dict on the CPU, read with ``weights_only`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GNT checkpoint not found: {path}")
    from neural3d.training.run_dir import load_checkpoint

    return load_checkpoint(path)  # ValueError for a truncated file, or one that would run code (refused)


def load_weights_into(model, path: str | Path, strict: bool = True) -> str | None:
    """Initialise ``model`` from a neural3d checkpoint (``model`` key) or an official GNT checkpoint.

    Returns which kind was read ('neural3d' or 'official').
    """
    ckpt = read_checkpoint(path)
    if "net_coarse" in ckpt:
        model.load_state_dict(official_to_state_dict(ckpt), strict=strict)
        return "official"
    if "model" in ckpt:
        model.load_state_dict(ckpt["model"], strict=strict)
        return "neural3d"
    raise ValueError(f"{path}: neither a neural3d checkpoint ('model') nor an official GNT one ('net_coarse')")
