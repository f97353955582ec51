"""NGP's typed sampler sections (a ``type``-keyed union in neural3d.config) and the errors for the old flat keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from neural3d.config import ConfigError, build_config, config_class, load_config
from neural3d.methods.ngp.config import RENAMED_KEYS
from neural3d.samplers.config import (
    EVAL_SAMPLER_VARIANTS,
    SAMPLER_VARIANTS,
    GridSamplerConfig,
    ImportanceSamplerConfig,
    OccupancySamplerConfig,
    ProposalSamplerConfig,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _model(*overrides, yaml_model=None):
    user = {"method": "ngp"} if yaml_model is None else {"method": "ngp", "model": yaml_model}
    return build_config(user, list(overrides))[1]


def test_default_sections_are_typed():
    m = _model()
    assert config_class(m.sampler) is GridSamplerConfig and m.sampler.type == "grid"
    assert m.sampler.decay == 0.9 and m.eval_sampler.type == "train"


@pytest.mark.parametrize(
    "kind, cls",
    [
        ("occupancy", OccupancySamplerConfig),
        ("proposal", ProposalSamplerConfig),
        ("importance", ImportanceSamplerConfig),
    ],
)
def test_type_override_picks_the_section_dataclass(kind, cls):
    m = _model(f"model.sampler.type={kind}")
    assert config_class(m.sampler) is cls and m.sampler.type == kind


def test_yaml_section_then_overrides_merge_and_a_new_type_starts_from_its_defaults():
    yaml_model = {"sampler": {"type": "grid", "n_coarse": 256, "resolution": 128}}
    m = _model("model.sampler.n_samples=8", yaml_model=yaml_model)
    assert (m.sampler.type, m.sampler.n_coarse, m.sampler.resolution, m.sampler.n_samples) == ("grid", 256, 128, 8)
    m = _model("model.sampler.type=grid", yaml_model=yaml_model)  # same type: the YAML settings stay
    assert m.sampler.n_coarse == 256
    m = _model("model.sampler.type=occupancy", "model.sampler.levels=2", yaml_model=yaml_model)
    assert m.sampler.type == "occupancy" and m.sampler.levels == 2 and m.sampler.resolution == 64  # its default
    m = _model(yaml_model={"sampler": {"type": "proposal", "round_samples": [16], "max_resolutions": [32]}})
    assert list(m.sampler.round_samples) == [16] and m.sampler.interlevel_loss_mult == 1.0


def test_eval_sampler_importance_keeps_the_old_eval_defaults():
    m = _model("model.eval_sampler.type=importance")
    assert (m.eval_sampler.n_coarse, m.eval_sampler.n_samples, m.eval_sampler.include_coarse) == (64, 64, True)


@pytest.mark.parametrize("old, new", sorted(RENAMED_KEYS.items()))
def test_every_old_flat_key_fails_naming_its_new_key(old, new):
    with pytest.raises(ConfigError, match=rf"'model\.{old}' was removed: use 'model\.{new.split()[0]}'"):
        _model(f"model.{old}=1")


@pytest.mark.parametrize("key", ["sampler", "eval_sampler"])
def test_a_sampler_given_as_a_string_names_the_section_key(key):
    with pytest.raises(ConfigError, match=rf"write model\.{key}\.type=importance"):
        _model(f"model.{key}=importance")
    with pytest.raises(ConfigError, match=rf"write model\.{key}\.type=importance"):
        _model(yaml_model={key: "importance"})


def test_unknown_type_and_keys_of_another_type_are_rejected():
    with pytest.raises(ConfigError, match="model.sampler.type must be one of grid, importance"):
        _model("model.sampler.type=marching")
    with pytest.raises(ConfigError, match=r"model\.sampler\.levels.*Valid keys here: .*n_coarse"):
        _model("model.sampler.levels=2")  # a key of `occupancy` in the default `grid` section


# (sampler type, key in its section, a bad value, the allowed values named in the error)
SECTION_OPTIONS = [
    ("grid", "weighting", "even", "'occupancy', 'density'"),
    ("occupancy", "backend", "cuda", "'auto', 'torch', 'cpu', 'nerfacc'"),
    ("proposal", "spacing", "log", "'uniform', 'lindisp', 'contracted'"),
]


@pytest.mark.parametrize("kind, key, bad, allowed", SECTION_OPTIONS)
def test_options_inside_a_sampler_section_are_checked_against_its_dataclass(kind, key, bad, allowed):
    """The section's dataclass is known only once ``type`` is resolved; its Literal options are checked then."""
    expected = rf"^overrides: 'model\.sampler\.{key}' must be one of \[{allowed}\], got '{bad}'$"
    with pytest.raises(ConfigError, match=expected):
        _model(f"model.sampler.type={kind}", f"model.sampler.{key}={bad}")
    with pytest.raises(ConfigError, match=rf"^config: 'model\.sampler\.{key}' must be one of \[{allowed}\]"):
        _model(yaml_model={"sampler": {"type": kind, key: bad}})
    for value in allowed.replace("'", "").split(", "):
        assert _model(f"model.sampler.type={kind}", f"model.sampler.{key}={value}").sampler[key] == value


