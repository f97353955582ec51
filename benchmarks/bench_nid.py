"""Neural implicit dictionaries vs same-size coordinate MLPs trained from scratch, side by side.

2D (held-out lego ``val`` renders at 64x64, 16x16 patches; dictionary trained on lego ``train``,
fern and generated-scene renders, see configs/nid_lego.yaml):
  * seconds and steps to a target PSNR: NID closed-form least squares, NID gradient steps on the codes,
    scratch MLP (same encoding and trunk, full-image coordinates) -> ratios;
  * PSNR on all pixels from 2 / 10 / 50 % observed pixels: NID ridge on disjoint patches (the first
    version), NID MAP under the Gaussian code prior on overlapping patches (prior weight chosen by
    validation on held-out observed pixels), the latter + a fine-tune of the bank, and scratch;
  * inpainting (stripes, salt-and-pepper, L1 fits): PSNR inside the hidden region (NID prior weight
    chosen on a lego *train* image with the same corruption);
  * expert usage (cv of the load, dead experts) on the training patches and on the held-out fits.
3D: a dictionary of radiance-field experts trained across a generated family; a new generated scene
is fitted by its code (then a short fine-tune) vs the hash-grid ``ngp`` field from scratch, PSNR vs seconds,
alternating time slices of the two so both see the same machine load.

Run (2 CPU cores shared with other jobs: timings are side by side and reported as ratios):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_nid.py --part 2d --dict runs/nid-lego
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_nid.py --part 3d
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine

from neural3d.apps.image_dictionary import corrupt_image, fit_image, load_dictionary, random_pixel_mask
from neural3d.apps.image_dictionary.data import load_image_folder
from neural3d.apps.image_dictionary.patches import grid_coords
from neural3d.apps.image_dictionary.workflows import (
    choose_finetune_steps,
    choose_prior_weight,
    finetune_image,
    holdout_split,
)
from neural3d.evaluation.metrics import psnr
from neural3d.methods.nid.experts import scratch_mlp_like
from neural3d.methods.nid.losses import usage_stats

REPO = Path(__file__).resolve().parents[1]


def scratch_fit(
    bank,
    image,
    *,
    steps,
    mask=None,
    loss="mse",
    lr=3e-3,
    target=None,
    scale_factor=1.0,
    seed=0,
    snapshots=None,
    snapshot_every=25,
):
    """Train a same-trunk coordinate MLP on one image; returns (image, steps, seconds, reached).

    ``snapshots``: a list that receives ``(step, image)`` every ``snapshot_every`` steps (and at 0).
    """
    torch.manual_seed(seed)
    net = scratch_mlp_like(bank, seed=seed)
    enc = net[0]
    if hasattr(enc, "B"):
        enc.B.mul_(scale_factor)
    H, W, C = image.shape
    x, y = grid_coords(H, W), image.reshape(-1, C)
    keep = torch.ones(H * W, dtype=torch.bool) if mask is None else mask.reshape(-1)
    xs, ys = x[keep], y[keep]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    t0, reached, step = time.perf_counter(), None, 0
    for step in range(1, steps + 1):
        if snapshots is not None and (step - 1) % snapshot_every == 0:
            with torch.no_grad():
                snapshots.append((step - 1, net(x).reshape(H, W, C).clamp(0, 1)))
        err = net(xs) - ys
        value = (err**2).mean() if loss == "mse" else err.abs().mean()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        if target is not None and loss == "mse" and mask is None and float(-10 * torch.log10(value.detach())) >= target:
            reached = step
            break
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        out = net(x).reshape(H, W, C).clamp(0, 1)
    if snapshots is not None:
        snapshots.append((step, out))
    return out, step, seconds, reached


def scratch_validated(bank, seen, mask, *, max_steps, scale_factor, every=25):
    """Scratch fit whose length is chosen like NID's fine-tune: on 20 % of the observed pixels held out,
    then retrained on all observed pixels for that many steps. Returns (image, steps, held-out MSE at that length)."""
    fit_mask, held = holdout_split(seen, mask)
    snaps = []
    scratch_fit(
        bank, seen, steps=max_steps, mask=fit_mask, scale_factor=scale_factor, snapshots=snaps, snapshot_every=every
    )
    errors = {st: float(((im - seen)[held] ** 2).mean()) for st, im in snaps if st > 0}
    best = min(errors, key=errors.get)
    return scratch_fit(bank, seen, steps=best, mask=mask, scale_factor=scale_factor)[0], best, errors[best]


def part_2d(args) -> dict:
    trained = load_dictionary(args.dict)
    model, p = trained.model, trained.patch_size
    bank = model.bank
    size = trained.image_size
    held = load_image_folder(SHARED_DATA / "nerf_synthetic" / "lego" / "val", size, max_images=args.n_images)
    ratio = size // p  # scratch sees the whole image in [-1, 1]: same per-pixel bandwidth needs scale * ratio
    res: dict = {
        "dictionary": str(args.dict),
        "num_experts": model.num_experts,
        "topk": model.topk,
        "bank_params": sum(q.numel() for q in bank.parameters()),
        "scratch_params": sum(q.numel() for q in scratch_mlp_like(bank).parameters()),
    }
    # -- time to target
    rows = []
    for i, img in enumerate(held if "target" in args.only else []):
        ls = fit_image(model, img, patch=p, method="lstsq", init="ridge")
        gd = fit_image(
            model,
            img,
            patch=p,
            method="gradient",
            init="ridge",
            steps=args.code_steps,
            lr=1e-2,
            target_psnr=args.target,
        )
        sc_best = None
        for factor in (1.0, float(ratio)):
            out, _steps, sec, reached = scratch_fit(
                bank, img, steps=args.scratch_max_steps, target=args.target, scale_factor=factor
            )
            row = {"factor": factor, "steps": reached, "seconds": sec, "psnr": float(psnr(out, img))}
            if sc_best is None or (reached is not None and (sc_best["steps"] is None or sec < sc_best["seconds"])):
                sc_best = row
        gd_psnr = float(psnr(gd.image, img))
        rows.append(
            {
                "image": i,
                "nid_lstsq_psnr": float(psnr(ls.image, img)),
                "nid_lstsq_s": ls.seconds,
                "nid_grad_psnr": gd_psnr,
                "nid_grad_steps": len(gd.codes.history),
                "nid_grad_s": gd.seconds,
                "scratch": sc_best,
            }
        )
        print(
            f"[2d] image {i}: NID lstsq {rows[-1]['nid_lstsq_psnr']:.2f} dB in {ls.seconds:.3f} s | NID codes "
            f"{gd_psnr:.2f} dB after {len(gd.codes.history)} steps {gd.seconds:.2f} s | "
            f"scratch (B x{sc_best['factor']:.0f}) "
            f"reached {args.target} dB: {sc_best['steps']} steps {sc_best['seconds']:.2f} s",
            flush=True,
        )
    res["time_to_target"] = {"target_psnr": args.target, "per_image": rows}
    # -- sparse observations
    sparse = {}
    prior, stride = trained.prior, args.stride
    for frac in args.fractions if "sparse" in args.only else ():
        vals = {
            "nid_ridge": [],
            "nid_prior": [],
            "nid_prior_ft": [],
            "nid_prior_ftv": [],
            "scratch": [],
            "scratch_v": [],
            "scratch_vv": [],
            "scratch_vv_scale": [],
            "prior_weight": [],
            "ft_steps": [],
            "scratch_v_steps": [],
            "nid_prior_s": [],
            "nid_ftv_s": [],
            "scratch_s": [],
        }
        for i, img in enumerate(held[: args.n_sparse]):
            mask = random_pixel_mask(size, size, frac, seed=i)
            seen = img * mask[..., None]
            ridge = fit_image(
                model,
                seen,
                patch=p,
                mask=mask,
                method="lstsq",
                init="ridge",
                lam_dense=args.lam_sparse,
                lam=args.lam_sparse,
            )
            t0 = time.perf_counter()
            weight = choose_prior_weight(model, seen, patch=p, mask=mask, prior=prior, stride=stride, support="all")
            nid = fit_image(
                model, seen, patch=p, mask=mask, prior=prior, prior_weight=weight, stride=stride, support="all"
            )
            vals["nid_prior_s"].append(time.perf_counter() - t0)
            ft = finetune_image(model, nid, seen, patch=p, mask=mask, steps=args.scratch_steps, stride=stride)
            t0 = time.perf_counter()
            n_ft = choose_finetune_steps(
                model,
                seen,
                patch=p,
                mask=mask,
                max_steps=args.finetune_max_steps,
                prior=prior,
                prior_weight=weight,
                stride=stride,
                support="all",
            )
            ftv = finetune_image(model, nid, seen, patch=p, mask=mask, steps=n_ft, stride=stride)
            vals["nid_ftv_s"].append(vals["nid_prior_s"][-1] + time.perf_counter() - t0)
            t0 = time.perf_counter()
            best = max(
                float(psnr(scratch_fit(bank, img, steps=args.scratch_steps, mask=mask, scale_factor=f)[0], img))
                for f in (1.0, float(ratio))
            )
            vals["scratch_s"].append(time.perf_counter() - t0)
            sv = [
                scratch_validated(bank, seen, mask, max_steps=args.finetune_max_steps, scale_factor=f)
                for f in (1.0, float(ratio))
            ]
            sv_psnr = [float(psnr(out, img)) for out, _, _ in sv]
            vals["scratch_v"].append(max(sv_psnr))  # Fourier scale picked with the clean image (favours scratch)
            vals["scratch_v_steps"].append(sv[sv_psnr.index(max(sv_psnr))][1])
            pick = min(range(len(sv)), key=lambda j: sv[j][2])  # scale picked on held-out observed pixels, as NID's
            vals["scratch_vv"].append(sv_psnr[pick])
            vals["scratch_vv_scale"].append((1.0, float(ratio))[pick])
            vals["nid_prior_ftv"].append(float(psnr(ftv.image, img)))
            vals["ft_steps"].append(n_ft)
            vals["nid_ridge"].append(float(psnr(ridge.image, img)))
            vals["nid_prior"].append(float(psnr(nid.image, img)))
            vals["nid_prior_ft"].append(float(psnr(ft.image, img)))
            vals["scratch"].append(best)
            vals["prior_weight"].append(weight)
        lists = ("prior_weight", "ft_steps", "scratch_v_steps", "scratch_vv_scale")
        sparse[str(frac)] = {k: sum(v) / len(v) for k, v in vals.items() if k not in lists}
        sparse[str(frac)].update({k: vals[k] for k in lists})
        r = sparse[str(frac)]
        print(
            f"[2d] {100 * frac:.0f}% observed (all-pixel PSNR): NID ridge {r['nid_ridge']:.2f} | NID prior "
            f"{r['nid_prior']:.2f} (weights {vals['prior_weight']}, {r['nid_prior_s']:.1f} s incl. validation) | "
            f"NID prior + fine-tune {r['nid_prior_ft']:.2f} | scratch {r['scratch']:.2f} ({r['scratch_s']:.1f} s, "
            f"2 scales) | NID prior - scratch {r['nid_prior'] - r['scratch']:+.2f} dB; load {os.getloadavg()}",
            flush=True,
        )
        print(
            f"[2d] {100 * frac:.0f}% validated lengths (<= {args.finetune_max_steps} steps, "
            "chosen on held-out observed "
            f"pixels): NID prior + fine-tune {r['nid_prior_ftv']:.2f} (steps {vals['ft_steps']}, "
            f"{r['nid_ftv_s']:.1f} s) | scratch {r['scratch_v']:.2f} (steps {vals['scratch_v_steps']}, Fourier scale "
            f"picked with the clean image) | "
            f"NID - best scratch {r['nid_prior_ftv'] - max(r['scratch'], r['scratch_v']):+.2f} dB",
            flush=True,
        )
        print(
            f"[2d] {100 * frac:.0f}% everything validated on held-out observed pixels (no clean image): NID prior + "
            f"fine-tune {r['nid_prior_ftv']:.2f} | scratch {r['scratch_vv']:.2f} (scales {vals['scratch_vv_scale']}) | "
            f"NID - scratch {r['nid_prior_ftv'] - r['scratch_vv']:+.2f} dB",
            flush=True,
        )
    res["sparse"] = sparse
    # -- inpainting: NID ridge (first version, k=inpaint_k, disjoint patches) and NID MAP under the prior with
    # the setting per corruption below; its prior weight is chosen on a lego *train* image with the same corruption
    inpaint = {}
    train_img = load_image_folder(SHARED_DATA / "nerf_synthetic" / "lego" / "train", size, max_images=1)[0]
    settings = {
        "stripes": {"support": "topk", "k": args.inpaint_k, "stride": p},
        "saltpepper": {"support": "all", "k": None, "stride": stride},
    }
    for kind, amount in (("stripes", 0.2), ("saltpepper", 0.1)) if "inpaint" in args.only else ():
        kw = settings[kind]
        bad_train, hidden_train = corrupt_image(train_img, kind, amount, seed=100)
        scores = {
            w: float(
                psnr(
                    fit_image(model, bad_train, patch=p, loss="l1", prior=prior, prior_weight=w, **kw).image,
                    train_img,
                    mask=hidden_train,
                )
            )
            for w in (1e-5, 1e-4, 1e-3, 1e-2)
        }
        weight = max(scores, key=scores.get)
        vals = {"nid_ridge": [], "nid_prior": [], "scratch": [], "input": []}
        for i, img in enumerate(held[: args.n_sparse]):
            bad, hidden = corrupt_image(img, kind, amount, seed=i)
            ridge = fit_image(model, bad, patch=p, method="lstsq", loss="l1", init="ridge", k=args.inpaint_k)
            nid = fit_image(model, bad, patch=p, loss="l1", prior=prior, prior_weight=weight, **kw)
            best = max(
                float(
                    psnr(
                        scratch_fit(bank, bad, steps=args.scratch_steps, loss="l1", scale_factor=f)[0], img, mask=hidden
                    )
                )
                for f in (1.0, float(ratio))
            )
            vals["nid_ridge"].append(float(psnr(ridge.image, img, mask=hidden)))
            vals["nid_prior"].append(float(psnr(nid.image, img, mask=hidden)))
            vals["scratch"].append(best)
            vals["input"].append(float(psnr(bad, img, mask=hidden)))
        inpaint[kind] = {k: sum(v) / len(v) for k, v in vals.items()}
        inpaint[kind].update(prior_weight=weight, train_scores=scores, setting=dict(kw.items()))
        r = inpaint[kind]
        print(
            f"[2d] inpainting {kind}: hidden-region PSNR NID ridge (k={args.inpaint_k}) {r['nid_ridge']:.2f} | NID "
            f"prior ({kw}, weight {weight:g} chosen on a train image) {r['nid_prior']:.2f} | scratch "
            f"{r['scratch']:.2f} | corrupted input {r['input']:.2f}; load {os.getloadavg()}",
            flush=True,
        )
    res["inpainting"] = inpaint
    # -- expert usage on the held-out fits
    gates = []
    for img in held:
        fit = fit_image(model, img, patch=p, method="lstsq", init="ridge")
        gates.append(
            torch.zeros(fit.codes.indices.shape[0], model.num_experts).scatter(1, fit.codes.indices, fit.codes.values)
        )
    res["usage_heldout"] = usage_stats(torch.cat(gates))
    metrics_file = Path(args.dict) / "metrics.json"
    if metrics_file.is_file():
        m = json.loads(metrics_file.read_text())
        res["usage_train"] = {k: m[k] for k in ("load_cv", "dead_experts", "num_experts", "train_psnr", "seconds")}
    print(f"[2d] usage: train {res.get('usage_train')} held-out {res['usage_heldout']}", flush=True)
    return res


def part_3d(args) -> dict:
    from neural3d.data import load_scene
    from neural3d.data.loader import RayLoader
    from neural3d.data.synthetic import write_blender_scene
    from neural3d.methods.ngp.model import NGPModel, NGPModelConfig
    from neural3d.methods.nid.family import fit_scene, test_psnr, train_family
    from neural3d.training.checkpoint import latest_checkpoint
    from neural3d.training.setup import scene_info

    work = Path(args.work)
    fam_cfg = {
        "family": str(work / "family"),
        "n_scenes": args.n_scenes,
        "res": 32,
        "n_train": 20,
        "n_test": 4,
        "model": {"num_experts": 64, "topk": 16, "hidden_dim": 128, "n_layers": 3, "n_samples": 48},
        "steps": args.family_steps,
        "scenes_per_step": 4,
        "rays_per_scene": 256,
        "log_every": 100,
        "checkpoint_every": 100,
    }
    t0 = time.perf_counter()
    run = work / "family-run"
    train_family(fam_cfg, run_dir=run)
    family_s = time.perf_counter() - t0
    new = work / "new-scene"
    if not (new / "transforms_test.json").is_file():
        write_blender_scene(new, seed=987654, res=32, n_train=20, n_val=1, n_test=4, supersample=1)
    scene = load_scene(new)
    ckpt = str(latest_checkpoint(run))
    ngp_cfg = NGPModelConfig(
        sampler="grid",
        n_samples=24,
        n_coarse=64,
        grid_resolution=32,
        n_levels=8,
        log2_hashmap_size=14,
        max_resolution=128,
    )
    ngp = NGPModel(ngp_cfg, scene=scene_info(scene))
    opt = torch.optim.Adam(ngp.parameters(), lr=1e-2, eps=1e-15)
    loader = RayLoader(scene, "train", 512, seed=0)
    ngp_curve, ngp_s, ngp_step = [(0.0, test_psnr(ngp, scene))], 0.0, 0
    nid_curve = []

    def ngp_until(limit_s):
        nonlocal ngp_s, ngp_step
        ngp.train()
        while ngp_s < limit_s:
            t = time.perf_counter()
            ngp.training_step_begin(ngp_step)
            b = next(loader)
            loss = torch.mean((ngp(b.rays)["rgb"] - b.rgb) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ngp_s += time.perf_counter() - t
            ngp_step += 1
        ngp_curve.append((ngp_s, test_psnr(ngp, scene)))

    # NID code fit (then fine-tune), its checkpoints, each followed by NGP running to the same seconds
    _, hist = fit_scene(
        ckpt,
        scene,
        steps=args.code_steps,
        finetune_steps=args.finetune_steps,
        rays=512,
        eval_every=args.eval_every,
        log=lambda s: None,
    )
    for h in hist[1:]:
        nid_curve.append((h["seconds"], h["psnr"], h["step"]))
        ngp_until(h["seconds"])
        print(
            f"[3d] {h['seconds']:6.1f} s: NID step {h['step']} {h['psnr']:.2f} dB | NGP step {ngp_step} "
            f"{ngp_curve[-1][1]:.2f} dB",
            flush=True,
        )
    ngp_until(ngp_s + args.ngp_extra_s)
    print(f"[3d] NGP continued to {ngp_s:.1f} s: {ngp_curve[-1][1]:.2f} dB", flush=True)
    return {
        "family_train_seconds": family_s,
        "n_scenes": args.n_scenes,
        "family_steps": args.family_steps,
        "code_steps": args.code_steps,
        "finetune_steps": args.finetune_steps,
        "nid_curve": nid_curve,
        "ngp_curve": ngp_curve,
        "nid_initial_psnr": hist[0]["psnr"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["2d", "3d", "all"], default="all")
    ap.add_argument("--dict", default="runs/nid-lego", help="trained 2D dictionary (neural3d nid train-dict)")
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument("--n-sparse", type=int, default=2)
    ap.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.02, 0.1, 0.5],
        help="observed fractions of the sparse-observation fits",
    )
    ap.add_argument("--target", type=float, default=20.0)
    ap.add_argument("--code-steps", type=int, default=300)
    ap.add_argument("--scratch-max-steps", type=int, default=1500)
    ap.add_argument("--scratch-steps", type=int, default=300)
    ap.add_argument(
        "--finetune-max-steps",
        type=int,
        default=600,
        help="sparse: longest NID fine-tune / scratch fit when the length is chosen by validation",
    )
    ap.add_argument("--lam-sparse", type=float, default=3e-2)
    ap.add_argument("--inpaint-k", type=int, default=16, help="experts per patch for the robust (L1) fits")
    ap.add_argument("--stride", type=int, default=4, help="patch stride of the prior fits (overlapping patches)")
    ap.add_argument("--only", default="target,sparse,inpaint", help="2d parts to run")
    ap.add_argument("--work", default="runs/bench-nid")
    ap.add_argument("--n-scenes", type=int, default=6)
    ap.add_argument("--family-steps", type=int, default=300)
    ap.add_argument("--finetune-steps", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--ngp-extra-s", type=float, default=60.0)
    ap.add_argument("--out", default=None, help="write the figures as JSON")
    args = ap.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()}", flush=True)
    res = {}
    if args.part in ("2d", "all"):
        res["2d"] = part_2d(args)
    if args.part in ("3d", "all"):
        res["3d"] = part_3d(args)
    print(f"load average at the end {os.getloadavg()}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
