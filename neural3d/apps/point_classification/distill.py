"""2D-teacher retention loss: keep the point model's transformer good at images while it learns 3D.

The student's shared transformer (``cls_token``, ``blocks``, ``norm``) runs on image patches embedded by the
frozen teacher's ``patch_embed``/``pos_embed``, and its class token is classified by the teacher's ``head``;
the loss is the temperature-scaled KL divergence to the frozen teacher's logits on the same local images
(learning-without-forgetting, as Simple3D-Former's retention variant). Zero when the student's blocks still
equal the teacher's.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neural3d.pointcloud.image_vit import ImageViT
from neural3d.pointcloud.vit import ViTBackbone


class RetentionLoss(nn.Module):
    """Distillation from a frozen 2D ViT.

    Args:
        teacher: an :class:`ImageViT` (e.g. DeiT weights loaded with :func:`load_deit`); copied and frozen.
        temperature: softmax temperature (KL scaled by ``T^2``).

    Shapes: ``forward(student, images [batch, 3, H, W]) -> []`` scalar loss; gradients reach only the
    student's ``cls_token``, ``blocks`` and ``norm``.
    """

    def __init__(self, *, teacher: ImageViT, temperature: float = 2.0):
        super().__init__()
        self.teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        self.temperature = temperature

    def train(self, mode: bool = True) -> RetentionLoss:
        super().train(mode)
        self.teacher.eval()
        return self

    def student_logits(self, student: ViTBackbone, images: Tensor) -> Tensor:
        """[batch, 3, H, W] -> [batch, n_classes] logits of the student's transformer on the teacher's patches."""
        if student.spec.embed_dim != self.teacher.spec.embed_dim:
            raise ValueError(
                f"RetentionLoss: student width {student.spec.embed_dim} != teacher width {self.teacher.spec.embed_dim}"
            )
        t = self.teacher
        patches = t.patch_embed(images)
        x = torch.cat([student.cls_token.expand(images.shape[0], -1, -1), patches], 1) + t.pos_embed
        return t.head(student.run_blocks(x)[:, 0])

    def forward(self, student: ViTBackbone, images: Tensor) -> Tensor:
        with torch.no_grad():
            target = F.log_softmax(self.teacher(images) / self.temperature, -1)
        pred = F.log_softmax(self.student_logits(student, images) / self.temperature, -1)
        return F.kl_div(pred, target, log_target=True, reduction="batchmean") * self.temperature**2


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image_folder(folder, size: int = 224, max_images: int = 256) -> Tensor:
    """Local ``.png``/``.jpg`` images -> [n_images, 3, size, size] ImageNet-normalised (errors name the folder)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: distillation image folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:max_images]
    if not files:
        raise ValueError(f"{folder}: no .png/.jpg images for the retention loss")
    arrs = []
    for f in files:
        try:
            img = Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)
        except OSError as e:
            raise ValueError(f"{f}: unreadable image ({e})") from None
        arrs.append(np.asarray(img, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std
