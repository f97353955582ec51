"""Numeric ranges of config fields, declared in the annotation and checked when a config is built.

A field annotated ``steps: PositiveInt = 2000`` (``Annotated[int, Bound(min=1)]``) is stored by OmegaConf as a
plain ``int`` (``typing.get_type_hints`` drops the annotation's metadata); :func:`neural3d.config.build` reads the
:class:`Bound` back and rejects a value outside it with an error naming the key, the range and the value, as it
does for ``Literal`` options. This module only declares; it imports nothing of neural3d, so every config module
(the train schema included, which :mod:`neural3d.config` imports) can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin


@dataclass(frozen=True)
class Bound:
    """The closed range ``[min, max]`` of a numeric field (``min_open``: ``min`` itself excluded)."""

    min: float | None = None
    """Smallest allowed value (None: unbounded below)."""
    max: float | None = None
    """Largest allowed value (None: unbounded above)."""
    min_open: bool = False
    """Exclude ``min`` itself (a positive float: ``Bound(min=0, min_open=True)``)."""

    def describe(self) -> str:
        """The range in words, e.g. ``>= 1``, ``> 0``, ``in [0, 65535]``."""
        if self.min is not None and self.max is not None:
            return f"in {'(' if self.min_open else '['}{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f"{'>' if self.min_open else '>='} {self.min:g}"
        return f"<= {self.max:g}"

    def contains(self, value: Any) -> bool:
        """True for a number inside the range (None is left to the field's type: optional fields allow it)."""
        if value is None:
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.min is not None and (value < self.min or (self.min_open and value == self.min)):
            return False
        return self.max is None or value <= self.max


def field_bound(annotation: Any) -> Bound | None:
    """The :class:`Bound` of an ``Annotated[..., Bound(...)]`` annotation (also inside ``X | None``), else None."""
    if get_origin(annotation) is Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, Bound)), None)
    for arg in get_args(annotation):  # Optional[Annotated[...]]
        if get_origin(arg) is Annotated:
            return field_bound(arg)
    return None


PositiveInt = Annotated[int, Bound(min=1)]
"""An integer >= 1 (steps, sizes, counts)."""
NonNegativeInt = Annotated[int, Bound(min=0)]
"""An integer >= 0 (cadences where 0 means off)."""
PositiveFloat = Annotated[float, Bound(min=0.0, min_open=True)]
"""A float > 0 (rates, scales, timeouts)."""
NonNegativeFloat = Annotated[float, Bound(min=0.0)]
"""A float >= 0 (limits where 0 means none)."""
Port = Annotated[int, Bound(min=0, max=65535)]
"""A TCP port (0: any free port)."""