def test_replace_checks_the_options_of_the_sections_it_reaches():
    from neural3d.config import replace

    cfg, model_cfg = build_config({"method": "ngp"}, ["model.sampler.type=occupancy"])
    options = r"\['auto', 'torch', 'cpu', 'nerfacc'\]"
    with pytest.raises(ConfigError, match=r"'model\.sampler\.backend' must be one of " + options):
        replace(cfg, {"model": {"sampler": {"backend": "cuda"}}})
    with pytest.raises(ConfigError, match=r"'model\.contraction' must be one of \['aabb', 'inf', 'l2'\]"):
        replace(cfg, {"model": {"contraction": "sphere"}})
    with pytest.raises(ConfigError, match=r"'sampler\.backend' must be one of"):
        replace(model_cfg, {"sampler": {"backend": "cuda"}})
    assert replace(cfg, {"model": {"sampler": {"backend": "torch"}}}).model.sampler.backend == "torch"
    assert cfg.model.sampler.backend == "auto"


def test_literal_options_match_the_components_that_use_them():
    from neural3d.config import choice_fields
    from neural3d.fields.backends import BACKENDS as HASHGRID_BACKENDS
    from neural3d.fields.contraction import CONTRACTIONS
    from neural3d.methods.ngp.config import NGPModelConfig
    from neural3d.samplers.density_grid import GridImportanceSampler
    from neural3d.samplers.occupancy import BACKENDS as MARCHING_BACKENDS
    from neural3d.samplers.spacing import SPACINGS

    ngp = choice_fields(NGPModelConfig)
    assert set(ngp["contraction"]) == set(CONTRACTIONS) and set(ngp["hashgrid_backend"]) == set(HASHGRID_BACKENDS)
    assert set(choice_fields(OccupancySamplerConfig)["backend"]) == set(MARCHING_BACKENDS)
    assert set(choice_fields(ProposalSamplerConfig)["spacing"]) == set(SPACINGS)
    for weighting in choice_fields(GridSamplerConfig)["weighting"]:  # every allowed value is accepted ...
        GridImportanceSampler(n_coarse=4, n_samples=4, weighting=weighting)
    with pytest.raises(ValueError):  # ... and the component still refuses others (a section made by hand)
        GridImportanceSampler(n_coarse=4, n_samples=4, weighting="even")
    for kind, section in {**SAMPLER_VARIANTS, **EVAL_SAMPLER_VARIANTS}.items():  # `type` names its section
        assert choice_fields(type(section))["type"] == (kind,)


def test_proposal_rounds_and_resolutions_must_pair():
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.ngp.model import NGPModel

    m = _model(
        "model.sampler.type=proposal", "model.sampler.round_samples=[16,8]", "model.sampler.max_resolutions=[32]"
    )
    with pytest.raises(ValueError, match="max_resolutions needs one entry per round"):
        NGPModel(m, scene=SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.5, 3.0))


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml") if "method: ngp" in p.read_text()))
def test_every_shipped_ngp_config_builds(name):
    load_config(CONFIGS / name)


def test_a_saved_config_round_trips(tmp_path):
    cfg, m = load_config(CONFIGS / "blender_ngp.yaml", ["model.sampler.type=occupancy", "model.sampler.levels=2"])
    (tmp_path / "c.yaml").write_text(OmegaConf.to_yaml(cfg))
    again = load_config(tmp_path / "c.yaml")[1]
    assert OmegaConf.to_container(again) == OmegaConf.to_container(m)


