"""Per-tab GUI controls: output, resolution cap, field of view, background, target fps, status line; going to a
training camera or back to the overview; pausing live training."""

from __future__ import annotations

import math

OUTPUT_CHOICES = ("rgb", "depth", "opacity")


def _rgb255(bg) -> tuple[int, int, int]:
    return tuple(round(255 * float(c)) for c in bg) if bg is not None else (255, 255, 255)


def build_render_controls(gui, session, *, start_fov: float, max_side: int, target_fps: float):
    """Add the render folder to ``gui`` (a tab's ``client.gui``); changes go to ``session``'s worker.

    Returns:
        the status markdown handle (updated by the session).
    """
    bg = session.scene.background
    with gui.add_folder("Render"):
        output = gui.add_dropdown("Output", OUTPUT_CHOICES, initial_value="rgb")
        res = gui.add_slider(
            "Max resolution",
            min=32,
            max=2048,
            step=32,
            initial_value=int(max_side),
            hint="longest side of the still (full-resolution) image, pixels",
        )
        fps = gui.add_slider(
            "Target fps",
            min=1,
            max=30,
            step=1,
            initial_value=round(target_fps),
            hint="frame rate held while the camera moves (sets the low resolution)",
        )
        fov = gui.add_slider("FOV (deg)", min=10, max=120, step=1, initial_value=round(math.degrees(start_fov)))
        color = gui.add_rgb("Background", initial_value=_rgb255(bg))
        show = gui.add_checkbox(
            "Show cameras", initial_value=True, hint="training-camera frustums and scene box (all tabs)"
        )
        status = gui.add_markdown("waiting for the first frame")

    output.on_update(lambda _: session.worker.update_settings(output=output.value))
    res.on_update(lambda _: session.worker.update_settings(max_side=int(res.value)))
    fps.on_update(lambda _: session.worker.update_settings(target_fps=float(fps.value)))
    color.on_update(lambda _: session.worker.update_settings(background=tuple(c / 255.0 for c in color.value)))
    fov.on_update(lambda _: session.set_fov(math.radians(float(fov.value))))
    show.on_update(lambda _: session.server.set_decorations_visible(bool(show.value)))
    return status


def build_training_controls(gui, live) -> object | None:
    """Pause / resume button and step counter for live training (``live`` is a :class:`viewer.live.LiveTraining`)."""
    with gui.add_folder("Training"):
        button = gui.add_button("Pause training", hint="stop / continue the optimisation (the view keeps updating)")
        step = gui.add_markdown(f"step {live.step}")

    def toggle(_):
        live.set_paused(not live.paused)
        button.label = "Resume training" if live.paused else "Pause training"

    button.on_click(toggle)
    return step


def build_camera_controls(gui, session, indices: list[int]) -> None:
    """ "Go to camera N" (a training camera's dataset index, ``indices`` are those shown) and "Overview" (the
    first view) buttons; they move ``session``'s view."""
    with gui.add_folder("Cameras"):
        number = gui.add_number(
            "Camera", initial_value=indices[0], min=min(indices), max=max(indices), step=1, hint="training camera index"
        )
        go = gui.add_button("Go to camera", hint="look through the chosen training camera (or click a frustum)")
        overview = gui.add_button("Overview", hint="back to the first view: the whole scene, no camera in front")

    def go_to(_) -> None:
        wanted = int(number.value)
        session.go_to_camera(min(indices, key=lambda i: abs(i - wanted)))  # the nearest shown camera

    go.on_click(go_to)
    overview.on_click(lambda _: session.go_to_overview())
