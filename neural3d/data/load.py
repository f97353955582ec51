"""``load_scene``: one entry point that detects a dataset's layout and calls its loader."""

from __future__ import annotations

import inspect
from pathlib import Path

from neural3d.data.scene import DatasetError, DatasetFileNotFoundError, SceneData

FORMATS = ("blender", "llff", "transforms", "dtu")

# (format, file whose presence in the folder identifies it), in the order they are tried
_MARKERS = (
    ("blender", "transforms_train.json"),
    ("llff", "poses_bounds.npy"),
    ("transforms", "transforms.json"),
    ("dtu", "cameras_sphere.npz"),
    ("dtu", "cameras.npz"),
)


def detect_format(path) -> tuple[str, Path]:
    """The format of the dataset at ``path`` (a folder, or one of its marker files) and its root.

    ``transforms_train.json`` -> 'blender', ``poses_bounds.npy`` -> 'llff', ``transforms.json`` ->
    'transforms', ``cameras_sphere.npz`` / ``cameras.npz`` (IDR / NeuS) -> 'dtu'. A ``*.json`` file other than
    ``transforms_{split}.json`` is read as 'transforms'.
    """
    path = Path(path)
    if path.is_file():
        if path.name == "poses_bounds.npy":
            return "llff", path.parent
        if path.name.startswith("transforms_") and path.suffix == ".json":
            return "blender", path.parent
        if path.suffix == ".json":
            return "transforms", path
        if path.name in ("cameras_sphere.npz", "cameras.npz"):
            return "dtu", path.parent
    elif not path.is_dir():
        raise DatasetFileNotFoundError(f"{path}: no such file or directory")
    else:
        for fmt, marker in _MARKERS:
            if (path / marker).is_file():
                return fmt, path
    looked = ", ".join(f"{m} ({f})" for f, m in _MARKERS)
    raise DatasetError(f"{path}: unknown dataset layout; looked for {looked}")


def load_scene(path, *, format: str = "auto", **kwargs) -> SceneData:
    """Load any supported dataset.

    Args:
        path: dataset folder (or a marker file: ``poses_bounds.npy``, ``transforms*.json``, ``cameras*.npz``).
        format: 'auto' (detect), 'blender', 'llff', 'transforms' or 'dtu'.
        **kwargs: passed to :func:`load_blender`, :func:`load_llff`, :func:`load_transforms` or
            :func:`load_dtu`. Options of another format's loader (e.g. ``spherify`` for a Blender scene) are
            dropped, so one config serves every format; a name no loader knows raises TypeError.
    Returns:
        SceneData.
    """
    from neural3d.data.blender import load_blender
    from neural3d.data.dtu import load_dtu
    from neural3d.data.llff import load_llff
    from neural3d.data.transforms_json import load_transforms

    loaders = {"blender": load_blender, "llff": load_llff, "transforms": load_transforms, "dtu": load_dtu}
    if format == "auto":
        format, path = detect_format(path)
    elif format not in loaders:
        raise DatasetError(f"unknown dataset format '{format}' (use 'auto' or one of {list(FORMATS)})")
    path = Path(path)
    if format in ("blender", "llff", "dtu") and path.is_file():
        path = path.parent
    params = {name: set(inspect.signature(fn).parameters) - {"root", "path"} for name, fn in loaders.items()}
    unknown = set(kwargs) - set().union(*params.values())
    if unknown:
        raise TypeError(f"load_scene: unknown option(s) {sorted(unknown)}; {format} accepts {sorted(params[format])}")
    return loaders[format](path, **{k: v for k, v in kwargs.items() if k in params[format]})
