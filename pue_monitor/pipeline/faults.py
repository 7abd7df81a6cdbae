"""Sensor faults: judgements about a *meter* over a stretch of time (a stuck counter, a reading
outside its physical range, a parent meter that disagrees with its sub-meters), as opposed to
:class:`~pue_monitor.pipeline.events.PipelineEvent`, a judgement about one reading.

A :class:`SensorFault` opens (``end`` is None) when a detector decides, and is handed out again
with ``end`` set when it clears; its identity is ``(device, point, kind, start)``. Outputs store
the suspect stretch (so a report can flag, not silently use, the energy of that meter in that
time) and the alert engine raises one alert per open fault.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pue_monitor.pipeline.energy import SeriesSpec
from pue_monitor.pipeline.events import PipelineEvent
from pue_monitor.readings import Quality, Reading

if TYPE_CHECKING:
    from pue_monitor.config.loader import LoadedSite
    from pue_monitor.config.models import SiteConfig

__all__ = ["FaultDetector", "FaultKind", "FaultSettings", "SensorFault"]


class FaultKind(enum.StrEnum):
    STUCK = "stuck"  # value or counter flat-lined while the load it measures is not
    OUT_OF_RANGE = "out_of_range"  # outside the point's physical or configured range
    BACKWARDS = "backwards"  # a counter running backwards (not a reset, not a rollover)
    GLITCH = "glitch"  # implausible readings dropped by the pipeline (spike, lone zero)
    RESET = "reset"  # counter reset or meter replacement
    BALANCE = "balance"  # parent meter vs the sum of its sub-meters outside the loss band


@dataclass(frozen=True, slots=True)
class SensorFault:
    """One suspect stretch of one meter point (POSIX s). ``point`` is "" for a whole-meter fault
    (energy balance). ``detail``: one line for humans, naming the figures that decided it."""

    device: str
    point: str
    kind: FaultKind
    start: float
    end: float | None  # None while the fault is active
    detail: str = ""
    value: float | None = None  # the figure judged (e.g. the balance error in %), when there is one

    @property
    def active(self) -> bool:
        return self.end is None

    @property
    def key(self) -> tuple[str, str, str, float]:
        return (self.device, self.point, str(self.kind), self.start)


# --------------------------------------------------------------------------- detection
#
# FaultDetector judges the raw readings and the pipeline's events; it never changes them. Each
# detector keeps a few numbers per series (bounded), so the cost per reading is O(1).

#: physical bounds of points by unit (temperature, relative humidity) when none is configured
TEMPERATURE_UNITS = frozenset({"degC", "°C", "C", "celsius"})
HUMIDITY_UNITS = frozenset({"%RH", "%rh", "RH%"})
TEMPERATURE_RANGE = (-60.0, 90.0)  # °C: outdoor extremes to hot-aisle/chilled-water return
HUMIDITY_RANGE = (0.0, 100.0)  # % RH
#: history of poll-to-poll changes kept per analog point, and how much is needed to judge it
JITTER_HISTORY = 240
JITTER_MIN_HISTORY = 60
#: a point is judged stuck only if it changed in at least this share of its polls (it jitters)
JITTER_SHARE = 0.9
#: a run of identical values this improbable (given the point's change rate) is stuck
STUCK_ALPHA = 1e-6
#: a counter is stuck only if its recent rate would have advanced it by this many resolutions
STUCK_COUNTER_STEPS = 10.0
#: roles whose load may legitimately stop (judged stuck only against their own power point)
_MAY_STOP = frozenset({"renewable", "heat_reuse", "water"})
#: pipeline judgements that open an event fault, and the kind they open
_EVENT_FAULTS = {"glitch": FaultKind.GLITCH, "bad_value": FaultKind.GLITCH, "reset": FaultKind.RESET}


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """What the detectors judge by (see the README, "Sensor faults"); ``FaultDetector.from_site``
    takes them from the site's ``faults:`` and ``balance:`` sections."""

    hold_s: float = 900.0
    stuck_polls: int = 15
    stuck_counter_s: float = 900.0
    #: meter -> its parent meter (the hierarchy); balance judged when not empty
    parents: Mapping[str, str] = field(default_factory=dict)
    loss_band_pct: tuple[float, float] = (-2.0, 8.0)
    balance_window_s: float = 900.0
    balance_min_load_kw: float = 1.0
    #: (device, point) -> configured plausible range (in the point's unit, after scale)
    ranges: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


