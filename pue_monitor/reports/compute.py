"""Report figures recomputed from the STORED READINGS through the live pipeline's energy engine.

Nothing here is summed from the stored rollups (a restart may have left them incomplete): the GOOD
readings of every series of the site's model are read back from the store month by month (plus a
few readings on each side, so the engine judges the edges with the same context as the middle),
and every local day is run through :func:`~pue_monitor.pipeline.energy.interval_energy` and
:func:`~pue_monitor.pipeline.pue.rollup` on a 1-minute grid that starts at LOCAL midnight (site
time zone), exactly as ``pue ingest-csv`` and the live service compute them. A grid boundary is a
counter interpolated at that instant, so:

* a day's energy is ``C(midnight_2) - C(midnight_1)`` of every counter (between the readings around
  each midnight), a month's is the exact sum (``math.fsum``) of its days and a year's or the trailing
  twelve months' the exact sum of its months: twelve monthly reports add up to the year;
* PUE of a period is ISO/IEC 30134-2's ratio of energies ``sum(E_DC) / sum(E_IT)`` over the minutes
  whose PUE is known (``pipeline.pue.aggregate``'s rule), never a mean of ratios;
* completeness is counted per meter and minute from the engine's status and reason of every cell,
  glitches / resets / rollovers from the engine's judgements of single readings;
* the category is the weakest IT meter's (the engine's rule): a result is never stated at a better
  ISO/IEC 30134-2 category than every IT meter supports.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pue_monitor import __version__
from pue_monitor.config.loader import LoadedSite
from pue_monitor.config.models import KPI_ROLES, Role
from pue_monitor.errors import UsageError, UserError
from pue_monitor.ingest.backfill import MARGIN_ROWS
from pue_monitor.pipeline.energy import EVENT_KINDS, IntervalEnergy, SeriesSpec, Status, interval_energy
from pue_monitor.pipeline.events import EventKind, Reason
from pue_monitor.pipeline.kpi import KpiBasis, ratio
from pue_monitor.pipeline.model import series_specs
from pue_monitor.pipeline.pue import PueInterval, aggregate, rollup
from pue_monitor.reports.model import (
    Compliance,
    DailyRow,
    FreeCoolingSummary,
    Kpis,
    MeterCompleteness,
    Note,
    PeriodFigures,
    ReportData,
    SiteBlock,
)

__all__ = [
    "NoData",
    "Progress",
    "ReadingSource",
    "build_month",
    "build_year",
    "month_bounds",
    "parse_month",
    "parse_year",
]

STEP = 60.0  # the live pipeline's finest interval (service.STEP)
#: reason bit -> the name used in the report (MeterCompleteness.estimated_reasons)
REASONS: dict[Reason, str] = {
    Reason.POWER_INTEGRATED: "power_integrated",
    Reason.GAP_SPLIT: "gap_split",
    Reason.RESET: "reset",
    Reason.GLITCH_BRIDGED: "glitch_bridged",
}
REASON_WORDS: dict[str, str] = {
    "power_integrated": "energy integrated from power readings (no energy counter)",
    "gap_split": "a gap between counter readings: the total is the counter's, its split over the minutes linear",
    "reset": "a counter reset or meter replacement: energy between the last reading and the reset estimated",
    "glitch_bridged": "an implausible reading dropped and bridged by its neighbours",
}
_EV_GLITCH, _EV_RESET, _EV_ROLL = (
    EVENT_KINDS.index(k) for k in (EventKind.GLITCH, EventKind.RESET, EventKind.ROLLOVER)
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class ReadingSource(Protocol):
    """Where the readings come from: the embedded store (``StoreReader``) or InfluxDB
    (``reports.influx_source.InfluxReadings``)."""

    def good_windows(
        self, keys: Sequence[tuple[str, str]], *, start: float, end: float, margin: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def free_cooling(
        self, resolution: str = "1m", *, start: float | None = None, end: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]: ...


class NoData(UserError):
    """The store holds no reading of the site's meters in the period (exit 1, one line)."""


# --------------------------------------------------------------------------- periods


def parse_month(text: str) -> tuple[int, int]:
    """``YYYY-MM`` -> (year, month); a UsageError naming the value otherwise."""
    try:
        d = datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise UsageError(f"--month {text!r} is not a month: give YYYY-MM, e.g. 2026-10") from None
    if len(text) != 7:
        raise UsageError(f"--month {text!r} is not a month: give YYYY-MM, e.g. 2026-10")
    return d.year, d.month


def parse_year(text: str) -> int:
    if len(text) != 4 or not text.isdigit() or not 1970 <= int(text) <= 9999:
        raise UsageError(f"--year {text!r} is not a year: give YYYY, e.g. 2026")
    return int(text)


def _midnight(d: date, tz: zoneinfo.ZoneInfo) -> float:
    return datetime.combine(d, datetime.min.time(), tzinfo=tz).timestamp()


def _add_months(y: int, m: int, k: int) -> tuple[int, int]:
    i = y * 12 + (m - 1) + k
    return i // 12, i % 12 + 1


