"""Prometheus endpoint (prometheus-client).

A custom collector renders the service's state at scrape time, so nothing is
double-booked and each service instance has its own registry. Names follow the
Prometheus conventions: ``pue_`` prefix, base units in the name (watts, seconds,
ratio), ``_total`` for counters.
"""

from __future__ import annotations

import math
import platform
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pue_monitor import __version__
from pue_monitor.collectors.runner import (
    DEVICE_DOWN,
    DEVICE_PENDING,
    DEVICE_UP,
    ERROR_KINDS,
    LATENCY_BUCKETS,
    DeviceStats,
)
from pue_monitor.config.models import KPI_ROLES
from pue_monitor.errors import UserError
from pue_monitor.pipeline.events import PipelineEvent
from pue_monitor.pipeline.faults import SensorFault
from pue_monitor.pipeline.freecooling_live import mode_name
from pue_monitor.readings import Quality, Reading
from pue_monitor.sinks.base import Output
from pue_monitor.sinks.http import Route, serve


@dataclass
class LiveState:
    """What the pipeline knows now; updated by the service, read at scrape time."""

    site: str
    warning: float
    critical: float
    instant_pue: float | None = None
    power_kw_by_role: dict[str, float] = field(default_factory=dict)
    #: window ("1m", "15m", "1h", "1d") -> latest complete interval (PueInterval-shaped)
    latest: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, DeviceStats] = field(default_factory=dict)
    #: readings that reached the pipeline, per device
    readings: Counter[str] = field(default_factory=Counter)
    #: latest reading per (device, point), for displays
    latest_readings: dict[tuple[str, str], Reading] = field(default_factory=dict)
    #: the InfluxDB sink, when one is configured (``pue_monitor.sinks.influx.InfluxSink``)
    sink: Any = None
    #: the embedded store, when enabled (``pue_monitor.sinks.store.StoreOutput``)
    store: Any = None
    #: the MQTT connection, when the site has push devices (``collectors.mqtt.MqttSource``)
    mqtt: Any = None
    #: pipeline events (glitch, reset, ...) per (device, kind), all time
    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: role -> joules of the closed 1-minute intervals in which the role's energy is known
    energy_j: dict[str, float] = field(default_factory=dict)
    #: (meter, role) -> joules of the closed 1-minute intervals in which the meter is not missing
    meter_energy_j: dict[tuple[str, str], float] = field(default_factory=dict)
    #: companion KPI totals of the closed 1-minute intervals in which each is known: water_l
    #: (litres), heat_reused_j, renewable_j (joules), co2_g (grams); a key is absent until measured once
    kpi_totals: dict[str, float] = field(default_factory=dict)
    #: meter id -> role (from the site's energy model)
    meter_roles: dict[str, str] = field(default_factory=dict)
    #: device -> poll interval (clock seconds): a reading older than 3 intervals is not exported
    intervals_s: dict[str, float] = field(default_factory=dict)
    #: the service clock's ``now`` (for the staleness of readings); None: never stale
    now: Callable[[], float] | None = None
    #: configuration reloads (SIGHUP) by result: success, failure
    reloads: Counter[str] = field(default_factory=Counter)
    #: economiser id -> its latest 1-minute free-cooling row (FreeCoolingInterval-shaped)
    free_cooling: dict[str, Any] = field(default_factory=dict)
    #: (economiser, quantity) -> all-time sum over closed minutes: "available_s", "used_s",
    #: "avoidable_j" (quantities with nothing known yet are absent, never 0)
    free_cooling_totals: dict[tuple[str, str], float] = field(default_factory=dict)
    #: open sensor faults: (device, point, kind) -> start (POSIX s)
    sensor_faults: dict[tuple[str, str, str], float] = field(default_factory=dict)


