"""The PDF report (issue 11, scope 3): a hand-built month of a realistic site rendered in Chinese
and English; poppler's pdftotext/pdfinfo/pdffonts read the result back. Checked: the headings of
each language in the text layer, every figure as the JSON has it (rounded by the documented
rules), "not measured" for None KPIs, the summary on page 1, the page count against the footer,
CJK fonts embedded, and the one-line errors (missing font, unknown language)."""

# ruff: noqa: RUF001  # Chinese text: full-width punctuation is correct there

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pue_monitor.errors import UsageError, UserError
from pue_monitor.reports import render_pdf as rp
from pue_monitor.reports.model import (
    AlertHistoryInfo,
    AlertLine,
    Compliance,
    DailyRow,
    FreeCoolingSummary,
    Kpis,
    MeterCompleteness,
    PeriodFigures,
    ReportData,
    SiteBlock,
)
from pue_monitor.reports.strings import LIMIT_NAMES, REASON_NAMES, ROLE_NAMES, SEVERITY_NAMES, STRINGS

TZ = ZoneInfo("Asia/Shanghai")


def _ts(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> float:
    return dt.datetime(y, m, d, hh, mm, tzinfo=TZ).timestamp()


def month_report(kind: str = "month") -> ReportData:
    """October 2026 of a 3 MW-class site in Taiyuan (Shanxi): ~1.03 GWh facility, PUE ~1.36.
    Daily energies follow a weekly pattern with a warm spell; the IT counter of UPS-B has a
    two-hour gap on 14 October (split over time: coverage 22/24 that day); the utility incomer
    is power-only (integrated); CUE, ERF and reused heat are not metered."""
    first = dt.date(2026, 10, 1) if kind == "month" else dt.date(2026, 1, 1)
    last = dt.date(2026, 10, 31) if kind == "month" else dt.date(2026, 12, 31)
    daily: list[DailyRow] = []
    for i in range((last - first).days + 1):
        date = first + dt.timedelta(days=i)
        day = date.day
        it = 24_000.0 + 180.0 * (day % 7) + 0.37 * day
        summer = 0.05 if 6 <= date.month <= 8 else 0.0
        fac = it * (1.318 + summer + 0.004 * (day % 5) + (0.021 if 8 <= day <= 11 else 0.0))
        cov = 22 / 24 if date == dt.date(2026, 10, 14) else 1.0
        daily.append(DailyRow(date.isoformat(), round(fac, 3), round(it, 3), fac / it, cov))
    fac_m = sum(r.facility_kwh or 0.0 for r in daily)
    it_m = sum(r.it_kwh or 0.0 for r in daily)
    subs = {"cooling": 0.231 * it_m, "power_distribution": 0.071 * it_m, "lighting": 0.0042 * it_m}
    period = PeriodFigures(
        label="2026-10" if kind == "month" else "2026",
        start=_ts(first.year, first.month, 1),
        end=_ts(2026, 11, 1) if kind == "month" else _ts(2027, 1, 1),
        facility_kwh=fac_m,
        it_kwh=it_m,
        subsystems_kwh=subs,
        pue=fac_m / it_m,
        ppue={k: (it_m + v) / it_m for k, v in subs.items()},
        category=2,
        measured=0.981234,
        estimated=0.017543,
        missing=0.001223,
    )
    trailing = PeriodFigures(
        label="2025-11..2026-10",
        start=_ts(2025, 11, 1),
        end=_ts(2026, 11, 1),
        facility_kwh=11_912_345.678,
        it_kwh=8_812_004.321,
        subsystems_kwh={},
        pue=11_912_345.678 / 8_812_004.321,
        ppue={},
        category=1,
        measured=0.9912,
        estimated=0.0071,
        missing=0.0017,
    )
    meters = [
        MeterCompleteness(
            "utility-1", "power", "facility_input", 0.0, 1.0, 0.0, {"power_integrated": 1.0}, 0, 0, 0, None
        ),
        MeterCompleteness("ups-a", "energy", "it", 1.0, 0.0, 0.0, {}, 0, 0, 1, 2),
        MeterCompleteness("ups-b", "energy", "it", 0.997312, 0.002688, 0.0, {"gap_split": 0.002688}, 1, 0, 0, 2),
        MeterCompleteness("pdu-row3", "kwh", "it", 0.99, 0.0, 0.01, {}, 0, 1, 0, 2),
        MeterCompleteness("chiller-1", "energy", "cooling", 0.998, 0.0015, 0.0005, {"reset": 0.0015}, 0, 1, 0, None),
        MeterCompleteness("lighting-db", "energy", "lighting", 1.0, 0.0, 0.0, {}, 0, 0, 0, None),
    ]
    return ReportData(
        kind="month" if kind == "month" else "year",
        site=SiteBlock(
            id="ty-dc1",
            name="太原云计算中心一号楼",
            operator="山西示例云数据有限公司",
            address="山西省太原市小店区示例路 88 号",
            timezone="Asia/Shanghai",
        ),
        period=period,
        trailing_12m=trailing if kind == "month" else None,
        daily=daily,
        meters=meters,
        compliance=Compliance(
            limits={"warning": 1.4, "critical": 1.5},
            meets={"warning": True, "critical": True},
            grade=3,
            grade_limits={1: 1.2, 2: 1.3, 3: 1.5},
        ),
        kpis=Kpis(wue_l_per_kwh=0.4127, water_l=312_345.6, ref=0.0, renewable_kwh=0.0),
        free_cooling=[FreeCoolingSummary("phx-1", 112.5, 301.0, 330.0, 0.5, 388.25, 21_345.6)],
        alerts=[
            AlertLine(  # began in September: clipped to the month
                "PueSensorFault",
                "warning",
                _ts(2026, 9, 28, 6, 0),
                _ts(2026, 10, 2, 9, 30),
                "sensor fault at ty-dc1: chiller-1 energy stuck",
                "resolved",
                {
                    "alertname": "PueSensorFault",
                    "device": "chiller-1",
                    "point": "energy",
                    "kind": "stuck",
                    "severity": "warning",
                    "site": "ty-dc1",
                },
                "5f1c0e2a9b7d4c31",
                _ts(2026, 10, 1),
                _ts(2026, 10, 2, 9, 30),
                33.5 * 3600,
                1234.5,
                None,
            ),
            AlertLine(
                "PueHigh",
                "warning",
                _ts(2026, 10, 9, 14, 0),
                _ts(2026, 10, 9, 18, 45),
                "15-minute PUE 1.4312 over the warning limit 1.4 at ty-dc1",
                "resolved",
                {"alertname": "PueHigh", "severity": "warning", "site": "ty-dc1", "window": "15m"},
                "0a1b2c3d4e5f6071",
                _ts(2026, 10, 9, 14, 0),
                _ts(2026, 10, 9, 18, 45),
                4.75 * 3600,
                1.4312,
                1.4,
            ),
            AlertLine(
                "PueDeviceDown",
                "warning",
                _ts(2026, 10, 31, 22, 0),
                None,
                "device ups-b down at ty-dc1 since 2026-10-31T14:00:00.000Z",
                "firing",
                {"alertname": "PueDeviceDown", "device": "ups-b", "severity": "warning", "site": "ty-dc1"},
                "9e8d7c6b5a493827",
                _ts(2026, 10, 31, 22, 0),
                _ts(2026, 11, 1),
                2 * 3600,
                None,
                None,
                True,
            ),
        ],
        alert_history=AlertHistoryInfo("/var/lib/pue-monitor/pue.sqlite.alerts/history.sqlite", True, _ts(2026, 3, 2)),
        notes=["ups-b/energy: 120 min on 2026-10-14 02:00-04:00 estimated (gap split over time)"],
        generated_at=_ts(2026, 11, 1, 8, 30),
        generator="pue-monitor 0.1.0",
    )


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: install the Debian package poppler-utils (scripts/test does)"
    return path


def pdftext(path: Path, first: int | None = None, last: int | None = None, *, raw: bool = False) -> str:
    args = [_tool("pdftotext"), "-raw" if raw else "-layout", "-enc", "UTF-8"]
    if first is not None:
        args += ["-f", str(first), "-l", str(last or first)]
    return subprocess.run([*args, str(path), "-"], check=True, capture_output=True, text=True).stdout


def squash(s: str) -> str:
    """Text without whitespace: typst puts a thin space between CJK and Latin, and table cells
    break lines, so headings and labels are compared without spaces."""
    return re.sub(r"\s+", "", s)


def pages(path: Path) -> int:
    info = subprocess.run([_tool("pdfinfo"), str(path)], check=True, capture_output=True, text=True).stdout
    m = re.search(r"^Pages:\s+(\d+)$", info, re.M)
    assert m, info
    return int(m.group(1))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pdf")
    data = month_report()
    paths = {}
    for lang in ("zh", "en"):
        paths[lang] = out / f"report-{lang}.pdf"
        rp.render_pdf(data, paths[lang], lang)
    return paths


HEADINGS = (
    "summary",
    "charts",
    "daily",
    "subsystems",
    "meters",
    "kpis_fc",
    "alerts",
    "notes",
    "title_month",
    "alerts_count",
)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_headings_and_labels_of_the_language_are_in_the_text_layer(rendered, lang):
    text = squash(pdftext(rendered[lang]))
    t = STRINGS[lang]
    for key in (*HEADINGS, "pue_month", "pue_12m", "facility_kwh", "it_kwh", "completeness", "free_cooling", "kpis"):
        assert squash(t[key]) in text, (lang, key, t[key])
    other = STRINGS["en" if lang == "zh" else "zh"]
    for key in HEADINGS:
        assert squash(other[key]) not in text, (lang, key)


def test_chinese_pdf_uses_the_standard_terms(rendered):
    text = squash(pdftext(rendered["zh"]))
    for term in (
        "电能利用效率",
        "数据中心",
        "总耗电量",
        "IT设备耗电量",
        "测量类别",
        "能效等级",
        "GB40879-2021",
        "未计量",
    ):
        assert term in text, term
    assert "notmeasured" not in text


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_figure_is_the_json_figure_rounded_by_the_documented_rules(rendered, lang):
    doc = month_report().to_json()
    text = squash(pdftext(rendered[lang]))
    t = STRINGS[lang]
    # the headline keys of the JSON
    assert f"{doc['pue']:.4f}" in text
    assert f"{doc['facility_kwh']:,.1f}kWh" in text
    assert f"{doc['it_kwh']:,.1f}kWh" in text
    assert squash(t["category_2"]) in text
    for share in doc["completeness"].values():
        assert f"{share * 100:.2f}%" in text
    m12 = doc["trailing_12m"]
    assert f"{m12['pue']:.4f}" in text and f"{m12['facility_kwh']:,.1f}kWh" in text
    # daily rows, subsystems, meters, free cooling, KPIs
    for row in doc["daily"]:
        cells = (row["date"], f"{row['facility_kwh']:,.1f}", f"{row['it_kwh']:,.1f}", f"{row['pue']:.4f}")
        assert "".join(cells) + f"{row['coverage'] * 100:.2f}%" in text, row
    for role, kwh in doc["period"]["subsystems_kwh"].items():
        name = squash(ROLE_NAMES[lang][role])
        assert f"{name}{kwh:,.1f}{doc['period']['ppue'][role]:.4f}" in text, role
    for m in doc["meters"]:
        shares = "".join(f"{m[k] * 100:.2f}%" for k in ("measured", "estimated", "missing"))
        assert f"{m['device']}/{m['point']}{squash(ROLE_NAMES[lang][m['role']])}{shares}" in text, m
        for reason, v in m["estimated_reasons"].items():
            assert squash(f"{REASON_NAMES[lang][reason]} {v * 100:.2f}%") in text
    fc = doc["free_cooling"][0]
    hours = (fc[k] for k in ("hours_full", "hours_partial", "hours_none", "hours_unknown", "hours_used"))
    assert fc["economiser"] + "".join(f"{h:,.1f}" for h in hours) + f"{fc['avoided_kwh']:,.1f}" in text
    k = doc["kpis"]
    assert f"{k['wue_l_per_kwh']:.3f}" in text and f"{k['water_l']:,.0f}" in text
    assert text.count(squash(t["not_measured"])) == 3  # CUE, ERF, reused heat (None), never 0
    # compliance: each limit as configured, and the grade
    for name, limit in doc["compliance"]["limits"].items():
        assert squash(t["limit"].format(name=LIMIT_NAMES[lang][name], value=f"{limit:g}") + t["meets"]) in text
    assert squash(t["grade_value"].format(grade=3)) in text
    # alerts (local times), notes, generator and generation time
    sev = SEVERITY_NAMES[lang]["warning"]
    fault, high, down = doc["alerts"]
    # name, severity, start and end in local time, hours inside the month, value, the alert in words
    rows = squash(pdftext(rendered[lang], raw=True))  # table rows in order, wrapped cells whole
    words = [rp.alert_text(a, lang) for a in month_report().alerts]
    assert squash(f"PueSensorFault{sev}2026-09-2806:002026-10-0209:3033.51234.5{words[0]}") in rows
    assert squash(f"PueHigh{sev}2026-10-0914:002026-10-0918:454.8{high['value']:.4f}{words[1]}") in rows
    down_row = f"PueDeviceDown{sev}2026-10-3122:00{t['ongoing']}2.0{rp.NONE_CELL}{words[2]}{t['alert_silenced']}"
    assert squash(down_row) in rows
    assert squash(t["alerts_count_value"].format(n=3, parts=f"{sev} 3")) in text
    assert down["silenced"] and not fault["silenced"]
    # every table and chart names its JSON keys; the summary's figures each name theirs
    assert text.count(squash(t["json"])) == 8  # 7 tables and charts, and the notes' line
    for key in ("pue", "trailing_12m.pue", "facility_kwh", "compliance.meets.critical", "kpis.wue_l_per_kwh", "alerts"):
        assert key in text, key
    assert squash(doc["notes"][0]) in text
    assert (
        squash(t["generated"].format(generator="pue-monitor 0.1.0", at="2026-11-01 08:30 (Asia/Shanghai)", schema=1))
        in text
    )


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_title_block_and_summary_come_first_and_pages_are_numbered(rendered, lang):
    t = STRINGS[lang]
    first = squash(pdftext(rendered[lang], 1))
    for s in ("太原云计算中心一号楼", "山西示例云数据有限公司", "山西省太原市小店区示例路88号", "ty-dc1"):
        assert s in first
    assert squash(t["period_value"].format(label="2026-10", start="2026-10-01 00:00", end="2026-11-01 00:00")) in first
    assert squash(t["summary"]) in first and f"{month_report().period.pue:.4f}" in first
    assert squash(t["daily"]) not in first
    n = pages(rendered[lang])
    assert 3 <= n <= 5, n  # a month of a six-meter site: summary and charts, tables
    for page in range(1, n + 1):
        assert squash(t["page"].format(page=page, total=n)) in squash(pdftext(rendered[lang], page)), page


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_fonts_are_embedded_cjk_subsets(rendered, lang):
    out = subprocess.run([_tool("pdffonts"), str(rendered[lang])], check=True, capture_output=True, text=True).stdout
    rows = out.splitlines()[2:]
    assert rows, out
    for row in rows:
        assert re.search(r"\+NotoSans(Mono)?CJK", row), row  # Noto Sans CJK SC; its mono face for JSON keys
        # columns: name type [type] encoding emb sub uni object generation
        emb, sub, uni = row.split()[-5:-2]
        assert (emb, sub, uni) == ("yes", "yes", "yes"), row


def test_annual_report_has_the_annual_title_and_no_trailing_row(tmp_path):
    out = tmp_path / "year.pdf"
    rp.render_pdf(month_report("year"), out, "zh")
    text = squash(pdftext(out))
    assert squash(STRINGS["zh"]["title_year"]) in text and squash(STRINGS["zh"]["pue_year"]) in text
    assert squash(STRINGS["zh"]["pue_12m"]) not in text
    # the alert history is complete only from 2026-03-02: the year's alert section says so
    assert squash(STRINGS["zh"]["alert_history_from"].format(at="2026-03-02 00:00")) in text


def test_same_data_gives_the_same_bytes(rendered, tmp_path):
    again = tmp_path / "again.pdf"
    rp.render_pdf(month_report(), again, "en")
    assert again.read_bytes() == rendered["en"].read_bytes()


def test_the_file_is_pdf_a_dated_by_the_report(rendered):
    meta = subprocess.run([_tool("pdfinfo"), "-meta", str(rendered["zh"])], capture_output=True, text=True).stdout
    assert "<pdfaid:part>2</pdfaid:part><pdfaid:conformance>B</pdfaid:conformance>" in meta
    assert "<dc:language><rdf:Bag><rdf:li>zh-CN</rdf:li>" in meta
    assert "<xmp:CreateDate>2026-11-01T00:30:00+00:00</xmp:CreateDate>" in meta  # 08:30 in Asia/Shanghai
    assert f'<rdf:li xml:lang="x-default">{STRINGS["zh"]["title_month"]}</rdf:li>' in meta


def test_a_broken_font_file_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "NotoSansCJK-Regular.ttc").write_bytes(b"not a font")
    monkeypatch.setenv("PUE_REPORT_FONT_DIR", str(tmp_path))
    with pytest.raises(UserError) as exc:
        rp.render_pdf(month_report(), tmp_path / "r.pdf", "zh")
    msg = str(exc.value)
    assert "\n" not in msg and str(tmp_path / "NotoSansCJK-Regular.ttc") in msg and "fonts-noto-cjk" in msg


