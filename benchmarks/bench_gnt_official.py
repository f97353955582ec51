"""GNT rendering rays/s against the official code (VITA-Group/GNT), side by side on one checkpoint and one input.

    python benchmarks/bench_gnt_official.py --official /work/peers/GNT [--data ../shared/data/nerf_llff_data/fern]
        [--factor 8] [--depth 8] [--samples 64 192] [--rays 256] [--chunk 500] [--rounds 5] [--threads 2]

The official side is the peer checkout given by ``--official`` (never part of this project), run as its
``eval.py`` runs it: ``render_single_image`` (its chunk loop over ``render_rays``, ``Projector.compute`` and
``GNT.forward``) under ``torch.no_grad()``, ``N_importance = 0``, ``inv_uniform = True``, ``det = True``, with
``ret_alpha = True`` so it returns the attention weights and depth as well (``eval.py`` sets it only when
``N_importance > 0``; the attention row it returns is computed in any case). "64 samples" is
``N_samples = 64`` (the official configs), "192 samples" ``N_samples = 192`` (the README's evaluation command);
``N_importance = 0`` in both.

Weights: random, of the official layout (the official ``GNT`` and ``ResUNet`` modules built with
``torch.manual_seed(--seed)``, ``rgb_fc.bias`` set to 0.5 so colours fall inside [0, 1] where the evaluation's
clamp does not hide differences), loaded into neural3d through the official-checkpoint conversion. Network:
``--depth`` blocks (8: the released cross-scene model ``gnt_full``; 4: the single-scene configs), width 64, the
``--views`` nearest source views by camera-centre distance (official LLFF selection).

Inputs: the official rays of the scene's first test view (``RaySamplerSingleImage``, integer pixel centres), the
``--rays`` rays of the image's central rows; neural3d renders the same origins and directions. Feature maps are
computed once per frame by each side and are not timed (rays/s measures the per-ray work).

Timing: every contestant runs in its own worker process (its own heap: run in one process, the contestants
change each other's speed through the allocator's state, which large tensors make a first-order effect here),
started once; the main process then asks them in turns for ``--rounds`` rounds, each contestant rendering all
``--rays`` rays once per round, the order rotating between rounds (the machine is shared: load falls on all
alike). Medians over rounds of wall-clock rays/s and of the worker's process-CPU rays/s, and the median of the
per-round ratios to the official code. Contestants: ``official`` (chunk ``--chunk``), ``neural3d`` (the default
inference path, the same ``--chunk`` per call), unless ``--no-reference`` ``neural3d-ref``
(``model.fused_inference=false``: the reference arithmetic), and with ``--official-chunk N`` also the official
code at chunk N (a smaller chunk runs faster on a CPU), and with ``--baseline-tree DIR`` also ``neural3d-baseline``:
the default path of another neural3d source tree (``DIR/neural3d``, e.g. ``git archive COMMIT neural3d | tar -x -C
DIR``; its worker imports that tree first), to measure before and after side by side. Max abs differences of rgb
and depth to the official outputs (the official rgb clamped to [0, 1] as neural3d's evaluation clamps) are printed
for every contestant.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

ROOT = Path(__file__).resolve().parents[1]


def official_modules(path: Path):
    """The official ``GNT``, ``ResUNet`` and ``render_single_image`` from a checkout of VITA-Group/GNT."""
    if not (path / "gnt" / "transformer_network.py").is_file():
        raise SystemExit(f"--official {path}: not a checkout of VITA-Group/GNT (gnt/transformer_network.py missing)")
    sys.path.insert(0, str(path))
    from gnt.feature_network import ResUNet
    from gnt.projection import Projector
    from gnt.render_image import render_single_image
    from gnt.sample_ray import RaySamplerSingleImage
    from gnt.transformer_network import GNT

    return SimpleNamespace(
        GNT=GNT,
        ResUNet=ResUNet,
        Projector=Projector,
        render_single_image=render_single_image,
        RaySamplerSingleImage=RaySamplerSingleImage,
    )


def random_official_weights(off, depth: int, seed: int) -> dict:
    """An official-layout checkpoint dict (``net_coarse``, ``feature_net``) of seeded random weights."""
    torch.manual_seed(seed)
    net = off.GNT(SimpleNamespace(netwidth=64, trans_depth=depth), in_feat_ch=32, posenc_dim=63, viewenc_dim=63)
    with torch.no_grad():
        net.rgb_fc.bias.fill_(0.5)
    feature_net = off.ResUNet(coarse_out_ch=32, fine_out_ch=32, single_net=True)
    return {"net_coarse": net.state_dict(), "feature_net": feature_net.state_dict()}


def build_official(off, ckpt: dict, depth: int):
    net = off.GNT(SimpleNamespace(netwidth=64, trans_depth=depth), in_feat_ch=32, posenc_dim=63, viewenc_dim=63)
    net.ret_alpha = True
    net.load_state_dict(ckpt["net_coarse"])
    feature_net = off.ResUNet(coarse_out_ch=32, fine_out_ch=32, single_net=True)
    feature_net.load_state_dict(ckpt["feature_net"])
    return SimpleNamespace(net_coarse=net.eval(), net_fine=None, feature_net=feature_net.eval())


def build_neural3d(scene, ckpt: dict, depth: int, views: int, n_samples: int, fused: bool):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.gnt.checkpoint import official_to_state_dict
    from neural3d.methods.gnt.model import GNTModel, GNTModelConfig

    cfg = GNTModelConfig(
        depth=depth,
        n_samples=n_samples,
        n_source_views=views,
        selection="dist",
        lindisp=True,
        fused_inference=fused,
    )
    model = GNTModel(cfg, scene=SceneInfo(scene.scene_box, scene.near, scene.far))
    model.load_state_dict(official_to_state_dict(ckpt), strict=True)
    model.attach_scene(scene)
    return model.eval()


class Frame:
    """One target view: the official ray batch and the same rays as a neural3d ``RayBundle``."""

    def __init__(self, off, scene, model, index: int, n_rays: int) -> None:
        from neural3d.core.rays import RayBundle
        from neural3d.methods.gnt.projection import cameras_to_records

        self.context = model.render_context(scene.cameras, index)
        target = cameras_to_records(scene.cameras[index : index + 1])
        sources = cameras_to_records(self.context.cameras)
        depth_range = torch.tensor([[float(scene.near), float(scene.far)]])
        data = {"camera": target, "rgb_path": "", "depth_range": depth_range}
        sampler = off.RaySamplerSingleImage(data, "cpu")
        start = max(0, (sampler.H * sampler.W - n_rays) // 2)
        o, d = sampler.rays_o[start : start + n_rays], sampler.rays_d[start : start + n_rays]
        self.batch = {
            "ray_o": o,
            "ray_d": d,
            "depth_range": depth_range,
            "camera": target,
            "src_rgbs": self.context.images[None],
            "src_cameras": sources[None],
        }
        n = o.shape[0]
        self.rays = RayBundle(
            o, d, d / d.norm(dim=-1, keepdim=True), depth_range[0, 0].expand(n), depth_range[0, 1].expand(n)
        )
        self.n_rays = n


def official_render(off, nets, frame: Frame, featmaps, n_samples: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = off.render_single_image(
            SimpleNamespace(H=1, W=frame.n_rays),
            frame.batch,
            nets,
            off.Projector("cpu"),
            chunk,
            n_samples,
            inv_uniform=True,
            N_importance=0,
            det=True,
            featmaps=featmaps,
            ret_alpha=True,
            single_net=True,
        )["outputs_coarse"]
    return out["rgb"].reshape(-1, 3), out["depth"].reshape(-1)


def neural3d_render(model, frame: Frame, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = model.render_rays(frame.rays, chunk=chunk, context=frame.context)
    return out["rgb"], out["depth"].reshape(-1)


def worker(conn, spec: dict) -> None:
    """A contestant's process: build its side once, then render the frame's rays on every request."""
    torch.set_num_threads(spec["threads"])
    if spec.get("tree"):  # a baseline: another neural3d source tree, found before the installed one
        sys.path.insert(0, str(Path(spec["tree"]).resolve()))
    from neural3d.data import load_scene

    off = official_modules(Path(spec["official"]))
    scene = load_scene(Path(spec["data"]), factor=spec["factor"], ndc=False, llffhold=8)
    scene.pixel_center = 0.0  # the official rays pass through integer pixel coordinates
    index = int(scene.split_indices("test")[0])
    ckpt, kind = spec["ckpt"], spec["kind"]
    nets = build_official(off, ckpt, spec["depth"]) if kind == "official" else None
    renders = {}
    for n in spec["samples"]:
        model = build_neural3d(scene, ckpt, spec["depth"], spec["views"], n, kind != "neural3d-ref")
        frame = Frame(off, scene, model, index, spec["rays"])
        if kind == "official":
            with torch.no_grad():
                feats = nets.feature_net(frame.context.images.permute(0, 3, 1, 2))
            renders[n] = lambda n=n, f=frame, feats=feats: official_render(off, nets, f, feats, n, spec["chunk"])
        else:
            renders[n] = lambda m=model, f=frame: neural3d_render(m, f, spec["chunk"])
        renders[n]()  # warm-up; the feature maps of the frame
    conn.send("ready")
    while (n := conn.recv()) is not None:
        c0, w0 = time.process_time(), time.perf_counter()
        rgb, depth = renders[n]()
        w1, c1 = time.perf_counter(), time.process_time()
        conn.send((w1 - w0, c1 - c0, rgb, depth))


def race(specs: dict[str, dict], samples: list[int], rounds: int, on_result=None) -> dict:
    """Start one worker per contestant, then rounds of one render each, the order rotating; ``on_result(n, res)``
    after each sample count."""
    ctx = mp.get_context("spawn")
    conns, procs = {}, []
    for name, spec in specs.items():
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(child, spec), daemon=True)
        proc.start()
        conns[name], procs = parent, [*procs, proc]
    for conn in conns.values():
        if conn.recv() != "ready":
            raise RuntimeError("a benchmark worker failed to start")
    names = list(specs)
    out = {}
    for n in samples:
        res: dict = {"wall": {k: [] for k in names}, "cpu": {k: [] for k in names}, "outputs": {}}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                conns[name].send(n)
                wall, cpu, rgb, depth = conns[name].recv()
                n_rays = rgb.shape[0]
                res["wall"][name].append(n_rays / wall)
                res["cpu"][name].append(n_rays / cpu)
                res["outputs"].setdefault(name, (rgb, depth))
        out[n] = res
        if on_result is not None:
            on_result(n, res)
    for conn in conns.values():
        conn.send(None)
    for proc in procs:
        proc.join()
    return out


def summarise(res: dict, base: str = "official") -> dict:
    """Median rays/s per contestant, median per-round ratios to ``base``, max abs output differences."""
    out: dict = {}
    for name, rates in res["wall"].items():
        row = {
            "rays_per_s_wall": statistics.median(rates),
            "rays_per_s_cpu": statistics.median(res["cpu"][name]),
            "rounds_wall": rates,
            "rounds_cpu": res["cpu"][name],
        }
        if name != base:
            row["ratio_wall"] = statistics.median([a / b for a, b in zip(rates, res["wall"][base])])
            row["ratio_cpu"] = statistics.median([a / b for a, b in zip(res["cpu"][name], res["cpu"][base])])
            rgb, depth = res["outputs"][name]
            rgb0, depth0 = res["outputs"][base]
            row["max_abs_rgb"] = float((rgb.clamp(0.0, 1.0) - rgb0.clamp(0.0, 1.0)).abs().max())
            row["max_abs_depth"] = float((depth - depth0).abs().max())
            row["official_rgb_inside_01"] = float(((rgb0 > 0) & (rgb0 < 1)).float().mean())
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default="", help="checkout of github.com/VITA-Group/GNT (required)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "nerf_llff_data" / "fern"))
    ap.add_argument("--factor", type=int, default=8, help="LLFF image downscale factor (images_N)")
    ap.add_argument("--depth", type=int, default=8, help="transformer blocks (8: gnt_full, 4: single-scene)")
    ap.add_argument("--views", type=int, default=10, help="source views")
    ap.add_argument("--samples", type=int, nargs="+", default=[64, 192], help="N_samples per ray (N_importance 0)")
    ap.add_argument("--rays", type=int, default=256, help="rays rendered per turn")
    ap.add_argument("--chunk", type=int, default=500, help="rays per forward pass (official README: 500)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true", help="skip the neural3d reference-arithmetic path")
    ap.add_argument("--official-chunk", type=int, nargs="*", default=[], help="also the official code at these chunks")
    ap.add_argument("--baseline-tree", default="", help="also neural3d's default path from DIR/neural3d (before/after)")
    ap.add_argument("--out", default="", help="write the figures as JSON here")
    args = ap.parse_args()
    if not args.official:
        raise SystemExit("--official PATH is needed (a checkout of github.com/VITA-Group/GNT)")
    off = official_modules(Path(args.official))
    ckpt = random_official_weights(off, args.depth, args.seed)
    base = {
        "official": str(Path(args.official).resolve()),
        "data": args.data,
        "factor": args.factor,
        "depth": args.depth,
        "views": args.views,
        "samples": args.samples,
        "rays": args.rays,
        "chunk": args.chunk,
        "threads": args.threads,
        "ckpt": ckpt,
    }
    specs = {"official": {**base, "kind": "official"}, "neural3d": {**base, "kind": "neural3d"}}
    if not args.no_reference:
        specs["neural3d-ref"] = {**base, "kind": "neural3d-ref"}
    if args.baseline_tree:
        if not (Path(args.baseline_tree) / "neural3d" / "__init__.py").is_file():
            raise SystemExit(f"--baseline-tree {args.baseline_tree}: no neural3d/__init__.py there")
        specs["neural3d-baseline"] = {**base, "kind": "neural3d", "tree": args.baseline_tree}
    for chunk in args.official_chunk:
        specs[f"official-chunk{chunk}"] = {**base, "kind": "official", "chunk": chunk}
    print(machine())
    print(
        f"{args.data} images_{args.factor}, first test view; depth {args.depth}, {args.views} views, {args.rays} "
        f"rays per turn, chunk {args.chunk}, {args.threads} threads per worker, {args.rounds} rounds; "
        f"load average {os.getloadavg()}"
    )
    report: dict = {"args": vars(args), "machine": machine(), "results": {}}
    for n_samples, res in race(specs, args.samples, args.rounds, on_result=print_table).items():
        summary = summarise(res)
        report["results"][str(n_samples)] = summary
    if args.out:
        from neural3d.training.run_dir import atomic_write_text

        atomic_write_text(json.dumps(report, indent=2), Path(args.out))


def print_table(n_samples: int, res: dict) -> None:
    """The figures of one sample count, as a markdown table."""
    summary = summarise(res)
    print(f"\n{n_samples} samples per ray (N_samples={n_samples}, N_importance=0); load {os.getloadavg()}")
    print("| contestant | rays/s (wall, median) | rays/s (CPU) | ratio wall | ratio CPU | max abs rgb | depth |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, row in summary.items():
        print(
            f"| {name} | {row['rays_per_s_wall']:.1f} | {row['rays_per_s_cpu']:.1f} | "
            f"{row.get('ratio_wall', 1.0):.2f} | {row.get('ratio_cpu', 1.0):.2f} | "
            f"{row.get('max_abs_rgb', 0.0):.2e} | {row.get('max_abs_depth', 0.0):.2e} |"
        )


if __name__ == "__main__":
    main()
