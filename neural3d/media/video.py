"""Visualisation and video output: depth / scalar colour maps, side-by-side panels, mp4 and PNG writers.

Frames are images [H, W, 3], either float in [0, 1] (torch or NumPy) or uint8. Colour-mapping
functions return float32 torch tensors [H, W, 3] on the input's device. Writers accept any iterable
of frames and stream them (the whole video is never held in memory).

Colour maps: "turbo" (Google's Turbo, via its published degree-5 polynomial approximation by
Ruofei Du, Apache-2.0) and "gray".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "apply_colormap",
    "colorize_depth",
    "colorize_scalar",
    "side_by_side",
    "to_uint8",
    "write_images",
    "write_video",
]

Frame = torch.Tensor | np.ndarray

# Turbo polynomial coefficients, c0 + c1 x + ... + c5 x^5, rows R, G, B.
_TURBO_COEFFS = (
    (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
    (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
    (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
)
_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")


def apply_colormap(values: torch.Tensor, cmap: str = "turbo") -> torch.Tensor:
    """Map values in [0, 1] (clamped) to RGB.

    Args:
        values: [*shape] float tensor.
        cmap: "turbo" or "gray".

    Returns:
        rgb: [*shape, 3] float32 in [0, 1], on values' device.
    """
    x = values.float().clamp(0.0, 1.0)
    if cmap in ("gray", "grey"):
        return x.unsqueeze(-1).expand(*x.shape, 3).clone()
    if cmap != "turbo":
        raise ValueError(f"unknown colormap {cmap!r}; expected 'turbo' or 'gray'")
    coeffs = torch.tensor(_TURBO_COEFFS, dtype=torch.float32, device=x.device)  # [3, 6]
    powers = x.unsqueeze(-1) ** torch.arange(6, dtype=torch.float32, device=x.device)  # [*shape, 6]
    return (powers @ coeffs.T).clamp(0.0, 1.0)


def colorize_scalar(
    values: Frame,
    *,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "gray",
    mask: Frame | None = None,
    background: float = 1.0,
) -> torch.Tensor:
    """Colour a scalar map (e.g. accumulated opacity) linearly between vmin and vmax.

    Args:
        values: [H, W] or [H, W, 1] scalars.
        vmin, vmax: values mapped to the ends of the colormap (clamped outside).
        cmap: "gray" (default) or "turbo".
        mask: optional [H, W] (bool / {0, 1}); pixels outside get ``background``.
        background: grey level of masked-out pixels.

    Returns:
        rgb: [H, W, 3] float32 in [0, 1].
    """
    v = _as_map(values, "values")
    if not vmax > vmin:
        raise ValueError(f"colorize_scalar: need vmax > vmin, got vmin={vmin}, vmax={vmax}")
    rgb = apply_colormap((v - vmin) / (vmax - vmin), cmap)
    return _apply_mask(rgb, mask, background)


def colorize_depth(
    depth: Frame,
    near: float | None = None,
    far: float | None = None,
    cmap: str = "turbo",
    mask: Frame | None = None,
    *,
    inverse: bool = False,
    background: float = 1.0,
) -> torch.Tensor:
    """Colour a depth map.

    The colour coordinate is ``(depth - near) / (far - near)`` (near = bottom of the colormap, blue for
    turbo), or with ``inverse=True`` the disparity ``(1/depth - 1/far) / (1/near - 1/far)`` (near = top,
    red for turbo; spreads the colours over nearby geometry). ``near`` / ``far`` default to the min /
    max of the finite (and masked-in) depths.

    Args:
        depth: [H, W] or [H, W, 1] depths (> 0 when ``inverse``).
        near, far: colour range; values outside are clamped.
        cmap: "turbo" (default) or "gray".
        mask: optional [H, W]; pixels outside (and non-finite depths) get ``background``.
        inverse: colour by inverse depth.
        background: grey level of masked-out pixels.

    Returns:
        rgb: [H, W, 3] float32 in [0, 1].
    """
    d = _as_map(depth, "depth").double()
    valid = torch.isfinite(d)
    if mask is not None:
        valid = valid & _as_map(mask, "mask").to(d.device).bool()
    if near is None or far is None:
        if not bool(valid.any()):
            raise ValueError("colorize_depth: no valid depth to derive near/far from; pass near and far")
        near = float(d[valid].min()) if near is None else near
        far = float(d[valid].max()) if far is None else far
        if not far > near:  # a flat depth map (e.g. an empty view): any range shows it as one colour
            far = near + max(abs(near), 1.0) * 1e-3
    if not far > near or (inverse and near <= 0):
        raise ValueError(f"colorize_depth: need far > near (> 0 if inverse), got near={near}, far={far}")
    d = torch.where(valid, d, torch.full_like(d, far))
    if inverse:
        x = (1.0 / d.clamp_min(near) - 1.0 / far) / (1.0 / near - 1.0 / far)
    else:
        x = (d - near) / (far - near)
    rgb = apply_colormap(x, cmap)
    return _apply_mask(rgb, valid, background)


def side_by_side(frames: Sequence[Frame]) -> torch.Tensor:
    """Concatenate images horizontally.

    Args:
        frames: list of [H, W_i, 3] (or [H, W_i] grey) images, float in [0, 1] or uint8.

    Returns:
        panel: [H, sum W_i, 3] float32 on the first frame's device.
    """
    if len(frames) == 0:
        raise ValueError("side_by_side: need at least one frame")
    imgs = [_as_float_rgb(f, f"frames[{i}]") for i, f in enumerate(frames)]
    heights = {img.shape[0] for img in imgs}
    if len(heights) != 1:
        raise ValueError(f"side_by_side: all frames need the same height, got {[img.shape[0] for img in imgs]}")
    device = imgs[0].device
    return torch.cat([img.to(device) for img in imgs], dim=1)


def to_uint8(frame: Frame, name: str = "frame") -> np.ndarray:
    """[H, W, 3] (or [H, W]) float in [0, 1] / uint8 image -> NumPy uint8 [H, W, 3] (rounded, clipped)."""
    img = _as_float_rgb(frame, name)
    img = torch.nan_to_num(img, nan=0.0).clamp(0.0, 1.0)
    return (img * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def write_video(path: str | Path, frames: Iterable[Frame], fps: float = 30, *, quality: float = 8.0) -> int:
    """Encode frames to an H.264 video (libx264, yuv420p) with imageio + imageio-ffmpeg.

    Odd widths / heights are padded to even by repeating the last row / column (yuv420p needs
    even sizes); no other resizing is done.

    Args:
        path: output file, suffix .mp4 (or .m4v / .mov / .mkv); parent folders are created.
        frames: iterable of [H, W, 3] float in [0, 1] or uint8, all the same size.
        fps: frames per second.
        quality: imageio-ffmpeg quality 0..10 (10 = best).

    Returns:
        n_frames written.
    """
    path = Path(path)
    if path.suffix.lower() not in _VIDEO_SUFFIXES:
        raise ValueError(f"write_video: unsupported extension for {path}; use one of {_VIDEO_SUFFIXES}")
    if not fps > 0:
        raise ValueError(f"write_video: fps must be > 0, got {fps}")
    open_writer = _ffmpeg_writer_factory(quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer, size, count = None, None, 0
    try:
        for i, frame in enumerate(frames):
            img = to_uint8(frame, f"frame {i}")
            if size is None:
                size = img.shape
                writer = open_writer(path, fps)
            elif img.shape != size:
                raise ValueError(f"write_video: frame {i} has shape {img.shape}, expected {size} like frame 0")
            writer.append_data(_pad_even(img))
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ValueError(f"write_video: no frames given for {path}")
    return count


def write_images(
    directory: str | Path, frames: Iterable[Frame], prefix: str = "frame", *, start: int = 0
) -> list[Path]:
    """Write frames as PNGs ``{directory}/{prefix}_{index:04d}.png``.

    Args:
        directory: output folder (created).
        frames: iterable of [H, W, 3] float in [0, 1] or uint8.
        prefix: file name prefix.
        start: index of the first frame.

    Returns:
        paths of the written files, in order.
    """
    import imageio.v2 as imageio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames, start=start):
        path = directory / f"{prefix}_{i:04d}.png"
        imageio.imwrite(path, to_uint8(frame, f"frame {i}"))
        paths.append(path)
    return paths


def _ffmpeg_writer_factory(quality: float):
    """Return ``open_writer(path, fps) -> imageio writer`` or raise RuntimeError if imageio / ffmpeg are unavailable."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg
    except ImportError as exc:
        raise RuntimeError(
            "write_video needs the 'imageio' and 'imageio-ffmpeg' packages (pip install imageio imageio-ffmpeg)"
        ) from exc
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # no bundled binary and none on PATH / IMAGEIO_FFMPEG_EXE
        raise RuntimeError(
            "write_video: no ffmpeg executable found; install imageio-ffmpeg with its bundled binary or set "
            f"IMAGEIO_FFMPEG_EXE to an ffmpeg binary ({exc})"
        ) from exc

    def open_writer(path: Path, fps: float):
        return imageio.get_writer(
            str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
            quality=float(quality), macro_block_size=1, ffmpeg_log_level="error",
        )  # fmt: skip

    return open_writer


