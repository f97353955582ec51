"""GNT's image feature extractor: a ResNet-34-style encoder/decoder (``ResUNet``).

Architecture (as in the official GNT/IBRNet code, trained from scratch):

* stem: 7x7 stride-2 convolution (64 channels), InstanceNorm, ReLU;
* encoder: ResNet-34 layers 1-3 of 3 / 4 / 6 basic blocks (64 / 128 / 256 channels), each layer
  strided by 2 (layer 1 included), no layer 4; InstanceNorm (affine, no running statistics);
* decoder: two bilinear x2 upsamplings (``align_corners=True``), each a 3x3 conv + InstanceNorm + ELU,
  concatenated with the encoder map of the same level (zero-padded to the upsampled size) and fused by
  another conv block; a final 1x1 convolution.

Every convolution pads by reflection. The input is RGB in [0, 1] without normalisation; the output
has ``out_channels`` (32) channels at about 1/4 resolution (40x56 -> 12x16, 756x1008 -> 192x252).

Parameter names equal the official ``feature_net`` state dict (``conv1``, ``bn1``, ``layer1.0.conv1``,
``upconv3.conv.conv``, ``iconv2.bn``, ``out_conv``...), so its checkpoints load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=bias, padding_mode="reflect")


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with InstanceNorm and a (strided 1x1) shortcut.

    Shapes: [n, c_in, H, W] -> [n, c_out, H / stride, W / stride].
    """

    def __init__(self, *, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, stride)
        self.bn1 = _norm(c_out)
        self.conv2 = _conv(c_out, c_out, 3)
        self.bn2 = _norm(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(_conv(c_in, c_out, 1, stride), _norm(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ConvBlock(nn.Module):
    """3x3 conv (with bias) + InstanceNorm + ELU. Shapes: [n, c_in, H, W] -> [n, c_out, H, W]."""

    def __init__(self, *, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = _conv(c_in, c_out, kernel, bias=True)
        self.bn = _norm(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(self.bn(self.conv(x)))


class UpConvBlock(nn.Module):
    """Bilinear x2 upsampling (``align_corners=True``) then a :class:`ConvBlock`
    ([n, c, H, W] -> [n, c_out, 2H, 2W])."""

    def __init__(self, *, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvBlock(c_in=c_in, c_out=c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


def _skip(encoder: Tensor, upsampled: Tensor) -> Tensor:
    """Zero-pad (or crop) ``encoder`` [n, c1, h, w] to the size of ``upsampled`` [n, c2, H, W];
    cat -> [n, c2 + c1, H, W]."""
    dy = upsampled.shape[2] - encoder.shape[2]
    dx = upsampled.shape[3] - encoder.shape[3]
    encoder = F.pad(encoder, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
    return torch.cat([upsampled, encoder], dim=1)


class ResUNet(nn.Module):
    """Feature extractor. ``forward(images [n, 3, H, W] in [0, 1]) -> [n, out_channels, ~H/4, ~W/4]``.

    Args:
        out_channels: output channels (32 for one shared coarse/fine network; 64 when the official
            ``single_net=False`` splits them into coarse and fine halves).
        blocks: basic blocks per encoder layer (ResNet-34: 3, 4, 6).
    """

    def __init__(self, *, out_channels: int = 32, blocks: tuple[int, int, int] = (3, 4, 6)) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False, padding_mode="reflect")
        self.bn1 = _norm(64)
        self.layer1 = self._layer(64, 64, blocks[0])
        self.layer2 = self._layer(64, 128, blocks[1])
        self.layer3 = self._layer(128, 256, blocks[2])
        self.upconv3 = UpConvBlock(c_in=256, c_out=128)
        self.iconv3 = ConvBlock(c_in=128 + 128, c_out=128)
        self.upconv2 = UpConvBlock(c_in=128, c_out=64)
        self.iconv2 = ConvBlock(c_in=64 + 64, c_out=out_channels)
        self.out_conv = nn.Conv2d(out_channels, out_channels, 1)

    @staticmethod
    def _layer(c_in: int, c_out: int, n_blocks: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(c_in=c_in, c_out=c_out, stride=2),
            *[BasicBlock(c_in=c_out, c_out=c_out) for _ in range(n_blocks - 1)],
        )

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ResUNet: images must be [n, 3, H, W], got {tuple(images.shape)}")
        x = F.relu(self.bn1(self.conv1(images)))
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x = self.iconv3(_skip(x2, self.upconv3(x3)))
        x = self.iconv2(_skip(x1, self.upconv2(x)))
        return self.out_conv(x)
