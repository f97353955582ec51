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
) -> dict[str, Any]:
    """Render every image of ``split`` (or the first ``max_images``) and compute metrics.

    Returns:
        ``{"mean": {psnr, ssim[, lpips]}, "per_image": [{index, name, psnr, ssim[, lpips]}], "split": split}``.
        With ``out_dir``, writes ``rgb/``, ``depth/`` PNGs and ``metrics.json`` there.
    """
    from neural3d.media.frames import depth_panel
    from neural3d.media.video import to_uint8

    indices = scene.split_indices(split, nonempty=True)
    if max_images is not None:
        indices = indices[:max_images]
    per_image = []
    for i in indices.tolist():
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
            import imageio.v3 as iio

            stem = Path(rec["name"]).stem
            depth = depth_panel(out["depth"][..., 0], out["opacity"][..., 0])
            for sub, img in (("rgb", out["rgb"]), ("depth", depth)):
                (Path(out_dir) / sub).mkdir(parents=True, exist_ok=True)
                iio.imwrite(Path(out_dir) / sub / f"{stem}.png", to_uint8(img))
    keys = [k for k in ("psnr", "ssim", "lpips") if per_image and k in per_image[0]]
    result = {
        "split": split,
        "mean": {k: float(np.mean([r[k] for r in per_image])) for k in keys},
        "per_image": per_image,
    }
    if out_dir is not None:
        (Path(out_dir) / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


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
