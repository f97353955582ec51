"""The VGG-19 perceptual loss of LVSM's official training (``model/loss.py: PerceptualLoss``), in plain PyTorch.

The loss of Chen & Koltun's cascaded refinement networks as LVSM trains with it (weight 0.5 beside the L2
loss in the official configs):

1. images in [0, 1] -> ``x * 255 - mean`` with the ImageNet mean (123.68, 116.779, 103.939), RGB, no std;
2. VGG-19 ``features`` with every max-pool replaced by a 2×2 average pool; five blocks ending after relu1_2,
   relu2_2, relu3_2, relu4_2 and relu5_2 (torchvision indices 3, 8, 13, 22, 31);
3. ``(e0 + e1 / 2.6 + e2 / 4.8 + e3 / 3.7 + e4 / 5.6 + e5 * 10 / 1.5) / 255`` with ``e0`` the mean absolute
   difference of the preprocessed images and ``e_k`` that of block ``k``'s features.

Weights are never downloaded. The official code loads MatConvNet's ``imagenet-vgg-verydeep-19.mat`` (the
original VGG weights, read with ``scipy.io.loadmat``): :meth:`VGGPerceptualLoss.from_file` reads that file,
or a state dict with torchvision's ``features.<i>.weight`` / ``.bias`` names (e.g. one converted from the .mat
file; torchvision's own ``vgg19-dcbb9e9d.pth`` has that layout too, but other weights, trained for another
input normalisation: not the official loss).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from neural3d.evaluation.lpips import features_from_spec, load_tensor_file, strict_copy

__all__ = ["VGG19_LAYERS", "VGGPerceptualLoss", "read_matconvnet_vgg19"]

# torchvision's vgg19 ``features``: (kind, c_in, c_out, kernel, stride, padding) / ("relu",) / ("pool", 2, 2)
VGG19_LAYERS = [
    ("conv", 3, 64, 3, 1, 1), ("relu",), ("conv", 64, 64, 3, 1, 1), ("relu",), ("pool", 2, 2),
    ("conv", 64, 128, 3, 1, 1), ("relu",), ("conv", 128, 128, 3, 1, 1), ("relu",), ("pool", 2, 2),
    *[x for c_in in (128, 256, 256, 256) for x in (("conv", c_in, 256, 3, 1, 1), ("relu",))], ("pool", 2, 2),
    *[x for c_in in (256, 512, 512, 512) for x in (("conv", c_in, 512, 3, 1, 1), ("relu",))], ("pool", 2, 2),
    *[x for _ in range(4) for x in (("conv", 512, 512, 3, 1, 1), ("relu",))], ("pool", 2, 2),
]  # fmt: skip
BLOCK_ENDS = (4, 9, 14, 23, 32)
"""The official feature blocks are ``features[0:4]``, ``[4:9]``, ``[9:14]``, ``[14:23]``, ``[23:32]``."""
BLOCK_SCALES = (1 / 2.6, 1 / 4.8, 1 / 3.7, 1 / 5.6, 10 / 1.5)
IMAGENET_MEAN_255 = (123.68, 116.779, 103.939)


def read_matconvnet_vgg19(path: str | Path) -> dict[str, torch.Tensor]:
    """MatConvNet ``imagenet-vgg-verydeep-19.mat`` -> ``features.<i>.weight`` [out, in, 3, 3] and ``.bias``.

    The file's ``layers`` list runs in torchvision's ``features`` order (conv, relu, pool...), so layer ``i``'s
    ``weights`` cell ``{W [h, w, in, out], b}`` becomes ``features.i`` (W permuted (3, 2, 0, 1), as the official
    code does).
    """
    import scipy.io

    try:
        layers = scipy.io.loadmat(str(path))["layers"][0]
    except Exception as exc:  # scipy's MatReadError, a missing 'layers' entry, a truncated file...
        raise ValueError(f"perceptual loss: cannot read MatConvNet VGG-19 layers from {path}: {exc}") from exc
    out = {}
    for i, spec in enumerate(VGG19_LAYERS):
        if spec[0] != "conv":
            continue
        try:
            w, b = layers[i][0][0]["weights"][0]
        except (IndexError, ValueError, KeyError) as exc:
            raise ValueError(f"perceptual loss: {path}: layer {i} has no conv weights ({exc})") from exc
        out[f"features.{i}.weight"] = torch.from_numpy(w.astype("float32")).permute(3, 2, 0, 1).contiguous()
        out[f"features.{i}.bias"] = torch.from_numpy(b.astype("float32")).reshape(-1)
    return out


class VGGPerceptualLoss(nn.Module):
    """LVSM's official perceptual loss (module docstring); a frozen module with torchvision parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.features = features_from_spec(VGG19_LAYERS[: BLOCK_ENDS[-1]], avg_pool=True)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN_255).reshape(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> VGGPerceptualLoss:
        """From a LOCAL ``imagenet-vgg-verydeep-19.mat`` or a ``features.*`` state dict (.pt / .pth)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"perceptual loss: VGG-19 weights not found at '{path}'. Expected MatConvNet's "
                "'imagenet-vgg-verydeep-19.mat' (https://www.vlfeat.org/matconvnet/models/), as LVSM's official code "
                "uses, or a state dict with torchvision's features.<i> names."
            )
        state = read_matconvnet_vgg19(path) if path.suffix == ".mat" else load_tensor_file(path, "perceptual loss")
        model = cls()
        convs = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) < BLOCK_ENDS[-1]}
        strict_copy(model.features, {k[len("features.") :]: v for k, v in convs.items()}, str(path), "perceptual loss")
        return model

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss (a scalar) between ``pred`` and ``target``, [*batch, H, W, 3] images in [0, 1]."""
        if pred.shape != target.shape or pred.dim() < 3 or pred.shape[-1] != 3:
            raise ValueError(
                f"perceptual loss: expected two [*batch, H, W, 3] images, got {pred.shape}, {target.shape}"
            )
        x = self._prepare(pred)
        y = self._prepare(target)
        loss = (x - y).abs().mean()
        start = 0
        for end, scale in zip(BLOCK_ENDS, BLOCK_SCALES):
            for layer in self.features[start:end]:
                x, y = layer(x), layer(y)
            loss = loss + (x - y).abs().mean() * scale
            start = end
        return loss / 255.0

    def _prepare(self, img: torch.Tensor) -> torch.Tensor:
        """[*batch, H, W, 3] in [0, 1] -> [n, 3, H, W] ``img * 255 - mean``."""
        x = img.reshape(-1, *img.shape[-3:]).permute(0, 3, 1, 2).to(self.mean.dtype)
        return x * 255.0 - self.mean
