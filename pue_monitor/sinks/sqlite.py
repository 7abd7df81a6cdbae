"""Embedded store: SQLite in WAL mode, the default when no InfluxDB is configured.

Holds raw readings and the interval energy/PUE rollups. The live writer (``pue run``) appends
readings to ``readings_staging`` (no index: an insert costs the same whatever the table's size
and series count) and moves them into ``readings`` once a minute in one sorted insert; every
reader reads both (schema 8). WAL lets any number of
other processes read (``pue show``, reports, tests) while the pipeline writes; the
file survives restarts, and rollups are upserted by (site, resolution, start), so a
restated interval (a gap bridged by a late counter reading) replaces the old row.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from pue_monitor.config.models import SUBSYSTEMS
from pue_monitor.errors import UserError
from pue_monitor.pipeline.events import PipelineEvent
from pue_monitor.pipeline.freecooling_live import mode_name
from pue_monitor.pipeline.kpi import BASIS_COLUMNS, KPI_FIELDS
from pue_monitor.readings import Reading
from pue_monitor.schema import INTERVAL_REASON_FIELDS
from pue_monitor.sinks.readings_archive import (
    DAY,
    DayCache,
    DayData,
    archive_dir,
    day_bounds,
    day_of,
    encode_day,
    write_day,
)

log = logging.getLogger(__name__)

#: 2: readings.tags; 3: events table, pue_intervals.estimated_<reason> shares;
#: 4: companion KPI columns (water, heat, renewable, CO2, WUE/CUE/ERF/REF) and their basis
#:    (emission factor, year, source, water definition, renewable basis); NULL = not measured
#: 5: the free_cooling table (one row per economiser and interval)
#: 6: the sensor_faults table (one row per fault: device, point, kind, start; end NULL while open)
#: 7: reading_files and reading_series: closed UTC days of raw readings moved into Parquet day files
#:    (sinks/readings_archive.py); a store of any older version gains the two (empty) tables and
#:    its readings are archived by the first compaction
#: 8: readings_staging: the live writes append there (no index: the cost of an insert does not grow
#:    with the table or the series per tick) and a move, once a minute, inserts them into
#:    ``readings`` sorted by series; readers read both. An older store gains the (empty) table
SCHEMA_VERSION = 8
_SUB_COLS = [f"e_{r.value}_kwh" for r in SUBSYSTEMS]
_REASON_COLS = list(INTERVAL_REASON_FIELDS)
_KPI_COLS = list(KPI_FIELDS.values())
#: columns added after version 1 of pue_intervals, with their SQL definition (migration)
_ADDED_COLS: dict[str, str] = {
    **{c: "REAL NOT NULL DEFAULT 0" for c in _REASON_COLS},  # rows written before stay 0 (not known)
    **{c: "REAL" for c in _KPI_COLS},  # rows written before stay NULL (not measured)
    **BASIS_COLUMNS,
}

_DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    ts REAL NOT NULL, site TEXT NOT NULL, device TEXT NOT NULL, point TEXT NOT NULL,
    value REAL, unit TEXT NOT NULL, quality INTEGER NOT NULL, tags TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS readings_series ON readings (device, point, ts);
CREATE TABLE IF NOT EXISTS readings_staging (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a reader knows a move by the first id
    ts REAL NOT NULL, site TEXT NOT NULL, device TEXT NOT NULL, point TEXT NOT NULL,
    value REAL, unit TEXT NOT NULL, quality INTEGER NOT NULL, tags TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL, site TEXT NOT NULL, device TEXT NOT NULL, point TEXT NOT NULL,
    kind TEXT NOT NULL, value REAL, detail TEXT NOT NULL DEFAULT '', recorded REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS pue_intervals (
    site TEXT NOT NULL, resolution TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL,
    e_facility_kwh REAL, e_it_kwh REAL, pue REAL, category INTEGER NOT NULL,
    measured REAL NOT NULL, estimated REAL NOT NULL, missing REAL NOT NULL, coverage REAL NOT NULL,
    {", ".join(c + " REAL" for c in _SUB_COLS)}, e_unattributed_kwh REAL,
    updated REAL NOT NULL,
    {", ".join(c + " REAL NOT NULL DEFAULT 0" for c in _REASON_COLS)},
    {", ".join(c + " REAL" for c in _KPI_COLS)},
    {", ".join(f"{c} {t}" for c, t in BASIS_COLUMNS.items())},
    PRIMARY KEY (site, resolution, start)
);
CREATE TABLE IF NOT EXISTS free_cooling (
    site TEXT NOT NULL, resolution TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL,
    economiser TEXT NOT NULL, fraction REAL, mode TEXT, actual_mode TEXT, inferred INTEGER NOT NULL,
    full_s REAL NOT NULL, partial_s REAL NOT NULL, none_s REAL NOT NULL, unknown_s REAL NOT NULL,
    used_s REAL NOT NULL, actual_unknown_s REAL NOT NULL, chiller_kwh REAL, avoidable_kwh REAL,
    updated REAL NOT NULL,
    PRIMARY KEY (site, resolution, start, economiser)
);
CREATE TABLE IF NOT EXISTS sensor_faults (
    site TEXT NOT NULL, device TEXT NOT NULL, point TEXT NOT NULL, kind TEXT NOT NULL,
    start REAL NOT NULL, end REAL, detail TEXT NOT NULL DEFAULT '', value REAL, role TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL,
    PRIMARY KEY (site, device, point, kind, start)
);
CREATE TABLE IF NOT EXISTS reading_files (
    site TEXT NOT NULL, day TEXT NOT NULL, file TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL,
    rows INTEGER NOT NULL, bytes INTEGER NOT NULL, written REAL NOT NULL,
    PRIMARY KEY (site, day)
);
CREATE TABLE IF NOT EXISTS reading_series (
    site TEXT NOT NULL, device TEXT NOT NULL, point TEXT NOT NULL, first_day TEXT NOT NULL, last_day TEXT NOT NULL,
    PRIMARY KEY (device, point, site)
);
"""

#: the sensor_faults table (schema version 6): a fault is written when it opens (``end`` NULL)
#: and again when it clears (upsert by device, point, kind and start); ``role``: the device's meter
#: role ("" when it is no meter), so a report knows which energies the fault makes suspect
SENSOR_FAULT_COLUMNS = ["site", "device", "point", "kind", "start", "end", "detail", "value", "role", "updated"]

#: the free_cooling table (schema version 4): one row per economiser and interval; ``mode`` and
#: ``actual_mode`` (full/partial/none/unknown) only on 1-minute rows, NULL on rollups
FREE_COOLING_COLUMNS = [
    "site", "resolution", "start", "end", "economiser", "fraction", "mode", "actual_mode", "inferred",
    "full_s", "partial_s", "none_s", "unknown_s", "used_s", "actual_unknown_s", "chiller_kwh",
    "avoidable_kwh", "updated",
]  # fmt: skip

INTERVAL_COLUMNS = [
    "site",
    "resolution",
    "start",
    "end",
    "e_facility_kwh",
    "e_it_kwh",
    "pue",
    "category",
    "measured",
    "estimated",
    "missing",
    "coverage",
    *_SUB_COLS,
    "e_unattributed_kwh",
    "updated",
    *_REASON_COLS,
    *_KPI_COLS,
    *BASIS_COLUMNS,
]


