"""A tiny dictionary trains and fits unseen images on CPU; checkpoints; CLI smoke test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _progress_lines import assert_progress_lines
from PIL import Image

from neural3d.apps.image_dictionary import (
    corrupt_image,
    fit_image,
    load_dictionary,
    random_pixel_mask,
    train_dictionary,
)
from neural3d.apps.image_dictionary.patches import cut_patches, flatten_patches, fold_patches
from neural3d.evaluation.metrics import psnr
from neural3d.training.run_dir import RunExistsError

TINY = {
    "data": {"patch_size": 8, "holdout": 0},
    "experts": {"num_experts": 16, "hidden_dim": 32, "n_layers": 2, "n_fourier_features": 32, "fourier_scale": 2.0},
    "gate": {"type": "codebook", "topk": 6},
    "steps": 150,
    "warmup_steps": 20,
    "batch_size": 32,
    "lr": 3e-3,
    "lr_final": 1e-3,
    "gate_lr_scale": 10.0,
    "log_every": 25,
}


def smooth_images(n: int, size: int = 24, seed: int = 0) -> torch.Tensor:
    """[n, size, size, 3] random smooth images (low-frequency sinusoids) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    freq = torch.rand(n, 3, 2, generator=g) * 4
    phase = torch.rand(n, 3, generator=g) * 6.28
    arg = freq[..., 0, None, None] * x + freq[..., 1, None, None] * y + phase[..., None, None]
    return (0.5 + 0.4 * torch.sin(arg)).permute(0, 2, 3, 1).contiguous()


@pytest.fixture(scope="module")
def tiny_dict():
    torch.manual_seed(0)
    images = smooth_images(10)
    return train_dictionary(TINY, images=images, log=lambda s: None), images


def _bias_only_psnr(image: torch.Tensor, patch: int) -> float:
    p = cut_patches(image[None], patch)
    mean = flatten_patches(p).mean(1, keepdim=True).expand(-1, patch * patch, -1)
    return float(psnr(fold_patches(mean.reshape(p.shape), *image.shape[:2])[0], image))


def test_train_psnr_pools_the_error_so_exact_patches_stay_finite(tiny_dict):
    from neural3d.apps.image_dictionary.patches import patch_coords
    from neural3d.apps.image_dictionary.train import train_psnr

    res, images = tiny_dict
    patches = cut_patches(images, 8)
    coords = patch_coords(8)
    with torch.no_grad():
        ids = torch.arange(patches.shape[0])
        pred = res.model(coords, images=patches, ids=ids, sparse=True).preds.clamp(0, 1)
    exact = patches.clone()
    exact[:4] = pred[:4].reshape(4, 8, 8, 3)  # the dictionary reproduces these 4 patches exactly
    mse = float(((pred - flatten_patches(exact)) ** 2).mean())
    value = train_psnr(res.model, coords, exact)
    assert np.isfinite(value) and value == pytest.approx(-10 * np.log10(mse), abs=1e-3)


def test_tiny_dictionary_trains_and_fits_unseen_images(tiny_dict):
    res, _images = tiny_dict
    hist = res.metrics["history"]
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    assert res.metrics["train_psnr"] > 22.0  # pooled MSE over the patches (23.4 here)
    assert res.metrics["dead_experts"] <= 4
    unseen = smooth_images(3, seed=7)
    before = {k: v.clone() for k, v in res.model.bank.state_dict().items()}
    for img in unseen:
        base = _bias_only_psnr(img, 8)
        ls = fit_image(res.model, img, patch=8, method="lstsq", init="ridge")
        gd = fit_image(res.model, img, patch=8, method="gradient", init="ridge", steps=60, lr=5e-3)
        assert float(psnr(ls.image, img)) > max(base + 5.0, 25.0)
        assert float(psnr(gd.image, img)) > max(base + 2.5, 24.0)
        assert gd.codes.history[-1] <= gd.codes.history[0]
    # fitting leaves the dictionary untouched
    assert all(torch.equal(v, res.model.bank.state_dict()[k]) for k, v in before.items())


def test_sparse_observations_and_inpainting_fits(tiny_dict):
    res, _ = tiny_dict
    img = smooth_images(1, seed=11)[0]
    mask = random_pixel_mask(24, 24, 0.25, seed=1)
    assert int(mask.sum()) == 144
    sparse = fit_image(res.model, img * mask[..., None], patch=8, mask=mask, method="lstsq")
    assert float(psnr(sparse.image, img, mask=~mask)) > 20.0  # reconstructs the unseen 75 %
    corrupted, hidden = corrupt_image(img, "saltpepper", 0.1, seed=3)
    assert 0.05 < float(hidden.float().mean()) < 0.15
    robust = fit_image(res.model, corrupted, patch=8, method="lstsq", loss="l1")
    plain = fit_image(res.model, corrupted, patch=8, method="lstsq", loss="mse")
    assert float(psnr(robust.image, img, mask=hidden)) > float(psnr(plain.image, img, mask=hidden)) + 3.0
    striped, rows = corrupt_image(img, "stripes", 0.2)
    assert rows.any(1).sum() >= 4 and torch.equal(striped[rows], torch.zeros_like(striped[rows]))


