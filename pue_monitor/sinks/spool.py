"""Durable on-disk queue of line-protocol batches (SQLite, WAL).

Every batch is written here *before* it is sent and deleted only after the database
accepted it, so a batch survives a database outage and a crash or SIGKILL of the
pipeline; replay is in order and idempotent (same series and timestamp overwrite).
The queue is bounded: past ``max_bytes`` the oldest batches are evicted, counted and
logged — never silently. A batch the server rejects as malformed (4xx), or one whose
stored body is corrupt, moves to the quarantine with the reason instead of being retried
forever. A spool file that is corrupt or truncated at start (not a database, failing
``PRAGMA quick_check``, wrong tables) is moved aside under a timestamped name, named in
the log, and a fresh spool is started.
"""

from __future__ import annotations

import gzip
import logging
import sqlite3
import threading
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_DDL = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
    points INTEGER NOT NULL, bytes INTEGER NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, quarantined REAL NOT NULL,
    points INTEGER NOT NULL, error TEXT NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COLUMNS = {
    "batches": ["id", "created", "points", "bytes", "body"],
    "quarantine": ["id", "created", "quarantined", "points", "error", "body"],
    "counters": ["name", "value"],
}
#: SQLite result codes that mean "this file is not a (sound) spool": moved aside at start
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


@dataclass(frozen=True)
class SpoolStatus:
    queued_batches: int
    queued_points: int
    queued_bytes: int
    oldest_age_s: float | None
    quarantined_batches: int
    quarantined_points: int
    evicted_batches: int
    evicted_points: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class Batch:
    id: int
    points: int
    body: bytes  # gzip-compressed line protocol

    def lines(self) -> bytes:
        """The batch's line protocol. Raises ValueError when the stored body is corrupt."""
        if not isinstance(self.body, bytes):
            raise ValueError(f"body is {type(self.body).__name__}, not gzip bytes")
        try:
            return gzip.decompress(self.body)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"body does not decompress: {exc}") from None


class Spool:
    """Thread-safe; the sink calls it from a worker thread."""

    #: seconds a write waits for another connection's lock before it fails (the sink's
    #: supervisor then logs it, marks the sink down and retries with backoff)
    BUSY_TIMEOUT = 5.0

    def __init__(self, path: str | Path, *, max_bytes: int = 256 * 2**20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        #: where a corrupt spool found at start was moved (None: it was fine)
        self.moved_aside: Path | None = None
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _CORRUPT_CODES:
                raise  # locked, read-only, I/O error: not ours to move; the caller names the path
            self.moved_aside = self._move_aside(str(exc))
            self._conn = self._open()
        self._bytes = int(self._conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM batches").fetchone()[0])

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.BUSY_TIMEOUT, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                err = sqlite3.DatabaseError(f"database disk image is malformed: {'; '.join(problems[:3])}")
                err.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
                raise err
            with conn:
                conn.executescript(_DDL)
            for table, cols in _COLUMNS.items():
                have = [r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
                if have != cols:
                    err = sqlite3.DatabaseError(f"table {table} has columns {have}, expected {cols}")
                    err.sqlite_errorcode = sqlite3.SQLITE_NOTADB
                    raise err
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self, reason: str) -> Path:
        """Keep a corrupt or truncated spool file under a timestamped name; start a fresh one."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        log.error(
            "spool %s is corrupt or truncated (%s): moved it aside to %s (kept for inspection; the batches "
            "in it were not sent) and started a fresh spool",
            self.path,
            reason,
            aside,
        )
        return aside

    def append(self, lines: list[str]) -> int:
        """Store a batch durably; returns its id. Evicts the oldest past ``max_bytes``."""
        body = gzip.compress("\n".join(lines).encode(), compresslevel=1)
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO batches (created, points, bytes, body) VALUES (?, ?, ?, ?)",
                (time.time(), len(lines), len(body), body),
            )
            self._bytes += len(body)
            self._evict_locked()
            assert cur.lastrowid is not None
            return cur.lastrowid

    def _evict_locked(self) -> None:
        batches = points = 0
        while self._bytes > self.max_bytes:
            row = self._conn.execute("SELECT id, points, bytes FROM batches ORDER BY id LIMIT 1").fetchone()
            if row is None:
                break
            self._conn.execute("DELETE FROM batches WHERE id = ?", (row[0],))
            self._bytes -= row[2]
            batches += 1
            points += row[1]
        if batches:
            self._bump("evicted_batches", batches)
            self._bump("evicted_points", points)
            log.error(
                "spool %s full (%d bytes): evicted the %d oldest batches (%d points) — they are lost",
                self.path,
                self.max_bytes,
                batches,
                points,
            )

    def _bump(self, name: str, n: int) -> None:
        self._conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def oldest(self, limit: int = 1) -> list[Batch]:
        with self._lock:
            rows = self._conn.execute("SELECT id, points, body FROM batches ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Batch(r[0], r[1], r[2]) for r in rows]

    def done(self, batch_id: int) -> None:
        with self._lock, self._conn:
            row = self._conn.execute("SELECT bytes FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is not None:
                self._conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                self._bytes -= row[0]

    def quarantine(self, batch_id: int, error: str, lines: list[bytes] | None = None) -> None:
        """Move a batch (or only its ``lines`` the server rejected) to the quarantine."""
        with self._lock, self._conn:
            row = self._conn.execute(
                "SELECT created, points, bytes, body FROM batches WHERE id = ?", (batch_id,)
            ).fetchone()
            if row is None:
                return
            self._conn.execute(
                "INSERT INTO quarantine (id, created, quarantined, points, error, body) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    row[0],
                    time.time(),
                    row[1] if lines is None else len(lines),
                    error,
                    row[3] if lines is None else gzip.compress(b"\n".join(lines)),
                ),
            )
            self._conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
            self._bytes -= row[2]

    def quarantined_lines(self, batch_id: int) -> list[str]:
        with self._lock:
            row = self._conn.execute("SELECT body FROM quarantine WHERE id = ?", (batch_id,)).fetchone()
        return [] if row is None else gzip.decompress(row[0]).decode().split("\n")

    def quarantined(self) -> list[dict[str, object]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, created, quarantined, points, error FROM quarantine ORDER BY id"
            ).fetchall()
        return [dict(zip(("id", "created", "quarantined", "points", "error"), r, strict=True)) for r in rows]

    def status(self) -> SpoolStatus:
        with self._lock:
            q = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(points), 0), COALESCE(SUM(bytes), 0), MIN(created) FROM batches"
            ).fetchone()
            qq = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(points), 0) FROM quarantine").fetchone()
            counters = dict(self._conn.execute("SELECT name, value FROM counters").fetchall())
        return SpoolStatus(
            queued_batches=q[0],
            queued_points=q[1],
            queued_bytes=q[2],
            oldest_age_s=None if q[3] is None else max(0.0, time.time() - q[3]),
            quarantined_batches=qq[0],
            quarantined_points=qq[1],
            evicted_batches=counters.get("evicted_batches", 0),
            evicted_points=counters.get("evicted_points", 0),
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