KWH_TO_J = 3.6e6
#: roles of the companion KPI meters: outside the energy model, exported by their own counters
_KPI_ROLES = frozenset(r.value for r in KPI_ROLES)
#: LiveState.kpi_totals key, PueInterval attribute, factor to the exported unit
_KPI_TOTALS = (
    ("water_l", "water_l", 1.0),
    ("heat_reused_j", "e_heat_reused", KWH_TO_J),
    ("renewable_j", "e_renewable", KWH_TO_J),
    ("co2_g", "co2_kg", 1000.0),  # grams: Prometheus' base unit of mass (promtool lint)
)
#: companion KPI gauges: PueInterval attribute, metric name, help (ISO/IEC 30134 part)
_KPI_GAUGES = (
    ("wue", "pue_water_usage_effectiveness_litres_per_kwh",
     "WUE (ISO/IEC 30134-9): site water over IT energy, L/kWh, latest complete interval per window; "
     "absent when no water meter measured it."),
    ("cue", "pue_carbon_usage_effectiveness_kg_per_kwh",
     "CUE (ISO/IEC 30134-8): CO2 of facility energy ((E_DC - renewable) x grid emission factor) over IT "
     "energy, kg/kWh, latest complete interval per window."),
    ("erf", "pue_energy_reuse_factor_ratio",
     "ERF (ISO/IEC 30134-6): reused heat energy over facility energy, latest complete interval per window; "
     "absent when no heat-reuse meter measured it."),
    ("ref", "pue_renewable_energy_factor_ratio",
     "REF (ISO/IEC 30134-3): renewable energy over facility energy, latest complete interval per window; "
     "absent when neither a renewable meter nor a contracted share gives it."),
)  # fmt: skip
#: companion KPI counters: LiveState.kpi_totals key, metric name (``_total`` added), help
_KPI_COUNTERS = (
    ("water_l", "pue_water_litres", "Site water (WUE numerator), closed 1-minute intervals."),
    ("heat_reused_j", "pue_heat_reused_joules", "Heat exported for reuse (ERF numerator), closed 1-minute intervals."),
    ("renewable_j", "pue_renewable_energy_joules", "Renewable energy (REF numerator), closed 1-minute intervals."),
    ("co2_g", "pue_co2_grams", "CO2 of facility energy (CUE numerator), closed 1-minute intervals."),
)  # fmt: skip
KEEP_MINUTES_S = 2 * 86400.0  # restatements are followed this far back (the service's own horizon)


class EnergyCounters:
    """Monotonic energy counters fed with closed (possibly restated) 1-minute intervals.

    A minute counts once: a restated minute adds the difference to what it contributed
    before. A counter never goes down: a restatement that lowers a minute's energy is held
    back (the exported value waits until the true sum passes it again). Minutes older than
    ``KEEP_MINUTES_S`` before the newest are forgotten and ignored if they come again.
    """

    def __init__(self, state: LiveState) -> None:
        self.state = state
        self._true: dict[tuple[str, ...], float] = {}
        self._seen: dict[float, dict[tuple[str, ...], float]] = {}
        self._newest = -float("inf")

    def add(self, iv: Any) -> None:
        if iv.start < self._newest - KEEP_MINUTES_S:
            return
        new: dict[tuple[str, ...], float] = {}
        if iv.e_facility is not None:
            new[("role", "facility_input")] = iv.e_facility * KWH_TO_J
        if iv.e_it is not None:
            new[("role", "it")] = iv.e_it * KWH_TO_J
        for role, kwh in iv.e_subsystems.items():
            new[("role", role)] = kwh * KWH_TO_J
        for meter, kwh in getattr(iv, "e_meters", {}).items():
            role = self.state.meter_roles.get(meter, "unknown")
            if role not in _KPI_ROLES:  # those are in pue_water_litres_total etc. (water: litres)
                new[("meter", meter, role)] = kwh * KWH_TO_J
        for name, attr, scale in _KPI_TOTALS:
            v = getattr(iv, attr, None)
            if v is not None:
                new[("kpi", name)] = v * scale
        old = self._seen.get(iv.start, {})
        for key in new.keys() | old.keys():
            total = self._true.get(key, 0.0) + new.get(key, 0.0) - old.get(key, 0.0)
            self._true[key] = total
            if key[0] == "role":
                cur = self.state.energy_j
                cur[key[1]] = max(cur.get(key[1], 0.0), total)
            elif key[0] == "kpi":
                kcur = self.state.kpi_totals
                kcur[key[1]] = max(kcur.get(key[1], 0.0), total)
            else:
                mcur = self.state.meter_energy_j
                mkey = (key[1], key[2])
                mcur[mkey] = max(mcur.get(mkey, 0.0), total)
        self._seen[iv.start] = new
        if iv.start > self._newest:
            self._newest = iv.start
            horizon = iv.start - KEEP_MINUTES_S
            if min(self._seen) < horizon:
                self._seen = {k: v for k, v in self._seen.items() if k >= horizon}