def month_bounds(y: int, m: int, tz: str) -> tuple[float, float]:
    """[local midnight of the 1st, local midnight of the next month's 1st) as POSIX seconds."""
    zone = zoneinfo.ZoneInfo(tz)
    ny, nm = _add_months(y, m, 1)
    return _midnight(date(y, m, 1), zone), _midnight(date(ny, nm, 1), zone)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class _Model:
    keys: list[tuple[str, str]]  # (device, point) per spec
    specs: list[SeriesSpec]
    meters: list[str]
    meter_points: list[str]  # the points used for the meter's energy, comma separated
    meter_role: list[Role]
    meter_cat: list[int | None]  # IT meters: ISO/IEC 30134-2 category of the location
    meter_kind: list[str]  # "counter" or "power"
    used: np.ndarray  # spec indices carrying each meter's energy, grouped by meter
    offsets: np.ndarray  # reduceat offsets of each meter's group in ``used``
    spec_meter: np.ndarray  # spec index -> meter index
    pue_meters: np.ndarray  # meters of the PUE energy model (not water / heat / renewable)


def _model(specs_by_key: dict[tuple[str, str], SeriesSpec]) -> _Model:
    keys = list(specs_by_key)
    specs = [specs_by_key[k] for k in keys]
    by_meter: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        by_meter.setdefault(s.meter, []).append(i)
    meters, points, roles, cats, kinds = [], [], [], [], []
    used: list[int] = []
    offsets: list[int] = []
    spec_meter = np.zeros(len(specs), np.int64)
    for j, (m, idx) in enumerate(by_meter.items()):
        # ISO/IEC 30134-2 wants metered energy: a counter wins over integrated power (as pipeline.pue)
        counters = [i for i in idx if specs[i].kind == "counter"]
        take = counters or idx
        offsets.append(len(used))
        used.extend(take)
        spec_meter[idx] = j
        s0 = specs[idx[0]]
        meters.append(m)
        points.append(",".join(keys[i][1] for i in take))
        roles.append(s0.role)
        cats.append(s0.it_location.category if s0.it_location is not None else None)
        kinds.append("counter" if counters else "power")
    pue_m = np.asarray([j for j, r in enumerate(roles) if r not in KPI_ROLES], np.int64)
    return _Model(
        keys, specs, meters, points, roles, cats, kinds,
        np.asarray(used, np.int64), np.asarray(offsets, np.int64), spec_meter, pue_m,
    )  # fmt: skip


# --------------------------------------------------------------------------- computing


@dataclass
class _Span:
    """What a period contributes: its days' rollups and per-meter minute counts."""

    start: float
    end: float
    label: str
    days: list[PueInterval] = field(default_factory=list)  # one per local day, in order
    minutes: int = 0  # grid minutes of the period
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))  # meter x (meas, est, miss)
    reasons: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))  # meter x reason
    events: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))  # meter x (glitch, reset, roll)
    readings: int = 0
    children: list[_Span] = field(default_factory=list)  # months of a year / trailing 12 months


@dataclass
class _Ctx:
    reader: ReadingSource
    site: LoadedSite
    model: _Model
    tz: zoneinfo.ZoneInfo
    kpi: KpiBasis
    progress: Progress
    stats: dict[str, Any]
    cache: dict[tuple[int, int], _Span] = field(default_factory=dict)
    #: the worker processes, started for the first month that uses them, kept for the others
    pool: ProcessPoolExecutor | None = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None


#: series read and run through the engine together: the next group is read (SQLite, in a second
#: thread) while the engine works on this one; the engine judges every series on its own, so
#: groups give the same cells as one run over all series (to the last bits of rounding)
GROUP = 128


@dataclass
class _Group:
    lo: int  # spec indices [lo, hi)
    hi: int
    sid: np.ndarray  # local series index (0 .. hi-lo-1) of each reading, sorted by series then ts
    ts: np.ndarray
    value: np.ndarray
    lens: np.ndarray  # readings per series
    seconds: float


def _read_group(reader: ReadingSource, mod: _Model, lo: int, hi: int, t0: float, t1: float) -> _Group:
    clock = time.perf_counter()
    parts_t: list[np.ndarray] = []
    parts_v: list[np.ndarray] = []
    for ts, v in reader.good_windows(mod.keys[lo:hi], start=t0, end=t1, margin=MARGIN_ROWS):
        parts_t.append(ts)
        parts_v.append(v)
    lens = np.fromiter((t.size for t in parts_t), np.int64, hi - lo)
    b_ts = np.concatenate(parts_t) if parts_t else np.zeros(0)
    b_v = np.concatenate(parts_v) if parts_v else np.zeros(0)
    sid = np.repeat(np.arange(hi - lo, dtype=np.int64), lens)
    return _Group(lo, hi, sid, b_ts, b_v, lens, time.perf_counter() - clock)


#: threads running a group's days through the engine (the machine's cores, at most 4)
ENGINE_THREADS = max(1, min(4, os.cpu_count() or 1))


