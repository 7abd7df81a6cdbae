"""`pue ingest-csv` of a month of 1-minute readings: N meters x 31 days (1,000 meters: 43 million rows).

    python -m benchmarks.bench_ingest [--meters 1000 --days 31 --reingest]

The export is generated once (numpy + polars) and cached under ``$TMPDIR/pue-bench-ingest/``
with its site file (1,000 ``protocol: import`` meters: one facility incomer per 50, cooling,
distribution, lighting and IT at the three measurement locations; every 7th counter in Wh);
each run ingests it into a fresh store with the real command in a subprocess and prints a
markdown table with the time of each stage, as the command reports it in its ``--json`` summary.
``--reingest`` runs the same file a second time into the same store (nothing new: every row is
already stored) and times that too.
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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp() - 3600  # 2026-01-01 00:00 Europe/Berlin
TZ = "Europe/Berlin"


def _meter(i: int) -> tuple[str, float]:
    """(device yaml, mean kW) of meter i, with the role mix of bench_pipeline; the CSV is in kWh,
    the store keeps a Wh counter's readings in Wh."""
    unit = "Wh" if i % 7 == 0 else "kWh"
    units = f", units: {{energy: {unit}}}" if unit != "kWh" else ""
    if i % 50 == 0:
        role, kw = "{role: facility_input, energy: energy}", 1500.0
    elif i % 5 == 1:
        role, kw = "{role: cooling, energy: energy}", 30.0
    elif i % 25 == 2:
        role, kw = "{role: power_distribution, energy: energy}", 5.0
    elif i % 25 == 3:
        role, kw = "{role: lighting, energy: energy}", 1.0
    else:
        loc = ("ups_output", "pdu_output", "it_equipment_input")[i % 3]
        role, kw = f"{{role: it, it_location: {loc}, energy: energy}}", 20.0
    return f"  - {{id: m{i:04d}, protocol: import, interval: 60, meter: {role}{units}}}\n", kw


def write_site(site: Path, store: Path, meters: int) -> np.ndarray:
    """Write the site file of ``meters`` import meters (the mix of :func:`_meter`, timezone
    :data:`TZ`, store at ``store``); returns each meter's mean kW."""
    lines, kw = [], np.empty(meters)
    for i in range(meters):
        text, kw[i] = _meter(i)
        lines.append(text)
    site.write_text(
        f"site: {{id: bench, timezone: {TZ}}}\nprometheus: {{enabled: false}}\n"
        f"store: {{path: {store}}}\ndevices:\n" + "".join(lines)
    )
    return kw


def generate(folder: Path, meters: int, days: int, seed: int = 0) -> tuple[Path, Path]:
    """Write (once) export.csv and site.yaml for ``meters`` x ``days`` of 1-minute readings."""
    folder.mkdir(parents=True, exist_ok=True)
    csv, site = folder / "export.csv", folder / "site.yaml"
    if csv.exists() and site.exists():
        return csv, site
    kw = write_site(site, folder / "unused.sqlite", meters)
    rng = np.random.default_rng(seed)
    names = pl.Series([f"m{i:04d}" for i in range(meters)])
    counter = rng.uniform(1e3, 1e5, meters)
    tmp = csv.with_suffix(".part")
    with tmp.open("wb") as f:
        f.write(b"timestamp,meter,quantity,value\n")
        for d in range(days):
            t = T0 + d * 86400 + 60.0 * np.arange(1440)[:, None] + rng.integers(0, 3, (1440, meters))
            p = kw[None, :] * (1 + 0.1 * rng.standard_normal((1440, meters)))
            cum = counter[None, :] + np.cumsum(np.maximum(p, 0) / 60.0, axis=0)
            counter = cum[-1]
            df = pl.DataFrame(
                {
                    "timestamp": pl.Series((t.ravel() * 1e6).astype(np.int64)).cast(pl.Datetime("us", "UTC")),
                    "meter": pl.concat([names] * 1440),
                    "quantity": pl.repeat("energy_kwh", 1440 * meters, eager=True),
                    "value": np.round(cum.ravel(), 3),
                }
            ).with_columns(pl.col("timestamp").dt.convert_time_zone(TZ))
            df.write_csv(f, include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%:z")
    tmp.rename(csv)
    return csv, site


def _run(csv: Path, site: Path, store: Path) -> tuple[dict, float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pue_monitor", "ingest-csv", str(csv), "--config", str(site), "--store", str(store),
         "--json", "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"ingest-csv failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # MiB (Linux: KiB)
    return json.loads(proc.stdout), wall, rss


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--reingest", action="store_true", help="also time a second run of the same file")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pue-bench-ingest")
    args = ap.parse_args(argv)
    folder = args.dir / f"{args.meters}x{args.days}d"
    t0 = time.perf_counter()
    existed = (folder / "export.csv").exists()
    csv, site = generate(folder, args.meters, args.days)
    gen = "cached" if existed else f"generated in {time.perf_counter() - t0:.0f} s"
    store = folder / "bench.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    runs = [("first ingest", *_run(csv, site, store))]
    store_mb = sum(os.path.getsize(f"{store}{s}") for s in ("", "-wal") if os.path.exists(f"{store}{s}")) / 1e6
    if args.reingest:
        runs.append(("re-ingest (all stored)", *_run(csv, site, store)))
    rows = runs[0][1]["rows"]
    print(
        f"{args.meters} meters x {args.days} days of 1-minute readings: {rows:,} rows, "
        f"CSV {csv.stat().st_size / 1e9:.2f} GB ({gen}, {csv}); store after ingest {store_mb / 1e3:.2f} GB; "
        f"{os.cpu_count()} cores\n"
    )
    stages = list(runs[0][1]["seconds"])
    print("| run | " + " | ".join(stages) + " | total (wall) | rows/s | inserted | peak RSS |")
    print("|---|" + "---:|" * (len(stages) + 4))
    for name, summary, wall, rss in runs:
        cells = " | ".join(f"{summary['seconds'].get(s, 0.0):.1f} s" for s in stages)
        print(f"| {name} | {cells} | {wall:.1f} s | {rows / wall:,.0f} | {summary['inserted']:,} | {rss:,.0f} MiB |")


if __name__ == "__main__":
    main()