def test_missing_cjk_font_is_one_line_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, "FONT_DIRS", ())
    monkeypatch.setenv("PUE_REPORT_FONT_DIR", str(tmp_path))
    out = tmp_path / "r.pdf"
    with pytest.raises(UserError) as exc:
        rp.render_pdf(month_report(), out, "en")
    msg = str(exc.value)
    assert "\n" not in msg and "fonts-noto-cjk" in msg and str(tmp_path) in msg and "NotoSansCJK-Regular.ttc" in msg
    assert not out.exists()


def test_unknown_language_and_unwritable_path_are_user_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown language 'fr'"):
        rp.render_pdf(month_report(), tmp_path / "r.pdf", "fr")
    with pytest.raises(UserError, match=r"cannot write") as exc:
        rp.render_pdf(month_report(), tmp_path / "missing-dir" / "r.pdf", "en")
    assert "missing-dir" in str(exc.value)


def test_string_tables_have_the_same_keys_in_both_languages():
    from pue_monitor.reports import strings

    for table in (strings.STRINGS, strings.ROLE_NAMES, strings.REASON_NAMES, strings.LIMIT_NAMES):
        assert set(table["zh"]) == set(table["en"])
    for lang in ("zh", "en"):
        for key, s in STRINGS[lang].items():
            placeholders = set(re.findall(r"{(\w+)}", s))
            assert placeholders == set(re.findall(r"{(\w+)}", STRINGS["en"][key])), key