def _day_rows(g: _Group, bounds: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per series and day: the row range ``[i0, i1)`` of the series' readings in the day's
    ``[c0, c1]`` plus MARGIN_ROWS on each side (``ingest.backfill._chunk_rows``'s rows, found
    with two binary searches per series for all days at once instead of two per series and day)."""
    n_s, n_d = g.lens.size, len(bounds)
    i0 = np.zeros((n_s, n_d), np.int64)
    i1 = np.zeros((n_s, n_d), np.int64)
    c0 = np.asarray([b[0] for b in bounds], np.float64)
    c1 = np.asarray([b[1] for b in bounds], np.float64)
    hi_ = np.cumsum(g.lens)
    lo_ = hi_ - g.lens
    for s in np.flatnonzero(g.lens > 0).tolist():
        a, b = int(lo_[s]), int(hi_[s])
        seg = g.ts[a:b]
        i0[s] = np.clip(a + np.searchsorted(seg, c0, side="left") - MARGIN_ROWS, a, b)
        i1[s] = np.clip(a + np.searchsorted(seg, c1, side="right") + MARGIN_ROWS, a, b)
    return i0, i1


def _rows(i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    """The row indices of the ranges ``[i0[s], i1[s])`` of every series, in series order."""
    n = np.maximum(i1 - i0, 0)
    total = int(n.sum())
    if not total:
        return np.zeros(0, np.int64)
    starts = np.cumsum(n) - n
    return np.repeat(i0 - starts, n) + np.arange(total, dtype=np.int64)


def _inside(g: _Group, idx: np.ndarray, bound: tuple[float, float]) -> bool:
    """Some series has readings on both sides of a minute of the day (else every cell is
    MISSING, what the engine gives, and it is not run on an empty grid)."""
    if not idx.size:
        return False
    sid = g.sid[idx]
    ts = g.ts[idx]
    first = np.ones(idx.size, bool)
    first[1:] = sid[1:] != sid[:-1]
    last = np.ones(idx.size, bool)
    last[:-1] = first[1:]
    return bool(((ts[first] < bound[1]) & (ts[last] > bound[0])).any())


def _compute_month(ctx: _Ctx, y: int, m: int, step_no: int, steps: int) -> _Span:
    if (y, m) in ctx.cache:
        return ctx.cache[(y, m)]
    mod = ctx.model
    t0, t1 = month_bounds(y, m, ctx.tz.key)
    span = _Span(start=t0, end=t1, label=f"{y:04d}-{m:02d}")
    n_m, n_s = len(mod.meters), len(mod.specs)
    span.counts = np.zeros((n_m, 3), np.int64)
    span.reasons = np.zeros((n_m, 4), np.int64)
    span.events = np.zeros((n_m, 3), np.int64)
    stage = f"computing {span.label}" if steps == 1 else f"computing {span.label} ({step_no}/{steps})"
    first, last = date(y, m, 1), date(*_add_months(y, m, 1), 1)
    days = [first + timedelta(days=k) for k in range((last - first).days)]
    bounds = [(_midnight(d, ctx.tz), _midnight(d + timedelta(days=1), ctx.tz)) for d in days]
    sizes = [round((c1 - c0) / STEP) for c0, c1 in bounds]
    clock = time.perf_counter()
    path = _store_path(ctx.reader)
    n_proc = min(PROCESSES, len(days)) if path is not None and n_s >= PROCESS_MIN_SERIES else 1
    if n_proc > 1:
        # this process and n_proc - 1 workers each compute a contiguous share of the days from their
        # own reader; a day
        # depends only on its own readings and MARGIN_ROWS on each side, which a worker's read of
        # its share of the month (with those margins) holds: the days are the serial run's
        cut = np.linspace(0, len(days), n_proc + 1).round().astype(int).tolist()
        shares = [(cut[i], cut[i + 1]) for i in range(n_proc)]
        ctx.progress(stage, 0, n_s)
        if ctx.pool is None:  # spawned (a forked child would inherit polars' and our threads' locks)
            ctx.pool = ProcessPoolExecutor(max_workers=n_proc - 1, mp_context=multiprocessing.get_context("spawn"))
        futures = [
            ctx.pool.submit(_days_worker, str(path), mod, ctx.kpi, ctx.tz.key, bounds[i:j], sizes[i:j])
            for i, j in shares[1:]
        ]
        i, j = shares[0]  # the first share in this process meanwhile: one interpreter fewer to start
        parts = [_run_days(ctx.reader, mod, ctx.kpi, ctx.tz.key, bounds[i:j], sizes[i:j], progress=None, threads=1)]
        parts += [f.result() for f in futures]
        ctx.progress(stage, n_s, n_s)
        ctx.stats["worker processes"] = n_proc
    else:
        parts = [
            _run_days(
                ctx.reader, mod, ctx.kpi, ctx.tz.key, bounds, sizes,
                progress=lambda done: ctx.progress(stage, done, n_s), threads=ENGINE_THREADS,
            )
        ]  # fmt: skip
    for part in parts:
        span.days += part.days
        span.minutes += part.minutes
        span.counts += part.counts
        span.reasons += part.reasons
        span.events += part.events
        span.readings += part.readings
        _add_time(ctx.stats, "read readings (second thread)", part.read_s)
        _add_time(ctx.stats, "energy engine", part.engine_s)
        _add_time(ctx.stats, "rollup and completeness", part.rollup_s)
    _add_time(ctx.stats, "read + engine + rollup, wall", time.perf_counter() - clock)
    ctx.stats["readings"] = ctx.stats.get("readings", 0) + span.readings
    for d, day in zip(days, span.days, strict=True):
        if day.start != _midnight(d, ctx.tz):  # a grid that is not the local day
            raise AssertionError(f"day {d}: computed as {day.start}")
    ctx.cache[(y, m)] = span
    return span


#: worker processes for a month of a site with at least PROCESS_MIN_SERIES series read from the
#: embedded store (the machine's cores, at most 4): the energy engine is numpy work between
#: Python steps, so two threads share one interpreter lock, two processes do not
PROCESSES = max(1, min(4, os.cpu_count() or 1))
PROCESS_MIN_SERIES = 256


def _store_path(reader: ReadingSource) -> Path | None:
    """The store file of an embedded-store reader (a worker process opens its own); None for
    another source (InfluxDB: computed in this process)."""
    from pue_monitor.sinks.sqlite import StoreReader

    return reader.path if isinstance(reader, StoreReader) else None


@dataclass
class _Part:
    """What a run of some days gives: each day's rollup, per-meter minute counts, events."""

    days: list[PueInterval]
    minutes: int
    counts: np.ndarray
    reasons: np.ndarray
    events: np.ndarray
    readings: int
    read_s: float
    engine_s: float
    rollup_s: float


def _days_worker(
    path: str,
    mod: _Model,
    kpi: KpiBasis,
    tz: str,
    bounds: list[tuple[float, float]],
    sizes: list[int],
) -> _Part:
    """A worker process's share of a month: its days from its own reader of the store."""
    from pue_monitor.sinks.sqlite import StoreReader

    reader = StoreReader(path)
    try:
        return _run_days(reader, mod, kpi, tz, bounds, sizes, progress=None, threads=1)
    finally:
        reader.close()


def _run_days(
    reader: ReadingSource,
    mod: _Model,
    kpi: KpiBasis,
    tz: str,
    bounds: list[tuple[float, float]],
    sizes: list[int],
    *,
    progress: Callable[[int], None] | None,
    threads: int,
) -> _Part:
    """Consecutive local days (``bounds``: their [start, end); ``sizes``: their minutes): read
    the readings of every series over the days (with MARGIN_ROWS on each side), run every day
    through the engine group by group, then roll each day up and count its cells."""
    n_m, n_s = len(mod.meters), len(mod.specs)
    out = _Part([], 0, np.zeros((n_m, 3), np.int64), np.zeros((n_m, 4), np.int64), np.zeros((n_m, 3), np.int64),
                0, 0.0, 0.0, 0.0)  # fmt: skip
    t0, t1 = bounds[0][0], bounds[-1][1]
    # each day's cells of every series, filled group by group: MISSING until the engine says otherwise
    energy = [np.zeros((n_s, n)) for n in sizes]
    status = [np.full((n_s, n), Status.MISSING, np.int8) for n in sizes]
    reason = [np.zeros((n_s, n), np.uint8) for n in sizes]
    ran = [False] * len(bounds)
    events = out.events
    groups = [(a, min(a + GROUP, n_s)) for a in range(0, n_s, GROUP)]
    read_s = engine_s = 0.0
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-read") as pool,
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="report-engine") as engines,
    ):
        pending = pool.submit(_read_group, reader, mod, *groups[0], t0, t1)
        for gi in range(len(groups)):
            g = pending.result()
            if gi + 1 < len(groups):
                pending = pool.submit(_read_group, reader, mod, *groups[gi + 1], t0, t1)
            read_s += g.seconds
            out.readings += int(g.ts.size)
            t_e = time.perf_counter()
            specs = tuple(mod.specs[g.lo : g.hi])
            i0, i1 = _day_rows(g, bounds)

            def run(
                k: int, g: _Group = g, specs: tuple[SeriesSpec, ...] = specs, i0: np.ndarray = i0, i1: np.ndarray = i1
            ) -> IntervalEnergy | None:
                c0 = bounds[k][0]
                idx = _rows(i0[:, k], i1[:, k])
                if not _inside(g, idx, bounds[k]):
                    return None
                return interval_energy(specs, g.sid[idx], g.ts[idx], g.value[idx], start=c0, step=STEP, n=sizes[k])

            # the days of a group on ENGINE_THREADS threads (numpy releases the GIL in the engine's
            # array work); results taken back in day order, so the sums are the serial run's
            for k, ie in enumerate(engines.map(run, range(len(bounds)))):
                if ie is None:
                    continue
                c0, c1 = bounds[k]
                energy[k][g.lo : g.hi] = ie.energy
                status[k][g.lo : g.hi] = ie.status
                reason[k][g.lo : g.hi] = ie.reason
                ran[k] = True
                if ie.event_row.size:  # judged readings inside the day (margins belong to the neighbours)
                    rows = _rows(i0[:, k], i1[:, k])[ie.event_row]
                    inside = (g.ts[rows] >= c0) & (g.ts[rows] < c1)
                    meter = mod.spec_meter[g.lo + g.sid[rows][inside]]
                    kind = ie.event_kind[inside]
                    for col, code in enumerate((_EV_GLITCH, _EV_RESET, _EV_ROLL)):
                        np.add.at(events[:, col], meter[kind == code], 1)
            engine_s += time.perf_counter() - t_e
            if progress is not None:
                progress(g.hi)
    out.read_s, out.engine_s = read_s, engine_s

    clock = time.perf_counter()
    span = _Span(start=t0, end=t1, label="", counts=out.counts, reasons=out.reasons)
    for k, (c0, c1) in enumerate(bounds):
        out.minutes += sizes[k]
        if not ran[k]:
            out.days.append(_empty_day(c0, c1, _category(mod)))
            out.counts[:, 2] += sizes[k]
            continue
        ie_day = IntervalEnergy(start=c0, step=STEP, energy=energy[k], status=status[k], reason=reason[k])
        minutes = rollup(ie_day, mod.specs, kpi=kpi)
        day = aggregate(minutes, resolution="1d", tz=tz)
        if len(day) != 1 or day[0].start != c0 or day[0].end != c1:  # a grid that is not the local day
            raise AssertionError(f"day at {c0}: aggregate gave {[(x.start, x.end) for x in day]}")
        out.days.append(day[0])
        _count_cells(span, mod, status[k], reason[k])
    out.rollup_s = time.perf_counter() - clock
    return out


