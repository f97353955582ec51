"""Image collections for dictionary training: image folders, generated scene renders, shared lego/fern.

Every image is read with :func:`neural3d.data.images.read_image`, composited on white when it has an
alpha channel, centre-cropped to a square and area-resized to ``size`` x ``size``. Folder search is
recursive and sorted; depth/normal maps (``*_depth*``, ``*_normal*``) are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from neural3d.data.images import IMAGE_EXTENSIONS, composite, read_image

_SKIP = ("_depth", "_normal")


def find_images(folder, max_images: int = 0) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted; at most ``max_images`` when > 0, evenly spaced)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"nid/data.py: image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix in IMAGE_EXTENSIONS and not any(s in p.stem for s in _SKIP))
    if not files:
        raise ValueError(f"nid/data.py: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    if max_images > 0 and len(files) > max_images:
        keep = np.linspace(0, len(files) - 1, max_images).round().astype(int)
        files = [files[i] for i in sorted(set(keep.tolist()))]
    return files


def load_square_image(path, size: int) -> np.ndarray:
    """One image -> [size, size, 3] float32 in [0, 1] (white background, centre crop, area resize)."""
    rgb, _ = composite(read_image(path), (1.0, 1.0, 1.0))
    H, W = rgb.shape[:2]
    s = min(H, W)
    y0, x0 = (H - s) // 2, (W - s) // 2
    crop = rgb[y0 : y0 + s, x0 : x0 + s]
    if s != size:
        planes = [np.asarray(Image.fromarray(crop[..., c]).resize((size, size), Image.BOX)) for c in range(3)]
        crop = np.stack(planes, -1)
    return np.ascontiguousarray(crop, dtype=np.float32)


def load_images(paths: Sequence[Path], size: int) -> Tensor:
    """[n_images, size, size, 3] float32 tensor of the given files."""
    return torch.from_numpy(np.stack([load_square_image(p, size) for p in paths]))


def load_image_folder(folder, size: int, max_images: int = 0) -> Tensor:
    """[n_images, size, size, 3] images found under ``folder`` (see :func:`find_images`)."""
    return load_images(find_images(folder, max_images), size)


def synthetic_family_images(
    out_dir, *, n_scenes: int, seed: int = 0, size: int = 64, views_per_scene: int = 4
) -> Tensor:
    """Render (once; reused when present) a generated scene family and return its training views.

    Args:
        out_dir: where :func:`~neural3d.data.synthetic.write_scene_family` writes the scenes.
        n_scenes, seed: family size and seed.
        size: render resolution (square).
        views_per_scene: training views per scene.
    Returns:
        [n_scenes * views_per_scene, size, size, 3].
    """
    from neural3d.data.synthetic import write_scene_family

    out = Path(out_dir)
    if not (out / "family.json").is_file():
        write_scene_family(
            out, n_scenes=n_scenes, seed=seed, res=size, n_train=views_per_scene, n_val=0, n_test=0, supersample=1
        )
    paths = sorted((out).glob("scene_*/train/r_*.png"))
    if not paths:
        raise ValueError(f"nid/data.py: no rendered views under {out}")
    return load_images(paths, size)


def collect_images(
    folders: Sequence[str],
    size: int,
    max_images: int = 0,
    synth_dir: str | None = None,
    synth_scenes: int = 0,
    synth_seed: int = 0,
) -> Tensor:
    """All images of a training collection: each folder (up to ``max_images`` each) plus generated renders."""
    parts = [load_image_folder(f, size, max_images) for f in folders]
    if synth_scenes > 0:
        if not synth_dir:
            raise ValueError("nid/data.py: synth_scenes > 0 needs a synth_dir to write the scene family to")
        parts.append(synthetic_family_images(synth_dir, n_scenes=synth_scenes, seed=synth_seed, size=size))
    if not parts:
        raise ValueError("nid/data.py: the collection is empty (no folders and synth_scenes = 0)")
    return torch.cat(parts, 0)
