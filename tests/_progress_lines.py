"""What a long command writes when its output is not a terminal: whole progress lines, no carriage return."""

from __future__ import annotations


def assert_progress_lines(err: str, desc: str, total: int | None = None) -> list[str]:
    """``err`` holds ``[desc] ...`` lines (the last ``[desc] total/total (100%)`` when ``total``) and no ``\\r``."""
    assert "\r" not in err, "a non-terminal run must not redraw a bar with carriage returns"
    lines = [line for line in err.splitlines() if line.startswith(f"[{desc}] ")]
    assert lines, f"no [{desc}] progress line in:\n{err}"
    if total is not None:
        assert lines[-1].startswith(f"[{desc}] {total}/{total} (100%)"), lines[-1]
    return lines
