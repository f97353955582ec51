"""Official LVSM checkpoints (Haian-Jin/LVSM) -> our state dicts.

The official ``Images2LatentScene`` names its modules as :class:`~neural3d.methods.lvsm.network.LVSMNetwork`
does (our model holds it as ``net``), so the mapping is: drop ``loss_computer.*`` (the frozen VGG of the
perceptual loss) and a DDP ``module.`` prefix, prefix ``net.``. Loading is strict (the official ``load_ckpt``
uses ``strict=False``, which hides mismatches).

The official checkpoints file is ``{"model": state dict, ...}``; released models were trained at 256×256
(RealEstate10K: ``image_size`` 256, square crop) with poses normalised by the official loader -- use
``pose_normalization: views`` (the official loader's: over the sources and the target; or ``scene``) and
256² renders in OpenCV-equivalent rays (our cameras convert,
see :mod:`neural3d.methods.lvsm.rays`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

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
    """Read an official checkpoint file (``{"model": ...}`` or a bare state dict) -> our state dict.

    A neural3d LVSM checkpoint (keys already ``net.*``) is returned as it is."""
    from neural3d.training.run_dir import load_checkpoint

    ckpt = load_checkpoint(Path(path))  # weights only: a file that would run code is refused
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not an LVSM checkpoint (a {type(state).__name__}, not a state dict)")
    if state and all(k.startswith("net.") for k in state):
        return dict(state)
    return official_to_state_dict(state)


def load_strict(model: nn.Module, state: Mapping[str, Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model`` when the names and shapes match exactly; else one ``ValueError`` naming
    ``source`` and the missing, unexpected and mis-shaped keys (the first few of each)."""
    own = model.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} (model: {tuple(own[k].shape)})"
        for k in own.keys() & state.keys()
        if state[k].shape != own[k].shape
    )
    problems = [
        f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
        if keys
    ]
    if problems:
        raise ValueError(f"{source}: the LVSM weights do not match the model ({'; '.join(problems)})")
    model.load_state_dict(state, strict=True)


def config_fields_from_state(official: Mapping[str, Tensor], source: str | Path = "checkpoint") -> dict:
    """:class:`~neural3d.methods.lvsm.model.LVSMModelConfig` fields matching an official state dict's shapes."""
    sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in official.items()}
    if "image_tokenizer.1.weight" not in sd or not any(k.endswith("attn.to_qkv.weight") for k in sd):
        keys = ", ".join(sorted(sd)[:6])
        raise ValueError(f"{source}: not an official LVSM state dict (no image tokenizer or blocks; keys: {keys})")
    width, in_features = sd["image_tokenizer.1.weight"].shape
    patch = round((in_features / 9) ** 0.5)

    def n_blocks(prefix: str) -> int:
        return len({k.split(".")[1] for k in sd if k.startswith(prefix + ".")})

    first = next(k for k in sd if k.endswith("attn.to_qkv.weight")).rsplit(".attn.", 1)[0]
    q_norm = sd.get(f"{first}.attn.q_norm.weight")
    fields = {
        "width": int(width),
        "patch_size": int(patch),
        "qk_norm": q_norm is not None,
        "mlp_ratio": int(sd[f"{first}.mlp.mlp.0.weight"].shape[0] // width),
    }
    if q_norm is not None:
        fields["head_dim"] = int(q_norm.shape[0])
    if "n_light_field_latent" in sd:
        fields.update(
            variant="encoder_decoder",
            n_latents=int(sd["n_light_field_latent"].shape[0]),
            encoder_layers=n_blocks("transformer_encoder"),
            decoder_layers=n_blocks("transformer_decoder"),
        )
    else:
        fields.update(variant="decoder_only", n_layers=n_blocks("transformer_blocks"))
    return fields
