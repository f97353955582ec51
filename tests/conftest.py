"""Shared fixtures: tiny generated scenes (session-scoped, made once per test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def tiny_blender_scene(tmp_path_factory) -> Path:
    from neural3d.data.synthetic import write_blender_scene

    out = tmp_path_factory.mktemp("scenes") / "tiny_blender"
    write_blender_scene(out, seed=1, res=24, n_train=8, n_val=2, n_test=2, supersample=1)
    return out


@pytest.fixture(scope="session")
def tiny_llff_scene(tmp_path_factory) -> Path:
    from neural3d.data.synthetic import write_llff_scene

    out = tmp_path_factory.mktemp("scenes") / "tiny_llff"
    write_llff_scene(out, seed=2, res=32, n_images=9, supersample=1)
    return out
