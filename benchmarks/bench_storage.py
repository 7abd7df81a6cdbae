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
2. Insert cost. The ``readings`` table filled to each of ``--sizes`` million rows (1,000 series
   at 1 s), then 30 ticks of 1,000 readings (1,000 meters at 1 s) written as the store output
   writes them (one transaction a tick), and 3 transactions of ten ticks each: µs per reading.
   Before day files the table held all history (its size grows without end); with them it
   holds the open UTC day (plus an hour).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

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


def insert_cost(folder: Path, sizes: list[float], ticks: int = 30, per_tick: int = 1000) -> None:
    from pue_monitor.readings import Reading
    from pue_monitor.sinks.sqlite import SqliteStore

    print(f"## Insert cost of the live writes ({per_tick:,} readings a tick, one transaction each) vs table size\n")
    print(
        "| readings in the table | µs per reading, a tick a transaction (median / slowest) | ten ticks a transaction |"
    )
    print("|---:|---:|---:|")
    db = folder / "insert.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = SqliteStore(db)
    have = 0
    rng = np.random.default_rng(1)
    t_next = T0
    for size in sizes:
        want = int(size * 1e6)
        if want > have:  # history: per_tick series at 1 s, the rows a day of polls leaves
            k = (want - have) // per_tick
            ts = t_next + np.arange(k, dtype=np.float64)
            t_next += k

            def fill(ts: np.ndarray = ts, k: int = k) -> Iterator[tuple[str, str, str, np.ndarray, np.ndarray]]:
                for i in range(per_tick):
                    yield f"m{i:04d}", "energy", "kWh", ts, np.cumsum(rng.uniform(0, 1, k))

            store.bulk_insert_readings("bench", fill(), expected_rows=k * per_tick)
            have += k * per_tick
        row = []
        for per_commit, n in ((1, ticks), (10, max(3, ticks // 10))):  # ticks written per transaction
            spent = []
            for _ in range(n):
                batch = []
                for _ in range(per_commit):
                    batch += [Reading(t_next, "bench", f"m{i:04d}", "energy", float(i), "kWh") for i in range(per_tick)]
                    t_next += 1.0
                c = time.perf_counter()
                store.write(batch, now=t_next)
                spent.append((time.perf_counter() - c) / len(batch) * 1e6)
                have += len(batch)
            row.append(f"{float(np.median(spent)):.1f} / {max(spent):.1f}")
        print(f"| {have:,} | {row[0]} | {row[1]} |")
    store.close()
    print()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--meters", type=int, default=100)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--sizes", default="0,0.1,1,2.4,10", help="table sizes, million readings")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pue-bench-storage")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start)\n")
    bytes_per_reading(args.dir, args.meters, args.hours)
    insert_cost(args.dir, [float(x) for x in args.sizes.split(",")])


if __name__ == "__main__":
    main()
