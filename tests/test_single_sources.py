"""Helpers that used to exist twice now exist once: image bytes, split indices, LLFF pose normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neural3d.evaluation.evaluate as evaluate
from neural3d.data import load_scene
from neural3d.data.llff import llff_sparse_points, llff_world_transform
from neural3d.data.scene import DatasetError
from neural3d.data.synthetic import write_llff_scene
from neural3d.media.video import to_uint8


def test_evaluation_uses_the_media_helpers():
    assert not hasattr(evaluate, "to_uint8") and not hasattr(evaluate, "split_indices")
    img = torch.tensor([[[0.0, 0.5, 1.2], [-0.1, 0.25, 0.998]]])
    expected = (img.clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)  # the removed copy's arithmetic
    np.testing.assert_array_equal(to_uint8(img), expected)


@pytest.fixture(scope="module")
def llff(tmp_path_factory):
    return write_llff_scene(tmp_path_factory.mktemp("llff") / "scene", seed=3, res=16, n_images=6, supersample=1)


@pytest.mark.parametrize("spherify", [False, True])
def test_llff_world_transform_is_the_loaders(llff, spherify):
    scene = load_scene(llff, factor=1, spherify=spherify)
    np.testing.assert_array_equal(llff_world_transform(llff, spherify=spherify), scene.metadata["world_transform"])


def test_llff_sparse_points_absent_and_split_indices(llff):
    assert llff_sparse_points(llff, np.eye(4)) == (None, None)
    scene = load_scene(llff, factor=1, llffhold=0)  # no hold-out: empty test split
    assert scene.split_indices("test").numel() == 0
    with pytest.raises(DatasetError, match="no 'test' split with images .*available: \\['train'\\]"):
        scene.split_indices("test", nonempty=True)
    with pytest.raises(DatasetError, match="no 'depth' split"):
        scene.split_indices("depth")
