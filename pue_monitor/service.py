"""Wiring: config -> collectors -> pipeline -> outputs (store, InfluxDB, state file, Prometheus).
Used by `pue run` and `pue demo`.

Restarts (see the README, "Restarts and what a crash can lose"): at shutdown the minutes up to
the earliest newest reading of the live series are closed and the open minute is written as a
partial row (energy up to that reading, ``coverage`` = the share of the minute covered). At
start the pipeline is re-seeded, per energy series, with the stored readings from the last one
at/before ``R`` — the start of that open minute or, after a crash (no partial row, minutes
perhaps never closed), the end of the newest stored minute, at most an hour earlier — so the
minutes from ``R`` on are recomputed from the same readings, the downtime is bridged by the
counter deltas, and the rows are *replaced* (upsert by start), never added; minutes before
``R`` are never rewritten by the new process. The stored 1-minute rows of the open day are
reloaded, so the 15-minute, hourly and daily rows are always aggregated from all stored
minutes of their bucket, with ``coverage`` (and the missing share) counting absent minutes
against the part of the bucket elapsed.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import math
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pue_monitor.clock import Clock, WallClock
from pue_monitor.collectors.base import DeviceReader
from pue_monitor.collectors.modbus import ModbusConnection, ModbusReader
from pue_monitor.collectors.runner import Runner, Schedule
from pue_monitor.config.diff import SiteDiff, diff_sites, polled
from pue_monitor.config.loader import LoadedSite, load_site
from pue_monitor.config.models import (
    SUBSYSTEMS,
    Device,
    ImportDevice,
    ModbusDevice,
    MqttDevice,
    SiteConfig,
    SnmpDevice,
    SparkplugDevice,
)
from pue_monitor.errors import ConfigError, PueError
from pue_monitor.pipeline.energy import SeriesSpec, interval_energy
from pue_monitor.pipeline.events import PipelineEvent
from pue_monitor.pipeline.faults import FaultDetector
from pue_monitor.pipeline.freecooling_live import (
    POINT_ROLES,
    FreeCoolingInterval,
    LiveFreeCooling,
    aggregate_free_cooling,
)
from pue_monitor.pipeline.freecooling_live import interval_from_row as free_cooling_from_row
from pue_monitor.pipeline.kpi import KpiBasis, kpi_fields_from_row
from pue_monitor.pipeline.live import LivePipeline
from pue_monitor.pipeline.model import series_specs
from pue_monitor.pipeline.pue import PueInterval, aggregate, rollup
from pue_monitor.readings import Reading
from pue_monitor.sinks.base import EventLog, Outputs
from pue_monitor.sinks.influx import InfluxSink
from pue_monitor.sinks.influx_output import InfluxOutput
from pue_monitor.sinks.lock import InstanceLock
from pue_monitor.sinks.prometheus import LiveState, LiveStateOutput, PrometheusEndpoint
from pue_monitor.sinks.state import ReadingTail, StateFile
from pue_monitor.sinks.status import StatusOutput
from pue_monitor.sinks.store import StoreOutput

if TYPE_CHECKING:
    from pue_monitor.alerts.engine import DeliveryHealth, DeviceState
    from pue_monitor.alerts.output import AlertOutput
    from pue_monitor.collectors.mqtt import MqttSource
    from pue_monitor.models.watch import ModelWatcher

log = logging.getLogger(__name__)

STEP = 60.0  # the finest rollup, seconds (ISO/IEC 30134-2 category 3 wants <= 15 min)
WINDOWS = {"15m": 900.0, "1h": 3600.0, "1d": 86400.0}
RESUME_BACK = 3600.0  # a restart recomputes at most this far back from the open minute


@dataclass
class Snapshot:
    """What a display (the demo, `pue run` progress) shows after each tick."""

    now: float
    state: LiveState
    closed: list[PueInterval] = field(default_factory=list)


class ResumeSource(Protocol):
    """Where a restart finds its state: the store (:class:`StoreOutput`) or the state file."""

    def last_readings(self, keys: Iterable[tuple[str, str]]) -> list[Reading]: ...

    def readings_since(self, keys: Iterable[tuple[str, str]], since: float) -> list[Reading]: ...

    def interval_rows(self, resolution: str, since: float) -> list[dict[str, Any]]: ...

    def free_cooling_rows(self, resolution: str, since: float) -> list[dict[str, Any]]: ...


def interval_from_row(row: dict[str, Any]) -> PueInterval:
    """A stored 1-minute row (store or state file) as a :class:`PueInterval`."""
    subs = {r.value: row[f"e_{r.value}_kwh"] for r in SUBSYSTEMS if row.get(f"e_{r.value}_kwh") is not None}
    e_it = row["e_it_kwh"]
    ppue = {n: (e_it + e) / e_it for n, e in subs.items()} if e_it is not None and e_it > 0 else {}
    return PueInterval(
        start=float(row["start"]),
        end=float(row["end"]),
        e_facility=row["e_facility_kwh"],
        e_it=e_it,
        e_subsystems=subs,
        pue=row["pue"],
        ppue=ppue,
        category=int(row["category"]),
        measured=float(row["measured"]),
        estimated=float(row["estimated"]),
        missing=float(row["missing"]),
        coverage=float(row["coverage"]),
        e_unattributed=row["e_unattributed_kwh"],
        **kpi_fields_from_row(row),
    )


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def _ids(devices: Sequence[Device]) -> str:
    return f" ({', '.join(d.id for d in devices)})" if devices else ""


def _admit(iv: PueInterval, covered: float) -> PueInterval:
    """``iv`` scaled to a share ``covered`` of its span: the rest counts as missing."""
    if covered >= 1.0 - 1e-12:
        return iv
    return dataclasses.replace(
        iv,
        coverage=iv.coverage * covered,
        measured=iv.measured * covered,
        estimated=iv.estimated * covered,
        missing=iv.missing * covered + (1.0 - covered),
    )


def buckets(minutes: Sequence[PueInterval], window: str, tz: str, *, until: float) -> list[PueInterval]:
    """15m/1h/1d rows from 1-minute rows (sorted by start), with coverage that admits gaps:
    a minute absent from ``minutes`` counts as missing, over the part of the bucket before
    ``until`` (the end of the newest minute), so a bucket still running is not penalised for
    its future."""
    starts = [iv.start for iv in minutes]
    out = []
    for b in aggregate(minutes, resolution=window, tz=tz):
        lo, hi = bisect.bisect_left(starts, b.start), bisect.bisect_left(starts, b.end)
        present = math.fsum(iv.end - iv.start for iv in minutes[lo:hi])
        span = min(b.end, until) - b.start
        out.append(_admit(b, present / span) if span > present > 0 else b)
    return out


def free_cooling_state(cfg: SiteConfig) -> LiveFreeCooling | None:
    """The live free-cooling state of a site whose ``cooling.points`` name an outdoor
    temperature (None otherwise). A point's readings are stale after ``cooling.live.max_age_s``,
    default twice its device's polling interval."""
    cooling = cfg.cooling
    if cooling is None or cooling.points.outdoor_temperature is None:
        return None
    intervals = {d.id: float(getattr(d, "interval", 60.0)) for d in cfg.devices}
    points: dict[str, tuple[str, str]] = {}
    max_age: dict[str, float] = {}
    for role in POINT_ROLES:
        ref = getattr(cooling.points, role)
        if ref is None:
            continue
        points[role] = (ref.device, ref.point)
        max_age[role] = cooling.live.max_age_s or 2.0 * intervals.get(ref.device, 60.0)
    live = cooling.live
    inferring = "chiller_power" in points and "economiser_mode" not in points
    if inferring and (live.chiller_off_kw is None or live.chiller_on_kw is None):
        log.warning(
            "cooling: chiller_power without economiser_mode and without live.chiller_off_kw and "
            "live.chiller_on_kw: the plant's actual free-cooling mode is unknown (set both to infer it)"
        )
    return LiveFreeCooling(cooling, points, max_age=max_age, step=STEP)