def _empty_day(c0: float, c1: float, category: int) -> PueInterval:
    return PueInterval(
        start=c0, end=c1, e_facility=None, e_it=None, e_subsystems={}, pue=None, ppue={}, category=category,
        measured=0.0, estimated=0.0, missing=1.0, coverage=0.0,
    )  # fmt: skip


def _count_cells(span: _Span, mod: _Model, status: np.ndarray, reason: np.ndarray) -> None:
    """Minutes per meter measured / estimated (and why) / missing: a meter's status is the worst
    of the series it uses, its reasons their union (pipeline.pue's rule)."""
    if len(mod.used) == len(mod.meters):
        s_m, r_m = status[mod.used], reason[mod.used]
    else:
        s_m = np.maximum.reduceat(status[mod.used], mod.offsets, axis=0)
        r_m = np.bitwise_or.reduceat(reason[mod.used], mod.offsets, axis=0)
    span.counts[:, 0] += np.count_nonzero(s_m == Status.MEASURED, axis=1)
    est = s_m == Status.ESTIMATED
    span.counts[:, 1] += np.count_nonzero(est, axis=1)
    span.counts[:, 2] += np.count_nonzero(s_m == Status.MISSING, axis=1)
    for col, bit in enumerate(REASONS):
        span.reasons[:, col] += np.count_nonzero(est & ((r_m & np.uint8(bit)) != 0), axis=1)


