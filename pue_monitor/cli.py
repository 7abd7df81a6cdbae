"""The `pue` command line.

Exit codes: 0 success (also after a clean stop on Ctrl-C/SIGTERM), 1 runtime failure,
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from pue_monitor import __version__
from pue_monitor.config.models import Role
from pue_monitor.errors import ConfigError

EXIT_OK, EXIT_USAGE = 0, 2  # 1 (runtime failure) is Python's own for an uncaught error
_CATEGORY_NAMES = {
    1: "basic, IT at UPS output",
    2: "intermediate, IT at PDU output",
    3: "advanced, IT at equipment input",
}


def _finite(text: str) -> float:
    """argparse type: a finite number (no inf, no nan)."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def _positive(text: str) -> float:
    v = _finite(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return v


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "  n/a" if v is None else format(v, spec)


def _iso(ts: float, tz: str = "UTC") -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _stop_after(stop: asyncio.Event, seconds: float | None) -> None:
    if seconds is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        stop.set()


# ----------------------------------------------------------------------------- check-config


def cmd_check_config(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import check_site
    from pue_monitor.config.summary import energy_model_summary
    from pue_monitor.logs import redact

    result = check_site(args.file)
    if result.errors or result.site is None:
        if len(result.errors) == 1:  # a file that cannot be read or parsed: one line
            print(f"pue check-config: {redact(result.errors[0])}", file=sys.stderr)
            return EXIT_USAGE
        print(f"pue check-config: {args.file}: {len(result.errors)} errors:", file=sys.stderr)
        for line in result.errors:
            print(f"  {redact(line)}", file=sys.stderr)
        print("every field and its limits: `pue config-schema`", file=sys.stderr)
        return EXIT_USAGE
    site = result.site
    summary = energy_model_summary(site)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"{args.file}: OK — site {summary['site']} ({summary['timezone']}), {summary['devices']} devices")
    print(f"PUE thresholds: warning {summary['thresholds']['warning']}, critical {summary['thresholds']['critical']}")
    cat = summary["measurement_category"]
    print(f"Measurement category (ISO/IEC 30134-2): {cat} ({_CATEGORY_NAMES[cat]})")
    for role, meters in summary["roles"].items():
        print(f"  {role}:")
        for m in meters:
            extra = f", {m['it_location']}" if "it_location" in m else ""
            extra += f", rolls over at {m['rollover']:g}" if "rollover" in m else ""
            print(f"    {m['device']}: {m['point']} ({m['energy']}{extra})")
    if summary["unmetered_subsystems"]:
        print("Unmetered subsystems (no partial PUE): " + ", ".join(summary["unmetered_subsystems"]))
    return EXIT_OK


def cmd_profiles(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import load_profiles

    profiles = load_profiles([Path(d) for d in args.profile_dir])
    if args.json:
        print(json.dumps({k: v.model_dump() for k, v in sorted(profiles.items())}, indent=2))
        return EXIT_OK
    for pid, p in sorted(profiles.items()):
        print(f"{pid:22} {p.manufacturer} {p.model} — {len(p.points)} points")
    return EXIT_OK


def cmd_config_schema(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter

    from pue_monitor.config.models import Profile, SiteConfig

    schema = TypeAdapter(Profile).json_schema() if args.profile else SiteConfig.model_json_schema()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return EXIT_OK


# ----------------------------------------------------------------------------- show


def cmd_show(args: argparse.Namespace) -> int:
    from pue_monitor.sinks.sqlite import StoreReader

    try:
        reader = StoreReader(args.db)
    except FileNotFoundError as exc:
        print(f"pue show: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        rows = reader.intervals(args.resolution, limit=args.last)
        period = reader.period_pue()
        tz = reader.meta().get("timezone", "UTC")
    finally:
        reader.close()
    if args.json:
        print(json.dumps({"intervals": rows, "period": period.__dict__ if period else None}, indent=2))
        return EXIT_OK
    print(
        f"{'start (' + tz + ')':21} {'PUE':>6} {'E_DC kWh':>10} {'E_IT kWh':>10} cat  "
        "measured estimated missing coverage"
    )
    for r in rows:
        print(
            f"{_iso(r['start'], tz):21} {_fmt(r['pue']):>6} {_fmt(r['e_facility_kwh'], '.2f'):>10} "
            f"{_fmt(r['e_it_kwh'], '.2f'):>10} {r['category']:>3}  {r['measured']:8.0%} "
            f"{r['estimated']:9.0%} {r['missing']:7.0%} {r['coverage']:8.0%}"
        )
    if period:
        print(
            f"period {_iso(period.start, tz)} .. {_iso(period.end, tz)}: PUE {_fmt(period.pue)} "
            f"(E_DC {period.e_facility_kwh:.1f} kWh / E_IT {period.e_it_kwh:.1f} kWh, "
            f"category {period.category}, interim)"
        )
    return EXIT_OK


def cmd_spool_status(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import load_site
    from pue_monitor.sinks.spool import Spool

    if args.config:
        site = load_site(args.config)
        if site.config.influxdb is None:
            print(f"pue spool status: {args.config} has no influxdb: section (nothing is spooled)", file=sys.stderr)
            return EXIT_USAGE
        path = Path(site.config.influxdb.spool.path)
        if not path.is_absolute():
            path = site.base_dir / path
    else:
        path = Path(args.spool)
    if not path.exists():
        print(f"pue spool status: {path}: no spool yet (nothing was ever queued)", file=sys.stderr)
        return EXIT_USAGE
    spool = Spool(path)
    try:
        status, quarantined = spool.status(), spool.quarantined()
    finally:
        spool.close()
    if args.json:
        print(json.dumps({"spool": str(path), **status.as_dict(), "quarantine": quarantined}, indent=2))
        return EXIT_OK
    age = f", oldest {status.oldest_age_s:.0f} s old" if status.oldest_age_s is not None else ""
    print(f"spool {path}")
    print(
        f"  queued:      {status.queued_batches} batches, {status.queued_points} points, "
        f"{status.queued_bytes} bytes{age}"
    )
    print(f"  quarantined: {status.quarantined_batches} batches, {status.quarantined_points} points")
    print(f"  evicted:     {status.evicted_batches} batches, {status.evicted_points} points (lost: spool was full)")
    for q in quarantined:
        print(f"    batch {q['id']}: {q['points']} points rejected: {q['error']}")
    return EXIT_OK


# ----------------------------------------------------------------------------- run / demo


DEMO_TIMEOUT_S = 5.0  # the demo's device timeout, wall seconds (a timed-out poll skips its missed slots)

_SHORT = {"facility_input": "facility", "power_distribution": "distribution"}


class _Display:
    """Prints live PUE and power per role, at most every ``every`` wall seconds."""

    def __init__(self, tz: str, *, every: float, json_lines: bool, quiet: bool) -> None:
        import time

        self._time = time.monotonic
        self.tz = tz
        self.every = every
        self.json_lines = json_lines
        self.quiet = quiet
        self._last = -1e9
        self.period_fac = 0.0
        self.period_it = 0.0
        self.period_start: float | None = None
        self.period_end: float | None = None

    def __call__(self, snap: Any) -> None:
        for iv in snap.closed:
            if iv.pue is None or (self.period_end is not None and iv.start < self.period_end):
                continue  # restatements of already counted minutes are not re-added
            if self.period_end is not None and iv.start != self.period_end:
                continue  # keep the period contiguous
            self.period_fac += iv.e_facility
            self.period_it += iv.e_it
            self.period_start = iv.start if self.period_start is None else self.period_start
            self.period_end = iv.end
        if self.quiet or self._time() - self._last < self.every:
            return
        self._last = self._time()
        st = snap.state
        minute = st.latest.get("1m")
        devs = st.devices.values()
        up = sum(1 for d in devs if d.up)
        by_protocol: Counter[str] = Counter()
        for dev, n in st.readings.items():
            by_protocol[st.devices[dev].protocol if dev in st.devices else "?"] += n
        outdoor = next((r for (_, p), r in st.latest_readings.items() if p == "outdoor_temperature"), None)
        rec = {
            "time": _iso(snap.now, self.tz),
            "pue_instant": st.instant_pue,
            "pue_1m": minute.pue if minute else None,
            "pue_period": self.period_pue,
            "category": minute.category if minute else None,
            "power_kw": {
                r.value: round(st.power_kw_by_role[r.value], 1) for r in Role if r.value in st.power_kw_by_role
            },
            "measured_share": minute.measured if minute else None,
            "devices_up": up,
            "devices": len(st.devices),
            "readings_by_protocol": dict(sorted(by_protocol.items())),
            "outdoor_temperature_c": outdoor.value if outdoor else None,
        }
        if st.sink is not None:
            rec["influxdb"] = {"up": st.sink.stats.up, "points_written": st.sink.stats.points_written,
                               "quarantined_batches": st.sink.stats.batches_quarantined}  # fmt: skip
        if self.json_lines:
            print(json.dumps(rec), flush=True)
            return
        power = " ".join(f"{_SHORT.get(k, k)} {v:.0f}" for k, v in rec["power_kw"].items()) or "n/a"
        quality = f"cat {rec['category']}, {rec['measured_share']:.0%} measured" if minute else "no interval yet"
        protocols = " ".join(f"{k} {v}" for k, v in rec["readings_by_protocol"].items()) or "none yet"
        extra = f" | outdoor {outdoor.value:.1f} °C" if outdoor else ""
        if st.sink is not None:
            state = {True: "up", False: "DOWN (spooling)", None: "connecting"}[st.sink.stats.up]
            extra += f" | InfluxDB {state}, {st.sink.stats.points_written} written"
        print(
            f"{rec['time']}  PUE now {_fmt(rec['pue_instant'])}  1-min {_fmt(rec['pue_1m'])}  "
            f"period {_fmt(rec['pue_period'])} ({quality}) | kW: {power}{extra} | "
            f"devices {up}/{len(st.devices)} up | readings: {protocols}",
            flush=True,
        )

    @property
    def period_pue(self) -> float | None:
        return self.period_fac / self.period_it if self.period_it > 0 else None


async def _run_service(
    site: Any, args: argparse.Namespace, *, clock: Any = None, store_path: str | None = None, resume: bool = True
) -> tuple[Any, _Display]:
    from pue_monitor.service import Service

    display = _Display(site.config.site.timezone, every=args.refresh, json_lines=args.json, quiet=args.quiet)
    service = Service(
        site,
        clock=clock,
        store_path=store_path or args.db,
        resume=resume,
        prometheus_port=args.prometheus_port,
        prometheus=False if args.no_prometheus else None,
        on_tick=display,
    )
    if service.prometheus:
        print(
            json.dumps({"prometheus": service.prometheus.url})
            if args.json
            else f"Prometheus metrics: {service.prometheus.url}",
            flush=True,
        )
    stop = asyncio.Event()
    _install_stop(stop)
    stopper = asyncio.create_task(_stop_after(stop, args.duration))
    try:
        await service.run(stop)
    finally:
        stopper.cancel()
    return service, display


def cmd_run(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import load_site

    site = load_site(args.config)

    async def main() -> None:
        service, display = await _run_service(site, args)
        if not args.json:
            outputs = [f"store {service.store.path}"] if service.store else []
            if service.influx is not None:
                st = service.influx.stats
                outputs.append(f"InfluxDB {service.influx.url} ({st.points_written} points written)")
            print(f"stopped; {', '.join(outputs)}; period PUE {_fmt(display.period_pue)}")

    from pue_monitor.sinks.lock import LockError

    try:
        asyncio.run(main())
    except LockError as exc:  # another `pue run` on the same file, or no lock file possible
        print(f"pue run: {exc}", file=sys.stderr)
        return 1
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    from pue_monitor.clock import ScaledClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.simulator import SimulatedDataCentre
    from pue_monitor.simulator.site import SimulatedSite

    start = dt.datetime.fromisoformat(args.start).timestamp() if args.start else dt.datetime.now(dt.UTC).timestamp()
    # a store of our own in a temp dir is removed at exit unless --keep; a store named with --db is the user's
    tmp_dir = None if args.db else Path(tempfile.mkdtemp(prefix="pue-demo-"))
    db = args.db or str(Path(str(tmp_dir)) / "demo.sqlite")
    keep = args.keep or tmp_dir is None
    where = f"store {db}" if keep else "store in a temp dir, removed at exit (--keep keeps it)"

    async def main() -> dict[str, Any]:
        clock = ScaledClock(start=start, speed=args.speed)
        world = SimulatedDataCentre(start=start, seed=args.seed)
        async with SimulatedSite(world, clock, publish_interval=args.interval) as sim:
            # intervals are simulated seconds; timeouts are wall seconds at any speed (collectors.runner)
            cfg = sim.site_config(interval=args.interval, timeout=min(DEMO_TIMEOUT_S, args.interval / 3))
            cfg["store"] = {"path": db}
            site = site_from_dict(cfg, source="<demo site>")
            if not args.json:
                protocols = Counter(d.protocol for d in site.config.devices)
                print(
                    f"pue demo: simulated data centre '{site.config.site.id}' ("
                    + ", ".join(f"{n} {p}" for p, n in sorted(protocols.items()))
                    + f" devices on loopback; MQTT broker: {sim.broker.kind}), "
                    f"{args.speed:g}x real time; {where}",
                    flush=True,
                )
            # a new simulated timeline: never resume counters from an earlier run's store
            _, display = await _run_service(site, args, clock=clock, store_path=db, resume=False)
        result: dict[str, Any] = {"store": db if keep else None, "pue_period": display.period_pue}
        if display.period_start is not None and display.period_end is not None:
            truth = world.true_pue(display.period_start, display.period_end)
            result.update(
                period_start=_iso(display.period_start, site.config.site.timezone),
                period_end=_iso(display.period_end, site.config.site.timezone),
                e_facility_kwh=display.period_fac,
                e_it_kwh=display.period_it,
                pue_true=truth,
                error_percent=100.0 * (display.period_pue - truth) / truth if display.period_pue else None,
            )
        return result

    try:
        result = asyncio.run(main())
    finally:
        if not keep and tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    if args.json:
        print(json.dumps({"summary": result}))
    elif result.get("pue_true") is not None:
        print(
            f"\nperiod {result['period_start']} .. {result['period_end']} (simulated time): "
            f"PUE {result['pue_period']:.4f} measured from energy "
            f"(E_DC {result['e_facility_kwh']:.1f} kWh / E_IT {result['e_it_kwh']:.1f} kWh); "
            f"simulator ground truth {result['pue_true']:.4f}; "
            f"difference {result['error_percent']:+.3f} %"
        )
    else:
        print("\nno complete 1-minute interval yet: run longer (--duration) or faster (--speed)")
    if not args.json:
        if keep:
            print(f"store kept: {db}  (inspect with: pue show --db {db})")
        else:
            print("temporary store removed (run with --keep, or --db PATH, to keep it)")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    import yaml

    from pue_monitor.clock import WallClock
    from pue_monitor.simulator import SimulatedDataCentre
    from pue_monitor.simulator.site import SimulatedSite

    async def main() -> None:
        clock = WallClock()
        world = SimulatedDataCentre(start=clock.now(), seed=args.seed)
        async with SimulatedSite(world, clock, publish_interval=args.interval) as sim:
            cfg = sim.site_config(interval=args.interval, timeout=min(2.0, args.interval / 2))
            text = yaml.safe_dump(cfg, sort_keys=False)
            if args.write_config:
                await asyncio.to_thread(Path(args.write_config).write_text, text)
                print(
                    f"site configuration written to {args.write_config}; run: pue run --config {args.write_config}",
                    flush=True,
                )
            else:
                print(text, flush=True)
            stop = asyncio.Event()
            _install_stop(stop)
            await _stop_after(stop, args.duration)
            if args.duration is None:
                await stop.wait()

    asyncio.run(main())
    return EXIT_OK


# ----------------------------------------------------------------------------- parser


def _add_live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--duration",
        type=_positive,
        metavar="SECONDS",
        help="stop after this many wall-clock seconds (default: until Ctrl-C)",
    )
    p.add_argument("--db", metavar="PATH", help="embedded store file (SQLite)")
    p.add_argument("--prometheus-port", type=int, metavar="PORT", help="Prometheus endpoint port (0 picks a free one)")
    p.add_argument("--no-prometheus", action="store_true", help="do not serve /metrics")
    p.add_argument(
        "--refresh",
        type=_positive,
        default=2.0,
        metavar="SECONDS",
        help="wall seconds between status lines (default 2)",
    )
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument("-q", "--quiet", action="store_true", help="no status lines")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pue", description="Measure a data centre's energy and PUE (ISO/IEC 30134-2) live."
    )
    p.add_argument("--version", action="version", version=f"pue-monitor {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "demo",
        help="simulated data centre measured live, nothing to set up",
        description="Start the simulator (real Modbus TCP servers on loopback) and "
        "the pipeline together; show live PUE; at the end compare the "
        "measured PUE with the simulator's ground truth.",
    )
    _add_live_options(d)
    d.add_argument(
        "--speed", type=_positive, default=60.0, help="simulated seconds per wall second (default 60: an hour a minute)"
    )
    d.add_argument("--interval", type=_positive, default=15.0, help="poll interval in simulated seconds (default 15)")
    d.add_argument("--start", metavar="ISO8601", help="simulated start time (default now)")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument(
        "--keep", action="store_true", help="keep the demo's store (default: its temp dir is removed at exit)"
    )
    # the demo must never clash with a real exporter on 9464: a free port unless asked
    d.set_defaults(prometheus_port=0)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser(
        "run",
        help="collect from real devices per a site configuration",
        description="Run collectors and pipeline against the devices in --config.",
    )
    r.add_argument("--config", required=True, metavar="FILE", help="site configuration (YAML)")
    _add_live_options(r)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check-config", help="validate a site file and summarise its energy model")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=cmd_check_config)

    s = sub.add_parser("show", help="print stored PUE intervals (safe while a run writes)")
    s.add_argument("--db", required=True, metavar="PATH")
    s.add_argument("--resolution", default="1m", choices=["1m", "15m", "1h", "1d"])
    s.add_argument("--last", type=int, default=15, metavar="N", help="last N intervals (default 15)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    sp = sub.add_parser("spool", help="the InfluxDB spool (queued and quarantined batches)")
    spsub = sp.add_subparsers(dest="spool_command", required=True, metavar="COMMAND")
    sps = spsub.add_parser("status", help="show queued, quarantined and evicted batches")
    where = sps.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="FILE", help="site configuration naming the spool")
    where.add_argument("--spool", metavar="PATH", help="spool file")
    sps.add_argument("--json", action="store_true")
    sps.set_defaults(func=cmd_spool_status)

    pr = sub.add_parser("profiles", help="list device profiles")
    pr.add_argument("--profile-dir", action="append", default=[], metavar="DIR")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_profiles)

    from pue_monitor.ingest.command import add_parser as add_ingest_parser  # `pue ingest-csv`

    add_ingest_parser(sub)

    from pue_monitor.systemd_unit import add_parser as add_unit_parser  # `pue systemd-unit`

    add_unit_parser(sub)

    cs = sub.add_parser("config-schema", help="print the JSON schema of site (or profile) files")
    cs.add_argument("--profile", action="store_true", help="schema of a device profile instead")
    cs.set_defaults(func=cmd_config_schema)

    sim = sub.add_parser(
        "simulate",
        help="run only the simulator's devices (for `pue run`)",
        description="Serve the simulated site's meters on loopback in real time and "
        "print (or write) a site configuration pointing at them.",
    )
    sim.add_argument("--write-config", metavar="FILE")
    sim.add_argument("--interval", type=_positive, default=10.0)
    sim.add_argument("--duration", type=_positive, metavar="SECONDS")
    sim.add_argument("--seed", type=int, default=1)
    sim.set_defaults(func=cmd_simulate)
    return p


def setup_logging(verbose: int = 0) -> None:
    """Log to stderr, redacted: no configured secret and no URL userinfo in any line,
    whichever library logs it (see :mod:`pue_monitor.logs`)."""
    from pue_monitor.logs import install_redaction

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL if verbose < 2 else logging.DEBUG)
    logging.captureWarnings(True)  # library warnings go through the redacting handlers too
    install_redaction()


def main(argv: list[str] | None = None) -> int:
    from pue_monitor.logs import redact

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        text = redact(str(exc))
        sep = "\n" if "\n" in text else " "
        print(f"pue {args.command}: configuration error:{sep}{text}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception:  # a bug or an environment failure: the traceback, but through the redacting log
        logging.getLogger("pue_monitor").critical("pue %s failed", args.command, exc_info=True)
        return 1
