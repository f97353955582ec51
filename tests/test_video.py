"""Tests for neural3d.media.video: colour maps, panels, mp4 / PNG writers (read back with imageio)."""

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from neural3d.media.video import (
    apply_colormap,
    colorize_depth,
    colorize_scalar,
    side_by_side,
    to_uint8,
    write_images,
    write_video,
)

# Entries of Google's published 256-entry Turbo LUT (index: sRGB float triplet).
TURBO_LUT = {
    0: (0.18995, 0.07176, 0.23217),
    32: (0.27628, 0.42118, 0.89123),
    64: (0.15844, 0.73551, 0.92305),
    96: (0.19659, 0.94901, 0.59466),
    128: (0.64362, 0.98999, 0.23356),
    160: (0.93301, 0.81236, 0.22667),
    192: (0.98360, 0.49291, 0.12849),
    224: (0.81608, 0.18462, 0.01809),
    255: (0.47960, 0.01583, 0.01055),
}


def test_turbo_close_to_published_lut():
    idx = torch.tensor(sorted(TURBO_LUT), dtype=torch.float64)
    rgb = apply_colormap(idx / 255.0, "turbo")
    ref = torch.tensor([TURBO_LUT[i] for i in sorted(TURBO_LUT)], dtype=torch.float32)
    assert rgb.shape == (len(TURBO_LUT), 3) and rgb.dtype == torch.float32
    # the polynomial approximation is within ~0.08 in the interior and ~0.13 at the ends of the LUT
    assert (rgb - ref)[1:-1].abs().max() < 0.08
    assert (rgb - ref).abs().max() < 0.13
    # at x = 0 the polynomial is its constant term
    np.testing.assert_allclose(rgb[0].numpy(), [0.13572138, 0.09140261, 0.10667330], atol=1e-6)
    assert bool(((rgb >= 0) & (rgb <= 1)).all())


def test_gray_and_clamping():
    v = torch.tensor([[-1.0, 0.25], [0.5, 2.0]])
    rgb = apply_colormap(v, "gray")
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[..., 1].numpy(), [[0, 0.25], [0.5, 1]])
    with pytest.raises(ValueError, match="unknown colormap"):
        apply_colormap(v, "jet")


def test_colorize_depth_range_mask_and_inverse():
    depth = torch.tensor([[2.0, 3.0], [4.0, 6.0]])
    rgb = colorize_depth(depth, near=2.0, far=6.0)

    def turbo(x):
        return apply_colormap(torch.tensor(x))

    torch.testing.assert_close(rgb[0, 0], turbo(0.0))
    torch.testing.assert_close(rgb[1, 1], turbo(1.0))
    torch.testing.assert_close(rgb[0, 1], turbo(0.25))
    # defaults: near / far from the data
    torch.testing.assert_close(colorize_depth(depth), rgb)
    # inverse depth: disparity (1/d - 1/far) / (1/near - 1/far); near -> 1, far -> 0
    inv = colorize_depth(depth, near=2.0, far=6.0, inverse=True)
    torch.testing.assert_close(inv[0, 0], turbo(1.0))
    torch.testing.assert_close(inv[1, 0], turbo((1 / 4 - 1 / 6) / (1 / 2 - 1 / 6)))
    # mask and non-finite depths -> background; near/far derived from the valid pixels only
    depth2 = torch.tensor([[2.0, float("inf")], [4.0, 100.0]])
    mask = torch.tensor([[True, True], [True, False]])
    out = colorize_depth(depth2, mask=mask, background=0.0)
    torch.testing.assert_close(out[0, 1], torch.zeros(3))
    torch.testing.assert_close(out[1, 1], torch.zeros(3))
    torch.testing.assert_close(out[1, 0], turbo(1.0))  # far = 4 (100 is masked out)
    # numpy input and [H, W, 1] shape
    torch.testing.assert_close(colorize_depth(depth.numpy()[..., None], 2.0, 6.0), rgb)
    with pytest.raises(ValueError, match="far > near"):
        colorize_depth(depth, near=3.0, far=3.0)
    with pytest.raises(ValueError, match="expected a map"):
        colorize_depth(torch.zeros(2, 2, 3))