def _pad_even(img: np.ndarray) -> np.ndarray:
    """Pad [H, W, 3] uint8 to even H and W by edge replication (bottom / right)."""
    pad_h, pad_w = img.shape[0] % 2, img.shape[1] % 2
    if pad_h or pad_w:
        img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return img


def _as_map(values: Frame, name: str) -> torch.Tensor:
    """[H, W] or [H, W, 1] tensor / array -> [H, W] tensor."""
    v = torch.as_tensor(values)
    if v.dim() == 3 and v.shape[-1] == 1:
        v = v[..., 0]
    if v.dim() != 2:
        raise ValueError(f"{name}: expected a map [H, W] or [H, W, 1], got shape {tuple(v.shape)}")
    return v


def _apply_mask(rgb: torch.Tensor, mask: Frame | None, background: float) -> torch.Tensor:
    """Set rgb [H, W, 3] to ``background`` where mask [H, W] is false."""
    if mask is None:
        return rgb
    m = _as_map(mask, "mask").to(rgb.device)
    if m.shape != rgb.shape[:2]:
        raise ValueError(f"mask: shape {tuple(m.shape)} does not match the map {tuple(rgb.shape[:2])}")
    return torch.where(m.bool().unsqueeze(-1), rgb, torch.full_like(rgb, float(background)))


def _as_float_rgb(frame: Frame, name: str) -> torch.Tensor:
    """[H, W, 3] / [H, W, 1] / [H, W] float in [0, 1] or uint8 -> float32 tensor [H, W, 3]."""
    img = torch.as_tensor(np.ascontiguousarray(frame) if isinstance(frame, np.ndarray) else frame)
    if img.dim() == 2:
        img = img.unsqueeze(-1)
    if img.dim() != 3 or img.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected an image [H, W, 3] (or grey [H, W]), got shape {tuple(img.shape)}")
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    elif img.is_floating_point():
        img = img.float()
    else:
        raise ValueError(f"{name}: expected float in [0, 1] or uint8, got {img.dtype}")
    return img.expand(img.shape[0], img.shape[1], 3)
