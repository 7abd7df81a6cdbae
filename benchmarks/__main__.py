"""Run the benchmarks and print their tables: `python -m benchmarks [NAME ...]`.

Each benchmark also runs alone with its own options: `python -m benchmarks.bench_pipeline --help`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

#: name -> (heading of its table, module); in the order they run
BENCHMARKS: dict[str, str] = {
    "pipeline": "Energy and PUE stage (one core)",
    "modbus": "Modbus polling (collector process; simulator in another process)",
    "snmp": "SNMP (collector process; snmpd in another process)",
    "mqtt": "MQTT ingest (one process; publisher in another, through Mosquitto)",
    "influx": "InfluxDB writes (one process into real servers on loopback)",
    "ingest": "CSV backfill: pue ingest-csv of a month of 1-minute data, 1,000 meters (43 M rows)",
    "freecooling": "Free cooling: `pue free-cooling --epw` (8,760 h); availability and live state of a year of "
    "1-minute weather (525,600 rows)",
    "status": "Status: /status and /readyz for 500 devices; the newest reading per series from a 4 M-reading store",
    "model": "Expected-PUE model: training on a simulated year, scoring a day of minutes, drift harness",
    "watch": "The live model watcher on a real store: first training, hourly scoring, the event loop meanwhile",
    "report": "Reports: `pue report --month` of a month of 1-minute data, 1,000 meters (44.8 M readings), end to end",
    "storage": "Storage plan: bytes per raw reading (table vs day files), a year of 1,000 meters at 1 s, insert cost",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run pue-monitor's benchmarks (default: all, in this order) and print their tables. "
        "They start real servers on loopback and take minutes; run one at a time on a quiet machine.",
        epilog="each benchmark takes its own options: python -m benchmarks.bench_NAME --help",
    )
    ap.add_argument("names", nargs="*", metavar="NAME", help="one or more of: " + ", ".join(BENCHMARKS))
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"no benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    for i, name in enumerate(args.names or BENCHMARKS):
        print(("\n" if i else "") + f"## {BENCHMARKS[name]}\n")
        run: Callable[[list[str]], None] = importlib.import_module(f"benchmarks.bench_{name}").main
        run([])


if __name__ == "__main__":
    main()
