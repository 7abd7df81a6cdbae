"""SNMP requests per second from one process against net-snmp's snmpd.

    python -m benchmarks.bench_snmp [--seconds 5]

snmpd (Debian package ``snmpd``) runs as a separate process on a free loopback port,
serving an APC rPDU2 device and phase table through ``override`` directives, so the numbers
are the collector's (pysnmp encoding/decoding, our plan and conversion), not the agent's.
Each reader polls back-to-back (no interval) for ``--seconds``. Scenarios: one v2c reader
doing GETs of 3 scalars; one v2c reader walking the rPDU2 tables (GETBULK); 8 concurrent
v2c readers sharing the engine; one SNMPv3 authPriv (SHA/AES) reader doing GETs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pue_monitor.clock import WallClock
from pue_monitor.collectors.snmp import SnmpReader
from pue_monitor.config.loader import LoadedSite, site_from_dict
from pue_monitor.config.models import SnmpDevice

AUTH, PRIV = "bench-auth-key", "bench-priv-key"
PROFILE = """id: bench-scalars
protocol: snmp
manufacturer: bench
model: three scalars
source: bench
scalars:
  power:  {oid: 1.3.6.1.4.1.318.1.1.26.4.3.1.5.1, scale: 0.01, unit: kW}
  energy: {oid: 1.3.6.1.4.1.318.1.1.26.4.3.1.9.1, scale: 0.1, unit: kWh}
  phase_power: {oid: 1.3.6.1.4.1.318.1.1.26.6.3.1.7.1, scale: 0.01, unit: kW}
"""
OVERRIDES = {
    "1.3.6.1.4.1.318.1.1.26.4.3.1.5.1": ("integer", "412"),
    "1.3.6.1.4.1.318.1.1.26.4.3.1.9.1": ("integer", "123456"),
    "1.3.6.1.4.1.318.1.1.26.4.3.1.10.1": ("octet_str", '"01/15/2025 08:00:00"'),
    **{f"1.3.6.1.4.1.318.1.1.26.6.3.1.{c}.{i}": ("integer", str(100 + c + i)) for c in (5, 6, 7) for i in (1, 2, 3)},
}


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_snmpd(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("snmpd") or "/usr/sbin/snmpd"
    if not os.path.exists(exe):
        raise RuntimeError("snmpd is required (Debian package snmpd)")
    port = _free_udp_port()
    lines = [
        f"agentaddress udp:127.0.0.1:{port}",
        "rocommunity public 127.0.0.1",
        f'createUser bench SHA "{AUTH}" AES "{PRIV}"',
        "rouser bench priv",
        *(f"override {oid} {t} {v}" for oid, (t, v) in OVERRIDES.items()),
    ]
    (tmp / "snmpd.conf").write_text("\n".join(lines) + "\n")
    (tmp / "persist").mkdir()
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(tmp / "persist"), "MIBS": ""}
    proc = subprocess.Popen(
        [exe, "-f", "-Lo", "-C", "-c", str(tmp / "snmpd.conf"), "-p", str(tmp / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    time.sleep(0.5)
    if proc.poll() is not None:
        raise RuntimeError("snmpd did not start")
    return proc, port


def make_site(tmp: Path, port: int) -> LoadedSite:
    (tmp / "profiles").mkdir()
    (tmp / "profiles" / "bench.yaml").write_text(PROFILE)
    os.environ["PUE_BENCH_AUTH"], os.environ["PUE_BENCH_PRIV"] = AUTH, PRIV

    def dev(i: str, profile: str, **kw: Any) -> dict[str, Any]:
        return {"id": i, "protocol": "snmp", "host": "127.0.0.1", "port": port, "profile": profile, **kw}

    v3 = {"user": "bench", "auth_key": {"env": "PUE_BENCH_AUTH"}, "priv_key": {"env": "PUE_BENCH_PRIV"}}
    devices = [
        dev("get", "bench-scalars"),
        dev("walk", "apc-rpdu2"),
        *(dev(f"get-{k}", "bench-scalars") for k in range(8)),
        dev("v3", "bench-scalars", version="3", v3=v3),
        # filler meters for the energy-model check (never polled)
        dev("fac", "bench-scalars", meter={"role": "facility_input", "power": "power"}),
        dev("it", "bench-scalars", meter={"role": "it", "it_location": "pdu_output", "power": "power"}),
    ]
    data = {"site": {"id": "bench"}, "devices": devices, "profile_dirs": ["profiles"]}
    return site_from_dict(data, source=str(tmp / "bench.yaml"), base_dir=tmp)


async def _poll(site: LoadedSite, device_ids: list[str], seconds: float) -> dict[str, Any]:
    devs = [d for d in site.config.devices if d.id in device_ids and isinstance(d, SnmpDevice)]
    readers = [SnmpReader(d, site, clock=WallClock()) for d in devs]
    for r in readers:
        await r.read()  # warm-up: engine, v3 discovery
    start_requests = sum(r.requests for r in readers)
    polls = values = 0
    stop = time.monotonic() + seconds

    async def loop(r: SnmpReader) -> None:
        nonlocal polls, values
        while time.monotonic() < stop:
            got = await r.read()  # not `values += len(await ...)`: that loads `values` before the await
            values += len(got)
            polls += 1

    t0 = time.monotonic()
    try:
        await asyncio.gather(*(loop(r) for r in readers))
    finally:
        for r in readers:
            await r.close()
    took = time.monotonic() - t0
    requests = sum(r.requests for r in readers) - start_requests
    return {
        "readers": len(readers),
        "polls_per_s": polls / took,
        "requests_per_s": requests / took,
        "values_per_s": values / took,
    }


def run(seconds: float = 5.0) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="pue-bench-snmp-") as tmp:
        proc, port = start_snmpd(Path(tmp))
        try:
            site = make_site(Path(tmp), port)
            rows = []
            for name, ids in (
                ("v2c GET, 3 scalars", ["get"]),
                ("v2c GETBULK walk, rPDU2 tables", ["walk"]),
                ("v2c GET, 8 readers concurrently", [f"get-{k}" for k in range(8)]),
                ("v3 authPriv SHA/AES GET, 3 scalars", ["v3"]),
            ):
                rows.append({"scenario": name, **asyncio.run(_poll(site, ids, seconds))})
            return rows
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    rows = run(args.seconds)
    print("| scenario | readers | polls/s | requests/s | values/s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['scenario']} | {r['readers']} | {r['polls_per_s']:,.0f} | "
            f"{r['requests_per_s']:,.0f} | {r['values_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