def test_colorize_scalar_opacity():
    acc = torch.tensor([[0.0, 0.5], [1.0, 0.2]])
    rgb = colorize_scalar(acc)
    torch.testing.assert_close(rgb, acc.unsqueeze(-1).expand(2, 2, 3))
    rgb_t = colorize_scalar(acc, vmin=0.0, vmax=0.5, cmap="turbo")
    torch.testing.assert_close(rgb_t[1, 0], apply_colormap(torch.tensor(1.0)))  # clamped


def test_side_by_side_and_to_uint8():
    a = torch.rand(5, 4, 3)
    b = (np.random.default_rng(0).random((5, 2, 3)) * 255).astype(np.uint8)
    c = torch.rand(5, 3)  # grey
    panel = side_by_side([a, b, c])
    assert panel.shape == (5, 9, 3) and panel.dtype == torch.float32
    torch.testing.assert_close(panel[:, :4], a)
    torch.testing.assert_close(panel[:, 4:6], torch.from_numpy(b).float() / 255)
    torch.testing.assert_close(panel[:, 6:, 2], c)
    np.testing.assert_array_equal(to_uint8(b), b)
    np.testing.assert_array_equal(to_uint8(torch.tensor([[[0.0, 0.5, 1.2]]])), [[[0, 128, 255]]])
    with pytest.raises(ValueError, match="same height"):
        side_by_side([a, torch.rand(4, 4, 3)])
    with pytest.raises(ValueError, match="at least one"):
        side_by_side([])


def _colour_frames(n, h, w):
    for i in range(n):
        frame = np.zeros((h, w, 3), dtype=np.float32)
        frame[..., 0] = i / (n - 1)
        frame[..., 1] = 0.5
        frame[..., 2] = 1.0 - i / (n - 1)
        yield frame


def test_write_video_roundtrip(tmp_path):
    n, h, w = 12, 30, 41  # odd width: padded to 42
    path = tmp_path / "sub" / "clip.mp4"
    assert write_video(path, _colour_frames(n, h, w), fps=24) == n
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        frames = list(iter(reader))  # list(reader) would ask len(), infinite for an ffmpeg reader
        fps = reader.get_meta_data()["fps"]
    finally:
        reader.close()
    assert len(frames) == n
    assert frames[0].shape == (h, w + 1, 3)
    assert abs(fps - 24) < 1e-6
    expected = list(_colour_frames(n, h, w))
    for got, exp in zip(frames, expected):
        mean_got = got.reshape(-1, 3).mean(0) / 255.0
        np.testing.assert_allclose(mean_got, exp.reshape(-1, 3).mean(0), atol=0.03)


def test_write_video_accepts_uint8_torch_frames(tmp_path):
    frames = [torch.full((16, 16, 3), 200, dtype=torch.uint8) for _ in range(3)]
    path = tmp_path / "u8.mp4"
    write_video(path, iter(frames), fps=10)
    got = imageio.mimread(str(path), format="FFMPEG")
    assert len(got) == 3 and abs(float(np.mean(got[1])) - 200) < 3


def test_write_video_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "clip.gif", _colour_frames(2, 8, 8))
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [])
    with pytest.raises(ValueError, match="frame 1 has shape"):
        write_video(tmp_path / "mixed.mp4", [np.zeros((8, 8, 3)), np.zeros((8, 10, 3))])
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "f.mp4", [np.zeros((8, 8, 3))], fps=0)
    import imageio_ffmpeg

    def no_ffmpeg():
        raise RuntimeError("No ffmpeg exe could be found")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_ffmpeg)
    with pytest.raises(RuntimeError, match="no ffmpeg executable"):
        write_video(tmp_path / "x.mp4", [np.zeros((8, 8, 3))])


def test_write_images_roundtrip(tmp_path):
    frames = [np.random.default_rng(i).random((7, 9, 3)).astype(np.float32) for i in range(3)]
    paths = write_images(tmp_path / "pngs", frames, prefix="rgb")
    assert [p.name for p in paths] == ["rgb_0000.png", "rgb_0001.png", "rgb_0002.png"]
    for p, f in zip(paths, frames):
        np.testing.assert_array_equal(imageio.imread(p), to_uint8(f))