def test_a_site_above_its_limits_says_so_in_words_and_grade(tmp_path):
    """PUE 1.6200 exceeds both limits and the grade 3 limit (1.5): no grade, "does not meet"."""
    base = month_report()
    fac, it = 1_620_000.0, 1_000_000.0
    period = dataclasses.replace(base.period, facility_kwh=fac, it_kwh=it, pue=fac / it)
    comp = dataclasses.replace(base.compliance, meets={"warning": False, "critical": False}, grade=None)
    out = tmp_path / "high.pdf"
    rp.render_pdf(dataclasses.replace(base, period=period, compliance=comp), out, "zh")
    t = STRINGS["zh"]
    first = squash(pdftext(out, 1))
    assert "1.6200" in first and "1,620,000.0kWh" in first and "1,000,000.0kWh" in first
    for name, limit in (("预警", "1.4"), ("严重", "1.5")):
        assert squash(t["limit"].format(name=name, value=limit) + t["exceeds"]) in first
    assert squash(t["grade"] + t["grade_none"]) in first


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_kpis_from_a_factor_or_contract_say_so(tmp_path, lang):
    base = month_report()
    kpis = dataclasses.replace(
        base.kpis,
        cue_kg_per_kwh=0.7123,
        ref=0.3,
        renewable_kwh=0.3 * (base.period.facility_kwh or 0.0),
        basis={
            "cue_kg_per_kwh": "emission factor: 0.5306 ...",
            "ref": "contract: share 0.3",
            "renewable_kwh": "contract: c",
        },
    )
    out = tmp_path / "k.pdf"
    rp.render_pdf(dataclasses.replace(base, kpis=kpis), out, lang)
    text = squash(pdftext(out, raw=True))
    t = STRINGS[lang]
    assert squash(f"{t['cue']}0.712{t['basis_factor']}") in text
    assert squash(f"{t['ref']}0.3000{t['basis_contract']}") in text
    assert squash(f"{kpis.renewable_kwh:,.1f}{t['basis_contract']}") in text
    plain = tmp_path / "plain.pdf"  # metered figures (no basis): no such words
    rp.render_pdf(base, plain, lang)
    assert squash(t["basis_factor"]) not in squash(pdftext(plain))
    assert squash(t["basis_contract"]) not in squash(pdftext(plain))


