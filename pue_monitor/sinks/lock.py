"""One process per store, spool or state file.

``<file>.lock`` next to the file is locked with ``flock`` (exclusive, non-blocking) for the
life of the process and holds its pid. The kernel releases the lock when the process exits,
however it exits (SIGKILL included), so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

from pue_monitor.errors import UserError

__all__ = ["AlreadyRunning", "InstanceLock", "LockError"]

log = logging.getLogger(__name__)


class LockError(UserError):
    """The lock file cannot be created (read-only or missing directory, permissions)."""


class AlreadyRunning(LockError):
    """Another process holds the lock of a file this process would write."""


class InstanceLock:
    """``what`` names the file in messages ("store"); ``field`` is the config field that set
    its path ("store.path"), named when its directory cannot be created."""

    def __init__(self, target: str | Path, what: str, field: str | None = None) -> None:
        self.target = Path(target)
        self.path = self.target.with_name(self.target.name + ".lock")
        self.what = what
        self.field = field
        self._fd: int | None = None

    def _name(self) -> str:
        return f"{self.field} ({self.what})" if self.field else self.what

    def _make_directory(self) -> None:
        """Create the file's directory on first run (logged once); a one-line error naming
        the config field and the path when it cannot be created."""
        parent = self.path.parent
        if parent.is_dir():
            return
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # a file where the directory should be: mkdir says "File exists", which misleads
            why = os.strerror(errno.ENOTDIR) if exc.errno == errno.EEXIST else exc.strerror or str(exc)
            raise LockError(
                f"{self._name()} {self.target}: cannot create its directory {parent}: {why}",
                f"create it, or set {self.field or 'the path'} to a writable place",
            ) from None
        log.warning("created directory %s for %s %s (first run)", parent, self.field or self.what, self.target)

    def acquire(self) -> InstanceLock:
        self._make_directory()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            what = f"{self._name()} {self.target}: cannot create the lock file {self.path}"
            raise LockError(
                f"{what}: {exc.strerror}",
                f"make {self.path.parent} writable for this user, or set {self.field or 'the path'} "
                "to a writable place",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise AlreadyRunning(
                f"{self.what} {self.target} is in use by another pue process (pid {pid}; lock {self.path})",
                "stop it first or give this run its own file",
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
