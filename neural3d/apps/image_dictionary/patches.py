"""Cutting images into non-overlapping patches with local coordinates, and folding them back.

Patch order is image-major, then row-major over the patch grid (as ``F.unfold`` / ``F.fold`` with
``stride = kernel``, the official NID evaluation); pixels inside a patch are row-major. Local
coordinates are ``(x, y)`` in [-1, 1] with the first/last pixel at -1/+1 (official ``LatticeDataset``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(images: Tensor, patch: int) -> None:
    if images.ndim != 4:
        raise ValueError(f"nid/patches.py: images must be [n_images, H, W, C], got {tuple(images.shape)}")
    H, W = images.shape[1:3]
    if patch < 1 or H % patch or W % patch:
        raise ValueError(f"nid/patches.py: patch size {patch} must divide the image size {H}x{W}")


def cut_patches(images: Tensor, patch: int) -> Tensor:
    """[n_images, H, W, C] -> [n_images * (H/p) * (W/p), p, p, C]."""
    _check(images, patch)
    n, H, W, C = images.shape
    x = images.reshape(n, H // patch, patch, W // patch, patch, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, patch, patch, C)


def fold_patches(patches: Tensor, height: int, width: int) -> Tensor:
    """Inverse of :func:`cut_patches`: [n_images * L, p, p, C] -> [n_images, height, width, C]."""
    if patches.ndim != 4 or patches.shape[1] != patches.shape[2]:
        raise ValueError(f"nid/patches.py: patches must be [n, p, p, C], got {tuple(patches.shape)}")
    p, C = patches.shape[1], patches.shape[-1]
    if height % p or width % p:
        raise ValueError(f"nid/patches.py: patch size {p} must divide the image size {height}x{width}")
    per_image = (height // p) * (width // p)
    if patches.shape[0] % per_image:
        raise ValueError(f"nid/patches.py: {patches.shape[0]} patches is not a multiple of {per_image} per image")
    n = patches.shape[0] // per_image
    x = patches.reshape(n, height // p, width // p, p, p, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, height, width, C)


def grid_coords(height: int, width: int, device=None) -> Tensor:
    """[height * width, 2] row-major pixel coordinates (x, y) in [-1, 1] (endpoints included)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device) if height > 1 else torch.zeros(1, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device) if width > 1 else torch.zeros(1, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], -1).reshape(-1, 2)


def patch_coords(patch: int, device=None) -> Tensor:
    """[p * p, 2] local coordinates of a patch's pixels (row-major), see :func:`grid_coords`."""
    return grid_coords(patch, patch, device)


def flatten_patches(patches: Tensor) -> Tensor:
    """[n, p, p, C] -> [n, p * p, C] pixel values in the order of :func:`patch_coords`."""
    return patches.reshape(patches.shape[0], -1, patches.shape[-1])


def _check_stride(images: Tensor, patch: int, stride: int) -> None:
    if images.ndim != 4:
        raise ValueError(f"nid/patches.py: images must be [n_images, H, W, C], got {tuple(images.shape)}")
    H, W = images.shape[1:3]
    if not 1 <= stride <= patch or H < patch or W < patch or (H - patch) % stride or (W - patch) % stride:
        raise ValueError(
            f"nid/patches.py: stride {stride} must be in [1, patch={patch}] and tile the image "
            f"{H}x{W} exactly ((size - patch) divisible by the stride)"
        )


def cut_patches_strided(images: Tensor, patch: int, stride: int) -> Tensor:
    """Overlapping patches: [n_images, H, W, C] -> [n_images * L, p, p, C], L = ((H-p)/s+1) * ((W-p)/s+1).

    Order as :func:`cut_patches` (``stride = patch`` gives exactly its patches), via ``F.unfold``.
    """
    _check_stride(images, patch, stride)
    n, C = images.shape[0], images.shape[-1]
    cols = torch.nn.functional.unfold(images.permute(0, 3, 1, 2), patch, stride=stride)  # [n, C*p*p, L]
    return cols.reshape(n, C, patch, patch, -1).permute(0, 4, 2, 3, 1).reshape(-1, patch, patch, C)


def fold_patches_mean(patches: Tensor, height: int, width: int, stride: int) -> Tensor:
    """Inverse of :func:`cut_patches_strided`, averaging the estimates of each pixel: -> [n_images, H, W, C]."""
    if patches.ndim != 4 or patches.shape[1] != patches.shape[2]:
        raise ValueError(f"nid/patches.py: patches must be [n, p, p, C], got {tuple(patches.shape)}")
    p, C = patches.shape[1], patches.shape[-1]
    _check_stride(patches.new_zeros(1, height, width, 1), p, stride)
    per_image = ((height - p) // stride + 1) * ((width - p) // stride + 1)
    if patches.shape[0] % per_image:
        raise ValueError(f"nid/patches.py: {patches.shape[0]} patches is not a multiple of {per_image} per image")
    n = patches.shape[0] // per_image
    cols = patches.reshape(n, per_image, p, p, C).permute(0, 4, 2, 3, 1).reshape(n, C * p * p, per_image)
    total = torch.nn.functional.fold(cols, (height, width), p, stride=stride)
    count = torch.nn.functional.fold(torch.ones_like(cols[:, : p * p]), (height, width), p, stride=stride)
    return (total / count).permute(0, 2, 3, 1)