class _Analog:
    """Run of identical values of one analog point and its history of poll-to-poll changes."""

    __slots__ = ("changes", "last_ts", "run", "run_start", "value")

    def __init__(self) -> None:
        self.changes: deque[bool] = deque(maxlen=JITTER_HISTORY)
        self.value = math.nan
        self.run = 0
        self.run_start = -math.inf
        self.last_ts = -math.inf


class _Counter:
    """Flat stretch of one counter and the meter's rate before it (raw units per second)."""

    __slots__ = ("flat_kwh", "flat_start", "flat_value", "last_ts", "last_value", "rate", "rate_before")

    def __init__(self) -> None:
        self.last_ts = -math.inf
        self.last_value = math.nan
        self.flat_start = math.nan  # ts of the first reading of the flat stretch
        self.flat_value = math.nan
        self.flat_kwh = math.nan  # the meter's power integral (kWh) at the start of the flat stretch
        self.rate: float | None = None  # EWMA of the advancing rate
        #: the EWMA before the step that started the flat stretch (that step may be cut short)
        self.rate_before: float | None = None


class _Pair:
    """Previous reading of one energy/power series (balance)."""

    __slots__ = ("ts", "value")

    def __init__(self, ts: float, value: float) -> None:
        self.ts = ts
        self.value = value