def _add_time(stats: dict[str, Any], key: str, s: float) -> None:
    sec = stats.setdefault("seconds", {})
    sec[key] = sec.get(key, 0.0) + s


def _combine(label: str, months: list[_Span]) -> _Span:
    """A year or the trailing twelve months from its months (figures: exact sums of theirs)."""
    out = _Span(start=months[0].start, end=months[-1].end, label=label, children=months)
    out.days = [d for mo in months for d in mo.days]
    out.minutes = sum(mo.minutes for mo in months)
    out.counts = sum((mo.counts for mo in months), np.zeros_like(months[0].counts))
    out.reasons = sum((mo.reasons for mo in months), np.zeros_like(months[0].reasons))
    out.events = sum((mo.events for mo in months), np.zeros_like(months[0].events))
    out.readings = sum(mo.readings for mo in months)
    return out


@dataclass(frozen=True)
class _Sums:
    facility: float | None
    it: float | None
    subs: dict[str, float]
    water: float | None
    heat: float | None
    renewable: float | None
    co2: float | None
    it_water: float  # IT energy of the days that have water (WUE's denominator)
    it_co2: float
    fac_heat: float
    fac_ren: float


def _sums(span: _Span) -> _Sums:
    """Energies of a span: a month sums its days, a year / trailing 12 months its months (each an
    exact ``math.fsum``), so a period's figure is the sum of its parts' figures as reported."""
    if span.children:
        parts = [_sums(c) for c in span.children]
        used = [p for p in parts if p.facility is not None and p.it is not None]
        return _sum_parts(used)
    parts = [
        _Sums(
            facility=d.e_facility,
            it=d.e_it,
            subs=dict(d.e_subsystems),
            water=d.water_l,
            heat=d.e_heat_reused,
            renewable=d.e_renewable,
            co2=d.co2_kg,
            it_water=d.e_it or 0.0,
            it_co2=d.e_it or 0.0,
            fac_heat=d.e_facility or 0.0,
            fac_ren=d.e_facility or 0.0,
        )
        for d in span.days
        if d.pue is not None
    ]
    return _sum_parts(parts)


def _sum_parts(used: list[_Sums]) -> _Sums:
    if not used:
        return _Sums(None, None, {}, None, None, None, None, 0.0, 0.0, 0.0, 0.0)
    names = set(used[0].subs)
    for p in used[1:]:
        names &= set(p.subs)

    def opt(attr: str, den: str) -> tuple[float | None, float]:
        have = [p for p in used if getattr(p, attr) is not None]
        if not have:
            return None, 0.0
        return math.fsum(getattr(p, attr) for p in have), math.fsum(getattr(p, den) for p in have)

    water, it_w = opt("water", "it_water")
    co2, it_c = opt("co2", "it_co2")
    heat, fac_h = opt("heat", "fac_heat")
    ren, fac_r = opt("renewable", "fac_ren")
    return _Sums(
        facility=math.fsum(p.facility for p in used),  # type: ignore[misc]
        it=math.fsum(p.it for p in used),  # type: ignore[misc]
        subs={n: math.fsum(p.subs[n] for p in used) for n in sorted(names)},
        water=water, heat=heat, renewable=ren, co2=co2,
        it_water=it_w, it_co2=it_c, fac_heat=fac_h, fac_ren=fac_r,
    )  # fmt: skip


