"""LVSM through the shared pipeline on CPU: whole-image batches with a random number of source views, a few-step
cross-scene run from the CLI (images of 20², padded to the patch size), exact resume, rendering an unseen scene
from Python at any pose, and the encoder-decoder's latent reuse through the model."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import torch
from _progress_lines import assert_progress_lines

from neural3d.api import load_for_scene
from neural3d.cli.main import main
from neural3d.data import load_scene

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lvsm_generalizable.yaml"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from neural3d.data.synthetic import write_blender_scene, write_scene_family

    root = tmp_path_factory.mktemp("lvsm")
    fam = write_scene_family(
        root / "family", n_scenes=2, seed=4, layout="blender", res=20, n_train=6, n_val=1, n_test=1, supersample=1
    )
    unseen = write_blender_scene(root / "unseen", seed=777, res=20, n_train=6, n_val=1, n_test=2, supersample=1)
    other = write_blender_scene(root / "other", seed=778, res=20, n_train=5, n_val=1, n_test=1, supersample=1)
    return {"root": root, "family": fam, "unseen": unseen, "other": other}


def _argv(tmp: Path, scenes, *extra: str) -> list[str]:
    return [
        "train", str(CONFIG), f"output_dir={tmp}", "experiment=r", "device=cpu",
        f"data.path={scenes['unseen']}", f"model.family.root={scenes['root'] / 'family'}",
        "model.family.n_scenes=2", "model.family.res=20", "model.family.n_train=6", "model.width=64",
        "trainer.steps=6", "trainer.checkpoint_every=3", "trainer.eval_every=3", "trainer.log_every=1",
        "trainer.progress=false", "trainer.optim.warmup_steps=2", *extra,
    ]  # fmt: skip


def _losses(run: Path) -> list[tuple[str, str]]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [(r["step"], r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_batches_are_whole_images_with_a_random_number_of_sources(scenes):
    from neural3d.methods.lvsm.batches import ImageBatches, LVSMContext

    data = [load_scene(p) for p in scenes["family"]]
    batches = ImageBatches(
        data,
        [1.0, 1.0],
        n_views_min=1,
        n_views_max=3,
        pool_factor=1,
        method=lambda s: "vector",
        frame=lambda k, c2w: None,
    )
    counts = set()
    for _ in range(30):
        b = next(batches)
        assert isinstance(b.context, LVSMContext) and tuple(b.rays.shape) == (20, 20) and b.rgb.shape == (400, 3)
        target = int(b.rays.camera_indices[0, 0])
        assert target not in b.context.views.indices.tolist()
        assert torch.equal(b.rgb, data[b.scene_index].images[target].reshape(-1, 3))
        counts.add(b.context.views.n_views)
    assert counts == {1, 2, 3}


@pytest.mark.slow
def test_cross_scene_cli_run_resumes_exactly_and_renders_an_unseen_scene(tmp_path, scenes):
    argv = _argv(tmp_path, scenes)
    run = tmp_path / "r"
    assert main(argv) == 0
    ckpt = run / "checkpoints" / "step_0000006.pt"
    straight, losses = torch.load(ckpt, weights_only=True)["model"], _losses(run)
    assert len(losses) == 6
    ckpt.unlink()
    assert main([*argv, "--resume"]) == 0
    resumed = torch.load(ckpt, weights_only=True)["model"]
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert _losses(run) == losses

    # an unseen scene from Python: any pose, source views chosen by the model (nearest training views)
    loaded = load_for_scene(run, scenes["other"], ["model.n_source_views_eval=3"])
    scene = loaded.dataset()
    out = loaded.render(scene.cameras[scene.split_indices("test")])
    assert out["rgb"].shape == (1, 20, 20, 3) and torch.isfinite(out["rgb"]).all()
    cams = scene.cameras[:1]
    c2w = cams.camera_to_worlds[0].clone()
    c2w[:, 3] *= 1.1  # a pose that is not one of the scene's
    K = cams.K[0]
    free = loaded.render(c2w=c2w, K=K, width=28, height=12)  # another size: padded to 32 x 16, cropped back
    assert free["rgb"].shape == (1, 12, 28, 3)
    assert ((free["rgb"] >= 0) & (free["rgb"] <= 1)).all()

    # neural3d.load(run, data=...): the same unseen scene through the run's own data section
    import neural3d

    other = neural3d.load(run, data={"path": str(scenes["other"])}, model={"n_source_views_eval": 3}, device="cpu")
    assert other.model.attached_scene.root == scene.root
    again = other.render(scene.cameras[scene.split_indices("test")])
    assert torch.allclose(again["rgb"], out["rgb"], atol=1e-6)


def test_encoder_decoder_model_renders_from_reused_latents(scenes):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.batches import LVSMContext
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig

    torch.manual_seed(0)
    cfg = LVSMModelConfig(variant="encoder_decoder", width=64, n_latents=8, n_source_views_eval=3)
    model = LVSMModel(cfg, scene=SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 2.0, 6.0)).eval()
    scene = load_scene(scenes["unseen"])
    model.attach_scene(scene)
    test = scene.split_indices("test")
    ctx = model.render_context(scene.cameras, int(test[0]))
    encoded = model.encode_context(ctx)
    assert encoded.latents.shape == (1, 8, 64)
    from neural3d.methods.lvsm.batches import scene_image_rays

    fresh = LVSMContext(ctx.views, ctx.frame)  # no latents: encoded inside forward
    for i in test.tolist():
        rays = scene_image_rays(scene, i)
        a = model.render_rays(rays, context=encoded)["rgb"]
        b = model.render_rays(rays, context=fresh)["rgb"]
        assert a.shape == (20, 20, 3) and torch.allclose(a, b, atol=1e-6)

    # render_context (eval mode) encodes a set of source views once, for as long as the sources and weights stay
    assert ctx.latents is not None and torch.equal(ctx.latents, encoded.latents)
    assert model.render_context(scene.cameras, int(test[0])).latents is ctx.latents
    other = next(i for i in range(len(scene.cameras)) if not torch.equal(
        model.render_context(scene.cameras, i).views.indices, ctx.views.indices))  # fmt: skip
    assert model.render_context(scene.cameras, other).latents is not ctx.latents
    with torch.no_grad():
        model.net.n_light_field_latent.mul_(1.5)  # the weights change (an optimizer step, a load)
    again = model.render_context(scene.cameras, int(test[0]))
    assert not torch.allclose(again.latents, ctx.latents)
    assert torch.allclose(again.latents, model.encode_context(fresh).latents)
    model.train()
    assert model.render_context(scene.cameras, int(test[0])).latents is None  # training: nothing cached


def test_pose_normalisation_modes_change_only_the_frame(scenes):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig

    scene = load_scene(scenes["unseen"])
    info = SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 2.0, 6.0)
    frames = {}
    for mode in ("scene", "sources", "none"):
        model = LVSMModel(LVSMModelConfig(pose_normalization=mode, width=64), scene=info)
        model.attach_scene(scene)
        frames[mode] = model._frame(model.render_context(scene.cameras, 0))
    assert frames["none"] is None
    assert frames["scene"].shape == frames["sources"].shape == (4, 4)
    assert not torch.allclose(frames["scene"], frames["sources"])


@pytest.mark.slow
def test_viewer_renders_lvsm_frames_whole(tmp_path, scenes):
    import math

    import numpy as np
    from neural3d.viewer.camera import CameraState
    from neural3d.viewer.frames import frame_image
    from neural3d.viewer.scene_handle import SceneHandle
    from neural3d.viewer.worker import RenderSettings, RenderWorker

    assert main(_argv(tmp_path, scenes, "trainer.steps=1", "trainer.eval_every=0")) == 0
    loaded = load_for_scene(tmp_path / "r", scenes["other"])
    handle = SceneHandle(loaded)
    c2w = loaded.model.attached_scene.cameras.camera_to_worlds[0].double().numpy()
    state = CameraState(c2w, fov=2 * math.atan(0.5), aspect=1.0)
    sent = []
    w = RenderWorker(handle, lambda img, kind: sent.append((img, kind)), settings=RenderSettings(max_side=24))
    w.rate.add(1, 1.0)  # a slow measured rate: other methods would render 1-row bands
    try:
        w.update_camera(state)
        for _ in range(2000):
            if any(k == "full" for _, k in sent):
                break
            time.sleep(0.01)
    finally:
        w.stop()
    img = next(img for img, k in sent if k == "full")
    ref = frame_image(handle.render(state.cameras(24)), "rgb", rendered_bg=handle.background)
    np.testing.assert_array_equal(img, ref)  # one forward pass per frame, not bands of rows


@pytest.mark.parametrize("variant", ["decoder_only", "encoder_decoder"])
def test_cli_imports_an_official_checkpoint_then_evaluates_and_renders(tmp_path, scenes, variant, capsys):
    from test_lvsm import _official_layout

    from neural3d.api import load

    layers = (2,) if variant == "decoder_only" else (1, 2)
    official = _official_layout(variant, 64, layers, n_latents=8)
    torch.save({"model": official, "optimizer": {}}, tmp_path / "ckpt.pt")
    run = tmp_path / "imported"
    assert main(["lvsm", "import", str(tmp_path / "ckpt.pt"), "--data", str(scenes["unseen"]), "--out", str(run)]) == 0
    loaded = load(run)
    cfg = loaded.config.model
    assert (cfg.variant, cfg.width, cfg.patch_size, cfg.head_dim) == (variant, 64, 8, 64)
    state = loaded.model.state_dict()
    for k, v in official.items():
        if not k.startswith("loss_computer."):
            assert torch.equal(state["net." + k], v)
    out = tmp_path / "eval"
    capsys.readouterr()
    assert main(["lvsm", "eval", str(run), str(scenes["other"]), "--max-images", "1", "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file()
    assert_progress_lines(capsys.readouterr().err, "eval test", 1)
    frames = tmp_path / "frames"
    argv = ["lvsm", "render", str(run), str(scenes["other"]), "--path", "orbit", "--frames", "2", "--out", str(frames)]
    assert main(argv) == 0
    assert_progress_lines(capsys.readouterr().err, "render", 2)
    assert len(list(frames.iterdir())) >= 2


def test_fine_tuning_starts_from_a_neural3d_or_official_checkpoint(tmp_path, scenes):
    from test_lvsm import _official_layout

    from neural3d.config import ConfigError, build_config
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.model import LVSMModel

    official = _official_layout("decoder_only", 64, (2,))
    torch.save({"model": official}, tmp_path / "official.pt")
    info = SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 2.0, 6.0)
    for path in ("official.pt", "ours.pt"):
        _, cfg = build_config({"method": "lvsm", "model": {"width": 64, "init_checkpoint": str(tmp_path / path)}})
        model = LVSMModel(cfg, scene=info)
        model.prepare_training()
        assert torch.equal(model.net.image_tokenizer[1].weight, official["image_tokenizer.1.weight"])
        torch.save({"model": model.state_dict()}, tmp_path / "ours.pt")
    with pytest.raises(ConfigError):
        build_config({"method": "lvsm", "model": {"variant": "encoder_only"}})


def test_several_targets_per_step_share_the_sources(scenes):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.batches import ImageBatches
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig

    data = [load_scene(p) for p in scenes["family"]]
    batches = ImageBatches(
        data, n_views_min=2, n_views_max=2, method=lambda s: "vector", frame=lambda k, c2w: None, n_targets=3, seed=5
    )
    model = LVSMModel(LVSMModelConfig(width=64), scene=SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 2.0, 6.0))
    for _ in range(5):
        b = next(batches)
        assert tuple(b.rays.shape) == (3, 20, 20) and b.rgb.shape == (1200, 3)
        targets = b.rays.camera_indices[:, 0, 0].tolist()
        assert len(set(targets)) == 3 and not set(targets) & set(b.context.views.indices.tolist())
        images = data[b.scene_index].images
        assert torch.equal(b.rgb, images[targets].reshape(-1, 3))
        out = model(b.rays, b.context)
        loss = sum(model.loss_dict(out, b).values())
        assert out.rgb.shape == (1200, 3) and torch.isfinite(loss)
        with torch.no_grad():  # each target rendered alone gives the same pixels
            alone = model(b.rays[1], b.context).rgb
        assert torch.allclose(out.rgb[400:800], alone, atol=1e-5)
    with pytest.raises(ValueError, match="n_targets"):
        ImageBatches(
            data, n_views_min=1, n_views_max=1, method=lambda s: "vector", frame=lambda k, c2w: None, n_targets=6
        )


def test_lpips_weight_without_local_weights_trains_without_it():
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig

    with pytest.warns(UserWarning, match="trains without the LPIPS term"):
        model = LVSMModel(
            LVSMModelConfig(width=64, lpips_weight=0.5), scene=SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0, 1)
        )
    assert model._lpips_net() is None


def test_views_normalisation_is_over_sources_and_target(scenes):
    """``views`` mode: the official loader's frame, over the chosen sources and the target (render and training)."""
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig
    from neural3d.methods.lvsm.rays import normalization_frame

    scene = load_scene(scenes["unseen"])
    info = SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 2.0, 6.0)
    model = LVSMModel(LVSMModelConfig(pose_normalization="views", width=64, n_source_views_eval=2), scene=info)
    model.attach_scene(scene)
    t = int(scene.split_indices("test")[0])
    ctx = model.render_context(scene.cameras, t)
    c2w = scene.cameras.camera_to_worlds
    expected = normalization_frame(torch.cat([ctx.views.cameras.camera_to_worlds, c2w[t][None]]))
    assert torch.allclose(model._frame(ctx), expected, atol=1e-6)
    # a different target with the same sources gives a different frame
    sources_only = normalization_frame(ctx.views.cameras.camera_to_worlds)
    assert not torch.allclose(model._frame(ctx), sources_only, atol=1e-4)
    loader = model.build_loader(scene, batch_size=1, device="cpu", seed=0)
    batch = next(loader)
    target_centre = batch.rays.origins.reshape(-1, 3)[:1]  # pinhole rays start at the camera centre
    views = batch.context.views.cameras.camera_to_worlds
    frame = batch.context.frame
    # the frame centres the mean of the source and target camera centres at the origin
    centres = torch.cat([views[:, :, 3], target_centre])
    mean = centres.mean(0)
    assert torch.allclose(frame[:3, :3] @ mean + frame[:3, 3], torch.zeros(3), atol=1e-5)


