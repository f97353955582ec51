"""SinNeRF (``sinnerf:``): hinge losses, the discriminator, DINO layout and pos-embed interpolation, depth
sources, the schedule, few-step CLI runs for nerf and ngp, and bit-identical resume with the discriminator on."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from test_augnerf import NGP_SAMPLERS, TINY_NERF
from test_augnerf import TINY_NGP as _TINY_NGP

from neural3d.cli.main import main
from neural3d.config import ConfigError, load_config
from neural3d.data.scene import DatasetError
from neural3d.training.sinnerf.dino import DinoViT, interpolate_pos_embed, load_dino
from neural3d.training.sinnerf.discriminator import (
    PatchDiscriminator,
    diff_augment,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from neural3d.training.sinnerf.losses import edge_aware_smoothness, masked_smooth_l1

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_NGP = [*_TINY_NGP, *NGP_SAMPLERS["occupancy"], "model.sampler.update_every=2"]
SMALL = ["sinnerf.patch.size=8", "sinnerf.patch.stride=2", "sinnerf.texture.channels=4"]


# ------------------------------------------------------------------------------ losses and the discriminator
def test_hinge_losses_on_hand_made_logits():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # D: (mean relu(1 - real) + mean relu(1 + fake)) / 2 = ((0 + 0.5 + 2) / 3 + (0 + 1 + 2) / 3) / 2
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx((2.5 / 3 + 3.0 / 3) / 2)
    assert float(hinge_generator_loss(fake)) == pytest.approx(1.0 / 3)
    # a perfect discriminator (real >= 1, fake <= -1) has zero loss
    assert float(hinge_discriminator_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0]))) == 0.0


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_discriminator_shapes_and_spectral_norm(size):
    torch.manual_seed(0)
    d = PatchDiscriminator(size=size, channels=4, augment_prob=0.0)
    assert d(torch.rand(3, 3, size, size)).shape == (3,)
    conv = d.main[0]
    for _ in range(30):  # power iterations converge in training mode
        d(torch.rand(1, 3, size, size))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert float(sigma) == pytest.approx(1.0, abs=0.05)


def test_discriminator_rejects_other_sizes():
    with pytest.raises(ValueError, match="power of two"):
        PatchDiscriminator(size=12)


def test_diff_augment_cuts_out_a_square_and_keeps_gradients():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x)
    assert y.shape == x.shape
    zeros = (y == 0).all(1)  # [4, 16, 16] cut-out pixels
    assert all(int(z.sum()) > 0 for z in zeros)
    assert all(int(z.sum()) <= 64 for z in zeros)  # at most half the side squared
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_masked_smooth_l1_and_smoothness():
    pred, target = torch.tensor([[0.0, 3.0]]), torch.tensor([[0.5, 0.0]])
    mask = torch.tensor([[True, False]])
    assert float(masked_smooth_l1(pred, target, mask)) == pytest.approx(0.125)  # 0.5 * 0.5^2
    assert float(masked_smooth_l1(pred, target, torch.zeros_like(mask))) == 0.0
    depth = torch.zeros(1, 1, 4, 4)
    depth[..., 2:] = 1.0  # a step between columns 1 and 2
    flat = torch.zeros(1, 3, 4, 4)
    edge = flat.clone()
    edge[:, :, :, 2:] = 1.0  # the image has the same edge: the step costs exp(-1) of it
    assert float(edge_aware_smoothness(depth, flat)) == pytest.approx(1 / 3)
    assert float(edge_aware_smoothness(depth, edge)) == pytest.approx(np.exp(-1) / 3, rel=1e-6)


# ------------------------------------------------------------------------------ DINO
def _dino_layout() -> dict[str, tuple[int, ...]]:
    """The public dino_deitsmall16_pretrain.pth layout, written out by hand."""
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, 384),
        "pos_embed": (1, 197, 384),
        "patch_embed.proj.weight": (384, 3, 16, 16),
        "patch_embed.proj.bias": (384,),
        "norm.weight": (384,),
        "norm.bias": (384,),
    }
    for i in range(12):
        b = f"blocks.{i}."
        shapes.update(
            {
                b + "norm1.weight": (384,),
                b + "norm1.bias": (384,),
                b + "attn.qkv.weight": (1152, 384),
                b + "attn.qkv.bias": (1152,),
                b + "attn.proj.weight": (384, 384),
                b + "attn.proj.bias": (384,),
                b + "norm2.weight": (384,),
                b + "norm2.bias": (384,),
                b + "mlp.fc1.weight": (1536, 384),
                b + "mlp.fc1.bias": (1536,),
                b + "mlp.fc2.weight": (384, 1536),
                b + "mlp.fc2.bias": (384,),
            }
        )
    return shapes


@pytest.fixture(scope="module")
def dino_file(tmp_path_factory) -> Path:
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(*s, generator=g) * 0.02 for k, s in _dino_layout().items()}
    path = tmp_path_factory.mktemp("dino") / "dino_deitsmall16_pretrain.pth"
    torch.save(state, path)
    return path


def test_dino_layout_loads_strictly(dino_file):
    assert set(DinoViT().state_dict()) == set(_dino_layout())
    model = load_dino(dino_file)
    state = torch.load(dino_file, weights_only=True)
    assert torch.equal(model.blocks[11].mlp.fc2.weight, state["blocks.11.mlp.fc2.weight"])
    assert not any(p.requires_grad for p in model.parameters())
    feats = model.cls(torch.rand(2, 3, 32, 48))
    assert feats.shape == (2, 384) and bool(torch.isfinite(feats).all())


def test_dino_load_names_the_file_on_a_wrong_layout(tmp_path, dino_file):
    state = torch.load(dino_file, weights_only=True)
    state.pop("norm.bias")
    state["head.weight"] = torch.zeros(1000, 384)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError, match="bad.pth"):
        load_dino(bad)


def _cubic_matrix(n: int, g: int) -> torch.Tensor:
    """[g, n] float64 weights of 1D cubic convolution (a = -0.75, border clamped) mapping n samples to g with
    DINO's scale factor (g + 0.1) / n: source = (dest + 0.5) / scale - 0.5."""
    a, scale = -0.75, (g + 0.1) / n
    m = torch.zeros(g, n, dtype=torch.float64)
    for i in range(g):
        src = (i + 0.5) / scale - 0.5
        x0 = int(np.floor(src))
        for k in range(x0 - 1, x0 + 3):
            d = abs(src - k)
            w = (a + 2) * d**3 - (a + 3) * d**2 + 1 if d <= 1 else a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
            m[i, min(max(k, 0), n - 1)] += w
    return m