class Service:
    """Runs collectors and pipeline for one site until stopped."""

    def __init__(
        self,
        site: LoadedSite,
        *,
        clock: Clock | None = None,
        store_path: str | Path | None = None,
        prometheus_port: int | None = None,
        prometheus: bool | None = None,
        tick: float | None = None,
        on_tick: Callable[[Snapshot], None] | None = None,
        resume: bool = True,
    ) -> None:
        self.site = site
        cfg = site.config
        self.clock = clock or WallClock()
        self.specs = series_specs(site)
        self.kpi = KpiBasis.from_config(cfg.kpis)
        self.pipeline = LivePipeline(self.specs, step=STEP, kpi=self.kpi)
        self.faults = FaultDetector.from_site(site, self.specs)
        self._tick = tick
        self._set_timing(cfg)
        self.free_cooling = free_cooling_state(cfg)
        self._fc_minutes: dict[tuple[float, str], FreeCoolingInterval] = {}  # the last two days
        self.state = LiveState(
            site=cfg.site.id,
            warning=cfg.thresholds.warning,
            critical=cfg.thresholds.critical,
            meter_roles={spec.meter: str(spec.role) for spec in self.specs.values()},
            intervals_s={d.id: d.interval for d in cfg.devices if not isinstance(d, ImportDevice)},
            now=self.clock.now,
        )
        self.on_tick = on_tick
        self._minutes: dict[float, PueInterval] = {}  # 1-minute rollups of the last two days, by start
        self._floor = -math.inf  # minutes before this (the resume point) are never rewritten
        max_gap = max(s.max_gap for s in self.specs.values())
        # enough history per series to re-seed the pipeline at the start of the open minute
        self.tail = ReadingTail(self.specs, keep=4 * max_gap + 2 * STEP)
        self._locks: list[InstanceLock] = []
        self.outputs = Outputs()
        self.store: StoreOutput | None = None
        self.influx: InfluxSink | None = None
        self.state_file: StateFile | None = None
        self.prometheus: PrometheusEndpoint | None = None
        self.model: ModelWatcher | None = None
        try:
            self._build_outputs(store_path, prometheus, prometheus_port)
            if resume:
                self._resume()
        except BaseException:
            self._release()
            raise
        self.runner = Runner(site=cfg.site.id, clock=self.clock, emit=self._on_readings, time_window=cfg.time_window)
        self.state.devices = self.runner.stats
        self.connections: dict[tuple[str, int], ModbusConnection] = {}
        for dev in cfg.devices:
            self._add_device(dev)
        self.source: MqttSource | None = self._push_source(site)
        if self.source is not None:
            self.runner.add_source(self.source, protocol="mqtt", protocols=self.source.protocols)
            self.state.mqtt = self.source
        # reload (SIGHUP): what the command line fixed, and the reload metric's counts
        self._store_fixed = store_path is not None
        self._prometheus_fixed = prometheus is not None or prometheus_port is not None
        self._reloading = asyncio.Lock()
        #: the pipeline's close() running in a worker thread (see step()), until the loop awaited it
        self._closing: asyncio.Future[tuple[list[PueInterval], list[PipelineEvent]]] | None = None
        # its own thread (not the default executor, where model training may run for seconds)
        self._pipeline_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline")
        for result in ("success", "failure"):
            self.state.reloads.setdefault(result, 0)

    def _set_timing(self, cfg: SiteConfig) -> None:
        # meters known only from exports (protocol: import) are never polled: they set no deadline
        max_interval = max((d.interval for d in cfg.devices if not isinstance(d, ImportDevice)), default=60.0)
        max_wait = max(
            (d.timeout * (d.retries + 1) for d in cfg.devices if isinstance(d, ModbusDevice | SnmpDevice)), default=0.0
        )
        self.grace = max_interval + max_wait + 1.0  # a boundary's reading has arrived by then
        self.tick = self._tick if self._tick is not None else min(10.0, max_interval)

    def _lock(self, path: Path, what: str, field: str | None = None) -> None:
        self._locks.append(InstanceLock(path, what, field).acquire())

    def _release(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks = []

    def _build_outputs(self, store_path: str | Path | None, prometheus: bool | None, port: int | None) -> None:
        """Store (default), InfluxDB (when configured), the state file (InfluxDB only), event log,
        live state + Prometheus. Every file written is locked (single instance) before any is opened."""
        cfg = self.site.config
        # --db is relative to the working folder; store.path (like every path in the site file) to the file's
        store = self.site.resolve(cfg.store.path) if cfg.store_enabled else None
        if store_path is not None:
            store = Path(store_path)
        spool = state = None
        if cfg.influxdb is not None:
            spool = self.site.resolve(cfg.influxdb.spool.path)
            if store is None:  # InfluxDB only: keep what a restart needs locally
                state = self.site.resolve(cfg.store.state_path or spool.with_name(spool.name + ".state.json"))
        # (file, what it is, the config field that names it: in one-line errors)
        files = (
            (store, "store", "--db" if store_path is not None else "store.path"),
            (spool, "InfluxDB spool", "influxdb.spool.path"),
            (state, "state file", "store.state_path" if cfg.store.state_path else "influxdb.spool.path"),
        )
        for path, what, name in files:
            if path is not None:
                self._lock(path, what, name)
        if store is not None:
            self.store = StoreOutput(
                store,
                site=cfg.site.id,
                meta={"site": cfg.site.id, "timezone": cfg.site.timezone},
                keep_readings_days=cfg.store.keep_readings_days,
                meter_roles=self.state.meter_roles,
            )
            self.state.store = self.store
            self.outputs.add(self.store)
        if cfg.influxdb is not None:
            self.influx = InfluxSink(cfg.influxdb, base_dir=self.site.base_dir)
            self.state.sink = self.influx
            self.outputs.add(InfluxOutput(self.influx, site=cfg.site.id))
        if state is not None:
            self.state_file = StateFile(state, site=cfg.site.id, tail=self.tail, every=self.tick)
            self.outputs.add(self.state_file)
        self.event_log = EventLog()
        self.outputs.add(self.event_log)
        self.status = StatusOutput(self)  # /status, /healthz, /readyz beside /metrics
        enabled = cfg.prometheus.enabled if prometheus is None else prometheus
        if enabled:
            self.prometheus = PrometheusEndpoint(
                self.state,
                host=cfg.prometheus.host,
                port=cfg.prometheus.port if port is None else port,
                routes=self.status.routes() if cfg.prometheus.status else None,
            )
        self.outputs.add(LiveStateOutput(self.state, self.prometheus))
        self.outputs.add(self.status)
        # the expected-PUE model: scored hourly and retrained in a worker thread (models/watch.py)
        from pue_monitor.models import watch

        self.model = watch.for_site(self.site, self.store.path if self.store else None, clock=self.clock.now)
        if self.model is not None:
            self.outputs.add(self.model.output())
            if self.prometheus is not None:
                self.prometheus.registry.register(self.model.collector(cfg.site.id))
        off = watch.off_status(cfg)
        self.status.sections["model"] = lambda: self.model.status().as_dict() if self.model is not None else off
        self.alerts: AlertOutput | None = None
        # the alert engine (see the README, "Alerts"): wherever it can page someone, and wherever a
        # store is kept, so the alert history a monthly report lists exists without a notifier
        if cfg.alerts.notifiers or cfg.store_enabled:
            from pue_monitor.alerts.output import build_alert_output

            self.alerts = build_alert_output(
                self.site,
                store_path=store_path,
                devices=self._device_states,
                outputs=self._delivery_health,
                drift=self.model.drift if self.model is not None else None,
            )
            self.outputs.add(self.alerts)
            if self.prometheus is not None:
                self.prometheus.registry.register(self.alerts.collector())

    def _device_states(self) -> dict[str, DeviceState]:
        runner = getattr(self, "runner", None)  # built after the outputs
        return dict(runner.stats) if runner is not None else {}

    def _delivery_health(self) -> list[DeliveryHealth]:
        """Per output: points lost (dropped by a full buffer) and, for InfluxDB, the spool's
        backlog and evictions."""
        from pue_monitor.alerts.engine import DeliveryHealth

        out = [DeliveryHealth(h.name, 0, h.dropped) for h in self.outputs.all_health() if h.name != "alerts"]
        if self.influx is not None:
            spool = self.influx.spool.status()
            out.append(DeliveryHealth("influxdb spool", spool.queued_points, spool.evicted_points))
        return out

    # ---------------------------------------------------------------- restarts

    def _resume(self) -> None:
        """Re-seed the pipeline and reload the open day's minutes (see the module docstring)."""
        source: ResumeSource | None = self.store or self.state_file
        if source is None:
            return
        now = self.clock.now()
        last = [r for r in source.last_readings(self.specs) if now - self.pipeline.horizon < r.ts <= now]
        if not last:
            return
        newest = max(r.ts for r in last)
        live = [r for r in last if r.ts >= newest - 3 * self.specs[(r.device, r.point)].max_gap]
        resume_at = math.floor(min(r.ts for r in live) / STEP) * STEP
        # after a crash the minutes between the last one written and the open one were never
        # closed: start at the end of the newest stored minute (at most RESUME_BACK earlier)
        written = source.interval_rows("1m", resume_at - RESUME_BACK)
        resume_at = min(resume_at, max((float(r["end"]) for r in written), default=resume_at - RESUME_BACK))
        live_keys = [(r.device, r.point) for r in live]
        seed = source.readings_since(live_keys, resume_at)
        seed += [r for r in last if (r.device, r.point) not in set(live_keys)]  # silent ones: bridge only
        self.tail.add(sorted(seed, key=lambda r: r.ts))
        self.pipeline.ingest(seed)
        self._floor = resume_at
        day = self._day_start(resume_at)
        for row in source.interval_rows("1m", day):
            iv = interval_from_row(row)
            self._minutes[iv.start] = iv
        if self.free_cooling is not None:
            # the open day's free-cooling minutes: its 15m/1h/1d rows stay sums of all of them
            for row in source.free_cooling_rows("1m", day):
                fc = free_cooling_from_row(row)
                self._fc_minutes[(fc.start, fc.economiser)] = fc
        where = getattr(source, "path", "?")
        log.info(
            "resumed from %s: %d readings of %d series from %s on; %d stored minutes of the open day reloaded",
            where,
            len(seed),
            len(last),
            datetime.fromtimestamp(resume_at, zoneinfo.ZoneInfo(self.site.config.site.timezone)).isoformat(),
            len(self._minutes),
        )

    def _day_start(self, ts: float) -> float:
        local = datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(self.site.config.site.timezone))
        return local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0).timestamp()

    def _partial_minute(self) -> PueInterval | None:
        """The open minute from its start to the earliest newest reading of the live series
        (written at shutdown; the next start restates it in full)."""
        last = self.tail.last_readings(self.specs)
        if not last:
            return None
        newest = max(r.ts for r in last)
        live = [r for r in last if r.ts >= newest - 3 * self.specs[(r.device, r.point)].max_gap]
        cut = min(r.ts for r in live)
        start = math.floor(cut / STEP) * STEP
        done = max(self._minutes, default=-math.inf)
        if cut <= start or start <= done or start < self._floor:
            return None
        keys = list(self.specs)
        index = {k: i for i, k in enumerate(keys)}
        rows = self.tail.readings_since(keys, start)  # the readings after cut interpolate at cut
        ie = interval_energy(
            [self.specs[k] for k in keys],
            np.asarray([index[(r.device, r.point)] for r in rows], np.int64),
            np.asarray([r.ts for r in rows], np.float64),
            np.asarray([r.value for r in rows], np.float64),
            start=start,
            step=cut - start,
            n=1,
        )
        (iv,) = rollup(ie, [self.specs[k] for k in keys], per_meter=True, kpi=self.kpi)
        return _admit(dataclasses.replace(iv, end=start + STEP), (cut - start) / STEP)

    def _add_device(self, dev: Device) -> None:
        made = self._reader(dev, self.site)
        if made is not None:
            self.runner.add(made[0], made[1], protocol=made[2])

    def _reader(self, dev: Device, site: LoadedSite) -> tuple[DeviceReader, Schedule, str] | None:
        """The reader of a polled device, its schedule and protocol (None: pushed or imported)."""
        if isinstance(dev, SnmpDevice):
            from pue_monitor.collectors.snmp import SnmpReader

            return SnmpReader(dev, site, clock=self.clock), Schedule(dev.interval, dev.timeout, dev.retries), "snmp"
        if not isinstance(dev, ModbusDevice):
            return None  # push devices share one source, added by __init__
        key = (dev.host, dev.port)
        conn = self.connections.get(key)
        if conn is None:
            conn = self.connections[key] = ModbusConnection(host=dev.host, port=dev.port, clock=self.clock)
        reader = ModbusReader(dev, site.profile_of(dev), site.points_of(dev), conn)
        return reader, Schedule(dev.interval, dev.timeout, dev.retries), "modbus"

    def _push_source(self, site: LoadedSite) -> MqttSource | None:
        cfg = site.config
        push = [d for d in cfg.devices if isinstance(d, MqttDevice | SparkplugDevice)]
        if not push:
            return None
        from pue_monitor.collectors.mqtt import MqttSource

        assert cfg.mqtt is not None  # the config model requires it
        return MqttSource(cfg.mqtt, push, site_id=cfg.site.id, clock=self.clock, base_dir=site.base_dir)

    # ---------------------------------------------------------------- reload

    async def reload(self, path: str | Path | None = None, *, site: LoadedSite | None = None) -> bool:
        """Apply a new version of the site file (SIGHUP; see the README, "Reloading the
        configuration"). All or nothing: an invalid file, or one that changes what only a
        restart can apply (site id, timezone, store, Prometheus endpoint, InfluxDB), is
        refused with one log line and the running configuration stays as it is. Otherwise
        unchanged devices keep polling (same task, same connection), removed ones stop,
        added ones start, changed ones restart, and the pipeline swaps its energy model
        keeping the state of every series that continues. Returns True when applied."""
        async with self._reloading:
            where = str(path or self.site.path)
            try:
                new = site if site is not None else load_site(where)
                diff = diff_sites(
                    self.site, new, store_fixed=self._store_fixed, prometheus_fixed=self._prometheus_fixed
                )
                if diff.restart_needed:
                    raise ConfigError(
                        f"{', '.join(diff.restart_needed)} changed: a restart is needed to apply "
                        "that (systemctl restart pue-monitor); nothing was applied"
                    )
                specs = series_specs(new)
                LivePipeline(specs, step=STEP)  # validates the new energy model (ValueError)
                stop = [d.id for d in diff.removed if polled(d)] + [o.id for o, _ in diff.changed if polled(o)]
                start = [d for d in diff.added if polled(d)] + [n for _, n in diff.changed if polled(n)]
                readers = [self._reader(d, new) for d in start]  # may raise: before anything stops
                source = self._push_source(new) if diff.push_changed else self.source
            except (PueError, OSError, ValueError) as exc:
                self.state.reloads["failure"] += 1
                log.error("reload of %s failed, still running the previous configuration: %s", where, _one_line(exc))
                return False
            await self._apply(new, diff, specs, stop, readers, source)
            self.state.reloads["success"] += 1
            log.info(
                "reloaded %s: %d devices added%s, %d removed%s, %d changed%s, %d unchanged",
                where,
                len(diff.added),
                _ids(diff.added),
                len(diff.removed),
                _ids(diff.removed),
                len(diff.changed),
                _ids([n for _, n in diff.changed]),
                len(diff.unchanged),
            )
            return True

    async def _apply(
        self,
        new: LoadedSite,
        diff: SiteDiff,
        specs: dict[tuple[str, str], SeriesSpec],
        stop: list[str],
        readers: list[tuple[DeviceReader, Schedule, str] | None],
        source: MqttSource | None,
    ) -> None:
        for dev_id in stop:
            await self.runner.remove(dev_id)
        if source is not self.source and self.source is not None:
            keep = source.protocols if source is not None else {}
            await self.runner.remove_source(self.source, keep_stats=keep)
        await self._pipeline_idle()
        self.pipeline.respec(specs, now=self.clock.now())
        self.specs = specs
        devices = [d.id for d in new.config.devices]
        self.faults = FaultDetector.from_site(new, specs).adopt(self.faults, self.clock.now(), devices)
        self.tail.track(specs)
        self.site = new
        conf = new.config
        gone = {d.id for d in diff.removed}
        state = self.state
        state.meter_roles.update({spec.meter: str(spec.role) for spec in specs.values()})
        state.intervals_s = {d.id: d.interval for d in conf.devices if not isinstance(d, ImportDevice)}
        state.warning, state.critical = conf.thresholds.warning, conf.thresholds.critical
        if self.model is not None:  # thresholds and weather points apply from the next scoring
            self.model.reconfigure(conf)
        if self.alerts is not None:
            self.alerts.engine.thresholds = conf.thresholds
        if conf.cooling != (self.free_cooling.cooling if self.free_cooling is not None else None):
            self.free_cooling = free_cooling_state(conf)  # a changed plant model starts afresh
        state.latest_readings = {k: r for k, r in state.latest_readings.items() if k[0] not in gone}
        for dev_id in gone:
            state.readings.pop(dev_id, None)
        self.runner.window.window = conf.time_window
        self._set_timing(conf)
        for made in readers:
            if made is not None:
                self.runner.add(made[0], made[1], protocol=made[2])
        if source is not self.source:
            if source is not None:
                self.runner.add_source(source, protocol="mqtt", protocols=source.protocols)
            self.source = self.state.mqtt = source
        used = {(d.host, d.port) for d in conf.devices if isinstance(d, ModbusDevice)}
        for key in [k for k in self.connections if k not in used]:
            await self.connections.pop(key).close()

    # ------------------------------------------------------------------ flow

    def _on_readings(self, readings: list[Reading]) -> None:
        self.outputs.readings(readings)
        self.faults.readings(readings)
        self.tail.add(readings)
        self.pipeline.ingest(readings)
        if self.free_cooling is not None:
            self.free_cooling.ingest(readings)
        latest = self.state.latest_readings
        for r in readings:
            latest[(r.device, r.point)] = r
        self.state.readings.update(r.device for r in readings)

    def _publish(self, closed: Sequence[PueInterval]) -> list[PueInterval]:
        """Hand new/restated minutes and the buckets they touch to every output."""
        closed = [iv for iv in closed if iv.start >= self._floor]
        if not closed:
            return []
        self.outputs.intervals("1m", closed)
        for iv in closed:
            self._minutes[iv.start] = iv
        minutes = sorted(self._minutes.values(), key=lambda i: i.start)
        last_end = minutes[-1].end
        first_closed = min(iv.start for iv in closed)
        tz = self.site.config.site.timezone
        for window, seconds in WINDOWS.items():
            rows = [b for b in buckets(minutes, window, tz, until=last_end) if b.end > first_closed - seconds]
            self.outputs.intervals(window, rows)
        horizon = last_end - 2 * 86400  # keep two days of minutes for daily buckets
        self._minutes = {k: v for k, v in self._minutes.items() if k >= horizon}
        return closed

    def _publish_free_cooling(self, rows: Sequence[FreeCoolingInterval]) -> None:
        """Hand new free-cooling minutes and the 15m/1h/1d rows they touch to every output."""
        if not rows:
            return
        self.outputs.free_cooling("1m", rows)
        for r in rows:
            self._fc_minutes[(r.start, r.economiser)] = r
        first = min(r.start for r in rows)
        newest = max(r.end for r in rows)
        tz = self.site.config.site.timezone
        for window, seconds in WINDOWS.items():
            recent = [m for m in self._fc_minutes.values() if m.start >= first - seconds]
            touched = [b for b in aggregate_free_cooling(recent, resolution=window, tz=tz) if b.end > first]
            self.outputs.free_cooling(window, touched)
        self._fc_minutes = {k: v for k, v in self._fc_minutes.items() if k[0] >= newest - 2 * 86400}

    async def step(self, *, published: Sequence[PueInterval] = ()) -> Snapshot:
        """Close intervals, hand them and the pipeline's events to the outputs, flush them,
        refresh the live state. ``published``: minutes already handed out since the last step
        (shown to ``on_tick`` with the ones this step closes)."""
        now = self.clock.now()
        new, events = await self._close_pipeline(now)
        closed = [*published, *self._publish(new)]
        if self.free_cooling is not None:
            self._publish_free_cooling(self.free_cooling.close(now, self.grace))
        self.outputs.events(events)
        self.faults.events(events)
        self.outputs.sensor_faults(self.faults.check(now))
        await self.outputs.flush(now)
        inst = self.pipeline.instant()
        self.state.instant_pue = inst.pue
        self.state.power_kw_by_role = dict(inst.power_by_role)
        snap = Snapshot(now=now, state=self.state, closed=closed)
        if self.on_tick is not None:
            self.on_tick(snap)
        return snap

    def _close_work(self, now: float) -> tuple[list[PueInterval], list[PipelineEvent]]:
        return self.pipeline.close(now, self.grace), self.pipeline.drain_events()

    async def _close_pipeline(self, now: float) -> tuple[list[PueInterval], list[PipelineEvent]]:
        """The pipeline's close() and its events, in a worker thread: a close that recomputes a
        minute of a large site takes hundreds of milliseconds (numpy, which releases the GIL),
        and the collectors share this loop. Readings keep arriving meanwhile (ingest() only
        appends under the pipeline's lock). A cancelled step leaves the thread to finish:
        :meth:`_pipeline_idle` waits for it before anything else touches the pipeline."""
        await self._pipeline_idle()
        fut = asyncio.get_running_loop().run_in_executor(self._pipeline_io, self._close_work, now)
        self._closing = fut
        return await asyncio.shield(fut)

    async def _pipeline_idle(self) -> None:
        """Wait for a close() still running in its worker thread (its result was, or will
        never be, used; its error was raised by the step that started it)."""
        fut = self._closing
        if fut is not None and not fut.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(fut)
        self._closing = None

    async def final_step(self) -> Snapshot:
        """After the collectors stopped: close every minute that all live series have passed
        and write the open minute as a partial row."""
        await self._pipeline_idle()
        last = self.tail.last_readings(self.specs)
        published: list[PueInterval] = []
        if last:
            newest = max(r.ts for r in last)
            cut = min(r.ts for r in last if r.ts >= newest - 3 * self.specs[(r.device, r.point)].max_gap)
            published += self._publish(self.pipeline.close(cut, 0.0))
            partial = self._partial_minute()
            if partial is not None:
                published += self._publish([partial])
            if self.free_cooling is not None:
                self._publish_free_cooling(self.free_cooling.close(cut, 0.0))
        self.faults.close_all(self.clock.now())  # this process judges nothing after the stop
        return await self.step(published=published)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and process until ``stop`` is set; then stop in two phases."""
        await self.outputs.start()
        self.runner.start()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.tick / self.clock.speed)
                await self.step()
        finally:
            await self.runner.stop()
            await self.final_step()
            await self.close()

    async def close(self) -> None:
        await self._pipeline_idle()
        self._pipeline_io.shutdown(wait=False)
        for conn in self.connections.values():
            await conn.close()
        await self.outputs.close()
        self._release()
