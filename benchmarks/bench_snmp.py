"""SNMP: pue-monitor's collector against Prometheus snmp_exporter and collectd, side by side.

    python -m benchmarks.bench_snmp [--seconds 20] [--agents 100 20] [--v3-agents 100] [--throughput-seconds 5]

**Peers** (one run, one phase after the other on the same agents): net-snmp's snmpd serves
``--agents`` agents (one snmpd process listening on that many loopback UDP ports), each with the
same 10 integer OIDs. Each poller reads every agent's 10 OIDs every second (GET; v2c for
``--agents``, SNMPv3 authPriv SHA/AES-128 for ``--v3-agents``):

- pue-monitor: a child process runs the real :class:`~pue_monitor.collectors.runner.Runner`
  with one :class:`~pue_monitor.collectors.snmp.SnmpReader` per agent (1 s schedule); the
  values delivered to ``emit`` are counted by their time stamps. Twice: as shipped (GETs after
  the first poll through gufo-snmp) and with the fast path switched off (pysnmp only, the
  ObjectTypes built once per OID: "pysnmp tuned").
- Prometheus snmp_exporter 0.21 (Go), module written here (``get`` of the 10 OIDs); this process
  scrapes every agent through it once a second (aiohttp) and counts the samples that are not
  the exporter's own ``snmp_scrape_*`` series.
- collectd 5.12's snmp plugin (C, net-snmp): one ``<Data>`` per OID, one ``<Host>`` per
  agent, ``Interval 1``, network writer to this process, which counts the values by their time
  stamps (the csv writer, one file opened per value list, about doubles collectd's CPU).

Each poller first runs ``--warmup`` seconds (start-up, pue-monitor's first pysnmp poll per
agent, v3 discovery), then CPU-seconds (user + system, all threads, psutil) of that poller's
process only are taken over ``--seconds``, with the values it delivered stamped in that window.

**Throughput** (``--throughput-seconds``, 0 to skip): one collector process polling snmpd back
to back (no interval): v2c GETs of 3 scalars, a GETBULK walk of the rPDU2 tables, 8 readers
concurrently, SNMPv3 authPriv SHA/AES GETs.

Debian packages for the peers (not needed by the tests)::

    apt-get install -y --no-install-recommends snmpd collectd-core prometheus-snmp-exporter
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks.peers import count_samples, free_port, start_collectd, start_snmp_exporter
from pue_monitor.clock import WallClock
from pue_monitor.collectors.runner import Runner, Schedule
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


# ------------------------------------------------------------------ peers, side by side

#: the 10 OIDs every agent serves (integers; no MIB needed by any poller)
TEN_OIDS = [f"1.3.6.1.4.1.99999.42.{k}.0" for k in range(1, 11)]
TEN_PROFILE = "id: bench-ten\nprotocol: snmp\nmanufacturer: bench\nmodel: ten integers\nsource: bench\n"
TEN_PROFILE += "scalars:\n" + "".join(f"  v{k}: {{oid: {oid}, unit: W}}\n" for k, oid in enumerate(TEN_OIDS))
COMMUNITY = "bench"
#: the SNMPv3 authPriv user of the v3 rows (SHA / AES-128, as most PDUs and UPS cards ship)
V3_USER, V3_AUTH, V3_PRIV = "benchv3", "bench-v3-auth-key", "bench-v3-priv-key"
INTERVAL = 1.0
TIMEOUT = 0.9  # seconds, every poller (pue-monitor wants it shorter than the interval)


def start_agents(tmp: Path, n: int) -> tuple[subprocess.Popen[bytes], list[int]]:
    """One snmpd listening on ``n`` loopback UDP ports (the agents), serving TEN_OIDS."""
    exe = shutil.which("snmpd") or "/usr/sbin/snmpd"
    if not os.path.exists(exe):
        raise RuntimeError("snmpd is required (Debian package snmpd)")
    tmp.mkdir(parents=True, exist_ok=True)
    ports = sorted({free_port(socket.SOCK_DGRAM) for _ in range(n)})
    while len(ports) < n:
        ports = sorted({*ports, free_port(socket.SOCK_DGRAM)})
    lines = [
        "agentaddress " + ",".join(f"udp:127.0.0.1:{p}" for p in ports),
        f"rocommunity {COMMUNITY} 127.0.0.1",
        f'createUser {V3_USER} SHA "{V3_AUTH}" AES "{V3_PRIV}"',
        f"rouser {V3_USER} priv",
        *(f"override {oid} integer {1000 + k}" for k, oid in enumerate(TEN_OIDS)),
    ]
    (tmp / "snmpd.conf").write_text("\n".join(lines) + "\n")
    (tmp / "persist").mkdir(exist_ok=True)
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(tmp / "persist"), "MIBS": ""}
    proc = subprocess.Popen(
        [exe, "-f", "-Lo", "-C", "-c", str(tmp / "snmpd.conf"), "-p", str(tmp / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    time.sleep(0.5 + n / 200)
    if proc.poll() is not None:
        raise RuntimeError("snmpd did not start")
    return proc, ports


def _site_data(ports: list[int], v3: bool) -> dict[str, Any]:
    def dev(i: str, **kw: Any) -> dict[str, Any]:
        return {"id": i, "protocol": "snmp", "host": "127.0.0.1", "profile": "bench-ten", "community": COMMUNITY, **kw}

    sec: dict[str, Any] = {}
    if v3:
        os.environ["PUE_BENCH_V3_AUTH"], os.environ["PUE_BENCH_V3_PRIV"] = V3_AUTH, V3_PRIV  # the child inherits them
        keys = {"auth_key": {"env": "PUE_BENCH_V3_AUTH"}, "priv_key": {"env": "PUE_BENCH_V3_PRIV"}}
        sec = {"version": "3", "v3": {"user": V3_USER, **keys}}
    devices = [dev(f"agent-{p}", port=p, interval=INTERVAL, timeout=TIMEOUT, retries=0, **sec) for p in ports]
    # filler meters for the energy-model check (never polled)
    devices += [
        dev("fac", port=ports[0], meter={"role": "facility_input", "power": "v0"}),
        dev("it", port=ports[0], meter={"role": "it", "it_location": "pdu_output", "power": "v0"}),
    ]
    return {"site": {"id": "bench"}, "devices": devices, "profile_dirs": ["profiles"]}


async def _child(site_path: Path, fast: bool) -> None:
    """The pue-monitor collector process: Runner + SnmpReaders until the parent says stop."""
    data = json.loads(site_path.read_text())  # noqa: ASYNC240 - start-up, before any polling
    site = site_from_dict(data, source=str(site_path), base_dir=site_path.parent)
    if not fast:  # "pysnmp tuned": every request through pysnmp (ObjectTypes built once per OID)
        SnmpReader._fast_ready = lambda self, oids: False  # type: ignore[method-assign]
    stamps: list[float] = []

    def emit(readings: list[Any]) -> None:
        stamps.extend(r.ts for r in readings)

    clock = WallClock()
    runner = Runner(site="bench", clock=clock, emit=emit)
    readers = []
    for d in site.config.devices:
        if isinstance(d, SnmpDevice) and d.id.startswith("agent-"):
            reader = SnmpReader(d, site, clock=clock)
            readers.append(reader)
            runner.add(reader, Schedule(d.interval, d.timeout, d.retries), protocol="snmp")
    runner.start()
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0, t1 = (float(x) for x in line.split())
    values = sum(1 for t in stamps if t0 <= t < t1)
    failed = sum(st.failed_polls for st in runner.stats.values())
    fast_requests = sum(r.fast_requests for r in readers)
    await runner.stop()
    print(json.dumps({"values": values, "failed_polls": failed, "fast_requests": fast_requests}), flush=True)


def _measure(cpu: Any, warmup: float, seconds: float) -> tuple[float, float, float]:
    """Wait out the warm-up, then (t0, t1, CPU-seconds in between) of the peer's process."""
    time.sleep(warmup)
    t0, c0 = time.time(), cpu()
    time.sleep(seconds)
    return t0, time.time(), cpu() - c0


