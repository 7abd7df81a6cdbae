"""Backfill validated export rows into the embedded store and recompute the touched rollups.

One energy path: the rows go through :func:`~pue_monitor.pipeline.energy.interval_energy` and
:func:`~pue_monitor.pipeline.pue.rollup` / :func:`~pue_monitor.pipeline.pue.aggregate`, exactly
as the live service's do. Steps:

1. the days to recompute: every local (site timezone) day holding a new row, widened to the
   stored readings next to the file's span (within the live pipeline's 7-day horizon) — a
   backfilled reading can bridge a gap into a day that live data already covers;
2. the stored GOOD readings of every series of the model in those days (plus a few on each side
   to bridge into them) are loaded; file rows equal to a stored reading (same series, time and
   value) and repeated rows of the file are dropped — so re-ingesting a file changes nothing;
3. the 1-minute grid of those days is computed day by day (memory ~ series x 1440 x 48 bytes a
   day) from stored + new readings, then 15 min, 1 h and 1 d rows are aggregated in the site's
   timezone, as the live service writes them;
4. the new readings go into the store in one transaction (bulk insert), then the rollups are
   upserted. A crash between the two leaves readings whose days' rollups are stale until the
   same file is ingested again (which then inserts nothing and recomputes them).
"""

from __future__ import annotations

import itertools
import math
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from pue_monitor.pipeline.energy import SeriesSpec, interval_energy
from pue_monitor.pipeline.kpi import KpiBasis
from pue_monitor.pipeline.pue import PueInterval, aggregate, rollup
from pue_monitor.sinks.sqlite import SqliteStore

__all__ = ["BackfillResult", "backfill"]

STEP = 60.0  # the finest rollup, as the live service (service.STEP)
RESOLUTIONS = ("15m", "1h", "1d")
#: how far a stored reading next to the file's span may lie and still be bridged (the live
#: pipeline's horizon: LivePipeline(horizon=7 days))
HORIZON = 7 * 86400.0
#: readings kept on each side of a day so the engine judges its edges with the same context
#: as in the middle (a lone glitch needs its neighbours)
MARGIN_ROWS = 8

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class BackfillResult:
    inserted: int = 0  # new readings written
    duplicates: int = 0  # rows already stored or repeated in the file
    days: int = 0  # local days whose rollups were recomputed
    first: float | None = None  # recomputed span [first, last) (POSIX s)
    last: float | None = None
    rollups: dict[str, int] = field(default_factory=dict)  # resolution -> rows upserted
    e_facility_kwh: float | None = None  # over the recomputed minutes whose PUE is defined
    e_it_kwh: float | None = None
    pue: float | None = None
    events: Counter[str] = field(default_factory=Counter)  # pipeline events by kind
    event_samples: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # time per stage
    rolled: dict[str, list[PueInterval]] = field(default_factory=dict, repr=False)  # until written


def _day_starts(first: float, last: float, tz: zoneinfo.ZoneInfo) -> list[float]:
    """Local midnights from the day holding ``first`` to the one after the day holding ``last``."""
    d = datetime.fromtimestamp(first, tz).date()
    end = datetime.fromtimestamp(last, tz).date()
    out = []
    while d <= end + timedelta(days=1):
        out.append(datetime.combine(d, datetime.min.time(), tzinfo=tz).timestamp())
        d += timedelta(days=1)
    return out