@pytest.mark.parametrize(
    "kind, old_prefix, new_prefix",
    [
        ("grid", "grid.", "sampler.grid."),
        ("occupancy", "occupancy.", "sampler."),
        ("proposal", "proposal.", "sampler."),
    ],
)
def test_checkpoints_with_the_old_sampler_names_load(kind, old_prefix, new_prefix):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.ngp.model import NGPModel

    small = ["model.n_levels=2", "model.log2_hashmap_size=8", "model.max_resolution=16", f"model.sampler.type={kind}"]
    scene = SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.5, 3.0)
    a, b = NGPModel(_model(*small), scene=scene), NGPModel(_model(*small), scene=scene)
    state = a.state_dict()
    old = {(old_prefix + k[len(new_prefix) :] if k.startswith(new_prefix) else k): v for k, v in state.items()}
    assert any(k.startswith(old_prefix) for k in old) and old.keys() != state.keys()
    b.load_state_dict(old)
    for k, v in b.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_upgrade_legacy_maps_a_stored_flat_section_to_the_sampler_sections():
    from neural3d.methods.ngp.config import _LEGACY_SECTIONS, upgrade_legacy

    assert {k for table in _LEGACY_SECTIONS.values() for k in table} | {"eval_n_coarse", "eval_n_fine"} == set(
        RENAMED_KEYS
    )
    old = {
        "sampler": "occupancy",
        "occ_levels": 2,
        "grid_resolution": 32,
        "marching_backend": "torch",
        "n_coarse": 64,  # another sampler's setting: dropped
        "proposal_samples": [8],
        "eval_sampler": "importance",
        "eval_n_coarse": 16,
        "eval_n_fine": 8,
        "n_levels": 4,
    }
    m = _model(yaml_model=upgrade_legacy(old))
    assert (m.sampler.type, m.sampler.levels, m.sampler.resolution, m.sampler.backend) == ("occupancy", 2, 32, "torch")
    assert (m.eval_sampler.n_coarse, m.eval_sampler.n_samples, m.eval_sampler.include_coarse) == (16, 8, True)
    assert m.n_levels == 4
    assert upgrade_legacy({"sampler": {"type": "grid"}}) == {"sampler": {"type": "grid"}}  # today's shape: unchanged


def test_a_run_saved_before_the_sampler_sections_loads(tmp_path, tiny_blender_scene):
    import neural3d
    from neural3d.training import checkpoint as ckpt
    from neural3d.training.trainer import Trainer

    cfg, _ = build_config(
        {"method": "ngp", "data": {"path": str(tiny_blender_scene)}, "output_dir": str(tmp_path), "experiment": "old"},
        ["model.n_levels=2", "model.log2_hashmap_size=8", "model.max_resolution=16", "model.sampler.type=occupancy"]
        + ["model.sampler.resolution=8", "trainer.steps=2", "trainer.batch_size=32", "trainer.progress=false"],
    )
    tr = Trainer(cfg, overwrite=True)
    tr.train()
    path = ckpt.latest_checkpoint(tr.run_dir)
    state = torch.load(path, weights_only=True)
    section = {k: v for k, v in state["config"]["model"].items() if k not in ("sampler", "eval_sampler")}
    state["config"]["model"] = {**section, "sampler": "occupancy", "grid_resolution": 8, "eval_sampler": "train"}
    state["model"] = {("occupancy." + k[8:] if k.startswith("sampler.") else k): v for k, v in state["model"].items()}
    torch.save(state, path)
    loaded = neural3d.load(tr.run_dir, device="cpu")
    assert loaded.model.sampler.grid.resolution == 8
    assert torch.equal(loaded.model.sampler.grid.binaries, tr.model.sampler.grid.binaries)


def test_every_sampler_section_has_a_builder():
    from neural3d.samplers.base import Sampler
    from neural3d.samplers.config import _BUILDERS, SAMPLER_VARIANTS, build_sampler

    assert set(_BUILDERS) == set(SAMPLER_VARIANTS)
    for kind, section in SAMPLER_VARIANTS.items():
        assert section.type == kind
        assert isinstance(build_sampler(section, aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), Sampler)
    with pytest.raises(ValueError, match="unknown sampler type"):
        build_sampler(OmegaConf.create({"type": "train"}), aabb=torch.zeros(2, 3))
