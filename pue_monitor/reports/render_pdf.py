"""The PDF report (Chinese or English) rendered from ``ReportData`` alone, laid out by typst.

Nothing is computed here: every figure is a field of ``ReportData`` (so of its JSON), formatted by
the rules below, which the README's "Reports" section repeats so a reader can trace each figure:

- PUE and partial PUE: 4 decimals (``1.3521``);
- energy: kWh to 1 decimal with thousands separators (``1,234,567.8``); water: litres, no decimals;
- shares (completeness, coverage): percent to 2 decimals (``99.17%``);
- hours: 1 decimal; WUE and CUE: 3 decimals; ERF and REF: 4 decimals (ratios 0-1);
- limits and grade limits: as configured (shortest form: ``1.4``);
- times: the site's local time zone, ``YYYY-MM-DD HH:MM``; periods are [start, end);
- ``None``: "not measured" / "未计量", never 0.

Layout (typst, ``templates/report.typ``): the title block and the summary table first (page 1),
then charts, daily values, per-subsystem energy and pPUE, per-meter completeness, free cooling
and KPIs, the period's alerts, notes on estimates; footer with generator, generation time and
"page X of Y". Fonts: Noto Sans CJK SC (Debian ``fonts-noto-cjk``) for both languages, embedded
as CFF subsets; typst reads OpenType/CFF collections, which reportlab cannot embed. The file is
PDF/A-2b (archival; typst checks the constraints while writing), dated by ``generated_at``, so
the same ``ReportData`` gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pue_monitor.errors import UsageError, UserError
from pue_monitor.reports import charts
from pue_monitor.reports.model import AlertLine, Note, PeriodFigures, ReportData
from pue_monitor.reports.strings import (
    ALERT_TEXT,
    FAULT_KINDS,
    LANGS,
    LIMIT_NAMES,
    NOTE_TEXT,
    REASON_NAMES,
    ROLE_NAMES,
    SEVERITY_NAMES,
    STRINGS,
    WINDOW_NAMES,
)

__all__ = ["FONT_FAMILY", "FONT_FILE", "find_cjk_font", "render_pdf", "view_model"]

FONT_FAMILY = "Noto Sans CJK SC"
FONT_FILE = "NotoSansCJK-Regular.ttc"
#: where Debian (fonts-noto-cjk) and local installs put fonts; PUE_REPORT_FONT_DIR comes first
FONT_DIRS = (
    Path("/usr/share/fonts/opentype/noto"),
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local/share/fonts",
)
FONT_PACKAGE = "fonts-noto-cjk"
NONE_CELL = "\u2013"  # en dash: a cell with nothing to say (no reason, not an IT meter)


# --- formatting: the documented rounding rules (module docstring) ---------------------------


def f_pue(v: float | None, t: dict[str, str]) -> str:
    return t["not_measured"] if v is None else f"{v:.4f}"


def f_kwh(v: float | None, t: dict[str, str]) -> str:
    return t["not_measured"] if v is None else f"{v:,.1f}"


def f_share(v: float | None, t: dict[str, str]) -> str:
    return t["not_measured"] if v is None else f"{v * 100:.2f}%"


def f_num(v: float | None, t: dict[str, str], spec: str) -> str:
    return t["not_measured"] if v is None else format(v, spec)


def f_limit(v: float) -> str:
    return f"{v:g}"


def f_time(ts: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")


# --- fonts -------------------------------------------------------------------------------------


def find_cjk_font(dirs: Sequence[Path] | None = None) -> Path:
    """The Noto Sans CJK collection file; a one-line ``UserError`` naming the package if absent."""
    if dirs is None:
        env = os.environ.get("PUE_REPORT_FONT_DIR")
        dirs = ((Path(env),) if env else ()) + FONT_DIRS
    for d in dirs:
        direct = d / FONT_FILE
        if direct.is_file():
            return direct
        if d.is_dir():
            found = sorted(d.rglob(FONT_FILE))
            if found:
                return found[0]
    raise UserError(
        f"PDF report: font {FONT_FAMILY} ({FONT_FILE}) not found under {', '.join(str(d) for d in dirs)}",
        hint=f"install the Debian package {FONT_PACKAGE} (apt-get install {FONT_PACKAGE})",
    )


# --- the view model: every string of the PDF, formatted --------------------------------------


def _table(
    header: list[str],
    rows: Iterable[list[str]],
    columns: str,
    widths: list[float | None] | None = None,
    size: float = 8.0,
) -> dict[str, Any]:
    return {
        "type": "table",
        "header": header,
        "rows": list(rows),
        "columns": list(columns),
        "widths": widths if widths is not None else [None] * len(columns),
        "size": size,
    }


def _kv(
    rows: list[list[str]],
    strong: Iterable[int] = (),
    size: float = 9.0,
    label_width: float = 0.38,
    keys: list[str] | None = None,
) -> dict[str, Any]:
    """Label / value rows; ``keys``: the JSON key of each row's figure (a third, small column)."""
    return {
        "type": "kv",
        "rows": rows,
        "strong": list(strong),
        "size": size,
        "label_width": label_width,
        "keys": keys or [],
    }


