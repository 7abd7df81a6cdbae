"""Modbus polls per second from one process against the simulator's servers.

    python -m benchmarks.bench_modbus [--seconds 10]

The simulator (`pue simulate`) runs in a separate process so the numbers are the
collector's, not the servers'. Each device is polled back-to-back (no interval) by the
real collector (plan, shared gateway connection, decoding) for ``--seconds``.
Scenarios: all devices at once; the four PDU meters behind one gateway alone (one
request on the bus at a time); one device on its own connection.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pue_monitor.collectors.modbus import ModbusConnection, ModbusReader
from pue_monitor.config.loader import LoadedSite, load_site
from pue_monitor.config.models import ModbusDevice


def start_simulator(tmp: Path) -> tuple[subprocess.Popen[bytes], LoadedSite]:
    cfg = tmp / "sim.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pue_monitor", "simulate", "--write-config", str(cfg)], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while not cfg.exists() or not cfg.stat().st_size:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("simulator did not start")
        time.sleep(0.05)
    time.sleep(0.2)
    return proc, load_site(cfg)


async def _poll(site: LoadedSite, device_ids: list[str], seconds: float) -> dict:
    conns: dict[tuple[str, int], ModbusConnection] = {}
    readers = []
    for d in site.config.devices:
        if isinstance(d, ModbusDevice) and d.id in device_ids:
            conn = conns.setdefault((d.host, d.port), ModbusConnection(host=d.host, port=d.port))
            readers.append(ModbusReader(d, site.profile_of(d), site.points_of(d), conn))
    polls = 0
    stop = time.monotonic() + seconds

    async def loop(r: ModbusReader) -> None:
        nonlocal polls
        while time.monotonic() < stop:
            await r.read()
            polls += 1

    t0 = time.monotonic()
    await asyncio.gather(*(loop(r) for r in readers))
    took = time.monotonic() - t0
    for c in conns.values():
        await c.close()
    requests = sum(c.requests for c in conns.values())
    return {
        "devices": len(readers),
        "connections": len(conns),
        "polls": polls,
        "requests": requests,
        "seconds": took,
        "polls_per_s": polls / took,
        "requests_per_s": requests / took,
    }


def run(seconds: float = 10.0) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, site = start_simulator(Path(tmp))
        try:
            ids = [d.id for d in site.config.devices if isinstance(d, ModbusDevice)]
            pdus = [i for i in ids if i.startswith("pdu-")]
            rows = []
            for name, group in (
                ("all Modbus devices of the site", ids),
                ("4 PDUs behind one gateway", pdus),
                ("one incomer, own connection", ["incomer-a"]),
            ):
                r = asyncio.run(_poll(site, group, seconds))
                rows.append({"scenario": name, **r})
            return rows
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    rows = run(args.seconds)
    print("| scenario | devices | connections | polls/s | requests/s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['scenario']} | {r['devices']} | {r['connections']} | "
            f"{r['polls_per_s']:,.0f} | {r['requests_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
