"""`pue report` of a month of 1-minute readings: N meters x 31 days (1,000 meters: 44.8 million readings).

    python -m benchmarks.bench_report [--meters 1000 --days 31] [--layout files|table]

The store is generated once (numpy) and cached under ``$TMPDIR/pue-bench-report/`` with its site
file. ``--layout files`` (the default, what a running store holds after compaction): the readings
are in the store's Parquet day files (one per UTC day, ``<store>.readings/``), the table empty;
``--layout table`` (before day files): all readings in the SQLite ``readings`` table (the store's
bulk insert). Site file: (1,000 ``protocol: import`` meters, the role mix of
bench_ingest: one facility incomer per 50, cooling, distribution, lighting, IT at the three
measurement locations); October 2026 in Europe/Berlin (a 25-hour day at the DST change). Each run
reports the month end to end with the real command (``pue report --format json,csv``) in a
subprocess and prints a markdown table of the time of each stage, as the command reports it in its
``--json`` summary, with the wall time and peak memory of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from benchmarks.bench_ingest import TZ, write_site

MONTH = "2026-10"
T0 = datetime(2026, 10, 1, tzinfo=ZoneInfo(TZ)).timestamp()


def generate(folder: Path, meters: int, days: int, seed: int = 0, layout: str = "files") -> tuple[Path, Path]:
    """Write (once) store.sqlite and site.yaml: ``meters`` x ``days`` of 1-minute counter readings
    from local midnight of 2026-10-01 (plus one reading at the end, the month's closing boundary),
    in day files (``layout="files"``) or in the table (``"table"``)."""
    from pue_monitor.sinks.sqlite import SqliteStore

    folder.mkdir(parents=True, exist_ok=True)
    store_path, site = folder / "store.sqlite", folder / "site.yaml"
    done = folder / "done"
    if done.exists() and store_path.exists() and site.exists():
        return store_path, site
    store_path.unlink(missing_ok=True)
    kw = write_site(site, store_path, meters)
    rng = np.random.default_rng(seed)
    n = days * 1440 + 60 + 1  # 31 days of minutes, the 25th hour of Oct 25, the closing reading
    t = T0 + 60.0 * np.arange(n)

    def series():  # type: ignore[no-untyped-def]
        for i in range(meters):
            p = kw[i] * (1 + 0.1 * rng.standard_normal(n))
            cum = rng.uniform(1e3, 1e5) + np.cumsum(np.maximum(p, 0) / 60.0)
            unit = "Wh" if i % 7 == 0 else "kWh"
            yield f"m{i:04d}", "energy", unit, t, cum * (1000.0 if unit == "Wh" else 1.0)

    store = SqliteStore(store_path)
    try:
        if layout == "table":
            store.bulk_insert_readings("bench", series(), expected_rows=meters * n)
        else:
            _write_days(store, list(series()), t)
    finally:
        store.close()
    done.write_text("ok\n")
    return store_path, site


def _write_days(store: Any, series: list[tuple[str, str, str, np.ndarray, np.ndarray]], t: np.ndarray) -> None:
    """The readings as the store's day files (one per UTC day), the way compaction leaves them."""
    from pue_monitor.sinks.readings_archive import day_of, encode_day

    day = day_of(float(t[0]))
    while True:
        d0 = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        a, b = (int(x) for x in np.searchsorted(t, [d0, d0 + 86400.0]))
        if a >= t.size:
            break
        k = b - a
        frame = encode_day(
            device=np.repeat(np.asarray([s[0] for s in series], object), k),
            point=np.full(k * len(series), "energy", object),
            ts=np.tile(t[a:b], len(series)),
            value=np.concatenate([s[4][a:b] for s in series]),
            quality=np.zeros(k * len(series), np.int8),
            unit=np.repeat(np.asarray([s[2] for s in series], object), k),
            tags=np.full(k * len(series), "", object),
        )
        store.add_day("bench", day, frame)
        day += timedelta(days=1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--layout", choices=("files", "table"), default="files")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pue-bench-report")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    folder = args.dir / f"{args.meters}x{args.days}-{args.layout}"
    t = time.perf_counter()
    store, site = generate(folder, args.meters, args.days, layout=args.layout)
    gen_s = time.perf_counter() - t
    out = folder / "out"
    cmd = [sys.executable, "-m", "pue_monitor", "report", "--config", str(site), "--month", MONTH,
           "--format", "json,csv", "--out", str(out), "--db", str(store), "--json"]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"pue report failed ({proc.returncode}): {proc.stderr.strip()}")
    summary = json.loads(proc.stdout)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = usage.ru_maxrss / 1024  # the largest process (the report or one of its workers)
    cpu = usage.ru_utime + usage.ru_stime  # the report and its worker processes
    readings = summary.get("readings", 0)
    print(
        f"{args.meters:,} meters x {args.days} days of 1-minute readings ({readings:,} read), {MONTH}, {TZ}, "
        f"readings in {'day files' if args.layout == 'files' else 'the SQLite table'}"
    )
    print(f"(store generated in {gen_s:.1f} s, cached in {folder})\n")
    print("| stage | seconds |\n|---|---:|")
    for stage, s in summary.get("seconds", {}).items():
        print(f"| {stage} | {s:.2f} |")
    print(f"| **end to end (process wall time)** | **{wall:.2f}** |")
    print(f"| CPU seconds (user + system, the report and its workers) | {cpu:.2f} |")
    print(
        f"\npeak memory {peak:,.0f} MiB (largest process); PUE {summary.get('pue')}; target < 10 s end to end; "
        f"load average {os.getloadavg()[0]:.1f} (before: {load0:.1f}) on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
