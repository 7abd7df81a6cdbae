"""The alert engine: decides *when* an alert fires, repeats and resolves. Pure and clock-driven:
it is handed data (intervals, sensor faults) and asked ``evaluate(now, silences)``; it reads no
file and sends nothing (:mod:`pue_monitor.alerts.output` does the I/O).

Rules turn data into *conditions*, one per alert identity (its labels):

=====================  ==============================================  ==========  ========
alertname              condition                                       labels      severity
=====================  ==============================================  ==========  ========
``PueHigh``            closed 15-minute (``window="15m"``) or daily    window      warning,
                       (``window="1d"``) PUE over the site's warning               critical
                       / critical threshold
``PueDrift``           a drift report (CUSUM on the expected-PUE                   warning
                       model's residual) says PUE is drifting up
``PueSensorFault``     a sensor fault is open                          device,     warning
                                                                       point, kind
``PueDeviceDown``      a device's state is ``down``                    device      warning
``PueDeliveryBacklog`` an output's queue holds more than                output      warning
                       ``backlog_points`` points
``PueDataLost``        an output dropped or evicted points             output      critical
=====================  ==============================================  ==========  ========

A condition is on, off, or unknown (no judgement). PUE conditions are a Schmitt trigger: on once
PUE is over the threshold, off only once it is below ``threshold - hysteresis``; in between and
on an interval without PUE or with low coverage it keeps its state. Intervals are judged only
once closed (their end at or before the newest minute's end), in order of start; a restated
interval (same start) replaces the earlier one and the trigger is recomputed.

Lifecycle of an alert (one per fingerprint, so duplicates merge):

* **pending**: on, but not yet for ``for_s`` (data time: from the condition's start to the end
  of the last data that judged it); off or unknown before that forgets it;
* **firing**: sent at once, then again every ``repeat_interval_s`` while it fires;
* **resolved**: off for ``resolve_after_s`` (on again before that continues the same alert,
  nothing sent); the resolution is sent (``ends_at``: when the condition went off) if the
  firing was. An unknown condition never resolves an alert.

A silenced alert goes through the same lifecycle but is not sent; once the silence expires a
still-firing alert is sent at the next evaluation. All alerts to send in one evaluation form one
group (one notifier call: one e-mail). :meth:`AlertEngine.snapshot` / :meth:`AlertEngine.restore`
carry the state across a restart: a restored firing alert is not sent again before its repeat
is due, and resolves when its condition is seen off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pue_monitor.alerts.model import Alert, rfc3339
from pue_monitor.config.models import AlertRule, AlertsConfig, Thresholds
from pue_monitor.models.drift import DriftReport
from pue_monitor.pipeline.faults import SensorFault
from pue_monitor.pipeline.pue import PueInterval

__all__ = [
    "ALERTNAMES",
    "AlertEngine",
    "Condition",
    "DeliveryHealth",
    "DeviceState",
    "Evaluation",
    "Silence",
    "Tracked",
    "Transition",
]

STATE_VERSION = 1
#: alertname -> (rule setting, severities it can have)
ALERTNAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "PueHigh": ("pue_15m", ("warning", "critical")),
    "PueDrift": ("drift", ("warning",)),
    "PueSensorFault": ("sensor_fault", ("warning",)),
    "PueDeviceDown": ("device_down", ("warning",)),
    "PueDeliveryBacklog": ("delivery_backlog", ("warning",)),
    "PueDataLost": ("data_lost", ("critical",)),
}
#: windows judged by PueHigh -> its rule setting and how long closed intervals are kept
_WINDOWS: dict[str, tuple[str, float]] = {"15m": ("pue_15m", 2 * 86400.0), "1d": ("pue_daily", 8 * 86400.0)}
_WINDOW_TEXT = {"15m": "15-minute", "1d": "daily"}
#: a sensor-fault alert restored after a restart is kept this long for the detector to report
#: the fault again (then, not reported: its condition is off)
FAULT_RECHECK_S = 6 * 3600.0


class DeviceState(Protocol):
    """What the device-down rule reads per device (the runner's ``DeviceStats``)."""

    @property
    def state(self) -> str: ...  # pending, up, down

    @property
    def down_since(self) -> float | None: ...


@dataclass(frozen=True)
class DeliveryHealth:
    """One output's delivery: ``backlog`` points waiting, ``lost`` points dropped or evicted
    (a counter: only its increases count)."""

    name: str
    backlog: int = 0
    lost: int = 0


@dataclass(frozen=True)
class Condition:
    """One rule's judgement of one alert identity. ``on``: True on, False off, None unknown.
    ``since``: data time the state began; ``through``: data time it is judged up to (None: now)."""

    rule: str
    labels: Mapping[str, str]
    on: bool | None
    since: float
    through: float | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Silence:
    """Alerts whose labels match every matcher (``name=value``) are not sent in ``[starts_at, ends_at)``."""

    id: str
    matchers: Mapping[str, str]
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.matchers.items())

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "comment": self.comment,
            "created_by": self.created_by,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Silence:
        matchers = d["matchers"]
        if not isinstance(matchers, dict) or not all(isinstance(v, str) for v in matchers.values()):
            raise ValueError("matchers must map label names to strings")
        return cls(
            str(d["id"]),
            dict(matchers),
            float(d["starts_at"]),
            float(d["ends_at"]),
            str(d.get("comment", "")),
            str(d.get("created_by", "")),
        )