def _figures(span: _Span, mod: _Model) -> PeriodFigures:
    s = _sums(span)
    pue = s.facility / s.it if s.facility is not None and s.it is not None and s.it > 0 else None
    ppue = {n: (s.it + e) / s.it for n, e in s.subs.items()} if s.it is not None and s.it > 0 else {}
    pm = mod.pue_meters
    cells = max(int(pm.size) * span.minutes, 1)
    c = span.counts[pm].sum(axis=0) if pm.size else np.zeros(3, np.int64)
    return PeriodFigures(
        label=span.label,
        start=span.start,
        end=span.end,
        facility_kwh=s.facility,
        it_kwh=s.it,
        subsystems_kwh=s.subs,
        pue=pue,
        ppue=ppue,
        category=_category(mod),
        measured=int(c[0]) / cells,
        estimated=int(c[1]) / cells,
        missing=int(c[2]) / cells,
    )


def _category(mod: _Model) -> int:
    """The weakest IT meter's ISO/IEC 30134-2 category (0: no IT meter): never better."""
    cats = [c for c in mod.meter_cat if c is not None]
    return min(cats) if cats else 0


def _kpis(span: _Span) -> Kpis:
    s = _sums(span)
    return Kpis(
        wue_l_per_kwh=ratio(s.water, s.it_water),
        cue_kg_per_kwh=ratio(s.co2, s.it_co2),
        erf=ratio(s.heat, s.fac_heat),
        ref=ratio(s.renewable, s.fac_ren),
        water_l=s.water,
        reused_heat_kwh=s.heat,
        renewable_kwh=s.renewable,
    )


def _meters(span: _Span, mod: _Model) -> list[MeterCompleteness]:
    out = []
    n = max(span.minutes, 1)
    for j, meter in enumerate(mod.meters):
        meas, est, miss = (int(x) for x in span.counts[j])
        out.append(
            MeterCompleteness(
                device=meter,
                point=mod.meter_points[j],
                role=mod.meter_role[j].value,
                measured=meas / n,
                estimated=est / n,
                missing=miss / n,
                estimated_reasons={
                    name: int(span.reasons[j, col]) / n
                    for col, name in enumerate(REASONS.values())
                    if span.reasons[j, col]
                },
                glitches=int(span.events[j, 0]),
                resets=int(span.events[j, 1]),
                rollovers=int(span.events[j, 2]),
                category=mod.meter_cat[j],
            )
        )
    return out


def _daily(span: _Span, tz: zoneinfo.ZoneInfo) -> list[DailyRow]:
    return [
        DailyRow(
            date=datetime.fromtimestamp(d.start, tz).date().isoformat(),
            facility_kwh=d.e_facility,
            it_kwh=d.e_it,
            pue=d.pue,
            coverage=d.coverage,
        )
        for d in span.days
    ]


def _compliance(pue: float | None, site: LoadedSite) -> Compliance:
    thr, rep = site.config.thresholds, site.config.report
    limits = {"warning": thr.warning, "critical": thr.critical}
    grade = None
    if pue is not None:
        grade = next((g for g, lim in sorted(rep.grade_limits.items()) if pue <= lim), None)
    return Compliance(
        limits=limits,
        meets={k: None if pue is None else pue <= v for k, v in limits.items()},
        grade=grade,
        grade_limits=dict(rep.grade_limits),
    )


def _free_cooling(reader: ReadingSource, start: float, end: float) -> list[FreeCoolingSummary]:
    rows = reader.free_cooling("1m", start=start, end=end)
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["economiser"], []).append(r)
    out = []
    for econ, rs in sorted(by.items()):
        total = sum(r["end"] - r["start"] for r in rs)
        unknown_used = sum(r["actual_unknown_s"] for r in rs)
        avoid = [r["avoidable_kwh"] for r in rs if r["avoidable_kwh"] is not None]
        out.append(
            FreeCoolingSummary(
                economiser=econ,
                hours_full=math.fsum(r["full_s"] for r in rs) / 3600.0,
                hours_partial=math.fsum(r["partial_s"] for r in rs) / 3600.0,
                hours_none=math.fsum(r["none_s"] for r in rs) / 3600.0,
                hours_unknown=math.fsum(r["unknown_s"] for r in rs) / 3600.0,
                hours_used=None if unknown_used >= total else math.fsum(r["used_s"] for r in rs) / 3600.0,
                avoided_kwh=math.fsum(avoid) if avoid else None,
            )
        )
    return out


def _pct(x: float) -> str:
    return f"{100.0 * x:.2f} %"


