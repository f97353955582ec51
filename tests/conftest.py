"""Shared fixtures: tiny generated scenes (session-scoped, made once per test run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Run the suite with one intra-op thread.

    The tests use small tensors, which gain little from threads, and on a machine where other jobs
    keep the cores busy, oversubscribed OpenMP threads made steps 15-25x slower than one thread.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