def poll_pue(tmp: Path, ports: list[int], warmup: float, seconds: float, v3: bool, *, fast: bool) -> dict[str, Any]:
    (tmp / "profiles").mkdir(parents=True, exist_ok=True)
    (tmp / "profiles" / "bench-ten.yaml").write_text(TEN_PROFILE)
    site_path = tmp / "site.json"
    site_path.write_text(json.dumps(_site_data(ports, v3)))
    cmd = [sys.executable, "-m", "benchmarks.bench_snmp", "--child", str(site_path)]
    proc = subprocess.Popen(
        [*cmd, *([] if fast else ["--no-fast"])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the pue-monitor collector process did not start")
        ps = psutil.Process(proc.pid)

        def cpu() -> float:
            t = ps.cpu_times()
            return float(t.user + t.system)

        t0, t1, used = _measure(cpu, warmup, seconds)
        proc.stdin.write(f"{t0} {t1}\n")
        proc.stdin.flush()
        got = json.loads(proc.stdout.readline())
    finally:
        proc.wait(timeout=30)
    return {"values": got["values"], "cpu": used, "seconds": t1 - t0, "failed": got["failed_polls"]}


def _exporter_module(v3: bool) -> str:
    auth = f"  version: 2\n  auth:\n    community: {COMMUNITY}\n"
    if v3:
        auth = (
            f"  version: 3\n  auth:\n    username: {V3_USER}\n    security_level: authPriv\n"
            f"    password: {V3_AUTH}\n    auth_protocol: SHA\n    priv_protocol: AES\n"
            f"    priv_password: {V3_PRIV}\n"
        )
    return (
        "bench:\n"
        + auth
        + f"  retries: 0\n  timeout: {TIMEOUT:g}s\n  get:\n"
        + "".join(f"  - {oid}\n" for oid in TEN_OIDS)
        + "  metrics:\n"
        + "".join(f"  - name: v{k}\n    oid: {oid[:-2]}\n    type: gauge\n" for k, oid in enumerate(TEN_OIDS))
    )


async def _scrape_loop(port: int, ports: list[int], until: float, window: list[float]) -> tuple[int, int]:
    """Scrape every agent through snmp_exporter once a second until ``until`` (wall clock);
    the samples (and failed scrapes) of the scrapes started inside ``window``."""
    values = failed = 0
    conn = aiohttp.TCPConnector(limit=len(ports))
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=5)) as http:

        async def one(agent: int) -> tuple[int, int]:
            url = f"http://127.0.0.1:{port}/snmp?target=127.0.0.1:{agent}&module=bench"
            try:
                async with http.get(url) as resp:
                    n = count_samples(await resp.text())
                    return n, int(resp.status != 200 or n == 0)
            except (aiohttp.ClientError, TimeoutError):
                return 0, 1

        tick = time.time()
        tasks: list[tuple[bool, asyncio.Task[tuple[int, int]]]] = []
        while tick < until:
            await asyncio.sleep(max(0.0, tick - time.time()))
            counted = bool(window) and window[0] <= tick < window[1]
            tasks += [(counted, asyncio.create_task(one(a))) for a in ports]
            tick += INTERVAL
        for counted, task in tasks:
            n, bad = await task
            if counted:
                values += n
                failed += bad
    return values, failed


