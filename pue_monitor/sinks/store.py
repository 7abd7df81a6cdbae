"""The embedded store as an :class:`~pue_monitor.sinks.base.Output`: it never fails silently
and never stops the collectors or the pipeline.

Readings, rollups and events handed over are buffered in memory and written once per tick,
all in one SQLite transaction, by a background task on one worker thread (the tick never waits
for the disk); the readings go into the store's index-free staging table, moved into
``readings`` once a minute (sinks/sqlite.py, schema 8). When a write fails — disk full
(``SQLITE_FULL``), the file locked by another process longer than ``busy_timeout``, a
read-only file or file system, an I/O error — nothing of
it is written (the transaction rolls back), the buffer is kept, ``pue_store_up`` goes to 0, one
line naming the path and the cause is logged, and the write is retried with backoff (1 s
doubling to ``retry_cap``). When it succeeds again everything buffered is written, so the store
ends up as it would have been without the fault.

Bounds: at most ``max_pending_readings`` readings (default 500,000, about 100 MB; at 15-s polls
of 25 points that is 3.5 days), ``max_pending_intervals`` rollups (by key: a restated rollup
replaces its pending version) and ``max_pending_events`` events are held. Past a bound the
OLDEST items are dropped, counted (``pue_store_dropped_total``) and logged.

A store file deleted (or replaced) while running is detected before each write: the store is
recreated at the same path (logged), and the rollups of the last two days that this process
holds are written again; what the deleted file held otherwise is gone with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pue_monitor.pipeline.events import PipelineEvent
from pue_monitor.pipeline.faults import SensorFault
from pue_monitor.readings import Reading
from pue_monitor.sinks.base import Output, OutputHealth
from pue_monitor.sinks.readings_archive import day_bounds, day_of
from pue_monitor.sinks.sqlite import STAGE_SECONDS, CompactResult, SqliteStore, open_store

__all__ = ["StoreOutput"]

log = logging.getLogger(__name__)

_KEEP_ROLLUPS = 2 * 86400.0  # rollups kept in memory to rewrite a deleted/recreated store
#: a UTC day's raw readings are archived into its day file this long after it ended (late
#: readings after that are still kept: the next compaction merges them into the day's file)
COMPACT_AFTER = 3600.0


class _Stopped(Exception):
    """The service is closing: the compaction stops between two days."""


def _cause(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    text = str(exc) or type(exc).__name__
    if name == "SQLITE_BUSY" or "locked" in text:
        return f"locked by another process ({text})"
    if name == "SQLITE_FULL":
        return f"disk full ({text})"
    if name is not None and (name.startswith("SQLITE_READONLY") or name.startswith("SQLITE_IOERR")):
        return f"cannot write: read-only or I/O error ({name}: {text})"
    return f"{name or type(exc).__name__}: {text}"


class StoreOutput(Output):
    """Buffered, retried, fault-reporting writer of the embedded store."""

    name = "store"

    def __init__(
        self,
        path: str | Path,
        *,
        site: str,
        meta: dict[str, str] | None = None,
        keep_readings_days: float | None = None,
        busy_timeout: float = 2.0,
        max_pending_readings: int = 500_000,
        max_pending_intervals: int = 100_000,
        max_pending_events: int = 100_000,
        retry_cap: float = 15.0,
        meter_roles: dict[str, str] | None = None,
        compact_after: float | None = COMPACT_AFTER,
    ) -> None:
        self.path = Path(path)
        self.site = site
        self.meta = dict(meta or {})
        self.keep_readings_days = keep_readings_days
        self.busy_timeout = busy_timeout
        self.max_pending_readings = max_pending_readings
        self.max_pending_intervals = max_pending_intervals
        self.max_pending_events = max_pending_events
        self.retry_cap = retry_cap
        #: device -> meter role, stored with its sensor faults (the service's dict: kept current on reload)
        self.meter_roles = meter_roles if meter_roles is not None else {}
        self._readings: deque[Reading] = deque()
        self._intervals: dict[tuple[str, float], Any] = {}  # (resolution, start) -> interval
        self._events: deque[PipelineEvent] = deque()
        #: free-cooling rows: (resolution, start, economiser) -> row (upserted like rollups)
        self._free_cooling: dict[tuple[str, float, str], Any] = {}
        #: sensor faults opened or cleared: (device, point, kind, start) -> fault (the newest version)
        self._faults: dict[tuple[str, str, str, float], SensorFault] = {}
        self._recent: dict[tuple[str, float], Any] = {}  # rollups written, for a recreated store
        self.dropped: dict[str, int] = {
            "readings": 0,
            "intervals": 0,
            "events": 0,
            "free_cooling": 0,
            "sensor_faults": 0,
        }
        self.write_failures = 0
        self.recreated = 0
        self.readings_written = 0
        self.up: bool | None = None
        self.last_error = ""
        self._retry_at = 0.0  # monotonic
        self._backoff = 0.0
        self._pruned_at: float | None = None
        self._now = time.time()  # clock time of the last flush (retention uses clock time)
        self._task: asyncio.Task[None] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        #: closed UTC days of raw readings move to the day files on their own thread, so a long
        #: compaction never holds up the writes of the ticks (they wait at most for one day's commit)
        self.compact_after = compact_after
        if compact_after is not None:
            # imported here, on the caller's thread: importing polars on the compaction thread
            # while another thread (model training) imports it gives that thread half a module
            import polars  # noqa: F401
        self._compactor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-compact")
        self._compaction: Future[None] | None = None
        self._compacted_to: float | None = None  # UTC midnight up to which days are archived
        self._compact_retry_at = 0.0  # clock time
        self._closing = threading.Event()
        self.compactions: list[CompactResult] = []
        self.store: SqliteStore | None = None
        try:
            self._open()
        except (sqlite3.Error, OSError) as exc:  # keep running; retried at each flush
            self._failed(exc)

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        # the live writes are staged (no index) and moved into the table once a minute
        store = open_store(self.path, busy_timeout=self.busy_timeout, stage_seconds=STAGE_SECONDS)
        try:
            for key, value in self.meta.items():
                store.set_meta(key, value)
        except sqlite3.Error:
            store.close()
            raise
        self.store = store

    # ---------------------------------------------------------------- hand-over

    def readings(self, readings: Sequence[Reading]) -> None:
        self._readings.extend(readings)
        over = len(self._readings) - self.max_pending_readings
        if over > 0:
            for _ in range(over):
                self._readings.popleft()
            self._dropped("readings", over)

    def intervals(self, resolution: str, intervals: Sequence[Any]) -> None:
        for iv in intervals:
            key = (resolution, float(iv.start))
            self._intervals.pop(key, None)  # re-insert: dict order = age of the newest version
            self._intervals[key] = iv
        over = len(self._intervals) - self.max_pending_intervals
        if over > 0:
            for key in list(self._intervals)[:over]:
                del self._intervals[key]
            self._dropped("intervals", over)

    def events(self, events: Sequence[PipelineEvent]) -> None:
        self._events.extend(events)
        over = len(self._events) - self.max_pending_events
        if over > 0:
            for _ in range(over):
                self._events.popleft()
            self._dropped("events", over)

    def free_cooling(self, resolution: str, rows: Sequence[Any]) -> None:
        for r in rows:
            key = (resolution, float(r.start), str(r.economiser))
            self._free_cooling.pop(key, None)
            self._free_cooling[key] = r
        over = len(self._free_cooling) - self.max_pending_intervals
        if over > 0:
            for key in list(self._free_cooling)[:over]:
                del self._free_cooling[key]
            self._dropped("free_cooling", over)

    def sensor_faults(self, faults: Sequence[SensorFault]) -> None:
        for f in faults:
            self._faults.pop(f.key, None)
            self._faults[f.key] = f
        over = len(self._faults) - self.max_pending_events
        if over > 0:
            for key in list(self._faults)[:over]:
                del self._faults[key]
            self._dropped("sensor_faults", over)

    def _dropped(self, kind: str, n: int) -> None:
        first = self.dropped[kind] == 0
        self.dropped[kind] += n
        if first or self.dropped[kind] % 10_000 < n:
            log.error(
                "store %s: write buffer full while the store fails (%s); dropped the oldest %d %s so far (data lost)",
                self.path,
                self.last_error or "not written yet",
                self.dropped[kind],
                kind,
            )

    @property
    def pending(self) -> int:
        return (
            len(self._readings) + len(self._intervals) + len(self._events) + len(self._free_cooling) + len(self._faults)
        )

    # ------------------------------------------------------------------- writing

    async def flush(self, now: float) -> None:
        """Start a background write of what is buffered (unless one runs or we back off)."""
        self._now = now
        if self._task is not None and not self._task.done():
            return
        if time.monotonic() < self._retry_at:
            return
        self._task = asyncio.create_task(self._write(now), name="store writer")

    async def wait(self) -> None:
        """Wait for the running background write (tests, close)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _write(self, now: float) -> None:
        readings, self._readings = list(self._readings), deque()
        intervals, self._intervals = self._intervals, {}
        events, self._events = list(self._events), deque()
        fc, self._free_cooling = self._free_cooling, {}
        faults, self._faults = self._faults, {}
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._io, self._write_sync, readings, intervals, events, now, fc, faults)
        except (sqlite3.Error, OSError) as exc:
            # nothing of it was written: put it back in front of what arrived meanwhile
            self._readings.extendleft(reversed(readings))
            for key, iv in self._intervals.items():
                intervals.pop(key, None)
                intervals[key] = iv
            self._intervals = intervals
            self._events.extendleft(reversed(events))
            for fkey, r in self._free_cooling.items():
                fc.pop(fkey, None)
                fc[fkey] = r
            self._free_cooling = fc
            for qkey, f in self._faults.items():
                faults.pop(qkey, None)
                faults[qkey] = f
            self._faults = faults
            self.sensor_faults([])
            self.readings([])  # re-apply the bounds
            self.intervals("", [])
            self.events([])
            self.free_cooling("", [])
            self._failed(exc)
            return
        if self.up is False:
            log.warning(
                "store %s writable again; wrote %d readings, %d rollups, %d events held meanwhile",
                self.path,
                len(readings),
                len(intervals),
                len(events),
            )
        self.up = True
        self.last_error = ""
        self._backoff = 0.0
        self._retry_at = 0.0
        newest = max((iv.end for iv in intervals.values()), default=None)
        self._recent.update(intervals)
        if newest is not None:
            self._recent = {k: v for k, v in self._recent.items() if v.end > newest - _KEEP_ROLLUPS}

    def _write_sync(
        self,
        readings: list[Reading],
        intervals: dict[tuple[str, float], Any],
        events: list[PipelineEvent],
        now: float,
        free_cooling: dict[tuple[str, float, str], Any] | None = None,
        faults: dict[tuple[str, str, str, float], SensorFault] | None = None,
    ) -> None:
        if self.store is None:
            self._open()
        elif not self.store.still_there():
            log.error(
                "store %s was deleted or replaced while running; recreating it there "
                "(rows of the deleted file are gone; rewriting the %d rollups of the last two days held in memory)",
                self.path,
                len(self._recent),
            )
            with contextlib.suppress(sqlite3.Error):
                self.store.close()
            self.store = None
            self._open()
            self.recreated += 1
            for key, iv in self._recent.items():
                intervals.setdefault(key, iv)
        assert self.store is not None
        site = self.site
        rows = [(site, res, iv) for (res, _), iv in intervals.items()]
        fc_rows = [(site, res, r) for (res, _, _), r in (free_cooling or {}).items()]
        self.store.write(
            readings,
            rows,
            [(site, ev) for ev in events],
            now=time.time(),
            free_cooling=fc_rows,
            sensor_faults=[(site, f, self.meter_roles.get(f.device, "")) for f in (faults or {}).values()],
        )
        self.readings_written += len(readings)
        if self.keep_readings_days is not None and (self._pruned_at is None or now - self._pruned_at >= 3600):
            self._pruned_at = now  # retention, hourly (clock time), of the table and of the day files
            self.store.prune_readings(now - self.keep_readings_days * 86400)
            self.store.prune_reading_files(now - self.keep_readings_days * 86400)
        self._maybe_compact(now)

    def _maybe_compact(self, now: float) -> None:
        """Archive the UTC days that ended ``compact_after`` seconds ago or more (the first write
        of a run archives every closed day an older store still holds in its table)."""
        if self.compact_after is None or self.store is None or now < self._compact_retry_at:
            return
        cutoff = day_bounds(day_of(now - self.compact_after))[0]
        if self._compacted_to is not None and cutoff <= self._compacted_to:
            return
        if self._compaction is not None and not self._compaction.done():
            return
        self._compacted_to = cutoff
        self._compaction = self._compactor.submit(self._compact, self.store, cutoff, now)

    def _compact(self, store: SqliteStore, cutoff: float, now: float) -> None:
        def stop(day: str, done: int, total: int) -> None:
            if self._closing.is_set():
                raise _Stopped

        try:
            res = store.compact_readings(cutoff, progress=stop)
        except _Stopped:
            return
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._compacted_to = None
            self._compact_retry_at = now + 3600.0
            log.error("store %s: archiving closed days of readings failed (%s); retrying in an hour", self.path, exc)
            return
        self.compactions.append(res)
        if res.days:
            log.info(
                "store %s: archived %d readings of %s into day files (%.1f MB, %.1f s)",
                self.path,
                res.readings,
                ", ".join(res.days),
                res.bytes / 1e6,
                res.seconds,
            )

    def wait_compaction(self) -> None:
        """Block until the running compaction (if any) is over (tests)."""
        if self._compaction is not None:
            self._compaction.result()

    def _failed(self, exc: BaseException) -> None:
        self.write_failures += 1
        cause = _cause(exc)
        if self.up is not False or cause != self.last_error:
            log.error(
                "store %s: cannot write, %s; holding %d readings, %d rollups, %d events in memory and retrying",
                self.path,
                cause,
                len(self._readings),
                len(self._intervals),
                len(self._events),
            )
        self.up = False
        self.last_error = cause
        self._backoff = min(max(self._backoff * 2, 1.0), self.retry_cap)
        self._retry_at = time.monotonic() + self._backoff

    # ----------------------------------------------------------------- resuming

    def last_readings(self, keys: Iterable[tuple[str, str]]) -> list[Reading]:
        return self.store.last_readings(keys) if self.store is not None else []

    def readings_since(self, keys: Iterable[tuple[str, str]], since: float) -> list[Reading]:
        return self.store.readings_since(keys, since) if self.store is not None else []

    def interval_rows(self, resolution: str, since: float) -> list[dict[str, Any]]:
        return self.store.interval_rows(self.site, resolution, since) if self.store is not None else []

    def free_cooling_rows(self, resolution: str, since: float) -> list[dict[str, Any]]:
        return self.store.free_cooling_rows(self.site, resolution, since) if self.store is not None else []

    # ------------------------------------------------------------------- closing

    async def close(self) -> None:
        """Wait for the running write, then write what is left (one attempt, no backoff)."""
        await self.wait()
        if self.pending:
            self._retry_at = 0.0
            await self.flush(self._now)
            await self.wait()
        if self.pending:
            log.error(
                "store %s: could not write %d readings, %d rollups, %d events at shutdown (%s): lost",
                self.path,
                len(self._readings),
                len(self._intervals),
                len(self._events),
                self.last_error,
            )
        loop = asyncio.get_running_loop()
        self._closing.set()  # a running compaction stops after its current day
        await loop.run_in_executor(None, lambda: self._compactor.shutdown(wait=True))
        if self.store is not None:
            await loop.run_in_executor(self._io, self.store.close)
        self._io.shutdown(wait=True)

    def health(self) -> OutputHealth:
        return OutputHealth(self.name, self.up, self.last_error, sum(self.dropped.values()))