def _notes(span: _Span, mod: _Model, meters: list[MeterCompleteness], fig: PeriodFigures, k: Kpis) -> list[str]:
    """Every estimate with its reason, in words (the PDF prints them; the JSON keeps them)."""
    notes: list[str] = []
    for mc, kind in zip(meters, mod.meter_kind, strict=True):
        who = {"device": mc.device, "role": mc.role}
        if mc.estimated > 0:
            why = "; ".join(f"{name} {_pct(sh)}: {REASON_WORDS[name]}" for name, sh in mc.estimated_reasons.items())
            text = f"{mc.device} ({mc.role}): {_pct(mc.estimated)} of the minutes estimated ({why})"
            notes.append(Note("estimated", text, **who, share=mc.estimated, reasons=dict(mc.estimated_reasons)))
        if mc.missing > 0:
            text = (
                f"{mc.device} ({mc.role}): {_pct(mc.missing)} of the minutes missing (no reading around them): "
                "minutes without every facility and IT meter are left out of the PUE"
            )
            notes.append(Note("missing", text, **who, share=mc.missing))
        if mc.glitches or mc.resets or mc.rollovers:
            text = (
                f"{mc.device}: {mc.glitches} glitch(es) dropped and bridged, {mc.resets} reset(s) or meter "
                f"replacement(s), {mc.rollovers} counter rollover(s) handled"
            )
            events = {"glitches": mc.glitches, "resets": mc.resets, "rollovers": mc.rollovers}
            notes.append(Note("events", text, device=mc.device, **events))
        if kind == "power" and mc.role in (Role.FACILITY_INPUT.value, Role.IT.value):
            text = (
                f"{mc.device} ({mc.role}) has no energy counter: its energy is integrated from power readings "
                "(trapezoidal rule), an estimate under ISO/IEC 30134-2"
            )
            notes.append(Note("power_only", text, **who))
    if fig.pue is None:
        text = f"{fig.label}: no minute has both facility and IT energy: PUE not stated"
        notes.append(Note("no_pue", text, label=fig.label))
    cov = _coverage(span)
    if fig.pue is not None and cov < 1.0:
        text = (
            f"{fig.label}: the PUE covers {_pct(cov)} of the period's minutes (the minutes where every "
            "facility and IT meter has energy)"
        )
        notes.append(Note("coverage", text, label=fig.label, share=cov))
    cats = [(m, c) for m, c in zip(mod.meters, mod.meter_cat, strict=True) if c is not None]
    if cats and len({c for _, c in cats}) > 1:
        weakest = min(c for _, c in cats)
        names = [m for m, c in cats if c == weakest]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        text = (
            f"category {weakest}: the weakest IT meter ({shown}) supports no better; the result is never "
            "stated at a better category"
        )
        notes.append(Note("category", text, category=weakest, meters=names[:5], more=max(len(names) - 5, 0)))
    for name, v in (("WUE", k.wue_l_per_kwh), ("ERF", k.erf), ("REF", k.ref)):
        if v is None:
            text = f"{name}: not measured (no meter of its kind, or its meter missing)"
            notes.append(Note("not_measured", text, kpi=name))
    return notes


def _kpi_basis(basis: KpiBasis, k: Kpis, renewable_metered: bool) -> dict[str, str]:
    """``Kpis.basis``: the figures computed from a configured factor or contract, not a meter."""
    out = {}
    if k.cue_kg_per_kwh is not None:
        out["cue_kg_per_kwh"] = (
            f"emission factor: {basis.ef_kg_per_kwh:g} kg CO2/kWh, {basis.ef_type}, {basis.ef_year}, {basis.ef_source}"
        )
    if k.ref is not None and basis.renewable_share is not None and not renewable_metered:
        for key in ("ref", "renewable_kwh"):
            out[key] = f"contract: share {basis.renewable_share:g} of facility energy, {basis.renewable_source}"
    return out


def _kpi_basis_notes(basis: KpiBasis, k: Kpis, *, renewable_metered: bool) -> list[str]:
    """What a KPI that is not a meter's reading was computed with (an auditor's first question)."""
    out: list[str] = []
    if k.cue_kg_per_kwh is not None:
        text = (
            f"CUE: CO2 = (facility energy - renewable energy) x the {basis.ef_type} emission factor "
            f"{basis.ef_kg_per_kwh:g} kg CO2/kWh "
            f"({basis.ef_year}; {basis.ef_source}; kpis.emission_factor), not a measurement"
        )
        ef = {"ef_type": basis.ef_type, "ef": basis.ef_kg_per_kwh, "year": basis.ef_year, "source": basis.ef_source}
        out.append(Note("cue_basis", text, **ef))
    if k.ref is not None and basis.renewable_share is not None and not renewable_metered:
        text = (
            f"REF: renewable energy = facility energy x the contracted renewable share {basis.renewable_share:g} "
            f"({basis.renewable_source}; kpis.renewable_contract), not a meter"
        )
        out.append(Note("ref_basis", text, share=basis.renewable_share, source=basis.renewable_source))
    return out


def _coverage(span: _Span) -> float:
    total = sum(d.end - d.start for d in span.days) or 1.0
    return sum((d.end - d.start) * d.coverage for d in span.days) / total


# --------------------------------------------------------------------------- public


