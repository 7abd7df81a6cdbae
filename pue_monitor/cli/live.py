"""`pue run` and `pue demo`: the live service with its status lines."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from pue_monitor.cli.common import EXIT_OK, Subparsers, fmt, install_stop, iso, positive, stop_after
from pue_monitor.collectors.runner import DEVICE_DOWN, DEVICE_PENDING, DEVICE_UP
from pue_monitor.config.models import Role
from pue_monitor.pipeline.freecooling_live import mode_name

DEMO_TIMEOUT_S = 5.0  # the demo's device timeout, wall seconds (a timed-out poll skips its missed slots)

_SHORT = {"facility_input": "facility", "power_distribution": "distribution"}


#: down devices named in a text status line (the rest are counted; --json lists them all)
SHOW_DOWN = 5


def _devices_text(up: int, total: int, pending: int, down: list[tuple[str, str]]) -> str:
    """``devices 13/15 up, 1 pending, down: ups-1 (timeout), pdu-3 (connection)``."""
    text = f"devices {up}/{total} up"
    if pending:
        text += f", {pending} pending"
    if down:
        names = ", ".join(f"{dev} ({kind})" for dev, kind in down[:SHOW_DOWN])
        more = f" and {len(down) - SHOW_DOWN} more" if len(down) > SHOW_DOWN else ""
        text += f", down: {names}{more}"
    return text


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
        self.period_category: int | None = None  # the lowest category of the period's minutes
        #: KPI -> [numerator, denominator] summed over the period's minutes where the KPI is known
        self.period_kpi: dict[str, list[float]] = {}
        #: KPI -> [start, end) spans of those minutes (for the ground truth over the same minutes)
        self.kpi_spans: dict[str, list[list[float]]] = {}

    def __call__(self, snap: Any) -> None:
        for iv in snap.closed:
            if iv.pue is None or (self.period_end is not None and iv.start < self.period_end):
                continue  # restatements of already counted minutes are not re-added
            if self.period_end is not None and iv.start != self.period_end:
                continue  # keep the period contiguous
            self.period_fac += iv.e_facility
            self.period_it += iv.e_it
            for kpi, num, den in _KPI_SUMS:
                if getattr(iv, num) is not None:
                    acc = self.period_kpi.setdefault(kpi, [0.0, 0.0])
                    acc[0] += getattr(iv, num)
                    acc[1] += getattr(iv, den)
                    spans = self.kpi_spans.setdefault(kpi, [])
                    if spans and spans[-1][1] == iv.start:
                        spans[-1][1] = iv.end
                    else:
                        spans.append([iv.start, iv.end])
            self.period_start = iv.start if self.period_start is None else self.period_start
            self.period_end = iv.end
            self.period_category = min(iv.category, self.period_category or iv.category)
        if self.quiet or self._time() - self._last < self.every:
            return
        self._last = self._time()
        st = snap.state
        minute = st.latest.get("1m")
        devs = st.devices.values()
        up = sum(1 for d in devs if d.state == DEVICE_UP)
        pending = sum(1 for d in devs if d.state == DEVICE_PENDING)
        down = [(d.device, d.last_error_kind or "unknown") for d in devs if d.state == DEVICE_DOWN]
        by_protocol: Counter[str] = Counter()
        for dev, n in st.readings.items():
            by_protocol[st.devices[dev].protocol if dev in st.devices else "?"] += n
        outdoor = next((r for (_, p), r in st.latest_readings.items() if p == "outdoor_temperature"), None)
        rec = {
            "time": iso(snap.now, self.tz),
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
            "devices_pending": pending,
            "devices_down": [{"id": dev, "kind": kind} for dev, kind in down],
            "readings_by_protocol": dict(sorted(by_protocol.items())),
            "outdoor_temperature_c": outdoor.value if outdoor else None,
            # companion KPIs of the latest minute; None = not measured (no meter), never 0
            **{k: getattr(minute, k, None) if minute else None for k in ("wue", "cue", "erf", "ref")},
        }
        if st.free_cooling:
            rec["free_cooling"] = {
                econ: {"available": mode_name(r.mode), "fraction": r.fraction, "actual": mode_name(r.actual_mode),
                       "inferred": r.inferred}
                for econ, r in sorted(st.free_cooling.items())
            }  # fmt: skip
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
        if minute is not None:
            extra += (
                f" | WUE {fmt(rec['wue'], '.2f', '-')} L/kWh CUE {fmt(rec['cue'], '.3f', '-')} "
                f"ERF {fmt(rec['erf'], '.3f', '-')} REF {fmt(rec['ref'], '.3f', '-')}"
            )
        if st.free_cooling:
            extra += " | free cooling " + ", ".join(
                f"{econ} {mode_name(r.mode)}" for econ, r in sorted(st.free_cooling.items())
            )
            plant = next(iter(st.free_cooling.values()))
            extra += f", plant {mode_name(plant.actual_mode)}" + (" (inferred)" if plant.inferred else "")
        if st.sink is not None:
            state = {True: "up", False: "DOWN (spooling)", None: "connecting"}[st.sink.stats.up]
            extra += f" | InfluxDB {state}, {st.sink.stats.points_written} written"
        print(
            f"{rec['time']}  PUE now {fmt(rec['pue_instant'])}  1-min {fmt(rec['pue_1m'])}  "
            f"period {fmt(rec['pue_period'])} ({quality}) | kW: {power}{extra} | "
            f"{_devices_text(up, len(st.devices), pending, down)} | readings: {protocols}",
            flush=True,
        )

    @property
    def period_pue(self) -> float | None:
        return self.period_fac / self.period_it if self.period_it > 0 else None

    def period_kpis(self) -> dict[str, float | None]:
        """WUE, CUE, ERF, REF of the period: summed numerator over summed denominator."""
        return {
            kpi: (acc[0] / acc[1] if (acc := self.period_kpi.get(kpi)) and acc[1] > 0 else None)
            for kpi, _, _ in _KPI_SUMS
        }


def _true_kpi(world: Any, kpi: str, spans: list[list[float]], ef: float) -> float | None:
    """The simulator's ground truth of ``kpi`` over the minutes it was measured in."""
    if not spans:
        return None
    num = den = 0.0
    for t0, t1 in spans:
        k = world.true_kpis(t0, t1, ef_kg_per_kwh=ef)
        d = world.true_energy("it" if kpi in ("wue", "cue") else "facility_input", t0, t1)
        num += k[kpi] * d
        den += d
    return num / den


