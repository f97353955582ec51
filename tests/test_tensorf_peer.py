"""The race harness's image stand-in for TensoRF's LLFF loader (``benchmarks/tensorf_peer.py``): the peer is handed
the very pixels neural3d's LLFF loader reads from ``images_<factor>``, never a Lanczos resize of ``images_4``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
peer = pytest.importorskip("tensorf_peer")


def test_llff_stand_in_hands_over_neural3d_pixels_of_the_smaller_folder(tmp_path):
    from neural3d.data.images import load_image_stack

    rng = np.random.default_rng(0)
    for folder, size in (("images_4", (12, 8)), ("images_8", (6, 4))):
        (tmp_path / folder).mkdir()
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / folder / "image000.png")
    images = peer._LLFFImages(8)
    img = images.open(str(tmp_path / "images_4" / "image000.png")).convert("RGB").resize((6, 4), images.LANCZOS)
    expected, _, _ = load_image_stack([tmp_path / "images_8" / "image000.png"], keep_alpha=False)
    arr = np.asarray(img)
    assert arr.dtype == np.float32 and arr.shape == (4, 6, 3)
    np.testing.assert_array_equal(arr, expected[0])
    with pytest.raises(ValueError, match="asked"):
        img.resize((12, 8))  # TensoRF asking for another size is an error, not a silent resize