def test_code_prior_fit_beats_ridge_from_few_pixels(tiny_dict):
    res, _ = tiny_dict
    assert res.prior is not None and res.prior.mean.shape == (16 + 3,)
    gains = []
    for seed in range(3):
        img = smooth_images(1, seed=20 + seed)[0]
        mask = random_pixel_mask(24, 24, 0.05, seed=seed)  # ~29 pixels: ~2 per 8x8 patch for 19 unknowns
        ridge = fit_image(res.model, img * mask[..., None], patch=8, mask=mask, lam=3e-2, lam_dense=3e-2)
        prior = fit_image(
            res.model, img * mask[..., None], patch=8, mask=mask, prior=res.prior, stride=4, support="all"
        )
        gains.append(float(psnr(prior.image, img)) - float(psnr(ridge.image, img)))
    assert min(gains) > 1.0, gains


def test_finetune_improves_out_of_family_images_and_validation_picks_its_length(tiny_dict):
    from neural3d.apps.image_dictionary.workflows import choose_finetune_steps, finetune_image

    res, _ = tiny_dict
    before = {k: v.clone() for k, v in res.model.bank.state_dict().items()}
    # an image with higher frequencies than the training family: the frozen bank cannot represent it
    g = torch.Generator().manual_seed(3)
    y, x = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 24), indexing="ij")
    img = torch.stack(
        [0.5 + 0.4 * torch.sin(9 * x + 5 * y + float(torch.rand(1, generator=g)) * 6) for _ in range(3)], -1
    )
    mask = random_pixel_mask(24, 24, 0.5, seed=2)
    kw = {"prior": res.prior, "prior_weight": 1e-3, "stride": 4, "support": "all"}
    fit = fit_image(res.model, img * mask[..., None], patch=8, mask=mask, **kw)
    tuned = finetune_image(
        res.model, fit, img * mask[..., None], patch=8, mask=mask, steps=100, stride=4, snapshot_every=25
    )
    assert [s for s, _ in tuned.snapshots] == [0, 25, 50, 75, 100]
    assert torch.allclose(tuned.snapshots[0][1], fit.image, atol=1e-5)  # step 0 is the code fit itself
    assert torch.equal(tuned.snapshots[-1][1], tuned.image)
    assert tuned.codes.history[-1] < 0.5 * tuned.codes.history[0]
    assert float(psnr(tuned.image, img, mask=~mask)) > float(psnr(fit.image, img, mask=~mask)) + 1.0
    assert all(torch.equal(v, res.model.bank.state_dict()[k]) for k, v in before.items())  # bank copied
    steps = choose_finetune_steps(res.model, img * mask[..., None], patch=8, mask=mask, max_steps=100, every=25, **kw)
    assert steps >= 50  # held-out observed pixels keep improving
    # pure noise on the observed pixels: every fine-tune step fits noise, so validation stops at once
    noise = torch.rand(24, 24, 3, generator=g)
    assert (
        choose_finetune_steps(res.model, noise * mask[..., None], patch=8, mask=mask, max_steps=100, every=25, **kw)
        <= 25
    )


def test_overlapping_training_patches_give_one_code_each():
    images = smooth_images(2, seed=4)
    res = train_dictionary(
        {**TINY, "steps": 3, "data": {"patch_size": 8, "patch_stride": 4, "holdout": 0}},
        images=images,
        log=lambda s: None,
    )
    assert res.model.gate.codes.shape[0] == 2 * 5 * 5  # (24 - 8) / 4 + 1 = 5 patches per axis
    with pytest.raises(ValueError, match="patch_stride 5"):
        train_dictionary(
            {**TINY, "steps": 1, "data": {"patch_size": 8, "patch_stride": 5, "holdout": 0}},
            images=images,
            log=lambda s: None,
        )


def test_conv_gate_dictionary_trains_with_noisy_topk():
    images = smooth_images(6, seed=3)
    cfg = {**TINY, "gate": {"type": "conv", "topk": 6, "noisy": True, "hidden": 16}, "steps": 60}
    res = train_dictionary(cfg, images=images, log=lambda s: None)
    assert res.metrics["history"][-1]["loss"] < res.metrics["history"][0]["loss"]
    fit = fit_image(res.model, images[0], patch=8, init="encoder")
    assert fit.image.shape == (24, 24, 3) and torch.isfinite(fit.image).all()


