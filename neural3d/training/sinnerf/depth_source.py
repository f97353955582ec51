"""The reference view's depth for single-view training: from the dataset, a file, or an oracle run.

All three give an [H, W] float32 z-depth map (the ``t`` of our unnormalised rays; 0 where unknown):

* ``dataset``: ``SceneData.depths`` when the loader filled it, else the depth files of a generated scene
  (``neural3d data synth``): ``depth/<split>/<name>.npy`` (Blender layout) or ``depth/<name>.npy`` /
  ``depth_<factor>/<name>.npy`` (LLFF layout) next to the image folder.
* ``file``: a ``.npy`` given by the user.
* ``oracle``: rendered by a trained run (``neural3d.load``) at the reference camera; pixels with opacity below
  ``min_opacity`` get 0. The run should be trained on views other than the reference: then the depth is
  an oracle (information from other views), which results must state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neural3d.config import ConfigError
from neural3d.data.scene import DatasetError, DatasetFileNotFoundError, SceneData


def _check(depth: np.ndarray, shape: tuple[int, int], source: object) -> Tensor:
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.shape != shape:
        raise DatasetError(f"{source}: depth map is {depth.shape}, the reference image is {shape} (H, W)")
    t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    if not bool(torch.isfinite(t).all()):
        raise DatasetError(f"{source}: depth map holds NaN or infinite values")
    return t.clamp_min(0.0)


def _read_npy(path: Path, shape: tuple[int, int]) -> Tensor:
    """A depth file in the scene format (:func:`neural3d.data.depths.read_depth`: checked, non-finite -> 0)."""
    from neural3d.data.depths import read_depth

    return torch.from_numpy(read_depth(path, shape).astype(np.float32))


def generated_depth_path(scene: SceneData, index: int) -> Path:
    """The depth file a generated scene writes for image ``index`` (see the module docstring)."""
    image = Path(scene.image_paths[index])
    folder = image.parent
    if folder.name.startswith("images"):  # LLFF layout: images[_k]/name.png -> depth[_k]/name.npy
        return folder.parent / folder.name.replace("images", "depth", 1) / f"{image.stem}.npy"
    return folder.parent / "depth" / folder.name / f"{image.stem}.npy"  # Blender: split/r_i.png


def dataset_depth(scene: SceneData, index: int) -> Tensor:
    """The scene's own depth of image ``index`` ([H, W]); DatasetError naming what is missing."""
    shape = (scene.height, scene.width)
    if scene.depths is not None:
        return _check(scene.depths[index].cpu().numpy(), shape, f"{scene.root}: depths[{index}]")
    path = generated_depth_path(scene, index)
    if not path.is_file():
        raise DatasetFileNotFoundError(
            f"{path}: no depth for {scene.image_paths[index]} (the dataset carries none): set sinnerf.depth.source "
            "to 'file' (a .npy) or 'oracle' (a run trained on other views)"
        )
    return _read_npy(path, shape)


def oracle_depth(scene: SceneData, index: int, run_dir: str | Path, min_opacity: float) -> Tensor:
    """Depth of image ``index`` rendered by the trained run ``run_dir`` (opacity below ``min_opacity``: 0)."""
    from neural3d.api import load

    loaded = load(run_dir, device="cpu")
    out = loaded.render(scene.cameras[index].to("cpu"))
    depth, opacity = out["depth"].reshape(scene.height, scene.width), out["opacity"].reshape(scene.height, scene.width)
    return torch.where(opacity >= min_opacity, depth, torch.zeros_like(depth)).float()


def reference_depth(scene: SceneData, index: int, cfg) -> Tensor:
    """[H, W] z-depth of image ``index`` from the source ``cfg`` (:class:`DepthSourceConfig`) says."""
    if cfg.source == "dataset":
        return dataset_depth(scene, index)
    if not cfg.path:
        raise ConfigError(f"sinnerf.depth.source={cfg.source} needs sinnerf.depth.path")
    if cfg.source == "file":
        return _read_npy(Path(cfg.path), (scene.height, scene.width))
    return oracle_depth(scene, index, cfg.path, cfg.min_opacity)
