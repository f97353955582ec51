"""Sparse-view training: ``data.n_train_views`` / ``data.train_views`` cut the train split, nothing else."""

from __future__ import annotations

import pytest
import torch

from neural3d.data import load_scene
from neural3d.data.scene import DatasetError


def test_count_keeps_evenly_spaced_views_and_other_splits(tiny_blender_scene):
    scene = load_scene(tiny_blender_scene)
    train = scene.split_indices("train")
    assert len(train) == 8
    sparse = scene.with_train_views(count=3)
    # positions round(linspace(0, 7, 3)) = 0, 3.5 -> 4 (round half to even), 7
    assert sparse.split_indices("train").tolist() == train[[0, 4, 7]].tolist()
    for name in ("val", "test"):
        assert torch.equal(sparse.split_indices(name), scene.split_indices(name))
    assert sparse.images is scene.images  # no copy of the images
    assert scene.with_train_views(count=8).split_indices("train").tolist() == train.tolist()
    assert scene.with_train_views() is scene


def test_explicit_positions(tiny_blender_scene):
    scene = load_scene(tiny_blender_scene)
    train = scene.split_indices("train")
    assert scene.with_train_views(views=[5, 1]).split_indices("train").tolist() == train[[5, 1]].tolist()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"count": 9}, "n_train_views=9: the train split .* has 8 views"),
        ({"count": -1}, "n_train_views=-1"),
        ({"views": [0, 8]}, r"train_views: positions \[8\] out of range"),
        ({"views": [2, 2]}, "train_views: repeated positions"),
        ({"count": 2, "views": [0]}, "exclusive"),
    ],
)
def test_bad_settings_name_the_key(tiny_blender_scene, kwargs, match):
    with pytest.raises(DatasetError, match=match):
        load_scene(tiny_blender_scene).with_train_views(**kwargs)


def test_config_cuts_the_training_rays(tiny_blender_scene):
    from neural3d.config import build_config
    from neural3d.training.setup import load_scene_from_config

    cfg, _ = build_config({"method": "ngp", "data": {"path": str(tiny_blender_scene), "n_train_views": 2}})
    scene = load_scene_from_config(cfg.data)
    assert len(scene.split_indices("train")) == 2
    cfg, _ = build_config({"method": "ngp", "data": {"path": str(tiny_blender_scene), "train_views": [3]}})
    assert load_scene_from_config(cfg.data).split_indices("train").tolist() == [
        load_scene(tiny_blender_scene).split_indices("train")[3].item()
    ]
