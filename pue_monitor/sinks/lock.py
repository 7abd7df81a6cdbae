"""One process per store, spool or state file.

``<file>.lock`` next to the file is locked with ``flock`` (exclusive, non-blocking) for the
life of the process and holds its pid. The kernel releases the lock when the process exits,
however it exits (SIGKILL included), so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from pue_monitor.errors import PueError

__all__ = ["AlreadyRunning", "InstanceLock", "LockError"]


class LockError(PueError):
    """The lock file cannot be created (read-only or missing directory, permissions)."""


class AlreadyRunning(LockError):
    """Another process holds the lock of a file this process would write."""


class InstanceLock:
    def __init__(self, target: str | Path, what: str) -> None:
        self.target = Path(target)
        self.path = self.target.with_name(self.target.name + ".lock")
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            what = f"{self.what} {self.target}: cannot create the lock file {self.path}"
            raise LockError(f"{what}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise AlreadyRunning(
                f"{self.what} {self.target} is in use by another pue process (pid {pid}; lock {self.path}); "
                "stop it first or give this run its own file"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
