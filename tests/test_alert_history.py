"""The alert history (alerts/history.py) and the month's alerts in `pue report`.

THE ACCEPTANCE: a month of 15-minute readings (Asia/Shanghai) is backfilled into a real store with
`pue ingest-csv`; the alert engine (the service's alert output, built from the site file) is run
over the stored 15-minute and daily PUE in data order, with a restart in the middle of a breach;
then `pue report --month 2026-10` lists exactly the alerts the readings call for, with their
times, clipped to the month. The readings: IT 400 kW throughout, facility 1.30 x IT, except

* A: 1.45 x IT from 2026-09-30 20:00 to 2026-10-01 04:00 (warning; began before the month);
* B: 1.60 x IT on 2026-10-09 10:00-16:00 (warning and critical; the restart is at 13:00);
* C: 1.45 x IT from 2026-10-31 21:00 to the end of the data (still firing when the report is made).

The 15-minute rule fires after 30 minutes over the limit and resolves after 30 minutes under the
limit minus the hysteresis; the alert's times are the condition's: A is 20:00 to 04:00. Daily PUE
never exceeds 1.38 on a fully covered day, so no daily alert.
"""

# ruff: noqa: RUF001  # Chinese text: full-width punctuation is correct there

from __future__ import annotations

import asyncio
import csv
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pue_monitor.alerts.engine import AlertEngine
from pue_monitor.alerts.history import AlertHistory, read_period
from pue_monitor.alerts.output import AlertOutput, build_alert_output
from pue_monitor.alerts.state import AlertFiles, alerts_dir
from pue_monitor.config.loader import load_site
from pue_monitor.config.models import AlertsConfig, Thresholds
from pue_monitor.pipeline.pue import PueInterval
from pue_monitor.reports.alert_list import alert_line, with_alerts
from pue_monitor.reports.strings import STRINGS
from pue_monitor.sinks.sqlite import StoreReader
from tests.test_alert_engine import minute, quarter

PUE_CLI = [sys.executable, "-m", "pue_monitor"]
CST = timezone(timedelta(hours=8))
IT_KW = 400.0


def at(month: int, day: int, hh: int, mm: int = 0) -> float:
    return datetime(2026, month, day, hh, mm, tzinfo=CST).timestamp()


FIRST, LAST = at(9, 30, 18), at(11, 1, 6)
OCT = (at(10, 1, 0), at(11, 1, 0))
BREACHES = [(at(9, 30, 20), at(10, 1, 4), 1.45), (at(10, 9, 10), at(10, 9, 16), 1.60), (at(10, 31, 21), LAST, 1.45)]
RESTART = at(10, 9, 13)

SITE = """\
site: {{id: hist, name: History DC, timezone: Asia/Shanghai}}
prometheus: {{enabled: false}}
store: {{path: {store}}}
thresholds: {{warning: 1.4, critical: 1.5}}
report: {{operator: Example Operator Ltd, address: "1 Test Road, Taiyuan"}}
alerts:
  notifiers: [{{name: log, type: console}}]
devices:
  - {{id: grid, protocol: import, interval: 900, meter: {{role: facility_input, energy: energy}}}}
  - {{id: it, protocol: import, interval: 900, meter: {{role: it, it_location: pdu_output, energy: energy}}}}
"""


def pue_at(t: float) -> float:
    return next((p for a, b, p in BREACHES if a <= t < b), 1.30)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, CST).isoformat()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUE_CLI, *args], capture_output=True, text=True, timeout=300)