#: KPI, PueInterval numerator, denominator (pipeline.kpi)
_KPI_SUMS = (("wue", "water_l", "e_it"), ("cue", "co2_kg", "e_it"), ("erf", "e_heat_reused", "e_facility"),
             ("ref", "e_renewable", "e_facility"))  # fmt: skip


async def _run_service(
    site: Any,
    args: argparse.Namespace,
    *,
    clock: Any = None,
    store_path: str | None = None,
    resume: bool = True,
    reloadable: bool = False,
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
        urls = {"prometheus": service.prometheus.url}
        if "/status" in service.prometheus.routes:  # `pue status --url` asks it
            urls["status"] = service.prometheus.base_url + "/status"
        text = f"Prometheus metrics: {urls['prometheus']}" + (f"  status: {urls['status']}" if "status" in urls else "")
        print(json.dumps(urls) if args.json else text, flush=True)
    stop = asyncio.Event()
    install_stop(stop)
    if reloadable:  # SIGHUP (systemctl reload): re-read the site file, see Service.reload
        from pue_monitor.cli.common import install_reload

        install_reload(service.reload)
    stopper = asyncio.create_task(stop_after(stop, args.duration))
    try:
        await service.run(stop)
    finally:
        stopper.cancel()
    return service, display


def run_summary(service: Any, display: _Display) -> dict[str, Any]:
    """What `pue run --json` prints last: the period's PUE from energy, its category, where the
    data went and which devices were up at the end (down: failed; pending: never polled)."""
    tz = service.site.config.site.timezone
    stats = service.runner.stats.values()
    summary: dict[str, Any] = {
        "site": service.site.config.site.id,
        "period_start": iso(display.period_start, tz) if display.period_start is not None else None,
        "period_end": iso(display.period_end, tz) if display.period_end is not None else None,
        "timezone": tz,
        "pue_period": display.period_pue,
        "e_facility_kwh": display.period_fac if display.period_end is not None else None,
        "e_it_kwh": display.period_it if display.period_end is not None else None,
        "category": display.period_category,
        "store": str(service.store.path) if service.store else None,
        "influxdb": None,
        "devices": len(service.runner.stats),
        "devices_up": sorted(d.device for d in stats if d.up is True),
        "devices_down": sorted(d.device for d in stats if d.up is False),
        "devices_pending": sorted(d.device for d in stats if d.up is None),
    }
    if service.influx is not None:
        st = service.influx.stats
        summary["influxdb"] = {"url": service.influx.url, "points_written": st.points_written}
    return summary


def free_cooling_summary(totals: dict[tuple[str, str], float]) -> dict[str, dict[str, float | None]]:
    """Per economiser over the run: hours available and used, utilisation (used / available
    hours) and avoidable chiller kWh (None when chiller power was never known)."""
    out: dict[str, dict[str, float | None]] = {}
    for econ in sorted({e for e, _ in totals}):
        avail = totals.get((econ, "available_s"), 0.0)
        used = totals.get((econ, "used_s"), 0.0)
        j = totals.get((econ, "avoidable_j"))
        out[econ] = {
            "available_h": avail / 3600.0,
            "used_h": used / 3600.0,
            "utilisation": used / avail if avail > 0 else None,
            "avoidable_kwh": None if j is None else j / 3.6e6,
        }
    return out


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    from pue_monitor.config.loader import load_site

    if hasattr(signal, "SIGHUP"):  # a reload during start-up must not end the process (default action)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    site = load_site(args.config)

    async def main() -> None:
        service, display = await _run_service(site, args, reloadable=True)
        if args.json:
            print(json.dumps({"summary": run_summary(service, display)}), flush=True)
            return
        outputs = [f"store {service.store.path}"] if service.store else []
        if service.influx is not None:
            st = service.influx.stats
            outputs.append(f"InfluxDB {service.influx.url} ({st.points_written} points written)")
        print(f"stopped; {', '.join(outputs)}; period PUE {fmt(display.period_pue)}")

    asyncio.run(main())  # a lock, store or port error is a UserError: one line from cli.main
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
            service, display = await _run_service(site, args, clock=clock, store_path=db, resume=False)
        result: dict[str, Any] = {"store": db if keep else None, "pue_period": display.period_pue}
        result["free_cooling"] = free_cooling_summary(service.state.free_cooling_totals)
        if display.period_start is not None and display.period_end is not None:
            truth = world.true_pue(display.period_start, display.period_end)
            ef = site.config.kpis.emission_factor.kg_per_kwh
            result.update(
                period_start=iso(display.period_start, site.config.site.timezone),
                period_end=iso(display.period_end, site.config.site.timezone),
                e_facility_kwh=display.period_fac,
                e_it_kwh=display.period_it,
                pue_true=truth,
                error_percent=100.0 * (display.period_pue - truth) / truth if display.period_pue else None,
                kpis=display.period_kpis(),
                kpis_true={k: _true_kpi(world, k, display.kpi_spans.get(k, []), ef) for k, _, _ in _KPI_SUMS},
            )
        return result

    try:
        result = asyncio.run(main())
    finally:
        if not keep and tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    if not args.json:
        for econ, fc in result["free_cooling"].items():
            print(
                f"free cooling, {econ}: available {fc['available_h']:.2f} h, used {fc['used_h']:.2f} h "
                f"(utilisation {fmt(fc['utilisation'], '.0%')}), avoidable chiller energy "
                f"{fmt(fc['avoidable_kwh'], '.1f')} kWh"
            )
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
        from pue_monitor.pipeline.kpi import KPI_STANDARDS, KPI_UNITS

        for kpi, value in result["kpis"].items():
            true = result["kpis_true"][kpi]
            if true is None:
                print(f"  {kpi.upper()} ({KPI_STANDARDS[kpi]}) not measured")
                continue
            unit = "" if KPI_UNITS[kpi] == "ratio" else " " + KPI_UNITS[kpi]
            shown = "not measured" if value is None else f"{value:.4f}{unit}"
            diff = f"; difference {100.0 * (value - true) / true:+.2f} %" if value is not None and true else ""
            print(f"  {kpi.upper()} ({KPI_STANDARDS[kpi]}) {shown}; simulator ground truth {true:.4f}{unit}{diff}")
    else:
        print("\nno complete 1-minute interval yet: run longer (--duration) or faster (--speed)")
    if not args.json:
        if keep:
            print(f"store kept: {db}  (inspect with: pue show --db {db})")
        else:
            print("temporary store removed (run with --keep, or --db PATH, to keep it)")
    return EXIT_OK


def add_live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--duration",
        type=positive,
        metavar="SECONDS",
        help="stop after this many wall-clock seconds (default: until Ctrl-C)",
    )
    p.add_argument("--db", metavar="PATH", help="embedded store file (SQLite)")
    p.add_argument("--prometheus-port", type=int, metavar="PORT", help="Prometheus endpoint port (0 picks a free one)")
    p.add_argument("--no-prometheus", action="store_true", help="do not serve /metrics")
    p.add_argument(
        "--refresh",
        type=positive,
        default=2.0,
        metavar="SECONDS",
        help="wall seconds between status lines (default 2)",
    )
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument("-q", "--quiet", action="store_true", help="no status lines")


def add_parsers(sub: Subparsers) -> None:
    d = sub.add_parser(
        "demo",
        help="simulated data centre measured live, nothing to set up",
        description="Start the simulator (real Modbus TCP servers on loopback) and "
        "the pipeline together; show live PUE; at the end compare the "
        "measured PUE with the simulator's ground truth.",
    )
    add_live_options(d)
    d.add_argument(
        "--speed", type=positive, default=60.0, help="simulated seconds per wall second (default 60: an hour a minute)"
    )
    d.add_argument("--interval", type=positive, default=15.0, help="poll interval in simulated seconds (default 15)")
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
    add_live_options(r)
    r.set_defaults(func=cmd_run)
