"""Issue 23 item 8: GNT runs use the official GNT depth range, not the NeRF loader's.

Official GNT (VITA-Group/GNT ``gnt/data_loaders/llff_test.py``): LLFF bounds scaled as NeRF's ``load_llff_data``
(bd_factor 0.75), then ``depth_range = torch.tensor([min(bds) * 0.9, max(bds) * 1.6])`` over all images of the
scene; ``nerf_synthetic.py``: near 2, far 6. NeRF/ngp runs keep the loader's bounds (``0.9 * min``, ``max``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHARED, SHARED_DATA

import neural3d
from neural3d.cli.main import main
from neural3d.config import DataConfig
from neural3d.methods.base import SceneInfo
from neural3d.methods.gnt.bounds import official_depth_range
from neural3d.methods.gnt.model import GNTModel, GNTModelConfig
from neural3d.training.setup import load_scene_from_config, scene_info

TINY = {"depth": 1, "n_samples": 4, "n_source_views": 2, "pool_factor": 1, "dropout": 0.0, "width": 16}
FERN = SHARED_DATA / "nerf_llff_data" / "fern"
FERN_REF = SHARED / "reference" / "nerf_original_loader" / "fern8_fwd.npz"


def official_llff_range(bds_scaled: np.ndarray) -> tuple[float, float]:
    """The official formula on the bounds as ``load_llff_data`` returns them (float32, scaled)."""
    bds = np.asarray(bds_scaled, dtype=np.float32)
    near_depth, far_depth = np.min(bds), np.max(bds)
    r = torch.tensor([near_depth * 0.9, far_depth * 1.6])
    return float(r[0]), float(r[1])


def official_bds_from_file(root) -> np.ndarray:
    """``load_llff_data``'s bound scaling, step by step (poses_bounds.npy -> float32 -> * 1 / (min * 0.75))."""
    arr = np.load(root / "poses_bounds.npy")
    bds = np.moveaxis(arr[:, -2:].transpose([1, 0]), -1, 0).astype(np.float32)
    sc = 1.0 / (bds.min() * 0.75)
    return bds * sc


def _gnt(scene) -> GNTModel:
    model = GNTModel(GNTModelConfig(**TINY), scene=scene_info(scene))
    model.attach_scene(scene)
    return model


def test_gnt_uses_the_official_llff_range_on_a_generated_scene(tiny_llff_scene):
    cfg = DataConfig(path=str(tiny_llff_scene), factor=2, ndc=False)
    nerf = load_scene_from_config(cfg)  # what nerf / ngp runs get: 0.9 * min, max
    bds = official_bds_from_file(tiny_llff_scene)
    assert nerf.near == pytest.approx(float(bds.min() * np.float32(0.9)), rel=1e-6)
    assert nerf.far == pytest.approx(float(bds.max()), rel=1e-6)
    scene = load_scene_from_config(cfg)
    model = _gnt(scene)
    want = official_llff_range(bds)
    assert (scene.near, scene.far) == pytest.approx(want, rel=1e-6)
    assert (model.scene.near, model.scene.far) == pytest.approx(want, rel=1e-6)  # the model's SceneInfo follows
    assert scene.far == pytest.approx(1.6 * nerf.far, rel=1e-6) and scene.near == nerf.near


@pytest.mark.skipif(not (FERN.is_dir() and FERN_REF.is_file()), reason="needs ../shared/data fern and the reference")
def test_gnt_fern_range_equals_the_official_formula_on_the_original_loader_bounds():
    ref = np.load(FERN_REF)
    want = official_llff_range(ref["bds"])  # the original load_llff_data's bds (GNT uses the same function)
    scene = load_scene_from_config(DataConfig(path=str(FERN), factor=8, ndc=False))
    before = (scene.near, scene.far)
    _gnt(scene)
    assert (scene.near, scene.far) == pytest.approx(want, rel=1e-6)
    assert before == pytest.approx((1.2, 6.280107), rel=1e-6)  # NeRF convention, unchanged for nerf / ngp
    assert (scene.near, scene.far) == pytest.approx((1.2, 10.048170), rel=1e-6)