def as_interval(r: dict[str, Any]) -> PueInterval:
    return PueInterval(
        start=r["start"], end=r["end"], e_facility=r["e_facility_kwh"], e_it=r["e_it_kwh"], e_subsystems={},
        pue=r["pue"], ppue={}, category=r["category"], measured=r["measured"], estimated=r["estimated"],
        missing=r["missing"], coverage=r["coverage"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The site, its store backfilled, and the alert engine run over it (with a restart)."""
    folder = tmp_path_factory.mktemp("history")
    site_path = folder / "site.yaml"
    site_path.write_text(SITE.format(store=folder / "store.sqlite"))
    export = folder / "export.csv"
    with export.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "meter", "quantity", "value"])
        grid = it = 0.0
        t = FIRST
        while t <= LAST:
            w.writerow([iso(t), "grid", "energy_kwh", repr(grid)])
            w.writerow([iso(t), "it", "energy_kwh", repr(it)])
            grid += IT_KW * pue_at(t) * 0.25
            it += IT_KW * 0.25
            t += 900
    r = run("ingest-csv", str(export), "--config", str(site_path), "-q")
    assert r.returncode == 0, r.stderr

    site = load_site(site_path)
    reader = StoreReader(site.resolve(site.config.store.path))
    try:
        quarters = [as_interval(x) for x in reader.intervals("15m", start=FIRST, end=LAST + 60)]
        days = {x["end"]: as_interval(x) for x in reader.intervals("1d", start=FIRST - 86400, end=LAST + 86400)}
    finally:
        reader.close()
    assert len(quarters) == (LAST - FIRST) / 900  # every quarter of the data has a PUE

    async def drive() -> list[dict[str, Any]]:
        """The service's part: each closed quarter (and day) handed over, evaluated every second
        hour, 30 s after its last minute (the engine judges in data time: the alerts' times do not
        depend on how often it evaluates); stopped and rebuilt from its files at RESTART."""
        out = build_alert_output(site)
        sent: list[dict[str, Any]] = []
        for q in quarters:
            if q.start == RESTART:
                await out.close()
                out = build_alert_output(site)  # a new process: state.json and the history reopened
            out.intervals("15m", [q])
            out.intervals("1m", [PueInterval(**{**q.__dict__, "start": q.end - 60})])
            if q.end in days:
                out.intervals("1d", [days[q.end]])
            if q.end % 7200 == 0:
                await out.flush(q.end + 30)
                sent += [a.to_json() for a in out.last.group] if out.last else []
        await out.close()
        return sent

    sent = asyncio.run(drive())
    return {"site": site_path, "folder": folder, "sent": sent, "alerts_dir": alerts_dir(site)}


EXPECTED = [  # (severity, started, ended, status, in the month from, to, value)
    ("warning", at(9, 30, 20), at(10, 1, 4), "resolved", OCT[0], at(10, 1, 4), 1.45),
    ("critical", at(10, 9, 10), at(10, 9, 16), "resolved", at(10, 9, 10), at(10, 9, 16), 1.60),
    ("warning", at(10, 9, 10), at(10, 9, 16), "resolved", at(10, 9, 10), at(10, 9, 16), 1.60),
    ("warning", at(10, 31, 21), None, "firing", at(10, 31, 21), OCT[1], 1.45),
]


@pytest.fixture(scope="module")
def reports(month: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pue report --month 2026-10`: JSON and the Chinese PDF, then the English PDF."""
    out = tmp_path_factory.mktemp("reports")
    for formats, lang in (("json,pdf", "zh"), ("pdf", "en")):
        r = run("report", "--config", str(month["site"]), "--month", "2026-10", "--format", formats, "--lang", lang,
                "--out", str(out), "--json", "--quiet")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["alerts"] == 4  # the summary counts them
    return out


def test_pue_report_lists_exactly_the_months_alerts_across_a_restart(month: dict[str, Any], reports: Path) -> None:
    doc = json.loads((reports / "pue-report-hist-2026-10.json").read_text())
    got = [
        (a["severity"], a["started"], a["ended"], a["status"], a["period_from"], a["period_to"], a["value"])
        for a in doc["alerts"]
    ]
    assert got == [(s, a, b, st, f, t, pytest.approx(v, abs=5e-5)) for s, a, b, st, f, t, v in EXPECTED]
    for a in doc["alerts"]:
        assert a["name"] == "PueHigh" and a["labels"]["window"] == "15m" and a["labels"]["site"] == "hist"
        assert a["duration_s"] == a["period_to"] - a["period_from"]
        assert a["threshold"] == {"warning": 1.4, "critical": 1.5}[a["severity"]]
        assert a["silenced"] is False
    assert [a["duration_s"] / 3600 for a in doc["alerts"]] == [4.0, 6.0, 6.0, 3.0]
    assert doc["alert_history"]["recorded"] is True
    # the history began with the first evaluation, on 2026-09-30: complete for October, no note
    assert doc["alert_history"]["complete_from"] < OCT[0]
    assert not [n for n in doc["notes"] if n.startswith("alerts:")]
    # the notifier saw the same alerts fire (B's critical and warning before the restart) and resolve
    fired = {(a["labels"]["severity"], a["startsAt"]) for a in month["sent"] if a["status"] == "firing"}
    assert len(fired) == 4  # (repeated every 4 h while firing)
    resolved = [a for a in month["sent"] if a["status"] == "resolved"]
    assert len(resolved) == 3  # A, and B's two after the restart: the restarted engine resolved them


def test_the_history_has_each_transition_once(month: dict[str, Any]) -> None:
    con = sqlite3.connect(month["alerts_dir"] / "history.sqlite")
    try:
        rows = con.execute("SELECT event, severity, starts_at, ends_at FROM transitions ORDER BY seq").fetchall()
    finally:
        con.close()
    assert sorted(rows, key=lambda r: (r[2], r[1], r[0])) == [
        ("fired", "warning", at(9, 30, 20), None),
        ("resolved", "warning", at(9, 30, 20), at(10, 1, 4)),
        ("fired", "critical", at(10, 9, 10), None),
        ("resolved", "critical", at(10, 9, 10), at(10, 9, 16)),
        ("fired", "warning", at(10, 9, 10), None),
        ("resolved", "warning", at(10, 9, 10), at(10, 9, 16)),
        ("fired", "warning", at(10, 31, 21), None),
    ]


def test_september_and_november_get_the_alerts_that_overlap_them(month: dict[str, Any]) -> None:
    folder = month["alerts_dir"]
    sep = read_period(folder, at(9, 1, 0), OCT[0]).episodes
    assert [(e.starts_at, e.ends_at, e.status) for e in sep] == [(at(9, 30, 20), at(10, 1, 4), "resolved")]
    nov = read_period(folder, OCT[1], at(12, 1, 0)).episodes
    assert [(e.starts_at, e.status) for e in nov] == [(at(10, 31, 21), "firing")]
    assert read_period(folder, at(10, 2, 0), at(10, 9, 10)).episodes == []  # [start, end): B starts at the end


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_pdf_lists_the_alerts_and_counts_them_in_the_summary(reports: Path, lang: str) -> None:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext (Debian poppler-utils): ./scripts/test installs it"
    pdf = reports / f"pue-report-hist-2026-10-{lang}.pdf"
    text = re.sub(r"\s+", "", subprocess.run([tool, "-raw", str(pdf), "-"], capture_output=True, text=True).stdout)
    t = STRINGS[lang]
    sev = {"zh": {"warning": "预警", "critical": "严重"}, "en": {"warning": "warning", "critical": "critical"}}[lang]
    assert re.sub(r"\s+", "", t["alerts_count_value"].format(n=4, parts=f"{sev['critical']} 1{t['list_sep']}"
                                                            f"{sev['warning']} 3")) in text  # fmt: skip
    rows = [
        f"PueHigh{sev['warning']}2026-09-3020:002026-10-0104:004.01.4500",
        f"PueHigh{sev['critical']}2026-10-0910:002026-10-0916:006.01.6000",
        f"PueHigh{sev['warning']}2026-10-0910:002026-10-0916:006.01.6000",
        f"PueHigh{sev['warning']}2026-10-3121:00{t['ongoing']}3.01.4500",
    ]
    for row in rows:
        assert row in text, row
    # the notes in the report's language (the JSON keeps them in English)
    wue = {"zh": "WUE：未计量（无此类计量表，或其数据缺失）", "en": "WUE: not measured"}[lang]
    assert re.sub(r"\s+", "", wue) in text


# ------------------------------------------------------------------ the history on its own

DAY0 = datetime(2026, 7, 15, tzinfo=UTC).timestamp()


def output(folder: Path, **history: Any) -> AlertOutput:
    e = AlertEngine("s", Thresholds(), AlertsConfig())
    out = AlertOutput(e, AlertFiles(folder), [], history=AlertHistory(folder, **history))
    out.restore()
    return out


async def breach(out: AlertOutput, start: float, quarters: int, pue: float) -> None:
    for k in range(quarters):
        s = start + 900 * k
        out.intervals("15m", [quarter(s, pue)])
        out.intervals("1m", [minute(s + 840, pue)])
        await out.flush(s + 930)


async def test_a_crash_between_the_history_and_the_state_repeats_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    out = output(folder)
    await breach(out, DAY0, 1, 1.45)
    state_before = (folder / "state.json").read_text()
    await breach(out, DAY0 + 900, 2, 1.45)  # fires (warning) in the second quarter's evaluation
    # the crash: the state file as it was before the firing (the history already has it)
    (folder / "state.json").write_text(state_before)
    out2 = output(folder)
    await breach(out2, DAY0 + 900, 2, 1.45)  # the restarted engine fires again: the same transition
    await breach(out2, DAY0 + 2700, 3, 1.30)  # and resolves it
    eps = read_period(folder, DAY0, DAY0 + 86400).episodes
    assert [(e.severity, e.starts_at, e.ends_at, e.status) for e in eps] == [("warning", DAY0, DAY0 + 2700, "resolved")]
    con = sqlite3.connect(folder / "history.sqlite")
    assert con.execute("SELECT count(*) FROM transitions").fetchone() == (2,)
    con.close()


async def test_a_silenced_alert_is_in_the_history_marked_silenced_and_not_notified(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    out = output(folder)
    AlertFiles(folder).add_silence({"alertname": "PueHigh"}, now=DAY0, duration_s=86400, comment="commissioning")
    await breach(out, DAY0, 3, 1.45)
    await breach(out, DAY0 + 2700, 3, 1.30)
    (ep,) = read_period(folder, DAY0, DAY0 + 86400).episodes
    assert (ep.status, ep.silenced, ep.notified, ep.starts_at, ep.ends_at) == (
        "resolved",
        True,
        False,
        DAY0,
        DAY0 + 2700,
    )
    assert alert_line(ep, DAY0, DAY0 + 86400, now=DAY0 + 86400).silenced


async def test_a_lost_state_marks_the_open_alert_end_unknown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "a"
    out = output(folder)
    await breach(out, DAY0, 3, 1.55)  # warning and critical fire
    (folder / "state.json").write_text("{broken")
    out2 = output(folder)  # the state is set aside: the engine starts empty
    await breach(out2, DAY0 + 2700, 1, 1.30)
    eps = read_period(folder, DAY0, DAY0 + 86400).episodes
    assert sorted((e.severity, e.status, e.lost_at) for e in eps) == [
        ("critical", "state_lost", DAY0 + 2700 + 930),
        ("warning", "state_lost", DAY0 + 2700 + 930),
    ]
    assert sum("its end is not known" in r.getMessage() for r in caplog.records) == 2
    line = alert_line(eps[0], DAY0, DAY0 + 86400, now=DAY0 + 86400)
    assert (line.period_from, line.period_to, line.ended) == (DAY0, DAY0 + 2700 + 930, None)


async def test_retention_deletes_old_ended_alerts_never_firing_ones(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    out = output(folder, keep_days=32)
    await breach(out, DAY0, 3, 1.45)  # fires
    await breach(out, DAY0 + 2700, 3, 1.30)  # resolves at DAY0 + 2700
    await breach(out, DAY0 + 86400, 3, 1.45)  # another, left firing
    assert len(read_period(folder, DAY0, DAY0 + 40 * 86400).episodes) == 2
    later = DAY0 + 33 * 86400  # a day after the first ended 32 days ago; the prune runs daily
    out.intervals("1m", [minute(later, 1.45)])
    await out.flush(later)
    got = read_period(folder, DAY0 - 86400, later + 1)
    assert [(e.starts_at, e.status) for e in got.episodes] == [(DAY0 + 86400, "firing")]
    assert got.complete_from == later - 32 * 86400


def test_a_report_without_history_says_the_alerts_are_not_known(tmp_path: Path) -> None:
    from tests.test_report_pdf import month_report

    data = with_alerts(month_report(), tmp_path / "none.alerts", now=0.0)
    assert data.alerts == [] and data.alert_history is not None and not data.alert_history.recorded
    assert any("no alert history" in n for n in data.notes)
    doc = data.to_json()
    assert doc["alert_history"] == {"path": str(tmp_path / "none.alerts" / "history.sqlite"), "recorded": False,
                                    "complete_from": None}  # fmt: skip


async def test_an_engine_that_stopped_counts_a_firing_alert_up_to_when_it_last_ran(tmp_path: Path) -> None:
    import dataclasses

    from tests.test_report_pdf import month_report

    folder = tmp_path / "a"
    out = output(folder)
    # fires at DAY0 + 1830 (a write: the history notes "alive"); the next evaluations, at most an
    # hour later, write nothing: alive stays DAY0 + 1830
    await breach(out, DAY0, 3, 1.45)
    await out.close()
    base = month_report()
    data = dataclasses.replace(base, period=dataclasses.replace(base.period, start=DAY0 - 86400, end=DAY0 + 86400 * 30))
    # the report is made ten days later: the service has not run since
    got = with_alerts(data, folder, now=DAY0 + 10 * 86400)
    (line,) = got.alerts
    assert (line.status, line.period_from, line.period_to) == ("firing", DAY0, DAY0 + 1830)
    assert any("the alert engine last ran at 2026-07-15 08:30" in n for n in got.notes)  # Asia/Shanghai
    # while the engine runs (it noted so within the hour), a firing alert counts up to now
    now = DAY0 + 1830 + 3000
    (line,) = with_alerts(data, folder, now=now).alerts
    assert line.period_to == now
