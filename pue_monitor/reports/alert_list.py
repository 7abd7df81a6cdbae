"""The period's alerts in a report, read from the alert engine's history (``history.sqlite`` in
the alerts folder, :mod:`pue_monitor.alerts.history`): every alert active at any time in the
period, clipped to it, with its duration inside the period; in order of start, then severity
(critical first), then name."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from pue_monitor.alerts.history import ALIVE_EVERY_S, Episode, read_period
from pue_monitor.reports.model import AlertHistoryInfo, AlertLine, Note, ReportData

__all__ = ["alert_line", "with_alerts"]


def alert_line(ep: Episode, start: float, end: float, now: float) -> AlertLine:
    """``ep`` as a report line of the period [start, end); ``now``: up to when a firing alert
    counts (the report's time, or when the engine last ran), if that is before the period's end."""
    if ep.status == "resolved":
        assert ep.ends_at is not None
        until = ep.ends_at
    elif ep.status == "state_lost":
        assert ep.lost_at is not None
        until = ep.lost_at  # at the latest: the restart that found it gone
    else:
        until = max(now, start)
    p_from = max(ep.starts_at, start)
    p_to = max(min(until, end), p_from)
    return AlertLine(
        name=ep.name,
        severity=ep.severity,
        started=ep.starts_at,
        ended=ep.ends_at,
        summary=ep.annotations.get("summary", ""),
        status=ep.status,
        labels=dict(ep.labels),
        fingerprint=ep.fingerprint,
        period_from=p_from,
        period_to=p_to,
        duration_s=p_to - p_from,
        value=ep.value,
        threshold=ep.threshold,
        silenced=ep.silenced,
    )


def _local(ts: float, tz: str) -> str:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def with_alerts(data: ReportData, folder: str | Path, *, now: float) -> ReportData:
    """``data`` with the period's alerts from the history in ``folder`` (``alerts_dir`` of the
    site), and a note when the history is missing or does not cover the whole period."""
    p = data.period
    got = read_period(folder, p.start, p.end)
    rank = {"critical": 0, "warning": 1, "info": 2}
    # an engine that has not run for a while (alive: noted at least hourly): a firing alert is
    # known to fire up to when it last ran, not up to now
    stale = got.alive is not None and now - got.alive > 2 * ALIVE_EVERY_S
    until = got.alive if stale and got.alive is not None else now
    lines = sorted(
        (alert_line(ep, p.start, p.end, until) for ep in got.episodes),
        key=lambda a: (a.started, rank.get(a.severity, 3), a.name, a.fingerprint),
    )
    notes: list[str] = list(data.notes)
    tz = data.site.timezone
    if not got.recorded:
        text = (
            f"alerts: no alert history ({got.path}): the alert engine has not run for this site (it runs in "
            "`pue run` when alerts.notifiers is set): the period's alerts are not known"
        )
        notes.append(Note("alerts_not_recorded", text, path=str(got.path)))
    elif got.complete_from is not None and got.complete_from > p.start:
        at = _local(got.complete_from, tz)
        text = (
            f"alerts: the alert history is complete from {at} ({tz}) on: alerts of the period that ended before "
            "then are not listed"
        )
        notes.append(Note("alerts_from", text, at=at, tz=tz))
    firing = [a for a in lines if a.status == "firing"]
    if stale and got.alive is not None and firing and got.alive < p.end:
        at = _local(got.alive, tz)
        text = (
            f"alerts: the alert engine last ran at {at} ({tz}): {len(firing)} alert(s) firing then are counted "
            "up to then; whether they fired longer is not known"
        )
        notes.append(Note("alerts_stale", text, at=at, tz=tz, n=len(firing)))
    lost = [a for a in lines if a.status == "state_lost"]
    if lost:
        text = (
            f"alerts: {len(lost)} alert(s) whose end is not known (the alert state was set aside at a restart); "
            "their duration counts up to that restart"
        )
        notes.append(Note("alerts_lost", text, n=len(lost)))
    info = AlertHistoryInfo(str(got.path), got.recorded, got.complete_from)
    return dataclasses.replace(data, alerts=lines, alert_history=info, notes=notes)
