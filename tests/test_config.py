"""Config validation: every shipped config loads; bad keys, types and YAML give clear errors."""

from pathlib import Path

import pytest

from neural3d.config import ConfigError, build_config, load_config, load_yaml
from neural3d.methods.registry import available_methods

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_validate(path):
    if load_yaml(path).get("method") not in available_methods():
        pytest.skip("not a scene-training config (nid/pointcloud configs are validated by their own tests)")
    cfg, model_cfg = load_config(path)
    assert cfg.method in available_methods()
    assert model_cfg is not None


def test_required_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {"demo", "blender_nerf", "blender_ngp", "llff_nerf", "llff_ngp"} <= names


@pytest.mark.parametrize(
    "override,needle",
    [
        ("trainer.stepz=3", "trainer.stepz"),
        ("model.n_samplez=3", "model.n_samplez"),
        ("trainer.steps=abc", "trainer.steps"),
        ("data.llffhold=1.5", "data.llffhold"),
    ],
)
def test_bad_override_names_key_and_lists_valid_keys(override, needle):
    with pytest.raises(ConfigError) as e:
        build_config({"method": "ngp"}, [override])
    assert needle in str(e.value) and "Valid keys" in str(e.value)


def test_bool_strings_parse_correctly():
    cfg, _ = build_config({"method": "nerf"}, ["model.use_viewdirs=false", "data.spherify=False"])
    assert cfg.model.use_viewdirs is False and cfg.data.spherify is False


def test_unknown_method_and_malformed_inputs(tmp_path):
    with pytest.raises(ValueError, match="registered methods: .*nerf, ngp"):
        build_config({"method": "nope"})
    with pytest.raises(ConfigError, match="key=value"):
        build_config({}, ["trainer.steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: ngp\ntrainer: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
