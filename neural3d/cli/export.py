"""``neural3d export RUN_DIR {pointcloud,mesh,cameras}``: geometry and cameras out of a trained run."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from neural3d.cli.arg_types import positive_float, positive_int

_DEFAULT_NAMES = {"pointcloud": "pointcloud.ply", "mesh": "mesh.ply", "cameras": "transforms.json"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a point cloud, a mesh (.ply/.obj) or the cameras (transforms.json)"
    )
    p.add_argument("run_dir")
    p.add_argument("what", choices=sorted(_DEFAULT_NAMES), help="pointcloud | mesh | cameras")
    p.add_argument(
        "--out", default=None, help="output file (default: RUN_DIR/export/{pointcloud.ply,mesh.ply,transforms.json})"
    )
    p.add_argument("--split", default="train", help="views rendered / cameras written (a split name or 'all')")
    p.add_argument(
        "--scale", type=positive_float, default=1.0, help="render resolution relative to the training images"
    )
    p.add_argument("--max-views", type=positive_int, default=None, help="use at most this many views (evenly spaced)")
    p.add_argument("--opacity-threshold", type=float, default=0.5, help="pixels below it carry no surface")
    p.add_argument("--outlier-neighbors", type=int, default=20, help="statistical outlier removal (0: off)")
    p.add_argument("--outlier-std", type=float, default=2.0, help="outlier std ratio")
    p.add_argument("--voxel-size", type=float, default=0.0, help="voxel down-sampling of the point cloud (0: off)")
    p.add_argument("--max-points", type=positive_int, default=None)
    p.add_argument("--method", choices=["marching-cubes", "tsdf"], default="marching-cubes", help="mesh extraction")
    p.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        help="grid samples (marching cubes, default 128) or voxels across the surface (tsdf, default 256)",
    )
    p.add_argument("--level", type=float, default=None, help="density iso-level (default: ln2 / voxel size)")
    p.add_argument("--no-colors", action="store_true", help="marching cubes: skip vertex colours")
    p.add_argument("--device", default="auto")
    p.set_defaults(fn=_cmd_export)


def _views(scene, split: str, scale: float, max_views):
    if split == "all":
        idx = torch.arange(scene.n_images)
    elif split in scene.splits:
        idx = scene.splits[split]
    else:
        raise ValueError(f"unknown split '{split}': the dataset has {sorted(scene.splits)} (or use 'all')")
    if max_views is not None and len(idx) > max_views:
        idx = idx[torch.linspace(0, len(idx) - 1, max_views).round().long()]
    cams = scene.cameras[idx]
    if scale != 1.0:
        from neural3d.media.paths import intrinsics_like

        cams = intrinsics_like(scene, cams.camera_to_worlds, scale)
    return idx, cams


def _cmd_export(args) -> int:
    from neural3d.api import load
    from neural3d.media.frames import check_writable
    from neural3d.training.run_dir import RunDir

    loaded = load(args.run_dir, device=args.device)
    out = Path(args.out) if args.out else RunDir(args.run_dir).export_dir / _DEFAULT_NAMES[args.what]
    check_writable(out)  # before views are rendered or a grid is evaluated
    start = time.perf_counter()
    if args.what == "cameras":
        summary = _export_cameras(loaded, args, out)
    elif args.what == "pointcloud":
        summary = _export_pointcloud(loaded, args, out)
    else:
        summary = _export_mesh(loaded, args, out)
    print(f"[neural3d] {summary} -> {out}  ({time.perf_counter() - start:.1f} s)")
    return 0


def _export_cameras(loaded, args, out: Path) -> str:
    from neural3d.export.cameras import write_transforms

    scene = loaded.dataset()
    idx, _ = _views(scene, args.split, 1.0, args.max_views)
    paths = [str(Path(scene.image_paths[int(i)]).resolve()) for i in idx]
    write_transforms(
        out,
        scene.cameras[idx],
        paths,
        pixel_center=loaded.pixel_center,
        extra={"ndc": bool(scene.ndc), "run_dir": str(Path(args.run_dir).resolve())},
    )
    return f"{len(idx)} cameras ({args.split})"


def _export_pointcloud(loaded, args, out: Path) -> str:
    from neural3d.export.o3d import write_point_cloud
    from neural3d.export.pointcloud import point_cloud_from_views

    _, cams = _views(loaded.dataset(), args.split, args.scale, args.max_views)
    cloud = point_cloud_from_views(
        loaded,
        cams,
        opacity_threshold=args.opacity_threshold,
        max_points=args.max_points,
        outlier_neighbors=args.outlier_neighbors,
        outlier_std_ratio=args.outlier_std,
        voxel_size=args.voxel_size,
        chunk=loaded.config.eval.chunk,
        progress=True,
    )
    if len(cloud) == 0:
        raise ValueError(
            f"no pixel of the {len(cams)} views reaches opacity {args.opacity_threshold}; lower --opacity-threshold"
        )
    write_point_cloud(out, cloud)
    return f"{len(cloud)} points from {len(cams)} views"


def _export_mesh(loaded, args, out: Path) -> str:
    from neural3d.export.o3d import MESH_SUFFIXES, write_mesh

    if out.suffix.lower() not in MESH_SUFFIXES:  # fail before the expensive part
        raise ValueError(f"{out}: meshes are written as one of {MESH_SUFFIXES}")
    if args.method == "tsdf":
        from neural3d.export.tsdf import tsdf_mesh

        _, cams = _views(loaded.dataset(), args.split, args.scale, args.max_views)
        mesh = tsdf_mesh(
            loaded,
            cams,
            resolution=args.resolution or 256,
            opacity_threshold=args.opacity_threshold,
            chunk=loaded.config.eval.chunk,
            progress=True,
        )
    else:
        from neural3d.export.marching_cubes import marching_cubes_mesh

        mesh = marching_cubes_mesh(
            loaded, resolution=args.resolution or 128, level=args.level, colors=not args.no_colors, progress=True
        )
    if len(mesh.triangles) == 0:
        raise ValueError("the extracted mesh is empty; try another --level / --opacity-threshold")
    write_mesh(out, mesh)
    return f"mesh ({args.method}): {len(mesh.vertices)} vertices, {len(mesh.triangles)} triangles"
