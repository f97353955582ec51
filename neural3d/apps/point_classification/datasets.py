"""In-memory point-cloud datasets: ModelNet40 ``modelnet40_normal_resampled``, ShapeNetPart, synthetic shapes.

Every loader returns a :class:`PointCloudSet` of equally sized clouds (normalised to the unit sphere),
so batches are plain index selections.

Layouts:

* ModelNet40 (``modelnet40_normal_resampled``): ``modelnet40_shape_names.txt`` (one class per line),
  ``modelnet40_{train,test}.txt`` (shape ids such as ``chair_0391``), ``<class>/<shape id>.txt`` with rows
  ``x,y,z,nx,ny,nz``. The first ``n_points`` rows are used (the files are already uniformly resampled).
* ShapeNetPart (``shapenetcore_partanno_segmentation_benchmark_v0_normal``): ``synsetoffset2category.txt``
  (``Category<TAB>synset``), ``train_test_split/shuffled_{train,val,test}_file_list.json`` (entries
  ``shape_data/<synset>/<id>``), ``<synset>/<id>.txt`` with rows ``x y z nx ny nz part``; clouds are
  resampled to ``n_points`` (seeded choice, with replacement only when a shape has fewer points).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neural3d.pointcloud.io import read_text_points
from neural3d.pointcloud.synthetic import SHAPE_CLASSES, make_shapes, normalize_unit_sphere


@dataclass
class PointCloudSet:
    """Equally sized point clouds in memory.

    Attributes:
        points: [n_shapes, n_points, C] float32 (xyz first, then e.g. normals).
        labels: [n_shapes] int64 class (or object category) ids.
        class_names: names of the label ids.
        parts: optional [n_shapes, n_points] int64 per-point part labels.
        n_parts: number of part labels (0 without parts).
        files: source file per shape (empty for synthetic sets).
    """

    points: Tensor
    labels: Tensor
    class_names: list[str]
    parts: Tensor | None = None
    n_parts: int = 0
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.points.shape[0]

    def subset(self, index: Tensor) -> PointCloudSet:
        return PointCloudSet(
            self.points[index],
            self.labels[index],
            self.class_names,
            None if self.parts is None else self.parts[index],
            self.n_parts,
            [self.files[i] for i in index.tolist()] if self.files else [],
        )


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _normalise(arr: np.ndarray) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    xyz = normalize_unit_sphere(t[:, :3])
    return torch.cat([xyz, t[:, 3:]], -1)


def load_modelnet40(
    root, split: str = "train", *, n_points: int = 1024, use_normals: bool = True, max_shapes: int | None = None
) -> PointCloudSet:
    """ModelNet40 ``normal_resampled`` split -> PointCloudSet with points [n_shapes, n_points, 6 | 3]."""
    root = Path(root)
    names = _read_lines(root / "modelnet40_shape_names.txt")
    ids = _read_lines(root / f"modelnet40_{split}.txt")[:max_shapes]
    if not ids:
        raise ValueError(f"{root / f'modelnet40_{split}.txt'}: empty split list")
    clouds, labels, files = [], [], []
    for sid in ids:
        cls = sid.rsplit("_", 1)[0]
        if cls not in names:
            raise ValueError(
                f"{root / f'modelnet40_{split}.txt'}: shape {sid!r} has class {cls!r} not in modelnet40_shape_names.txt"
            )
        path = root / cls / f"{sid}.txt"
        arr = read_text_points(path)
        if arr.shape[1] < 6 or arr.shape[0] < n_points:
            raise ValueError(f"{path}: expected >= {n_points} rows of x,y,z,nx,ny,nz, got {arr.shape}")
        clouds.append(_normalise(arr[:n_points, : 6 if use_normals else 3]))
        labels.append(names.index(cls))
        files.append(str(path))
    return PointCloudSet(torch.stack(clouds), torch.tensor(labels), names, files=files)


def load_shapenetpart(
    root,
    split: str = "train",
    *,
    n_points: int = 2048,
    use_normals: bool = False,
    max_shapes: int | None = None,
    seed: int = 0,
) -> PointCloudSet:
    """ShapeNetPart split -> PointCloudSet with object categories as labels and global part ids."""
    root = Path(root)
    cats = [ln.split() for ln in _read_lines(root / "synsetoffset2category.txt")]
    if any(len(c) != 2 for c in cats):
        raise ValueError(f"{root / 'synsetoffset2category.txt'}: expected 'Category<TAB>synset' lines")
    synset_to_cat = {s: i for i, (_, s) in enumerate(cats)}
    split_file = root / "train_test_split" / f"shuffled_{split}_file_list.json"
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: file not found")
    try:
        entries = json.loads(split_file.read_text())[:max_shapes]
    except json.JSONDecodeError as e:
        raise ValueError(f"{split_file}: invalid JSON: {e}") from None
    rng = np.random.default_rng(seed)
    clouds, labels, parts, files = [], [], [], []
    for entry in entries:
        synset, sid = entry.split("/")[-2:]
        if synset not in synset_to_cat:
            raise ValueError(f"{split_file}: entry {entry!r} has synset {synset} not in synsetoffset2category.txt")
        path = root / synset / f"{sid}.txt"
        arr = read_text_points(path)
        if arr.shape[1] < 7:
            raise ValueError(f"{path}: expected rows of x y z nx ny nz part, got {arr.shape[1]} columns")
        pick = rng.choice(len(arr), n_points, replace=len(arr) < n_points)
        arr = arr[pick]
        clouds.append(_normalise(arr[:, : 6 if use_normals else 3]))
        parts.append(torch.from_numpy(arr[:, -1].astype(np.int64)))
        labels.append(synset_to_cat[synset])
        files.append(str(path))
    part_t = torch.stack(parts)
    return PointCloudSet(
        torch.stack(clouds), torch.tensor(labels), [c for c, _ in cats], part_t, int(part_t.max()) + 1, files
    )


def synthetic_set(
    n_per_class: int, *, n_points: int = 512, n_classes: int = 5, noise: float = 0.02, seed: int = 0
) -> PointCloudSet:
    """:func:`~neural3d.pointcloud.synthetic.make_shapes` as a PointCloudSet (with part labels)."""
    pts, labels, parts = make_shapes(n_per_class, n_points, n_classes=n_classes, noise=noise, seed=seed)
    return PointCloudSet(pts, labels, list(SHAPE_CLASSES[:n_classes]), parts, int(parts.max()) + 1)