def test_notes_are_said_in_the_reports_language_and_kept_in_english_in_the_json(tmp_path):
    from pue_monitor.reports.model import Note

    notes = [
        Note("estimated", "ups-b (it): 0.27 % of the minutes estimated (...)", device="ups-b", role="it",
             share=0.002688, reasons={"gap_split": 0.002688}),
        Note("not_measured", "ERF: not measured (no meter of its kind, or its meter missing)", kpi="ERF"),
        Note("category", "category 1: ...", category=1, meters=[f"ups-{i}" for i in range(5)], more=2),
        Note("unknown_kind", "a note without Chinese words"),
    ]  # fmt: skip
    data = dataclasses.replace(month_report(), notes=notes)
    assert data.to_json()["notes"] == [str(n) for n in notes]  # the JSON: the English text
    out = tmp_path / "n.pdf"
    rp.render_pdf(data, out, "zh")
    text = squash(pdftext(out, raw=True))
    assert squash("ups-b（IT设备）：0.27% 的分钟数据为估算（缺口按时长分摊 0.27%）") in text
    assert squash("ERF：未计量（无此类计量表，或其数据缺失）") in text
    assert squash("最薄弱的 IT 电能表（ups-0，ups-1，ups-2，ups-3，ups-4 等，另 2 个）") in text
    assert squash("a note without Chinese words") in text
    assert "notmeasured" not in text
    rp.render_pdf(data, out, "en")
    assert squash(str(notes[1])) in squash(pdftext(out, raw=True))


