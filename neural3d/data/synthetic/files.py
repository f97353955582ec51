"""Files of the generated datasets: 8-bit PNGs, float32 depth ``.npy``, JSON, batched rendering, argument checks.

Shared by the layout writers (:mod:`.writer`: Blender, LLFF; :mod:`.dtu_writer`: DTU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .scene import SynthScene

PIXELS_PER_BATCH = 1 << 21  # cameras rendered (and held in memory) at once


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[..., C] float in [0, 1] -> uint8 (round half up)."""
    return np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: Path, img: np.ndarray) -> None:
    """Write [H, W] (grey) or [H, W, C] float in [0, 1] as an 8-bit PNG (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(img)).save(path, format="PNG")


def save_depth(path: Path, depth: np.ndarray) -> None:
    """Write a depth map as float32 ``.npy``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, depth.astype(np.float32))


def save_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def render_batches(
    scene: SynthScene,
    c2w: np.ndarray,
    fx: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    supersample: int,
    fy: float | None = None,
):
    """Yield (first index, RenderOutput) over batches of cameras; c2w: [n_cams, 3, 4] float64; fy defaults to fx."""
    step = max(1, PIXELS_PER_BATCH // (width * height))
    fy = fx if fy is None else fy
    for i0 in range(0, c2w.shape[0], step):
        yield i0, scene.render(torch.from_numpy(c2w[i0 : i0 + step]), fx, fy, cx, cy, width, height, supersample)


def check_args(res: int, supersample: int, counts: dict[str, int], even: bool = False) -> None:
    """ValueError unless ``res`` >= 2 (even if asked), ``supersample`` >= 1 and every count >= 0."""
    if res < 2 or (even and res % 2):
        raise ValueError(f"res must be an {'even ' if even else ''}integer >= 2, got {res}")
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    for name, n in counts.items():
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