def _source(text: str) -> dict[str, Any]:
    """The JSON keys a table or chart shows (small, grey, above it): every figure is traceable."""
    return {"type": "source", "text": text}


def _text(text: str, size: float = 8.5) -> dict[str, Any]:
    return {"type": "text", "text": text, "size": size}


def _category(c: int | None, t: dict[str, str]) -> str:
    if c is None:
        return NONE_CELL
    return t.get(f"category_{c}", str(c))


def _alert_count(data: ReportData, lang: str) -> str:
    """ "3 (critical 1, warning 2)"; "not recorded" without an alert history."""
    t = STRINGS[lang]
    if data.alert_history is not None and not data.alert_history.recorded:
        return t["alerts_not_recorded"]
    if not data.alerts:
        return t["alerts_count_value"].format(n=0, parts=t["alerts_none"])
    by: dict[str, int] = {}
    for a in data.alerts:
        by[a.severity] = by.get(a.severity, 0) + 1
    order = ["critical", "warning", "info"]
    parts = [
        f"{SEVERITY_NAMES[lang].get(sev, sev)} {n}"
        for sev, n in sorted(by.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 9, kv[0]))
    ]
    return t["alerts_count_value"].format(n=len(data.alerts), parts=t["list_sep"].join(parts))


def alert_text(a: AlertLine, lang: str) -> str:
    """The alert in ``lang``'s words, from its name and labels (the JSON's ``summary`` is the
    engine's English text); an alertname without words: its summary."""
    template = ALERT_TEXT[lang].get(a.name)
    if template is None:
        return a.summary or a.name
    fields = {
        **a.labels,
        "severity": LIMIT_NAMES[lang].get(a.severity, a.severity),
        "window": WINDOW_NAMES[lang].get(a.labels.get("window", ""), a.labels.get("window", "")),
        "threshold": NONE_CELL if a.threshold is None else f_limit(a.threshold),
        "kind": FAULT_KINDS[lang].get(a.labels.get("kind", ""), a.labels.get("kind", "")),
    }
    try:
        return template.format_map(fields)
    except KeyError:  # a label the words need is missing
        return a.summary or a.name


def note_text(note: str, lang: str) -> str:
    """A note in ``lang``: a :class:`~pue_monitor.reports.model.Note` with words in
    ``NOTE_TEXT[lang]`` is said in them; anything else (English, or a note without words) as is."""
    template = NOTE_TEXT.get(lang, {}).get(note.key) if isinstance(note, Note) else None
    if template is None or not isinstance(note, Note):
        return str(note)
    t = STRINGS[lang]
    p: dict[str, Any] = dict(note.params)
    if "role" in p:
        p["role"] = ROLE_NAMES[lang].get(p["role"], p["role"])
    if "share" in p:
        p["share"] = f_share(p["share"], t)
    if "reasons" in p:
        p["reasons"] = t["list_sep"].join(
            f"{REASON_NAMES[lang].get(r, r)} {f_share(v, t)}" for r, v in sorted(p["reasons"].items())
        )
    if "meters" in p:
        p["meters"] = t["list_sep"].join(p["meters"]) + (t["and_more"].format(n=p["more"]) if p.get("more") else "")
    for key in ("keep", "ef"):
        if key in p:
            p[key] = f"{p[key]:g}"
    try:
        return template.format_map(p)
    except (KeyError, ValueError):  # a note whose params do not fit its words: the English text
        return str(note)


