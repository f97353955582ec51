"""Aug-NeRF (``augment:``): hooks, balls, the PGD step, exactness at eps = 0, CLI runs, resume, data corruption."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from neural3d.cli.main import main
from neural3d.config import ConfigError, build_config, load_config
from neural3d.data import RayLoader
from neural3d.training.augment import AugNeRF, PixelFootprint, corrupt_images, corrupt_training_images
from neural3d.training.augment_config import AugmentConfig, CorruptionConfig
from neural3d.training.scene_task import SceneTask

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_NERF = ["model.n_coarse=8", "model.n_fine=8", "model.width=32", "model.depth=3", "model.skips=[1]"]
TINY_NGP = ["model.n_levels=4", "model.log2_hashmap_size=10", "model.max_resolution=32", "model.hashgrid_backend=torch"]
NGP_SAMPLERS = {
    "grid": ["model.sampler.type=grid", "model.sampler.n_samples=8", "model.sampler.n_coarse=8"],
    "uniform": ["model.sampler.type=uniform", "model.sampler.n_samples=8"],
    "importance": ["model.sampler.type=importance", "model.sampler.n_samples=8", "model.sampler.n_coarse=8"],
    "occupancy": [
        "model.sampler.type=occupancy",
        "model.sampler.resolution=16",
        "model.sampler.step_size=0.08",
        "model.sampler.backend=torch",
    ],
    "proposal": [
        "model.sampler.type=proposal",
        "model.sampler.n_samples=8",
        "model.sampler.round_samples=[16]",
        "model.sampler.max_resolutions=[32]",
        "model.sampler.log2_hashmap_size=10",
    ],
}
ALL_ON = ["augment.coords.enabled=true", "augment.features.enabled=true", "augment.outputs.enabled=true"]


def _task(scene: Path, method: str, *overrides: str) -> SceneTask:
    tiny = TINY_NERF if method == "nerf" else TINY_NGP
    cfg, _ = build_config(
        {"method": method, "data": {"path": str(scene)}},
        ["device=cpu", "trainer.batch_size=64", *tiny, *overrides],
    )
    task = SceneTask(cfg)
    task.model.train()
    task.step_begin(0)
    return task


def _params(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _grads(model, loss) -> list[torch.Tensor]:
    params = _params(model)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _clean_loss(task, batch):
    outputs = task.model(batch.rays)
    return sum(task.model.loss_dict(outputs, batch).values())


CASES = [("nerf", ())] + [("ngp", tuple(v)) for v in NGP_SAMPLERS.values()]
CASE_IDS = ["nerf"] + [f"ngp-{k}" for k in NGP_SAMPLERS]


@pytest.mark.parametrize(("method", "sampler"), CASES, ids=CASE_IDS)
def test_eps_zero_gives_exactly_the_clean_loss_and_gradients(tiny_blender_scene, method, sampler):
    zero = [f"augment.{lvl}.eps=0.0" for lvl in ("coords", "features", "outputs")]
    task = _task(tiny_blender_scene, method, *sampler, *ALL_ON, *zero, "augment.pgd_steps=2", "augment.weight=0.5")
    batch = task.next_batch(0)
    state = torch.get_rng_state()
    clean = _clean_loss(task, batch)
    clean_grads = _grads(task.model, clean)
    torch.set_rng_state(state)  # same stratified jitter in the augmented step's clean pass
    loss, _, extra = task.augment.loss(task.model, batch)
    assert torch.equal(loss, clean) and torch.equal(extra["loss_adv"], clean)
    for a, b in zip(_grads(task.model, loss), clean_grads):
        assert torch.equal(a, b)


def _deltas(task, batch):
    """The perturbations the attack finds on ``batch`` (with the recorded clean samples)."""
    from neural3d.training.augment import _Recorder

    recorder = _Recorder()
    task.model(batch.rays, perturb=recorder)
    return task.augment.attack(task.model, batch, None, recorder.recorded), recorder.recorded


@pytest.mark.parametrize(
    ("method", "sampler"),
    [CASES[0], CASES[1], CASES[4], CASES[5]],
    ids=["nerf", "ngp-grid", "ngp-occupancy", "ngp-proposal"],
)
def test_every_perturbation_stays_inside_its_ball(tiny_blender_scene, method, sampler):
    task = _task(tiny_blender_scene, method, *sampler, *ALL_ON, "augment.pgd_steps=3", "augment.step_size=0.7")
    batch = task.next_batch(0)
    deltas, recorded = _deltas(task, batch)
    passes = {"coarse", "fine"} if method == "nerf" else {"field"}
    assert {k[0] for k in deltas} == passes == set(recorded)
    assert {k[1] for k in deltas} == {"depths", "points", "features", "density", "rgb"}
    for (name, level), (d, eps) in deltas.items():
        assert d.shape == eps.shape
        assert bool((d.abs() <= eps).all()), (name, level)
        assert float(d.abs().max()) > 0, (name, level)
    aug = task.augment.cfg
    for name in passes:
        for level, eps in (("features", aug.features.eps), ("density", aug.outputs.eps), ("rgb", aug.outputs.eps)):
            assert torch.all(deltas[(name, level)][1] == eps)  # absolute balls
        # coordinate balls: depths within eps x half the ray's mean spacing; points within the pixel footprint
        samples = recorded[name]
        _, eps_t = deltas[(name, "depths")]
        if hasattr(samples, "ray_indices"):
            ri = samples.ray_indices
            sums = torch.zeros(samples.n_rays).index_add_(0, ri, samples.deltas)
            spacing = (sums / samples.packed_info[:, 1].clamp_min(1))[ri]
        else:
            spacing = samples.deltas.mean(-1, keepdim=True).expand_as(samples.mids)
        assert torch.allclose(eps_t, aug.coords.eps * 0.5 * spacing)
        _, eps_x = deltas[(name, "points")]
        fx = float(task.scene.cameras.fx.min())
        assert bool((eps_x[..., 0] <= aug.coords.eps * samples.mids / fx * 1.0001).all())


@pytest.mark.parametrize("method", ["nerf", "ngp"])
def test_the_pgd_step_increases_the_loss_against_the_random_start(tiny_blender_scene, method):
    sampler = NGP_SAMPLERS["uniform"] if method == "ngp" else []
    task = _task(tiny_blender_scene, method, *sampler, *ALL_ON, "augment.weight=1.0")
    for _ in range(20):  # a little training, so the loss surface is not flat
        task.model.zero_grad()
        _clean_loss(task, task.next_batch(0)).backward()
        with torch.no_grad():
            for p in _params(task.model):
                if p.grad is not None:
                    p -= 1e-2 * p.grad.sign()
    batch = task.next_batch(0)
    results = {}
    for steps in (0, 1):
        task.augment.cfg.pgd_steps = steps
        torch.manual_seed(5)  # the same random start
        loss, _, _ = task.augment.loss(task.model, batch)
        results[steps] = float(loss.detach())
    assert results[1] > results[0]


def test_adversarial_gradients_reach_the_parameters_that_render(tiny_blender_scene):
    task = _task(tiny_blender_scene, "nerf", *ALL_ON, "augment.weight=1.0")  # loss = L_adv only
    batch = task.next_batch(0)
    loss, _, _ = task.augment.loss(task.model, batch)
    task.model.zero_grad()
    loss.backward()
    for name, field in (("coarse", task.model.coarse_field), ("fine", task.model.fine_field)):
        grads = [p.grad for p in field.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert not any(n.endswith("adv") for n, _ in task.model.named_modules())  # no second copy of the network


@pytest.mark.parametrize("level", ["coords", "features", "outputs"])
def test_levels_switch_on_one_at_a_time(tiny_blender_scene, level):
    task = _task(tiny_blender_scene, "nerf", f"augment.{level}.enabled=true")
    deltas, _ = _deltas(task, task.next_batch(0))
    expected = {"coords": {"depths", "points"}, "features": {"features"}, "outputs": {"density", "rgb"}}[level]
    assert {k[1] for k in deltas} == expected


def test_coordinate_and_output_targets(tiny_blender_scene):
    task = _task(tiny_blender_scene, "nerf", "augment.coords.enabled=true", "augment.coords.target=depths")
    assert {k[1] for k in _deltas(task, task.next_batch(0))[0]} == {"depths"}
    task = _task(tiny_blender_scene, "nerf", "augment.outputs.enabled=true", "augment.outputs.channels=rgb")
    assert {k[1] for k in _deltas(task, task.next_batch(0))[0]} == {"rgb"}


def test_unsupported_method_and_bad_values_are_config_errors(tiny_blender_scene):
    with pytest.raises(ConfigError, match="weight"):
        AugNeRF(AugmentConfig(weight=1.5))
    with pytest.raises(ConfigError, match="augment.outputs.channels"):
        build_config({"method": "nerf"}, ["augment.outputs.channels=alpha"])

    class NoHooks:
        def perturbation_levels(self):
            return frozenset()

    aug = AugNeRF(build_config({"method": "nerf"}, ALL_ON)[0].augment)
    with pytest.raises(ConfigError, match="does not support"):
        aug.check_model(NoHooks(), "method 'gnt'")


def test_pixel_footprint_world_and_ndc(tiny_blender_scene, tiny_llff_scene):
    from neural3d.training.setup import load_scene_from_config

    for scene_path in (tiny_blender_scene, tiny_llff_scene):
        cfg, _ = build_config({"method": "nerf", "data": {"path": str(scene_path)}})
        scene = load_scene_from_config(cfg.data)
        batch = next(iter(RayLoader(scene, batch_size=16)))
        t = torch.full((16, 4), 0.5)
        fp = PixelFootprint(scene.cameras, scene.ndc)(batch.rays, t, lambda v: v[:, None])
        if scene.ndc:
            assert torch.allclose(fp, torch.full_like(t, 2.0 / max(scene.width, scene.height)))
        else:  # one pixel's width at depth t: the distance between neighbouring pixels' rays
            cams = batch.rays.camera_indices
            xy = batch.rays.pixels.float() + 0.5
            a = scene.rays(cams, xy).directions
            b = scene.rays(cams, xy + torch.tensor([1.0, 0.0])).directions
            assert torch.allclose(fp[:, 0], 0.5 * (a - b).norm(dim=-1), rtol=1e-4)


# ------------------------------------------------------------------------------ CLI, resume
def _cli(tmp: Path, scene: Path, method: str, *extra: str) -> list[str]:
    tiny = TINY_NERF if method == "nerf" else [*TINY_NGP, *NGP_SAMPLERS["occupancy"], "model.sampler.update_every=2"]
    config = "augnerf_blender.yaml" if method == "nerf" else "blender_ngp.yaml"
    common = ["device=cpu", "trainer.batch_size=64", "trainer.progress=false", "trainer.log_every=1"]
    return ["train", str(CONFIGS / config), f"data.path={scene}", f"output_dir={tmp}", "experiment=r"] + [
        *common,
        *tiny,
        *extra,
    ]


def _metric_rows(run: Path) -> list[dict]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.mark.parametrize("method", ["nerf", "ngp"])
def test_cli_runs_a_few_augmented_steps(tmp_path, tiny_blender_scene, method):
    extra = [] if method == "nerf" else ALL_ON
    assert (
        main(_cli(tmp_path, tiny_blender_scene, method, "trainer.steps=3", "trainer.checkpoint_every=0", *extra)) == 0
    )
    rows = _metric_rows(tmp_path / "r")
    assert len(rows) == 3 and all(float(r["train/loss_adv"]) > 0 for r in rows)


def test_llff_config_builds():
    cfg, _ = load_config(CONFIGS / "augnerf_llff.yaml")
    assert cfg.augment.coords.enabled and cfg.augment.features.enabled and cfg.augment.outputs.enabled


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nerf", "ngp"])
def test_resume_is_bit_identical_with_augmentation(tmp_path, tiny_blender_scene, method):
    argv = _cli(tmp_path, tiny_blender_scene, method, "trainer.steps=4", "trainer.checkpoint_every=2", *ALL_ON)
    run = tmp_path / "r"
    assert main(argv) == 0
    straight = torch.load(run / "checkpoints" / "step_0000004.pt", weights_only=True)["model"]
    losses = [(r["step"], r["train/loss"]) for r in _metric_rows(run)]
    (run / "checkpoints" / "step_0000004.pt").unlink()
    assert main([*argv, "--resume"]) == 0
    resumed = torch.load(run / "checkpoints" / "step_0000004.pt", weights_only=True)["model"]
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    assert [(r["step"], r["train/loss"]) for r in _metric_rows(run)] == losses


# ------------------------------------------------------------------------------ data corruption
def test_corruption_is_deterministic_by_seed():
    images = torch.rand(3, 20, 30, 3)
    cfg = CorruptionConfig(salt_pepper=0.3, gaussian_std=0.05, seed=4)
    a, b = corrupt_images(images, cfg), corrupt_images(images, cfg)
    assert torch.equal(a, b) and not torch.equal(a, images)
    assert not torch.equal(a, corrupt_images(images, CorruptionConfig(salt_pepper=0.3, gaussian_std=0.05, seed=5)))
    sp = corrupt_images(images, CorruptionConfig(salt_pepper=0.3))
    black = (sp == 0).all(-1).float().mean()
    white = (sp == 1).all(-1).float().mean()
    assert abs(float(black) - 0.15) < 0.03 and abs(float(white) - 0.15) < 0.03
    assert corrupt_images(images, CorruptionConfig()) is images


def test_corruption_touches_training_images_only(tiny_blender_scene):
    cfg, _ = build_config(
        {"method": "nerf", "data": {"path": str(tiny_blender_scene)}},
        ["device=cpu", *TINY_NERF, "data.corruption.salt_pepper=0.3", "data.corruption.seed=1"],
    )
    task = SceneTask(cfg)
    from neural3d.training.setup import load_scene_from_config

    clean = load_scene_from_config(cfg.data)  # evaluation and rendering load the scene clean
    train = clean.split_indices("train")
    test = clean.split_indices("test")
    assert not torch.equal(task.scene.images[train], clean.images[train])
    assert torch.equal(task.scene.images[test], clean.images[test])
    again = corrupt_training_images(clean, cfg.data.corruption)
    assert torch.equal(again.images, task.scene.images)


def test_no_augment_section_is_the_plain_task(tiny_blender_scene):
    task = _task(tiny_blender_scene, "nerf")
    assert task.augment is None
