"""The model all browser tabs render from, with a lock so live training can swap weights safely."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from neural3d.core.cameras import Cameras


class SceneHandle:
    """Wraps a :class:`neural3d.api.LoadedScene`; every render goes through ``LoadedScene.render``.

    Args:
        loaded: the scene to render (its model is used from several threads, one render at a time).
        dataset: optional SceneData (training cameras and thumbnails for the frustums).
    """

    def __init__(self, loaded, *, dataset=None) -> None:
        self.loaded = loaded
        self.dataset = dataset
        self.lock = threading.Lock()
        self.generation = 0  # bumped whenever the weights change
        self.step = int(getattr(loaded, "step", 0))
        self._listeners: list[Callable[[], None]] = []

    @property
    def background(self) -> torch.Tensor | None:
        """[3] colour the model composites on (None: unknown)."""
        bg = self.loaded.info.background
        return None if bg is None else bg.float().cpu()

    def render(self, cameras: Cameras, chunk: int = 8192, context: Any = None) -> dict[str, torch.Tensor]:
        """``LoadedScene.render`` of one camera under the lock -> ``rgb`` [H, W, 3], ``depth``/``opacity`` [H, W]
        (CPU)."""
        with self.lock:
            out = self.loaded.render(cameras, chunk=chunk, context=context)
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
