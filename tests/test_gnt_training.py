"""GNT training and rendering on CPU: one-target batches, few-step cross-scene training from the CLI,
rendering / evaluating an unseen generated scene with no optimisation, fine-tuning, chunked rendering,
and running an (imported) official-layout checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _progress_lines import assert_progress_lines
from gnt_reference import random_official_checkpoint

import neural3d
from neural3d.cli.main import main
from neural3d.config import ConfigError, build_config
from neural3d.data import load_scene

TINY_MODEL = {"depth": 2, "n_samples": 8, "n_source_views": 3, "pool_factor": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from neural3d.data.synthetic import write_blender_scene, write_scene_family

    root = tmp_path_factory.mktemp("gnt")
    fam = write_scene_family(
        root / "family", n_scenes=2, seed=4, layout="blender", res=24, n_train=6, n_val=1, n_test=1, supersample=1
    )
    unseen = write_blender_scene(root / "unseen", seed=777, res=24, n_train=6, n_val=1, n_test=2, supersample=1)
    other = write_blender_scene(root / "other", seed=778, res=24, n_train=5, n_val=1, n_test=1, supersample=1)
    return {"root": root, "family": fam, "unseen": unseen, "other": other}


def test_batches_come_from_one_target_image_without_it_as_source(scenes):
    from neural3d.methods.gnt.batches import SourceViewBatches

    data = [load_scene(p) for p in scenes["family"]]
    batches = SourceViewBatches(
        data, [1.0, 1.0], batch_size=50, n_views=3, pool_factor=2, method=lambda s: "vector", seed=3
    )
    seen_scenes = set()
    for _ in range(16):
        b = next(batches)
        target = int(b.rays.camera_indices[0])
        assert bool((b.rays.camera_indices == target).all()) and b.rays.pixels.unique(dim=0).shape[0] == 50
        train = set(data[b.scene_index].split_indices("train").tolist())
        chosen = b.context.indices.tolist()
        assert target not in chosen and set(chosen) <= train and len(set(chosen)) == 3
        scene = data[b.scene_index]
        assert torch.equal(b.rgb, scene.images[target, b.rays.pixels[:, 1], b.rays.pixels[:, 0]])
        seen_scenes.add(b.scene_index)
    assert seen_scenes == {0, 1}
    state = batches.state_dict()
    nxt = next(batches)
    batches.load_state_dict(state)
    again = next(batches)
    assert torch.equal(nxt.rays.origins, again.rays.origins) and torch.equal(nxt.context.indices, again.context.indices)


def test_colour_maps_fix_greys_and_rotate_hue():
    from neural3d.methods.gnt.colour import hue_rotation, random_colour_map, saturation

    assert torch.allclose(
        hue_rotation(2 * math.pi / 3) @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6
    )  # 120 degrees about the grey axis: red -> green
    assert torch.allclose(saturation(0.0) @ torch.tensor([0.9, 0.3, 0.0]), torch.full((3,), 0.4), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    maps = [random_colour_map(g) for _ in range(64)]
    greys = torch.linspace(0, 1, 11)[:, None].expand(-1, 3)
    colours = torch.rand(100, 3, generator=g)
    for m in maps:
        assert torch.allclose(m(greys), greys, atol=1e-6)  # white backgrounds stay white
        out = m(colours)
        assert float(out.min()) >= 0 and float(out.max()) <= 1
    hues = {round(float(torch.atan2(*(m(torch.tensor([[1.0, 0.0, 0.0]]))[0, :2] - 0.5).flip(0))), 1) for m in maps}
    assert len(hues) > 20  # red goes to many hues


def test_colour_augmentation_maps_target_and_sources_through_one_map(scenes):
    from neural3d.methods.gnt.batches import SourceViewBatches

    data = [load_scene(p) for p in scenes["family"]]
    kw = {"batch_size": 200, "n_views": 3, "pool_factor": 2, "method": lambda s: "vector", "seed": 5}
    plain, aug = SourceViewBatches(data, **kw), SourceViewBatches(data, **kw, colour_augment=True)
    for _ in range(4):
        plain.load_state_dict(aug.state_dict())
        a, b = next(plain), next(aug)  # the map is drawn last: same rays, targets and sources
        assert torch.equal(a.rays.origins, b.rays.origins) and torch.equal(a.context.indices, b.context.indices)
        x = torch.cat([a.rgb, a.context.images.reshape(-1, 3)]).double()
        y = torch.cat([b.rgb, b.context.images.reshape(-1, 3)]).double()
        inside = ((y > 1e-4) & (y < 1 - 1e-4)).all(-1)  # not clamped
        mat = torch.linalg.lstsq(x[inside], y[inside]).solution
        assert float((x[inside] @ mat - y[inside]).abs().max()) < 1e-5  # ONE linear map for target and sources
        assert torch.allclose(mat.sum(0), torch.ones(3, dtype=mat.dtype), atol=1e-4)  # greys fixed
        assert not torch.allclose(a.rgb, b.rgb, atol=1e-3)
        assert torch.equal(data[a.scene_index].images[a.context.indices], a.context.images)  # scene data untouched


def test_eval_sample_count_applies_in_eval_mode_only(scenes, monkeypatch):
    import neural3d.methods.gnt.sampling as gnt_module  # the PointSampler draws its depths here
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

    scene = load_scene(scenes["unseen"])
    model = GNTModel(
        GNTModelConfig(**{**TINY_MODEL, "n_samples": 5}, n_samples_eval=7),
        scene=SceneInfo(scene.scene_box, scene.near, scene.far),
    )
    model.attach_scene(scene)
    counts = []
    original = gnt_module.depth_samples
    monkeypatch.setattr(gnt_module, "depth_samples", lambda *a, **k: counts.append(a[2]) or original(*a, **k))
    rays = scene.image_rays(0).flatten()[:4]
    ctx = model.render_context(scene.cameras, 0)
    model.train()
    model(rays, ctx)
    with torch.no_grad():
        model.eval()
        model(rays, model.render_context(scene.cameras, 0))
    assert counts == [5, 7]


def _write_cfg(tmp_path, scenes, **model):
    import yaml

    fam_root = scenes["root"] / "family"
    cfg = {
        "method": "gnt",
        "experiment": "xscene",
        "output_dir": str(tmp_path / "runs"),
        "data": {"path": str(scenes["unseen"])},
        "model": {
            **TINY_MODEL,
            "family": {"root": str(fam_root), "n_scenes": 2, "layout": "blender", "res": 24},
            **model,
        },
        "trainer": {
            "steps": 12,
            "batch_size": 64,
            "log_every": 1,
            "checkpoint_every": 12,
            "eval_images": 1,
            "progress": False,
            "optim": {"lr": 2e-3, "lr_final": 1e-3},
        },
        "eval": {"chunk": 200},
    }
    path = tmp_path / "gnt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cross_scene_training_then_unseen_scene_from_cli(tmp_path, scenes, capsys):
    cfg = _write_cfg(tmp_path, scenes)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "runs" / "xscene"
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("train/loss")
    losses = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])  # it learns
    # an unseen scene, given only its images and poses: no optimisation
    out = tmp_path / "eval_other"
    assert f"neural3d gnt eval {run}" in capsys.readouterr().out  # the next command after training
    assert main(["gnt", "eval", str(run), str(scenes["other"]), "--split", "test", "--out", str(out)]) == 0
    assert_progress_lines(capsys.readouterr().err, "eval test", 1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["per_image"]) == 1 and math.isfinite(metrics["mean"]["psnr"])
    assert (out / "rgb").is_dir() and (out / "depth").is_dir()
    frames = tmp_path / "frames"
    assert (
        main(
            [
                "gnt",
                "render",
                str(run),
                str(scenes["other"]),
                "--path",
                "test",
                "--out",
                str(frames),
                "--outputs",
                "rgb,depth",
            ]
        )
        == 0
    )
    assert len(list(frames.iterdir())) == 1
    # the plain commands work on the run's own (held-out) scene
    assert main(["eval", str(run), "--split", "test", "--max-images", "1", "--out", str(tmp_path / "ev")]) == 0
    # Python API: any pose picks its source views automatically
    loaded = neural3d.load(run)
    c2w = torch.tensor([[0.0, 0.0, 1.0, 4.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.5]])
    K = torch.tensor([[30.0, 0, 10], [0, 30.0, 8], [0, 0, 1]])
    res = loaded.render(c2w=c2w, K=K, width=20, height=16, chunk=100)
    assert res["rgb"].shape == (1, 16, 20, 3) and res["depth"].shape == (1, 16, 20)
    assert torch.equal(res["opacity"], torch.ones(1, 16, 20)) and bool(torch.isfinite(res["rgb"]).all())
    assert float(res["rgb"].min()) >= 0 and float(res["rgb"].max()) <= 1
    d = res["depth"]
    assert float(d.min()) >= loaded.info.near - 1e-4 and float(d.max()) <= loaded.info.far + 1e-4
    other = neural3d.load(run, data={"path": str(scenes["other"])})
    assert other.model.attached_scene.root == scenes["other"]

    # fine-tuning: a single-scene run starting from that checkpoint
    ckpt = max((run / "checkpoints").iterdir())
    from neural3d.training.trainer import Trainer

    ft_cfg, _ = build_config(
        {
            "method": "gnt",
            "data": {"path": str(scenes["other"])},
            "output_dir": str(tmp_path / "runs"),
            "experiment": "ft",
            "model": {**TINY_MODEL, "init_checkpoint": str(ckpt)},
            "trainer": {"steps": 1, "batch_size": 32, "progress": False},
        }
    )
    trainer = Trainer(ft_cfg)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in trainer.model.state_dict().items())
    trainer.train()
    assert trainer.step == 1


def test_chunked_rendering_equals_one_pass_and_extracts_features_once(scenes):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

    torch.manual_seed(0)
    scene = load_scene(scenes["unseen"])
    model = GNTModel(
        GNTModelConfig(**TINY_MODEL, n_fine=4), scene=SceneInfo(scene.scene_box, scene.near, scene.far)
    ).eval()
    model.attach_scene(scene)
    calls = []
    model.feature_net.register_forward_hook(lambda *a: calls.append(1))
    test = int(scene.split_indices("test")[0])
    ctx = model.render_context(scene.cameras, test)
    assert ctx.n_views == 3 and test not in ctx.indices.tolist()
    rays = scene.image_rays(test)
    a = model.render_rays(rays, chunk=37, context=ctx)
    assert len(calls) == 1
    model.eval()  # as LoadedScene.render does for every frame
    b = model.render_rays(rays, chunk=100_000, context=model.render_context(scene.cameras, test))
    assert len(calls) == 1  # feature maps of the attached scene's views are cached across renders
    model.train()
    model.eval()
    model.render_rays(rays[:2], context=model.render_context(scene.cameras, test))
    assert len(calls) == 2  # training may have changed the weights: features recomputed
    model.clear_feature_cache()
    model.render_rays(rays[:2], context=model.render_context(scene.cameras, test))
    assert len(calls) == 3
    for k in ("rgb", "depth", "opacity"):
        assert a[k].shape[:2] == (24, 24) and torch.allclose(a[k], b[k], atol=1e-5)
    # a training view is never its own source
    train0 = int(scene.split_indices("train")[0])
    assert train0 not in model.render_context(scene.cameras, train0).indices.tolist()


def test_eval_mode_renders_with_n_source_views_eval(scenes):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

    scene = load_scene(scenes["unseen"])
    info = SceneInfo(scene.scene_box, scene.near, scene.far)
    with pytest.raises(ValueError, match="n_source_views_eval"):
        GNTModel(GNTModelConfig(**TINY_MODEL, n_source_views_eval=-1), scene=info)
    model = GNTModel(GNTModelConfig(**TINY_MODEL, n_source_views_eval=5), scene=info)
    model.attach_scene(scene)
    test = int(scene.split_indices("test")[0])
    assert model.render_context(scene.cameras, test).n_views == 3  # training mode: n_source_views
    model.eval()
    ctx = model.render_context(scene.cameras, test)
    assert ctx.n_views == 5 and len(set(ctx.indices.tolist())) == 5

    def eval_model(n_source_views_eval: int) -> GNTModel:  # a new model (configs are not changed in place)
        other = GNTModel(GNTModelConfig(**TINY_MODEL, n_source_views_eval=n_source_views_eval), scene=info)
        other.attach_scene(scene)
        return other.eval()

    # the 5 are the 3 nearest plus the next two: selection by rank, whatever the count
    assert ctx.indices[:3].tolist() == eval_model(0).render_context(scene.cameras, test).indices.tolist()
    everything = eval_model(50).render_context(scene.cameras, test)  # more than the scene has: all 6 training views
    assert sorted(everything.indices.tolist()) == scene.split_indices("train").tolist()


def test_imported_official_checkpoint_renders_from_the_cli(tmp_path, scenes):
    torch.save(random_official_checkpoint(4, seed=1), tmp_path / "model_250000.pth")
    run = tmp_path / "imported"
    assert (
        main(
            [
                "gnt",
                "import",
                str(tmp_path / "model_250000.pth"),
                "model.n_samples=8",
                "model.n_source_views=3",
                "--data",
                str(scenes["unseen"]),
                "--out",
                str(run),
            ]
        )
        == 0
    )
    loaded = neural3d.load(run)
    assert loaded.pixel_center == 0.0 and sum(p.numel() for p in loaded.model.parameters()) == 9_321_795
    assert main(["eval", str(run), "--split", "test", "--max-images", "1", "--out", str(tmp_path / "ev")]) == 0
    assert (
        main(
            [
                "gnt",
                "eval",
                str(run),
                str(scenes["other"]),
                "model.n_samples=6",
                "--max-images",
                "1",
                "--out",
                str(tmp_path / "ev2"),
            ]
        )
        == 0
    )
    assert main(["gnt", "eval", str(run), str(scenes["other"]), "model.depth=3"]) == 2  # not a render-time key
    # render-time model keys build the loaded model with them (no config is changed after loading)
    from neural3d.api import load_for_scene

    other = load_for_scene(run, scenes["other"], ["model.n_samples=6", "model.selection=dist"])
    assert (other.model.config.n_samples, other.config.model.n_samples, other.model.config.selection) == (6, 6, "dist")
    assert neural3d.load(run).model.config.n_samples == 8
    with pytest.raises(ConfigError, match="'model.selection'"):
        load_for_scene(run, scenes["other"], ["model.selection=random"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_render_equals_cpu_render(scenes):
    """The whole pipeline (features, projection, both transformers, fine samples) on CUDA vs the CPU."""
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

    torch.manual_seed(0)
    scene = load_scene(scenes["unseen"])
    model = GNTModel(
        GNTModelConfig(**TINY_MODEL, n_fine=4), scene=SceneInfo(scene.scene_box, scene.near, scene.far)
    ).eval()
    model.attach_scene(scene)
    test = int(scene.split_indices("test")[0])
    rays = scene.image_rays(test)
    cpu = model.render_rays(rays, chunk=256, context=model.render_context(scene.cameras, test))
    model.cuda().clear_feature_cache()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # full fp32 on both
    try:
        gpu = model.render_rays(rays.to("cuda"), chunk=256, context=model.render_context(scene.cameras, test))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    for k in ("rgb", "depth"):
        assert gpu[k].is_cuda and torch.allclose(gpu[k].cpu(), cpu[k], atol=1e-4), k
