"""Wiring: config -> collectors -> pipeline -> (store, Prometheus). Used by `pue run` and `pue demo`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pue_monitor.clock import Clock, WallClock
from pue_monitor.collectors.modbus import ModbusConnection, ModbusReader
from pue_monitor.collectors.runner import Runner, Schedule
from pue_monitor.config.loader import LoadedSite
from pue_monitor.config.models import (
    Device,
    ImportDevice,
    ModbusDevice,
    MqttDevice,
    SnmpDevice,
    SparkplugDevice,
)
from pue_monitor.pipeline.live import LivePipeline
from pue_monitor.pipeline.model import series_specs
from pue_monitor.pipeline.pue import PueInterval, aggregate
from pue_monitor.readings import Reading
from pue_monitor.sinks.influx import InfluxSink
from pue_monitor.sinks.lineprotocol import LineBuilder
from pue_monitor.sinks.prometheus import LiveState, PrometheusEndpoint
from pue_monitor.sinks.sqlite import SqliteStore

log = logging.getLogger(__name__)

STEP = 60.0  # the finest rollup, seconds (ISO/IEC 30134-2 category 3 wants <= 15 min)
WINDOWS = {"15m": 900.0, "1h": 3600.0, "1d": 86400.0}


@dataclass
class Snapshot:
    """What a display (the demo, `pue run` progress) shows after each tick."""

    now: float
    state: LiveState
    closed: list[PueInterval] = field(default_factory=list)


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
        self.pipeline = LivePipeline(self.specs, step=STEP)
        # meters known only from exports (protocol: import) are never polled: they set no deadline
        max_interval = max((d.interval for d in cfg.devices if not isinstance(d, ImportDevice)), default=60.0)
        max_wait = max(
            (d.timeout * (d.retries + 1) for d in cfg.devices if isinstance(d, ModbusDevice | SnmpDevice)), default=0.0
        )
        self.grace = max_interval + max_wait + 1.0  # a boundary's reading has arrived by then
        self.tick = tick if tick is not None else min(10.0, max_interval)
        self.state = LiveState(site=cfg.site.id, warning=cfg.thresholds.warning, critical=cfg.thresholds.critical)
        # outputs: the embedded store (default), InfluxDB (when configured), or both
        self.store: SqliteStore | None = None
        if store_path is not None or cfg.store_enabled:
            self.store = SqliteStore(store_path or cfg.store.path)
            self.store.set_meta("site", cfg.site.id)
            self.store.set_meta("timezone", cfg.site.timezone)
        self.influx: InfluxSink | None = None
        self.lines = LineBuilder()
        if cfg.influxdb is not None:
            self.influx = InfluxSink(cfg.influxdb, base_dir=site.base_dir)
            self.state.sink = self.influx
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        if resume:
            self._resume()
        self._pending: list[Reading] = []
        self._pruned_at: float | None = None  # clock time of the last retention pass
        self._minutes: dict[float, PueInterval] = {}  # recent 1-minute rollups by start
        self.on_tick = on_tick
        self.runner = Runner(site=cfg.site.id, clock=self.clock, emit=self._on_readings)
        self.state.devices = self.runner.stats
        self.connections: dict[tuple[str, int], ModbusConnection] = {}
        for dev in cfg.devices:
            self._add_device(dev)
        push = [d for d in cfg.devices if isinstance(d, MqttDevice | SparkplugDevice)]
        if push:
            from pue_monitor.collectors.mqtt import MqttSource

            assert cfg.mqtt is not None  # the config model requires it
            source = MqttSource(cfg.mqtt, push, site_id=cfg.site.id, clock=self.clock, base_dir=site.base_dir)
            self.runner.add_source(source, protocol="mqtt")
        enabled = cfg.prometheus.enabled if prometheus is None else prometheus
        self.prometheus: PrometheusEndpoint | None = None
        if enabled:
            port = cfg.prometheus.port if prometheus_port is None else prometheus_port
            self.prometheus = PrometheusEndpoint(self.state, host=cfg.prometheus.host, port=port)

    def _resume(self) -> None:
        """Seed the pipeline with each counter's last stored reading, so the energy used
        while the service was down is bridged exactly by the counter delta (flagged as a
        gap) instead of being lost."""
        if self.store is None:
            return
        now = self.clock.now()
        keys = [k for k, spec in self.specs.items() if spec.kind == "counter"]
        last = [r for r in self.store.last_readings(keys) if now - self.pipeline.horizon < r.ts < now]
        if last:
            self.pipeline.ingest(last)
            log.info("resumed %d counters from %s", len(last), self.store.path)

    def _add_device(self, dev: Device) -> None:
        if isinstance(dev, SnmpDevice):
            from pue_monitor.collectors.snmp import SnmpReader

            snmp_reader = SnmpReader(dev, self.site, clock=self.clock)
            self.runner.add(snmp_reader, Schedule(dev.interval, dev.timeout, dev.retries), protocol="snmp")
            return
        if not isinstance(dev, ModbusDevice):
            return  # push devices share one source, added by __init__
        key = (dev.host, dev.port)
        conn = self.connections.get(key)
        if conn is None:
            conn = self.connections[key] = ModbusConnection(host=dev.host, port=dev.port, clock=self.clock)
        reader = ModbusReader(dev, self.site.profile_of(dev), self.site.points_of(dev), conn)
        self.runner.add(reader, Schedule(dev.interval, dev.timeout, dev.retries), protocol="modbus")

    def _on_readings(self, readings: list[Reading]) -> None:
        if self.store is not None:
            self._pending.extend(readings)
        if self.influx is not None and self.influx.cfg.write_readings:
            self.influx.submit(self.lines.readings(readings))
        self.pipeline.ingest(readings)
        latest = self.state.latest_readings
        for r in readings:
            latest[(r.device, r.point)] = r
        self.state.readings.update(r.device for r in readings)

    async def _io_call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: fn(*args, **kw))

    async def step(self) -> Snapshot:
        """Flush readings, close intervals, upsert rollups, refresh the live state."""
        now = self.clock.now()
        pending, self._pending = self._pending, []
        if self.store is not None:
            await self._io_call(self.store.write_readings, pending)
            if self._pruned_at is None or now - self._pruned_at >= 3600:  # retention, hourly
                self._pruned_at = now
                keep = self.site.config.store.keep_readings_days * 86400
                await self._io_call(self.store.prune_readings, now - keep)
        closed = self.pipeline.close(now, self.grace)
        site = self.site.config.site
        if closed:
            await self._write_intervals("1m", closed)
            for iv in closed:
                self._minutes[iv.start] = iv
            minutes = sorted(self._minutes.values(), key=lambda i: i.start)
            last_end = max(iv.end for iv in minutes)
            first_closed = min(iv.start for iv in closed)
            for window, seconds in WINDOWS.items():
                buckets = aggregate(minutes, resolution=window, tz=site.timezone)
                buckets = [b for b in buckets if b.end > first_closed - seconds]
                await self._write_intervals(window, buckets)
                complete = [b for b in buckets if b.end <= last_end]
                if complete:
                    self.state.latest[window] = complete[-1]
            self.state.latest["1m"] = minutes[-1]
            horizon = last_end - 2 * 86400  # keep two days of minutes for daily buckets
            self._minutes = {k: v for k, v in self._minutes.items() if k >= horizon}
        inst = self.pipeline.instant()
        self.state.instant_pue = inst.pue
        self.state.power_kw_by_role = dict(inst.power_by_role)
        snap = Snapshot(now=now, state=self.state, closed=closed)
        if self.on_tick is not None:
            self.on_tick(snap)
        return snap

    async def _write_intervals(self, resolution: str, intervals: list[PueInterval]) -> None:
        site = self.site.config.site.id
        if self.store is not None:
            await self._io_call(self.store.upsert_intervals, site, resolution, intervals, now=time.time())
        if self.influx is not None and self.influx.cfg.write_intervals:
            self.influx.submit(self.lines.intervals(site, resolution, intervals))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and process until ``stop`` is set; then stop in two phases."""
        if self.influx is not None:
            await self.influx.start()
        self.runner.start()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.tick / self.clock.speed)
                await self.step()
        finally:
            await self.runner.stop()
            await self.step()
            await self.close()

    async def close(self) -> None:
        for conn in self.connections.values():
            await conn.close()
        if self.influx is not None:
            await self.influx.close()
        if self.prometheus is not None:
            self.prometheus.close()
        if self.store is not None:
            await self._io_call(self.store.close)
        self._io.shutdown(wait=True)
