"""What a training command prints when it ends: where the results are and the commands to run next.

Each function returns the lines (the caller prints them), with the run directory quoted for a shell.
"""

from __future__ import annotations

import shlex
from pathlib import Path

SOURCE_VIEW_METHODS = ("gnt", "lvsm")  # methods that render a scene from its images: ``neural3d METHOD eval RUN SCENE``
COMMENT_COLUMN = 58


def _commented(command: str, comment: str) -> str:
    """``  command   # comment`` with the comments aligned while the commands are short."""
    return f"  {command.ljust(COMMENT_COLUMN)}  # {comment}"


def after_scene_training(run_dir: Path | str, method: str, *, scene: str = "", ndc: bool = False) -> list[str]:
    """The next commands after ``neural3d train`` of a scene method.

    Args:
        run_dir: the run directory; method: the config's method; scene: the config's ``data.path`` (the
            scene a source-view method renders next); ndc: forward-facing scene (a point cloud rather than a mesh).
    """
    run = shlex.quote(str(run_dir))
    lines = ["[neural3d] next:"]
    if method in SOURCE_VIEW_METHODS and scene:
        sc = shlex.quote(str(scene))
        lines += [
            _commented(f"neural3d {method} eval {run} {sc}", "metrics + images on a scene given its images"),
            _commented(f"neural3d {method} render {run} {sc} --path orbit --out orbit.mp4", "a video of it"),
        ]
    else:
        lines += [
            _commented(f"neural3d eval {run}", "test metrics + prediction | truth | error images"),
            _commented(f"neural3d render {run} --path auto --out {run}/renders/video.mp4", "a video"),
        ]
    lines.append(_commented(f"neural3d view {run}", "explore it in the browser"))
    if method not in SOURCE_VIEW_METHODS:
        what = "pointcloud" if ndc else "mesh"
        lines.append(_commented(f"neural3d export {run} {what}", f"a {what} of the scene"))
    metrics = shlex.quote(str(Path(run_dir) / "logs" / "metrics.csv"))
    lines.append(
        _commented(f"python -m neural3d.media.plot {metrics} --x train/elapsed_s --out psnr.png", "the training curve")
    )
    return lines


def after_pointcloud_training(run_dir: Path | str) -> list[str]:
    """The next commands after ``neural3d pointcloud train``."""
    run = shlex.quote(str(run_dir))
    return ["[neural3d] next:", _commented(f"neural3d pointcloud eval {run}", "accuracy / mIoU on the test split")]


def after_dictionary_training(run_dir: Path | str) -> list[str]:
    """The next commands after ``neural3d nid train-dict``."""
    run = shlex.quote(str(run_dir))
    return [
        "[neural3d] next:",
        _commented(
            f"neural3d nid fit configs/nid_fit.yaml dictionary={run} --target IMAGE", "fit an unseen image with it"
        ),
    ]
