"""The alert engine: when alerts fire, repeat and resolve (scripted series, no sleeps), silences
and state files, the output that runs it, and the whole chain into a real Alertmanager."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import math
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from pue_monitor.alerts.engine import AlertEngine, DeliveryHealth, Evaluation
from pue_monitor.alerts.model import rfc3339
from pue_monitor.alerts.notifiers import Console, NotifierStats
from pue_monitor.alerts.output import AlertOutput
from pue_monitor.alerts.state import AlertFiles
from pue_monitor.config.models import AlertRule, AlertRules, AlertsConfig, Thresholds
from pue_monitor.models.data import Intervals
from pue_monitor.models.drift import CusumSettings, assess
from pue_monitor.pipeline.faults import FaultKind, SensorFault
from pue_monitor.pipeline.pue import PueInterval, aggregate

SITE = "s"
DAY0 = dt.datetime(2026, 7, 15, tzinfo=dt.UTC).timestamp()
GRACE = 30.0  # the service evaluates this long after a minute ends


def minute(start: float, pue: float | None, it_kw: float = 600.0) -> PueInterval:
    e_it = it_kw / 60.0
    ok = pue is not None
    return PueInterval(
        start=start,
        end=start + 60.0,
        e_facility=pue * e_it if pue is not None else None,
        e_it=e_it,
        e_subsystems={},
        pue=pue,
        ppue={},
        category=2,
        measured=1.0 if ok else 0.0,
        estimated=0.0,
        missing=0.0 if ok else 1.0,
        coverage=1.0 if ok else 0.0,
    )


def quarter(start: float, pue: float | None, coverage: float = 1.0) -> PueInterval:
    iv = aggregate([minute(start + 60 * i, pue) for i in range(15)], resolution="15m", tz="UTC")[0]
    return PueInterval(**{**iv.__dict__, "coverage": coverage if pue is not None else 0.0})


def engine(**kw: object) -> AlertEngine:
    settings = AlertsConfig(**kw)
    return AlertEngine(SITE, Thresholds(), settings)


def push_quarter(e: AlertEngine, start: float, pue: float | None, coverage: float = 1.0) -> Evaluation:
    """Hand over a closed 15-minute interval (and the minute that closes it), evaluate after it."""
    e.intervals("15m", [quarter(start, pue, coverage)])
    e.intervals("1m", [minute(start + 840, pue)])
    return e.evaluate(start + 900 + GRACE)


class Feed:
    """What the service does each minute: the minute, the 15-minute and daily buckets it touches
    (the daily one once closed), then an evaluation ``GRACE`` seconds after the minute ends."""

    def __init__(self, e: AlertEngine) -> None:
        self.e = e
        self.minutes: list[PueInterval] = []
        self.evaluations: list[Evaluation] = []

    def minute(self, start: float, pue: float | None) -> Evaluation:
        m = minute(start, pue)
        self.minutes.append(m)
        self.e.intervals("1m", [m])
        b0 = start - start % 900
        self.e.intervals("15m", aggregate([x for x in self.minutes[-15:] if x.start >= b0], resolution="15m", tz="UTC"))
        if (start + 60) % 86400 == 0:
            d0 = start + 60 - 86400
            day = [x for x in self.minutes if x.start >= d0]
            self.e.intervals("1d", aggregate(day, resolution="1d", tz="UTC"))
        ev = self.e.evaluate(start + 60 + GRACE)
        self.evaluations.append(ev)
        return ev

    def sent(self, kind: str) -> list[tuple[float, str, str]]:
        """(evaluation time, alertname, severity) of every alert sent as ``kind``."""
        return [(ev.now, a.name, a.labels["severity"]) for ev in self.evaluations for a in getattr(ev, kind)]


def flapping_day() -> list[float]:
    """Minute PUE of one day: 1.30 until 03:00, then flapping ±0.012 around 1.40 every 3 minutes
    until 21:00, then 1.32."""
    out = []
    for i in range(1440):
        h = i / 60
        if h < 3:
            out.append(1.30)
        elif h < 21:
            out.append(1.40 + (0.012 if (i // 3) % 2 == 0 else -0.012) + 0.002 * math.sin(i / 37))
        else:
            out.append(1.32)
    return out


# ------------------------------------------------------------------ THE ACCEPTANCE


def test_a_day_of_pue_flapping_around_the_limit_pages_once_and_resolves_once() -> None:
    series = flapping_day()
    quarters = [sum(series[q * 15 : q * 15 + 15]) / 15 for q in range(96)]  # equal IT power: Σ E_DC / Σ E_IT
    crossings = sum(1 for a, b in itertools.pairwise(quarters) if a <= 1.4 < b)
    assert crossings >= 10  # the 15-minute PUE really flaps across the limit
    assert all(q > 1.38 for q in quarters[12:84])  # but stays inside the hysteresis band

    feed = Feed(engine())
    for i, pue in enumerate(series):
        feed.minute(DAY0 + 60 * i, pue)

    first_over = next(q for q in range(96) if quarters[q] > 1.4)
    starts = DAY0 + 900 * first_over
    fired = starts + 1800 + GRACE  # the second closed quarter completes the 30-minute for_s
    assert feed.sent("fired") == [(fired, "PueHigh", "warning")]
    resolved_at = DAY0 + 21 * 3600 + 1800 + GRACE  # 21:00-21:30 under 1.38: resolve_after_s 30 min
    assert feed.sent("resolved") == [(resolved_at, "PueHigh", "warning")]
    (res,) = [a for ev in feed.evaluations for a in ev.resolved]
    assert (res.starts_at, res.ends_at) == (starts, DAY0 + 21 * 3600)
    assert res.labels == {"alertname": "PueHigh", "site": SITE, "severity": "warning", "window": "15m"}
    # reminders every 4 hours while it fires (the repeat schedule), never a new page
    assert feed.sent("repeated") == [(fired + k * 4 * 3600, "PueHigh", "warning") for k in range(1, 5)]
    # the daily PUE (about 1.383) is under the limit: nothing about the day
    assert not feed.e.tracked

    # the same day without hysteresis, minimum duration or resolve delay pages again and again
    naive = Feed(engine(hysteresis=0, rules=AlertRules(pue_15m=AlertRule(for_s=0, resolve_after_s=0))))
    for i, pue in enumerate(series):
        naive.minute(DAY0 + 60 * i, pue)
    assert len(naive.sent("fired")) >= 10


# ------------------------------------------------------------------- lifecycle


def test_min_duration_a_single_quarter_over_the_limit_does_not_fire() -> None:
    e = engine()
    t = DAY0
    assert push_quarter(e, t, 1.45).group == []  # pending
    assert [tr.firing for tr in e.tracked.values()] == [False]
    assert push_quarter(e, t + 900, 1.30).group == []  # cleared while pending: forgotten
    assert e.tracked == {}
    push_quarter(e, t + 1800, 1.45)
    ev = push_quarter(e, t + 2700, 1.46)  # 30 minutes over: fires, starting when it began
    assert [(a.name, a.labels["severity"], a.starts_at) for a in ev.fired] == [("PueHigh", "warning", t + 1800)]
    assert ev.fired[0].annotations["pue"] == "1.4600"


def test_hysteresis_pue_in_the_band_keeps_firing_below_it_resolves_after_resolve_after() -> None:
    e = engine()
    t = DAY0
    push_quarter(e, t, 1.45)
    assert push_quarter(e, t + 900, 1.45).fired
    for k in range(2, 10):  # two hours at 1.39: under the limit, inside the band
        ev = push_quarter(e, t + 900 * k, 1.39)
        assert ev.resolved == [] and len(ev.firing) == 1
    assert push_quarter(e, t + 900 * 10, 1.37).resolved == []  # clear for 15 min of 30
    ev = push_quarter(e, t + 900 * 11, 1.375)
    (r,) = ev.resolved
    assert (r.starts_at, r.ends_at) == (t, t + 900 * 10)
    assert e.tracked == {}


def test_an_alert_firing_for_three_days_outlives_the_intervals_kept() -> None:
    """Quarters older than two days are folded into the trigger's state: the alert keeps its
    start and resolves normally; a restatement of a folded quarter changes nothing."""
    e = engine(repeat_interval_s=86400)
    sends = []
    for k in range(3 * 96):
        ev = push_quarter(e, DAY0 + 900 * k, 1.45)
        sends += [(ev.now, a.starts_at) for a in ev.group]
    first = DAY0 + 1800 + GRACE
    assert sends == [(first, DAY0), (first + 86400, DAY0), (first + 2 * 86400, DAY0)]
    # kept: the quarters ending within two days of the newest; the ones before were folded
    assert min(e._intervals["15m"]) == DAY0 + 86400 - 900
    e.intervals("15m", [quarter(DAY0, 1.0)])  # late data for a folded quarter: ignored
    end = DAY0 + 3 * 86400
    push_quarter(e, end, 1.30)
    (r,) = push_quarter(e, end + 900, 1.30).resolved
    assert (r.starts_at, r.ends_at) == (DAY0, end)


def test_critical_fires_beside_warning_and_resolves_on_its_own_band() -> None:
    e = engine(rules=AlertRules(pue_15m=AlertRule(for_s=0, resolve_after_s=0)))
    ev = push_quarter(e, DAY0, 1.55)
    assert sorted(a.labels["severity"] for a in ev.fired) == ["critical", "warning"]
    ev = push_quarter(e, DAY0 + 900, 1.47)  # under 1.5 - 0.02: critical resolves, warning fires on
    assert [a.labels["severity"] for a in ev.resolved] == ["critical"]
    assert [a.labels["severity"] for a in ev.firing] == ["warning"]


def test_repeat_schedule_counts_sends_over_ten_hours() -> None:
    e = engine(repeat_interval_s=3 * 3600)
    t = DAY0
    push_quarter(e, t, 1.45)
    sends = []
    for k in range(1, 40):  # 10 hours of quarters over the limit, evaluated after each
        ev = push_quarter(e, t + 900 * k, 1.45)
        sends += [(ev.now, "fired" if a in ev.fired else "repeated") for a in ev.group]
    first = t + 1800 + GRACE
    assert sends == [(first, "fired")] + [(first + k * 3 * 3600, "repeated") for k in (1, 2, 3)]


def test_none_pue_and_low_coverage_are_no_judgement_never_ok() -> None:
    e = engine()
    push_quarter(e, DAY0, 1.45)
    assert push_quarter(e, DAY0 + 900, 1.45).fired
    for k in range(2, 14):  # three hours without IT energy, then with 50 % coverage of good PUE
        ev = push_quarter(e, DAY0 + 900 * k, None if k < 8 else 1.30, coverage=0.5)
        assert ev.resolved == [] and len(ev.firing) == 1
    # nothing judged it since the second quarter: the condition is still on through its end
    (t,) = e.tracked.values()
    assert t.firing and t.clear_since is None
    # a None PUE never starts an alert either
    e2 = engine(rules=AlertRules(pue_15m=AlertRule(for_s=0)))
    assert push_quarter(e2, DAY0, None).group == [] and e2.tracked == {}


def test_a_restated_interval_is_judged_again() -> None:
    e = engine()
    push_quarter(e, DAY0, 1.45)
    (t,) = e.tracked.values()
    assert t.since == DAY0 and not t.firing
    # late readings restate the first quarter (1.30) as the second closes over the limit: the
    # alert is pending since the second quarter, so 30 minutes are not reached yet
    e.intervals("15m", [quarter(DAY0, 1.30)])
    ev = push_quarter(e, DAY0 + 900, 1.45)
    assert ev.fired == []
    (t,) = e.tracked.values()
    assert t.since == DAY0 + 900
    assert [a.starts_at for a in push_quarter(e, DAY0 + 1800, 1.45).fired] == [DAY0 + 900]
    # an open (unclosed) bucket is not judged: a running quarter far over the limit changes nothing
    e.intervals("15m", [quarter(DAY0 + 2700, 3.0)])
    assert e.evaluate(DAY0 + 2700 + 400).group == []


def test_daily_pue_over_the_limit_fires_when_the_day_closes() -> None:
    feed = Feed(engine(repeat_interval_s=86400))
    for i in range(1440):
        feed.minute(DAY0 + 60 * i, 1.41 if i % 2 else 1.395)  # every quarter 1.4025: 15m fires too
    day = [(a.name, ev.now) for ev in feed.evaluations for a in ev.fired if a.labels.get("window") == "1d"]
    assert day == [("PueHigh", DAY0 + 86400 + GRACE)]


# ------------------------------------------------------------------- other rules


@dataclass
class Dev:
    state: str
    down_since: float | None = None


def test_device_down_after_its_min_duration_and_resolved_when_up() -> None:
    devices: dict[str, Dev] = {"pdu-3": Dev("up"), "inc": Dev("pending")}
    e = AlertEngine(SITE, Thresholds(), AlertsConfig(), devices=lambda: devices)
    t = DAY0
    assert e.evaluate(t).group == []
    devices["pdu-3"] = Dev("down", t + 10)
    assert e.evaluate(t + 200).group == []  # down for 190 s of 300
    ev = e.evaluate(t + 310)
    assert [(a.name, a.labels["device"], a.starts_at) for a in ev.fired] == [("PueDeviceDown", "pdu-3", t + 10)]
    devices["pdu-3"] = Dev("up")
    assert e.evaluate(t + 400).resolved == []
    (r,) = e.evaluate(t + 700).resolved  # up for 300 s
    assert r.ends_at == t + 400
    # a device removed by a reload while down: resolved (nothing judges it any more)
    devices["inc"] = Dev("down", t + 800)
    assert e.evaluate(t + 1200).fired
    del devices["inc"]
    assert e.evaluate(t + 1210).resolved == []
    assert [a.labels["device"] for a in e.evaluate(t + 1600).resolved] == ["inc"]


def test_sensor_faults_one_alert_each_deduplicated_resolved_when_cleared() -> None:
    e = engine()
    stuck = SensorFault("it", "import_energy", FaultKind.STUCK, DAY0, None, "flat for 65 min while IT load moved")
    again = SensorFault("it", "import_energy", FaultKind.STUCK, DAY0 + 600, None, "still flat")  # same identity
    bal = SensorFault("inc", "", FaultKind.BALANCE, DAY0 + 60, None, "parent 4.1 % over its sub-meters", 4.1)
    e.sensor_faults([stuck, again, bal])
    ev = e.evaluate(DAY0 + 900)
    assert sorted((a.labels["device"], a.labels["kind"]) for a in ev.fired) == [("inc", "balance"), ("it", "stuck")]
    it = next(a for a in ev.fired if a.labels["device"] == "it")
    assert it.starts_at == DAY0 + 600 and it.annotations["description"] == "still flat"
    assert next(a for a in ev.fired if a.labels["kind"] == "balance").annotations["value"] == "4.1"
    e.sensor_faults([stuck, again])  # reported again: no second page
    assert e.evaluate(DAY0 + 960).group == []
    e.sensor_faults([SensorFault("it", "import_energy", FaultKind.STUCK, DAY0 + 600, DAY0 + 1000)])
    (r,) = e.evaluate(DAY0 + 1020).resolved
    assert (r.labels["device"], r.ends_at) == ("it", DAY0 + 1000)
    assert [t.labels["device"] for t in e.tracked.values()] == ["inc"]
    # a counter reset opened and cleared between two evaluations still pages, then resolves
    reset = SensorFault("it", "import_energy", FaultKind.RESET, DAY0 + 1100, DAY0 + 1100, "0.4 after 48211.3")
    e.sensor_faults([reset])
    (a,) = e.evaluate(DAY0 + 1110).fired
    assert (a.labels["kind"], a.starts_at, a.annotations["description"]) == ("reset", DAY0 + 1100, "0.4 after 48211.3")
    (r,) = e.evaluate(DAY0 + 1170).resolved
    assert (r.labels["kind"], r.ends_at) == ("reset", DAY0 + 1100)
    assert e.evaluate(DAY0 + 1230).group == []


def test_delivery_backlog_and_data_lost() -> None:
    health = [DeliveryHealth("influxdb spool", backlog=10, lost=0)]
    e = AlertEngine(SITE, Thresholds(), AlertsConfig(backlog_points=1000), outputs=lambda: health)
    t = DAY0
    assert e.evaluate(t).group == []
    health[0] = DeliveryHealth("influxdb spool", backlog=5000, lost=0)
    assert e.evaluate(t + 60).group == []
    ev = e.evaluate(t + 60 + 900)  # over the bound for 15 minutes
    assert [(a.name, a.labels["output"]) for a in ev.fired] == [("PueDeliveryBacklog", "influxdb spool")]
    health[0] = DeliveryHealth("influxdb spool", backlog=5000, lost=250)  # evictions: data lost
    ev = e.evaluate(t + 1000)
    assert [(a.name, a.labels["severity"]) for a in ev.fired] == [("PueDataLost", "critical")]
    assert e.evaluate(t + 1100).group == []  # the same count: no new loss, no new page
    health[0] = DeliveryHealth("influxdb spool", backlog=0, lost=250)
    assert e.evaluate(t + 1300).resolved == []  # the backlog is gone, for 0 s of 300
    assert [a.name for a in e.evaluate(t + 1550).resolved] == []  # 250 s; the last loss 550 s ago
    ev = e.evaluate(t + 1600)  # backlog gone 300 s, no loss for 600 s: both resolve
    assert sorted((a.name, a.ends_at) for a in ev.resolved) == [
        ("PueDataLost", t + 1000),
        ("PueDeliveryBacklog", t + 1300),
    ]


def drift_report(now_days: float, rise_after_days: float | None) -> object:
    """A real DriftReport: 30 days of hourly intervals whose overhead matches the expected one
    until ``rise_after_days``, then rises 0.01 PUE points a day."""
    n = int(now_days * 24)
    start = DAY0 + 3600.0 * np.arange(n)
    it = np.full(n, 500.0)
    rng = np.random.default_rng(3)
    expected = it * 0.35
    actual = expected + it * rng.normal(0, 0.001, n)
    if rise_after_days is not None:
        days = np.maximum(0.0, (start - DAY0) / 86400 - rise_after_days)
        actual = actual + it * 0.01 * days
    iv = Intervals(
        start=start,
        end=start + 3600,
        it_kwh=it,
        facility_kwh=it + actual,
        dry_bulb_c=np.full(n, 20.0),
        rh_pct=np.full(n, 50.0),
    )
    return assess(iv, expected, 0.001, CusumSettings())


def test_drift_fires_with_projected_crossings_and_resolves() -> None:
    report: list[object] = [None]
    e = AlertEngine(SITE, Thresholds(), AlertsConfig(), drift=lambda: report[0])
    assert e.evaluate(DAY0).group == []  # no model yet: no judgement
    report[0] = drift_report(20, None)
    assert e.evaluate(DAY0 + 20 * 86400).group == []
    drifting = drift_report(20, 10)
    assert drifting.drifting
    report[0] = drifting
    (a,) = e.evaluate(DAY0 + 20 * 86400 + 60).fired
    ep = drifting.current
    assert a.name == "PueDrift" and a.starts_at == ep.began
    assert a.annotations["drift_size"] == f"{ep.size:.4f}"
    proj = drifting.projection
    # expected daily PUE 1.35 and a drift of about 0.1 now: the warning limit (1.4) is already
    # passed (0 s), the critical one (1.5) ahead at the drift's slope
    assert proj.daily["warning"] == 0.0 and proj.daily["critical"] > 0
    for name in ("warning", "critical"):
        when = rfc3339(drifting.now + proj.daily[name])
        assert a.annotations[f"daily_reaches_{name}"] == when
    assert "daily PUE projected to reach the critical limit in" in a.annotations["description"]
    # the fault is fixed: no drift in the next reports; resolved one hour (resolve_after_s) later
    report[0] = drift_report(21, None)
    assert e.evaluate(DAY0 + 21 * 86400 + 60).resolved == []
    report[0] = drift_report(21 + 1 / 24, None)
    (r,) = e.evaluate(DAY0 + 21 * 86400 + 3660).resolved
    assert (r.starts_at, r.ends_at) == (ep.began, DAY0 + 21 * 86400)


# ------------------------------------------------------------------ silences, files, output


def test_silence_suppresses_then_expires(tmp_path: Path) -> None:
    devices = {"pdu-3": Dev("down", DAY0), "pdu-4": Dev("down", DAY0)}
    files = AlertFiles(tmp_path / "a")
    e = AlertEngine(SITE, Thresholds(), AlertsConfig(), devices=lambda: devices)
    s = files.add_silence({"alertname": "PueDeviceDown", "device": "pdu-3"}, now=DAY0, duration_s=7200, comment="work")
    ev = e.evaluate(DAY0 + 400, files.silences())
    assert [a.labels["device"] for a in ev.fired] == ["pdu-4"]
    assert [a.labels["device"] for a in ev.silenced] == ["pdu-3"]
    assert e.evaluate(DAY0 + 3600, files.silences()).group == []
    ev = e.evaluate(DAY0 + 7200, files.silences())  # expired: sent at once, starting when it began
    assert [(a.labels["device"], a.starts_at) for a in ev.fired] == [("pdu-3", DAY0)]
    # unsilence ends one early (by the start of its id)
    s2 = files.add_silence({"device": "pdu-4"}, now=DAY0 + 7300, duration_s=86400)
    assert files.silences()[-1].active(DAY0 + 7400)
    files.expire_silence(s2.id[:6], now=DAY0 + 7400)
    assert not any(x.active(DAY0 + 7401) for x in files.silences())
    assert {x.id for x in files.silences()} == {s.id, s2.id}


async def test_output_groups_per_evaluation_and_sees_new_silences_without_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    devices = {"pdu-3": Dev("down", DAY0)}
    stats = NotifierStats()
    e = AlertEngine(SITE, Thresholds(), AlertsConfig(), devices=lambda: devices)
    files = AlertFiles(tmp_path / "a")
    out = AlertOutput(e, files, [Console("log", stats=stats)], stats=stats)
    e.sensor_faults([SensorFault("it", "import_energy", FaultKind.STUCK, DAY0, None, "flat")])
    e.intervals("15m", [quarter(DAY0, 1.55), quarter(DAY0 + 900, 1.55)])
    e.intervals("1m", [minute(DAY0 + 1740, 1.55)])
    caplog.set_level(logging.INFO, logger="pue_monitor.alerts")
    await out.flush(DAY0 + 1830)
    # four alerts (device down, sensor fault, 15-minute warning and critical) in ONE notifier call
    assert stats.results[("log", "success")] == 1
    fired = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert FIRING")]
    assert len(fired) == 4 and len(out.last.fired) == 4
    # a silence written by another process (the CLI) applies at the next evaluation
    AlertFiles(tmp_path / "a").add_silence({"device": "pdu-4"}, now=DAY0, duration_s=86400)
    devices["pdu-4"] = Dev("down", DAY0 + 1800)
    await out.flush(DAY0 + 2400)
    assert [a.labels.get("device") for a in out.last.silenced] == ["pdu-4"]
    assert out.last.group == [] and stats.results[("log", "success")] == 1
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    reg.register(out.collector())
    text = generate_latest(reg).decode()
    assert 'pue_alerts_firing{alertname="PueHigh",severity="critical",site="s"} 1.0' in text
    assert 'pue_alerts_firing{alertname="PueDeviceDown",severity="warning",site="s"} 2.0' in text
    assert 'pue_alerts_firing{alertname="PueDrift",severity="warning",site="s"} 0.0' in text
    assert 'pue_alert_silences_active{site="s"} 1.0' in text
    assert 'pue_alert_notifications_total{notifier="log",result="success",site="s"} 1.0' in text


async def test_state_survives_a_restart_no_repage_and_resolution_still_sent(tmp_path: Path) -> None:
    folder = tmp_path / "store.sqlite.alerts"
    devices = {"pdu-3": Dev("down", DAY0)}

    def new_output() -> tuple[AlertOutput, NotifierStats]:
        stats = NotifierStats()
        e = AlertEngine(SITE, Thresholds(), AlertsConfig(), devices=lambda: devices)
        o = AlertOutput(e, AlertFiles(folder), [Console("log", stats=stats)], stats=stats)
        o.restore()
        return o, stats

    out, _ = new_output()
    push = out.engine.intervals
    push("15m", [quarter(DAY0, 1.45), quarter(DAY0 + 900, 1.45)])
    push("1m", [minute(DAY0 + 1740, 1.45)])
    await out.flush(DAY0 + 1830)
    assert sorted(a.name for a in out.last.fired) == ["PueDeviceDown", "PueHigh"]
    saved = json.loads((folder / "state.json").read_text())
    assert sorted(a["labels"]["alertname"] for a in saved["alerts"].values()) == ["PueDeviceDown", "PueHigh"]

    # a restart: a new engine from the same files pages nothing, even as PUE stays in the band
    out2, stats2 = new_output()
    assert len(out2.engine.firing()) == 2
    out2.engine.intervals("15m", [quarter(DAY0 + 1800, 1.39)])
    out2.engine.intervals("1m", [minute(DAY0 + 2640, 1.39)])
    await out2.flush(DAY0 + 2730)
    assert out2.last.group == [] and stats2.results[("log", "success")] == 0
    # the conditions end after the restart: both resolutions are sent, with the original start
    devices["pdu-3"] = Dev("up")
    for k in (3, 4):
        out2.engine.intervals("15m", [quarter(DAY0 + 900 * k, 1.30)])
        out2.engine.intervals("1m", [minute(DAY0 + 900 * k + 840, 1.30)])
        await out2.flush(DAY0 + 900 * k + 930)
    resolved = {a.name: a for a in out2.last.resolved}
    assert set(resolved) == {"PueDeviceDown", "PueHigh"}
    assert resolved["PueHigh"].starts_at == DAY0 and resolved["PueHigh"].ends_at == DAY0 + 2700
    assert stats2.results[("log", "success")] == 1
    assert json.loads((folder / "state.json").read_text())["alerts"] == {}


def test_a_corrupt_state_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "state.json").write_text("{not json")
    out = AlertOutput(engine(), AlertFiles(folder), [])
    out.restore()
    assert (folder / "state.json.bad").exists() and not (folder / "state.json").exists()
    assert any("state.json: not valid JSON" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pue_monitor", *args], capture_output=True, text=True, timeout=60)


def site_file(tmp_path: Path, **alerts: object) -> Path:
    from tests.sites import two_meter_site

    cfg = two_meter_site()
    cfg["store"] = {"path": "store.sqlite"}
    cfg["alerts"] = {"notifiers": [{"name": "log", "type": "console"}], **alerts}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``pue ARGS`` in this process: exit status, stdout, stderr."""
    from pue_monitor.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_silence_list_unsilence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = str(site_file(tmp_path))
    code, out, err = cli(capsys, "alerts", "silence", "--config", site, "alertname=PueDeviceDown", "device=pdu-3",
                         "--for", "2h", "--comment", "replacing the PDU", "--author", "ops")  # fmt: skip
    assert code == 0, err
    sid = out.split()[1].rstrip(":")
    silences = json.loads((tmp_path / "store.sqlite.alerts" / "silences.json").read_text())["silences"]
    (s,) = silences
    assert s["id"] == sid and s["matchers"] == {"alertname": "PueDeviceDown", "device": "pdu-3"}
    assert s["ends_at"] - s["starts_at"] == 7200 and abs(s["starts_at"] - time.time()) < 30
    assert (s["comment"], s["created_by"]) == ("replacing the PDU", "ops")
    code, out, err = cli(capsys, "alerts", "list", "--config", site, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["firing"] == [] and [x["id"] for x in doc["silences"]] == [sid]
    code, out, _ = cli(capsys, "alerts", "unsilence", "--config", site, sid[:5])
    assert code == 0 and f"silence {sid} expired" in out
    assert json.loads(cli(capsys, "alerts", "list", "--config", site, "--json")[1])["silences"] == []
    assert len(json.loads(cli(capsys, "alerts", "list", "--config", site, "--json", "--all")[1])["silences"]) == 1
    # one-line errors, no traceback
    code, _, err = cli(capsys, "alerts", "unsilence", "--config", site, "nope")
    assert code == 1 and "no silence with id 'nope'" in err and "Traceback" not in err
    code, _, err = cli(capsys, "alerts", "silence", "--config", site, "device", "--for", "2h")
    assert code == 2 and "is not a matcher LABEL=VALUE" in err
    code, _, err = cli(capsys, "alerts", "silence", "--config", site, "device=x", "--for", "2 hours")
    assert code == 2 and "is not a duration" in err


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.servers import Alertmanager

    am = Alertmanager(tmp_path_factory.mktemp("am"))
    am.start()
    yield am
    am.stop()


async def _until(pred: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_service_pages_alertmanager_when_pue_crosses_and_resolves(tmp_path: Path, alertmanager: object) -> None:
    from pue_monitor.clock import ManualClock
    from pue_monitor.config.loader import load_site
    from pue_monitor.readings import Reading
    from pue_monitor.service import Service

    am = alertmanager
    site_path = site_file(
        tmp_path,
        notifiers=[{"name": "am", "type": "alertmanager", "urls": [am.url], "backoff_s": 0.05}],
        rules={"pue_15m": {"for_s": 900, "resolve_after_s": 900}},
    )
    cfg = yaml.safe_load(site_path.read_text())
    for d in cfg["devices"]:
        d["interval"] = 15
    site_path.write_text(yaml.safe_dump(cfg))
    t0 = dt.datetime(2026, 9, 21, 14, 0, tzinfo=dt.UTC).timestamp()
    clock = ManualClock(t0)
    svc = Service(load_site(site_path), clock=clock, resume=False)
    await svc.outputs.start()

    def am_alerts() -> dict[str, dict[str, object]]:
        got = am.alerts()
        return {f"{a['labels']['alertname']}/{a['labels']['severity']}": a for a in got if a["labels"]["site"] == "s"}

    fac = it = 0.0
    listed = ""
    try:
        for k in range(0, 90 * 4 + 1):  # 90 minutes of readings every 15 s
            now = t0 + 15 * k
            clock.t = now
            pue = 1.6 if now < t0 + 2700 else 1.2
            svc.runner.deliver(
                [
                    Reading(now, "s", "inc", "import_energy", fac, "kWh"),
                    Reading(now, "s", "it", "import_energy", it, "kWh"),
                ]
            )
            it += 600 * 15 / 3600
            fac += 600 * pue * 15 / 3600
            if k % 4 == 0:
                await svc.step()
            if now == t0 + 30 * 60:  # the first quarter (1.6) closed and the for_s of 15 min is met
                await _until(lambda: "PueHigh/critical" in am_alerts())
                firing = am_alerts()
                assert set(firing) == {"PueHigh/critical", "PueHigh/warning"}
                crit = firing["PueHigh/critical"]
                assert crit["status"]["state"] == "active"
                assert crit["startsAt"] == "2026-09-21T14:00:00.000Z"
                assert crit["labels"]["window"] == "15m"
                r = await asyncio.to_thread(run_cli, "alerts", "list", "--config", str(site_path))
                listed = r.stdout
                assert svc.prometheus is not None
                text = await asyncio.to_thread(lambda: urllib.request.urlopen(svc.prometheus.url, timeout=5).read())
                metrics = text.decode()
                assert 'pue_alerts_firing{alertname="PueHigh",severity="critical",site="s"} 1.0' in metrics
                assert 'pue_alert_notifications_total{notifier="am",result="success",site="s"}' in metrics
                assert 'pue_alert_notifications_total{notifier="am",result="failure",site="s"} 0.0' in metrics
                promtool = shutil.which("promtool")
                assert promtool is not None, "promtool (Debian package prometheus): ./scripts/test installs it"
                check = await asyncio.to_thread(
                    subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30
                )
                assert check.returncode == 0, check.stdout + check.stderr
        await _until(lambda: am_alerts() == {})  # resolved: Alertmanager shows no active alert
        resolved = await asyncio.to_thread(am.alerts, active="false")
        assert [a for a in resolved if a["labels"]["site"] == "s"] == []
    finally:
        await svc.close()
    assert "firing alerts: 2" in listed and "PueHigh" in listed and "15-minute PUE 1.600" in listed
    print(listed)
    state = json.loads((tmp_path / "store.sqlite.alerts" / "state.json").read_text())
    assert state["alerts"] == {}
    assert svc.alerts is not None and svc.alerts.stats.results[("am", "failure")] == 0


def test_readme_lifecycle_block_is_valid_and_shows_the_defaults() -> None:
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)]
    (doc,) = [b for b in blocks if isinstance(b, dict) and "rules" in b.get("alerts", {})]
    shown = AlertsConfig.model_validate(doc["alerts"])
    defaults = AlertsConfig(notifiers=shown.notifiers)
    assert shown == defaults


def test_check_config_names_an_alerts_folder_that_cannot_be_created(tmp_path: Path) -> None:
    from pue_monitor.config.loader import check_site

    (tmp_path / "plain-file").write_text("")
    site = site_file(tmp_path, state_dir="plain-file/alerts")
    errors = check_site(site).errors
    assert len(errors) == 1 and "alerts.state_dir" in errors[0] and "plain-file is not a directory" in errors[0]
    assert check_site(site_file(tmp_path, state_dir="alerts-here")).errors == []


async def test_an_unwritable_alerts_folder_is_logged_once_and_alerts_still_go_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "plain-file").write_text("")
    devices = {"pdu-3": Dev("down", DAY0)}
    stats = NotifierStats()
    e = AlertEngine(SITE, Thresholds(), AlertsConfig(), devices=lambda: devices)
    out = AlertOutput(e, AlertFiles(tmp_path / "plain-file" / "a"), [Console("log", stats=stats)], stats=stats)
    for k in range(3):
        await out.flush(DAY0 + 400 + 10 * k)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "plain-file/a: cannot create the alerts folder" in errors[0]
    assert stats.results[("log", "success")] == 1
    assert out.health().up is False and "cannot create the alerts folder" in out.health().detail