@dataclass
class Tracked:
    """One alert's lifecycle state."""

    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    since: float  # the condition's start: the alert's starts_at
    firing: bool = False
    fired_at: float | None = None  # evaluation time it fired
    clear_since: float | None = None  # firing, condition off since
    last_sent: float | None = None  # last firing notification sent (None: never)

    def alert(self, ends_at: float | None = None) -> Alert:
        return Alert(self.labels, self.annotations, self.since, ends_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "labels": self.labels,
            "annotations": self.annotations,
            "since": self.since,
            "firing": self.firing,
            "fired_at": self.fired_at,
            "clear_since": self.clear_since,
            "last_sent": self.last_sent,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Tracked:
        def opt(key: str) -> float | None:
            v = d.get(key)
            return None if v is None else float(v)

        return cls(
            str(d["rule"]),
            {str(k): str(v) for k, v in d["labels"].items()},
            {str(k): str(v) for k, v in d.get("annotations", {}).items()},
            float(d["since"]),
            bool(d.get("firing", False)),
            opt("fired_at"),
            opt("clear_since"),
            opt("last_sent"),
        )


@dataclass(frozen=True)
class Transition:
    """An alert's lifecycle changing, for the history (:mod:`pue_monitor.alerts.history`):
    ``fired`` (it began firing; ``silenced``: a silence matched it then, so it was not sent) or
    ``resolved`` (``alert.ends_at``: when its condition went off; ``notified``: a firing
    notification had gone out, so the resolution was sent). Silenced alerts have transitions too."""

    event: Literal["fired", "resolved"]
    alert: Alert
    at: float  # the evaluation's clock time
    silenced: bool = False
    notified: bool = False


@dataclass
class Evaluation:
    """What one evaluation decided. ``group``: the alerts to send now (one notifier call);
    ``fired`` / ``repeated`` / ``resolved`` its parts; ``firing``: every firing alert not
    silenced (what a stateful receiver such as Alertmanager must keep seeing); ``transitions``:
    every alert that began firing or resolved, silenced or not (the history's records)."""

    now: float
    fired: list[Alert] = field(default_factory=list)
    repeated: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    firing: list[Alert] = field(default_factory=list)
    silenced: list[Alert] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)

    @property
    def group(self) -> list[Alert]:
        return [*self.fired, *self.repeated, *self.resolved]


@dataclass
class _Trigger:
    """A Schmitt trigger's state: on/off/unknown since ``since``, judged through ``through``."""

    on: bool | None = None
    since: float = 0.0
    through: float = 0.0
    pue: float | None = None  # the last judged value
    interval: tuple[float, float] | None = None

    def step(self, iv: PueInterval, threshold: float, hysteresis: float, min_coverage: float) -> None:
        if iv.pue is None or not math.isfinite(iv.pue) or iv.coverage < min_coverage:
            return  # no judgement: never "ok"
        new = True if iv.pue > threshold else False if iv.pue < threshold - hysteresis else self.on
        if new is not self.on:
            self.on, self.since = new, iv.start
        self.through, self.pue, self.interval = iv.end, iv.pue, (iv.start, iv.end)

    def to_json(self) -> dict[str, Any]:
        return {"on": self.on, "since": self.since, "through": self.through, "pue": self.pue}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> _Trigger:
        on = d.get("on")
        pue = d.get("pue")
        return cls(
            None if on is None else bool(on),
            float(d.get("since", 0.0)),
            float(d.get("through", 0.0)),
            None if pue is None else float(pue),
        )


