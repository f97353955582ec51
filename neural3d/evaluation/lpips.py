"""LPIPS perceptual distance (Zhang et al. 2018, lpips package v0.1) in plain PyTorch.

Same computation as ``lpips.LPIPS(net=..., version="0.1")(x, y, normalize=True)``:

1. images in [0, 1] -> [-1, 1], then the LPIPS scaling layer ``(x - shift) / scale`` with
   shift = [-.030, -.088, -.188], scale = [.458, .448, .450];
2. backbone features tapped after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (VGG16) or
   relu1 .. relu5 (AlexNet);
3. each feature map is unit-normalised over channels: ``f / (sqrt(sum_c f^2) + 1e-10)``;
4. squared difference -> 1x1 linear head without bias -> spatial mean -> sum over the 5 layers.

Weights are never downloaded. The backbone uses torchvision's parameter names (``features.0.weight``
...), so torchvision's ImageNet state dict file (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``)
loads directly (its ``classifier.*`` entries are ignored); the linear heads use the key names of the
lpips package's ``weights/v0.1/{vgg,alex}.pth`` (``lin0.model.1.weight`` .. ``lin4.model.1.weight``,
shapes [1, C, 1, 1]). The heads' dropout slot (``model.0``) is an identity here, so results do not
depend on train/eval mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "BACKBONE_SPECS",
    "LPIPS",
    "features_from_spec",
    "load_tensor_file",
    "lpips_backbone_layers",
    "normalize_channels",
    "strict_copy",
]

# Layer list of torchvision's ``features`` stacks: ("conv", c_in, c_out, kernel, stride, padding),
# ("relu",), ("pool", kernel, stride). Indices in the list are torchvision's module indices.
_VGG16 = [
    ("conv", 3, 64, 3, 1, 1), ("relu",), ("conv", 64, 64, 3, 1, 1), ("relu",), ("pool", 2, 2),
    ("conv", 64, 128, 3, 1, 1), ("relu",), ("conv", 128, 128, 3, 1, 1), ("relu",), ("pool", 2, 2),
    ("conv", 128, 256, 3, 1, 1), ("relu",), ("conv", 256, 256, 3, 1, 1), ("relu",),
    ("conv", 256, 256, 3, 1, 1), ("relu",), ("pool", 2, 2),
    ("conv", 256, 512, 3, 1, 1), ("relu",), ("conv", 512, 512, 3, 1, 1), ("relu",),
    ("conv", 512, 512, 3, 1, 1), ("relu",), ("pool", 2, 2),
    ("conv", 512, 512, 3, 1, 1), ("relu",), ("conv", 512, 512, 3, 1, 1), ("relu",),
    ("conv", 512, 512, 3, 1, 1), ("relu",), ("pool", 2, 2),
]  # fmt: skip
_ALEXNET = [
    ("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2),
    ("conv", 64, 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
    ("conv", 192, 384, 3, 1, 1), ("relu",),
    ("conv", 384, 256, 3, 1, 1), ("relu",),
    ("conv", 256, 256, 3, 1, 1), ("relu",), ("pool", 3, 2),
]  # fmt: skip

# net -> (layer list, indices of the tapped ReLUs, channels of the taps, torchvision file, lpips file)
BACKBONE_SPECS: dict[str, tuple[list, tuple[int, ...], tuple[int, ...], str, str]] = {
    "vgg": (_VGG16, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512), "vgg16-397923af.pth", "vgg.pth"),
    "alex": (_ALEXNET, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256), "alexnet-owt-7be5be79.pth", "alex.pth"),
}

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def features_from_spec(specs: list[tuple], *, avg_pool: bool = False) -> nn.Sequential:
    """A torchvision-compatible ``features`` stack (random init) from a layer list as ``BACKBONE_SPECS``'s;
    ``avg_pool`` swaps every max pool for an average pool of the same size (the perceptual loss's VGG)."""
    layers: list[nn.Module] = []
    for spec in specs:
        if spec[0] == "conv":
            _, c_in, c_out, k, s, p = spec
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=k, stride=s, padding=p))
        elif spec[0] == "relu":
            layers.append(nn.ReLU(inplace=False))
        else:
            pool = nn.AvgPool2d if avg_pool else nn.MaxPool2d
            layers.append(pool(kernel_size=spec[1], stride=spec[2]))
    return nn.Sequential(*layers)


