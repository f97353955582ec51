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


def parse_outputs(text: str) -> list[str]:
    """``"rgb,depth"`` -> ``["rgb", "depth"]``; ValueError naming the unknown ones (checked before rendering)."""
    outputs = [o.strip() for o in text.split(",") if o.strip()]
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad or not outputs:
        raise ValueError(f"--outputs: unknown render output(s) {bad or [text]}; choose from {list(OUTPUTS)}")
    return outputs


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
    loaded,
    cameras: Cameras,
    outputs: Sequence[str] = ("rgb",),
    chunk: int = 8192,
    progress: bool = True,
    *,
    distributed: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield one composed [H, W', 3] frame per camera, with a frames/s progress bar.

    ``distributed`` (under torchrun, every rank calling): rank ``r`` of ``W`` renders frames ``r, r + W, ...``,
    rank 0 gathers each round of ``W`` renders and composes and yields every frame, in order, exactly as one
    process does (the depth colour scale fixed on the first frame with enough foreground); the other ranks
    yield nothing. Without a process group it is ignored.
    """
    from neural3d.training.distributed import rank_and_world

    rank, world = rank_and_world() if distributed else (0, 1)
    bar = ProgressBar(len(cameras), "render", unit="frame", enabled=progress and rank == 0)
    depth_range = None
    for out in _renders(loaded, cameras, chunk, rank, world):
        if depth_range is None:  # fix the colour scale on the first frame so videos do not flicker
            d = out["depth"][out["opacity"] > 0.5]
            if d.numel() > 10:
                depth_range = (float(torch.quantile(d, 0.02)), float(torch.quantile(d, 0.98)))
        bar.update(1)
        yield compose_frame(out, outputs, depth_range)
    bar.close()


def _render(loaded, camera: Cameras, chunk: int) -> dict[str, torch.Tensor]:
    """Outputs of one camera without the batch axis: rgb [H, W, 3], depth / opacity [H, W, 1]."""
    return {k: v[0] for k, v in loaded.render(camera, chunk=chunk).items()}


def _renders(loaded, cameras: Cameras, chunk: int, rank: int, world: int) -> Iterator[dict[str, torch.Tensor]]:
    """Every camera's outputs in order (on rank 0; one process: all of them), rendered round-robin by ``world``."""
    if world == 1:
        for i in range(len(cameras)):
            yield _render(loaded, cameras[i], chunk)
        return
    d = torch.distributed
    for first in range(0, len(cameras), world):
        i = first + rank
        mine = None if i >= len(cameras) else {k: v.cpu() for k, v in _render(loaded, cameras[i], chunk).items()}
        got = [None] * world if rank == 0 else None
        d.gather_object(mine, got, dst=0)
        for out in got or []:
            if out is not None:  # back on the model's device: composed there, as one process does
                yield {k: v.to(loaded.device) for k, v in out.items()}


def check_writable(out: Path, *, directory: bool = False) -> None:
    """Raise ValueError naming ``out`` unless a file (or, ``directory``, a folder) can be written there: its
    nearest existing folder must accept a new file (one is created and removed) and nothing on the way may be a
    file. Nothing else is created, so a bad ``--out`` fails before any work is done."""
    import tempfile

    out = Path(out)
    if out.exists() and out.is_dir() != directory:
        raise ValueError(
            f"--out {out}: is a {'folder' if out.is_dir() else 'file'}, expected a {'folder' if directory else 'file'}"
        )
    folder = out if directory else out.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write in {existing} ({e.strerror or e})") from None


def check_output(out: Path, *, directory: bool = False) -> None:
    """:func:`check_writable` for rendered frames: an ``.mp4`` file, or (``directory``, or no suffix) a folder."""
    out = Path(out)
    if not directory and out.suffix.lower() not in (".mp4", ""):
        raise ValueError(f"--out must be a .mp4 file or a directory, got '{out}'")
    check_writable(out, directory=directory or out.suffix == "")


def write_frames(frames: Iterator[torch.Tensor], out: Path, fps: int = 30) -> Path:
    """Write to ``out``: an ``.mp4`` file, or a directory of PNGs."""
    from neural3d.media.video import write_images, write_video

    out = Path(out)
    check_output(out)
    if out.suffix.lower() == ".mp4":
        write_video(out, frames, fps=fps)
    else:
        write_images(out, frames, prefix="frame")
    return out
