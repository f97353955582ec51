"""Point-cloud-conditioned scene representation: NDC point mapping, scene points, shared renderer, training."""

from pathlib import Path

import numpy as np
import pytest
import torch

import neural3d
from neural3d.config import build_config
from neural3d.core.rays import RayBundle, ndc_rays
from neural3d.fields.base import FieldOutputs
from neural3d.methods.base import SceneInfo
from neural3d.methods.point_field.model import PointFieldModel, PointFieldModelConfig
from neural3d.methods.point_field.scene_points import (
    llff_world_transform,
    prepare_points,
    scene_point_cloud,
    world_to_ndc,
)
from neural3d.pointcloud.io import write_ply
from neural3d.render import VolumeRenderer
from neural3d.training.trainer import Trainer

FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "nerf_llff_data" / "fern"
SMALL = {
    "n_points": 256,
    "n_centres": [64, 16],
    "depth": 1,
    "n_coarse": 16,
    "n_samples": 8,
    "hidden_dim": 32,
    "feature_dim": 16,
}


def test_world_points_land_on_their_ndc_rays():
    g = torch.Generator().manual_seed(0)
    n = 64
    o = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.2
    d = torch.cat(
        [torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.3, -torch.ones(n, 1, dtype=torch.float64)], 1
    )
    rays = RayBundle(
        o,
        d,
        torch.nn.functional.normalize(d, dim=-1),
        torch.zeros(n, dtype=torch.float64),
        torch.ones(n, dtype=torch.float64),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, 2),
    )
    nd = ndc_rays(rays, width=64.0, height=48.0, focal=50.0)
    t = 1.5 + 10 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    p = world_to_ndc(o + t * d, width=64.0, height=48.0, focal=50.0)
    s = (p[:, 2] - nd.origins[:, 2]) / nd.directions[:, 2]  # NDC ray parameter of the mapped point
    torch.testing.assert_close(nd.origins + s[:, None] * nd.directions, p, rtol=0, atol=1e-10)
    assert ((s > 0) & (s < 1)).all()


@pytest.mark.skipif(not FERN.is_dir(), reason="shared fern absent")
def test_fern_points_in_loader_frame_and_ndc():
    from neural3d.data import load_scene

    scene = load_scene(FERN, factor=8)
    np.testing.assert_array_equal(llff_world_transform(FERN), scene.metadata["world_transform"])
    xyz, rgb = scene_point_cloud(FERN)
    torch.testing.assert_close(xyz, scene.points3d) and torch.testing.assert_close(rgb, scene.points3d_rgb)
    pts = prepare_points(
        xyz, scene_box=scene.scene_box, n_points=500, ndc_params=(scene.ndc_width, scene.ndc_height, scene.ndc_focal)
    )
    assert pts.shape == (500, 3) and (pts.abs() <= 1.5).all()


def _box_scene() -> SceneInfo:
    return SceneInfo(scene_box=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), near=2.0, far=6.0, background=torch.ones(3))


def test_conditioned_field_renders_through_the_shared_renderer():
    torch.manual_seed(0)
    model = PointFieldModel(PointFieldModelConfig(**SMALL), scene=_box_scene()).eval()
    n = 12
    o = torch.tensor([0.0, 0.0, 4.0]).expand(n, 3)
    d = torch.nn.functional.normalize(torch.cat([torch.randn(n, 2) * 0.1, -torch.ones(n, 1)], 1), dim=-1)
    rays = RayBundle(
        o, d, d, torch.full((n,), 2.0), torch.full((n,), 6.0), torch.zeros(n, dtype=torch.long), torch.zeros(n, 2)
    )
    out = model(rays)
    assert out["rgb"].shape == (n, 3) and out["depth"].shape == (n, 1) and out["opacity"].shape == (n, 1)
    # the same samples composited by hand with the shared VolumeRenderer give the same pixels
    f = model.field
    coarse = model.coarse_sampler(rays)
    from neural3d.render.volume import render_weights_from_density

    occ = f.point_occupancy(coarse.positions) * model.config.guide_density
    w = render_weights_from_density(occ, coarse.deltas * d.norm(dim=-1, keepdim=True)) + 1e-3 / coarse.deltas.shape[-1]
    samples = model.importance(coarse, w)
    density, rgb = f.query(samples.positions, samples.viewdirs)
    ref = VolumeRenderer()(FieldOutputs(density=density, rgb=rgb), samples, torch.ones(3))
    torch.testing.assert_close(out["rgb"], ref.rgb)
    torch.testing.assert_close(out["opacity"], ref.opacity)
    # conditioning on other points changes the result
    other = model(rays, context={"points": torch.rand(300, 3) * 0.2})
    assert not torch.allclose(other["rgb"], out["rgb"])


def test_training_lowers_loss_and_checkpoint_restores_points(tmp_path, tiny_blender_scene):
    pts = np.random.default_rng(0).uniform(-0.6, 0.6, size=(400, 3))
    write_ply(tmp_path / "pts.ply", pts)
    model_cfg = {**SMALL, "points_path": str(tmp_path / "pts.ply")}
    cfg, _ = build_config(
        {
            "method": "point_field",
            "data": {"path": str(tiny_blender_scene)},
            "model": model_cfg,
            "output_dir": str(tmp_path / "runs"),
            "experiment": "pf",
            "trainer": {
                "steps": 40,
                "batch_size": 128,
                "progress": False,
                "log_every": 1,
                "checkpoint_every": 0,
                "optim": {"lr": 1e-2, "lr_final": 1e-3},
            },
        }
    )
    trainer = Trainer(cfg)
    assert trainer.model.field.points.shape == (256, 3)
    trainer.train()
    rows = (trainer.run_dir / "logs" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("train/loss")
    losses = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    # the checkpoint carries the points: loading works without the point file
    (tmp_path / "pts.ply").unlink()
    with pytest.warns(UserWarning, match="points_path"):
        loaded = neural3d.load(trainer.run_dir, device="cpu")
    torch.testing.assert_close(loaded.model.field.points, trainer.model.field.points)
    data = loaded.dataset()
    trainer.model.eval()
    ref = trainer.model.render_rays(data.image_rays(0)[:4, :4], chunk=64)
    out = loaded.model.render_rays(data.image_rays(0)[:4, :4], chunk=64)
    torch.testing.assert_close(out["rgb"], ref["rgb"])
