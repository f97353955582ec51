"""Evaluate a model on a dataset split: render full images in chunks, PSNR / SSIM / LPIPS, save images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neural3d.evaluation.metrics import psnr, ssim


@torch.no_grad()
def render_image(model, scene, index: int, chunk: int = 8192, context: Any = None) -> dict[str, torch.Tensor]:
    """Render dataset image ``index``; returns rgb [H, W, 3], depth [H, W, 1], opacity [H, W, 1].

    ``context`` defaults to ``model.render_context(scene.cameras, index)`` (source views for GNT).
    """
    model.eval()
    if context is None:
        context = model.render_context(scene.cameras, int(index))
    rays = scene.image_rays(int(index))
    return model.render_rays(rays, chunk=chunk, context=context)


@torch.no_grad()
def evaluate_split(
    model,
    scene,
    split: str = "test",
    *,
    chunk: int = 8192,
    max_images: int | None = None,
    out_dir: Path | None = None,
    lpips_fn=None,
    distributed: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Render every image of ``split`` (or the first ``max_images``) and compute metrics.

    ``distributed`` (under torchrun, every rank calling): rank ``r`` of ``W`` renders images ``r, r + W, ...``;
    rank 0 gathers the records and images and returns / writes exactly what one process would (the other
    ranks return empty metrics and write nothing). Without a process group it is ignored. ``progress``: a
    progress bar (:mod:`neural3d.progress`) over this rank's images.

    Returns:
        ``{"mean": {psnr, ssim[, lpips]}, "per_image": [{index, name, psnr, ssim[, lpips]}], "split": split}``.
        With ``out_dir``, writes ``rgb/``, ``depth/``, ``compare/`` (:func:`comparison`) PNGs and ``metrics.json``
        there.
    """
    from neural3d.media.frames import depth_panel
    from neural3d.media.video import to_uint8
    from neural3d.progress import progress as counted

    indices = scene.split_indices(split, nonempty=True)
    if max_images is not None:
        indices = indices[:max_images]
    rank, world = _rank_and_world() if distributed else (0, 1)
    per_image, images = [], []
    mine = [i for pos, i in enumerate(indices.tolist()) if pos % world == rank]  # torchrun: r, r + W, ...
    for i in counted(mine, desc=f"eval {split}", unit="image", enabled=progress and rank == 0):
        out = render_image(model, scene, i, chunk)
        gt = scene.images[i].to(out["rgb"].device)
        rec = {
            "index": i,
            "name": Path(scene.image_paths[i]).name if scene.image_paths else str(i),
            "psnr": float(psnr(out["rgb"], gt)),
            "ssim": float(ssim(out["rgb"], gt)),
        }
        if lpips_fn is not None:
            rec["lpips"] = float(lpips_fn(out["rgb"], gt))
        per_image.append(rec)
        if out_dir is not None:
            depth = depth_panel(out["depth"][..., 0], out["opacity"][..., 0])
            panels = (("rgb", out["rgb"]), ("depth", depth), ("compare", comparison(out["rgb"], gt)))
            pngs = [(sub, to_uint8(img)) for sub, img in panels]
            if world == 1:
                _write_pngs(Path(out_dir), rec["name"], pngs)
            else:
                images.append(pngs)
    if world > 1:  # gather every rank's records and images on rank 0, in the split's order
        per_image, images = _gather_on_rank0(per_image, images, world)
        if rank != 0:
            return {"split": split, "mean": {}, "per_image": []}
        if out_dir is not None:
            for rec, pngs in zip(per_image, images):
                _write_pngs(Path(out_dir), rec["name"], pngs)
    keys = [k for k in ("psnr", "ssim", "lpips") if per_image and k in per_image[0]]
    result = {
        "split": split,
        "mean": {k: float(np.mean([r[k] for r in per_image])) for k in keys},
        "per_image": per_image,
    }
    if out_dir is not None:
        (Path(out_dir) / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def comparison(pred: torch.Tensor, gt: torch.Tensor, max_error: float = 0.25) -> torch.Tensor:
    """Side by side [H, 3W, 3]: prediction | ground truth | error (mean absolute RGB error, turbo colours,
    0 -> blue, ``max_error`` and above -> red). ``pred``, ``gt``: [H, W, 3] in [0, 1]."""
    from neural3d.media.video import colorize_scalar, side_by_side

    err = (pred.float() - gt.float()).abs().mean(-1)
    panels = [pred.clamp(0, 1), gt.clamp(0, 1), colorize_scalar(err, vmin=0.0, vmax=max_error, cmap="turbo")]
    return side_by_side([p.cpu() for p in panels])


def _rank_and_world() -> tuple[int, int]:
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return 0, 1


def _write_pngs(out_dir: Path, name: str, pngs) -> None:
    import imageio.v3 as iio

    for sub, img in pngs:
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
        iio.imwrite(out_dir / sub / f"{Path(name).stem}.png", img)


def _gather_on_rank0(per_image: list, images: list, world: int) -> tuple[list, list]:
    """Rank 0: every rank's (records, images) interleaved back into split order (rank r had positions r::W)."""
    d = torch.distributed
    mine = (per_image, images)
    got = [None] * world if d.get_rank() == 0 else None
    d.gather_object(mine, got, dst=0)
    if got is None:
        return [], []
    recs, imgs = [], []
    for k in range(max(len(g[0]) for g in got)):
        for r in range(world):
            if k < len(got[r][0]):
                recs.append(got[r][0][k])
                if got[r][1]:
                    imgs.append(got[r][1][k])
    return recs, imgs


def maybe_lpips(eval_cfg, device):
    """An LPIPS callable when ``eval.lpips_backbone`` and ``eval.lpips_linear`` name local weight files."""
    if not eval_cfg.lpips_backbone and not eval_cfg.lpips_linear:
        return None
    from neural3d.evaluation.lpips import LPIPS

    return (
        LPIPS.from_files(
            net=eval_cfg.lpips_net, backbone_path=eval_cfg.lpips_backbone, linear_path=eval_cfg.lpips_linear
        )
        .to(device)
        .eval()
    )
