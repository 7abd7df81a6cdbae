"""Cost of the status answers: `pue status --db` on a large store, GET /status on a large site.

    python -m benchmarks.bench_status [--devices 50 --points 4 --readings 20000 --site-devices 500]

1. A store of devices x points series with ``readings`` readings each (4 M by default): the
   newest reading of every series as `pue status --db` finds it (index seeks,
   :meth:`StoreReader.last_per_series`) against a ``GROUP BY`` scan of the readings.
2. A service with ``site-devices`` Modbus devices (never polled: a manual clock that does not
   move), its HTTP endpoint on loopback: the wall time of GET /status (the document built on the
   event loop, serialised, sent) and its size, and of GET /readyz, median and max of 50.

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

T0 = 1_780_000_000.0


def bench_store(devices: int, points: int, readings: int, repeat: int = 3) -> dict[str, Any]:
    from pue_monitor.sinks.sqlite import StoreReader, open_store

    with tempfile.TemporaryDirectory(prefix="pue-bench-status-") as tmp:
        path = Path(tmp) / "store.sqlite"
        open_store(path).close()
        conn = sqlite3.connect(path)
        rows = (
            (T0 + 15.0 * i, "s", f"dev-{d:04d}", f"p{p}", 1.0, "kW", 0, "")
            for i in range(readings)
            for d in range(devices)
            for p in range(points)
        )
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.commit()
        conn.close()
        reader = StoreReader(path)
        try:
            seeks, scans = [], []
            for _ in range(repeat):
                t = time.perf_counter()
                found = reader.last_per_series()
                seeks.append(time.perf_counter() - t)
                t = time.perf_counter()
                scanned = reader._conn.execute(
                    "SELECT device, point, max(ts) FROM readings GROUP BY device, point"
                ).fetchall()
                scans.append(time.perf_counter() - t)
            assert {(r["device"], r["point"]): r["ts"] for r in found} == {(r[0], r[1]): r[2] for r in scanned}
        finally:
            reader.close()
    return {
        "readings": devices * points * readings,
        "series": devices * points,
        "seek_ms": 1000 * min(seeks),
        "scan_ms": 1000 * min(scans),
    }


def _site(devices: int) -> dict[str, Any]:
    dev = {"protocol": "modbus", "host": "127.0.0.1", "profile": "eastron-sdm630"}
    return {
        "site": {"id": "bench"},
        "prometheus": {"port": 0},
        "store": {"enabled": False},
        "devices": [
            {**dev, "id": "inc", "port": 9, "meter": {"role": "facility_input", "energy": "import_energy"}},
            {
                **dev,
                "id": "it",
                "port": 9,
                "unit_id": 2,
                "meter": {"role": "it", "it_location": "pdu_output", "energy": "import_energy"},
            },
            *({**dev, "id": f"m{i}", "port": 10000 + i} for i in range(devices - 2)),
        ],
    }


def _get(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            n = len(resp.read())
    except urllib.error.HTTPError as exc:  # /readyz: 503 (no device polled yet)
        n = len(exc.read())
    return time.perf_counter() - t, n


async def bench_endpoint(devices: int, n: int = 50) -> list[dict[str, Any]]:
    from pue_monitor.clock import ManualClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.service import Service

    svc = Service(site_from_dict(_site(devices), source="<bench>"), clock=ManualClock(T0), tick=0.1)
    assert svc.prometheus is not None
    stop = asyncio.Event()
    run = asyncio.create_task(svc.run(stop))
    out = []
    try:
        for _ in range(1000):  # the first service step: the endpoint answers from the loop
            if svc.status._steps:
                break
            await asyncio.sleep(0.01)
        for path in ("/status", "/readyz"):
            times, size = [], 0
            for _ in range(n):
                dt, size = await asyncio.to_thread(_get, svc.prometheus.base_url + path)
                times.append(dt)
            out.append(
                {
                    "path": path,
                    "devices": devices,
                    "bytes": size,
                    "median_ms": 1000 * statistics.median(times),
                    "max_ms": 1000 * max(times),
                }
            )
    finally:
        stop.set()
        await run
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--readings", type=int, default=20000, help="readings per series")
    ap.add_argument("--site-devices", type=int, default=500)
    a = ap.parse_args(argv)
    s = bench_store(a.devices, a.points, a.readings)
    print("| readings | series | newest per series, index seeks | GROUP BY scan |")
    print("|---:|---:|---:|---:|")
    print(f"| {s['readings']:,} | {s['series']:,} | {s['seek_ms']:.1f} ms | {s['scan_ms']:.0f} ms |")
    print()
    print("| path | devices | bytes | median | max |")
    print("|---|---:|---:|---:|---:|")
    for r in asyncio.run(bench_endpoint(a.site_devices)):
        print(f"| {r['path']} | {r['devices']} | {r['bytes']:,} | {r['median_ms']:.1f} ms | {r['max_ms']:.1f} ms |")


if __name__ == "__main__":
    main()