def lpips_backbone_layers(net: str) -> nn.Sequential:
    """torchvision-compatible ``features`` stack for ``net`` in {"vgg", "alex"} (random init)."""
    if net not in BACKBONE_SPECS:
        raise ValueError(f"LPIPS: unknown net {net!r}; expected one of {sorted(BACKBONE_SPECS)}")
    return features_from_spec(BACKBONE_SPECS[net][0])


def normalize_channels(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """LPIPS channel-unit normalisation: [n, C, h, w] -> feat / (||feat||_C + eps)."""
    return feat / (torch.sqrt(torch.sum(feat**2, dim=1, keepdim=True)) + eps)


class _Backbone(nn.Module):
    """Feature stack with torchvision parameter names (``features.<i>.weight``) returning the 5 taps."""

    def __init__(self, *, net: str):
        super().__init__()
        self.features = lpips_backbone_layers(net)
        self.taps = BACKBONE_SPECS[net][1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: [n, 3, H, W] scaled input -> list of 5 feature maps [n, C_l, h_l, w_l]."""
        outs = []
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
        return outs


class _LinearHead(nn.Module):
    """1x1 conv without bias; ``model.1`` matches the lpips key layout (``model.0`` was dropout)."""

    def __init__(self, *, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [n, C, h, w] -> [n, 1, h, w]."""
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS distance between images in [0, 1]; parameters are frozen (inputs may require grad).

    Args:
        net: "vgg" (VGG16 backbone, used by the NeRF/GNT papers) or "alex".

    Without loading weights (``from_files`` or the ``load_*`` methods) the network is randomly
    initialised: useful for tests only.
    """

    def __init__(self, *, net: str = "vgg"):
        super().__init__()
        self.net_type = net
        self.net = _Backbone(net=net)
        for k, channels in enumerate(BACKBONE_SPECS[net][2]):
            setattr(self, f"lin{k}", _LinearHead(channels=channels))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def lins(self) -> list[_LinearHead]:
        """The five linear heads lin0 .. lin4."""
        return [getattr(self, f"lin{k}") for k in range(5)]

    @classmethod
    def from_files(cls, net: str, backbone_path: str | Path, linear_path: str | Path) -> LPIPS:
        """Build LPIPS from LOCAL weight files (nothing is downloaded).

        Args:
            net: "vgg" or "alex".
            backbone_path: torchvision ImageNet state dict (``vgg16-397923af.pth`` /
                ``alexnet-owt-7be5be79.pth``) or any file with the same ``features.*`` keys.
            linear_path: the lpips package's ``lpips/weights/v0.1/{vgg,alex}.pth``.

        Raises:
            FileNotFoundError: a file is missing (the message says where to get it).
            ValueError: a file has missing / unexpected keys or wrong shapes.
        """
        if net not in BACKBONE_SPECS:
            raise ValueError(f"LPIPS: unknown net {net!r}; expected one of {sorted(BACKBONE_SPECS)}")
        tv_name, lin_name = BACKBONE_SPECS[net][3], BACKBONE_SPECS[net][4]
        backbone_path, linear_path = Path(backbone_path), Path(linear_path)
        if not backbone_path.is_file():
            raise FileNotFoundError(
                f"LPIPS({net}): backbone weights not found at '{backbone_path}'. Expected torchvision's ImageNet "
                f"state dict '{tv_name}' (from https://download.pytorch.org/models/{tv_name}, or the torch hub "
                f"cache ~/.cache/torch/hub/checkpoints/{tv_name} of a machine with torchvision)."
            )
        if not linear_path.is_file():
            raise FileNotFoundError(
                f"LPIPS({net}): linear-head weights not found at '{linear_path}'. Expected the lpips package's "
                f"'lpips/weights/v0.1/{lin_name}' (pip package 'lpips' or https://github.com/richzhang/"
                f"PerceptualSimilarity/tree/master/lpips/weights/v0.1/{lin_name})."
            )
        model = cls(net=net)
        model.load_backbone_state_dict(load_tensor_file(backbone_path), source=str(backbone_path))
        model.load_linear_state_dict(load_tensor_file(linear_path), source=str(linear_path))
        return model

    def load_backbone_state_dict(self, state: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
        """Load torchvision-layout weights; ``classifier.*`` keys are ignored, all ``features.*`` required."""
        features = {k: v for k, v in state.items() if k.startswith("features.")}
        unexpected = [k for k in state if not k.startswith(("features.", "classifier."))]
        if unexpected:
            raise ValueError(f"LPIPS: unexpected keys in backbone weights {source}: {unexpected[:8]}")
        strict_copy(self.net, features, source)

    def load_linear_state_dict(self, state: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
        """Load lpips-layout heads ``lin{k}.model.1.weight`` [1, C_k, 1, 1] (exactly these 5 keys)."""
        heads = nn.ModuleDict({f"lin{k}": lin for k, lin in enumerate(self.lins)})
        strict_copy(heads, dict(state), source)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """LPIPS distance.

        Args:
            pred: [*batch, H, W, 3] image in [0, 1].
            target: [*batch, H, W, 3] image in [0, 1].

        Returns:
            dist: [*batch] (>= 0, 0 for identical images), in the model's dtype.
        """
        if pred.shape != target.shape or pred.dim() < 3 or pred.shape[-1] != 3:
            raise ValueError(
                f"LPIPS: expected two images [*batch, H, W, 3] of equal shape, got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        batch = pred.shape[:-3]
        dtype = self.shift.dtype
        feats0 = self.net(self._prepare(pred.to(dtype)))
        feats1 = self.net(self._prepare(target.to(dtype)))
        dist = 0
        for lin, f0, f1 in zip(self.lins, feats0, feats1):
            diff = (normalize_channels(f0) - normalize_channels(f1)) ** 2  # [n, C, h, w]
            dist = dist + lin(diff).mean(dim=(1, 2, 3))  # [n]
        return dist.reshape(batch)

    def _prepare(self, img: torch.Tensor) -> torch.Tensor:
        """[*batch, H, W, 3] in [0, 1] -> scaled [n, 3, H, W] network input."""
        x = img.reshape(-1, *img.shape[-3:]).permute(0, 3, 1, 2)
        return ((2.0 * x - 1.0) - self.shift) / self.scale


def load_tensor_file(path: Path, what: str = "LPIPS") -> dict[str, torch.Tensor]:
    """A local state dict read with weights_only=True (:func:`~neural3d.training.run_dir.load_checkpoint`: a file
    that would run code is refused); ValueError (naming ``what``) unless a tensor dict."""
    from neural3d.training.run_dir import load_checkpoint

    try:
        state = load_checkpoint(path)
    except ValueError as exc:
        raise ValueError(f"{what} weights: {exc}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what}: {path} is not a state dict of tensors")
    return dict(state)


def strict_copy(module: nn.Module, state: dict[str, torch.Tensor], source: str, what: str = "LPIPS") -> None:
    """Copy ``state`` into ``module`` requiring exactly its parameter keys and shapes (errors name ``what``)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{what}: weights {source} do not match: missing keys {missing[:8]}, unexpected keys {unexpected[:8]}"
        )
    bad = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise ValueError(f"{what}: wrong shapes in {source}: {bad[:8]}")
    module.load_state_dict(state, strict=True)
