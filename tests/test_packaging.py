"""The wheel as a user gets it: build it, install it into a fresh venv outside the repository, run the CLI.

The wheel is built offline from a copy of the sources (``pip wheel --no-deps --no-build-isolation``, with the
setuptools of the running environment: nothing is downloaded, and no stale ``build/`` of the checkout can leak
into it). The fresh venv gets the wheel only; its dependencies (torch, ...) come from the running environment
through a ``.pth`` file instead of a reinstall, so the test checks that the ``neural3d`` imported there is the
wheel's. ``neural3d --help`` and a tiny ``neural3d demo`` then run from an unrelated directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what setup.py / pyproject.toml build from (pyproject's readme, setup.py's package_dir)
SOURCES = ("pyproject.toml", "setup.py", "README.md", "neural3d", "viewer", "configs")
# `neural3d demo` with small settings: a 16 px scene of 4 views, 5 steps of a small hash grid, a 2-frame orbit
DEMO_OVERRIDES = (
    "data.synth.res=16",
    "data.synth.n_train=4",
    "data.synth.n_val=1",
    "data.synth.n_test=1",
    "trainer.steps=5",
    "trainer.batch_size=128",
    "trainer.checkpoint_every=5",
    "model.sampler.resolution=16",
    "model.sampler.n_coarse=32",
    "model.sampler.n_samples=8",
    "model.n_levels=4",
    "model.log2_hashmap_size=10",
    "model.max_resolution=32",
    "render.n_frames=2",
)

pytestmark = pytest.mark.slow  # about 30 s on 2 busy cores: build, install, two CLI runs


def _run(cmd, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def _repo_modules(folder: Path, package: str) -> set[str]:
    return {
        f"{package}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*.py") if "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        + ["-w", work / "dist", src],
        cwd=work,
    )
    (whl,) = (work / "dist").glob("neural3d-*.whl")
    return whl


def test_wheel_metadata(wheel):
    meta = zipfile.ZipFile(wheel).read("neural3d-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta and "Requires-Dist: torch>=2.1" in meta
    assert "Requires-Python: >=3.10" in meta


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh venv (outside the repository) holding the wheel; dependencies through a .pth file."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    assert ROOT not in env_dir.parents
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], env_dir)
    site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env_dir).stdout.strip()
    )
    # after the install, so pip saw no neural3d: the running environment's packages (torch, numpy, ...) come after
    # the venv's own site-packages on sys.path, and this directory's .pth files (the editable neural3d) are not read
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_neural3d_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # oversubscribed threads make tiny steps 15x slower
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    return {"dir": env_dir, "python": python, "site": site, "env": env, "cwd": elsewhere}


def test_wheel_ships_viewer_and_configs_under_neural3d(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"neural3d", "neural3d-0.1.0.dist-info"}, f"unexpected top-level entries: {sorted(top)}"
    assert zipfile.ZipFile(wheel).read("neural3d-0.1.0.dist-info/top_level.txt").decode().split() == ["neural3d"]
    py = {n for n in names if n.endswith(".py")}
    expected = _repo_modules(ROOT / "neural3d", "neural3d") | _repo_modules(ROOT / "viewer", "neural3d/viewer")
    expected |= _repo_modules(ROOT / "configs", "neural3d/configs")
    assert expected - py == set(), "modules missing from the wheel (a folder without __init__.py?)"
    assert py - expected == set(), "modules in the wheel that the checkout does not have"
    configs = {f"neural3d/configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    assert "neural3d/configs/demo.yaml" in configs and configs <= names
    assert {"neural3d/fields/backends/cpu_hash.c", "neural3d/fields/backends/cpu_vm.c"} <= names  # the C kernels


def test_installed_package_is_the_wheel(installed):
    code = (
        "import importlib.util, neural3d, neural3d.viewer\n"
        "from neural3d.cli.demo import default_demo_config\n"
        "print(neural3d.__file__); print(neural3d.viewer.__file__); print(default_demo_config())\n"
        "print(importlib.util.find_spec('viewer'))\n"
    )
    lines = _run([installed["python"], "-c", code], installed["cwd"], installed["env"]).stdout.split()
    site = installed["site"]
    assert Path(lines[0]) == site / "neural3d" / "__init__.py"
    assert Path(lines[1]) == site / "neural3d" / "viewer" / "__init__.py"
    assert Path(lines[2]) == site / "neural3d" / "configs" / "demo.yaml" and Path(lines[2]).is_file()
    assert lines[3] == "None"  # no top-level `viewer` importable
    assert not (site / "viewer").exists() and not (site / "configs").exists()
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".pth")) == [
        "neural3d",
        "neural3d-0.1.0.dist-info",
    ]


def test_cli_help_and_tiny_demo_from_another_directory(installed):
    exe = installed["dir"] / "bin" / "neural3d"
    cwd, env = installed["cwd"], installed["env"]
    help_text = _run([exe, "--help"], cwd, env).stdout
    for command in ("train", "eval", "render", "demo", "gnt", "nid", "view", "export"):
        assert command in help_text
    out = _run([exe, "demo", *DEMO_OVERRIDES], cwd, env, timeout=240).stdout
    assert "[demo] test PSNR" in out and "orbit video" in out
    run = cwd / "runs" / "demo"
    assert (cwd / "data" / "demo" / "transforms_train.json").is_file()
    for path in ("config.yaml", "run.json", "checkpoints/step_0000005.pt", "eval/test/rgb/r_0.png"):
        assert (run / path).is_file(), path
    assert (run / "renders" / "orbit.mp4").stat().st_size > 0