class PueCollector(Collector):
    def __init__(self, state: LiveState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        site = s.site
        info = GaugeMetricFamily(
            "pue_build_info", "pue-monitor version and Python version; always 1.", labels=["site", "version", "python"]
        )
        info.add_metric([site, __version__, platform.python_version()], 1.0)
        yield info
        pue = GaugeMetricFamily(
            "pue_power_usage_effectiveness_ratio",
            "PUE (ISO/IEC 30134-2): facility energy over IT energy for the latest complete "
            "interval of each window; window=instant is facility power over IT power.",
            labels=["site", "window"],
        )
        if s.instant_pue is not None:
            pue.add_metric([site, "instant"], s.instant_pue)
        ppue = GaugeMetricFamily(
            "pue_partial_power_usage_effectiveness_ratio",
            "Partial PUE per subsystem: (E_IT + E_subsystem) / E_IT.",
            labels=["site", "subsystem", "window"],
        )
        quality = GaugeMetricFamily(
            "pue_data_quality_ratio",
            "Share of meter-intervals measured, estimated or missing in the latest interval.",
            labels=["site", "window", "status"],
        )
        cat = GaugeMetricFamily(
            "pue_measurement_category",
            "ISO/IEC 30134-2 measurement category (1 UPS output, 2 PDU output, 3 IT input) "
            "of the latest interval; the weakest IT meter decides.",
            labels=["site", "window"],
        )
        start = GaugeMetricFamily(
            "pue_interval_start_timestamp_seconds",
            "Start of the latest complete interval.",
            labels=["site", "window"],
        )
        for window, iv in sorted(s.latest.items()):
            if iv.pue is not None:
                pue.add_metric([site, window], iv.pue)
            for sub, val in sorted(iv.ppue.items()):
                ppue.add_metric([site, sub, window], val)
            for status in ("measured", "estimated", "missing"):
                quality.add_metric([site, window, status], getattr(iv, status))
            cat.add_metric([site, window], iv.category)
            start.add_metric([site, window], iv.start)
        yield from (pue, ppue, quality, cat, start)

        energy = CounterMetricFamily(
            "pue_energy_joules",
            "Energy per energy-model role over the closed 1-minute intervals in which the role's "
            "energy is known. PUE over any range: increase(facility_input) / increase(it).",
            labels=["site", "role"],
        )
        for role, j in sorted(s.energy_j.items()):
            energy.add_metric([site, role], j)
        meter_energy = CounterMetricFamily(
            "pue_meter_energy_joules",
            "Energy per energy-model meter over the closed 1-minute intervals in which the meter is not missing "
            "(water, heat-reuse and renewable meters: pue_water_litres, pue_heat_reused_joules, "
            "pue_renewable_energy_joules).",
            labels=["site", "meter", "role"],
        )
        for (meter, role), j in sorted(s.meter_energy_j.items()):
            meter_energy.add_metric([site, meter, role], j)
        yield from (energy, meter_energy)
        yield from self._kpi_metrics(s)

        power = GaugeMetricFamily("pue_power_watts", "Active power per energy-model role.", labels=["site", "role"])
        for role, kw in sorted(s.power_kw_by_role.items()):
            power.add_metric([site, role], kw * 1000.0)
        yield power
        yield self._reading_values(s)
        thr = GaugeMetricFamily("pue_threshold_ratio", "Configured PUE limits.", labels=["site", "level"])
        thr.add_metric([site, "warning"], s.warning)
        thr.add_metric([site, "critical"], s.critical)
        yield thr
        yield from self._device_metrics(s)
        if s.mqtt is not None:
            yield from self._mqtt_metrics(s.mqtt, site)
        if s.sink is not None:
            yield from self._sink_metrics(s.sink, site)
        if s.store is not None:
            yield from self._store_metrics(s.store, site)
        events = CounterMetricFamily(
            "pue_pipeline_events",
            "Readings the pipeline judged (glitch, reset, rollover, conflict, late, out_of_window, bad_value).",
            labels=["site", "device", "kind"],
        )
        for (dev, kind), n in sorted(s.events.items()):
            events.add_metric([site, dev, kind], n)
        yield events
        faults = GaugeMetricFamily(
            "pue_sensor_faults_active",
            "1 per open sensor fault (stuck, out_of_range, glitch, reset, backwards, balance) of a device's "
            'point (point "" for a whole meter); absent when none is open.',
            labels=["site", "device", "point", "kind"],
        )
        for dev, point, kind in sorted(s.sensor_faults):
            faults.add_metric([site, dev, point, kind], 1.0)
        yield faults
        reloads = CounterMetricFamily(
            "pue_config_reloads",
            "Configuration reloads (SIGHUP) by result: success (applied) or failure (invalid or "
            "needs a restart; the previous configuration kept running).",
            labels=["site", "result"],
        )
        for result, n in sorted(s.reloads.items()):
            reloads.add_metric([site, result], n)
        yield reloads
        if s.free_cooling:
            yield from self._free_cooling_metrics(s)

    @staticmethod
    def _free_cooling_metrics(s: LiveState) -> Iterator[Metric]:
        """Free-cooling state of the latest minute per economiser, and all-time totals."""
        site = s.site
        frac = GaugeMetricFamily(
            "pue_free_cooling_available_ratio",
            "Share of the cooling load the economiser could carry in the latest minute, from the "
            "outdoor weather (absent while the weather is missing or stale).",
            labels=["site", "economiser"],
        )
        mode = GaugeMetricFamily(
            "pue_free_cooling_mode",
            "Free-cooling mode of the latest minute (1 for the current mode, 0 for the others): "
            "kind=available from the weather, kind=actual what the plant ran (inferred=true when "
            "inferred from chiller power).",
            labels=["site", "economiser", "kind", "inferred", "mode"],
        )
        for econ, row in sorted(s.free_cooling.items()):
            if row.fraction is not None:
                frac.add_metric([site, econ], row.fraction)
            inferred = "true" if row.inferred else "false"
            for kind, code, inf in (("available", row.mode, "false"), ("actual", row.actual_mode, inferred)):
                now = mode_name(code)
                for name in ("full", "partial", "none", "unknown"):
                    mode.add_metric([site, econ, kind, inf, name], float(name == now))
        yield from (frac, mode)
        docs = {
            "available_s": (
                "pue_free_cooling_available_seconds",
                "Seconds the weather allowed full or partial free cooling, over closed minutes.",
            ),
            "used_s": (
                "pue_free_cooling_used_seconds",
                "Seconds the plant ran full or partial free cooling, over closed minutes "
                "(utilisation = increase(used) / increase(available)).",
            ),
            "avoidable_j": (
                "pue_free_cooling_avoidable_chiller_energy_joules",
                "Chiller energy the economiser could have carried (available fraction x chiller energy), "
                "over closed minutes in which chiller power and weather are known.",
            ),
        }
        for key, (name, doc) in docs.items():
            fam = CounterMetricFamily(name, doc, labels=["site", "economiser"])
            for (econ, q), v in sorted(s.free_cooling_totals.items()):
                if q == key:
                    fam.add_metric([site, econ], v)
            yield fam

    @staticmethod
    def _kpi_metrics(s: LiveState) -> Iterator[Metric]:
        """WUE/CUE/ERF/REF gauges per window and their numerators' counters: a series exists only
        when the KPI was measured (no water meter: no WUE series at all, never 0)."""
        for attr, name, doc in _KPI_GAUGES:
            g = GaugeMetricFamily(name, doc, labels=["site", "window"])
            for window, iv in sorted(s.latest.items()):
                v = getattr(iv, attr, None)
                if v is not None:
                    g.add_metric([s.site, window], v)
            yield g
        for key, name, doc in _KPI_COUNTERS:
            c = CounterMetricFamily(name, doc, labels=["site"])
            if key in s.kpi_totals:
                c.add_metric([s.site], s.kpi_totals[key])
            yield c

    @staticmethod
    def _reading_values(s: LiveState) -> Metric:
        """The latest GOOD reading per (device, point); a reading older than 3 poll intervals
        of its device is dropped (the series disappears)."""
        values = GaugeMetricFamily(
            "pue_reading_value",
            "Latest good reading of each device point (meter power and energy, UPS/PDU values), "
            "in the unit named by the unit label; absent when older than 3 poll intervals.",
            labels=["site", "device", "point", "unit"],
        )
        now = s.now() if s.now is not None else None
        for (dev, point), r in sorted(s.latest_readings.items()):
            if r.quality is not Quality.GOOD or not math.isfinite(r.value):
                continue
            every = s.intervals_s.get(dev)
            if now is not None and every is not None and now - r.ts > 3 * every:
                continue
            values.add_metric([s.site, dev, point, r.unit or ""], float(r.value))
        return values

    @staticmethod
    def _device_metrics(s: LiveState) -> Iterator[Metric]:
        lab = ["site", "device", "protocol"]
        polls = CounterMetricFamily("pue_collector_polls", "Polls started per device.", labels=lab)
        failed = CounterMetricFamily("pue_collector_failed_polls", "Polls that failed after all retries.", labels=lab)
        errors = CounterMetricFamily(
            "pue_collector_errors",
            "Request errors by kind (every kind the device's protocol can count is shown, 0 until it happens).",
            labels=[*lab, "kind"],
        )
        last = GaugeMetricFamily(
            "pue_collector_last_success_timestamp_seconds", "Time of the last successful poll.", labels=lab
        )
        latency = HistogramMetricFamily(
            "pue_collector_poll_latency_seconds",
            "Duration of successful polls (polled devices: Modbus, SNMP).",
            labels=lab,
        )
        up = GaugeMetricFamily("pue_collector_up", "1 if the last poll succeeded (0 also while pending).", labels=lab)
        state = GaugeMetricFamily(
            "pue_collector_state",
            "1 for the device's state: pending (not polled yet, or no message yet), up, down.",
            labels=[*lab, "state"],
        )
        readings = CounterMetricFamily("pue_collector_readings", "Readings delivered to the pipeline.", labels=lab)
        rejected = CounterMetricFamily(
            "pue_collector_rejected_readings",
            "Readings rejected before the pipeline: reason=out_of_window is a timestamp outside the "
            "time window around the collector's clock (time_window: in the site file).",
            labels=[*lab, "reason"],
        )
        for dev, st in sorted(s.devices.items()):
            lv = [s.site, dev, st.protocol]
            polls.add_metric(lv, st.polls)
            failed.add_metric(lv, st.failed_polls)
            kinds = dict.fromkeys(ERROR_KINDS.get(st.protocol, ()), 0)
            kinds.update(st.errors)
            for kind, n in sorted(kinds.items()):
                errors.add_metric([*lv, kind], n)
            if st.last_success is not None:
                last.add_metric(lv, st.last_success)
            if st.protocol in ("modbus", "snmp"):
                cum, buckets = 0, []
                for le, n in zip((*LATENCY_BUCKETS, float("inf")), st.latency_counts, strict=True):
                    cum += n
                    buckets.append(("+Inf" if le == float("inf") else repr(le), float(cum)))
                latency.add_metric(lv, buckets, st.latency_sum)
            up.add_metric(lv, 1.0 if st.up else 0.0)
            for name in (DEVICE_PENDING, DEVICE_UP, DEVICE_DOWN):
                state.add_metric([*lv, name], 1.0 if st.state == name else 0.0)
            readings.add_metric(lv, s.readings[dev])
            rejected.add_metric([*lv, "out_of_window"], st.out_of_window)
        yield from (polls, failed, errors, last, latency, up, state, readings, rejected)

    @staticmethod
    def _store_metrics(store: Any, site: str = "") -> Iterator[Metric]:
        lab, val = ["site", "path"], [site, str(store.path)]
        up = GaugeMetricFamily(
            "pue_store_up", "1 if the last write to the embedded store succeeded, 0 while it fails.", labels=lab
        )
        up.add_metric(val, 0.0 if store.up is False else 1.0)
        yield up
        pending = GaugeMetricFamily(
            "pue_store_pending_items", "Readings, rollups and events waiting in memory for the store.", labels=lab
        )
        pending.add_metric(val, store.pending)
        yield pending
        fails = CounterMetricFamily("pue_store_write_failures", "Store writes that failed (retried).", labels=lab)
        fails.add_metric(val, store.write_failures)
        yield fails
        dropped = CounterMetricFamily(
            "pue_store_dropped",
            "Items dropped because the write buffer was full while the store failed (data lost).",
            labels=[*lab, "kind"],
        )
        for kind, n in sorted(store.dropped.items()):
            dropped.add_metric([*val, kind], n)
        yield dropped

    @staticmethod
    def _mqtt_metrics(src: Any, site: str = "") -> Iterator[Metric]:
        # totals only: a per-topic label would be unbounded under a wildcard subscription
        # (per-topic counts stay in MqttSource.dropped / .out_of_window for the CLI and logs)
        dropped = CounterMetricFamily(
            "pue_mqtt_dropped_messages",
            "QoS 0 messages dropped on arrival because the bounded queue was full (MQTT overload).",
            labels=["site"],
        )
        dropped.add_metric([site], sum(src.dropped.values()))
        pauses = CounterMetricFamily(
            "pue_mqtt_read_pauses",
            "Times the collector stopped reading the socket because the QoS 1 queue was full (back-pressure).",
            labels=["site"],
        )
        pauses.add_metric([site], src.read_pauses)
        yield from (dropped, pauses)

    @staticmethod
    def _sink_metrics(sink: Any, site: str = "") -> Iterator[Metric]:
        st, spool = sink.stats, sink.spool.status()
        lab = ["site", "sink"]
        val = [site, "influxdb"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=lab)
            g.add_metric(val, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=lab)
            c.add_metric(val, value)
            return c

        yield gauge(
            "pue_sink_up",
            "1 if the last write succeeded and the sender and flusher tasks run without error.",
            1.0 if st.up else 0.0,
        )
        yield counter(
            "pue_sink_task_restarts",
            "Sender/flusher restarts after an unexpected error (logged with its cause).",
            getattr(st, "task_restarts", 0),
        )
        yield counter(
            "pue_sink_dropped_points",
            "Points dropped from memory because the spool could not take them (data lost).",
            getattr(st, "points_dropped", 0),
        )
        yield counter("pue_sink_points_written", "Points the database accepted.", st.points_written)
        yield counter("pue_sink_write_failures", "Writes that failed and were kept for retry.", st.write_failures)
        yield counter(
            "pue_sink_quarantined_batches", "Batches with points the database rejected.", st.batches_quarantined
        )
        yield gauge("pue_sink_spool_points", "Points waiting in the on-disk spool.", spool.queued_points)
        yield gauge("pue_sink_spool_bytes", "Size of the on-disk spool.", spool.queued_bytes)
        yield gauge("pue_sink_quarantine_points", "Points in the quarantine.", spool.quarantined_points)
        yield counter(
            "pue_sink_evicted_points", "Points dropped because the spool was full (data lost).", spool.evicted_points
        )


class LiveStateOutput(Output):
    """Keeps :class:`LiveState` (what /metrics and the CLI display show) up to date from the
    intervals and events the service publishes; closes the endpoint, if any, at the end."""

    name = "live state"

    def __init__(self, state: LiveState, endpoint: PrometheusEndpoint | None = None) -> None:
        self.state = state
        self.endpoint = endpoint
        self._last_end: float | None = None  # end of the newest 1-minute interval
        self.energy = EnergyCounters(state)

    def intervals(self, resolution: str, intervals: Sequence[Any]) -> None:
        if not intervals:
            return
        if resolution == "1m":
            for iv in intervals:
                self.energy.add(iv)
            newest = max(intervals, key=lambda iv: iv.start)
            cur = self.state.latest.get("1m")
            if cur is None or newest.start >= cur.start:
                self.state.latest["1m"] = newest
                self._last_end = newest.end
            return
        if self._last_end is None:
            return
        complete = [b for b in intervals if b.end <= self._last_end]
        if complete:
            newest = max(complete, key=lambda b: b.start)
            cur = self.state.latest.get(resolution)
            if cur is None or newest.start >= cur.start:
                self.state.latest[resolution] = newest

    def free_cooling(self, resolution: str, rows: Sequence[Any]) -> None:
        """1-minute rows: the latest per economiser, and the all-time totals (each minute once;
        the live state never restates a minute)."""
        if resolution != "1m":
            return
        st = self.state
        tot = st.free_cooling_totals
        for r in rows:
            cur = st.free_cooling.get(r.economiser)
            if cur is None or r.start >= cur.start:
                st.free_cooling[r.economiser] = r
            for key, v in (
                ("available_s", r.full_s + r.partial_s),
                ("used_s", r.used_s),
                ("avoidable_j", None if r.avoidable_kwh is None else r.avoidable_kwh * KWH_TO_J),
            ):
                if v is not None:
                    tot[(r.economiser, key)] = tot.get((r.economiser, key), 0.0) + v

    def events(self, events: Sequence[PipelineEvent]) -> None:
        for ev in events:
            self.state.events[(ev.device, str(ev.kind))] += 1

    def sensor_faults(self, faults: Sequence[SensorFault]) -> None:
        open_ = self.state.sensor_faults
        for f in faults:
            key = (f.device, f.point, str(f.kind))
            if f.end is None:
                open_[key] = f.start
            elif open_.get(key) == f.start:
                del open_[key]

    async def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()


class PrometheusEndpoint:
    """HTTP endpoint in a daemon thread, with its own registry: /metrics, and ``routes``
    (path -> JSON route: /status, /healthz, /readyz) on the same port."""

    def __init__(
        self, state: LiveState, *, host: str = "127.0.0.1", port: int = 9464, routes: Mapping[str, Route] | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(PueCollector(state))
        self.registry.register(PROCESS_COLLECTOR)  # process_* (Linux /proc): CPU, memory, open fds
        self.registry.register(PLATFORM_COLLECTOR)  # python_info
        self.routes = dict(routes or {})
        try:
            self._server, self._thread = serve(host, port, make_wsgi_app(self.registry), self.routes)
        except OSError as exc:  # port in use, privileged port, an address not on this host
            raise UserError(
                f"Prometheus endpoint {host}:{port}: cannot listen: {exc.strerror or exc}",
                "stop what uses the port, or set prometheus.port (and prometheus.host) in the site file "
                "or give --prometheus-port (0 picks a free port)",
            ) from None
        self.host = host
        self.port = int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