def test_pos_embed_interpolation_follows_dino():
    n, dim, rows, cols = 14, 3, 6, 20
    pos = torch.randn(1, 1 + n * n, dim, generator=torch.Generator().manual_seed(0))
    assert interpolate_pos_embed(pos, n, n) is pos
    out = interpolate_pos_embed(pos, rows, cols)
    assert out.shape == (1, 1 + rows * cols, dim)
    assert torch.equal(out[:, 0], pos[:, 0])
    grid = pos[0, 1:].reshape(n, n, dim).double()
    expected = torch.einsum("rn,nmd,cm->rcd", _cubic_matrix(n, rows), grid, _cubic_matrix(n, cols))
    torch.testing.assert_close(out[0, 1:].reshape(rows, cols, dim).double(), expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ runs
def _argv(tmp: Path, scene: Path, method: str, *extra: str) -> list[str]:
    tiny = TINY_NERF if method == "nerf" else TINY_NGP
    return [
        "train",
        str(CONFIGS / f"sinnerf_{method}.yaml"),
        f"data.path={scene}",
        f"output_dir={tmp}",
        "experiment=r",
        "device=cpu",
        "trainer.batch_size=64",
        "trainer.progress=false",
        "trainer.log_every=1",
        "trainer.eval_images=1",
        *tiny,
        *SMALL,
        *extra,
    ]


def _rows(run: Path) -> list[dict]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.mark.parametrize("method", ["nerf", "ngp"])
def test_cli_single_view_run(tmp_path, tiny_blender_scene, method):
    argv = _argv(tmp_path, tiny_blender_scene, method, "trainer.steps=3", "sinnerf.schedule.stage2_step=1")
    with pytest.warns(UserWarning, match="semantic term off"):
        assert main(argv) == 0
    rows = _rows(tmp_path / "r")
    assert len(rows) == 3
    assert all(float(r["train/warp_depth"]) >= 0 and float(r["train/ref_depth"]) >= 0 for r in rows)
    assert rows[0]["train/texture_d"] == "" and float(rows[2]["train/texture_d"]) > 0  # stage 2 from step 1
    assert (tmp_path / "r" / "metrics.json").exists() or list((tmp_path / "r" / "checkpoints").glob("*.pt"))


def test_semantic_term_with_local_weights(tmp_path, tiny_blender_scene, dino_file):
    argv = _argv(
        tmp_path,
        tiny_blender_scene,
        "ngp",
        "trainer.steps=2",
        f"sinnerf.semantic.weights={dino_file}",
        "sinnerf.semantic.input_size=32",
        "sinnerf.texture.weight=0",
    )
    assert main(argv) == 0
    assert all(float(r["train/semantic"]) >= 0 for r in _rows(tmp_path / "r"))


@pytest.mark.slow
def test_resume_is_bit_identical_with_the_discriminator(tmp_path, tiny_blender_scene):
    argv = _argv(
        tmp_path,
        tiny_blender_scene,
        "ngp",
        "trainer.steps=4",
        "trainer.checkpoint_every=2",
        "sinnerf.schedule.stage2_step=0",
        "sinnerf.poses.warmup_steps=3",
    )
    run = tmp_path / "r"
    assert main(argv) == 0
    last = run / "checkpoints" / "step_0000004.pt"
    straight = torch.load(last, weights_only=True)
    losses = [(r["step"], r["train/loss"], r["train/texture_d"]) for r in _rows(run)]
    last.unlink()
    assert main([*argv, "--resume"]) == 0
    resumed = torch.load(last, weights_only=True)
    for part in ("model",):
        for k in straight[part]:
            assert torch.equal(straight[part][k], resumed[part][k]), k
    for k, v in straight["sinnerf"]["discriminator"].items():
        assert torch.equal(v, resumed["sinnerf"]["discriminator"][k]), k
    d_opt = straight["auxiliary_optimizers"]["discriminator"]["state"]
    assert d_opt and all(
        torch.equal(s["exp_avg"], resumed["auxiliary_optimizers"]["discriminator"]["state"][i]["exp_avg"])
        for i, s in d_opt.items()
    )
    assert [(r["step"], r["train/loss"], r["train/texture_d"]) for r in _rows(run)] == losses


# ------------------------------------------------------------------------------ the strategy's parts
def _task(scene: Path, *overrides: str):
    from neural3d.training.scene_task import SceneTask

    cfg, _ = load_config(
        CONFIGS / "sinnerf_ngp.yaml",
        [f"data.path={scene}", "device=cpu", "trainer.batch_size=64", *TINY_NGP, *SMALL, *overrides],
    )
    return SceneTask(cfg)


def test_depth_sources(tmp_path, tiny_blender_scene):
    task = _task(tiny_blender_scene, "sinnerf.reference_view=2", "sinnerf.semantic.weight=0")
    sn = task.sinnerf
    expected = np.load(tiny_blender_scene / "depth" / "train" / "r_2.npy")
    assert torch.equal(sn.depth, torch.from_numpy(expected))
    assert task.scene.splits["train"].tolist() == [sn.index] and sn.index == 2  # the model sees one view
    np.save(tmp_path / "d.npy", 2 * expected)
    task = _task(tiny_blender_scene, "sinnerf.depth.source=file", f"sinnerf.depth.path={tmp_path / 'd.npy'}")
    assert torch.equal(task.sinnerf.depth, torch.from_numpy(2 * expected))
    np.save(tmp_path / "small.npy", expected[:5])
    with pytest.raises(DatasetError, match="small.npy"):
        _task(tiny_blender_scene, "sinnerf.depth.source=file", f"sinnerf.depth.path={tmp_path / 'small.npy'}")
    with pytest.raises(ConfigError, match="depth.path"):
        _task(tiny_blender_scene, "sinnerf.depth.source=oracle")
    with pytest.raises(ConfigError, match="reference_view"):
        _task(tiny_blender_scene, "sinnerf.reference_view=99")


def test_oracle_depth_is_rendered_by_another_run(tmp_path_factory, tiny_blender_scene):
    from _tiny_run import tiny_trained_run

    from neural3d.api import load

    run = tiny_trained_run(tmp_path_factory, tiny_blender_scene)
    task = _task(tiny_blender_scene, "sinnerf.depth.source=oracle", f"sinnerf.depth.path={run}")
    out = load(run, device="cpu").render(task.scene.cameras[task.sinnerf.index])
    expected = torch.where(out["opacity"][0] >= 0.5, out["depth"][0], torch.zeros_like(out["depth"][0]))
    assert torch.equal(task.sinnerf.depth, expected)


def test_schedule_switches_terms_and_stride(tiny_blender_scene, dino_file):
    task = _task(
        tiny_blender_scene,
        "sinnerf.schedule.stage2_step=10",
        "sinnerf.schedule.stage2_stride=1",
        f"sinnerf.semantic.weights={dino_file}",
        "sinnerf.poses.warmup_steps=4",
    )
    sn = task.sinnerf
    assert sn.terms(0)["texture"] == 0 and sn.terms(0)["semantic"] == 10.0 and sn.stride(0) == 2
    assert sn.terms(10)["texture"] == 0.01 and sn.terms(10)["semantic"] == 0 and sn.stride(10) == 1
    assert sn.spread(0) == 0.25 and sn.spread(3) == 1.0 and sn.spread(100) == 1.0
    assert set(task.configure_auxiliary_optimizers(20)) == {"discriminator"}


def test_plain_single_view_renders_no_patch(tiny_blender_scene):
    task = _task(
        tiny_blender_scene,
        "sinnerf.geometry.reference_depth=0",
        "sinnerf.geometry.warp_depth=0",
        "sinnerf.semantic.weight=0",
        "sinnerf.texture.weight=0",
    )
    assert task.configure_auxiliary_optimizers(10) == {}
    task.model.train()
    task.step_begin(0)
    _, metrics = task.loss_and_metrics(task.next_batch(0), 0)
    assert "warp_valid" not in metrics and "ref_depth" not in metrics


def test_unsupported_settings_are_config_errors(tiny_blender_scene, tiny_llff_scene):
    with pytest.raises(ConfigError, match="augment"):
        _task(tiny_blender_scene, "augment.outputs.enabled=true")
    with pytest.raises(ConfigError, match="NDC"):
        _task(tiny_llff_scene)


def test_nerf_config_builds():
    cfg, _ = load_config(CONFIGS / "sinnerf_nerf.yaml")
    assert cfg.sinnerf.enabled and cfg.method == "nerf"