def _context(reader: ReadingSource, site: LoadedSite, progress: Progress | None, stats: dict[str, Any] | None) -> _Ctx:
    specs = series_specs(site)
    if not specs:
        raise UsageError(f"{site.path}: no device has a meter: nothing to report")
    return _Ctx(
        reader=reader,
        site=site,
        model=_model(specs),
        tz=zoneinfo.ZoneInfo(site.config.site.timezone),
        kpi=KpiBasis.from_config(site.config.kpis),
        progress=progress or (lambda stage, done, total: None),
        stats=stats if stats is not None else {},
    )


def _site_block(site: LoadedSite) -> SiteBlock:
    c = site.config
    return SiteBlock(
        id=c.site.id, name=c.site.name, operator=c.report.operator, address=c.report.address, timezone=c.site.timezone
    )


def _report(ctx: _Ctx, kind: str, span: _Span, trailing: _Span | None, now: float | None) -> ReportData:
    mod = ctx.model
    fig = _figures(span, mod)
    meters = _meters(span, mod)
    kpis = _kpis(span)
    notes = _notes(span, mod, meters, fig, kpis)
    if trailing is not None and (cov := _coverage(trailing)) < 1.0:
        keep = ctx.site.config.store.keep_readings_days
        text = (
            f"trailing 12 months {trailing.label}: the PUE covers {_pct(cov)} of its minutes; the store keeps "
            f"readings {keep:g} days (store.keep_readings_days): keep at least 400 for a complete trailing year"
        )
        notes.append(Note("trailing_coverage", text, label=trailing.label, share=cov, keep=keep))
    notes += _kpi_basis_notes(ctx.kpi, kpis, renewable_metered=Role.RENEWABLE in mod.meter_role)
    kpis = dataclasses.replace(kpis, basis=_kpi_basis(ctx.kpi, kpis, Role.RENEWABLE in mod.meter_role))
    return ReportData(
        kind="month" if kind == "month" else "year",
        site=_site_block(ctx.site),
        period=fig,
        trailing_12m=_figures(trailing, mod) if trailing is not None else None,
        daily=_daily(span, ctx.tz),
        meters=meters,
        compliance=_compliance(fig.pue, ctx.site),
        kpis=kpis,
        free_cooling=_free_cooling(ctx.reader, span.start, span.end),
        alerts=[],  # the alert history's: reports.alert_list.with_alerts (pue report adds them)
        notes=notes,
        generated_at=time.time() if now is None else now,
        generator=f"pue-monitor {__version__}",
    )


def build_month(
    reader: ReadingSource,
    site: LoadedSite,
    month: str,
    *,
    progress: Progress | None = None,
    stats: dict[str, Any] | None = None,
    trailing: bool = True,
    now: float | None = None,
) -> ReportData:
    """The monthly report of ``month`` (``YYYY-MM``, local time of the site) and, with
    ``trailing``, the twelve months ending with it (recomputed month by month: their figures are
    the exact sums of the twelve monthly reports'). ``stats`` receives ``seconds`` per stage and
    the number of ``readings`` read. Raises :class:`NoData` when the month holds no reading."""
    y, m = parse_month(month)
    ctx = _context(reader, site, progress, stats)
    try:
        return _build_month(ctx, site, month, y, m, trailing, now)
    finally:
        ctx.close()


def _build_month(
    ctx: _Ctx, site: LoadedSite, month: str, y: int, m: int, trailing: bool, now: float | None
) -> ReportData:
    span = _compute_month(ctx, y, m, 12 if trailing else 1, 12 if trailing else 1)
    if not _has_data(span):
        raise NoData(
            f"no readings of {site.config.site.id}'s meters in {month} ({site.config.site.timezone}) in the store",
            "check --month and --db (the store `pue run` or `pue ingest-csv` writes)",
        )
    trail: _Span | None = None
    if trailing:
        months = []
        for k in range(-11, 1):
            yy, mm = _add_months(y, m, k)
            months.append(_compute_month(ctx, yy, mm, k + 12, 12))
        y0, m0 = _add_months(y, m, -11)
        trail = _combine(f"{y0:04d}-{m0:02d}..{month}", months)
    clock = time.perf_counter()
    out = _report(ctx, "month", span, trail, now)
    _add_time(ctx.stats, "figures", time.perf_counter() - clock)
    return out


def build_year(
    reader: ReadingSource,
    site: LoadedSite,
    year: str,
    *,
    progress: Progress | None = None,
    stats: dict[str, Any] | None = None,
    now: float | None = None,
) -> ReportData:
    """The annual report of calendar ``year`` (local time): its figures are the exact sums of its
    twelve months' (each recomputed from the readings as a monthly report is)."""
    y = parse_year(year)
    ctx = _context(reader, site, progress, stats)
    try:
        months = [_compute_month(ctx, y, m, m, 12) for m in range(1, 13)]
    finally:
        ctx.close()
    span = _combine(f"{y:04d}", months)
    if not _has_data(span):
        raise NoData(
            f"no readings of {site.config.site.id}'s meters in {y} ({site.config.site.timezone}) in the store",
            "check --year and --db (the store `pue run` or `pue ingest-csv` writes)",
        )
    clock = time.perf_counter()
    out = _report(ctx, "year", span, None, now)
    _add_time(ctx.stats, "figures", time.perf_counter() - clock)
    return out


def _has_data(span: _Span) -> bool:
    """Some meter has a minute that is not MISSING in the period (margin readings alone do not count)."""
    return bool(span.counts[:, :2].sum() > 0)
