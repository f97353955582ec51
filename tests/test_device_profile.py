"""A scene config's ``cpu:`` section: merged over the file on a CPU run, ignored on a GPU run, never stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neural3d.config import ConfigError, build_config, load_config, to_yaml, trains_on_cpu

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

FILE = {
    "method": "ngp",
    "model": {"log2_hashmap_size": 19, "sampler": {"type": "grid", "n_samples": 32}},
    "trainer": {"steps": 20000, "batch_size": 8192},
    "cpu": {
        "model": {"log2_hashmap_size": 15, "sampler": {"type": "occupancy", "resolution": 32}},
        "trainer": {"steps": 900},
    },
}


def test_cpu_run_takes_the_section_gpu_run_ignores_it():
    cfg, model = build_config(FILE, ["device=cpu"])
    assert model.log2_hashmap_size == 15 and model.sampler.type == "occupancy" and model.sampler.resolution == 32
    assert cfg.trainer.steps == 900 and cfg.trainer.batch_size == 8192  # keys the section does not name stay
    cfg, model = build_config(FILE, ["device=cuda"])  # only built, nothing runs on the GPU
    assert model.log2_hashmap_size == 19 and model.sampler.type == "grid" and cfg.trainer.steps == 20000


def test_overrides_win_over_the_section_and_can_edit_it():
    cfg, model = build_config(FILE, ["device=cpu", "model.log2_hashmap_size=16", "cpu.trainer.steps=50"])
    assert model.log2_hashmap_size == 16 and cfg.trainer.steps == 50
    _, model = build_config(FILE, ["device=cpu", "model.sampler.type=grid"])  # a new type: its defaults
    assert model.sampler.type == "grid" and model.sampler.resolution == 64


def test_device_in_the_file_and_auto():
    cfg, _ = build_config({**FILE, "device": "cpu"})
    assert cfg.trainer.steps == 900
    cfg, _ = build_config(FILE)  # auto: follows the machine
    assert (cfg.trainer.steps == 900) == (not torch.cuda.is_available())
    assert trains_on_cpu("cpu") and not trains_on_cpu("cuda:1")
    assert trains_on_cpu("auto") == (not torch.cuda.is_available())


def test_the_built_config_keeps_no_section():
    cfg, _ = build_config(FILE, ["device=cpu"])
    assert "cpu" not in cfg and "cpu:" not in to_yaml(cfg)
    again, model = build_config(to_yaml_dict(cfg), ["device=cuda"])  # a stored run stays as it trained
    assert model.log2_hashmap_size == 15 and again.trainer.steps == 900


def to_yaml_dict(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg)


def test_bad_section_and_bad_keys_name_the_source():
    with pytest.raises(ConfigError, match=r"'cpu' must be a section"):
        build_config({**FILE, "cpu": 3}, ["device=cpu"])
    with pytest.raises(ConfigError, match=r"cpu:.*log2_hashmap_sise"):
        build_config({**FILE, "cpu": {"model": {"log2_hashmap_sise": 15}}}, ["device=cpu"])


@pytest.mark.parametrize("name", ["blender_ngp", "llff_ngp", "demo"])
def test_shipped_configs_are_smaller_on_a_cpu(name):
    _, gpu = load_config(CONFIGS / f"{name}.yaml", ["device=cuda"])
    cfg, cpu = load_config(CONFIGS / f"{name}.yaml", ["device=cpu"])
    assert cpu.log2_hashmap_size <= gpu.log2_hashmap_size and cpu.max_resolution <= gpu.max_resolution
    if name != "demo":  # the demo is CPU-sized for everyone
        assert cpu.log2_hashmap_size < gpu.log2_hashmap_size
