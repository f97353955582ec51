"""Live view while training: a copy of the model receives the trainer's weights every few steps.

The viewer never touches the model being optimised (whose samplers jitter in train mode): it renders a
copy in eval mode, refreshed from ``Trainer.on_step`` under the scene lock. The pause button sets
``Trainer.paused``.
"""

from __future__ import annotations

import copy
import time

from neural3d.viewer.scene_handle import SceneHandle

from neural3d.api import LoadedScene


class LiveTraining:
    """Attach a viewer to a :class:`neural3d.training.trainer.Trainer` (chains its ``on_step``).

    Args:
        trainer: the trainer (not started yet).
        cfg: the ``viewer`` config section (host, port, update_every, max_resolution, target_fps, keep_alive).
    """

    def __init__(self, trainer, cfg, *, verbose: bool = True) -> None:
        from neural3d.viewer.server import ViewerServer

        if int(cfg.update_every) < 1:
            raise ValueError(f"viewer.update_every must be >= 1, got {cfg.update_every}")
        self.trainer, self.cfg = trainer, cfg
        model = copy.deepcopy(trainer.model).eval()
        loaded = LoadedScene(
            model, trainer.info, trainer.cfg, trainer.run_dir, trainer.step, float(trainer.cfg.data.pixel_center)
        )
        self.scene = SceneHandle(loaded, dataset=trainer.scene)
        self.server = ViewerServer(
            self.scene,
            host=cfg.host,
            port=int(cfg.port),
            max_side=int(cfg.max_resolution),
            target_fps=float(cfg.target_fps),
            out_dir=trainer.run.renders_dir,
            live=self,
            verbose=verbose,
        )
        self._previous = trainer.on_step
        trainer.on_step = self.on_step

    @property
    def step(self) -> int:
        return int(self.trainer.step)

    @property
    def paused(self) -> bool:
        return bool(self.trainer.paused)

    def set_paused(self, paused: bool) -> None:
        self.trainer.paused = bool(paused)

    def on_step(self, trainer, step: int) -> None:
        if self._previous is not None:
            self._previous(trainer, step)
        if step % int(self.cfg.update_every) == 0:
            self.push()

    def push(self) -> None:
        """Copy the trainer's current weights into the viewer's model (all tabs re-render)."""
        self.scene.update_weights(self.trainer.model.state_dict(), self.trainer.step)

    def finish(self, keep_alive: bool | None = None) -> None:
        """Show the final weights; keep serving until Ctrl-C when ``keep_alive`` (default: the config's)."""
        self.push()
        keep = self.cfg.keep_alive if keep_alive is None else keep_alive
        if keep:
            print(f"[viewer] training finished; still serving {self.server.url} (Ctrl-C to exit)")
            try:
                while True:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        self.close()

    def close(self) -> None:
        self.trainer.on_step = self._previous
        self.server.stop()