class FaultDetector:
    """Sensor-fault detectors over the raw readings and the pipeline's events.

    Feed it every reading (:meth:`readings`) and every pipeline judgement (:meth:`events`) and
    call :meth:`check` once per tick: it returns the faults opened or cleared since the last
    call (a cleared one again, with ``end`` set). :meth:`active` lists the open ones.
    """

    def __init__(self, specs: Mapping[tuple[str, str], SeriesSpec], settings: FaultSettings | None = None) -> None:
        self.specs = dict(specs)
        self.settings = s = settings or FaultSettings()
        self._analog: dict[tuple[str, str], _Analog] = {}
        self._counter: dict[tuple[str, str], _Counter] = {}
        self._meter_power: dict[str, list[tuple[str, str]]] = {}
        self._meter_role: dict[str, str] = {}
        for key, spec in self.specs.items():
            self._meter_role[spec.meter] = str(spec.role)
            if spec.kind == "power":
                self._meter_power.setdefault(spec.meter, []).append(key)
        self._latest: dict[tuple[str, str], tuple[float, float]] = {}  # last GOOD (ts, value)
        #: per meter with power points: the integral of its power (kWh), None after a gap
        self._power_kwh: dict[str, float] = {}
        self._units: dict[tuple[str, str], str] = {}
        self._open: dict[tuple[str, str, FaultKind], SensorFault] = {}
        self._last_event: dict[tuple[str, str, FaultKind], float] = {}
        self._out_of_range_since: dict[tuple[str, str], float] = {}  # back in range since
        self._backwards: set[tuple[str, str, float]] = set()
        self._changed: list[SensorFault] = []
        # balance: per meter and window start: kWh, and seconds covered per series
        self._children: dict[str, list[str]] = {}
        for child, parent in s.parents.items():
            self._children.setdefault(parent, []).append(child)
        self._balance_meters = set(self._children) | {c for cs in self._children.values() for c in cs}
        self._balance_series = {
            k: sp for k, sp in self.specs.items() if sp.meter in self._balance_meters and self._uses(k, sp)
        }
        self._prev: dict[tuple[str, str], _Pair] = {}
        self._energy: dict[float, dict[str, float]] = {}
        self._covered: dict[float, dict[tuple[str, str], float]] = {}
        self._judged_until = -math.inf

    def _uses(self, key: tuple[str, str], spec: SeriesSpec) -> bool:
        """A meter's energy comes from its counters, or from its power when it has none."""
        if spec.kind == "counter":
            return True
        return not any(sp.meter == spec.meter and sp.kind == "counter" for sp in self.specs.values())

    @classmethod
    def from_site(
        cls, site: LoadedSite | SiteConfig, specs: Mapping[tuple[str, str], SeriesSpec] | None = None
    ) -> FaultDetector:
        """A detector with the site's ``faults:``/``balance:`` settings, its meter hierarchy and
        per-point ranges. ``specs`` default to the site's energy model (``series_specs``; for a
        bare SiteConfig its meters' points in kWh and kW)."""
        from pue_monitor.config.loader import LoadedSite
        from pue_monitor.config.models import MqttDevice, SparkplugDevice

        cfg = site.config if isinstance(site, LoadedSite) else site
        if specs is None:
            if isinstance(site, LoadedSite):
                from pue_monitor.pipeline.model import series_specs

                specs = series_specs(site)
            else:
                specs = _bare_specs(cfg)
        ranges: dict[tuple[str, str], tuple[float, float]] = {}
        for dev in cfg.devices:
            if isinstance(dev, MqttDevice):
                pts = [p for sub in dev.subscriptions for p in sub.points]
            elif isinstance(dev, SparkplugDevice):
                pts = list(dev.metrics.values())
            else:
                pts = []
            for p in pts:
                if p.range is not None:
                    ranges[(dev.id, p.point)] = p.range
            for name, ov in getattr(dev, "overrides", {}).items():
                if ov.range is not None:
                    ranges[(dev.id, name)] = ov.range
        parents = {d.id: d.meter.parent for d in cfg.devices if d.meter is not None and d.meter.parent is not None}
        bal = cfg.balance
        f = cfg.faults
        settings = FaultSettings(
            hold_s=f.hold_s,
            stuck_polls=f.stuck_polls,
            stuck_counter_s=f.stuck_counter_s,
            parents=parents,
            loss_band_pct=bal.loss_band_pct if bal is not None else (-2.0, 8.0),
            balance_window_s={"15m": 900.0, "1h": 3600.0}[bal.window] if bal is not None else 900.0,
            balance_min_load_kw=bal.min_load_kw if bal is not None else 1.0,
            ranges=ranges,
        )
        return cls(specs, settings)

    # ------------------------------------------------------------------ input

    def readings(self, readings: Sequence[Reading]) -> None:
        """Every raw reading (GOOD and BAD; BAD ones are not judged)."""
        for r in readings:
            if r.quality != Quality.GOOD or not (math.isfinite(r.ts) and math.isfinite(r.value)):
                continue
            key = (r.device, r.point)
            prev = self._latest.get(key)
            if prev is not None and r.ts <= prev[0]:
                continue  # late or duplicate: the pipeline judges those
            self._latest[key] = (r.ts, r.value)
            spec = self.specs.get(key)
            if spec is not None and spec.kind == "power" and prev is not None:
                self._integrate(spec, prev, r)
            if key not in self._units:
                self._units[key] = r.unit
            bounds = self._bounds(key, spec, r.unit)
            if bounds is not None:
                self._range(key, r, bounds, spec)
            if spec is not None and spec.kind == "counter":
                self._counter_reading(key, spec, r)
            elif spec is not None or bounds is not None:
                self._analog_reading(key, spec, r)
            if key in self._balance_series:
                self._balance_reading(key, self._balance_series[key], r)

    def events(self, events: Sequence[PipelineEvent]) -> None:
        """The pipeline's judgements: glitches, bad values and resets open a fault at the event,
        held ``hold_s`` after the last one of its point (one fault per burst)."""
        for ev in events:
            kind = _EVENT_FAULTS.get(str(ev.kind))
            if kind is None:
                continue
            spec = self.specs.get((ev.device, ev.point))
            if spec is not None and spec.kind == "power" and ev.value is not None and math.isfinite(ev.value):
                continue  # negative or above max_power_kw: judged as out_of_range from the reading
            if kind is FaultKind.RESET and (ev.device, ev.point, ev.ts) in self._backwards:
                kind = FaultKind.BACKWARDS
                self._backwards.discard((ev.device, ev.point, ev.ts))
            fk = (ev.device, ev.point, kind)
            self._last_event[fk] = max(self._last_event.get(fk, -math.inf), ev.ts)
            if fk not in self._open:
                what = f"value {ev.value:g}" if ev.value is not None else "no value"
                detail = f"pipeline judged a reading {ev.kind} ({what}): {ev.detail}" if ev.detail else ""
                self._opened(SensorFault(ev.device, ev.point, kind, ev.ts, None, detail or f"{ev.kind}", ev.value))

    def check(self, now: float) -> list[SensorFault]:
        """Faults opened or cleared since the last call (time-based judgements run here)."""
        hold = self.settings.hold_s
        for fk, last in list(self._last_event.items()):
            if now - last >= hold and fk in self._open:
                self._cleared(fk, last + hold)
                del self._last_event[fk]
        if self._children:
            self._judge_balance(now)
        out, self._changed = self._changed, []
        return out

    def adopt(self, old: FaultDetector, now: float, devices: Iterable[str] | None = None) -> FaultDetector:
        """Take over the open faults of ``old`` (a reload): they clear as this detector sees their
        points again (an event fault ``hold_s`` after its last event); those of devices not in
        ``devices`` (the devices still configured; None: all) clear at ``now``. Returns self."""
        keep = None if devices is None else set(devices)
        self._changed = old._changed
        for fk, fault in old._open.items():
            self._open[fk] = fault
            if fk in old._last_event:
                self._last_event[fk] = old._last_event[fk]
            if keep is not None and fault.device not in keep:
                self._last_event.pop(fk, None)
                self._cleared(fk, now)
        return self

    def close_all(self, now: float, why: str = "still open when pue-monitor stopped") -> None:
        """End every open fault at ``now`` (a shutdown: this process judges nothing after it; a
        fault that persists opens again after the restart). The next :meth:`check` returns them."""
        for fk, fault in list(self._open.items()):
            self._open[fk] = dataclasses.replace(fault, detail=f"{fault.detail}; {why}" if fault.detail else why)
            self._last_event.pop(fk, None)
            self._cleared(fk, now)

    def active(self) -> list[SensorFault]:
        return sorted(self._open.values(), key=lambda f: (f.start, f.device, f.point, str(f.kind)))

    # --------------------------------------------------------------- helpers

    def _opened(self, fault: SensorFault) -> None:
        self._open[(fault.device, fault.point, fault.kind)] = fault
        self._changed.append(fault)

    def _cleared(self, fk: tuple[str, str, FaultKind], end: float) -> None:
        fault = self._open.pop(fk, None)
        if fault is not None:
            self._changed.append(dataclasses.replace(fault, end=max(end, fault.start)))

    def _bounds(self, key: tuple[str, str], spec: SeriesSpec | None, unit: str) -> tuple[float, float] | None:
        """Plausible range of a point in its own unit, or None (not judged)."""
        own = self.settings.ranges.get(key)
        if own is not None:
            return own
        if spec is not None and spec.kind == "power":
            return (-spec.resolution if spec.resolution else 0.0, spec.max_power_kw / spec.factor)
        if unit in TEMPERATURE_UNITS:
            return TEMPERATURE_RANGE
        name = key[1].lower()
        if unit in HUMIDITY_UNITS or (unit == "%" and ("humid" in name or name in ("rh", "rel_humidity"))):
            return HUMIDITY_RANGE
        return None

    def _range(self, key: tuple[str, str], r: Reading, bounds: tuple[float, float], spec: SeriesSpec | None) -> None:
        lo, hi = bounds
        fk = (key[0], key[1], FaultKind.OUT_OF_RANGE)
        if lo <= r.value <= hi:
            if fk in self._open:
                since = self._out_of_range_since.setdefault(key, r.ts)
                if r.ts - since >= self.settings.hold_s:
                    self._cleared(fk, since)
                    del self._out_of_range_since[key]
            return
        self._out_of_range_since.pop(key, None)
        if fk not in self._open:
            where = "configured" if key in self.settings.ranges else "physical"
            unit = f" {r.unit}" if r.unit else ""
            self._opened(
                SensorFault(
                    key[0], key[1], FaultKind.OUT_OF_RANGE, r.ts, None,
                    f"{r.value:g}{unit} outside the {where} range [{lo:g}, {hi:g}]{unit}", r.value,
                )
            )  # fmt: skip

    def _analog_reading(self, key: tuple[str, str], spec: SeriesSpec | None, r: Reading) -> None:
        a = self._analog.get(key)
        if a is None:
            a = self._analog[key] = _Analog()
        a.last_ts = r.ts
        fk = (key[0], key[1], FaultKind.STUCK)
        if r.value == a.value:
            a.run += 1
            if fk not in self._open and a.run >= self._stuck_polls(a) and r.value != 0.0:
                share = sum(a.changes) / len(a.changes)
                unit = f" {r.unit}" if r.unit else ""
                self._opened(
                    SensorFault(
                        key[0], key[1], FaultKind.STUCK, a.run_start, None,
                        f"{r.value:g}{unit} repeated in {a.run} polls over {r.ts - a.run_start:.0f} s; "
                        f"it changed in {share:.0%} of its last {len(a.changes)} polls before", r.value,
                    )
                )  # fmt: skip
            return
        if a.run >= 1:
            if fk in self._open:
                self._cleared(fk, r.ts)
            a.changes.extend([False] * min(a.run - 1, JITTER_HISTORY))
            a.changes.append(True)
        a.value, a.run, a.run_start = r.value, 1, r.ts

    def _stuck_polls(self, a: _Analog) -> int:
        """Polls of identical values that make a run stuck, from the point's change rate (a large
        number when the point does not normally change from poll to poll)."""
        if len(a.changes) < JITTER_MIN_HISTORY:
            return 1 << 30
        p = sum(a.changes) / len(a.changes)
        if p < JITTER_SHARE:
            return 1 << 30  # a point that often repeats its value (a smooth, coarse signal) is not judged
        p = min(p, 0.999)
        return max(self.settings.stuck_polls, math.ceil(math.log(STUCK_ALPHA) / math.log(1.0 - p)))

    def _counter_reading(self, key: tuple[str, str], spec: SeriesSpec, r: Reading) -> None:
        c = self._counter.get(key)
        if c is None:
            c = self._counter[key] = _Counter()
        tol = spec.resolution + 2.0 * 2.0**-22 * abs(r.value)
        fk = (key[0], key[1], FaultKind.STUCK)
        if math.isnan(c.last_value):
            c.last_ts, c.last_value, c.flat_start, c.flat_value = r.ts, r.value, r.ts, r.value
            c.flat_kwh = self._power_kwh.get(spec.meter, 0.0)
            return
        dt = r.ts - c.last_ts
        d = r.value - c.last_value
        if d < -tol:
            wrap = spec.rollover is not None and 0 <= spec.rollover - c.last_value + r.value < spec.rollover / 2
            if not wrap and r.value > 0.1 * c.last_value:
                self._backwards.add((key[0], key[1], r.ts))  # not back near zero: not a reset
                if len(self._backwards) > 10_000:
                    self._backwards.pop()
        if abs(r.value - c.flat_value) <= tol:
            flat = r.ts - c.flat_start
            rate = c.rate_before if c.rate_before is not None else c.rate
            if fk not in self._open and flat >= self.settings.stuck_counter_s and rate is not None:
                by_power = spec.meter in self._meter_power
                if by_power:  # what the meter's own power says it used meanwhile
                    expected = (self._power_kwh.get(spec.meter, 0.0) - c.flat_kwh) / spec.factor
                    why = f"its power points integrate to {expected * spec.factor:.3g} kWh meanwhile"
                else:
                    expected = rate * flat
                    why = (
                        f"at its recent rate of {rate * 3600.0 * spec.factor:.3g} kW it would have advanced "
                        f"{expected * spec.factor:.3g} kWh"
                    )
                if by_power:  # and it has load now (the pair across a switch-off integrates to some)
                    judged = all(self._latest.get(k, (0.0, 0.0))[1] > 0.0 for k in self._meter_power[spec.meter])
                else:
                    judged = self._meter_role.get(spec.meter) not in _MAY_STOP
                if judged and expected >= STUCK_COUNTER_STEPS * max(tol, 1e-9):
                    self._opened(
                        SensorFault(
                            key[0], key[1], FaultKind.STUCK, c.flat_start, None,
                            f"counter stood at {c.flat_value:g} for {flat:.0f} s; {why}", c.flat_value,
                        )
                    )  # fmt: skip
        else:
            if fk in self._open:
                self._cleared(fk, r.ts)
            if d > 0 and dt > 0 and dt <= 3 * spec.max_gap and d * spec.factor * 3600.0 / dt <= spec.max_power_kw:
                span = r.ts - c.flat_start  # the last step may end a flat stretch: average over it
                step = d / max(span, dt) if span <= 3 * spec.max_gap else d / dt
                c.rate_before = c.rate
                c.rate = step if c.rate is None else 0.8 * c.rate + 0.2 * step
            c.flat_start, c.flat_value = r.ts, r.value
            c.flat_kwh = self._power_kwh.get(spec.meter, 0.0)
        c.last_ts, c.last_value = r.ts, r.value

    def _integrate(self, spec: SeriesSpec, prev: tuple[float, float], r: Reading) -> None:
        """Add a power pair to its meter's integral (a gap counts as no energy: it makes no
        counter stuck)."""
        dt = r.ts - prev[0]
        if 0 < dt <= spec.max_gap:
            kwh = max(prev[1] + r.value, 0.0) / 2.0 * spec.factor * dt / 3600.0
            self._power_kwh[spec.meter] = self._power_kwh.get(spec.meter, 0.0) + kwh

    # --------------------------------------------------------------- balance

    def _balance_reading(self, key: tuple[str, str], spec: SeriesSpec, r: Reading) -> None:
        prev = self._prev.get(key)
        self._prev[key] = _Pair(r.ts, r.value)
        if prev is None:
            return
        dt = r.ts - prev.ts
        if not (0 < dt <= spec.max_gap):
            return  # a gap: the windows it spans are not covered, so not judged
        if spec.kind == "counter":
            kwh = (r.value - prev.value) * spec.factor
            tol = (spec.resolution + 2.0 * 2.0**-22 * abs(r.value)) * spec.factor
            if kwh < -tol or kwh > spec.max_power_kw * dt / 3600.0:
                return  # reset, wrap or glitch: the pair is not used
            kwh = max(kwh, 0.0)
        else:
            kwh = (r.value + prev.value) / 2.0 * spec.factor * dt / 3600.0
        w = self.settings.balance_window_s
        t0 = prev.ts
        while t0 < r.ts:
            k = math.floor(t0 / w) * w
            t1 = min(r.ts, k + w)
            if k + w > self._judged_until:
                share = (t1 - t0) / dt
                e = self._energy.setdefault(k, {})
                e[spec.meter] = e.get(spec.meter, 0.0) + kwh * share
                cov = self._covered.setdefault(k, {})
                cov[key] = cov.get(key, 0.0) + (t1 - t0)
            t0 = t1

    def _judge_balance(self, now: float) -> None:
        """Judge every window all of whose series have readings past its end."""
        if not self._balance_series:
            return
        w = self.settings.balance_window_s
        horizon = min((p.ts for p in self._prev.values()), default=-math.inf)
        if len(self._prev) < len(self._balance_series):
            horizon = -math.inf
        # a silent series holds nothing up for long: what is 4 windows old is judged (as incomplete)
        horizon = max(horizon, now - 4 * w)
        lo_pct, hi_pct = self.settings.loss_band_pct
        for k in sorted(self._energy):
            if k + w > horizon:
                break
            energy = self._energy.pop(k)
            covered = self._covered.pop(k, {})
            self._judged_until = max(self._judged_until, k + w)
            for parent, children in sorted(self._children.items()):
                keys = [key for key, sp in self._balance_series.items() if sp.meter == parent or sp.meter in children]
                if any(covered.get(key, 0.0) < w * 0.999 for key in keys):
                    continue  # a gap, reset or glitch in the window: not judged
                e_parent = energy.get(parent, 0.0)
                if e_parent * 3600.0 / w < self.settings.balance_min_load_kw:
                    continue
                e_children = math.fsum(energy.get(c, 0.0) for c in children)
                err = (e_parent - e_children) / e_parent * 100.0
                fk = (parent, "", FaultKind.BALANCE)
                if lo_pct <= err <= hi_pct:
                    self._cleared(fk, k)
                elif fk not in self._open:
                    self._opened(
                        SensorFault(
                            parent, "", FaultKind.BALANCE, k, None,
                            f"{e_parent:.3f} kWh vs {e_children:.3f} kWh for its sub-meters "
                            f"({', '.join(sorted(children))}) over {w / 60:.0f} min: {err:+.1f} % "
                            f"outside the loss band [{lo_pct:g}, {hi_pct:g}] %", round(err, 3),
                        )
                    )  # fmt: skip
        for k in [k for k in self._covered if k not in self._energy]:
            del self._covered[k]


def _bare_specs(cfg: SiteConfig) -> dict[tuple[str, str], SeriesSpec]:
    """Series of a site without its profiles: counters in kWh, power in kW (factor 1)."""
    out: dict[tuple[str, str], SeriesSpec] = {}
    for dev in cfg.devices:
        m = dev.meter
        if m is None:
            continue
        kinds: list[tuple[Literal["counter", "power"], str]] = [("counter", p) for p in m.energy_points]
        kinds += [("power", p) for p in m.power_points]
        for kind, point in kinds:
            out[(dev.id, point)] = SeriesSpec(
                meter=dev.id, role=m.role, it_location=m.it_location, kind=kind, factor=1.0,
                rollover=m.rollover if kind == "counter" else None, max_gap=2.5 * dev.interval,
                max_power_kw=m.max_power, resolution=(m.resolution or 0.0) if kind == "counter" else 0.0,
            )  # fmt: skip
    return out
