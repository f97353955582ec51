"""The README gallery script (scripts/make_gallery.py): its README block, picture sheets and mesh picture."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
gallery = pytest.importorskip("make_gallery")

FIGURES = {
    "demo_step": 1200,
    "demo_test_psnr": 34.5,
    "demo_test_ssim": 0.98,
    "mesh": {"vertices": 10, "triangles": 20},
    "gnt_step": 300,
    "gnt_psnr": 19.5,
    "gnt_ssim": 0.7,
    "gnt_images": 4,
}


def test_readme_block_replaces_only_the_marked_text(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n\n{gallery.START}\nold\n{gallery.END}\n\n## rest\n")
    block = gallery.readme_block(FIGURES)
    gallery.update_readme(block, readme)
    text = readme.read_text()
    assert text.startswith("# top\n\n") and text.endswith("\n\n## rest\n") and "old" not in text
    for name in ("demo_orbit", "demo_compare", "demo_psnr", "demo_mesh", "gnt_unseen"):
        assert f"(docs/gallery/{name}.png)" in text
    assert "34.50 dB" in text and "19.50 dB" in text and "300 steps" in text
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="README.md"):
        gallery.update_readme(block, readme)


def test_orbit_strip_puts_colour_above_depth(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):  # rgb half red, depth half blue, 8x8 each
        img = np.zeros((8, 16, 3), np.uint8)
        img[:, :8, 0] = 255
        img[:, 8:, 2] = 255
        Image.fromarray(img).save(frames / f"{i:04d}.png")
    out = np.asarray(Image.open(gallery.orbit_strip(frames, tmp_path / "strip.png")))
    assert out.shape == (8 + 2 + 8, 3 * 8 + 2 * 2, 3)  # two rows, 2 px gaps
    assert (out[:8, :8] == [255, 0, 0]).all() and (out[10:, :8] == [0, 0, 255]).all()
    assert (out[8:10] == 255).all()  # the white gap
    with pytest.raises(FileNotFoundError, match="no rendered frames"):
        gallery.orbit_strip(tmp_path / "none", tmp_path / "x.png")
