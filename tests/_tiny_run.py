"""One tiny trained NGP run per test session, shared by the export and viewer tests (trained on first use)."""

from __future__ import annotations

from pathlib import Path

_CACHE: dict[str, Path] = {}


def tiny_trained_run(tmp_path_factory, scene: Path, steps: int = 40) -> Path:
    """Train ``steps`` steps of the tiny NGP of ``test_end_to_end`` on ``scene`` once; return the run directory."""
    key = f"{scene}:{steps}"
    if key not in _CACHE:
        from test_end_to_end import TINY_NGP

        from neural3d.cli.main import main

        root = tmp_path_factory.mktemp("tiny_run")
        cfg = root / "cfg.yaml"
        cfg.write_text(f"method: ngp\ndata: {{path: {scene}}}\noutput_dir: {root}\nexperiment: run\n")
        assert main(["train", str(cfg), f"trainer.steps={steps}", *TINY_NGP]) == 0
        _CACHE[key] = root / "run"
    return _CACHE[key]
