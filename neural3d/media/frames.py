"""Render a trained model along cameras into frames, an mp4 or an image folder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from neural3d.core.cameras import Cameras
from neural3d.progress import ProgressBar

OUTPUTS = ("rgb", "depth", "opacity")


def depth_panel(depth: torch.Tensor, opacity: torch.Tensor, depth_range=None) -> torch.Tensor:
    """[H, W, 3] colourised depth [H, W], background (opacity < 0.5) shown white."""
    from neural3d.media.video import colorize_depth

    mask = opacity > 0.5
    near, far = depth_range if depth_range is not None else (None, None)
    return colorize_depth(depth, near=near, far=far, mask=mask if bool(mask.any()) else None)


def compose_frame(out: dict[str, torch.Tensor], outputs: Sequence[str], depth_range=None) -> torch.Tensor:
    """Side-by-side [H, k*W, 3] frame of the requested outputs (depth and opacity colourised)."""
    from neural3d.media.video import colorize_scalar, side_by_side

    bad = [o for o in outputs if o not in OUTPUTS]
    if bad:
        raise ValueError(f"unknown render output(s) {bad}; choose from {list(OUTPUTS)}")
    panels = []
    for name in outputs:
        if name == "rgb":
            panels.append(out["rgb"].clamp(0, 1))
        elif name == "depth":
            panels.append(depth_panel(out["depth"], out["opacity"], depth_range))
        else:
            panels.append(colorize_scalar(out["opacity"]))
    return side_by_side([p.cpu() for p in panels])


def render_frames(
    loaded, cameras: Cameras, outputs: Sequence[str] = ("rgb",), chunk: int = 8192, progress: bool = True
) -> Iterator[torch.Tensor]:
    """Yield one composed [H, W', 3] frame per camera, with a frames/s progress bar."""
    bar = ProgressBar(len(cameras), "render", unit="frame", enabled=progress)
    depth_range = None
    for i in range(len(cameras)):
        out = loaded.render(cameras[i], chunk=chunk)
        out = {k: v[0] for k, v in out.items()}
        if depth_range is None:  # fix the colour scale on the first frame so videos do not flicker
            d = out["depth"][out["opacity"] > 0.5]
            if d.numel() > 10:
                depth_range = (float(torch.quantile(d, 0.02)), float(torch.quantile(d, 0.98)))
        bar.update(1)
        yield compose_frame(out, outputs, depth_range)
    bar.close()


def write_frames(frames: Iterator[torch.Tensor], out: Path, fps: int = 30) -> Path:
    """Write to ``out``: an ``.mp4`` file, or a directory of PNGs."""
    from neural3d.media.video import write_images, write_video

    out = Path(out)
    if out.suffix.lower() == ".mp4":
        write_video(out, frames, fps=fps)
    elif out.suffix == "":
        write_images(out, frames, prefix="frame")
    else:
        raise ValueError(f"--out must be a .mp4 file or a directory, got '{out}'")
    return out