def _alert_value(a: AlertLine) -> str:
    """PUE to 4 decimals (the JSON's ``value`` of PueHigh); another alert's value as recorded."""
    if a.value is None:
        return NONE_CELL
    return f"{a.value:.4f}" if a.name == "PueHigh" else f"{a.value:g}"


def _alert_blocks(data: ReportData, lang: str, tz: ZoneInfo) -> list[dict[str, Any]]:
    t = STRINGS[lang]
    blocks: list[dict[str, Any]] = []
    hist = data.alert_history
    if hist is not None and not hist.recorded:
        return [_text(t["alerts_not_recorded_text"])]
    if hist is not None and hist.complete_from is not None and hist.complete_from > data.period.start:
        blocks.append(_text(t["alert_history_from"].format(at=f_time(hist.complete_from, tz))))
    if not data.alerts:
        return [*blocks, _text(t["no_alerts"])]

    def ended(a: AlertLine) -> str:
        if a.status == "state_lost":
            return t["alert_end_unknown"]
        return t["ongoing"] if a.ended is None else f_time(a.ended, tz)

    blocks += [
        _source(
            t["json"] + "alerts[]: name, severity, started, ended, period_from, period_to, duration_s, value, "
            "threshold, labels, silenced"
        ),
        _table(
            [
                t["alert_name"],
                t["severity"],
                t["started"],
                t["ended"],
                t["alert_in_period"],
                t["alert_value"],
                t["alert_summary"],
            ],
            (
                [
                    a.name,
                    SEVERITY_NAMES[lang].get(a.severity, a.severity),
                    f_time(a.started, tz),
                    ended(a),
                    f"{a.duration_s / 3600:,.1f}",
                    _alert_value(a),
                    alert_text(a, lang) + (t["alert_silenced"] if a.silenced else ""),
                ]
                for a in data.alerts
            ),
            "llllrrl",
            [1.25, 0.55, 1.05, 1.05, 0.7, 0.6, 2.6],
            size=7.0,
        ),
    ]
    return blocks


def _period(p: PeriodFigures, tz: ZoneInfo, t: dict[str, str]) -> str:
    return t["period_value"].format(label=p.label, start=f_time(p.start, tz), end=f_time(p.end, tz))