def backfill(
    store: SqliteStore,
    *,
    site_id: str,
    timezone: str,
    keys: Sequence[tuple[str, str]],
    specs: Sequence[SeriesSpec],
    units: Sequence[str],
    sid: np.ndarray,
    t_us: np.ndarray,
    value: np.ndarray,
    progress: Progress | None = None,
    kpi: KpiBasis | None = None,
) -> BackfillResult:
    """Store new readings (``sid`` indexes ``keys``/``specs``) and recompute the touched days."""
    res = BackfillResult()
    if sid.size == 0:
        return res
    tz = zoneinfo.ZoneInfo(timezone)
    report = progress or (lambda stage, done, total: None)
    clock = time.perf_counter()

    # ---- the file's rows, sorted by (series, time, value); repeated rows dropped
    new = _sorted(np.asarray(sid, np.int32), np.asarray(t_us, np.int64), np.asarray(value, np.float64))
    new = new.filter(~_repeats(new))
    res.duplicates = int(sid.size - new.height)
    n_sid = new["sid"].to_numpy()
    n_t = new["t"].to_numpy()
    heads = np.flatnonzero(np.diff(n_sid, prepend=-1))
    tails = np.append(heads[1:], n_sid.size) - 1
    span = zip(n_sid[heads].tolist(), n_t[heads].tolist(), n_t[tails].tolist(), strict=True)

    # ---- the days to recompute: the file's, widened to the stored neighbours it bridges to
    first, last = float(n_t.min()) / 1e6, float(n_t.max()) / 1e6
    for s, lo, hi in span:
        device, point = keys[s]
        edge = store.edge_readings(device, point, before=lo / 1e6, after=hi / 1e6, n=1)
        for ts, _ in edge:
            if ts < lo / 1e6 and lo / 1e6 - ts <= HORIZON:
                first = min(first, ts)
            elif ts > hi / 1e6 and ts - hi / 1e6 <= HORIZON:
                last = max(last, ts)
    days = _day_starts(first, last, tz)  # midnights; the last one ends the span
    w0, w1 = days[0], days[-1]
    res.days, res.first, res.last = len(days) - 1, w0, w1

    # ---- stored readings of every series in the window (+ margins): for dedup and the engine
    parts_s: list[np.ndarray] = []
    parts_t: list[np.ndarray] = []
    parts_v: list[np.ndarray] = []
    for s, (device, point) in enumerate(keys):
        rows = store.good_readings(device, point, start=w0, end=w1)
        rows += store.edge_readings(device, point, before=w0, after=w1, n=MARGIN_ROWS)
        if rows:
            arr = np.fromiter(itertools.chain.from_iterable(rows), np.float64, 2 * len(rows)).reshape(-1, 2)
            parts_s.append(np.full(len(rows), s, np.int32))
            parts_t.append(np.round(arr[:, 0] * 1e6).astype(np.int64))
            parts_v.append(arr[:, 1])
        report("loading stored readings", s + 1, len(keys))
    if parts_s:
        old = pl.DataFrame({"sid": np.concatenate(parts_s), "t": np.concatenate(parts_t), "v": np.concatenate(parts_v)})
        fresh = new.join(old, on=["sid", "t", "v"], how="anti", maintain_order="left")
        res.duplicates += new.height - fresh.height
        both = pl.concat([old, fresh])
        both = _sorted(both["sid"].to_numpy(), both["t"].to_numpy(), both["v"].to_numpy())
    else:
        fresh = new
        both = new
    res.seconds["prepare"] = time.perf_counter() - clock

    # ---- write: readings (one transaction), then rollups
    clock = time.perf_counter()
    total = fresh.height
    f_sid = fresh["sid"].to_numpy()
    f_ts = fresh["t"].to_numpy() / 1e6
    f_v = fresh["v"].to_numpy()
    bounds = np.flatnonzero(np.diff(f_sid)) + 1
    starts = np.concatenate([[0], bounds]) if total else np.zeros(0, np.int64)
    ends = np.concatenate([bounds, [total]]) if total else np.zeros(0, np.int64)

    # series in (device, point) order, each by time: the order of the store's readings index,
    # which then grows at its end (an empty store) or series by series in one place each
    segments = sorted(zip(starts.tolist(), ends.tolist(), strict=True), key=lambda ab: keys[int(f_sid[ab[0]])])

    def series_rows() -> Any:
        for a, b in segments:
            s = int(f_sid[a])
            device, point = keys[s]
            yield device, point, units[s], f_ts[a:b], f_v[a:b]

    # the store writes in a second thread (sqlite releases the GIL while it works) while this
    # one runs the engine: the two stages overlap on a 2-core machine
    write_times: dict[str, float] = {}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write")
    writing = pool.submit(
        store.bulk_insert_readings,
        site_id,
        series_rows(),
        expected_rows=total,
        progress=lambda done: report("writing readings", done, total),
        timings=write_times,
        on_stage=lambda name: report(name, 0, 0),
    )
    pool.shutdown(wait=False)
    try:
        _engine(res, keys, specs, both, days, tz, report, kpi)
    finally:
        res.inserted = writing.result()  # readings are committed (or rolled back) before we go on
    res.seconds["write readings (overlaps energy)"] = time.perf_counter() - clock
    res.seconds.update({f"  of which {k}": v for k, v in write_times.items()})
    clock = time.perf_counter()
    now = time.time()
    for resolution, ivs in res.rolled.items():
        res.rollups[resolution] = store.upsert_intervals(site_id, resolution, ivs, now=now)
    res.seconds["write rollups"] = time.perf_counter() - clock
    res.rolled = {}
    return res