def test_checkpoints_resume_and_load(tmp_path):
    images = smooth_images(4, seed=5)
    cfg = {**TINY, "steps": 20, "checkpoint_every": 10}
    a = train_dictionary(cfg, images=images, run_dir=tmp_path / "run", log=lambda s: None)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_0000010.pt",
        "step_0000020.pt",
    ]
    loaded = load_dictionary(tmp_path / "run")
    x = torch.rand(9, 2)
    assert torch.equal(loaded.model.bank(x), a.model.bank(x))
    # the final checkpoint stores the code prior; older checkpoints without it get it computed on load
    last = tmp_path / "run" / "checkpoints" / "step_0000020.pt"
    state = torch.load(last, weights_only=False)
    assert torch.allclose(state["code_prior"]["mean"], a.prior.mean) and torch.allclose(loaded.prior.cov, a.prior.cov)
    assert torch.load(tmp_path / "run" / "checkpoints" / "step_0000010.pt", weights_only=False)["code_prior"] is None
    del state["code_prior"]
    torch.save(state, tmp_path / "old.pt")
    assert torch.allclose(load_dictionary(tmp_path / "old.pt").prior.cov, a.prior.cov)
    # resuming from step 10 reproduces the uninterrupted run (the common rule: an existing run needs resume=True)
    (tmp_path / "run" / "checkpoints" / "step_0000020.pt").unlink()
    with pytest.raises(RunExistsError, match="--resume"):
        train_dictionary(cfg, images=images, run_dir=tmp_path / "run", log=lambda s: None)
    b = train_dictionary(cfg, images=images, run_dir=tmp_path / "run", log=lambda s: None, resume=True)
    assert torch.allclose(b.model.bank(x), a.model.bank(x), atol=1e-6)


def test_cli_train_dict_and_fit(tmp_path, capsys):
    from neural3d.cli.main import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(smooth_images(5, size=16, seed=9)):
        Image.fromarray((img.numpy() * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    cfg = tmp_path / "nid.yaml"
    cfg.write_text(
        f"data: {{folders: [{folder}], image_size: 16, patch_size: 8, holdout: 1}}\n"
        f"experts: {{num_experts: 8, hidden_dim: 16, n_layers: 1, n_fourier_features: 16}}\n"
        f"gate: {{type: codebook, topk: 3}}\nsteps: 10\nwarmup_steps: 2\noutput_dir: {tmp_path / 'run'}\n"
    )
    assert main(["nid", "train-dict", str(cfg), "log_every=5"]) == 0
    out, err = capsys.readouterr()
    assert "dictionary: 8 experts" in out and "neural3d nid fit configs/nid_fit.yaml dictionary=" in out
    assert_progress_lines(err, "train", 10)
    fit_cfg = tmp_path / "fit.yaml"
    fit_cfg.write_text(f"dictionary: {tmp_path / 'run'}\noutput: {tmp_path / 'fit'}\n")
    assert main(["nid", "fit", str(fit_cfg), "--target", str(folder / "im4.png"), "observed_fraction=0.5"]) == 0
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert metrics["psnr"] > 10.0 and "psnr_hidden" in metrics and (tmp_path / "fit" / "fit.png").is_file()
    assert metrics["prior"] == "gaussian" and metrics["stride"] == 2 and metrics["support"] == "all"
    assert metrics["finetune_steps"] == 0
    assert (
        main(
            [
                "nid",
                "fit",
                str(fit_cfg),
                "--target",
                str(folder / "im4.png"),
                "observed_fraction=0.5",
                "finetune_steps=24",
                "finetune_select=fixed",
            ]
        )
        == 0
    )
    tuned = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert tuned["finetune_steps"] == 24 and tuned["psnr"] > 10.0
    assert (
        main(
            [
                "nid",
                "fit",
                str(fit_cfg),
                "--target",
                str(folder / "im4.png"),
                "observed_fraction=0.5",
                "finetune_steps=24",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "fit" / "metrics.json").read_text())["finetune_steps"] in range(0, 25, 2)
    assert (
        main(
            ["nid", "fit", str(fit_cfg), "--target", str(folder / "im4.png"), "prior=none", "stride=8", "support=topk"]
        )
        == 0
    )
    assert json.loads((tmp_path / "fit" / "metrics.json").read_text())["prior"] == "none"
    assert main(["nid", "fit", str(fit_cfg), "--target", str(folder / "im4.png"), "stride=3"]) == 2
    assert "'stride' 3" in capsys.readouterr().err
    assert main(["nid", "fit", str(fit_cfg), "--target", str(folder / "im4.png"), "prior=laplace"]) == 2
    assert "'prior'" in capsys.readouterr().err
    assert main(["nid", "train-dict", str(cfg), "gate.topq=3"]) == 2
    assert "gate.topq" in capsys.readouterr().err
