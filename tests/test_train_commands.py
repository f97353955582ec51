"""Every training command, one rule: the same flags, and N steps == N/2 + ``--resume`` bit for bit.

Per command: a straight run of 6 steps (checkpoints at 3 and 6); the step-6 checkpoint is deleted; the same
command without flags is refused (exit 2, naming ``--resume`` and ``--overwrite``); ``--resume`` continues
from step 3 to the same weights and the same logged losses; ``--overwrite`` starts again (same weights).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from neural3d.cli.main import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SCENE = ["device=cpu", "trainer.steps=6", "trainer.checkpoint_every=3", "trainer.log_every=1", "trainer.progress=false"]
TINY_NGP = [
    "model.n_levels=4",
    "model.log2_hashmap_size=10",
    "model.max_resolution=32",
    "model.sampler.type=occupancy",
    "model.sampler.resolution=16",
    "model.sampler.update_every=2",
    "model.sampler.step_size=0.08",
    "model.sampler.backend=torch",
    "model.hashgrid_backend=torch",
    "trainer.batch_size=128",
]
TINY_GNT = ["model.depth=2", "model.n_samples=8", "model.n_source_views=3", "trainer.batch_size=64"]
NID_MODEL = ["model.num_experts=8", "model.topk=4", "model.hidden_dim=16", "model.n_layers=2", "model.n_samples=8"]


def _ngp(tmp: Path, scene: Path) -> list[str]:
    ngp = TINY_NGP
    return ["train", str(CONFIGS / "blender_ngp.yaml"), f"data.path={scene}", f"output_dir={tmp}", "experiment=r"] + [
        *SCENE,
        *ngp,
    ]


TINY_TENSORF = [  # upsampling at 2 (in the step-3 checkpoint) and at 4 with the box shrinking (after resuming)
    "data.factor=1",
    "model.n_voxels_init=512",
    "model.n_voxels_final=4096",
    "model.upsample_steps=[2,4]",
    "model.shrink_step=4",
    "model.density_components=[2,2,2]",
    "model.app_components=[3,3,3]",
    "model.hidden_dim=16",
    "model.sampler.resolution=16",
    "model.sampler.update_every=2",
    "model.sampler.backend=torch",
    "trainer.batch_size=128",
]


def _tensorf(tmp: Path, scene: Path) -> list[str]:
    cfg = str(CONFIGS / "blender_tensorf.yaml")
    return ["train", cfg, f"data.path={scene}", f"output_dir={tmp}", "experiment=r", *SCENE, *TINY_TENSORF]


def _gnt(tmp: Path, scene: Path) -> list[str]:
    return ["train", str(CONFIGS / "gnt_blender.yaml"), f"data.path={scene}", f"output_dir={tmp}", "experiment=r"] + [
        *SCENE,
        *TINY_GNT,
    ]


def _gnt_cross_scene(tmp: Path, scene: Path) -> list[str]:
    family = [f"model.family.root={tmp / 'family'}", "model.family.n_scenes=2", "model.family.res=24"]
    unseen = [f"data.path={tmp / 'unseen'}", "data.synth.res=24", "data.synth.n_train=4", "data.synth.n_test=1"]
    cfg = str(CONFIGS / "gnt_generalizable.yaml")
    return ["train", cfg, f"output_dir={tmp}", "experiment=r", *unseen, *family, "model.family.n_train=4"] + [
        *SCENE,
        *TINY_GNT,
    ]


def _pointcloud(tmp: Path, scene: Path) -> list[str]:
    tiny = ["data.n_points=64", "model.n_centres=[16,8]", "model.depth=1", "data.synth_train_per_class=4"]
    return ["pointcloud", "train", str(CONFIGS / "pointcloud_synthetic.yaml"), f"output_dir={tmp}", "experiment=r"] + [
        *tiny,
        "data.synth_test_per_class=2",
        "batch_size=8",
        "steps=6",
        "checkpoint_every=3",
        "eval_every=0",
        "log_every=1",
        "progress=false",
        "device=cpu",
    ]


def _nid_dict(tmp: Path, scene: Path) -> list[str]:
    data = [f"data.folders=[{scene / 'train'}]", "data.synth_scenes=0", "data.image_size=16", "data.patch_size=8"]
    experts = ["experts.num_experts=8", "experts.hidden_dim=16", "experts.n_layers=1", "experts.n_fourier_features=16"]
    return ["nid", "train-dict", str(CONFIGS / "nid_lego.yaml"), f"output_dir={tmp / 'r'}", *data, *experts] + [
        "gate.topk=3",
        "steps=6",
        "warmup_steps=2",
        "batch_size=8",
        "log_every=1",
        "checkpoint_every=3",
        "device=cpu",
    ]


def _nid_family(tmp: Path, scene: Path) -> list[str]:
    family = [f"family={tmp / 'family'}", "n_scenes=2", "res=12", "n_train=3", "n_test=1"]
    return ["nid", "train-scenes", str(CONFIGS / "nid_family.yaml"), f"output_dir={tmp / 'r'}", *family] + [
        *NID_MODEL,
        "steps=6",
        "scenes_per_step=2",
        "rays_per_scene=32",
        "log_every=1",
        "checkpoint_every=3",
    ]


COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "ngp": _ngp,
    "tensorf": _tensorf,
    "gnt": _gnt,
    "gnt_cross_scene": _gnt_cross_scene,
    "pointcloud": _pointcloud,
    "nid_dict": _nid_dict,
    "nid_family": _nid_family,
}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "step_0000006.pt", weights_only=True)["model"]


def _losses(run: Path) -> list[tuple[str, str]]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [(r["step"], r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_same_flags_and_bit_identical_resume(name, tmp_path, tiny_blender_scene, capsys):
    argv = COMMANDS[name](tmp_path, tiny_blender_scene)
    run = tmp_path / "r"
    assert main(argv) == 0
    straight, straight_losses = _weights(run), _losses(run)
    assert len(straight_losses) == 6
    (run / "checkpoints" / "step_0000006.pt").unlink()
    capsys.readouterr()
    assert main(argv) == 2  # an existing run: the flags must say what to do
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert main([*argv, "--resume"]) == 0
    _assert_same_weights(straight, _weights(run))
    assert _losses(run) == straight_losses  # the rows after step 3 replaced by identical ones
    assert main([*argv, "--overwrite"]) == 0
    _assert_same_weights(straight, _weights(run))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000003.pt", "step_0000006.pt"]


def test_nid_train_dict_restart_is_a_deprecated_overwrite(tmp_path, tiny_blender_scene):
    argv = [a.replace("steps=6", "steps=2") for a in _nid_dict(tmp_path, tiny_blender_scene)]
    assert main(argv) == 0
    with pytest.warns(DeprecationWarning, match="--overwrite"):
        assert main([*argv, "--restart"]) == 0
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["step_0000002.pt"]