def test_nothing_measured_is_said_never_zero(tmp_path):
    """A month whose IT meters never answered: no PUE, no energies, category 0, nothing to list."""
    base = month_report()
    period = dataclasses.replace(
        base.period,
        facility_kwh=None,
        it_kwh=None,
        pue=None,
        subsystems_kwh={},
        ppue={},
        category=0,
        measured=0.0,
        estimated=0.0,
        missing=1.0,
    )
    daily = [DailyRow(r.date, None, None, None, 0.0) for r in base.daily]
    data = dataclasses.replace(
        base,
        period=period,
        trailing_12m=None,
        daily=daily,
        meters=[],
        compliance=dataclasses.replace(base.compliance, meets={"warning": None, "critical": None}, grade=None),
        kpis=Kpis(),
        free_cooling=[],
        alerts=[],
        notes=[],
    )
    for lang in ("zh", "en"):
        out = tmp_path / f"empty-{lang}.pdf"
        rp.render_pdf(data, out, lang)
        t = STRINGS[lang]
        text = squash(pdftext(out))
        nm = squash(t["not_measured"])
        assert squash(t["pue_month"]) + nm in text and squash(t["facility_kwh"]) + nm in text
        assert squash(t["category_0"]) in text and "0.00%" in text and "100.00%" in text
        assert text.count(squash(t["not_assessed"])) == 3  # two limits and the grade
        for key in ("no_subsystems", "no_meters", "no_free_cooling", "no_alerts", "no_notes"):
            assert squash(t[key]) in text, key
        # every daily cell and every KPI says "not measured": 31 days x 3 + 7 KPIs + 3 summary rows
        # (+ the category's own words, twice: title block and summary, in zh)
        assert text.count(nm) == 31 * 3 + 7 + 3 + 2 * squash(t["category_0"]).count(nm)
