"""The model all browser tabs render from, with a lock so live training can swap weights safely."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from neural3d.core.cameras import Cameras


class SceneHandle:
    """Wraps a :class:`neural3d.api.LoadedScene`; every render goes through ``LoadedScene.render``.

    Ray bounds follow the camera: the run's near / far suit its training cameras; a viewer camera farther from
    the scene box's centre than the farthest training camera (the first view stands outside the camera ring) gets
    both bounds moved out by the difference, so it sees the same depth range of the scene (see :meth:`bounds`).

    Args:
        loaded: the scene to render (its model is used from several threads, one render at a time).
        dataset: optional SceneData (training cameras and thumbnails for the frustums).
    """

    def __init__(self, loaded, *, dataset=None) -> None:
        self.loaded = loaded
        self.dataset = dataset
        self.centre, self.ring = _camera_ring(loaded.info, dataset)
        self.lock = threading.Lock()
        self.generation = 0  # bumped whenever the weights change
        self.step = int(getattr(loaded, "step", 0))
        self._listeners: list[Callable[[], None]] = []

    @property
    def background(self) -> torch.Tensor | None:
        """[3] colour the model composites on (None: unknown)."""
        bg = self.loaded.info.background
        return None if bg is None else bg.float().cpu()

    def bounds(self, cameras: Cameras) -> tuple[float | None, float | None]:
        """(near, far) for the first camera of ``cameras``: the run's bounds moved out by how much farther the
        camera is from the scene-box centre than the farthest training camera; (None, None) = the run's own
        (a camera no farther than the training cameras, an NDC scene, or no training cameras known)."""
        if self.ring is None:
            return None, None
        eye = cameras.camera_to_worlds[0, :, 3].double().cpu()
        extra = float(torch.linalg.norm(eye - self.centre)) - self.ring
        if extra <= 0:
            return None, None
        return self.loaded.info.near + extra, self.loaded.info.far + extra

    def render(self, cameras: Cameras, chunk: int = 8192, context: Any = None) -> dict[str, torch.Tensor]:
        """``LoadedScene.render`` of one camera under the lock -> ``rgb`` [H, W, 3], ``depth``/``opacity`` [H, W]
        (CPU), with the ray bounds of :meth:`bounds`."""
        near, far = self.bounds(cameras)
        with self.lock:
            out = self.loaded.render(cameras, chunk=chunk, context=context, near=near, far=far)
        return {k: v[0].float().cpu() for k, v in out.items() if k in ("rgb", "depth", "opacity")}

    def update_weights(self, state_dict: dict[str, torch.Tensor], step: int) -> None:
        """Copy new weights in (live training) and tell the listeners (render workers) to re-render."""
        with self.lock:
            self.loaded.model.load_state_dict(state_dict)
            self.loaded.model.eval()
            self.step = int(step)
            self.loaded.step = int(step)
            self.generation += 1
        for fn in list(self._listeners):
            fn()

    def add_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)


def _camera_ring(info, dataset) -> tuple[torch.Tensor | None, float | None]:
    """The scene box's centre [3] (float64) and the largest distance of a training camera from it; (None, None)
    for NDC scenes or without training cameras."""
    if dataset is None or info.ndc or len(dataset.cameras) == 0:
        return None, None
    idx = dataset.splits.get("train", torch.arange(len(dataset.cameras)))
    centres = dataset.cameras.camera_to_worlds[idx, :, 3].double().cpu()
    centre = info.scene_box.double().cpu().mean(dim=0)
    return centre, float(torch.linalg.norm(centres - centre, dim=-1).max())
