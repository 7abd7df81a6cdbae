"""Modbus values and requests per CPU-second: pue-monitor beside collectd's modbus plugin.

    python -m benchmarks.bench_modbus [--devices 100] [--points 10] [--seconds 20]

In ONE run: simulated meters (pymodbus TCP servers, one port per meter as meters with their
own IP address, ``--points`` float32 values each in contiguous input registers) are started
in ``--server-procs`` processes of their own; then, one after the other against the same
servers, at ``--interval`` (1 s):

- pue-monitor in its own process: the real collector (runner, schedule, shared connection
  per host:port, read plan, decoding, readings, time-window check) with one register block
  per request (``one_register_per_request``: one request per value) and merged (one request
  per meter); its readings go to a counter, no store;
- collectd 5.12 (``collectd-core``, libmodbus) with its modbus plugin: one ``<Host>`` per
  meter, one ``<Data>`` per value (collectd reads each ``<Data>`` with one request; it cannot
  merge) and a writer (:mod:`benchmarks.peers`: ``network`` by default, collectd's binary
  protocol to a UDP socket of this process, its cheapest writer; or ``csv``).

For each: values delivered and CPU-seconds (user + system, all threads) of the collector
process over the same ``--seconds`` window after a warm-up, requests counted by the servers,
and so values per CPU-second, requests per CPU-second and the ratios to collectd's whole
process (issue 13's measure). The three runs are repeated ``--rounds`` times, interleaved, so
that a change in the machine's load falls on all of them. collectd's CPU is also shown without
its writer thread (``writer#0``; pue-monitor's readings go to no writer here) and the requests
ratio against that, the harder comparison for pue-monitor.

Debian packages (benchmarks only): ``collectd-core`` and ``libmodbus5`` (collectd's modbus plugin
needs it; collectd-core does not pull it in)::

    apt-get install -y --no-install-recommends collectd-core libmodbus5

``--before DIR`` adds rows for the ``pue_monitor`` of another checkout (``git worktree add DIR
COMMIT``), against the same meters in the same rounds: before/after a change in one run.

``--profile FILE`` writes a cProfile of the pue-monitor process (merged case; with
``--one-per-request-profile`` the one-register-per-request case) and prints its top lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: this checkout (the benchmark's own code, whichever pue_monitor a run measures)
HERE = Path(__file__).resolve().parent.parent

#: value of point ``i`` of meter ``d``: exact in float32, different for every point
VALUE_BASE = 1000.0


def expected_value(device: int, point: int) -> float:
    return VALUE_BASE + device + point / 4


# ------------------------------------------------------------------ simulated meters


def _serve(devices: list[int], points: int, ports_file: Path) -> None:
    """Serve ``devices`` (meter numbers), one pymodbus TCP server per meter, until stdin closes.

    A line ``count`` on stdin answers with the number of requests the servers received.
    """
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    from benchmarks.peers import free_port
    from pue_monitor.collectors.decode import encode

    received = 0

    def trace(sending: bool, pdu: Any) -> Any:
        nonlocal received
        if not sending:
            received += 1
        return pdu

    async def main() -> None:
        servers = []
        ports = {}
        for d in devices:
            regs: list[int] = []
            for i in range(points):
                regs += encode(expected_value(d, i), "f32")
            bits = [SimData(0, values=[False], datatype=DataType.BITS)]
            holding = [SimData(0, values=[0], datatype=DataType.REGISTERS)]
            inputs = [SimData(0, values=regs, datatype=DataType.REGISTERS)]
            dev = SimDevice(id=1, simdata=(bits, bits, holding, inputs))
            port = free_port()
            server = ModbusTcpServer(dev, address=("127.0.0.1", port), trace_pdu=trace)
            await server.serve_forever(background=True)
            servers.append(server)
            ports[d] = port
        ports_file.write_text(json.dumps(ports))  # noqa: ASYNC240 (once, before serving)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def stdin_loop() -> None:
            for line in sys.stdin:
                if line.strip() == "count":
                    print(received, flush=True)
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=stdin_loop, daemon=True).start()
        await done.wait()
        for s in servers:
            await s.shutdown()

    asyncio.run(main())


class Meters:
    """The simulated meters in ``procs`` server processes (meters split among them)."""

    def __init__(self, tmp: Path, devices: int, points: int, procs: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.ports: dict[int, int] = {}
        files = []
        for k in range(procs):
            mine = list(range(k, devices, procs))
            f = tmp / f"ports-{k}.json"
            files.append(f)
            cmd = [sys.executable, "-m", "benchmarks.bench_modbus", "serve", "--points", str(points)]
            cmd += ["--ports-file", str(f), "--meters", ",".join(map(str, mine))]
            env = dict(os.environ, PYTHONPATH=str(HERE))
            pipe = subprocess.PIPE
            self.procs.append(subprocess.Popen(cmd, stdin=pipe, stdout=pipe, text=True, cwd=HERE, env=env))
        deadline = time.monotonic() + 60
        for p, f in zip(self.procs, files, strict=True):
            while not f.exists() or not f.stat().st_size:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"meter server did not start ({f})")
                time.sleep(0.05)
            self.ports.update({int(k): v for k, v in json.loads(f.read_text()).items()})

    def requests(self) -> int:
        n = 0
        for p in self.procs:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("count\n")
            p.stdin.flush()
            n += int(p.stdout.readline())
        return n

    def close(self) -> None:
        for p in self.procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ------------------------------------------------------------------ pue-monitor


def _bench_profile(points: int) -> Any:
    from pue_monitor.config.models import ModbusProfile, ProfilePoint

    return ModbusProfile(
        id="bench-f32",
        manufacturer="bench",
        model=f"{points} x float32",
        source="benchmarks/bench_modbus.py",
        points={f"p{i}": ProfilePoint(address=2 * i, function="input", type="f32", unit="W") for i in range(points)},
    )


def _pue_child(args: argparse.Namespace) -> None:
    """The pue-monitor collector process: prints one JSON line with its window's counts."""
    from pue_monitor.clock import WallClock
    from pue_monitor.collectors.modbus import ModbusConnection, ModbusReader
    from pue_monitor.collectors.runner import Runner, Schedule
    from pue_monitor.config.models import ModbusDevice
    from pue_monitor.readings import Quality, Reading

    ports = {int(k): v for k, v in json.loads(Path(args.ports_file).read_text()).items()}
    profile = _bench_profile(args.points)
    names = list(profile.points)
    clock = WallClock()
    delivered = 0
    wrong = 0

    def emit(readings: list[Reading]) -> None:
        nonlocal delivered, wrong
        delivered += len(readings)
        for r in readings:
            d = int(r.device[1:])
            if r.quality is not Quality.GOOD or r.value != expected_value(d, int(r.point[1:])):
                wrong += 1

    async def main() -> dict[str, Any]:
        runner = Runner(site="bench", clock=clock, emit=emit)
        conns = []
        for d, port in sorted(ports.items()):
            dev = ModbusDevice(
                id=f"m{d}",
                protocol="modbus",
                host="127.0.0.1",
                port=port,
                profile=profile.id,
                interval=args.interval,
                timeout=min(2.0, args.interval / 2),
                retries=0,
                one_register_per_request=args.one_per_request,
            )
            conn = ModbusConnection(host=dev.host, port=dev.port, clock=clock)
            conns.append(conn)
            runner.add(
                ModbusReader(dev, profile, names, conn), Schedule(dev.interval, dev.timeout, 0), protocol="modbus"
            )
        runner.start()
        await asyncio.sleep(args.warmup)
        prof = None
        if args.profile:
            import cProfile

            prof = cProfile.Profile(time.process_time)  # CPU time, not wall
            prof.enable()
        v0, r0, c0, t0, s0 = (
            delivered,
            sum(c.requests for c in conns),
            time.process_time(),
            time.monotonic(),
            os.times(),
        )
        await asyncio.sleep(args.seconds)
        v1, r1, c1, t1, s1 = (
            delivered,
            sum(c.requests for c in conns),
            time.process_time(),
            time.monotonic(),
            os.times(),
        )
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)
        await runner.stop()
        for c in conns:
            await c.close()
        failed = sum(s.failed_polls for s in runner.stats.values())
        return {
            "values": v1 - v0,
            "requests": r1 - r0,
            "cpu": c1 - c0,
            "cpu_system": s1.system - s0.system,
            "wall": t1 - t0,
            "requests_total": sum(c.requests for c in conns),
            "failed_polls": failed,
            "wrong_values": wrong,
        }

    print(json.dumps(asyncio.run(main())), flush=True)