def _read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection of this process's own SQLite, rows as plain tuples (never a second
    SQLite library in the process: two copies do not see each other's POSIX locks, see
    ``_table_windows``)."""
    con = connect(path, readonly=True)
    con.row_factory = None
    return con


def _sql_frame(con: sqlite3.Connection, sql: str, args: tuple[Any, ...], schema: dict[str, Any]) -> Any:
    """The rows of ``sql`` as a polars DataFrame of ``schema`` (the query's columns in order):
    one statement, so one snapshot, fetched in chunks."""
    import polars as pl

    cur = con.execute(sql, args)
    parts = []
    while rows := cur.fetchmany(500_000):
        parts.append(pl.DataFrame(rows, schema=schema, orient="row"))
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


@dataclass(frozen=True)
class PeriodPue:
    """PUE over a period from summed interval energy (ISO/IEC 30134-2: ratio of energies)."""

    start: float
    end: float
    e_facility_kwh: float
    e_it_kwh: float
    pue: float | None
    intervals: int
    category: int | None
    estimated_share: float
    #: companion KPIs over the same minutes (sums of numerator and denominator over the minutes
    #: where both are known); None: not measured
    wue: float | None = None
    cue: float | None = None
    erf: float | None = None
    ref: float | None = None


def connect(path: str | Path, *, readonly: bool = False, timeout: float = 10.0) -> sqlite3.Connection:
    if readonly:
        uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"  # quoted: a path may hold ? # %
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    conn.row_factory = sqlite3.Row
    return conn


class _Conflict(Exception):
    """A day being archived changed under the compaction (another process): left for later."""


class StoreCorrupt(Exception):
    """The store file is not a readable SQLite database (corrupt, truncated, not SQLite)."""


class StoreUnusable(UserError):
    """The store path names something a run must not write or cannot read: a directory, a file
    it has no permission for, another program's SQLite database, a store of a newer schema."""


_WRITER_HINT = "set store.path in the site file (or --db) to a pue-monitor store or a new file"


def _check_path(path: Path, hint: str, *, write: bool) -> None:
    """A directory or a file without permission: one line naming the path (before SQLite's
    "unable to open database file", which names nothing). A read-only file system or an
    immutable file is not an error here: the writer buffers and retries (a fault that ends)."""
    if path.is_dir():
        raise StoreUnusable(f"store {path} is a directory, not a file", hint)
    try:
        os.close(os.open(path, os.O_RDWR if write else os.O_RDONLY))
    except FileNotFoundError:
        if not write:
            return
        try:  # a new store: its folder must let this user create files (SQLite would retry forever)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
        except PermissionError as exc:
            if exc.errno == errno.EACCES:
                raise StoreUnusable(
                    f"store {path}: cannot create it in {path.parent}: permission denied (user {os.getuid()})",
                    f"make {path.parent} writable for this user, or " + hint,
                ) from None
        except OSError:
            return  # a read-only file system: the writer buffers and retries
        return
    except PermissionError as exc:
        if exc.errno == errno.EACCES:
            raise StoreUnusable(
                f"store {path}: permission denied (user {os.getuid()})",
                f"give this user {'read and write' if write else 'read'} access to the file and its directory, or "
                + hint,
            ) from None


_STORE_TABLES = {"meta", "readings", "events", "pue_intervals"}


def _check_schema(conn: sqlite3.Connection, path: Path, hint: str, *, new_ok: bool) -> None:
    """An existing database must be a pue-monitor store this version can read."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        if new_ok:
            return  # a new (or empty) file becomes a store
        raise StoreUnusable(f"{path} is empty, not a pue-monitor store", hint)
    # a store has at least one of its tables (one being created may have no version row yet)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if "meta" in tables else None
    if not tables & _STORE_TABLES or (row is not None and not str(row[0]).isdigit()):
        raise StoreUnusable(
            f"{path} is an SQLite database but not a pue-monitor store (tables: {', '.join(sorted(tables)[:5])})",
            hint,
        )
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise StoreUnusable(
            f"store {path} has schema version {row[0]}, newer than this pue-monitor's {SCHEMA_VERSION}",
            "upgrade pue-monitor (pip install -U pue-monitor), or " + hint,
        )


#: files up to this size get a full ``PRAGMA quick_check`` at start; bigger ones a cheaper probe
QUICK_CHECK_MAX_BYTES = 256 * 2**20


def _reading_row(r: Reading) -> tuple[Any, ...]:
    tags = ",".join(f"{k}={v}" for k, v in r.tags)
    return (r.ts, r.site, r.device, r.point, r.value, r.unit, int(r.quality), tags)


def _interval_row(site: str, resolution: str, iv: Any, now: float) -> tuple[Any, ...]:
    subs = [iv.e_subsystems.get(r.value) for r in SUBSYSTEMS]
    basis = getattr(iv, "kpi_basis", None)
    return (
        site,
        resolution,
        iv.start,
        iv.end,
        iv.e_facility,
        iv.e_it,
        iv.pue,
        iv.category,
        iv.measured,
        iv.estimated,
        iv.missing,
        iv.coverage,
        *subs,
        iv.e_unattributed,
        now,
        *(getattr(iv, c, 0.0) for c in _REASON_COLS),
        *(getattr(iv, a, None) for a in KPI_FIELDS),
        *(basis.row()[c] if basis is not None else None for c in BASIS_COLUMNS),
    )


def _free_cooling_row(site: str, resolution: str, r: Any, now: float) -> tuple[Any, ...]:
    mode = None if r.mode is None else mode_name(r.mode)
    actual = None if r.actual_mode is None else mode_name(r.actual_mode)
    return (
        site, resolution, r.start, r.end, r.economiser, r.fraction, mode, actual, int(r.inferred),
        r.full_s, r.partial_s, r.none_s, r.unknown_s, r.used_s, r.actual_unknown_s, r.chiller_kwh,
        r.avoidable_kwh, now,
    )  # fmt: skip


def _event_row(site: str, ev: PipelineEvent, now: float) -> tuple[Any, ...]:
    return (ev.ts, site, ev.device, ev.point, str(ev.kind), ev.value, ev.detail, now)


_READING_COLS = "ts, site, device, point, value, unit, quality, tags"
_INSERT_READING = f"INSERT INTO readings ({_READING_COLS}) VALUES (?,?,?,?,?,?,?,?)"
_INSERT_STAGED = f"INSERT INTO readings_staging ({_READING_COLS}) VALUES (?,?,?,?,?,?,?,?)"
#: staged readings are moved into ``readings`` once the first of them waited this long (the
#: ``now`` of the writes), or when this many wait
STAGE_SECONDS = 60.0
STAGE_MAX_ROWS = 2_000_000
_INSERT_INTERVAL = (
    f"INSERT OR REPLACE INTO pue_intervals ({', '.join(INTERVAL_COLUMNS)}) "
    f"VALUES ({','.join('?' * len(INTERVAL_COLUMNS))})"
)
_INSERT_FREE_COOLING = (
    f"INSERT OR REPLACE INTO free_cooling ({', '.join(FREE_COOLING_COLUMNS)}) "
    f"VALUES ({','.join('?' * len(FREE_COOLING_COLUMNS))})"
)
_INSERT_SENSOR_FAULT = (
    f"INSERT OR REPLACE INTO sensor_faults ({', '.join(SENSOR_FAULT_COLUMNS)}) "
    f"VALUES ({','.join('?' * len(SENSOR_FAULT_COLUMNS))})"
)
_INSERT_EVENT = "INSERT INTO events (ts, site, device, point, kind, value, detail, recorded) VALUES (?,?,?,?,?,?,?,?)"


# --------------------------------------------------------------------------- day files


@dataclass(frozen=True)
class ArchivedDay:
    site: str
    day: str  # YYYY-MM-DD (UTC)
    path: Path
    start: float
    end: float
    rows: int
    bytes: int


@dataclass
class CompactResult:
    """What one compaction did: days archived (new or merged into their file), readings moved
    out of the table, bytes of the day files written."""

    days: list[str] = field(default_factory=list)
    readings: int = 0
    bytes: int = 0
    seconds: float = 0.0


class _Archive:
    """The day files of one store, listed from its ``reading_files`` table (through the caller's
    connection, under the caller's lock) and decoded through a :class:`DayCache`."""

    def __init__(self, store_path: Path, conn: sqlite3.Connection, cache: DayCache) -> None:
        self.folder = archive_dir(store_path)
        self.conn = conn
        self.cache = cache

    def has_table(self) -> bool:
        q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reading_files'"
        return self.conn.execute(q).fetchone() is not None

    def days(self, start: float | None = None, end: float | None = None) -> list[ArchivedDay]:
        """Archived days overlapping ``[start, end]`` (all without bounds), by day."""
        if not self.has_table():
            return []
        q = "SELECT site, day, file, start, end, rows, bytes FROM reading_files WHERE 1 = 1"
        args: list[Any] = []
        if start is not None:
            q += " AND end > ?"
            args.append(start)
        if end is not None:
            q += " AND start <= ?"
            args.append(end)
        rows = self.conn.execute(q + " ORDER BY start, site", args).fetchall()
        return [ArchivedDay(r[0], r[1], self.folder / r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def span(self, device: str, point: str) -> tuple[float, float] | None:
        """[start of the first, end of the last] archived day holding the series."""
        if not self.has_table():
            return None
        r = self.conn.execute(
            "SELECT min(first_day), max(last_day) FROM reading_series WHERE device = ? AND point = ?", (device, point)
        ).fetchone()
        if r is None or r[0] is None:
            return None
        return day_bounds(date.fromisoformat(r[0]))[0], day_bounds(date.fromisoformat(r[1]))[1]

    def load(self, days: Sequence[ArchivedDay], *, full: bool = False) -> list[DayData]:
        if full:
            return [self.cache.get(d.path, full=True) for d in days]
        return self.cache.get_many(d.path for d in days)

    def series(
        self, device: str, point: str, start: float | None, end: float | None, *, full: bool = False
    ) -> list[tuple[ArchivedDay, DayData, int, int]]:
        """(day, decoded file, lo, hi) of every archived day holding readings of the series with
        ``start <= ts <= end``: the rows ``lo:hi`` of the file's arrays, by day."""
        sp = self.span(device, point)
        if sp is None:
            return []
        lo_t = sp[0] if start is None else max(start, sp[0])
        hi_t = sp[1] if end is None else min(end, sp[1])
        if lo_t > hi_t:
            return []
        days = self.days(lo_t, hi_t)
        out = []
        for d, data in zip(days, self.load(days, full=full), strict=True):
            a, b = data.index.get((device, point), (0, 0))
            ts = data.ts[a:b]
            i = a + int(np.searchsorted(ts, lo_t, "left"))
            j = a + int(np.searchsorted(ts, hi_t, "right"))
            if j > i:
                out.append((d, data, i, j))
        return out

    def good(self, device: str, point: str, start: float | None, end: float | None) -> tuple[np.ndarray, np.ndarray]:
        """(ts, value) of the archived GOOD readings of a series with ``start <= ts <= end``."""
        ts, vs = [], []
        for _, data, i, j in self.series(device, point, start, end):
            q, v = data.quality[i:j], data.value[i:j]
            keep = (q == 0) & ~np.isnan(v)
            ts.append(data.ts[i:j][keep])
            vs.append(v[keep])
        if not ts:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(ts), np.concatenate(vs)

    def good_edge(
        self,
        device: str,
        point: str,
        t: float,
        n: int,
        *,
        before: bool,
        span: tuple[float, float] | bool | None = True,
        all_days: list[ArchivedDay] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The last ``n`` archived GOOD readings with ts < ``t`` (``before``) or the first ``n``
        with ts > ``t``, by ts: day by day away from ``t`` within the series' archived span
        (``span``/``all_days``: the caller's look-ups of :meth:`span` and :meth:`days`)."""
        sp = self.span(device, point) if span is True else span
        if not isinstance(sp, tuple) or n <= 0:
            return np.zeros(0), np.zeros(0)
        lo, hi = (sp[0], min(t, sp[1])) if before else (max(t, sp[0]), sp[1])
        days = self.days(lo, hi) if all_days is None else [d for d in all_days if d.end > lo and d.start <= hi]
        days = [d for d in reversed(days) if d.start < t] if before else [d for d in days if d.end > t]
        got_t: list[np.ndarray] = []
        got_v: list[np.ndarray] = []
        have = 0
        for d in days:
            data = self.cache.get(d.path)
            ts, v = data.good(device, point)
            sel = ts < t if before else ts > t
            ts, v = ts[sel], v[sel]
            if not ts.size:
                continue
            if before:
                got_t.insert(0, ts[-(n - have) :])
                got_v.insert(0, v[-(n - have) :])
            else:
                got_t.append(ts[: n - have])
                got_v.append(v[: n - have])
            have += min(ts.size, n - have)
            if have >= n:
                break
        if not got_t:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(got_t), np.concatenate(got_v)

    def spans(self) -> dict[tuple[str, str], tuple[float, float]]:
        """:meth:`span` of every archived series."""
        if not self.has_table():
            return {}
        rows = self.conn.execute(
            "SELECT device, point, min(first_day), max(last_day) FROM reading_series GROUP BY device, point"
        ).fetchall()
        return {
            (r[0], r[1]): (day_bounds(date.fromisoformat(r[2]))[0], day_bounds(date.fromisoformat(r[3]))[1])
            for r in rows
        }

    def count(self) -> int:
        if not self.has_table():
            return 0
        return int(self.conn.execute("SELECT coalesce(sum(rows), 0) FROM reading_files").fetchone()[0])


class _StagedRows:
    """A reader's copy of the staged GOOD readings (ids ``lo``..``hi``): a base sorted by series,
    stamp and arrival with each series' slice, and a tail of the rows read since (by arrival),
    folded into the base when it grows past a quarter of it."""

    def __init__(self, lo: int, hi: int, rows: Any) -> None:
        import polars as pl

        self.lo, self.hi = lo, hi
        self.n = rows.height
        self.tail = rows.head(0).with_columns(pl.lit(0, pl.UInt32).alias("_i"))
        self._build(rows.with_row_index("_i"))

    def _build(self, rows: Any) -> None:
        import polars as pl

        self.base = rows.sort(["device", "point", "ts", "_i"])
        counts = self.base.group_by(["device", "point"], maintain_order=True).len()
        ends = np.cumsum(counts["len"].to_numpy())
        self.index = {
            (str(d), str(p)): (int(e - c), int(e))
            for d, p, c, e in zip(counts["device"], counts["point"], counts["len"], ends, strict=True)
        }
        self.ts = self.base["ts"].cast(pl.Float64).to_numpy()
        self.value = self.base["value"].cast(pl.Float64).to_numpy()

    def append(self, rows: Any, hi: int) -> None:
        import polars as pl

        self.hi = hi
        if not rows.height:
            return
        rows = rows.with_columns((pl.int_range(rows.height, dtype=pl.UInt32) + self.n).alias("_i"))
        self.n += rows.height
        self.tail = pl.concat([self.tail, rows.select(self.tail.columns)], how="vertical_relaxed")
        if self.tail.height > max(10_000, self.base.height // 4):
            self._build(pl.concat([self.base, self.tail.select(self.base.columns)], how="vertical_relaxed"))
            self.tail = self.tail.head(0)

    def get(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        import polars as pl

        out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for key in keys:
            a, b = self.index.get(key, (0, 0))
            if b > a:
                out[key] = (self.ts[a:b], self.value[a:b])
        if self.tail.height:
            want = pl.DataFrame(
                {"device": [k[0] for k in keys], "point": [k[1] for k in keys]},
                schema={"device": pl.String, "point": pl.String},
            ).unique()
            sub = self.tail.join(want, on=["device", "point"], how="semi").sort(["device", "point", "ts", "_i"])
            for (dv, pt), part in sub.partition_by(["device", "point"], as_dict=True, maintain_order=True).items():
                key = (str(dv), str(pt))
                more = (part["ts"].cast(pl.Float64).to_numpy(), part["value"].cast(pl.Float64).to_numpy())
                out[key] = _merge_sorted([out[key], more]) if key in out else more  # the tail came later
        return out


def _trim(ts: np.ndarray, v: np.ndarray, start: float, end: float, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """The readings with ``start <= ts <= end`` plus ``margin`` on each side (with every reading
    as old as the margin-th: ties stay together), of (ts, value) sorted by ts."""
    if ts.size:
        i0 = int(np.searchsorted(ts, start, "left"))
        i1 = int(np.searchsorted(ts, end, "right"))
        lo = int(np.searchsorted(ts, ts[i0 - margin], "left")) if i0 - margin >= 0 else 0
        hi = int(np.searchsorted(ts, ts[i1 + margin - 1], "right")) if i1 + margin - 1 < ts.size else ts.size
        ts, v = ts[lo:hi], v[lo:hi]
    return ts, v


def _merge_sorted(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], *, by_value: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate (ts, value) parts and order by ts (stable; by ts then value with ``by_value``)."""
    parts = [p for p in parts if p[0].size]
    if not parts:
        return np.zeros(0), np.zeros(0)
    if len(parts) == 1 and not by_value:
        return parts[0]
    ts = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    if not by_value and all(a[0][-1] <= b[0][0] for a, b in itertools.pairwise(parts)):
        return ts, v  # each part sorted (day files in day order): the concatenation is the stable sort
    order = np.lexsort((v, ts)) if by_value else np.argsort(ts, kind="stable")
    if not by_value and np.all(order[1:] > order[:-1]):
        return ts, v
    return ts[order], v[order]


class SqliteStore:
    """Writer side. Thread-safe (one lock); the service calls it from one worker thread.

    Raises :class:`StoreCorrupt` when the file exists but is not a readable database (see
    :func:`open_store`, which moves such a file aside), ``sqlite3.Error`` for other failures.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 10.0,
        check: bool = False,
        stage_seconds: float = 0.0,
        stage_max_rows: int = STAGE_MAX_ROWS,
    ) -> None:
        """``stage_seconds`` > 0 (the live writer, :class:`~pue_monitor.sinks.store.StoreOutput`:
        :data:`STAGE_SECONDS`): readings written wait in ``readings_staging`` (no index) up to this
        long (by the ``now`` of :meth:`write`) or up to ``stage_max_rows`` readings, then move
        into ``readings`` in one sorted insert. 0 (tools, backfills, tests): into ``readings``."""
        self.path = Path(path)
        self.stage_seconds = stage_seconds
        self.stage_max_rows = stage_max_rows
        self._staged = 0  # readings this writer staged since the last move
        self._staged_at: float | None = None  # ``now`` of the first of them
        self._move_failed = False
        self.moves: list[tuple[int, float]] = []  # (readings, seconds) of the last moves (benchmarks)
        self._lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._cache = DayCache()
        _check_path(self.path, _WRITER_HINT, write=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            # before anything writes (connect() switches the file to WAL): only our own stores
            probe = connect(self.path, readonly=True, timeout=busy_timeout)
            try:
                _check_schema(probe, self.path, _WRITER_HINT, new_ok=True)
            except sqlite3.DatabaseError:
                pass  # not a database at all: corrupt, moved aside by open_store
            finally:
                probe.close()
        self._conn = connect(self.path, timeout=busy_timeout) if not check else self._checked(busy_timeout)
        try:
            with self._lock, self._conn:
                self._conn.executescript(_DDL)
                cols = {r["name"] for r in self._conn.execute("PRAGMA table_info(readings)")}
                if "tags" not in cols:  # a version-1 store
                    self._conn.execute("ALTER TABLE readings ADD COLUMN tags TEXT NOT NULL DEFAULT ''")
                icols = {r["name"] for r in self._conn.execute("PRAGMA table_info(pue_intervals)")}
                for c, sql_type in _ADDED_COLS.items():  # an older store: add what it lacks
                    if c not in icols:
                        self._conn.execute(f"ALTER TABLE pue_intervals ADD COLUMN {c} {sql_type}")
                # stores before 2026-11 also had an index on ts alone, for pruning only: pruning
                # now goes series by series through readings_series, and the second index
                # doubled the cost of every insert (half the time of a large backfill)
                self._conn.execute("DROP INDEX IF EXISTS readings_ts")
                self._conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if _corrupt(exc):
                raise StoreCorrupt(str(exc)) from None
            raise
        st = os.stat(self.path)
        self.identity = (st.st_dev, st.st_ino)
        # what a crashed writer left staged goes into the table now (read-only or busy: later)
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._move_staged()

    def _checked(self, busy_timeout: float) -> sqlite3.Connection:
        """Open and probe the file: a corrupt or truncated file fails here, not mid-run."""
        try:
            conn = connect(self.path, timeout=busy_timeout)
        except sqlite3.DatabaseError as exc:
            if _corrupt(exc):
                raise StoreCorrupt(str(exc)) from None
            raise
        try:
            if self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                result = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
                if result != ["ok"]:
                    raise StoreCorrupt(f"integrity check failed: {'; '.join(result)}")
            else:  # touch the schema and the last page of every table
                for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid DESC LIMIT 1').fetchall()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _corrupt(exc):
                raise StoreCorrupt(str(exc)) from None
            raise
        except StoreCorrupt:
            conn.close()
            raise
        return conn

    def write(
        self,
        readings: Sequence[Reading] = (),
        intervals: Sequence[tuple[str, str, Any]] = (),
        events: Sequence[tuple[str, PipelineEvent]] = (),
        *,
        now: float,
        free_cooling: Sequence[tuple[str, str, Any]] = (),
        sensor_faults: Sequence[tuple[str, Any, str]] = (),
    ) -> None:
        """Readings, (site, resolution, interval) rollups, (site, event), (site, resolution,
        free-cooling row) and (site, sensor fault, meter role) in ONE transaction: on any error nothing is
        written, so a retry never duplicates a reading."""
        staged = readings and self.stage_seconds > 0
        with self._lock:
            with self._conn:
                if readings:
                    rows = [_reading_row(r) for r in readings]
                    self._conn.executemany(_INSERT_STAGED if staged else _INSERT_READING, rows)
                self._write_rest(intervals, events, now, free_cooling, sensor_faults)
            if staged:
                self._staged += len(readings)
                if self._staged_at is None:
                    self._staged_at = now
                if now - self._staged_at >= self.stage_seconds or self._staged >= self.stage_max_rows:
                    try:
                        self._move_staged()
                    except sqlite3.Error as exc:  # the readings are written (staged): retried next write
                        if not self._move_failed:  # once per failure streak
                            log.warning(
                                "store %s: moving staged readings into the table failed (%s); they stay staged "
                                "(read as usual) and the move is retried with the next write",
                                self.path,
                                exc,
                            )
                        self._move_failed = True

    def _write_rest(
        self,
        intervals: Sequence[tuple[str, str, Any]],
        events: Sequence[tuple[str, PipelineEvent]],
        now: float,
        free_cooling: Sequence[tuple[str, str, Any]],
        sensor_faults: Sequence[tuple[str, Any, str]],
    ) -> None:
        if intervals:
            self._conn.executemany(_INSERT_INTERVAL, [_interval_row(s, res, iv, now) for s, res, iv in intervals])
        if events:
            self._conn.executemany(_INSERT_EVENT, [_event_row(s, ev, now) for s, ev in events])
        if free_cooling:
            self._conn.executemany(
                _INSERT_FREE_COOLING, [_free_cooling_row(s, res, r, now) for s, res, r in free_cooling]
            )
        if sensor_faults:
            self._conn.executemany(
                _INSERT_SENSOR_FAULT,
                [
                    (s, f.device, f.point, str(f.kind), f.start, f.end, f.detail, f.value, role, now)
                    for s, f, role in sensor_faults
                ],
            )

    def _move_staged(self, *, own: bool = False) -> int:
        """Move every staged reading into ``readings`` in ONE transaction: one insert sorted by
        the index key (each series' index page is touched once per move, not once per write),
        and the same rows deleted from the staging table. Caller holds ``self._lock``. Any
        process may move (a compaction, a backfill beside ``pue run``): the transaction makes
        each reading be in exactly one of the two tables for every reader. ``own``: only what
        this writer staged (no look at the table when it staged nothing)."""
        if own and not self._staged:
            return 0
        t0 = time.perf_counter()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            top = conn.execute("SELECT max(rowid) FROM readings_staging").fetchone()[0]
            n = 0
            if top is not None:
                n = conn.execute(
                    f"INSERT INTO readings ({_READING_COLS}) SELECT {_READING_COLS} FROM readings_staging "
                    "WHERE rowid <= ? ORDER BY device, point, ts, rowid",
                    (top,),
                ).rowcount
                conn.execute("DELETE FROM readings_staging WHERE rowid <= ?", (top,))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        self._staged = 0
        self._staged_at = None
        self._move_failed = False
        if n:
            self.moves = [*self.moves[-99:], (n, time.perf_counter() - t0)]
        return n

    def move_staged(self) -> int:
        """Move the staged readings into ``readings`` now (see :meth:`_move_staged`)."""
        with self._lock:
            return self._move_staged()

    def write_readings(self, readings: Sequence[Reading]) -> None:
        if readings:
            self.write(readings, now=time.time())

    def upsert_intervals(self, site: str, resolution: str, intervals: Iterable[Any], *, now: float) -> int:
        """Insert or replace rollups (objects shaped like ``pipeline.pue.PueInterval``)."""
        rows = [(site, resolution, iv) for iv in intervals]
        if rows:
            self.write(intervals=rows, now=now)
        return len(rows)

    def last_readings(self, keys: Iterable[tuple[str, str]]) -> list[Reading]:
        """The newest good reading of each (device, point), to resume counters after a restart
        (from the day files when the table holds none of the series: a long stop)."""
        out = []
        with self._lock:
            self._move_staged()
            arch = self._archive()
            for device, point in keys:
                row = self._conn.execute(
                    "SELECT * FROM readings WHERE device = ? AND point = ? AND quality = 0 ORDER BY ts DESC LIMIT 1",
                    (device, point),
                ).fetchone()
                sp = arch.span(device, point)
                if sp is not None and (row is None or row["ts"] < sp[1]):  # a newer one may be archived
                    found = _archived_readings(arch, device, point, None, last=True)
                    if found and (row is None or found[0].ts > row["ts"]):
                        out.append(found[0])
                        continue
                if row is not None:
                    out.append(_reading(row))
        return out

    def readings_since(self, keys: Iterable[tuple[str, str]], since: float) -> list[Reading]:
        """Per (device, point): the last good reading at/before ``since`` and every good one after
        (table and day files)."""
        out: list[Reading] = []
        with self._lock:
            self._move_staged()
            arch = self._archive()
            for device, point in keys:
                first = self._conn.execute(
                    "SELECT ts FROM readings WHERE device = ? AND point = ? AND quality = 0 AND ts <= ? "
                    "ORDER BY ts DESC LIMIT 1",
                    (device, point, since),
                ).fetchone()
                lo = first[0] if first is not None else None
                old_t, _ = arch.good_edge(device, point, float(np.nextafter(since, np.inf)), 1, before=True)
                if old_t.size and (lo is None or old_t[-1] > lo):
                    lo = float(old_t[-1])
                lo = since if lo is None else lo
                rows = self._conn.execute(
                    "SELECT * FROM readings WHERE device = ? AND point = ? AND quality = 0 AND ts >= ? ORDER BY ts",
                    (device, point, lo),
                ).fetchall()
                got = _archived_readings(arch, device, point, lo) + [_reading(r) for r in rows]
                got.sort(key=lambda r: r.ts)
                out.extend(got)
        return out

    def interval_rows(self, site: str, resolution: str, since: float) -> list[dict[str, Any]]:
        """Stored rollups of ``site`` at ``resolution`` starting at/after ``since``, by start."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM pue_intervals WHERE site = ? AND resolution = ? AND start >= ? ORDER BY start",
                (site, resolution, since),
            ).fetchall()
        return [dict(r) for r in rows]

    def free_cooling_rows(self, site: str, resolution: str, since: float) -> list[dict[str, Any]]:
        """Stored free-cooling rows of ``site`` at ``resolution`` starting at/after ``since``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM free_cooling WHERE site = ? AND resolution = ? AND start >= ? "
                "ORDER BY start, economiser",
                (site, resolution, since),
            ).fetchall()
        return [dict(r) for r in rows]

    def prune_readings(self, before: float) -> int:
        """Delete every reading with ``ts < before``; returns how many.

        Series by series through the ``(device, point, ts)`` index (there is no index on ``ts``
        alone): each next series is found by one index seek, then its old rows are one range.
        """
        deleted = 0
        with self._lock:  # the live writer's staged readings first (another process stages none)
            self._move_staged(own=True)
        with self._lock, self._conn:
            conn = self._conn
            row = conn.execute("SELECT device, point FROM readings ORDER BY device, point LIMIT 1").fetchone()
            while row is not None:
                device, point = row[0], row[1]
                deleted += conn.execute(
                    "DELETE FROM readings WHERE device = ? AND point = ? AND ts < ?", (device, point, before)
                ).rowcount
                row = conn.execute(
                    "SELECT device, point FROM readings WHERE (device, point) > (?, ?) ORDER BY device, point LIMIT 1",
                    (device, point),
                ).fetchone()
        return deleted

    # ------------------------------------------------------------- day files (schema 7)

    def _archive(self) -> _Archive:
        return _Archive(self.path, self._conn, self._cache)

    def compact_readings(self, before: float, *, progress: Any = None) -> CompactResult:
        """Move the readings of every UTC day that ended at or before ``before`` out of the
        ``readings`` table into its day file (merged with the day's file when one exists: late
        readings, a backfill). Day by day: read the day's rows (one statement: a snapshot),
        write the new file (temporary name, fsync, rename), then in ONE transaction delete exactly
        the rows read (by rowid bound and series ranges) and point ``reading_files`` at the new
        file; only then is the day's previous file deleted. A crash at any point leaves every
        reading in exactly one place that readers read (an unreferenced file is ignored).
        Safe beside a writer (rows written meanwhile stay in the table for the next run) and
        beside a second compaction (it finds the day's file changed and leaves the day for later).
        ``progress(day, done, total)`` after each day."""
        import polars as pl

        clock = time.perf_counter()
        res = CompactResult()
        cutoff = day_bounds(day_of(before))[0]
        with self._compact_lock:
            with self._lock:
                self._move_staged()  # closed days' readings still staged go into the table first
                top = self._conn.execute("SELECT max(rowid) FROM readings").fetchone()[0]
                first = self._conn.execute("SELECT min(ts) FROM readings WHERE ts < ?", (cutoff,)).fetchone()[0]
            if top is None or first is None:
                res.seconds = time.perf_counter() - clock
                return res
            d0 = day_bounds(day_of(first))[0]
            total = max(1, round((cutoff - d0) / DAY))
            with self._lock:
                rows_now = int(self._conn.execute("SELECT count(*) FROM readings").fetchone()[0])
            # as many days per pass (one scan of the table: it has no index on ts) as keep a pass
            # under COMPACT_PASS_ROWS readings, judged from the table's mean per day
            per_pass = max(1, int(COMPACT_PASS_ROWS / max(1.0, rows_now / total)))
            schema = {
                "site": pl.String, "device": pl.String, "point": pl.String, "ts": pl.Float64,
                "value": pl.Float64, "unit": pl.String, "quality": pl.Int64, "tags": pl.String,
            }  # fmt: skip
            src = _read_only(self.path)
            try:
                k = 0
                while d0 < cutoff:
                    d1 = min(d0 + per_pass * DAY, cutoff)
                    df = _sql_frame(
                        src,
                        "SELECT site, device, point, ts, value, unit, quality, tags FROM readings "
                        "WHERE ts >= ? AND ts < ? AND rowid <= ?",
                        (d0, d1, int(top)),
                        schema,
                    )
                    if df.height:
                        df = df.with_columns((pl.col("ts") // DAY).cast(pl.Int64).alias("_day"))
                        parts = df.partition_by(["_day", "site"], as_dict=True, maintain_order=True)
                        for (day_no, site), part in sorted(parts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
                            self._compact_day(str(site), day_of(float(day_no) * DAY), part, int(top), res)
                    k += round((d1 - d0) / DAY)
                    if progress is not None:
                        progress(day_of(d1 - 1.0).isoformat(), k, total)
                    d0 = d1
            finally:
                src.close()
        res.seconds = time.perf_counter() - clock
        return res

    def _compact_day(self, site: str, day: date, rows: Any, top: int, res: CompactResult) -> None:
        import polars as pl

        d0, d1 = day_bounds(day)
        key = day.isoformat()
        with self._lock:
            old = self._conn.execute(
                "SELECT file FROM reading_files WHERE site = ? AND day = ?", (site, key)
            ).fetchone()
        old_file = None if old is None else str(old[0])
        cols: dict[str, Any] = {
            "device": rows["device"].cast(pl.String).to_numpy(),
            "point": rows["point"].cast(pl.String).to_numpy(),
            "ts": rows["ts"].cast(pl.Float64).to_numpy(),
            "value": rows["value"].cast(pl.Float64).fill_null(float("nan")).to_numpy(),
            "quality": rows["quality"].cast(pl.Int8).to_numpy(),
            "unit": rows["unit"].cast(pl.String).to_numpy(),
            "tags": rows["tags"].cast(pl.String).fill_null("").to_numpy(),
        }
        generation = 0
        if old_file is not None:  # late readings of an archived day: one file with both, old rows first
            prev = self._cache.get(self._archive().folder / old_file, full=True)
            generation = int(Path(old_file).name.split(".")[1]) + 1
            devs = np.empty(prev.rows, object)
            pnts = np.empty(prev.rows, object)
            for (dv, pt), (a, b) in prev.index.items():
                devs[a:b] = dv
                pnts[a:b] = pt
            cols = {
                "device": np.concatenate([devs, cols["device"]]),
                "point": np.concatenate([pnts, cols["point"]]),
                "ts": np.concatenate([prev.ts, cols["ts"]]),
                "value": np.concatenate([prev.value, cols["value"]]),
                "quality": np.concatenate([prev.quality, cols["quality"]]),
                "unit": np.concatenate([prev.unit.array() if prev.unit is not None else [], cols["unit"]]),
                "tags": np.concatenate([prev.tags.array() if prev.tags is not None else [], cols["tags"]]),
            }
        frame = encode_day(**cols)
        folder = self._archive().folder / quote(site, safe="")
        path, size = write_day(folder, day, generation, frame)
        rel = str(path.relative_to(self._archive().folder))
        series = rows.select("device", "point").unique(maintain_order=True).rows()
        try:
            with self._lock, self._conn:
                now = self._conn.execute(
                    "SELECT file FROM reading_files WHERE site = ? AND day = ?", (site, key)
                ).fetchone()
                if (None if now is None else str(now[0])) != old_file:
                    raise _Conflict(f"{key}: archived by another process meanwhile")
                moved = 0
                for dv, pt in series:
                    moved += self._conn.execute(
                        "DELETE FROM readings WHERE device = ? AND point = ? AND ts >= ? AND ts < ? "
                        "AND rowid <= ? AND site = ?",
                        (dv, pt, d0, d1, top, site),
                    ).rowcount
                if moved != rows.height:  # another process deleted some (retention): keep the table's truth
                    raise _Conflict(f"{key}: {rows.height} readings read but {moved} found to delete")
                self._conn.execute(
                    "INSERT OR REPLACE INTO reading_files (site, day, file, start, end, rows, bytes, written) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (site, key, rel, d0, d1, frame.height, size, time.time()),
                )
                self._conn.executemany(
                    "INSERT INTO reading_series (site, device, point, first_day, last_day) VALUES (?,?,?,?,?) "
                    "ON CONFLICT (device, point, site) DO UPDATE SET first_day = min(first_day, excluded.first_day), "
                    "last_day = max(last_day, excluded.last_day)",
                    [(site, dv, pt, key, key) for dv, pt in series],
                )
        except _Conflict as exc:
            path.unlink(missing_ok=True)
            log.warning(
                "store %s: day %s of %s left in the table for the next compaction (%s)", self.path, key, site, exc
            )
            return
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if old_file is not None:
            (self._archive().folder / old_file).unlink(missing_ok=True)
        self._cache.clear()
        res.days.append(key)
        res.readings += rows.height
        res.bytes += size

    def add_day(self, site: str, day: date, frame: Any) -> ArchivedDay:
        """Write a day file straight from ``frame`` (:func:`~pue_monitor.sinks.readings_archive.encode_day`
        of readings of ``day``, UTC) and record it: a bulk import's path around the table. Refuses a
        day that already has a file (``ValueError``): compaction merges, this does not."""
        import polars as pl

        d0, d1 = day_bounds(day)
        key = day.isoformat()
        with self._lock:
            if self._conn.execute("SELECT 1 FROM reading_files WHERE site = ? AND day = ?", (site, key)).fetchone():
                raise ValueError(f"{key} of {site} is archived already")
        folder = self._archive().folder / quote(site, safe="")
        path, size = write_day(folder, day, 0, frame)
        series = frame.select(pl.col("device").cast(pl.String), pl.col("point").cast(pl.String)).unique().rows()
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO reading_files (site, day, file, start, end, rows, bytes, written) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (site, key, str(path.relative_to(self._archive().folder)), d0, d1, frame.height, size, time.time()),
            )
            self._conn.executemany(
                "INSERT INTO reading_series (site, device, point, first_day, last_day) VALUES (?,?,?,?,?) "
                "ON CONFLICT (device, point, site) DO UPDATE SET first_day = min(first_day, excluded.first_day), "
                "last_day = max(last_day, excluded.last_day)",
                [(site, dv, pt, key, key) for dv, pt in series],
            )
        return ArchivedDay(site, key, path, d0, d1, frame.height, size)

    def prune_reading_files(self, before: float) -> int:
        """Retention of the day files: delete every archived day that ENDED at or before
        ``before`` (a day partly inside the kept period stays whole). Returns readings deleted."""
        with self._lock, self._conn:
            days = [d for d in self._archive().days() if d.end <= before]
            for d in days:
                self._conn.execute("DELETE FROM reading_files WHERE site = ? AND day = ?", (d.site, d.day))
        for d in days:
            d.path.unlink(missing_ok=True)
        if days:
            self._cache.clear()
        return sum(d.rows for d in days)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def still_there(self) -> bool:
        """False when the file was deleted or replaced since it was opened."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def close(self) -> None:
        """Move the staged readings into the table (a store closed cleanly has none staged) and
        close; a failed move leaves them staged, where readers and the next writer find them."""
        with self._lock:
            try:
                self._move_staged()
            except sqlite3.Error as exc:
                log.warning("store %s: staged readings left staged at close (%s)", self.path, exc)
            self._conn.close()

    # ------------------------------------------------------------- bulk backfill (pue ingest-csv)

    def good_readings(self, device: str, point: str, *, start: float, end: float) -> list[tuple[float, float]]:
        """(ts, value) of the GOOD readings of one series with ``start <= ts <= end``, by ts
        (then value), from the table and the day files."""
        with self._lock:
            self._move_staged()
            cur = self._conn.cursor()
            cur.row_factory = None  # plain tuples: a backfill reads millions back (3x faster)
            rows: list[tuple[float, float]] = cur.execute(
                "SELECT ts, value FROM readings WHERE device = ? AND point = ? AND quality = 0 "
                "AND ts >= ? AND ts <= ? AND value IS NOT NULL ORDER BY ts, value",
                (device, point, start, end),
            ).fetchall()
            cur.close()
            a_ts, a_v = self._archive().good(device, point, start, end)
        if not a_ts.size:
            return rows
        t_ts = np.fromiter((r[0] for r in rows), np.float64, len(rows))
        t_v = np.fromiter((r[1] for r in rows), np.float64, len(rows))
        ts, v = _merge_sorted([(a_ts, a_v), (t_ts, t_v)], by_value=True)
        return list(zip(ts.tolist(), v.tolist(), strict=True))

    def edge_readings(
        self, device: str, point: str, *, before: float, after: float, n: int
    ) -> list[tuple[float, float]]:
        """The last ``n`` GOOD readings with ts < ``before`` and the first ``n`` with ts > ``after``
        (table and day files)."""
        q = (
            "SELECT ts, value FROM readings WHERE device = ? AND point = ? AND quality = 0 "
            "AND value IS NOT NULL AND ts {op} ? ORDER BY ts {order} LIMIT ?"
        )
        with self._lock:
            self._move_staged()
            lo = self._conn.execute(q.format(op="<", order="DESC"), (device, point, before, n)).fetchall()
            hi = self._conn.execute(q.format(op=">", order="ASC"), (device, point, after, n)).fetchall()
            arch = self._archive()
            a_lo = arch.good_edge(device, point, before, n, before=True)
            a_hi = arch.good_edge(device, point, after, n, before=False)
        lo_t = np.asarray([r[0] for r in reversed(lo)], np.float64)
        lo_v = np.asarray([r[1] for r in reversed(lo)], np.float64)
        hi_t = np.asarray([r[0] for r in hi], np.float64)
        hi_v = np.asarray([r[1] for r in hi], np.float64)
        if a_lo[0].size:
            lo_t, lo_v = _merge_sorted([a_lo, (lo_t, lo_v)])
            lo_t, lo_v = lo_t[-n:], lo_v[-n:]
        if a_hi[0].size:
            hi_t, hi_v = _merge_sorted([a_hi, (hi_t, hi_v)])
            hi_t, hi_v = hi_t[:n], hi_v[:n]
        return list(zip(lo_t.tolist(), lo_v.tolist(), strict=True)) + list(
            zip(hi_t.tolist(), hi_v.tolist(), strict=True)
        )

    def bulk_insert_readings(
        self,
        site: str,
        series: Iterable[tuple[str, str, str, Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
        *,
        expected_rows: int,
        progress: Any = None,
        timings: dict[str, float] | None = None,
        on_stage: Any = None,
    ) -> int:
        """Insert GOOD readings ``(device, point, unit, ts, values)`` per series in ONE transaction.

        All or nothing: a crash or error leaves the store as it was. The ``readings`` index stays
        in place: give the series in ``(device, point)`` order, each by time, and its B-tree grows
        at its end (an empty store) or in one place per series, the cheapest way to keep it
        (measured: dropping and rebuilding it costs a third more). ``progress(n)`` is called with
        the number of rows written so far; ``timings`` receives the seconds spent inserting rows
        and committing; ``on_stage(name)`` is told when a stage without row progress starts
        ("committing"). Returns the number of rows inserted.
        """
        import time

        clock = time.perf_counter
        spent = timings if timings is not None else {}
        written = 0
        with self._lock:
            conn = self._conn
            # a 1 GiB page cache for the bulk load
            conn.execute("PRAGMA cache_size = -1048576")
            conn.execute("PRAGMA temp_store = MEMORY")
            # a rollback journal writes a bulk load once (WAL writes it twice: log, then checkpoint)
            # and is as atomic and durable; it needs the file to ourselves: with another
            # connection open (a running `pue run`, a reader) we stay in WAL
            conn.execute("PRAGMA busy_timeout = 200")
            try:
                journal = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
            except sqlite3.OperationalError:
                journal = "wal"
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("BEGIN IMMEDIATE")
            t0 = clock()
            try:
                head = "INSERT INTO readings (ts, site, device, point, value, unit, quality, tags) VALUES "
                for device, point, unit, ts, values in series:
                    # constant columns as SQL literals, two bound parameters per row, _BULK rows per
                    # statement: a third of the time of one row per statement
                    row = f"(?, {_literal(site)}, {_literal(device)}, {_literal(point)}, ?, {_literal(unit)}, 0, '')"
                    t_a = np.asarray(ts, np.float64)
                    v_a = np.asarray(values, np.float64)
                    if t_a.shape != v_a.shape:
                        raise ValueError(f"{device}/{point}: {t_a.size} timestamps but {v_a.size} values")
                    m = t_a.size - t_a.size % _BULK
                    if m:
                        flat = np.empty((m // _BULK, 2 * _BULK), np.float64)
                        flat[:, 0::2] = t_a[:m].reshape(-1, _BULK)
                        flat[:, 1::2] = v_a[:m].reshape(-1, _BULK)
                        conn.executemany(head + ",".join([row] * _BULK), flat.tolist())
                    if m < t_a.size:
                        conn.executemany(head + row, zip(t_a[m:].tolist(), v_a[m:].tolist(), strict=True))
                    written += int(t_a.size)
                    if progress is not None:
                        progress(written)
                t1 = clock()
                spent["insert rows"] = t1 - t0
                if on_stage is not None:
                    on_stage("committing")
                conn.commit()
                spent["commit"] = clock() - t1
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.execute("PRAGMA cache_size = -2000")
                conn.execute("PRAGMA temp_store = DEFAULT")
                if journal != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
        return written


def _archived_readings(
    arch: _Archive, device: str, point: str, since: float | None, *, last: bool = False
) -> list[Reading]:
    """GOOD readings of a series from the day files as :class:`Reading` objects: those with
    ts >= ``since``, or with ``last`` only the newest one."""
    parts = arch.series(device, point, since, None, full=True)
    out: list[Reading] = []
    for d, data, i, j in reversed(parts) if last else parts:
        assert data.unit is not None
        for k in range(j - 1, i - 1, -1) if last else range(i, j):
            v = float(data.value[k])
            if data.quality[k] == 0 and not math.isnan(v):
                out.append(Reading(float(data.ts[k]), d.site, device, point, v, data.unit[k]))
                if last:
                    return out
    return out


def _reading(row: sqlite3.Row) -> Reading:
    return Reading(row["ts"], row["site"], row["device"], row["point"], row["value"], row["unit"])


def _corrupt(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def open_store(path: str | Path, *, busy_timeout: float = 10.0, stage_seconds: float = 0.0) -> SqliteStore:
    """Open the store; a corrupt or truncated file is moved aside (``<name>.corrupt-<UTC time>``,
    with its -wal/-shm), named in the log, and a fresh store is started."""
    path = Path(path)
    try:
        return SqliteStore(path, busy_timeout=busy_timeout, check=path.exists(), stage_seconds=stage_seconds)
    except StoreCorrupt as exc:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{path}{suffix}")
            if src.exists():
                os.replace(src, f"{aside}{suffix}")
        log.error("store %s is corrupt (%s); moved it aside to %s and started a fresh store", path, exc, aside)
        return SqliteStore(path, busy_timeout=busy_timeout, stage_seconds=stage_seconds)


class StoreReader:
    """Read side; safe to use from another process while the writer runs."""

    def __init__(self, path: str | Path, *, cache_bytes: int = 3 << 29) -> None:
        """``cache_bytes``: decoded day files kept in memory (a month of 1,000 meters at 1 min
        is 0.8 GB). Raises :class:`FileNotFoundError` for a missing file, :class:`StoreUnusable` for a
        file that is not a store this version reads (named, with what to do)."""
        path = Path(path)
        self.path = path
        self._cache = DayCache(cache_bytes)
        self._staging = False
        #: staged GOOD readings read by :meth:`_staged_good`: (first id, last id, rows by id)
        self._stage_cache: _StagedRows | None = None
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such store (has `pue run` or `pue demo` written it?)")
        hint = "give --db the file `pue run` writes (store.path in the site file)"
        _check_path(path, hint, write=False)
        self._conn = connect(path, readonly=True)
        try:
            _check_schema(self._conn, path, hint, new_ok=False)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if _corrupt(exc):
                raise StoreUnusable(f"{path} is not a pue-monitor store ({exc})", hint) from None
            raise StoreUnusable(f"store {path} cannot be read: {exc}", hint) from None
        except StoreUnusable:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._conn.execute("SELECT key, value FROM meta")}

    def intervals(
        self, resolution: str = "1m", *, start: float | None = None, end: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        q = "SELECT * FROM pue_intervals WHERE resolution = ?"
        args: list[Any] = [resolution]
        if start is not None:
            q += " AND start >= ?"
            args.append(start)
        if end is not None:
            q += " AND end <= ?"
            args.append(end)
        q += " ORDER BY start DESC" + (f" LIMIT {int(limit)}" if limit else "")
        rows = [dict(r) for r in self._conn.execute(q, args)]
        rows.reverse()
        return rows

    def free_cooling(
        self, resolution: str = "1m", *, start: float | None = None, end: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Free-cooling rows of the last ``limit`` intervals (all economisers of each), oldest
        first, economisers by id. A store older than schema version 4 has none."""
        if not self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'free_cooling'").fetchone():
            return []
        where = "resolution = ?"
        args: list[Any] = [resolution]
        if start is not None:
            where += " AND start >= ?"
            args.append(start)
        if end is not None:
            where += " AND end <= ?"
            args.append(end)
        if limit:
            where += (
                f" AND start IN (SELECT DISTINCT start FROM free_cooling WHERE {where} "
                f"ORDER BY start DESC LIMIT {int(limit)})"
            )
            args += args
        q = f"SELECT * FROM free_cooling WHERE {where} ORDER BY start, economiser"
        return [dict(r) for r in self._conn.execute(q, args)]

    def sensor_faults(self, *, start: float | None = None, end: float | None = None) -> list[dict[str, Any]]:
        """Sensor faults overlapping ``[start, end)`` (open ones run to now), oldest first. A
        store older than schema version 6 has none."""
        if not self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sensor_faults'").fetchone():
            return []
        q = "SELECT * FROM sensor_faults WHERE 1 = 1"
        args: list[Any] = []
        if start is not None:
            q += " AND (end IS NULL OR end > ?)"
            args.append(start)
        if end is not None:
            q += " AND start < ?"
            args.append(end)
        q += " ORDER BY start, device, point, kind"
        return [dict(r) for r in self._conn.execute(q, args)]

    def _archive(self) -> _Archive:
        return _Archive(self.path, self._conn, self._cache)

    def archived_days(self) -> list[ArchivedDay]:
        """The day files of the store (empty for a store older than schema version 7)."""
        return self._archive().days()

    def _has_staging(self) -> bool:
        """The store has ``readings_staging`` (schema 8; an older store gains it when a writer opens it)."""
        if not self._staging:
            q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings_staging'"
            self._staging = self._conn.execute(q).fetchone() is not None
        return self._staging

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: the queries inside see one state of the file (a move of the
        staged readings into the table is either wholly before or wholly after them)."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def reading_count(self) -> int:
        """Readings in the table (staged ones included) and in the day files."""
        with self._snapshot():
            return self.table_reading_count() + self._archive().count()

    def table_reading_count(self) -> int:
        """Readings in SQLite: the table and the staged ones."""
        with self._snapshot():
            n = int(self._conn.execute("SELECT count(*) FROM readings").fetchone()[0])
            if self._has_staging():
                n += int(self._conn.execute("SELECT count(*) FROM readings_staging").fetchone()[0])
            return n

    def last_per_series(self) -> list[dict[str, Any]]:
        """The newest reading of every (device, point) series: ``device``, ``point``, ``ts``,
        ``value``, ``unit``, ``quality``. Index seeks only (a skip scan of ``readings_series``):
        as fast on a 90-day store as on an empty one."""
        with self._snapshot():
            return self._last_per_series()

    def _last_per_series(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        # two seeks, not one row-value range ``(device, point) > (?, ?)``: SQLite would seek on
        # the device alone and walk every reading of the device's earlier points
        next_point = "SELECT point FROM readings WHERE device = ? AND point > ? ORDER BY point LIMIT 1"
        next_device = "SELECT device, point FROM readings WHERE device > ? ORDER BY device, point LIMIT 1"
        newest = "SELECT ts, value, unit, quality FROM readings WHERE device = ? AND point = ? ORDER BY ts DESC LIMIT 1"
        key = self._conn.execute("SELECT device, point FROM readings ORDER BY device, point LIMIT 1").fetchone()
        while key is not None:
            dev, point = key[0], key[1]
            row = self._conn.execute(newest, (dev, point)).fetchone()
            out.append({"device": dev, "point": point, **dict(row)})
            nxt = self._conn.execute(next_point, (dev, point)).fetchone()
            key = (dev, nxt[0]) if nxt is not None else self._conn.execute(next_device, (dev,)).fetchone()
        if self._has_staging():  # a staged reading is newer than the table's (or as new: it came later)
            staged = self._conn.execute(
                "SELECT device, point, ts, value, unit, quality FROM (SELECT *, row_number() OVER "
                "(PARTITION BY device, point ORDER BY ts DESC, rowid DESC) AS k FROM readings_staging) WHERE k = 1"
            ).fetchall()
            if staged:
                by_key = {(r["device"], r["point"]): r for r in out}
                for r in staged:
                    t_row = by_key.get((r["device"], r["point"]))
                    if t_row is None or r["ts"] >= t_row["ts"]:
                        by_key[(r["device"], r["point"])] = dict(r)
                out = sorted(by_key.values(), key=lambda r: (r["device"], r["point"]))
        arch = self._archive()
        if arch.has_table():  # the newest reading may be in the series' last day file
            have = {(r["device"], r["point"]): r for r in out}
            days = {d.day: d for d in arch.days()}
            rows = self._conn.execute(
                "SELECT device, point, max(last_day) FROM reading_series GROUP BY device, point ORDER BY device, point"
            ).fetchall()
            for dev, point, last_day in rows:
                t_row = have.get((dev, point))
                d = days.get(last_day)
                if d is None or (t_row is not None and t_row["ts"] >= d.end):
                    continue
                data = arch.cache.get(d.path, full=True)
                a, b = data.index.get((dev, point), (0, 0))
                if b > a and data.unit is not None and (t_row is None or float(data.ts[b - 1]) > t_row["ts"]):
                    v = float(data.value[b - 1])
                    have[(dev, point)] = {"device": dev, "point": point, "ts": float(data.ts[b - 1]),
                                          "value": None if math.isnan(v) else v, "unit": data.unit[b - 1],
                                          "quality": int(data.quality[b - 1])}  # fmt: skip
            out = list(have.values())
            out.sort(key=lambda r: (r["device"], r["point"]))
        return out

    def readings(
        self, device: str, point: str, *, start: float | None = None, end: float | None = None
    ) -> list[tuple[float, float, int]]:
        """Every reading of one series (table and day files) with ``start <= ts <= end``: (ts,
        value, quality), by ts."""
        q = "SELECT ts, value, quality FROM readings WHERE device = ? AND point = ?"
        args: list[Any] = [device, point]
        if start is not None:
            q += " AND ts >= ?"
            args.append(start)
        if end is not None:
            q += " AND ts <= ?"
            args.append(end)
        with self._snapshot():
            table = [(r[0], r[1], r[2]) for r in self._conn.execute(q + " ORDER BY ts", args)]
            if self._has_staging():  # staged readings came after the table's: a stable sort by ts
                q_staged = q.replace("FROM readings", "FROM readings_staging", 1)
                staged = [(r[0], r[1], r[2]) for r in self._conn.execute(q_staged, args)]
                if staged:
                    table += staged
                    table.sort(key=lambda r: r[0])
        archived: list[tuple[float, float, int]] = []  # a value SQL NULL / archived NaN: None, as SQLite gives
        for _, data, i, j in self._archive().series(device, point, start, end):
            archived.extend(
                (t, None if math.isnan(v) else v, q_)  # type: ignore[misc]
                for t, v, q_ in zip(
                    data.ts[i:j].tolist(), data.value[i:j].tolist(), data.quality[i:j].tolist(), strict=True
                )
            )
        if not archived:
            return table
        out = archived + table
        out.sort(key=lambda r: r[0])
        return out

    def good_windows(
        self, keys: Sequence[tuple[str, str]], *, start: float, end: float, margin: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per (device, point) of ``keys``, in order: (ts, value) float64 arrays of its GOOD readings
        with ``start <= ts <= end``, plus up to ``margin`` readings on each side (the energy
        engine's context at the edges), by ts (readings with equal ts in any order), from the day
        files and the table together.

        The day files of ``[start - 1 day, end + 1 day]`` are decoded once (in parallel, kept in
        this reader's cache for the next call); a series with fewer than ``margin`` readings in
        them on a side is looked up further in its archived days (``reading_series`` bounds the
        search). The table part: :meth:`_table_windows`.
        """
        arch = self._archive()
        all_days = arch.days()
        spans = arch.spans()
        days = [d for d in all_days if d.end > start - DAY and d.start <= end + DAY]
        loaded = arch.load(days)
        lo_t = days[0].start if days else start
        hi_t = float(np.nextafter(days[-1].end, -np.inf)) if days else end
        empty = self._conn.execute("SELECT 1 FROM readings LIMIT 1").fetchone() is None and (
            not self._has_staging() or self._conn.execute("SELECT 1 FROM readings_staging LIMIT 1").fetchone() is None
        )
        tables = (
            iter([(np.zeros(0), np.zeros(0))] * len(keys))
            if empty
            else self._table_windows(keys, start=start, end=end, margin=margin)
        )
        for (device, point), table in zip(keys, tables, strict=True):
            parts = [data.good(device, point) for data in loaded]
            a_ts, a_v = _merge_sorted(parts) if len(parts) != 1 else parts[0]
            need_lo = margin - int(np.searchsorted(a_ts, start, "left"))
            need_hi = margin - (a_ts.size - int(np.searchsorted(a_ts, end, "right")))
            if need_lo > 0 or need_hi > 0:
                more = [(a_ts, a_v)]
                sp = spans.get((device, point))
                if need_lo > 0:
                    more.insert(
                        0, arch.good_edge(device, point, lo_t, need_lo, before=True, span=sp, all_days=all_days)
                    )
                if need_hi > 0:
                    more.append(arch.good_edge(device, point, hi_t, need_hi, before=False, span=sp, all_days=all_days))
                a_ts, a_v = _merge_sorted(more)
            if not table[0].size:
                ts, v = a_ts, a_v
            elif not a_ts.size:
                yield table
                continue
            else:
                ts, v = _merge_sorted([(a_ts, a_v), table])
            yield _trim(ts, v, start, end, margin)

    def _table_windows(
        self, keys: Sequence[tuple[str, str]], *, start: float, end: float, margin: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """:meth:`good_windows` of the ``readings`` table alone (which holds the days not yet
        archived into day files: the open day, late readings). One index range of
        ``readings_series`` per series; ``ORDER BY ts`` is the index's own order (ordering ties by
        value too made SQLite sort every series: 2.5x slower).

        Read through this process's own SQLite (the ``sqlite3`` module), on a connection of its
        own: a second copy of SQLite in one process (the ADBC driver's, used here before) does not
        see the first's POSIX locks, so closing one copy's connection could checkpoint and remove
        the WAL and its shared-memory file under the other's map: a SIGBUS, seen once in the tests.
        """
        good = "FROM readings WHERE device = ? AND point = ? AND quality = 0 AND value IS NOT NULL"
        # one index range per series: from the margin-th reading before ``start`` (all of them
        # when there are fewer) to the margin-th after ``end``
        sql = (
            f"SELECT ts, value {good} AND ts >= coalesce((SELECT ts {good} AND ts < ? ORDER BY ts DESC LIMIT 1 "
            f"OFFSET ?), -1e308) AND ts <= coalesce((SELECT ts {good} AND ts > ? ORDER BY ts LIMIT 1 OFFSET ?), "
            "1e308) ORDER BY ts"
        )
        lo, hi, m = float(start), float(end), int(margin) - 1
        src = _read_only(self.path)
        src.isolation_level = None
        src.execute("BEGIN")  # one read transaction: staging and table read from one state of the file
        try:
            staged = self._staged_good(src, keys) if keys and self._has_staging() else {}
            for device, point in keys:
                rows = src.execute(sql, (device, point, device, point, lo, m, device, point, hi, m)).fetchall()
                if rows:
                    arr = np.array(rows, dtype=np.float64)
                    table = (np.ascontiguousarray(arr[:, 0]), np.ascontiguousarray(arr[:, 1]))
                else:
                    table = (np.zeros(0), np.zeros(0))
                more = staged.get((device, point))
                if more is not None:  # came after the table's readings: after them among equal stamps
                    ts, v = _merge_sorted([table, more])
                    table = _trim(ts, v, start, end, margin)
                yield table
        finally:
            src.execute("ROLLBACK")
            src.close()

    def _staged_good(
        self, con: sqlite3.Connection, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        """The staged GOOD readings of ``keys`` (ts, value by ts; equal stamps in arrival order),
        in the caller's read transaction on ``con``. The staged rows are kept between calls (a
        report asks for its series in groups): while the first staged id is the same no move took
        place (ids are never reused), so only the rows staged since are read, by id range;
        after a move the staging table is read again."""
        import polars as pl

        # two subqueries: one min() and one max() each are a seek (both in one query: a scan)
        lo, hi = con.execute(
            "SELECT (SELECT min(id) FROM readings_staging) AS lo, (SELECT max(id) FROM readings_staging) AS hi"
        ).fetchone()
        if lo is None:
            self._stage_cache = None
            return {}
        q = "SELECT device, point, ts, value FROM readings_staging WHERE quality = 0 AND value IS NOT NULL AND id <= ?"
        schema = {"device": pl.String, "point": pl.String, "ts": pl.Float64, "value": pl.Float64}

        cache = self._stage_cache
        if cache is not None and cache.lo == lo and cache.hi <= hi:
            if hi > cache.hi:  # no move since: only the rows staged since
                cache.append(_sql_frame(con, f"{q} AND id > ?", (int(hi), int(cache.hi)), schema), int(hi))
        else:
            cache = _StagedRows(int(lo), int(hi), _sql_frame(con, q, (int(hi),), schema))
            self._stage_cache = cache
        return cache.get(keys)

    def period_pue(self, *, start: float | None = None, end: float | None = None) -> PeriodPue | None:
        """PUE over [start, end] from 1-minute rows whose PUE is defined: Σ E_DC / Σ E_IT."""
        rows = [r for r in self.intervals("1m", start=start, end=end) if r["pue"] is not None]
        if not rows:
            return None
        fac = sum(r["e_facility_kwh"] for r in rows)
        it = sum(r["e_it_kwh"] for r in rows)
        return PeriodPue(
            start=rows[0]["start"],
            end=rows[-1]["end"],
            e_facility_kwh=fac,
            e_it_kwh=it,
            pue=fac / it if it > 0 else None,
            intervals=len(rows),
            category=min(r["category"] for r in rows),
            estimated_share=sum(r["estimated"] for r in rows) / len(rows),
            **{kpi: _period_ratio(rows, num, den) for kpi, num, den in _PERIOD_KPIS},
        )


#: KPI, numerator column, denominator column
_PERIOD_KPIS = (
    ("wue", "water_l", "e_it_kwh"),
    ("cue", "co2_kg", "e_it_kwh"),
    ("erf", "e_heat_reused_kwh", "e_facility_kwh"),
    ("ref", "e_renewable_kwh", "e_facility_kwh"),
)


def _period_ratio(rows: list[dict[str, Any]], num: str, den: str) -> float | None:
    have = [r for r in rows if r.get(num) is not None]
    d = sum(r[den] for r in have)
    return sum(r[num] for r in have) / d if have and d > 0 else None


#: readings read per pass of a compaction (memory: about 100 bytes each while a pass is held)
COMPACT_PASS_ROWS = 5_000_000
_BULK = 64  # rows per INSERT statement of a bulk load (128 bound parameters)


def _literal(text: str) -> str:
    """A SQL string literal (quotes doubled): for constant columns of a bulk insert."""
    return "'" + text.replace("'", "''") + "'"
