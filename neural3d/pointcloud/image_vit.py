"""A plain DeiT image classifier with timm names (``patch_embed.proj`` Conv2d, full ``pos_embed``, ``head``).

Used as the frozen 2D teacher of the retention (distillation) loss and to check that DeiT checkpoints
load key for key. Shapes: ``forward(images [batch, 3, H, W]) -> [batch, n_classes]`` logits.
"""

from __future__ import annotations

from torch import Tensor, nn

from neural3d.pointcloud.vit import ViTBackbone, ViTSpec, vit_spec


class PatchEmbed2D(nn.Module):
    """``proj`` Conv2d(3, dim, patch, stride=patch): [batch, 3, H, W] -> [batch, (H/p)(W/p), dim]."""

    def __init__(self, *, embed_dim: int, patch: int = 16):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch, stride=patch)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class ImageViT(ViTBackbone):
    """DeiT ``deit_{size}_patch16_{img_size}`` (without the distillation token)."""

    def __init__(
        self,
        *,
        size: str | ViTSpec = "tiny",
        depth: int | None = None,
        img_size: int = 224,
        patch: int = 16,
        n_classes: int = 1000,
    ):
        spec = size if isinstance(size, ViTSpec) else vit_spec(size, depth)
        if img_size % patch:
            raise ValueError(f"ImageViT: img_size {img_size} must be a multiple of patch {patch}")
        super().__init__(spec=spec, n_pos=1 + (img_size // patch) ** 2)
        self.patch_embed = PatchEmbed2D(embed_dim=spec.embed_dim, patch=patch)
        self.head = nn.Linear(spec.embed_dim, n_classes)

    def features(self, images: Tensor) -> Tensor:
        """[batch, 3, H, W] -> [batch, 1 + n_patches, dim] normalised tokens."""
        return super().forward(self.patch_embed(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images)[:, 0])
