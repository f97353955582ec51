"""Point ViT models: DeiT checkpoint layout, heads, tokenizers, retention loss."""

import pytest
import torch

from neural3d.apps.point_classification.distill import RetentionLoss
from neural3d.pointcloud import VIT_SPECS, PointViT, encode, load_deit
from neural3d.pointcloud.image_vit import ImageViT
from neural3d.pointcloud.tokenizers import voxelize


def deit_state_dict(dim: int, depth: int, n_pos: int = 197, seed: int = 0) -> dict:
    """Random tensors in the published deit_*_patch16_224 layout (names and shapes written out by hand)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    sd = {
        "cls_token": r(1, 1, dim),
        "pos_embed": r(1, n_pos, dim),
        "patch_embed.proj.weight": r(dim, 3, 16, 16),
        "patch_embed.proj.bias": r(dim),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update(
            {
                b + "norm1.weight": 1 + r(dim),
                b + "norm1.bias": r(dim),
                b + "attn.qkv.weight": r(3 * dim, dim),
                b + "attn.qkv.bias": r(3 * dim),
                b + "attn.proj.weight": r(dim, dim),
                b + "attn.proj.bias": r(dim),
                b + "norm2.weight": 1 + r(dim),
                b + "norm2.bias": r(dim),
                b + "mlp.fc1.weight": r(4 * dim, dim),
                b + "mlp.fc1.bias": r(4 * dim),
                b + "mlp.fc2.weight": r(dim, 4 * dim),
                b + "mlp.fc2.bias": r(dim),
            }
        )
    sd.update({"norm.weight": 1 + r(dim), "norm.bias": r(dim), "head.weight": r(1000, dim), "head.bias": r(1000)})
    return sd


def test_deit_specs_have_correct_heads():
    assert {k: (s.embed_dim, s.num_heads, s.depth) for k, s in VIT_SPECS.items()} == {
        "tiny": (192, 3, 12),
        "small": (384, 6, 12),
        "base": (768, 12, 12),
    }
    base = ImageViT(size="base", depth=1)
    assert base.blocks[0].attn.num_heads == 12 and base.blocks[0].attn.head_dim == 64


def test_deit_tiny_layout_loads_into_image_vit_exactly(tmp_path):
    sd = deit_state_dict(192, 12)
    model = ImageViT(size="tiny")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert missing == [] and unexpected == []
    torch.save({"model": sd, "epoch": 300}, tmp_path / "deit_tiny.pth")
    report = load_deit(ImageViT(size="tiny"), tmp_path / "deit_tiny.pth")
    assert len(report.loaded) == len(sd) and not report.skipped and not report.reinitialised


def test_deit_layout_fills_every_point_vit_block(tmp_path):
    sd = deit_state_dict(192, 12)
    sd["dist_token"] = torch.zeros(1, 1, 192)
    torch.save({"model": sd}, tmp_path / "deit.pth")
    model = PointViT(size="tiny", task="cls", n_classes=7, n_centres=(32, 16))
    report = load_deit(model, tmp_path / "deit.pth")
    block_keys = {k for k in sd if k.startswith(("blocks.", "norm.")) or k == "cls_token"}
    assert block_keys <= set(report.loaded)
    assert set(report.skipped) == {
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "head.weight",
        "head.bias",
        "dist_token",
    }
    assert report.adapted == ["pos_embed"]
    own = model.state_dict()
    assert not [k for k in own if k.startswith("blocks.") and k in report.reinitialised]
    for k in block_keys:
        assert torch.equal(own[k], sd[k])
    assert torch.equal(own["pos_embed"], sd["pos_embed"][:, :1])
    assert "head.weight" in report.reinitialised and "patch_embed.embed.0.weight" in report.reinitialised


def test_voxel_tokenizer_inflates_patch_kernel_and_width_mismatch_is_an_error(tmp_path):
    sd = deit_state_dict(192, 2)
    model = PointViT(size="tiny", depth=2, tokenizer="voxel", voxel_resolution=16, voxel_patch=4, task="encode")
    report = load_deit(model, sd)
    assert "patch_embed.proj.weight" in report.adapted
    w = model.state_dict()["patch_embed.proj.weight"]
    assert w.shape == (192, 1, 4, 4, 4)
    # a fully occupied voxel patch gets the response of a uniform white 2D patch
    torch.testing.assert_close(w.sum((1, 2, 3, 4)), sd["patch_embed.proj.weight"].sum((1, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.save({"model": deit_state_dict(384, 1)}, tmp_path / "deit_small.pth")
    with pytest.raises(ValueError, match="deit_small.pth.*width 384"):
        load_deit(PointViT(size="tiny", depth=1, task="encode"), tmp_path / "deit_small.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_deit(model, tmp_path / "nope.pth")


def test_segmentation_gives_one_label_per_point_and_depends_on_category():
    torch.manual_seed(0)
    model = PointViT(size="tiny", depth=1, in_dim=6, task="seg", n_classes=5, n_categories=3, n_centres=(64, 16))
    pts = torch.randn(2, 300, 6)
    logits = model(pts, torch.tensor([0, 2]))
    assert logits.shape == (2, 300, 5)
    assert logits.argmax(-1).shape == (2, 300)
    other = model(pts, torch.tensor([1, 1]))
    assert not torch.allclose(logits, other)
    with pytest.raises(ValueError, match="category"):
        model(pts)


def test_classification_is_permutation_invariant_up_to_fps_start():
    torch.manual_seed(0)
    model = PointViT(size="tiny", depth=1, task="cls", n_classes=4, n_centres=(64, 16)).eval()
    pts = torch.randn(1, 200, 3)
    perm = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(199) + 1])  # keep the FPS start point
    torch.testing.assert_close(model(pts), model(pts[:, perm]), rtol=1e-4, atol=1e-4)


def test_voxelize_and_voxel_model_shapes():
    pts = torch.tensor([[[-1.0, -1.0, -1.0], [0.99, 0.0, 0.5], [2.0, 2.0, 2.0]]])
    grid = voxelize(pts, 4)
    assert grid.shape == (1, 1, 4, 4, 4) and grid.sum() == 3
    assert grid[0, 0, 0, 0, 0] == 1 and grid[0, 0, 3, 2, 3] == 1 and grid[0, 0, 3, 3, 3] == 1
    model = PointViT(
        size="tiny", depth=1, tokenizer="voxel", voxel_resolution=16, voxel_patch=4, task="seg", n_classes=3
    )
    assert model(torch.rand(2, 100, 3) * 2 - 1).shape == (2, 100, 3)


def test_encode_api_shapes():
    model = PointViT(size="tiny", depth=1, task="encode", n_centres=(64, 32))
    enc = encode(torch.rand(256, 3), model)
    assert enc.tokens.shape == (1, 32, 192) and enc.cls.shape == (1, 192) and enc.centres.shape == (1, 32, 3)
    assert enc.point_features().shape == (1, 256, 192)
    with pytest.raises(ValueError, match="points must be"):
        encode(torch.rand(256, 6), model)


def test_retention_loss_is_zero_for_teacher_blocks_and_trains_only_the_student():
    torch.manual_seed(0)
    teacher = ImageViT(size="tiny", depth=2, img_size=32)
    student = PointViT(size="tiny", depth=2, task="cls", n_classes=3, n_centres=(16, 8))
    load_deit(student, teacher.state_dict())
    loss_fn = RetentionLoss(teacher=teacher, temperature=1.0)
    images = torch.randn(3, 3, 32, 32)
    assert float(loss_fn(student, images).detach()) < 1e-10
    with torch.no_grad():
        for p in student.blocks.parameters():
            p.add_(0.2 * torch.randn_like(p))
        student.head.weight.add_(1.0)
    loss = loss_fn(student, images)
    assert float(loss.detach()) > 1e-4
    loss.backward()
    assert student.blocks[0].attn.qkv.weight.grad is not None and student.head.weight.grad is None
    assert all(p.grad is None for p in loss_fn.teacher.parameters())


def test_cached_grouping_gives_identical_outputs_and_follows_new_points():
    torch.manual_seed(0)
    cached = PointViT(size="tiny", depth=1, task="seg", n_classes=4, n_centres=(64, 16), cache_groups=True)
    plain = PointViT(size="tiny", depth=1, task="seg", n_classes=4, n_centres=(64, 16))
    plain.load_state_dict(cached.state_dict())
    x, y = torch.rand(1, 300, 3), torch.rand(1, 300, 3)
    for pts in (x, x, y, x):
        assert torch.equal(cached(pts), plain(pts))
