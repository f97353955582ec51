"""The lock of a run directory in use: one trainer at a time writes a run.

``RUN/.lock`` holds one JSON line saying who trains into the run (``pid``, ``host``, ``command``, ``since``)
and is held with an exclusive ``flock`` for as long as the trainer runs. The kernel drops a ``flock`` when
its process ends, however it ends (``kill -9`` included), so:

* the file locked by another process: the run is in use; :class:`RunLockedError` names the holder (the CLI
  exits 2);
* the file present but not locked: its holder died without releasing it (a stale lock); the new trainer
  takes it over with a warning naming the dead holder;
* released normally: the file is removed.

On a file system without ``flock`` support the run trains unlocked, with a warning saying so.

Under torchrun only rank 0 locks (it is the one writer, :func:`~neural3d.training.run_dir.is_main_process`).
"""

from __future__ import annotations

import atexit
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import warnings
import weakref
from pathlib import Path
from typing import Any

from neural3d.config import ConfigError

LOCK_NAME = ".lock"
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP)  # flock unsupported by the file system


class RunLockedError(ConfigError):
    """Another live process trains into the run directory."""


def _holder_info() -> dict[str, Any]:
    """Who this process is: pid, host, command line, start time (UTC, ISO 8601)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv) or sys.executable,
        "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h since 2026-12-03T11:00:00+00:00 (neural3d train cfg.yaml)``."""
    if not info:
        return "an unknown process (empty lock file)"
    cmd = str(info.get("command", "?"))
    cmd = cmd if len(cmd) <= 200 else cmd[:197] + "..."
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('since', '?')} ({cmd})"


def _read_info(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        info = json.loads(raw.decode("utf-8", "replace")) if raw.strip() else {}
    except json.JSONDecodeError:
        return {"command": f"unreadable lock file: {raw[:80]!r}"}
    return info if isinstance(info, dict) else {}


def _release_at_exit(ref: weakref.ref) -> None:
    lock = ref()
    if lock is not None:
        lock.release()


def _in_use_message(run_dir: Path, info: dict[str, Any]) -> str:
    return (
        f"{run_dir} is in use: {describe_holder(info)} is training into it. Wait for it to finish, stop it, or "
        f"choose another run directory (experiment=NAME / output_dir=DIR)"
    )


def check_not_in_use(run_dir: str | Path) -> None:
    """Raise :class:`RunLockedError` naming the holder when a live trainer holds ``run_dir``'s lock; no lock is
    taken and nothing is created (a check before the work that precedes :meth:`RunLock.acquire`)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file (or unreadable): nothing holds the run that we could name
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunLockedError(_in_use_message(Path(run_dir), _read_info(fd))) from None
    except OSError:  # a file system without locks: RunLock.acquire warns
        pass
    finally:
        os.close(fd)


class RunLock:
    """An exclusive lock on ``run_dir`` (see the module docstring).

    Args:
        run_dir: the run directory (created when missing).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Lock the run or raise :class:`RunLockedError` naming the live holder; a stale lock is taken over."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read_info(fd)
                os.close(fd)
                raise RunLockedError(_in_use_message(self.path.parent, info)) from None
            except OSError as e:
                os.close(fd)
                if e.errno not in _NO_LOCKS:
                    raise
                if self.path.stat().st_size == 0:  # the empty file just created
                    self.path.unlink(missing_ok=True)
                warnings.warn(
                    f"{self.path.parent}: this file system does not support locks ({e.strerror}); training "
                    f"unlocked, a second trainer into the run will not be detected",
                    stacklevel=3,
                )
                return
            if self._same_file(fd):  # not a file its holder removed while we opened it
                break
            os.close(fd)
        stale = _read_info(fd)
        if stale:
            warnings.warn(
                f"{self.path}: taking over a stale lock of {describe_holder(stale)}, which is no longer running",
                stacklevel=3,
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(_holder_info()) + "\n").encode())
        os.fsync(fd)
        self._fd = fd
        atexit.register(_release_at_exit, weakref.ref(self))  # a trainer never run still leaves no lock file

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return os.fstat(fd).st_ino == st.st_ino and os.fstat(fd).st_dev == st.st_dev

    def release(self) -> None:
        """Remove the lock file and unlock (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)  # while still locked: nobody can take a file being removed
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self) -> None:  # an abandoned lock (e.g. a trainer never run) does not outlive its object
        try:
            self.release()
        except Exception:
            pass