def _engine(
    res: BackfillResult,
    keys: Sequence[tuple[str, str]],
    specs: Sequence[SeriesSpec],
    both: pl.DataFrame,
    days: list[float],
    tz: zoneinfo.ZoneInfo,
    report: Progress,
    kpi: KpiBasis | None = None,
) -> None:
    """1-minute rollups of ``days`` (local midnights) by the engine, day by day; then 15m/1h/1d."""
    clock_e = time.perf_counter()
    b_sid = both["sid"].to_numpy()
    b_t = both["t"].to_numpy()
    b_v = both["v"].to_numpy()
    b_ts = b_t / 1e6
    n_series = len(specs)
    series_lo = np.searchsorted(b_sid, np.arange(n_series), side="left")
    series_hi = np.searchsorted(b_sid, np.arange(n_series), side="right")
    minutes: list[PueInterval] = []
    events: list[tuple[float, int, str, float]] = []
    for k in range(len(days) - 1):
        c0, c1 = days[k], days[k + 1]
        idx = _chunk_rows(b_sid, b_ts, series_lo, series_hi, c0, c1)
        n = round((c1 - c0) / STEP)
        ie = interval_energy(specs, b_sid[idx], b_ts[idx], b_v[idx], start=c0, step=STEP, n=n)
        minutes.extend(rollup(ie, specs, kpi=kpi))
        # the engine's judgements of single readings (glitch, reset, conflict, ...): ``events()``
        # gives (row of the arrays passed in, kind); a day's margin rows are judged with the
        # neighbouring day, so only readings inside [c0, c1) count here
        judged = getattr(ie, "events", None)
        for row, kind in judged() if callable(judged) else ():
            i = int(idx[row])
            if c0 <= b_ts[i] < c1:
                events.append((float(b_ts[i]), int(b_sid[i]), str(getattr(kind, "value", kind)), float(b_v[i])))
        report("computing energy", k + 1, len(days) - 1)
    for ts, s, kind, value in sorted(events):
        res.events[kind] += 1
        if len(res.event_samples) < 20:
            device, point = keys[s]
            when = datetime.fromtimestamp(ts, tz).isoformat()
            res.event_samples.append(f"{when} {device}/{point}: {kind} (value {value:g})")
    res.rolled = {"1m": minutes}
    for r in RESOLUTIONS:
        res.rolled[r] = aggregate(minutes, resolution=r, tz=str(tz))
    used = [m for m in minutes if m.pue is not None]
    if used:
        res.e_facility_kwh = math.fsum(m.e_facility for m in used)  # type: ignore[misc]
        res.e_it_kwh = math.fsum(m.e_it for m in used)  # type: ignore[misc]
        res.pue = res.e_facility_kwh / res.e_it_kwh if res.e_it_kwh > 0 else None
    res.seconds["energy"] = time.perf_counter() - clock_e


def _sorted(sid: np.ndarray, t: np.ndarray, v: np.ndarray) -> pl.DataFrame:
    """The rows as a frame sorted by (sid, t, v), the cheapest way that is exact.

    1. An export in time order (the usual): a stable radix sort by series alone (16-bit keys)
       puts every series' rows in time order; kept when time strictly increases within each
       series, so no two rows tie and the value never decides.
    2. Otherwise one stable radix sort of a 63-bit key ``sid << b | (t - min t)``, kept when no
       two rows share series and time.
    3. Otherwise (repeats, conflicts, a key that does not fit) the three-column sort of polars.
    """
    if sid.size > 1 and int(sid.min()) >= 0:
        n_series = int(sid.max()) + 1
        if n_series < 1 << 15:
            order = np.argsort(sid.astype(np.int16), kind="stable")
            t_s = t[order]
            s_s = np.repeat(np.arange(n_series, dtype=np.int32), np.bincount(sid, minlength=n_series))
            if not ((s_s[1:] == s_s[:-1]) & (t_s[1:] <= t_s[:-1])).any():
                return pl.DataFrame({"sid": s_s, "t": t_s, "v": v[order]})
        bits = n_series.bit_length()
        t0 = int(t.min())
        if int(t.max()) - t0 < 1 << (63 - bits):
            key = (sid.astype(np.int64) << (63 - bits)) | (t - t0)
            order = np.argsort(key, kind="stable")
            key = key[order]
            if not (key[1:] == key[:-1]).any():
                return pl.DataFrame({"sid": sid[order], "t": t[order], "v": v[order]})
    return pl.DataFrame({"sid": sid, "t": t, "v": v}).sort(["sid", "t", "v"], multithreaded=True)


def _repeats(df: pl.DataFrame) -> pl.Series:
    """Rows equal to the previous one (the frame is sorted by sid, t, v)."""
    same = (
        (pl.col("sid") == pl.col("sid").shift(1))
        & (pl.col("t") == pl.col("t").shift(1))
        & (pl.col("v") == pl.col("v").shift(1))
    )
    return df.select(same.fill_null(False)).to_series()


def _chunk_rows(sid: np.ndarray, ts: np.ndarray, lo: np.ndarray, hi: np.ndarray, c0: float, c1: float) -> np.ndarray:
    """Row indices of every series' readings in [c0, c1] plus MARGIN_ROWS on each side."""
    idx: list[np.ndarray] = []
    for s in np.flatnonzero(hi > lo).tolist():
        a, b = int(lo[s]), int(hi[s])
        seg = ts[a:b]
        i0 = a + int(np.searchsorted(seg, c0, side="left")) - MARGIN_ROWS
        i1 = a + int(np.searchsorted(seg, c1, side="right")) + MARGIN_ROWS
        i0, i1 = max(i0, a), min(i1, b)
        if i1 > i0:
            idx.append(np.arange(i0, i1))
    return np.concatenate(idx) if idx else np.zeros(0, np.int64)