def view_model(data: ReportData, lang: str, font_family: str = FONT_FAMILY) -> dict[str, Any]:
    """Everything the template shows, as strings (charts as SVG text), in ``lang``."""
    if lang not in LANGS:
        raise UsageError(f"PDF report: unknown language {lang!r}", hint=f"use one of {', '.join(LANGS)}")
    t = STRINGS[lang]
    roles, reasons, limit_names = ROLE_NAMES[lang], REASON_NAMES[lang], LIMIT_NAMES[lang]
    tz = ZoneInfo(data.site.timezone)
    p, c, k = data.period, data.compliance, data.kpis
    month = data.kind == "month"

    def kwh_unit(v: float | None) -> str:
        return t["not_measured"] if v is None else f"{f_kwh(v, t)} kWh"

    head = [
        _kv(
            [
                [t["site"], data.site.name],
                [t["site_id"], data.site.id],
                [t["operator"], data.site.operator],
                [t["address"], data.site.address],
                [t["period"], _period(p, tz, t)],
                [t["timezone"], data.site.timezone],
                [t["category"], _category(p.category, t)],
                [t["pue_kind"], t["pue_kind_month" if month else "pue_kind_year"]],
            ],
            size=9.0,
            label_width=0.25,
        )
    ]

    summary: list[list[str]] = [
        [t["pue_month" if month else "pue_year"], f_pue(p.pue, t)],
    ]
    keys = ["pue"]
    strong = [0]
    if data.trailing_12m is not None:
        m12 = data.trailing_12m
        summary.append([t["pue_12m"] + f" ({m12.label})", f_pue(m12.pue, t)])
        keys.append("trailing_12m.pue")
        strong.append(1)
    summary += [[t["facility_kwh"], kwh_unit(p.facility_kwh)], [t["it_kwh"], kwh_unit(p.it_kwh)]]
    keys += ["facility_kwh", "it_kwh"]
    if data.trailing_12m is not None:
        m12 = data.trailing_12m
        summary += [[t["facility_kwh_12m"], kwh_unit(m12.facility_kwh)], [t["it_kwh_12m"], kwh_unit(m12.it_kwh)]]
        keys += ["trailing_12m.facility_kwh", "trailing_12m.it_kwh"]
    summary += [
        [t["category"], _category(p.category, t)],
        [
            t["completeness"],
            t["completeness_value"].format(
                measured=f_share(p.measured, t), estimated=f_share(p.estimated, t), missing=f_share(p.missing, t)
            ),
        ],
    ]
    keys += ["category", "completeness"]
    for name, limit in sorted(c.limits.items(), key=lambda kv: kv[1]):
        meets = c.meets.get(name)
        verdict = t["not_assessed"] if meets is None else t["meets"] if meets else t["exceeds"]
        summary.append([t["limit"].format(name=limit_names.get(name, name), value=f_limit(limit)), verdict])
        keys.append(f"compliance.meets.{name}")
        strong.append(len(summary) - 1)
    grade = t["grade_none"] if c.grade is None else t["grade_value"].format(grade=c.grade)
    summary.append([t["grade"], t["not_assessed"] if p.pue is None else grade])
    keys.append("compliance.grade")
    strong.append(len(summary) - 1)
    items = (t["grade_limit_item"].format(grade=g, value=f_limit(v)) for g, v in sorted(c.grade_limits.items()))
    summary.append([t["grade_limits"], t["list_sep"].join(items)])
    keys.append("compliance.grade_limits")
    summary.append([t["alerts_count"], _alert_count(data, lang)])
    keys.append("alerts")

    family = font_family
    sections: list[dict[str, Any]] = [
        {
            "heading": t["summary"],
            "blocks": [
                _source(t["json_keys_column"]),
                _kv(summary, strong=strong, keys=keys, label_width=0.36),
                _text(t["method"], size=8.0),
            ],
        },
        {
            "heading": t["charts"],
            "blocks": [
                _source(t["json"] + "daily[].pue, daily[].coverage, compliance.limits, compliance.grade_limits"),
                {"type": "image", "svg": charts.daily_pue_svg(data, lang, family).decode(), "width": 1.0},
                _source(t["json"] + "daily[].facility_kwh, daily[].it_kwh, period.it_kwh, period.subsystems_kwh"),
                {"type": "image", "svg": charts.energy_breakdown_svg(data, lang, family).decode(), "width": 1.0},
            ],
        },
        {
            "heading": t["daily"],
            "blocks": [
                _source(t["json"] + "daily[]: date, facility_kwh, it_kwh, pue, coverage"),
                _table(
                    [t["date"], f"{t['facility_kwh']} (kWh)", f"{t['it_kwh']} (kWh)", t["pue"], t["coverage"]],
                    (
                        [r.date, f_kwh(r.facility_kwh, t), f_kwh(r.it_kwh, t), f_pue(r.pue, t), f_share(r.coverage, t)]
                        for r in data.daily
                    ),
                    "lrrrr",
                    [1, 1.4, 1.4, 1, 1],
                ),
            ],
        },
    ]

    order = list(ROLE_NAMES["en"])  # the roles in the config's order: cooling, power, lighting, other
    subs = sorted(set(p.subsystems_kwh) | set(p.ppue), key=lambda r: (order.index(r) if r in order else len(order), r))
    sections.append(
        {
            "heading": t["subsystems"],
            "blocks": [
                _source(t["json"] + "period.subsystems_kwh, period.ppue"),
                _table(
                    [t["subsystem"], t["energy_kwh"], t["ppue"]],
                    ([roles.get(s, s), f_kwh(p.subsystems_kwh.get(s), t), f_pue(p.ppue.get(s), t)] for s in subs),
                    "lrr",
                    [2, 1.5, 1.5],
                )
                if subs
                else _text(t["no_subsystems"]),
            ],
        }
    )

    def reason_text(shares: dict[str, float]) -> str:
        return t["list_sep"].join(f"{reasons.get(r, r)} {f_share(v, t)}" for r, v in sorted(shares.items()) if v)

    sections.append(
        {
            "heading": t["meters"],
            "blocks": [
                _source(
                    t["json"] + "meters[]: device, point, role, measured, estimated, missing, estimated_reasons, "
                    "glitches, resets, rollovers, category"
                ),
                _table(
                    [
                        f"{t['device']} / {t['point']}",
                        t["role"],
                        t["measured"],
                        t["estimated"],
                        t["missing"],
                        t["reasons"],
                        t["glitches"],
                        t["resets"],
                        t["rollovers"],
                        t["meter_category"],
                    ],
                    (
                        [
                            f"{m.device} / {m.point}",
                            roles.get(m.role, m.role),
                            f_share(m.measured, t),
                            f_share(m.estimated, t),
                            f_share(m.missing, t),
                            reason_text(m.estimated_reasons) or NONE_CELL,
                            str(m.glitches),
                            str(m.resets),
                            str(m.rollovers),
                            NONE_CELL if m.category is None else str(m.category),
                        ]
                        for m in data.meters
                    ),
                    "llrrrlrrrr",
                    [1.9, 1.1, None, None, None, 2.6, None, None, None, None],
                    size=7.0,
                )
                if data.meters
                else _text(t["no_meters"]),
            ],
        }
    )

    def basis(key: str) -> str:
        """A KPI computed from a configured factor or contract says so (``kpis.basis``)."""
        b = k.basis.get(key, "")
        return t["basis_contract"] if b.startswith("contract") else t["basis_factor"] if b else ""

    fc_blocks: list[dict[str, Any]] = [{"type": "subheading", "text": t["free_cooling"]}]
    if data.free_cooling:
        fc_blocks.append(
            _source(
                t["json"] + "free_cooling[]: economiser, hours_full, hours_partial, hours_none, hours_unknown, "
                "hours_used, avoided_kwh"
            )
        )
        fc_blocks.append(
            _table(
                [
                    t["economiser"],
                    t["hours_full"],
                    t["hours_partial"],
                    t["hours_none"],
                    t["hours_unknown"],
                    t["hours_used"],
                    t["avoided_kwh"],
                ],
                (
                    [
                        f.economiser,
                        f_num(f.hours_full, t, ",.1f"),
                        f_num(f.hours_partial, t, ",.1f"),
                        f_num(f.hours_none, t, ",.1f"),
                        f_num(f.hours_unknown, t, ",.1f"),
                        f_num(f.hours_used, t, ",.1f"),
                        f_kwh(f.avoided_kwh, t),
                    ]
                    for f in data.free_cooling
                ),
                "lrrrrrr",
                [1.6, 1, 1, 1, 1, 1, 1.3],
                size=7.5,
            )
        )
    else:
        fc_blocks.append(_text(t["no_free_cooling"]))
    fc_blocks += [
        {"type": "subheading", "text": t["kpis"]},
        _kv(
            [
                [t["wue"], f_num(k.wue_l_per_kwh, t, ".3f")],
                [t["cue"], f_num(k.cue_kg_per_kwh, t, ".3f") + basis("cue_kg_per_kwh")],
                [t["erf"], f_num(k.erf, t, ".4f")],
                [t["ref"], f_num(k.ref, t, ".4f") + basis("ref")],
                [t["water_l"], f_num(k.water_l, t, ",.0f")],
                [t["reused_heat_kwh"], f_kwh(k.reused_heat_kwh, t)],
                [t["renewable_kwh"], f_kwh(k.renewable_kwh, t) + basis("renewable_kwh")],
            ],
            size=8.5,
            label_width=0.5,
            keys=[
                f"kpis.{x}"
                for x in (
                    "wue_l_per_kwh",
                    "cue_kg_per_kwh",
                    "erf",
                    "ref",
                    "water_l",
                    "reused_heat_kwh",
                    "renewable_kwh",
                )
            ],
        ),
    ]
    sections.append({"heading": t["kpis_fc"], "blocks": fc_blocks})

    sections.append({"heading": t["alerts"], "blocks": _alert_blocks(data, lang, tz)})
    sections.append(
        {
            "heading": t["notes"],
            "blocks": [
                _source(t["notes_source"]),
                {"type": "list", "items": [note_text(n, lang) for n in data.notes], "size": 8.0},
            ]
            if data.notes
            else [_text(t["no_notes"])],
        }
    )

    generated = t["generated"].format(
        generator=data.generator or "pue-monitor",
        at=f_time(data.generated_at, tz) + f" ({data.site.timezone})",
        schema=data.schema_version,
    )
    before, rest = t["page"].split("{page}")
    mid, after = rest.split("{total}")
    title = t["title_month" if month else "title_year"]
    return {
        "lang": lang,
        "region": "cn" if lang == "zh" else "gb",
        "font": family,
        "title": title,
        "subtitle": f"{data.site.name} · {p.label}",
        "generator": data.generator or "pue-monitor",
        "head": head,
        "sections": sections,
        "footer": generated,
        "page_before": before,
        "page_mid": mid,
        "page_after": after,
    }


