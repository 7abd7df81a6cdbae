"""What a restart needs, for sites whose only output is InfluxDB: a small local state file.

The service resumes from the embedded store when there is one. Without it (InfluxDB only)
the :class:`StateFile` output keeps, per energy series, the recent good readings (the
:class:`ReadingTail`: enough to re-seed the pipeline at the start of the oldest open minute)
and the 1-minute rows of the last two days (so the open day's 15-minute, hourly and daily
rows can be recomputed from all of its minutes after a restart; likewise the open day's
free-cooling minutes, for the free-cooling rollups). It is written atomically
(temporary file, fsync, rename) at most every ``every`` seconds and at shutdown; a crash loses
at most the last ``every`` seconds of it (the restart then bridges from the previous state).
A state file that cannot be read at start is moved aside (``<name>.corrupt-<UTC time>``,
logged) and the service starts without resuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pue_monitor.readings import Quality, Reading
from pue_monitor.sinks.base import Output, OutputHealth
from pue_monitor.sinks.sqlite import FREE_COOLING_COLUMNS, INTERVAL_COLUMNS, _free_cooling_row, _interval_row

__all__ = ["ReadingTail", "StateFile"]

log = logging.getLogger(__name__)

STATE_VERSION = 1
_KEEP_MINUTES = 2 * 86400.0
_KEEP_FREE_COOLING = 25 * 3600.0  # the open local day's free-cooling minutes (a DST day has 25 h)


class ReadingTail:
    """The recent good readings of each energy series, newest ``keep`` seconds (relative to the
    newest reading of any series) plus always each series' newest reading."""

    def __init__(self, keys: Iterable[tuple[str, str]], *, keep: float) -> None:
        self.keep = keep
        self._series: dict[tuple[str, str], deque[Reading]] = {k: deque() for k in keys}
        self.newest = -math.inf

    def add(self, readings: Iterable[Reading]) -> bool:
        """Add GOOD finite readings of known series, in time order; True if any was added."""
        touched: list[deque[Reading]] = []
        for r in readings:
            q = self._series.get((r.device, r.point))
            if q is None or r.quality != Quality.GOOD or not (math.isfinite(r.ts) and math.isfinite(r.value)):
                continue
            if q and r.ts <= q[-1].ts:
                continue  # not newer than the series' last reading: the pipeline rejects it too
            q.append(r)
            touched.append(q)
            self.newest = max(self.newest, r.ts)
        cut = self.newest - self.keep
        for q in touched:  # a series is trimmed when it grows: cost per reading, not per series
            while len(q) > 1 and q[0].ts < cut and q[1].ts <= cut:
                q.popleft()
        return bool(touched)

    def track(self, keys: Iterable[tuple[str, str]]) -> None:
        """Also keep the series ``keys`` (a reload's new meters); held ones stay."""
        for k in keys:
            self._series.setdefault(k, deque())

    def last_readings(self, keys: Iterable[tuple[str, str]]) -> list[Reading]:
        return [q[-1] for k in keys if (q := self._series.get(k))]

    def readings_since(self, keys: Iterable[tuple[str, str]], since: float) -> list[Reading]:
        """Per series: the last reading at/before ``since`` (if held) and every one after."""
        out: list[Reading] = []
        for k in keys:
            q = self._series.get(k)
            if not q:
                continue
            rows = list(q)
            i = next((j for j in range(len(rows) - 1, -1, -1) if rows[j].ts <= since), 0)
            out.extend(rows[i:])
        return out

    def to_json(self) -> list[list[Any]]:
        return [[r.ts, r.site, r.device, r.point, r.value, r.unit] for q in self._series.values() for r in q]

    def load(self, rows: Iterable[Sequence[Any]]) -> None:
        self.add(sorted((Reading(float(a[0]), a[1], a[2], a[3], float(a[4]), a[5]) for a in rows), key=lambda r: r.ts))


