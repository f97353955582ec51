"""Datasets and the point-cloud ViT of a :class:`~neural3d.apps.point_classification.config.PCTrainConfig`."""

from __future__ import annotations

from typing import Any

from neural3d.apps.point_classification.datasets import PointCloudSet, load_modelnet40, load_shapenetpart, synthetic_set
from neural3d.apps.point_classification.metrics import part_mask_from
from neural3d.config import instantiate
from neural3d.pointcloud.encoder import PointViT


def build_datasets(cfg) -> tuple[PointCloudSet, PointCloudSet]:
    """(train, test) sets described by ``cfg.data``."""
    d = cfg.data
    limit = d.max_shapes or None
    if d.kind == "synthetic":
        kw = {"n_points": d.n_points, "n_classes": d.synth_classes, "noise": d.synth_noise}
        return (
            synthetic_set(d.synth_train_per_class, seed=cfg.seed, **kw),
            synthetic_set(d.synth_test_per_class, seed=cfg.seed + 10_000, **kw),
        )
    if d.kind == "modelnet40":
        kw = {"n_points": d.n_points, "use_normals": d.use_normals, "max_shapes": limit}
        return load_modelnet40(d.path, d.train_split, **kw), load_modelnet40(d.path, d.test_split, **kw)
    kw = {"n_points": d.n_points, "use_normals": d.use_normals, "max_shapes": limit, "seed": cfg.seed}
    return load_shapenetpart(d.path, d.train_split, **kw), load_shapenetpart(d.path, d.test_split, **kw)


def model_meta(cfg, train: PointCloudSet) -> dict[str, Any]:
    """Data-dependent model sizes, stored in checkpoints so a run rebuilds without its data."""
    seg = cfg.task == "seg"
    meta = {
        "in_dim": int(train.points.shape[-1]),
        "class_names": list(train.class_names),
        "n_classes": train.n_parts if seg else len(train.class_names),
        "n_categories": len(train.class_names) if seg else 0,
    }
    if seg:
        meta["part_mask"] = part_mask_from(train).tolist()
    return meta


def build_pc_model(cfg, meta: dict[str, Any]) -> PointViT:
    return instantiate(
        PointViT,
        cfg.model,
        in_dim=meta["in_dim"],
        task=cfg.task,
        n_classes=meta["n_classes"],
        n_categories=meta["n_categories"],
    )