def render_pdf(data: ReportData, path: Path, lang: str) -> None:
    """Write the report as a PDF in ``lang`` ("zh" or "en") to ``path``.

    Raises ``UsageError`` for an unknown language, ``UserError`` (one line, naming the package)
    when the CJK font or the typst compiler is missing or ``path`` cannot be written."""
    if lang not in LANGS:
        raise UsageError(f"PDF report: unknown language {lang!r}", hint=f"use one of {', '.join(LANGS)}")
    font = find_cjk_font()
    try:
        import typst
    except ImportError:
        raise UserError("PDF report: the typst compiler is not installed", hint="pip install 'typst>=0.13'") from None
    try:
        family = charts.use_font(font, FONT_FAMILY)
    except (OSError, RuntimeError, ValueError) as exc:  # FreeType: not a font, or a truncated file
        raise UserError(
            f"PDF report: {font}: not a readable font ({exc})", hint=f"reinstall the Debian package {FONT_PACKAGE}"
        ) from None
    doc = view_model(data, lang, family)
    stamp = int(data.generated_at) if data.generated_at > 0 and math.isfinite(data.generated_at) else None
    with resources.as_file(resources.files("pue_monitor.reports").joinpath("templates/report.typ")) as template:
        try:
            pdf, warnings = typst.compile_with_warnings(
                str(template),
                root=str(template.parent),
                sys_inputs={"data": json.dumps(doc, ensure_ascii=False)},
                font_paths=[str(font.parent)],
                ignore_system_fonts=True,
                timestamp=stamp,
                pdf_standards=["a-2b"],
            )
        except typst.TypstError as exc:  # a template bug, not a user error: keep typst's message
            raise RuntimeError(f"PDF report: typst failed: {exc}") from exc
    for w in warnings:
        if "font" in w.message:  # typst falls back silently to a font without CJK glyphs (tofu)
            raise UserError(
                f"PDF report: {w.message} ({font.parent})", hint=f"install the Debian package {FONT_PACKAGE}"
            )
    assert isinstance(pdf, bytes)
    try:
        path.write_bytes(pdf)
    except OSError as exc:
        raise UserError(f"PDF report: {path}: cannot write: {exc.strerror or exc}") from None