def run_pue(
    meters: Meters, tmp: Path, args: argparse.Namespace, *, one_per_request: bool, code: Path | None = None
) -> dict[str, Any]:
    """One pue-monitor run; ``code``: a checkout whose ``pue_monitor`` is measured instead of this one."""
    ports_file = tmp / "ports-all.json"
    ports_file.write_text(json.dumps(meters.ports))
    cmd = [sys.executable, "-m", "benchmarks.bench_modbus", "pue", "--ports-file", str(ports_file)]
    cmd += ["--points", str(args.points), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    cmd += ["--interval", str(args.interval)]
    if one_per_request:
        cmd.append("--one-per-request")
    if args.profile and one_per_request == args.one_per_request_profile and code is None:
        cmd += ["--profile", args.profile]
    before = meters.requests()
    # the working directory comes first on sys.path: its pue_monitor, this checkout's benchmarks
    env = dict(os.environ, PYTHONPATH=str(HERE))
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=code or HERE, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"pue-monitor benchmark process failed: {out.stderr.strip()[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    served = meters.requests() - before
    if served != r["requests_total"]:  # every request the collector counted reached a meter
        raise RuntimeError(f"pue-monitor sent {r['requests_total']} requests, the meters received {served}")
    if r["wrong_values"]:
        raise RuntimeError(f"pue-monitor decoded {r['wrong_values']} values wrong")
    return r


# ------------------------------------------------------------------ collectd


def collectd_config(meters: Meters, points: int, interval: float) -> str:
    data = "".join(
        f'  <Data "p{i}">\n    RegisterBase {2 * i}\n    RegisterCmd ReadInput\n    RegisterType Float\n'
        f'    Type gauge\n    Instance "p{i}"\n  </Data>\n'
        for i in range(points)
    )
    collect = "".join(f'      Collect "p{i}"\n' for i in range(points))
    hosts = "".join(
        f'  <Host "m{d}">\n    Address "127.0.0.1"\n    Port "{port}"\n    Interval {interval:g}\n'
        f'    <Slave 1>\n      Instance "m{d}"\n{collect}    </Slave>\n  </Host>\n'
        for d, port in sorted(meters.ports.items())
    )
    return f"<Plugin modbus>\n{data}{hosts}</Plugin>\n"


def _thread_cpu(pid: int) -> tuple[float, float]:
    """(the whole process, its csv writer threads ``writer#N``) CPU seconds of a collectd process.

    The whole is the process' own count (one rounding to the clock tick, not one per thread).
    """
    import psutil

    proc = psutil.Process(pid)
    writer = 0.0
    for th in proc.threads():
        try:
            name = Path(f"/proc/{pid}/task/{th.id}/comm").read_text().strip()
        except OSError:
            continue
        if name.startswith("writer"):
            writer += th.user_time + th.system_time
    t = proc.cpu_times()
    return float(t.user + t.system), writer


def run_collectd(meters: Meters, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.peers import start_collectd

    conf = collectd_config(meters, args.points, args.interval)
    with start_collectd(tmp / "collectd", "modbus", conf, interval=args.interval, writer=args.collectd_writer) as peer:
        time.sleep(args.warmup)
        peer.check_alive()
        q0, (c0, w0), t0 = meters.requests(), _thread_cpu(peer.proc.pid), time.time()
        time.sleep(args.seconds)
        q1, (c1, w1), t1 = meters.requests(), _thread_cpu(peer.proc.pid), time.time()
        peer.check_alive()
        time.sleep(2.5 * args.interval)  # let the writer flush the window's last values
        values = peer.values(t0, t1)
        errors = [ln for ln in peer.log.read_text(errors="replace").splitlines() if "modbus" in ln.lower()]
    return {
        "values": values,
        "requests": q1 - q0,
        "cpu": c1 - c0,
        "cpu_writer": w1 - w0,
        "wall": t1 - t0,
        "log": errors[-3:],
    }


# ------------------------------------------------------------------ the run


def _rate(n: float, d: float) -> float:
    """n / d; NaN when d is 0 (a window too short for the CPU clock's 10 ms tick)."""
    return n / d if d > 0 else math.nan


#: the rows of the table: (name, which run, CPU taken as)
ROWS = (
    ("collectd 5.12 modbus plugin, whole process ({writer} writer)", "collectd", "cpu"),
    ("collectd 5.12 modbus plugin, without its writer thread", "collectd", "cpu_reader"),
    ("pue-monitor, one register block per request", "one", "cpu"),
    ("pue-monitor, merged (one request per meter)", "merged", "cpu"),
)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--rounds`` rounds of collectd, pue-monitor one per request, pue-monitor merged (interleaved,
    so a change in the machine's load falls on all three); rates pooled over the rounds, and the
    requests ratio of each round."""
    runs: dict[str, list[dict[str, Any]]] = {"collectd": [], "one": [], "merged": [], "one0": [], "merged0": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        meters = Meters(tmp, args.devices, args.points, args.server_procs)
        try:
            for k in range(args.rounds):
                cd = run_collectd(meters, tmp / f"round{k}", args)
                if not cd["values"]:
                    raise RuntimeError(f"collectd delivered no values; its log: {cd['log']}")
                runs["collectd"].append(dict(cd, cpu_reader=cd["cpu"] - cd["cpu_writer"]))
                runs["one"].append(run_pue(meters, tmp, args, one_per_request=True))
                runs["merged"].append(run_pue(meters, tmp, args, one_per_request=False))
                if args.before:
                    before = Path(args.before).resolve()
                    runs["one0"].append(run_pue(meters, tmp, args, one_per_request=True, code=before))
                    runs["merged0"].append(run_pue(meters, tmp, args, one_per_request=False, code=before))
        finally:
            meters.close()

    def total(which: str, key: str) -> float:
        return float(sum(r[key] for r in runs[which]))

    # the reference: collectd's whole process (issue 13's measure), and without its writer thread
    ref = {}
    for key in ("cpu", "cpu_reader"):
        cpu = total("collectd", key)
        ref[key] = (_rate(total("collectd", "values"), cpu), _rate(total("collectd", "requests"), cpu))
    rows_run = [*ROWS]
    if args.before:
        rows_run += [
            (f"pue-monitor before ({args.before}), one register block per request", "one0", "cpu"),
            (f"pue-monitor before ({args.before}), merged", "merged0", "cpu"),
        ]
    rows: list[dict[str, Any]] = []
    for name, which, cpu_key in rows_run:
        cpu = total(which, cpu_key)
        v, q = _rate(total(which, "values"), cpu), _rate(total(which, "requests"), cpu)
        per_round = [
            _rate(_rate(r["requests"], r[cpu_key]), _rate(c["requests"], c["cpu"]))
            for r, c in zip(runs[which], runs["collectd"], strict=True)
        ]
        rows.append(
            {
                "collector": name.format(writer=args.collectd_writer),
                "devices": args.devices,
                "points": args.points,
                "values": int(total(which, "values")),
                "requests": int(total(which, "requests")),
                "cpu": cpu,
                "values_per_cpu_s": v,
                "requests_per_cpu_s": q,
                "values_ratio": _rate(v, ref["cpu"][0]),
                "requests_ratio": _rate(q, ref["cpu"][1]),
                "requests_ratio_rounds": per_round,
                "requests_ratio_no_writer": _rate(q, ref["cpu_reader"][1]),
                "failed_polls": int(sum(r.get("failed_polls", 0) for r in runs[which])),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=("bench", "serve", "pue"), help=argparse.SUPPRESS)
    ap.add_argument("--devices", type=int, default=100, help="simulated meters (default 100)")
    ap.add_argument("--points", type=int, default=10, help="float32 values per meter (default 10)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring window per run (default 20)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds before the window (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three runs (default 3)")
    ap.add_argument(
        "--collectd-writer", choices=("network", "csv"), default="network", help="collectd's writer (default network)"
    )
    ap.add_argument("--before", help="also measure the pue_monitor of this checkout (e.g. an older commit)")
    ap.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds (default 1)")
    ap.add_argument("--server-procs", type=int, default=2, help="processes serving the meters (default 2)")
    ap.add_argument("--profile", help="write a cProfile of the pue-monitor process here")
    ap.add_argument("--one-per-request-profile", action="store_true", help="profile the one-per-request case")
    ap.add_argument("--ports-file", help=argparse.SUPPRESS)
    ap.add_argument("--meters", help=argparse.SUPPRESS)
    ap.add_argument("--one-per-request", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mode == "serve":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _serve([int(m) for m in args.meters.split(",") if m], args.points, Path(args.ports_file))
        return
    if args.mode == "pue":
        _pue_child(args)
        return
    rows = run(args)
    print(
        f"Modbus TCP, {args.devices} meters x {args.points} float32 at {args.interval:g} s; {args.rounds} rounds of "
        f"{args.seconds:g} s per collector; load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        "| collector | values | requests | CPU s | values/CPU-s | requests/CPU-s | values ratio | requests ratio "
        "| requests ratio per round | requests ratio to collectd without writer | failed polls |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        rounds = ", ".join(f"{x:.2f}" for x in r["requests_ratio_rounds"])
        print(
            f"| {r['collector']} | {r['values']:,} | {r['requests']:,} | {r['cpu']:.2f} | "
            f"{r['values_per_cpu_s']:,.0f} | {r['requests_per_cpu_s']:,.0f} | "
            f"{r['values_ratio']:.2f} | {r['requests_ratio']:.2f} | {rounds} | "
            f"{r['requests_ratio_no_writer']:.2f} | {r['failed_polls']} |"
        )
    print(
        "(ratios: to collectd's whole process; values, requests and CPU summed over the rounds; "
        "failed polls: pue-monitor's)"
    )
    if args.profile:
        import pstats

        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
