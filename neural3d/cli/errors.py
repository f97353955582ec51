"""What the command line prints for an exception a user can cause: one line, no traceback (exit status 2).

:func:`user_error_message` maps the errors that bad input produces -- the library's own (``ConfigError``,
``DatasetError``, ...: ``ValueError``), files (``OSError``: missing, unwritable, disk full), a checkpoint that
does not fit the model built from the config (torch's ``load_state_dict`` report) and a torchrun collective that
timed out (a stalled peer) -- to one line; anything else is a bug and keeps its traceback. ``NEURAL3D_DEBUG=1``
shows the traceback of every error.
"""

from __future__ import annotations

import re
import sys

_SIZE = re.compile(
    r"size mismatch for (?P<name>[^:\s]+): copying a param with shape torch\.Size\((?P<ckpt>\[[^\]]*\])\) from "
    r"checkpoint, the shape in current model is torch\.Size\((?P<model>\[[^\]]*\])\)"
)
_KEYS = re.compile(r"(?P<kind>Missing|Unexpected) key\(s\) in state_dict: (?P<keys>[^\n]*)")


def state_dict_mismatch(err: RuntimeError) -> str | None:
    """One line for torch's ``Error(s) in loading state_dict`` report, naming the first parameter whose shape
    differs (both shapes) or the keys missing / unexpected; None for any other RuntimeError."""
    text = str(err)
    if "Error(s) in loading state_dict" not in text:
        return None
    sizes = list(_SIZE.finditer(text))
    advice = (
        "the model built from the config differs from the checkpoint's (a changed model setting?): resume with the "
        "run's own model settings (its config.yaml) or train a new run (experiment=NAME)"
    )
    if sizes:
        first = sizes[0]
        n_more = len(sizes) - 1
        more = f" (and {n_more} more parameter{'s' if n_more > 1 else ''})" if n_more else ""
        return (
            f"checkpoint does not fit the model: parameter '{first['name']}' has shape {first['ckpt']} in the "
            f"checkpoint but {first['model']} in the model{more}; {advice}"
        )
    keys = [f"{m['kind'].lower()} keys {_shorten(m['keys'].strip().rstrip('.'))}" for m in _KEYS.finditer(text)]
    return f"checkpoint does not fit the model: {'; '.join(keys) or text.splitlines()[0]}; {advice}"


_TIMEOUT = re.compile(r"timed out waiting (?P<ms>\d+)\s*ms|watchdog caught collective operation timeout", re.I)


def collective_timeout(err: RuntimeError) -> str | None:
    """One line for a collective of the torchrun process group that timed out (gloo's ``Timed out waiting Nms``,
    NCCL's watchdog); None for any other RuntimeError."""
    match = _TIMEOUT.search(str(err))
    if match is None:
        return None
    limit = f" after {int(match['ms']) / 1000:g} s" if match["ms"] else ""
    return (
        f"a collective of the process group timed out{limit} (trainer.dist_timeout_s): another process stalled or "
        f"died (its own log says why); if it is only slow (a long rank-0 evaluation, a paused live viewer), raise "
        f"trainer.dist_timeout_s. ({_shorten(str(err).splitlines()[0])})"
    )


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 5] + " ..."


def os_error_message(err: OSError) -> str:
    """``PATH: reason`` (``/out/a.mp4: Permission denied``), with the second path of a rename when there is one."""
    reason = err.strerror or str(err)
    if err.filename is None:
        return str(err)
    target = f" -> {err.filename2}" if err.filename2 is not None else ""
    return f"{err.filename}{target}: {reason}"


def user_error_message(err: BaseException) -> str | None:
    """The one line printed for ``err``, or None when it is not an error of the user's input (a bug: traceback)."""
    if isinstance(err, OSError):
        # the library's own messages (FileNotFoundError("checkpoint not found: ...")) have no filename
        return os_error_message(err) if err.filename is not None else str(err)
    if isinstance(err, ValueError):
        return str(err)
    if isinstance(err, RuntimeError):
        return state_dict_mismatch(err) or collective_timeout(err)
    return None


def print_error(message: str) -> None:
    """``neural3d: error: MESSAGE`` on stderr, on one line (newlines folded)."""
    print(f"neural3d: error: {' '.join(str(message).split())}", file=sys.stderr)
