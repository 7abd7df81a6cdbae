"""`pue report` of a month of 1-minute readings: N meters x 31 days (1,000 meters: 44.6 million readings).

    python -m benchmarks.bench_report [--meters 1000 --days 31]

The store is generated once (numpy, the store's bulk insert) and cached under
``$TMPDIR/pue-bench-report/`` with its site file (1,000 ``protocol: import`` meters, the role mix of
bench_ingest: one facility incomer per 50, cooling, distribution, lighting, IT at the three
measurement locations); October 2026 in Europe/Berlin (a 25-hour day at the DST change). Each run
reports the month end to end with the real command (``pue report --format json,csv``) in a
subprocess and prints a markdown table of the time of each stage, as the command reports it in its
``--json`` summary, with the wall time and peak memory of the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from benchmarks.bench_ingest import _meter

TZ = "Europe/Berlin"
MONTH = "2026-10"
T0 = datetime(2026, 10, 1, tzinfo=ZoneInfo(TZ)).timestamp()


def generate(folder: Path, meters: int, days: int, seed: int = 0) -> tuple[Path, Path]:
    """Write (once) store.sqlite and site.yaml: ``meters`` x ``days`` of 1-minute counter readings
    from local midnight of 2026-10-01 (plus one reading at the end, the month's closing boundary)."""
    from pue_monitor.sinks.sqlite import SqliteStore

    folder.mkdir(parents=True, exist_ok=True)
    store_path, site = folder / "store.sqlite", folder / "site.yaml"
    done = folder / "done"
    if done.exists() and store_path.exists() and site.exists():
        return store_path, site
    store_path.unlink(missing_ok=True)
    lines, kw = [], np.empty(meters)
    for i in range(meters):
        text, kw[i] = _meter(i)
        lines.append(text)
    site.write_text(
        f"site: {{id: bench, timezone: {TZ}}}\nprometheus: {{enabled: false}}\n"
        f"store: {{path: {store_path}}}\ndevices:\n" + "".join(lines)
    )
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
        store.bulk_insert_readings("bench", series(), expected_rows=meters * n)
    finally:
        store.close()
    done.write_text("ok\n")
    return store_path, site


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pue-bench-report")
    args = ap.parse_args(argv)
    folder = args.dir / f"{args.meters}x{args.days}"
    t = time.perf_counter()
    store, site = generate(folder, args.meters, args.days)
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
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    readings = summary.get("readings", 0)
    print(f"{args.meters:,} meters x {args.days} days of 1-minute readings ({readings:,} read), {MONTH}, {TZ}")
    print(f"(store generated in {gen_s:.1f} s, cached in {folder})\n")
    print("| stage | seconds |\n|---|---:|")
    for stage, s in summary.get("seconds", {}).items():
        print(f"| {stage} | {s:.2f} |")
    print(f"| **end to end (process wall time)** | **{wall:.2f}** |")
    print(f"\npeak memory {peak:,.0f} MiB; PUE {summary.get('pue')}; target < 10 s end to end")


if __name__ == "__main__":
    main()