def poll_exporter(tmp: Path, ports: list[int], warmup: float, seconds: float, v3: bool) -> dict[str, Any]:
    peer, port = start_snmp_exporter(tmp, _exporter_module(v3))
    with peer:
        result: dict[str, Any] = {}

        def measure() -> None:
            t0, t1, used = _measure(peer.cpu_seconds, warmup, seconds)
            result.update(cpu=used, seconds=t1 - t0)

        async def both() -> tuple[int, int]:
            start = time.time()
            # scrapes started in the window are counted; the CPU is taken over the same window
            window = [start + warmup, start + warmup + seconds]
            measuring = asyncio.get_running_loop().run_in_executor(None, measure)
            scraped = await _scrape_loop(port, ports, window[1], window)
            await measuring
            return scraped

        values, failed = asyncio.run(both())
        peer.check_alive()
    return {**result, "values": values, "failed": failed}


def _collectd_config(ports: list[int], v3: bool) -> str:
    data = "".join(
        f'  <Data "v{k}">\n    Type "gauge"\n    Table false\n    TypeInstance "v{k}"\n    Values "{oid}"\n  </Data>\n'
        for k, oid in enumerate(TEN_OIDS)
    )
    security = f'    Version 2\n    Community "{COMMUNITY}"\n'
    if v3:
        security = (
            f'    Version 3\n    SecurityLevel "authPriv"\n    Username "{V3_USER}"\n    AuthProtocol "SHA"\n'
            f'    AuthPassphrase "{V3_AUTH}"\n    PrivacyProtocol "AES"\n    PrivacyPassphrase "{V3_PRIV}"\n'
        )
    collect = " ".join(f'"v{k}"' for k in range(len(TEN_OIDS)))
    hosts = "".join(
        f'  <Host "agent-{p}">\n    Address "udp:127.0.0.1:{p}"\n{security}'
        f"    Collect {collect}\n    Interval {INTERVAL:g}\n    Timeout {TIMEOUT:g}\n    Retries 0\n  </Host>\n"
        for p in ports
    )
    return f"<Plugin snmp>\n{data}{hosts}</Plugin>\n"


