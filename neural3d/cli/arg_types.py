"""Command-line value types and the parser class: a bad flag is one line naming it, exit 2, no usage dump.

``type=positive_int`` (and friends) make argparse reject ``--frames 0`` or ``--port 70000`` while parsing, before
any model is loaded; :class:`Parser` prints argparse's errors as one line (``neural3d render: error: argument
--frames: must be >= 1, got 0 (see neural3d render --help)``) instead of the usage block followed by the error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from neural3d.config_bounds import Bound


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr (exit status 2, as argparse)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bounded(kind: Callable, bound: Bound, name: str) -> Callable[[str], int | float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not bound.contains(value):
            raise argparse.ArgumentTypeError(f"must be {bound.describe()}, got {text}")
        return value

    parse.__name__ = name  # argparse names the type in some messages
    return parse


positive_int = _bounded(int, Bound(min=1), "positive_int")
"""An integer >= 1 (``--frames``, ``--max-images``, ``--res``)."""
positive_float = _bounded(float, Bound(min=0.0, min_open=True), "positive_float")
"""A number > 0 (``--scale``, ``--target-fps``)."""
port_number = _bounded(int, Bound(min=0, max=65535), "port_number")
"""A TCP port, 0-65535 (0: any free port)."""
