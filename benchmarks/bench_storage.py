"""Storage plan for 1 s polls: bytes per raw reading in the SQLite table vs the day files,
projected to a year of 1,000 meters at 1 s, and the table's insert cost vs its size.

    python -m benchmarks.bench_storage [--meters 100 --hours 6] [--sizes 0,1,2.4,5,10]

1. Bytes per reading. ``--meters`` meters polled every second for ``--hours`` hours, stamps as
   the runner takes them (the poll's start: 1 s apart plus a few ms of jitter, to the µs), the
   role mix of bench_ingest, values as the meters deliver them:

   * ``counter``: each meter's energy counter, a float32 kWh register (Modbus power meters) or,
     every 7th meter, an integer Wh counter (SNMP PDUs);
   * ``counter + power``: the same plus the meter's power, a float32 kW register with 2 % noise;
   * ``float64 noise`` (worst case): a counter with every bit of its float64 random (a gateway
     that computes energy itself and rounds nothing).

   Each is written into a fresh store's table (the bulk insert; the table's size per reading
   with its index, as ``pue run`` writes it) and as one day file (``encode_day``: what
   compaction writes), and projected to 1,000 meters x 1 s x 365 days.
2. Insert cost. Per ``--series`` count (1,000 and 10,000 meters at 1 s), the ``readings``
   table filled to each of ``--sizes`` million rows (that many series at 1 s), then ticks of
   one reading a series written as the store output writes them (one transaction a tick, the
   clock 1 s a tick): *before*, straight into ``readings`` (what ``pue run`` did until schema
   8; ``SqliteStore``'s default, kept for tools and backfills); *after*, into the index-free
   staging table, moved into ``readings`` once a minute (``pue run`` since schema 8): two
   minutes, so the figure includes two moves. With day files the table holds the open UTC day
   (plus an hour): 86 M rows at 1,000 meters at 1 s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_ingest import _meter

T0 = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
YEAR_READINGS_PER_METER = 365 * 86400  # one reading per second


def _series(
    meters: int, hours: float, mix: str, seed: int = 0
) -> Iterator[tuple[str, str, str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    for i in range(meters):
        _, kw = _meter(i)
        # the runner's stamps: the poll's start, 1 s apart, a few ms late, to the microsecond
        ts = np.round(T0 + (i % 1000) * 1e-3 + np.arange(n) + np.abs(rng.normal(0, 0.002, n)), 6)
        p = kw * (1 + 0.02 * rng.standard_normal(n))
        cum_kwh = rng.uniform(1e3, 1e5) + np.cumsum(p) / 3600.0
        if mix == "float64 noise":
            yield f"m{i:04d}", "energy", "kWh", ts, cum_kwh + rng.uniform(0, 1e-3, n)
            continue
        if i % 7 == 0:
            yield f"m{i:04d}", "energy", "Wh", ts, np.floor(cum_kwh * 1000.0)
        else:
            yield f"m{i:04d}", "energy", "kWh", ts, cum_kwh.astype(np.float32).astype(np.float64)
        if mix == "counter + power":
            yield f"m{i:04d}", "power", "kW", ts, p.astype(np.float32).astype(np.float64)


def _table_bytes(folder: Path, series: list[tuple[str, str, str, np.ndarray, np.ndarray]]) -> tuple[int, int]:
    from pue_monitor.sinks.sqlite import SqliteStore, connect

    db = folder / "table.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = SqliteStore(db)
    rows = sum(s[3].size for s in series)
    store.bulk_insert_readings("bench", sorted(series, key=lambda s: (s[0], s[1])), expected_rows=rows)
    store.close()
    conn = connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # the readings table and its index only (the empty other tables are a few pages)
    used = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name IN ('readings', 'readings_series')").fetchone()[0]
    conn.close()
    return int(used), rows


def _file_bytes(folder: Path, series: list[tuple[str, str, str, np.ndarray, np.ndarray]]) -> tuple[int, int]:
    from pue_monitor.sinks.readings_archive import encode_day, write_day

    frame = encode_day(
        device=np.concatenate([np.full(s[3].size, s[0], object) for s in series]),
        point=np.concatenate([np.full(s[3].size, s[1], object) for s in series]),
        ts=np.concatenate([s[3] for s in series]),
        value=np.concatenate([s[4] for s in series]),
        quality=np.zeros(sum(s[3].size for s in series), np.int8),
        unit=np.concatenate([np.full(s[3].size, s[2], object) for s in series]),
        tags=np.full(sum(s[3].size for s in series), "", object),
    )
    path, size = write_day(folder / "files", date(2026, 10, 1), 0, frame)
    path.unlink()
    return size, frame.height


def bytes_per_reading(folder: Path, meters: int, hours: float) -> None:
    print(f"## Bytes per reading: {meters} meters at 1 s for {hours:g} h, projected to 1,000 meters x 1 s x 1 year\n")
    print("| values | readings | table B/reading (with index) | day file B/reading | year, table | year, day files |")
    print("|---|---:|---:|---:|---:|---:|")
    for mix in ("counter", "counter + power", "float64 noise"):
        series = list(_series(meters, hours, mix))
        t_bytes, rows = _table_bytes(folder, series)
        f_bytes, f_rows = _file_bytes(folder, series)
        assert rows == f_rows
        per_meter = rows / meters  # readings per meter in the sample
        year = 1000 * YEAR_READINGS_PER_METER * per_meter / (hours * 3600)
        print(
            f"| {mix} | {rows:,} | {t_bytes / rows:.1f} | {f_bytes / rows:.2f} | "
            f"{year * t_bytes / rows / 1e9:,.0f} GB | {year * f_bytes / rows / 1e9:,.1f} GB |"
        )
    print()


def _ticks(store: Any, n: int, per_tick: int, t_next: float) -> tuple[list[float], float, float]:
    """``n`` ticks of ``per_tick`` readings (one a series, 1 s apart), one ``write`` each:
    (µs per reading of each tick, total seconds, the clock after)."""
    from pue_monitor.readings import Reading

    spent = []
    total = 0.0
    for _ in range(n):
        batch = [Reading(t_next, "bench", f"m{i:05d}", "energy", float(i), "kWh") for i in range(per_tick)]
        c = time.perf_counter()
        store.write(batch, now=t_next)
        dt = time.perf_counter() - c
        spent.append(dt / per_tick * 1e6)
        total += dt
        t_next += 1.0
    return spent, total, t_next


def insert_cost(folder: Path, sizes: list[float], series_counts: list[int], before_ticks: int = 20) -> None:
    from pue_monitor.sinks.sqlite import STAGE_SECONDS, SqliteStore

    stage_ticks = 2 * int(STAGE_SECONDS)  # two minutes of 1 s ticks: two moves
    print("## Insert cost of the live writes vs table size (one transaction a tick, 1 s ticks)\n")
    print(
        f"before: every tick into `readings` ({before_ticks} ticks); after: every tick into the staging table, "
        f"moved into `readings` once a minute ({stage_ticks} ticks, two moves)\n"
    )
    print(
        "| series (readings a tick) | readings in the table | before: µs/reading, median / slowest tick "
        "| after: µs/reading over the two minutes, moves included | after: median / slowest tick "
        "| after: one move, s (µs/reading moved) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(1)
    for per_tick in series_counts:
        db = folder / f"insert-{per_tick}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        have = 0
        t_next = T0
        for size in sizes:
            want = int(size * 1e6)
            store = SqliteStore(db)
            if want > have:  # history: per_tick series at 1 s, as a day of polls leaves it
                k = (want - have) // per_tick
                ts = t_next + np.arange(k, dtype=np.float64)
                t_next += k

                def fill(ts: np.ndarray = ts, k: int = k, n: int = per_tick) -> Iterator[Any]:
                    for i in range(n):
                        yield f"m{i:05d}", "energy", "kWh", ts, np.cumsum(rng.uniform(0, 1, k))

                store.bulk_insert_readings("bench", fill(), expected_rows=k * per_tick)
                have += k * per_tick
            at = have
            before, _, t_next = _ticks(store, before_ticks, per_tick, t_next)
            have += before_ticks * per_tick
            store.close()
            store = SqliteStore(db, stage_seconds=STAGE_SECONDS)
            after, total, t_next = _ticks(store, stage_ticks, per_tick, t_next)
            have += stage_ticks * per_tick
            moves = list(store.moves)
            store.close()
            move = max(moves, key=lambda m: m[1]) if moves else (0, 0.0)
            print(
                f"| {per_tick:,} | {at:,} | {float(np.median(before)):.1f} / {max(before):.1f} "
                f"| {total / (stage_ticks * per_tick) * 1e6:.1f} | {float(np.median(after)):.1f} / {max(after):.1f} "
                f"| {move[1]:.2f} ({move[1] / max(1, move[0]) * 1e6:.1f}) |",
                flush=True,
            )
    print()


def candidates(folder: Path, series: int = 1000, rows: int = 1_000_000, ticks: int = 20) -> None:
    """The layouts set aside, in plain SQLite (no pue-monitor code): a rowid table with the
    series index (what ``readings`` is), the same with a 64 MiB page cache, and a WITHOUT ROWID
    table clustered on (device, point, ts, seq); ``rows`` readings of ``series`` series, then
    ``ticks`` ticks of one reading a series, one transaction each, WAL + synchronous=NORMAL."""
    print(f"## Layouts set aside: {series:,} series a tick, {rows:,} readings in the table\n")
    print("| layout | µs per reading, median / slowest tick |")
    print("|---|---:|")
    plain = "INSERT INTO r VALUES (?, 'b', ?, ?, ?, 'kWh', 0, '')"
    clustered = "INSERT INTO r VALUES (?, ?, ?, 0, 'b', ?, 'kWh', 0, '')"
    for kind in ("rowid table + (device, point, ts) index", "the same, cache_size 64 MiB", "WITHOUT ROWID"):
        db = folder / "candidate.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        wr = kind == "WITHOUT ROWID"
        if wr:
            conn.execute(
                "CREATE TABLE r (device TEXT, point TEXT, ts REAL, seq INTEGER, site TEXT, value REAL, unit TEXT, "
                "quality INTEGER, tags TEXT, PRIMARY KEY (device, point, ts, seq)) WITHOUT ROWID"
            )
        else:
            conn.execute(
                "CREATE TABLE r (ts REAL, site TEXT, device TEXT, point TEXT, value REAL, unit TEXT, quality INTEGER, "
                "tags TEXT)"
            )
            conn.execute("CREATE INDEX r_series ON r (device, point, ts)")
        if "cache_size" in kind:
            conn.execute("PRAGMA cache_size = -65536")
        k = rows // series
        hist = np.arange(k, dtype=np.float64).tolist()
        with conn:
            for i in range(series):
                d = f"m{i:05d}"
                if wr:
                    conn.executemany(clustered, ((d, "energy", t, t) for t in hist))
                else:
                    conn.executemany(plain, ((t, d, "energy", t) for t in hist))
        t_next = float(k)
        spent = []
        for _ in range(ticks):
            batch = [
                (f"m{i:05d}", "energy", t_next, float(i)) if wr else (t_next, f"m{i:05d}", "energy", float(i))
                for i in range(series)
            ]
            c = time.perf_counter()
            with conn:
                conn.executemany(clustered if wr else plain, batch)
            spent.append((time.perf_counter() - c) / series * 1e6)
            t_next += 1.0
        conn.close()
        print(f"| {kind} | {float(np.median(spent)):.1f} / {max(spent):.1f} |", flush=True)
    print()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--meters", type=int, default=100)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--sizes", default="0,1,5", help="table sizes, million readings")
    ap.add_argument("--series", default="1000,10000", help="series written per tick (insert cost)")
    ap.add_argument("--skip-bytes", action="store_true", help="the insert cost only")
    ap.add_argument("--candidates", action="store_true", help="also the layouts set aside (plain SQLite)")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pue-bench-storage")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start)\n")
    if not args.skip_bytes:
        bytes_per_reading(args.dir, args.meters, args.hours)
    insert_cost(args.dir, [float(x) for x in args.sizes.split(",")], [int(x) for x in args.series.split(",")])
    if args.candidates:
        candidates(args.dir)


if __name__ == "__main__":
    main()
