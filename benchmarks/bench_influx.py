"""Points per second written to real servers from one process, by batch size.

    python -m benchmarks.bench_influx [--points 500000] [--batch-sizes 1000,5000,20000]

The whole sink path: readings → line protocol (bulk, cached series prefixes) → durable
spool (gzip, SQLite) → HTTP write, until the server acknowledged every batch.
Servers: VictoriaMetrics (v2 write API through influxdb-client) and Debian's InfluxDB 1.6
(1.x /write), each started on a free loopback port in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from pue_monitor.config.models import InfluxConfig
from pue_monitor.readings import Reading
from pue_monitor.sinks.influx import InfluxSink
from pue_monitor.sinks.lineprotocol import LineBuilder

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from servers import InfluxDB1, Server, VictoriaMetrics

T0 = 1_780_000_000.0


def synth(n: int, meters: int = 1000) -> list[Reading]:
    return [
        Reading(T0 + 60.0 * (i // meters), "dc1", f"m{i % meters:04d}", "import_energy", 1000.0 + i * 0.01, "kWh")
        for i in range(n)
    ]


async def _write(url: str, readings: list[Reading], batch: int, tmp: Path) -> tuple[float, float, str]:
    cfg = InfluxConfig(url=url, bucket="pue", batch_size=batch, flush_interval=0.05,
                       spool={"path": str(tmp / f"spool-{batch}.sqlite")})  # fmt: skip
    sink = InfluxSink(cfg)
    await sink.start()
    t0 = time.perf_counter()
    lb = LineBuilder()
    for i in range(0, len(readings), batch):
        sink.submit(lb.readings(readings[i : i + batch]))
        await sink.flush()  # a full batch goes to the spool, then to the server
    while sink.stats.points_written < len(readings):
        if sink.stats.batches_quarantined:
            raise RuntimeError("points were rejected")
        await asyncio.sleep(0.005)
    took = time.perf_counter() - t0
    t1 = time.perf_counter()
    LineBuilder().readings(readings)
    build = time.perf_counter() - t1
    await sink.close()
    return took, build, sink.stats.api


def run(points: int, batch_sizes: list[int]) -> list[dict[str, object]]:
    readings = synth(points)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, make in (("VictoriaMetrics 1.79", VictoriaMetrics), ("InfluxDB 1.6", InfluxDB1)):
            sdir = tmp / name.split()[0]
            sdir.mkdir()
            server: Server = make(sdir)
            server.start()
            if isinstance(server, InfluxDB1):
                server.create_db("pue")
            try:
                for b in batch_sizes:
                    took, build, api = asyncio.run(_write(server.url, readings, b, sdir))  # type: ignore[attr-defined]
                    rows.append({"server": name, "api": api, "batch": b, "points": points, "seconds": took,
                                 "points_per_s": points / took, "build_per_s": points / build})  # fmt: skip
            finally:
                server.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=500_000)
    ap.add_argument("--batch-sizes", default="1000,5000,20000")
    args = ap.parse_args(argv)
    rows = run(args.points, [int(b) for b in args.batch_sizes.split(",")])
    print("| server | write API | batch | points | seconds | points/s written | line protocol built/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['api']} | {r['batch']:,} | {r['points']:,} | {r['seconds']:.2f} | "
              f"{r['points_per_s']:,.0f} | {r['build_per_s']:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