def test_gnt_on_blender_uses_the_paper_range(tiny_blender_scene):
    scene = load_scene_from_config(DataConfig(path=str(tiny_blender_scene)))
    _gnt(scene)
    assert (scene.near, scene.far) == (2.0, 6.0) == official_depth_range(scene)


def test_data_near_far_overrides_win(tiny_llff_scene):
    bds = official_bds_from_file(tiny_llff_scene)
    scene = load_scene_from_config(DataConfig(path=str(tiny_llff_scene), factor=2, ndc=False, far=7.5))
    _gnt(scene)
    assert scene.far == 7.5 and scene.near == pytest.approx(official_llff_range(bds)[0], rel=1e-6)
    scene = load_scene_from_config(DataConfig(path=str(tiny_llff_scene), factor=2, ndc=False, near=0.5))
    _gnt(scene)
    assert scene.near == 0.5 and scene.far == pytest.approx(official_llff_range(bds)[1], rel=1e-6)


def test_other_methods_keep_the_loader_bounds(tiny_llff_scene):
    from neural3d.methods.registry import get_method

    scene = load_scene_from_config(DataConfig(path=str(tiny_llff_scene), factor=2, ndc=False))
    before = (scene.near, scene.far)
    for name in ("nerf", "ngp"):
        cls = get_method(name).model_class
        model = cls(get_method(name).config_class(), scene=SceneInfo(scene.scene_box, scene.near, scene.far))
        model.attach_scene(scene)
        model.prepare_scene(scene)
        assert (scene.near, scene.far) == before


def test_trained_gnt_llff_run_renders_and_evaluates_with_the_official_range(tmp_path, tiny_llff_scene):
    cfg = tmp_path / "c.yaml"
    model = ", ".join(f"{k}: {v}" for k, v in TINY.items())
    cfg.write_text(
        f"method: gnt\ndata: {{path: {tiny_llff_scene}, factor: 1, ndc: false}}\nmodel: {{{model}}}\n"
        f"output_dir: {tmp_path / 'runs'}\nexperiment: r\n"
        "trainer: {steps: 2, batch_size: 16, checkpoint_every: 2, progress: false, eval_images: 0}\n"
    )
    assert main(["train", str(cfg)]) == 0
    want = official_llff_range(official_bds_from_file(tiny_llff_scene))
    run = tmp_path / "runs" / "r"
    state = torch.load(max((run / "checkpoints").glob("step_*.pt")), weights_only=False)
    assert (state["scene"]["near"], state["scene"]["far"]) == pytest.approx(want, rel=1e-6)
    loaded = neural3d.load(run)
    assert (loaded.info.near, loaded.info.far) == pytest.approx(want, rel=1e-6)
    ds = loaded.dataset()  # what `neural3d eval` / `render` use
    assert (ds.near, ds.far) == pytest.approx(want, rel=1e-6)


def test_imported_official_checkpoint_records_the_official_range(tmp_path, tiny_llff_scene):
    import json

    from gnt_reference import random_official_checkpoint

    torch.save(random_official_checkpoint(4, seed=1), tmp_path / "model.pth")
    run = tmp_path / "imported"
    args = ["gnt", "import", str(tmp_path / "model.pth"), "--data", str(tiny_llff_scene), "--out", str(run)]
    assert main([*args, "data.factor=1"]) == 0
    want = official_llff_range(official_bds_from_file(tiny_llff_scene))
    scene = json.loads((run / "run.json").read_text())["scene"]
    assert (scene["near"], scene["far"]) == pytest.approx(want, rel=1e-6)
    loaded = neural3d.load(run)
    assert (loaded.info.near, loaded.info.far) == pytest.approx(want, rel=1e-6)
