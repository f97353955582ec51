"""NID as a 3D scene representation: field vs explicit reference, shared renderer, family training, code fits."""

from __future__ import annotations

import pytest
import torch

from neural3d.core.rays import RayBundle
from neural3d.fields.ngp_field import trunc_exp
from neural3d.methods.base import SceneInfo
from neural3d.methods.nid.field import SceneCodes
from neural3d.methods.nid.model import NIDModel, NIDSceneConfig

SMALL = {"num_experts": 8, "topk": 3, "hidden_dim": 16, "n_layers": 1, "n_freqs": 2, "n_samples": 16}


def _info():
    box = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
    return SceneInfo(scene_box=box, near=2.0, far=6.0, background=torch.tensor([1.0, 1.0, 1.0]))


def _rays(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    origins = torch.tensor([0.0, 0.0, 4.0]).expand(n, 3).clone()
    dirs = torch.cat([0.2 * (torch.rand(n, 2, generator=g) - 0.5), -torch.ones(n, 1)], -1)
    return RayBundle(
        origins, dirs, dirs / dirs.norm(dim=-1, keepdim=True), torch.full((n,), 2.0), torch.full((n,), 6.0)
    )


def test_field_matches_an_explicit_expert_sum():
    model = NIDModel(NIDSceneConfig(n_codes=2, **SMALL), scene=_info())
    f = model.field
    with torch.no_grad():
        f.codes.normal_()
    x = torch.rand(5, 3) * 3 - 1.5
    x[0] = torch.tensor([2.0, 0.0, 0.0])  # outside the box: no density
    density, rgb = f.query(x, None, 1)
    code = f.codes[1]
    logits, bias = code[:8], code[8:]
    keep = logits.abs().argsort(descending=True)[:3]
    experts = f.bank((x - f.aabb[0]) / (f.aabb[1] - f.aabb[0]) * 2 - 1)  # [5, 8, 4]
    raw = sum(logits[e] * experts[:, e] for e in keep.tolist()) + bias
    inside = (x.abs() < 1.5).all(-1, keepdim=True)
    assert torch.allclose(density, trunc_exp(raw[:, :1] - 1.0) * inside, atol=1e-5, rtol=1e-5)
    assert torch.allclose(rgb, torch.sigmoid(raw[:, 1:]), atol=1e-6)
    assert density[0].item() == 0.0
    with pytest.raises(ValueError, match="scene codes"):
        f.query(x, None, 2)


def test_model_renders_through_the_shared_volume_renderer():
    model = NIDModel(NIDSceneConfig(**SMALL), scene=_info()).eval()
    rays = _rays()
    with torch.no_grad():
        out = model(rays)
        samples = model.sampler(rays)
        density, rgb = model.field.query(samples.positions, None, None)
    # float64 emission-absorption reference
    delta = (samples.deltas * rays.directions.norm(dim=-1, keepdim=True)).double()
    alpha = 1 - torch.exp(-density[..., 0].double() * delta)
    trans = torch.cumprod(torch.cat([torch.ones(6, 1, dtype=torch.float64), 1 - alpha[:, :-1]], 1), 1)
    w = alpha * trans
    ref = (w[..., None] * rgb.double()).sum(1) + (1 - w.sum(1, keepdim=True))
    assert torch.allclose(out["rgb"].double(), ref, atol=1e-5)
    assert out["depth"].shape == (6, 1) and out["opacity"].shape == (6, 1)
    # several scenes at once equal one scene at a time
    two = NIDModel(NIDSceneConfig(n_codes=2, **SMALL), scene=_info()).eval()
    batch = RayBundle.cat([_rays(seed=1), _rays(seed=2)]).reshape(2, 6)
    with torch.no_grad():
        rgb2, gates = two.forward_scenes(batch, torch.tensor([1, 0]))
        assert torch.allclose(rgb2[0], two(_rays(seed=1), context=1)["rgb"], atol=1e-6)
        assert torch.allclose(rgb2[1], two(_rays(seed=2), context=0)["rgb"], atol=1e-6)
    assert gates.indices.shape == (2, 3)
    # ... through the field contract: a SceneCodes context picks one code per row, gates in extras
    with torch.no_grad():
        samples2 = two.sampler(batch.flatten())
        per_row = two.field(samples2, SceneCodes(torch.tensor([1, 0])))
        alone = two.field(two.sampler(_rays(seed=2)), 0)
    assert per_row.density.shape == (12, 16, 1) and per_row.extras["gates"].indices.shape == (2, 3)
    assert torch.equal(per_row.density[6:], alone.density) and torch.equal(per_row.rgb[6:], alone.rgb)


def test_method_is_registered_and_builds_from_a_config():
    from neural3d.config import build_config
    from neural3d.methods.registry import available_methods, get_method

    assert "nid" in available_methods() and get_method("nid").model_class is NIDModel
    _cfg, model_cfg = build_config({"method": "nid", "model": {"num_experts": 8, "topk": 2}})
    assert model_cfg.num_experts == 8
    from neural3d.config import ConfigError

    with pytest.raises(ConfigError, match="model.topq"):
        build_config({"method": "nid", "model": {"topq": 2}})


def test_family_dictionary_trains_and_a_new_scene_is_fitted_by_its_code(tmp_path):
    from neural3d.data import load_scene
    from neural3d.data.synthetic import write_blender_scene
    from neural3d.methods.nid.family import fit_scene, load_family, train_family
    from neural3d.training.checkpoint import latest_checkpoint

    cfg = {
        "family": str(tmp_path / "fam"),
        "n_scenes": 3,
        "res": 16,
        "n_train": 4,
        "n_test": 1,
        "model": SMALL,
        "steps": 40,
        "scenes_per_step": 2,
        "rays_per_scene": 64,
        "log_every": 10,
        "checkpoint_every": 40,
        "lr": 1e-2,
    }
    logs = []
    model = train_family(cfg, run_dir=tmp_path / "run", log=logs.append)
    assert model.field.codes.shape[0] == 3 and len(logs) == 4
    mse = [float(s.split("mse ")[1].split()[0]) for s in logs]
    assert min(mse[2:]) < mse[0]
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt is not None and len(load_family(type("C", (), {"family": cfg["family"]})())) == 3
    new = tmp_path / "new"
    write_blender_scene(new, seed=777, res=16, n_train=4, n_val=1, n_test=1, supersample=1)
    scene = load_scene(new)
    fitted, history = fit_scene(str(ckpt), scene, steps=30, rays=128, lr=5e-2, eval_every=15, log=lambda s: None)
    assert history[-1]["psnr"] > history[0]["psnr"]
    bank = {k: v for k, v in torch.load(ckpt, weights_only=True)["model"].items() if k.startswith("field.bank.")}
    assert all(torch.equal(fitted.state_dict()[k], v) for k, v in bank.items())  # frozen dictionary


def test_shared_trainer_fits_a_scene_code_with_a_frozen_dictionary(tmp_path, tiny_blender_scene):
    from neural3d.cli.main import main
    from neural3d.training.checkpoint import atomic_save

    donor = NIDModel(NIDSceneConfig(n_codes=2, **SMALL), scene=_info())
    atomic_save({"model": donor.state_dict()}, tmp_path / "dict.pt")
    cfg = tmp_path / "nid.yaml"
    model = ", ".join(f"{k}: {v}" for k, v in SMALL.items())
    cfg.write_text(
        f"method: nid\ndata: {{path: {tiny_blender_scene}}}\noutput_dir: {tmp_path}\nexperiment: r\n"
        f"model: {{{model}, dictionary: {tmp_path / 'dict.pt'}}}\n"
        "trainer: {steps: 4, batch_size: 64, progress: false, checkpoint_every: 4}\n"
    )
    assert main(["train", str(cfg)]) == 0
    from neural3d.api import load

    loaded = load(tmp_path / "r", device="cpu")
    x = torch.rand(4, 3)
    assert torch.equal(loaded.model.field.bank(x), donor.field.bank(x))


def test_cli_train_scenes(tmp_path, capsys):
    from neural3d.cli.main import main

    cfg = tmp_path / "fam.yaml"
    model = ", ".join(f"{k}: {v}" for k, v in SMALL.items())
    cfg.write_text(
        f"family: {tmp_path / 'fam'}\nn_scenes: 2\nres: 12\nn_train: 2\nn_test: 1\nmodel: {{{model}}}\n"
        f"steps: 3\nscenes_per_step: 2\nrays_per_scene: 16\nlog_every: 3\noutput_dir: {tmp_path / 'run'}\n"
    )
    assert main(["nid", "train-scenes", str(cfg)]) == 0
    assert "scene-family dictionary" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoints" / "step_0000003.pt").is_file()
    assert main(["nid", "train-scenes", str(cfg), "model.topq=1"]) == 2
    assert "model.topq" in capsys.readouterr().err


def test_fit_scene_in_the_shared_loop_equals_the_plain_two_phase_adam_loop(tmp_path, tiny_blender_scene):
    """fit_scene runs its code and fine-tune phases in the shared Loop: same weights as two bare Adam loops."""
    from omegaconf import OmegaConf

    from neural3d.data import load_scene
    from neural3d.data.loader import RayLoader
    from neural3d.methods.nid.family import fit_scene
    from neural3d.training.run_dir import atomic_save
    from neural3d.training.setup import scene_info

    donor = NIDModel(NIDSceneConfig(n_codes=2, **SMALL), scene=_info())
    atomic_save({"model": donor.state_dict()}, tmp_path / "dict.pt")
    scene = load_scene(tiny_blender_scene)
    fitted, history = fit_scene(
        str(tmp_path / "dict.pt"), scene, SMALL, steps=4, finetune_steps=3, rays=32, eval_every=3, log=lambda s: None
    )
    assert [h["step"] for h in history] == [0, 3, 6]

    cfg = OmegaConf.merge(OmegaConf.structured(NIDSceneConfig()), SMALL)
    cfg.n_codes, cfg.dictionary, cfg.freeze_dictionary = 1, str(tmp_path / "dict.pt"), True
    torch.manual_seed(0)
    model = NIDModel(cfg, scene=scene_info(scene))
    loader = RayLoader(scene, "train", 32, seed=0)
    # fit_scene also renders the test views (eval mode, no random numbers) at steps 0, 3 and 6
    for n, params, lr in [(4, [model.field.codes], 2e-2), (3, list(model.parameters()), 1e-3)]:
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(n):
            batch = next(loader)
            mse = torch.mean((model(batch.rays)["rgb"] - batch.rgb) ** 2)
            opt.zero_grad(set_to_none=True)
            mse.backward()
            opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, fitted.state_dict()[k]), k
