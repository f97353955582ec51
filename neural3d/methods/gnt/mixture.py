"""Cross-scene training data: a weighted mixture of scene folders and generated scene families.

``model.train_scenes`` (folders, any supported layout) with ``model.train_weights``, and/or
``model.family`` (a synthetic family written with :func:`~neural3d.data.synthetic.write_scene_family`
when its folder is missing; its weight is split evenly over its scenes). With neither, GNT trains on
the run's own scene (single-scene training or fine-tuning).
"""

from __future__ import annotations

from pathlib import Path

from neural3d.data.scene import SceneData
from neural3d.methods.gnt.bounds import apply_official_depth_range


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


def load_training_scenes(config, scene: SceneData) -> tuple[list[SceneData], list[float]]:
    """The training scenes and weights of a GNT config; ``scene`` (the run's) sets background / pixel centre.

    Returns:
        (scenes, weights), ``[scene], [1.0]`` when the config names no training scenes.
    """
    from neural3d.data import load_scene

    paths: list[Path] = [Path(p) for p in config.train_scenes]
    weights = [float(w) for w in config.train_weights] if len(config.train_weights) else [1.0] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"model.train_weights has {len(weights)} entries for {len(paths)} model.train_scenes")
    if int(config.family.n_scenes) > 0:
        fam = ensure_family(config.family)
        paths += fam
        weights += [float(config.family.weight) / len(fam)] * len(fam)
    if not paths:
        return [scene], [1.0]
    bg = tuple(float(v) for v in scene.background.tolist())
    scenes = []
    for p in paths:
        s = load_scene(p, factor=int(config.train_factor), background=bg, ndc=False)
        s.pixel_center = scene.pixel_center
        apply_official_depth_range(s)  # GNT's own bounds, as the run's scene (GNTModel.prepare_scene)
        scenes.append(s)
    return scenes, weights
