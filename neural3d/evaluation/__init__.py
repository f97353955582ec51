"""Evaluation: image metrics (PSNR, SSIM; :mod:`~neural3d.evaluation.metrics`), LPIPS from local weights
(:mod:`~neural3d.evaluation.lpips`) and split evaluation of a trained model (:mod:`~neural3d.evaluation.evaluate`)."""

from neural3d.evaluation.evaluate import evaluate_split, render_image
from neural3d.evaluation.metrics import psnr, ssim

__all__ = ["evaluate_split", "psnr", "render_image", "ssim"]
