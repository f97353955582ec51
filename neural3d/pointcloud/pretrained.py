"""Load DeiT/timm ``.pth`` weights (local files only) into point or image ViTs, with a report.

Rules, key by key (checkpoint's ``model`` entry, else ``state_dict``, else the mapping itself):

* same name and shape -> loaded;
* ``pos_embed`` [1, 1 + n_patches, dim] into a point model's [1, 1, dim] -> the class token's row (adapted);
* ``patch_embed.proj.weight`` [dim, 3, p, p] into a voxel Conv3d [dim, 1, q, q, q] -> inflated: channel
  sum, area-resized to q x q keeping the kernel sum, repeated over depth and divided by q, so a fully
  occupied voxel patch gets the response of a uniform white image patch (adapted);
* otherwise (``dist_token``, ``head_dist``, a 1000-class ``head``, blocks beyond the model's depth) -> skipped.

Model entries that received nothing keep their fresh initialisation (re-initialised). A checkpoint of
another width (e.g. DeiT-S into a tiny model) is an error naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class LoadReport:
    """What :func:`load_deit` did: names loaded as-is, adapted, skipped (with why) and re-initialised."""

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    reinitialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)}, adapted {len(self.adapted)} ({', '.join(self.adapted) or '-'}), "
            f"skipped {len(self.skipped)} ({', '.join(sorted(self.skipped)) or '-'}), "
            f"re-initialised {len(self.reinitialised)}"
        )


def read_state_dict(source: str | Path | Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """A state dict from a local ``.pth`` (``model`` / ``state_dict`` entry or flat) or a mapping."""
    if isinstance(source, Mapping):
        state, name = source, "state dict"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
        from neural3d.training.run_dir import load_checkpoint

        state = load_checkpoint(path)  # ValueError for a corrupt file, or one that would run code (refused)
        name = str(path)
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{name}: expected a state dict of tensors (or a 'model' entry holding one)")
    return {k.removeprefix("module."): v for k, v in state.items()}, name


def _inflate_patch_proj(w2d: Tensor, target: torch.Size) -> Tensor:
    """[dim, 3, p, p] 2D patch kernel -> [dim, 1, q, q, q] 3D kernel with the same total (uniform-input) response."""
    q = target[-1]
    p = w2d.shape[-1]
    w = w2d.float().sum(1, keepdim=True)
    if p != q:
        w = F.interpolate(w, size=(q, q), mode="area" if p > q else "bilinear") * (p / q) ** 2
    return (w[:, :, None].expand(-1, -1, q, -1, -1) / q).contiguous()


def load_deit(model: nn.Module, source: str | Path | Mapping[str, Tensor]) -> LoadReport:
    """Copy matching DeiT weights into ``model`` (a :class:`PointViT` or :class:`ImageViT`) in place."""
    ckpt, name = read_state_dict(source)
    own = model.state_dict()
    key = "blocks.0.norm1.weight"
    if key in ckpt and key in own and ckpt[key].shape != own[key].shape:
        raise ValueError(
            f"{name}: checkpoint width {ckpt[key].shape[0]} does not match the model's "
            f"{own[key].shape[0]} (choose the matching size: tiny 192, small 384, base 768)"
        )
    report, new = LoadReport(), {}
    for k, v in ckpt.items():
        if k not in own:
            report.skipped[k] = "not in model"
        elif own[k].shape == v.shape:
            new[k] = v
            report.loaded.append(k)
        elif k == "pos_embed" and own[k].shape[1] == 1 and v.shape[-1] == own[k].shape[-1]:
            new[k] = v[:, :1]
            report.adapted.append(k)
        elif k == "patch_embed.proj.weight" and own[k].ndim == 5 and v.ndim == 4 and v.shape[0] == own[k].shape[0]:
            new[k] = _inflate_patch_proj(v, own[k].shape)
            report.adapted.append(k)
        else:
            report.skipped[k] = f"shape {tuple(v.shape)} != model {tuple(own[k].shape)}"
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in new.items()}})
    report.reinitialised = [k for k in own if k not in new]
    return report