class StateFile(Output):
    """Restart state for InfluxDB-only sites (see the module docstring)."""

    name = "state file"

    def __init__(self, path: str | Path, *, site: str, tail: ReadingTail, every: float = 10.0) -> None:
        self.path = Path(path)
        self.site = site
        self.tail = tail
        self.every = every
        self._minutes: dict[float, dict[str, Any]] = {}
        #: 1-minute free-cooling rows by (start, economiser) (optional in the file: older ones have none)
        self._free_cooling: dict[tuple[float, str], dict[str, Any]] = {}
        self._dirty = False
        self._written_at = -math.inf  # monotonic
        self.up: bool | None = None
        self.last_error = ""
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION or data.get("site") != self.site:
                raise ValueError(f"version {data.get('version')!r}, site {data.get('site')!r}: not this site's state")
            self.tail.load(data["readings"])
            self._minutes = {float(r["start"]): r for r in data["minutes"]}
            self._free_cooling = {(float(r["start"]), str(r["economiser"])): r for r in data.get("free_cooling", [])}
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.error(
                "state file %s is unreadable (%s); moved it aside to %s; starting without resuming",
                self.path,
                exc,
                aside,
            )
            self._minutes = {}
            self._free_cooling = {}

    # the resume interface shared with StoreOutput
    def last_readings(self, keys: Iterable[tuple[str, str]]) -> list[Reading]:
        return self.tail.last_readings(keys)

    def readings_since(self, keys: Iterable[tuple[str, str]], since: float) -> list[Reading]:
        return self.tail.readings_since(keys, since)

    def interval_rows(self, resolution: str, since: float) -> list[dict[str, Any]]:
        if resolution != "1m":
            return []
        return [dict(r) for s, r in sorted(self._minutes.items()) if s >= since]

    def free_cooling_rows(self, resolution: str, since: float) -> list[dict[str, Any]]:
        if resolution != "1m":
            return []
        return [dict(r) for k, r in sorted(self._free_cooling.items()) if k[0] >= since]

    # Output
    def readings(self, readings: Sequence[Reading]) -> None:
        self._dirty = True  # the service feeds the shared tail itself

    def intervals(self, resolution: str, intervals: Sequence[Any]) -> None:
        if resolution != "1m" or not intervals:
            return
        for iv in intervals:
            self._minutes[float(iv.start)] = dict(
                zip(INTERVAL_COLUMNS, _interval_row(self.site, "1m", iv, 0.0), strict=True)
            )
        newest = max(self._minutes)
        self._minutes = {s: r for s, r in self._minutes.items() if s > newest - _KEEP_MINUTES}
        self._dirty = True

    def free_cooling(self, resolution: str, rows: Sequence[Any]) -> None:
        if resolution != "1m" or not rows:
            return
        for r in rows:
            row = dict(zip(FREE_COOLING_COLUMNS, _free_cooling_row(self.site, "1m", r, 0.0), strict=True))
            self._free_cooling[(float(r.start), str(r.economiser))] = row
        newest = max(k[0] for k in self._free_cooling)
        self._free_cooling = {k: v for k, v in self._free_cooling.items() if k[0] > newest - _KEEP_FREE_COOLING}
        self._dirty = True

    async def flush(self, now: float) -> None:
        if self._dirty and time.monotonic() - self._written_at >= self.every:
            await self._save()

    async def close(self) -> None:
        if self._dirty:
            await self._save()

    async def _save(self) -> None:
        data = {
            "version": STATE_VERSION,
            "site": self.site,
            "saved": time.time(),
            "readings": self.tail.to_json(),
            "minutes": list(self._minutes.values()),
            "free_cooling": list(self._free_cooling.values()),
        }
        self._dirty = False
        self._written_at = time.monotonic()
        try:
            await asyncio.to_thread(_write_atomic, self.path, json.dumps(data, separators=(",", ":")))
        except OSError as exc:
            self._dirty = True
            if self.up is not False:
                log.error("state file %s: cannot write (%s); restart bridging uses the last good one", self.path, exc)
            self.up, self.last_error = False, f"{exc}"
            return
        self.up, self.last_error = True, ""

    def health(self) -> OutputHealth:
        return OutputHealth(self.name, self.up, self.last_error)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
