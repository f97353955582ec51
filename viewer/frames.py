"""Turn a render (``rgb`` [H, W, 3], ``depth`` / ``opacity`` [H, W]) into the uint8 image the browser shows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

OUTPUTS = ("rgb", "depth", "opacity")


def swap_background(
    rgb: torch.Tensor, opacity: torch.Tensor, rendered_bg: torch.Tensor | None, new_bg: Sequence[float] | None
) -> torch.Tensor:
    """Re-composite ``rgb = c + (1 - a) * bg_old`` on ``new_bg``: ``rgb + (1 - a) * (bg_new - bg_old)``.

    Args:
        rgb: [H, W, 3]; opacity: [H, W]; rendered_bg, new_bg: [3] in [0, 1] (None: unchanged).
    """
    if new_bg is None or rendered_bg is None:
        return rgb
    delta = torch.as_tensor(new_bg, dtype=rgb.dtype, device=rgb.device) - rendered_bg.to(rgb)
    return rgb + (1.0 - opacity[..., None]) * delta


def frame_image(
    out: dict[str, torch.Tensor],
    output: str = "rgb",
    *,
    rendered_bg: torch.Tensor | None = None,
    background: Sequence[float] | None = None,
) -> np.ndarray:
    """uint8 [H, W, 3] image of one output of a single-view render (depth colourised, opacity grey)."""
    from neural3d.media.frames import depth_panel
    from neural3d.media.video import colorize_scalar, to_uint8

    if output not in OUTPUTS:
        raise ValueError(f"unknown viewer output {output!r}; choose from {OUTPUTS}")
    if output == "rgb":
        img = swap_background(out["rgb"], out["opacity"], rendered_bg, background).clamp(0, 1)
    elif output == "depth":
        img = depth_panel(out["depth"], out["opacity"])
    else:
        img = colorize_scalar(out["opacity"])
    return to_uint8(img.cpu())
