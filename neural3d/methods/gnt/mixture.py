"""Cross-scene training data: a weighted mixture of scene folders and generated scene families.

``model.train_scenes`` (folders, any supported layout) with ``model.train_weights``, and/or
``model.family`` (a synthetic family written with :func:`~neural3d.data.synthetic.write_scene_family`
when its folder is missing; its weight is split evenly over its scenes). With neither, GNT trains on
the run's own scene (single-scene training or fine-tuning).

The mixture's scenes are returned as loaders, so that a data-parallel process loads only the scenes it trains
on (:func:`partition_scenes`, :meth:`~neural3d.methods.gnt.batches.SourceViewBatches.shard`); a missing family
is written by rank 0 only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from neural3d.data.scene import SceneData
from neural3d.methods.gnt.bounds import apply_official_depth_range
from neural3d.training import distributed as dist


def family_scene_paths(family) -> list[Path]:
    """Scene folders ``root/scene_{i:03d}`` of a family config (``root``, ``n_scenes``)."""
    return [Path(family.root) / f"scene_{i:03d}" for i in range(int(family.n_scenes))]


def ensure_family(family) -> list[Path]:
    """Write the family when any of its scenes is missing; returns its scene folders."""
    paths = family_scene_paths(family)
    if not family.root:
        raise ValueError("model.family.root must name a folder when model.family.n_scenes > 0")
    if all(p.is_dir() for p in paths):
        return paths
    from neural3d.data.synthetic import write_scene_family

    if family.layout == "blender":
        kw = {"n_train": int(family.n_train), "n_val": 2, "n_test": 2}
    elif family.layout == "llff":
        kw = {"n_images": int(family.n_train)}
    else:
        raise ValueError(f"model.family.layout must be 'blender' or 'llff', got '{family.layout}'")
    return write_scene_family(
        family.root,
        n_scenes=int(family.n_scenes),
        seed=int(family.seed),
        layout=family.layout,
        res=int(family.res),
        **kw,
    )


def partition_scenes(weights: Sequence[float], world_size: int) -> list[list[int]]:
    """Split the scenes of weight > 0 into ``world_size`` parts of near-equal total weight (each non-empty).

    Greedy: heaviest scene first, each to the lightest part so far (ties: lower rank, then lower index); a
    deterministic function of the weights, so every rank computes the same parts. Scenes of weight 0 are
    never drawn and belong to no part.

    Returns:
        ``parts[rank]``: sorted scene indices.
    """
    order = sorted((i for i, w in enumerate(weights) if w > 0), key=lambda i: (-weights[i], i))
    if len(order) < world_size:
        raise ValueError(f"{len(order)} scenes of weight > 0 cannot be split across {world_size} processes")
    parts: list[list[int]] = [[] for _ in range(world_size)]
    totals = [0.0] * world_size
    for n, i in enumerate(order):
        r = n if n < world_size else min(range(world_size), key=lambda r: (totals[r], r))
        parts[r].append(i)
        totals[r] += weights[i]
    return [sorted(p) for p in parts]


def load_training_scenes(config, scene: SceneData) -> tuple[list[SceneData | Callable[[], SceneData]], list[float]]:
    """The training scenes and weights of a GNT config; ``scene`` (the run's) sets background / pixel centre.

    Returns:
        (scenes, weights): a loader (zero-argument callable) per mixture scene, loaded when first drawn;
        ``[scene], [1.0]`` when the config names no training scenes.
    """
    paths: list[Path] = [Path(p) for p in config.train_scenes]
    weights = [float(w) for w in config.train_weights] if len(config.train_weights) else [1.0] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"model.train_weights has {len(weights)} entries for {len(paths)} model.train_scenes")
    if int(config.family.n_scenes) > 0:
        with dist.main_first():  # torchrun: rank 0 writes a missing family, the others read it
            fam = ensure_family(config.family)
        paths += fam
        weights += [float(config.family.weight) / len(fam)] * len(fam)
    if not paths:
        return [scene], [1.0]
    bg = tuple(float(v) for v in scene.background.tolist())
    return [_scene_loader(p, int(config.train_factor), bg, scene.pixel_center) for p in paths], weights


def _scene_loader(path: Path, factor: int, background: tuple, pixel_center: float) -> Callable[[], SceneData]:
    def load() -> SceneData:
        from neural3d.data import load_scene

        s = load_scene(path, factor=factor, background=background, ndc=False)
        s.pixel_center = pixel_center
        apply_official_depth_range(s)  # GNT's own bounds, as the run's scene (GNTModel.prepare_scene)
        return s

    return load