def _fmt_duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class AlertEngine:
    """Rules -> conditions -> lifecycle (see the module doc) for one site."""

    def __init__(
        self,
        site: str,
        thresholds: Thresholds,
        settings: AlertsConfig,
        *,
        drift: Callable[[], DriftReport | None] | None = None,
        devices: Callable[[], Mapping[str, DeviceState]] | None = None,
        outputs: Callable[[], Sequence[DeliveryHealth]] | None = None,
        started: float | None = None,
    ) -> None:
        self.site = site
        self.thresholds = thresholds
        self.settings = settings
        self.drift = drift
        self.devices = devices
        self.outputs = outputs
        self.started = started
        self.tracked: dict[str, Tracked] = {}
        # PueHigh: closed-or-open intervals per window by start, the newest minute's end, and
        # per (window, severity) the trigger state before the retained intervals
        self._intervals: dict[str, dict[float, PueInterval]] = {w: {} for w in _WINDOWS}
        self._minute_end = -math.inf
        self._base: dict[tuple[str, str], _Trigger] = {}
        self._folded: dict[str, float] = {}  # window -> start of the newest interval folded into the base
        # sensor faults: open ones by (device, point, kind); restored ones (from a snapshot) apart
        self._faults: dict[tuple[str, str, str], SensorFault] = {}
        self._cleared: dict[tuple[str, str, str], SensorFault] = {}
        self._restored_faults: set[tuple[str, str, str]] = set()
        self._momentary: set[tuple[str, str, str]] = set()  # cleared before judged: on once, then off
        # data lost: the last counter seen per output and when it last increased
        self._backlog_since: dict[str, float] = {}  # output -> when its backlog went over the bound
        self._lost_seen: dict[str, int] = {}
        self._lost_at: dict[str, tuple[float, float]] = {}  # output -> (first increase, last increase)

    # ------------------------------------------------------------------ input

    def intervals(self, resolution: str, intervals: Iterable[PueInterval]) -> None:
        """New or restated intervals (``1m`` only marks which buckets are closed)."""
        if resolution == "1m":
            for iv in intervals:
                self._minute_end = max(self._minute_end, iv.end)
            return
        kept = self._intervals.get(resolution)
        if kept is None:
            return
        folded = self._folded.get(resolution, -math.inf)
        for iv in intervals:
            if iv.start > folded:  # older ones are already part of the triggers' base state
                kept[iv.start] = iv

    def sensor_faults(self, faults: Iterable[SensorFault]) -> None:
        """Faults opened or cleared (a cleared one comes again with ``end`` set)."""
        for f in faults:
            key = (f.device, f.point, str(f.kind))
            self._restored_faults.discard(key)
            if f.active:
                self._faults[key] = f
                self._cleared.pop(key, None)
            elif key not in self._faults or self._faults[key].start <= f.start:  # not an older episode
                self._faults.pop(key, None)
                self._cleared[key] = f

    # ------------------------------------------------------------------ rules

    def _rule(self, name: str) -> AlertRule:
        rule: AlertRule = getattr(self.settings.rules, name)
        return rule

    def _labels(self, alertname: str, severity: str, **extra: str) -> dict[str, str]:
        return {"alertname": alertname, "site": self.site, "severity": severity, **extra}

    def _prune(self) -> None:
        """Fold closed intervals older than the retention into the triggers' base state."""
        for window, (_, keep) in _WINDOWS.items():
            kept = self._intervals[window]
            if not kept:
                continue
            newest = max(iv.end for iv in kept.values())
            old = sorted(s for s in kept if kept[s].end < newest - keep and kept[s].end <= self._minute_end)
            for s in old:
                iv = kept.pop(s)
                self._folded[window] = s
                for severity in ("warning", "critical"):
                    self._base_trigger(window, severity).step(iv, *self._trigger_args(severity))

    def _base_trigger(self, window: str, severity: str) -> _Trigger:
        return self._base.setdefault((window, severity), _Trigger())

    def _trigger_args(self, severity: str) -> tuple[float, float, float]:
        threshold = self.thresholds.critical if severity == "critical" else self.thresholds.warning
        return threshold, self.settings.hysteresis, self.settings.min_coverage

    def triggers(self) -> dict[tuple[str, str], _Trigger]:
        """The current trigger per (window, severity): the base, stepped through the closed
        intervals retained, in order of start."""
        out: dict[tuple[str, str], _Trigger] = {}
        for window in _WINDOWS:
            closed = sorted(
                (iv for iv in self._intervals[window].values() if iv.end <= self._minute_end), key=lambda i: i.start
            )
            for severity in ("warning", "critical"):
                b = self._base_trigger(window, severity)
                t = _Trigger(b.on, b.since, b.through, b.pue, b.interval)
                args = self._trigger_args(severity)
                for iv in closed:
                    t.step(iv, *args)
                out[(window, severity)] = t
        return out

    def _pue_conditions(self) -> list[Condition]:
        self._prune()
        out = []
        for (window, severity), t in self.triggers().items():
            rule = _WINDOWS[window][0]
            if not self._rule(rule).enabled or t.on is None:
                continue
            threshold = self._trigger_args(severity)[0]
            pue = t.pue if t.pue is not None else math.nan
            text = _WINDOW_TEXT[window]
            where = f" ({rfc3339(t.interval[0])} to {rfc3339(t.interval[1])})" if t.interval else ""
            ann = {
                "summary": f"{text} PUE {pue:.3f} over the {severity} limit {threshold:g} at {self.site}"
                if t.on
                else f"{text} PUE back under the {severity} limit {threshold:g} at {self.site}",
                "description": f"latest closed {text} PUE {pue:.3f}{where}; the alert resolves once it is "
                f"below {threshold - self.settings.hysteresis:.3f} (limit minus hysteresis "
                f"{self.settings.hysteresis:g})",
                "pue": f"{pue:.4f}",
                "threshold": f"{threshold:g}",
            }
            labels = self._labels("PueHigh", severity, window=window)
            out.append(Condition(rule, labels, t.on, t.since, t.through, ann))
        return out

    def _drift_conditions(self, now: float) -> list[Condition]:
        if self.drift is None or not self.settings.rules.drift.enabled:
            return []
        report = self.drift()
        labels = self._labels("PueDrift", "warning")
        if report is None:
            return [Condition("drift", labels, None, now)]  # no model yet: no judgement
        ep = report.current
        if ep is None:
            ended = report.episodes[-1].ended if report.episodes else None
            return [Condition("drift", labels, False, ended or report.now, report.now)]
        ann: dict[str, str] = {
            "summary": f"PUE drifting {ep.size:+.3f} above the expected PUE at {self.site} since {rfc3339(ep.began)}",
            "drift_began": rfc3339(ep.began),
            "drift_detected": rfc3339(ep.detected_at),
            "drift_size": f"{ep.size:.4f}",
        }
        proj = report.projection
        desc = [f"CUSUM over {report.h:.4f} (sigma {report.sigma:.4f}); mean residual {ep.size:+.4f} PUE points"]
        if proj is not None:
            for kind, times in (("daily", proj.daily), ("15m", proj.interval)):
                what = "daily" if kind == "daily" else "15-minute"
                for name, secs in sorted(times.items()):
                    ann[f"{kind}_reaches_{name}"] = "not heading there" if secs is None else rfc3339(report.now + secs)
                    if secs is not None:
                        desc.append(f"{what} PUE projected to reach the {name} limit in {_fmt_duration(secs)}")
            ann["slope_per_day"] = f"{proj.slope_per_day:.4f}"
        ann["description"] = "; ".join(desc)
        return [Condition("drift", labels, True, ep.began, report.now, ann)]

    def _fault_conditions(self, now: float) -> list[Condition]:
        if not self.settings.rules.sensor_fault.enabled:
            return []
        out = []
        recheck_over = self.started is not None and now - self.started >= FAULT_RECHECK_S
        for key, f in list(self._faults.items()):
            labels = self._labels("PueSensorFault", "warning", device=f.device, point=f.point, kind=str(f.kind))
            if key in self._restored_faults and recheck_over:
                self._restored_faults.discard(key)
                del self._faults[key]
                out.append(Condition("sensor_fault", labels, False, now))
                continue
            out.append(Condition("sensor_fault", labels, True, f.start, None, self._fault_annotations(f)))
        for key, f in list(self._cleared.items()):
            labels = self._labels("PueSensorFault", "warning", device=f.device, point=f.point, kind=str(f.kind))
            if Alert(labels).fingerprint not in self.tracked and key not in self._momentary:
                # opened and cleared between two evaluations (a counter reset): it still counts,
                # on now and off at the next evaluation
                self._momentary.add(key)
                out.append(Condition("sensor_fault", labels, True, f.start, None, self._fault_annotations(f)))
                continue
            self._momentary.discard(key)
            del self._cleared[key]
            out.append(Condition("sensor_fault", labels, False, f.end if f.end is not None else now))
        return out

    def _fault_annotations(self, f: SensorFault) -> dict[str, str]:
        what = f"{f.device} {f.point}".strip()
        ann = {
            "summary": f"sensor fault at {self.site}: {what} {f.kind}",
            "description": f.detail or f"{what}: {f.kind} since {rfc3339(f.start)}",
        }
        if f.value is not None:
            ann["value"] = f"{f.value:g}"
        return ann

    def _device_conditions(self, now: float) -> list[Condition]:
        if self.devices is None or not self.settings.rules.device_down.enabled:
            return []
        out = []
        for dev, st in self.devices().items():
            labels = self._labels("PueDeviceDown", "warning", device=dev)
            if st.state == "down":
                since = st.down_since if st.down_since is not None else now
                ann = {
                    "summary": f"device {dev} down at {self.site} since {rfc3339(since)}",
                    "description": f"{dev} has not answered (or sent) since {rfc3339(since)}",
                }
                out.append(Condition("device_down", labels, True, since, None, ann))
            elif st.state == "up":
                out.append(Condition("device_down", labels, False, now))
            else:
                out.append(Condition("device_down", labels, None, now))
        return out

    def _delivery_conditions(self, now: float) -> list[Condition]:
        if self.outputs is None:
            return []
        rules = self.settings.rules
        out = []
        for h in self.outputs():
            if rules.delivery_backlog.enabled:
                labels = self._labels("PueDeliveryBacklog", "warning", output=h.name)
                over = h.backlog > self.settings.backlog_points
                since = self._backlog_since.setdefault(h.name, now) if over else now
                if not over:
                    self._backlog_since.pop(h.name, None)
                ann = {
                    "summary": f"{h.name} at {self.site}: {h.backlog} points waiting to be delivered",
                    "description": f"more than {self.settings.backlog_points} points queued (alerts.backlog_points)",
                }
                out.append(Condition("delivery_backlog", labels, over, since, None, ann if over else {}))
            seen = self._lost_seen.get(h.name)
            self._lost_seen[h.name] = h.lost
            if seen is not None and h.lost > seen:
                first = self._lost_at.get(h.name, (now, now))[0]
                self._lost_at[h.name] = (first, now)
            if not rules.data_lost.enabled:
                continue
            labels = self._labels("PueDataLost", "critical", output=h.name)
            at = self._lost_at.get(h.name)
            if at is None:
                out.append(Condition("data_lost", labels, False, now))
                continue
            window = rules.data_lost.resolve_after_s
            if now - at[1] >= window and (seen is None or h.lost <= seen):
                del self._lost_at[h.name]
                out.append(Condition("data_lost", labels, False, at[1], now))
                continue
            ann = {
                "summary": f"{h.name} at {self.site} lost data: {h.lost} points dropped or evicted in all",
                "description": f"points dropped or evicted since {rfc3339(at[0])}, last at {rfc3339(at[1])}",
            }
            out.append(Condition("data_lost", labels, True, at[0], now, ann))
        return out

    def conditions(self, now: float) -> list[Condition]:
        return [
            *self._pue_conditions(),
            *self._drift_conditions(now),
            *self._fault_conditions(now),
            *self._device_conditions(now),
            *self._delivery_conditions(now),
        ]

    # -------------------------------------------------------------- lifecycle

    def evaluate(self, now: float, silences: Sequence[Silence] = ()) -> Evaluation:
        """Judge every rule at clock time ``now`` and advance every alert's lifecycle."""
        if self.started is None:
            self.started = now
        ev = Evaluation(now)
        merged: dict[str, Condition] = {}
        for c in self.conditions(now):
            fp = Alert(c.labels).fingerprint
            prev = merged.get(fp)
            # duplicates (two faults of one meter point): on wins, then the earliest start
            if prev is None or (bool(c.on), -c.since) > (bool(prev.on), -prev.since):
                merged[fp] = c
        for fp in list(self.tracked):
            if fp not in merged:
                t = self.tracked[fp]
                # nothing judges it any more (a device removed, a rule disabled): off, except
                # PUE, which only data can clear
                off = not t.rule.startswith("pue_") or not self._rule(t.rule).enabled
                merged[fp] = Condition(t.rule, t.labels, False if off else None, now)
        active = [s for s in silences if s.active(now)]
        for fp, c in merged.items():
            self._advance(fp, c, now, active, ev)
        return ev

    def _advance(self, fp: str, c: Condition, now: float, silences: Sequence[Silence], ev: Evaluation) -> None:
        rule = self._rule(c.rule)
        through = now if c.through is None else c.through
        began = False
        t = self.tracked.get(fp)
        if t is None:
            if not c.on:
                return
            t = self.tracked[fp] = Tracked(c.rule, dict(c.labels), dict(c.annotations), c.since)
        if c.annotations and c.on:
            t.annotations = dict(c.annotations)
        if not t.firing:
            if not c.on:
                del self.tracked[fp]  # off or unknown while pending: forgotten
                return
            t.since = c.since
            if through - c.since < rule.for_s:
                return
            t.firing, t.fired_at = True, now
            began = True
        elif c.on:
            t.clear_since = None
        elif c.on is False:
            if t.clear_since is None:
                t.clear_since = max(c.since, t.since)
            if through - t.clear_since >= rule.resolve_after_s:
                del self.tracked[fp]
                ended = t.alert(ends_at=t.clear_since)
                if t.last_sent is not None:
                    ev.resolved.append(ended)
                ev.transitions.append(Transition("resolved", ended, now, notified=t.last_sent is not None))
                return
        alert = t.alert()
        silenced = any(s.matches(alert.labels) for s in silences)
        if began:
            ev.transitions.append(Transition("fired", alert, now, silenced=silenced))
        if silenced:
            ev.silenced.append(alert)
            return
        ev.firing.append(alert)
        if t.last_sent is None:
            t.last_sent = now
            ev.fired.append(alert)
        elif now - t.last_sent >= self.settings.repeat_interval_s:
            t.last_sent = now
            ev.repeated.append(alert)

    # ------------------------------------------------------------------ state

    def firing(self) -> list[Tracked]:
        return sorted((t for t in self.tracked.values() if t.firing), key=lambda t: (t.since, t.labels["alertname"]))

    def counts(self) -> dict[tuple[str, str], int]:
        """Firing alerts per (alertname, severity), every known pair present (0 when none)."""
        out = {(n, s): 0 for n, (_, sevs) in ALERTNAMES.items() for s in sevs}
        for t in self.tracked.values():
            if t.firing:
                key = (t.labels["alertname"], t.labels.get("severity", ""))
                out[key] = out.get(key, 0) + 1
        return out

    def snapshot(self) -> dict[str, Any]:
        """The state a restart needs (JSON-able): alerts, PUE triggers, open sensor faults."""
        return {
            "version": STATE_VERSION,
            "site": self.site,
            "alerts": {fp: t.to_json() for fp, t in sorted(self.tracked.items())},
            "triggers": {f"{w}/{s}": t.to_json() for (w, s), t in sorted(self.triggers().items())},
            "faults": [
                {"device": f.device, "point": f.point, "kind": str(f.kind), "start": f.start, "detail": f.detail}
                for f in self._faults.values()
            ],
        }

    def clear(self) -> None:
        """Forget every alert, trigger state and sensor fault (a refused saved state)."""
        self.tracked.clear()
        self._base.clear()
        self._faults.clear()
        self._restored_faults.clear()

    def restore(self, doc: Mapping[str, Any]) -> None:
        """Continue from :meth:`snapshot` (raises ValueError/KeyError/TypeError on a bad document)."""
        from pue_monitor.pipeline.faults import FaultKind

        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"state version {doc.get('version')!r}, expected {STATE_VERSION}")
        self.tracked = {str(fp): Tracked.from_json(t) for fp, t in doc.get("alerts", {}).items()}
        for key, t in doc.get("triggers", {}).items():
            window, _, severity = str(key).partition("/")
            if window in _WINDOWS and severity in ("warning", "critical"):
                self._base[(window, severity)] = _Trigger.from_json(t)
        for f in doc.get("faults", []):
            fault = SensorFault(f["device"], f["point"], FaultKind(f["kind"]), float(f["start"]), None, f["detail"])
            key = (fault.device, fault.point, str(fault.kind))
            self._faults[key] = fault
            self._restored_faults.add(key)
