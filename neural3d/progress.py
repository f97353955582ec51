"""Progress of long commands: a bar with rate and time left on a terminal, plain periodic lines otherwise.

Every long command (train, eval, render, export, nid, pointcloud, gnt, lvsm, demo) reports through
:class:`ProgressBar`. What it writes depends on where its stream goes:

* a terminal (``stream.isatty()``): one line redrawn in place (carriage return) at most every ``refresh_s``
  seconds::

      train  42% |██████▊         | 504/1200 [0:45<1:01, 11.3 step/s] loss 0.0031 psnr 27.1

* anything else (a log file, a pipe, CI): a whole line each time another ``every_percent`` of the total is
  done or ``every_s`` seconds have passed, and one at the end -- never a carriage return::

      [train] 504/1200 (42%)  11.3 step/s  0:45 elapsed, 1:01 left  loss 0.0031  psnr 27.1

``NEURAL3D_PROGRESS=bar|lines|off`` overrides the choice (``off`` silences every bar).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")
MODES = ("auto", "bar", "lines", "off")
_BLOCKS = " ▏▎▍▌▋▊▉█"


def format_duration(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a non-negative number of seconds; ``?`` when unknown or infinite."""
    if seconds is None or not seconds >= 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def format_rate(rate: float, unit: str) -> str:
    """``11.3 step/s`` (or ``2.1 s/step`` below one per second, so slow commands read naturally)."""
    if rate <= 0:
        return f"? {unit}/s"
    if rate < 1.0:
        return f"{1.0 / rate:.1f} s/{unit}"
    return f"{rate:,.1f} {unit}/s" if rate < 100 else f"{rate:,.0f} {unit}/s"


def resolve_mode(mode: str, stream: IO[str]) -> str:
    """``bar`` / ``lines`` / ``off``: ``mode``, or for ``auto`` the environment override, else the stream's kind."""
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        env = os.environ.get("NEURAL3D_PROGRESS", "").strip().lower()
        if env in ("bar", "lines", "off"):
            return env
        isatty = getattr(stream, "isatty", None)
        return "bar" if isatty is not None and isatty() else "lines"
    return mode


