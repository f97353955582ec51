"""Training throughput of the hash-grid field with the proposal sampler next to dense (uniform) sampling.

    python benchmarks/bench_proposal.py [--scene PATH] [--seconds 40] [--batch-size 1024] [--threads N]

Default scene: lego at factor 8 (100x100) from ../shared/data. The methods are trained in one process,
interleaved in short slices of equal step counts (so machine load hits them alike); per method it prints
rays/s, field samples/s (samples of the main field, with gradients), proposal samples/s, the ratios to the
first method, train PSNR over the last steps and val PSNR on a few images. ``os.getloadavg()`` is printed
before and after. ``bench(...)`` returns the rows for other scripts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine

from neural3d.evaluation.metrics import mse_to_psnr
from neural3d.fields import NGPField
from neural3d.losses import distortion_loss, interlevel_loss
from neural3d.render.volume import accumulate, render_weights_from_density
from neural3d.samplers import UniformSampler
from neural3d.samplers.proposal import ProposalSampler


@dataclass
class Method:
    """One configuration: dense uniform sampling (``proposal`` None) or proposal sampling."""

    name: str
    n_samples: int
    proposal: tuple[int, ...] | None = None
    distortion_mult: float = 0.0
    stats: dict = field(default_factory=lambda: {"steps": 0, "seconds": 0.0, "psnr": []})


def _build(method: Method, scene, log2_hashmap_size: int):
    field_ = NGPField(aabb=scene.scene_box, log2_hashmap_size=log2_hashmap_size, backend="auto")
    if method.proposal is None:
        sampler = UniformSampler(n_samples=method.n_samples)
    else:
        sampler = ProposalSampler(
            aabb=scene.scene_box,
            n_samples=method.n_samples,
            n_proposal_samples=method.proposal,
            proposal_max_resolutions=(128, 256, 256)[: len(method.proposal)],
            anneal_steps=200,
            update_every=5,
            update_warmup=200,
        )
    params = list(field_.parameters()) + list(sampler.parameters())
    opt = torch.optim.Adam(params, lr=1e-2, eps=1e-15, betas=(0.9, 0.99))
    return field_, sampler, opt


def render(field_, sampler, rays, background):
    """[n_rays] rays -> (rgb [n_rays, 3], weights [n_rays, n], samples, proposal rounds)."""
    if isinstance(sampler, ProposalSampler):
        samples, rounds = sampler(rays)
    else:
        samples, rounds = sampler(rays), []
    density, rgb = field_.query(samples.positions, samples.viewdirs)
    dist = samples.deltas * torch.linalg.vector_norm(rays.directions, dim=-1, keepdim=True)
    weights = render_weights_from_density(density[..., 0], dist)
    out = accumulate(weights, rgb) + (1.0 - accumulate(weights)) * background
    return out, weights, samples, rounds


def train_steps(method: Method, state, loader, background, n_steps: int) -> None:
    field_, sampler, opt = state
    field_.train()
    sampler.train()
    start = time.perf_counter()
    for _ in range(n_steps):
        step = method.stats["steps"]
        if isinstance(sampler, ProposalSampler):
            sampler.training_step_begin(step)
        batch = next(loader)
        rgb, weights, samples, rounds = render(field_, sampler, batch.rays, background)
        mse = torch.mean((rgb - batch.rgb) ** 2)
        loss = mse
        if rounds:
            loss = loss + interlevel_loss(rounds, samples.edges, weights)
            if method.distortion_mult > 0:
                loss = loss + method.distortion_mult * distortion_loss(weights, sampler.spacing(samples))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.stats["steps"] += 1
        method.stats["psnr"].append(mse_to_psnr(max(mse.item(), 1e-10)))
    method.stats["seconds"] += time.perf_counter() - start


@torch.no_grad()
def val_psnr(state, scene, background, n_images: int, chunk: int = 4096) -> float:
    field_, sampler, _ = state
    field_.eval()
    sampler.eval()
    idx = scene.splits["val"][:n_images]
    psnrs = []
    for i in idx.tolist():
        rays = scene.image_rays(i).reshape(-1)
        target = scene.images[i].reshape(-1, 3)
        out = torch.cat(
            [render(field_, sampler, rays[k : k + chunk], background)[0] for k in range(0, len(rays), chunk)]
        )
        psnrs.append(mse_to_psnr(torch.mean((out - target) ** 2).item()))
    return sum(psnrs) / len(psnrs)


def bench(
    scene_path: Path,
    *,
    seconds: float = 40.0,
    batch_size: int = 1024,
    slice_steps: int = 5,
    log2_hashmap_size: int = 19,
    val_images: int = 2,
    methods: list[Method] | None = None,
) -> list[dict]:
    """Train every method for about ``seconds`` of its own time, interleaved; returns one dict per method."""
    from neural3d.data import load_scene
    from neural3d.data.loader import RayLoader

    scene = load_scene(scene_path, factor=8)
    background = scene.background
    methods = methods or [
        Method("hash dense 64", 64),
        Method("hash + proposal 64/32 -> 32", 32, proposal=(64, 32)),
        Method("hash + proposal 64 -> 32", 32, proposal=(64,)),
    ]
    torch.manual_seed(0)
    states = [_build(m, scene, log2_hashmap_size) for m in methods]
    loaders = [RayLoader(scene, "train", batch_size=batch_size, seed=0) for _ in methods]
    for m, s, ld in zip(methods, states, loaders):  # warm-up, not timed
        train_steps(m, s, ld, background, 2)
        m.stats.update(steps=0, seconds=0.0, psnr=[])
    while min(m.stats["seconds"] for m in methods) < seconds:
        for m, s, ld in zip(methods, states, loaders):
            train_steps(m, s, ld, background, slice_steps)
    rows = []
    for m, s in zip(methods, states):
        st = m.stats
        rays_s = st["steps"] * batch_size / st["seconds"]
        prop = sum(m.proposal) if m.proposal else 0
        tail = st["psnr"][-20:]
        rows.append(
            {
                "method": m.name,
                "steps": st["steps"],
                "seconds": st["seconds"],
                "rays_per_s": rays_s,
                "field_samples_per_s": rays_s * m.n_samples,
                "proposal_samples_per_s": rays_s * prop,
                "train_psnr": sum(tail) / len(tail),
                "val_psnr": val_psnr(s, scene, background, val_images),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", type=Path, default=SHARED_DATA / "nerf_synthetic" / "lego")
    p.add_argument("--seconds", type=float, default=40.0, help="training seconds per method")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--log2-hashmap-size", type=int, default=19)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.scene.exists():
        raise SystemExit(f"bench_proposal.py: scene not found: {args.scene}")
    print(machine())
    print(f"scene {args.scene} (factor 8), batch {args.batch_size} rays, {args.seconds:.0f} s per method, interleaved")
    print(f"loadavg before: {os.getloadavg()}", flush=True)
    rows = bench(args.scene, seconds=args.seconds, batch_size=args.batch_size, log2_hashmap_size=args.log2_hashmap_size)
    print(f"loadavg after:  {os.getloadavg()}")
    base = rows[0]
    print(
        f"{'method':30s} {'steps':>6s} {'rays/s':>9s} {'field smp/s':>12s} {'prop smp/s':>11s} "
        f"{'x rays/s':>8s} {'train PSNR':>10s} {'val PSNR':>8s}"
    )
    for r in rows:
        print(
            f"{r['method']:30s} {r['steps']:6d} {r['rays_per_s']:9,.0f} {r['field_samples_per_s']:12,.0f} "
            f"{r['proposal_samples_per_s']:11,.0f} {r['rays_per_s'] / base['rays_per_s']:8.2f} "
            f"{r['train_psnr']:10.2f} {r['val_psnr']:8.2f}"
        )


if __name__ == "__main__":
    main()