def test_ndc_scenes_are_refused_and_grad_checkpoint_reaches_the_network():
    from types import SimpleNamespace

    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig

    info = SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.0, 1.0)
    model = LVSMModel(LVSMModelConfig(width=64, grad_checkpoint=True), scene=info)
    assert model.net.grad_checkpoint
    with pytest.raises(ValueError, match="fern: LVSM needs world-space rays; set data.ndc=false"):
        model.attach_scene(SimpleNamespace(ndc=True, root="fern"))


def _qkv_dtypes_of_one_step(tmp_path, scenes, *extra: str) -> tuple[list, dict]:
    """The dtype of the first block's qkv projection during one training step, and the step's metrics."""
    from neural3d.config import load_config
    from neural3d.training.trainer import Trainer

    cfg, _ = load_config(CONFIG, _argv(tmp_path, scenes, *extra)[2:])
    tr = Trainer(cfg)
    seen = []
    hook = tr.model.net.transformer_blocks[0].attn.to_qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    metrics = tr.train_step()
    hook.remove()
    return seen, metrics


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is CUDA-only")
def test_cuda_training_step_runs_under_bf16_autocast(tmp_path, scenes):
    seen, metrics = _qkv_dtypes_of_one_step(tmp_path, scenes, "device=cuda")
    assert seen == [torch.bfloat16] and torch.isfinite(metrics["loss"])


def test_cpu_training_never_autocasts(tmp_path, scenes):
    seen, metrics = _qkv_dtypes_of_one_step(tmp_path, scenes, "trainer.mixed_precision=bf16")
    assert seen == [torch.float32] and torch.isfinite(metrics["loss"])
