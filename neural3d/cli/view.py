"""``neural3d view RUN_DIR``: the interactive browser viewer (viser) for a trained run."""

from __future__ import annotations

import argparse
import time

from neural3d.cli.arg_types import port_number, positive_float, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("view", help="interactive browser viewer of a trained run (viser)")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=port_number, default=7007, help="TCP port, 0-65535 (0: any free port)")
    p.add_argument("--max-res", type=positive_int, default=512, help="longest side of still renders (pixels)")
    p.add_argument("--target-fps", type=positive_float, default=8.0, help="frame rate held while the camera moves")
    p.add_argument("--no-cameras", action="store_true", help="do not load the dataset (no training-camera frustums)")
    p.add_argument("--device", default="auto")
    p.add_argument("--serve-seconds", type=float, default=None, help=argparse.SUPPRESS)  # tests: stop after N s
    p.set_defaults(fn=_cmd_view)


def _dataset_or_none(loaded):
    from neural3d.data.scene import DatasetError

    try:
        return loaded.dataset()
    except (FileNotFoundError, DatasetError, ValueError) as e:
        print(f"[viewer] dataset not available ({e}); showing the model without training cameras")
        return None


def _cmd_view(args) -> int:
    from neural3d.api import load

    try:
        import viser  # noqa: F401

        from neural3d.viewer.scene_handle import SceneHandle
        from neural3d.viewer.server import ViewerServer, check_listen_address
    except ImportError as e:
        raise ValueError(f"the viewer needs viser: pip install 'neural3d[viewer]' ({e})") from e
    check_listen_address(args.host, args.port)  # before the model is loaded
    loaded = load(args.run_dir, device=args.device)
    dataset = None if args.no_cameras else _dataset_or_none(loaded)
    server = ViewerServer(
        SceneHandle(loaded, dataset=dataset),
        host=args.host,
        port=args.port,
        max_side=args.max_res,
        target_fps=args.target_fps,
        verbose=False,
    )
    print(f"[neural3d] viewing {args.run_dir} (step {loaded.step}) at {server.url}  (Ctrl-C to stop)")
    end = None if args.serve_seconds is None else time.monotonic() + args.serve_seconds
    try:
        while end is None or time.monotonic() < end:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