def poll_collectd(tmp: Path, ports: list[int], warmup: float, seconds: float, v3: bool) -> dict[str, Any]:
    with start_collectd(tmp, "snmp", _collectd_config(ports, v3), interval=INTERVAL) as peer:
        t0, t1, used = _measure(peer.cpu_seconds, warmup, seconds)
        time.sleep(2.5)  # let the last reads of the window arrive (collectd buffers network packets)
        peer.check_alive()
        values = peer.values(t0, t1)
    return {"values": values, "cpu": used, "seconds": t1 - t0, "failed": None}


PEERS = {
    "pue-monitor (gufo-snmp fast path)": lambda tmp, ports, w, s, v3: poll_pue(tmp, ports, w, s, v3, fast=True),
    "pue-monitor, pysnmp only (tuned)": lambda tmp, ports, w, s, v3: poll_pue(tmp, ports, w, s, v3, fast=False),
    "Prometheus snmp_exporter 0.21 (Go)": poll_exporter,
    "collectd 5.12 snmp plugin (C, net-snmp)": poll_collectd,
}


def run_peers(agents: list[int], v3_agents: list[int], warmup: float, seconds: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n, v3 in [(n, False) for n in agents] + [(n, True) for n in v3_agents]:
        with tempfile.TemporaryDirectory(prefix="pue-bench-snmp-peers-") as tmp_s:
            tmp = Path(tmp_s)
            proc, ports = start_agents(tmp / "snmpd", n)
            try:
                for i, (name, poll) in enumerate(PEERS.items()):
                    got = poll(tmp / f"poller-{i}", ports, warmup, seconds, v3)
                    rows.append({"agents": n, "v3": v3, "poller": name, **got})
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    return rows


def print_peers(rows: list[dict[str, Any]]) -> None:
    print(
        "| agents x OIDs at 1 s | SNMP | poller | values delivered | of expected | CPU-s | values per CPU-s "
        "| ms CPU per GET | pue-monitor / poller |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        expected = r["agents"] * len(TEN_OIDS) * r["seconds"] / INTERVAL
        r["rate"] = r["values"] / r["cpu"] if r["cpu"] > 0 else float("inf")
        ours = next(
            x
            for x in rows
            if (x["agents"], x["v3"]) == (r["agents"], r["v3"]) and x["poller"].startswith("pue-monitor (gufo")
        )
        ours_rate = ours["values"] / ours["cpu"] if ours["cpu"] > 0 else float("inf")
        per_get = r["cpu"] / (r["values"] / len(TEN_OIDS)) * 1e3 if r["values"] else float("nan")
        print(
            f"| {r['agents']} x {len(TEN_OIDS)} | {'v3 authPriv' if r['v3'] else 'v2c'} | {r['poller']} "
            f"| {r['values']:,} | {r['values'] / expected:.1%} | "
            f"{r['cpu']:.2f} | {r['rate']:,.0f} | {per_get:.3f} | {ours_rate / r['rate'] if r['rate'] else 0:.2f}x |"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring window per poller (default 20)")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds each poller runs before the window")
    ap.add_argument("--agents", type=int, nargs="*", default=[100, 20], help="agent counts, v2c (default 100 20)")
    ap.add_argument(
        "--v3-agents", type=int, nargs="*", default=[100], help="agent counts, SNMPv3 authPriv SHA/AES (default 100)"
    )
    ap.add_argument("--throughput-seconds", type=float, default=5.0, help="back-to-back scenarios; 0 skips them")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the pue-monitor collector process
    ap.add_argument("--no-fast", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        asyncio.run(_child(args.child, fast=not args.no_fast))
        return
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)\n")
    if args.agents or args.v3_agents:
        print_peers(run_peers(args.agents, args.v3_agents, args.warmup, args.seconds))
    if args.throughput_seconds > 0:
        rows = run(args.throughput_seconds)
        print("\nBack to back (no interval), one collector process:\n")
        print("| scenario | readers | polls/s | requests/s | values/s |")
        print("|---|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['scenario']} | {r['readers']} | {r['polls_per_s']:,.0f} | "
                f"{r['requests_per_s']:,.0f} | {r['values_per_s']:,.0f} |"
            )


if __name__ == "__main__":
    main()