class ProgressBar:
    """Count work done out of ``total`` and report it (see the module docstring for the two forms).

    Args:
        total: units of work (None: unknown; no percentage or time left).
        desc: name shown first (``train``, ``render``, ``eval``, ...).
        unit: what one unit is (``step``, ``frame``, ``view``, ``image``).
        initial: units already done (a resumed run).
        enabled: False: writes nothing.
        mode: ``auto`` (terminal: ``bar``, else ``lines``; ``NEURAL3D_PROGRESS`` overrides), ``bar``, ``lines``,
            ``off``.
        stream: where to write (default ``sys.stderr``, so that stdout keeps only results).
        every_s: lines mode: at most this many seconds between lines.
        every_percent: lines mode: a line each time this much more of the total is done.
        refresh_s: bar mode: least time between redraws.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        *,
        unit: str = "it",
        initial: int = 0,
        enabled: bool = True,
        mode: str = "auto",
        stream: IO[str] | None = None,
        every_s: float = 30.0,
        every_percent: float = 10.0,
        refresh_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mode = resolve_mode(mode, self.stream) if enabled else "off"
        self.total = None if total is None else max(int(total), 0)
        self.desc, self.unit = desc, unit
        self.n = self.initial = int(initial)
        self.every_s, self.every_percent, self.refresh_s = float(every_s), float(every_percent), float(refresh_s)
        self.clock = clock
        self.start = self._last_draw = self._last_line = clock()
        self._next_percent = self._percent_after(self.n)
        self.postfix: dict[str, str] = {}
        self._width = 0  # characters of the bar line on screen (bar mode)
        self.closed = False

    # --- counting ---------------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.n += int(n)
        if self.mode == "bar":
            if self.clock() - self._last_draw >= self.refresh_s or self._done():
                self._draw()
        elif self.mode == "lines":
            now = self.clock()
            crossed = self.total and 100.0 * self.n / self.total >= self._next_percent
            if (crossed and not self._done()) or now - self._last_line >= self.every_s:
                self._line()

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the rate (floats with 4 significant digits); drawn with the next update."""
        self.postfix = {k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()}

    def write(self, line: str) -> None:
        """Print ``line`` on the stream without mangling the bar (it is cleared, then redrawn below)."""
        if self.mode == "bar":
            self.clear()
        self.stream.write(line.rstrip("\n") + "\n")
        if self.mode == "bar" and not self.closed:
            self._draw()
        self.stream.flush()

    def close(self) -> None:
        """Final state: the bar's last draw ends with a newline; lines mode writes a closing line."""
        if self.closed:
            return
        self.closed = True
        if self.mode == "bar":
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        elif self.mode == "lines":
            self._line()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- numbers ------------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds since the bar started."""
        return self.clock() - self.start

    @property
    def rate(self) -> float:
        """Units per second since the start (units done before a resume are not counted)."""
        dt = self.elapsed
        return (self.n - self.initial) / dt if dt > 0 else 0.0

    @property
    def remaining_s(self) -> float | None:
        """Estimated seconds left (None: unknown total or no rate yet)."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.n, 0) / self.rate

    def _done(self) -> bool:
        return self.total is not None and self.n >= self.total

    def _percent_after(self, n: int) -> float:
        """The next multiple of ``every_percent`` above the fraction done."""
        if not self.total or self.every_percent <= 0:
            return float("inf")
        done = 100.0 * n / self.total
        return (int(done // self.every_percent) + 1) * self.every_percent

    # --- output -------------------------------------------------------------------------------------
    def _post(self, sep: str) -> str:
        return sep.join(f"{k} {v}" for k, v in self.postfix.items())

    def _line(self) -> None:
        """Lines mode: one self-contained line."""
        self._last_line = self.clock()
        self._next_percent = self._percent_after(self.n)
        count = f"{self.n}/{self.total} ({100.0 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        parts = [f"[{self.desc}] {count}", format_rate(self.rate, self.unit)]
        left = self.remaining_s
        timing = f"{format_duration(self.elapsed)} elapsed"
        parts.append(timing + (f", {format_duration(left)} left" if left is not None and not self.closed else ""))
        if self.postfix:
            parts.append(self._post("  "))
        self.stream.write("  ".join(parts) + "\n")
        self.stream.flush()

    def _bar_text(self, width: int) -> str:
        frac = min(self.n / self.total, 1.0) if self.total else None
        head = f"{self.desc}  {frac * 100:3.0f}% " if frac is not None else f"{self.desc} "
        left = self.remaining_s
        times = f"{format_duration(self.elapsed)}<{format_duration(left)}" if frac is not None else ""
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        tail = f" {count} [{times}{', ' if times else ''}{format_rate(self.rate, self.unit)}]"
        if self.postfix:
            tail += " " + self._post(" ")
        if frac is None:
            return (head + tail)[:width]
        cells = max(min(width - len(head) - len(tail) - 2, 30), 0)
        if cells < 5:
            return (head + tail)[:width]
        return head + "|" + _bar_cells(frac, cells, self._unicode()) + "|" + tail

    def _unicode(self) -> bool:
        return str(getattr(self.stream, "encoding", "") or "").lower().replace("-", "").startswith("utf8")

    def refresh(self) -> None:
        """Bar mode: redraw now (after :meth:`clear`)."""
        if self.mode == "bar" and not self.closed:
            self._draw()

    def _draw(self) -> None:
        """Bar mode: redraw the line in place."""
        self._last_draw = self.clock()
        width = max(shutil.get_terminal_size((100, 20)).columns - 1, 20)
        text = self._bar_text(width)
        pad = " " * max(self._width - len(text), 0)  # erase the end of a longer previous line
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        """Bar mode: erase the bar line (before something else prints to the terminal; :meth:`refresh` redraws)."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0


def _bar_cells(frac: float, cells: int, unicode: bool) -> str:
    """``cells`` characters, ``frac`` of them filled (eighths with Unicode blocks, else ``#``)."""
    if not unicode:
        full = int(frac * cells)
        return "#" * full + "-" * (cells - full)
    eighths = int(frac * cells * 8)
    full, part = divmod(eighths, 8)
    text = _BLOCKS[-1] * full + (_BLOCKS[part] if full < cells else "")
    return text + " " * (cells - len(text))


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", **kwargs: Any) -> Iterator[T]:
    """Iterate ``iterable`` while a :class:`ProgressBar` counts the items (``total``: ``len(iterable)`` if known)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = ProgressBar(total, desc, **kwargs)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
