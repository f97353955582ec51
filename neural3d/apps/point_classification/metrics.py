"""Evaluation of point-cloud models: classification accuracy, per-point accuracy and part mIoU."""

from __future__ import annotations

import torch
from torch import Tensor

from neural3d.apps.point_classification.datasets import PointCloudSet


def part_mask_from(data: PointCloudSet) -> Tensor:
    """[n_categories, n_parts] bool: which part labels occur in each category (ShapeNetPart's seg_classes)."""
    mask = torch.zeros(len(data.class_names), data.n_parts, dtype=torch.bool)
    mask[data.labels[:, None].expand_as(data.parts).reshape(-1), data.parts.reshape(-1)] = True
    return mask


def instance_miou(pred: Tensor, target: Tensor, parts_of_shape: Tensor) -> Tensor:
    """Mean over shapes of the mean IoU over the shape category's parts (a part absent from both counts 1).

    Args:
        pred, target: [n_shapes, n_points] int64 labels.
        parts_of_shape: [n_shapes, n_parts] bool parts of each shape's category.
    Returns:
        [] scalar.
    """
    n_parts = parts_of_shape.shape[1]
    p = torch.nn.functional.one_hot(pred, n_parts).bool()
    t = torch.nn.functional.one_hot(target, n_parts).bool()
    inter = (p & t).sum(1).float()
    union = (p | t).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return ((iou * parts_of_shape).sum(1) / parts_of_shape.sum(1).clamp_min(1)).mean()


@torch.no_grad()
def predict(
    model, data: PointCloudSet, task: str, batch_size: int = 64, part_mask: list | None = None, progress: bool = False
) -> Tensor:
    """Labels: [n_shapes] (cls) or [n_shapes, n_points] (seg, restricted to the category's parts).

    ``progress``: a progress bar over the shapes (:mod:`neural3d.progress`; lines when not a terminal).
    """
    from neural3d.progress import ProgressBar

    model.eval()
    dev = next(model.parameters()).device
    preds = []
    mask = None if part_mask is None else torch.as_tensor(part_mask, dtype=torch.bool, device=dev)
    with ProgressBar(len(data), "eval", unit="shape", enabled=progress) as bar:
        for i in range(0, len(data), batch_size):
            pts = data.points[i : i + batch_size].to(dev)
            lab = data.labels[i : i + batch_size].to(dev)
            if task == "cls":
                preds.append(model(pts).argmax(-1).cpu())
            else:
                logits = model(pts, lab)
                if mask is not None:
                    logits = logits.masked_fill(~mask[lab][:, None, :], float("-inf"))
                preds.append(logits.argmax(-1).cpu())
            bar.update(len(pts))
    return torch.cat(preds)


def evaluate_set(
    model,
    data: PointCloudSet,
    task: str,
    batch_size: int = 64,
    part_mask: list | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """cls: ``accuracy``, ``class_accuracy`` (mean per class); seg: ``point_accuracy``, ``instance_miou``."""
    pred = predict(model, data, task, batch_size, part_mask, progress)
    if task == "cls":
        correct = (pred == data.labels).float()
        per_class = [correct[data.labels == c].mean() for c in data.labels.unique()]
        return {"accuracy": float(correct.mean()), "class_accuracy": float(torch.stack(per_class).mean())}
    mask = torch.as_tensor(part_mask, dtype=torch.bool) if part_mask is not None else part_mask_from(data)
    return {
        "point_accuracy": float((pred == data.parts).float().mean()),
        "instance_miou": float(instance_miou(pred, data.parts, mask[data.labels])),
    }
