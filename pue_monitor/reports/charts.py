"""The report's charts, drawn with matplotlib from ``ReportData`` only (nothing computed here):
the daily PUE with the site's limits and the GB 40879-2021 grade limits drawn, and the energy
breakdown (daily facility and IT energy; the period's IT and metered subsystems against the
facility total). SVG, text as outlines, so the PDF embeds vector charts needing no font of
their own; the font is the report's CJK font (the matplotlib ``Figure`` API: no pyplot state,
no display)."""

from __future__ import annotations

import datetime as dt
import io
import math
from pathlib import Path
from typing import Any

from matplotlib import font_manager, rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from matplotlib.typing import RcKeyType

from pue_monitor.reports.model import ReportData
from pue_monitor.reports.strings import LIMIT_NAMES, ROLE_NAMES, STRINGS

__all__ = ["daily_pue_svg", "energy_breakdown_svg", "use_font"]

_registered: dict[Path, str] = {}

_LIMIT_COLOURS = ("#d95f02", "#b2182b", "#7570b3", "#1b9e77")
_ROLE_COLOURS = {
    "it": "#2b83ba",
    "cooling": "#66c2a5",
    "power_distribution": "#fdae61",
    "lighting": "#fee08b",
    "other": "#bababa",
}
_FACILITY_COLOUR = "#5e5e5e"


def use_font(path: Path, family: str) -> str:
    """Make the font file ``path`` (a TrueType/OpenType file or collection) known to matplotlib
    and return the family name to draw with."""
    if path not in _registered:
        font_manager.fontManager.addfont(str(path))
        _registered[path] = family
    return family


def _rc(family: str) -> dict[RcKeyType, Any]:
    return {
        "font.family": [family],
        "font.size": 8.0,
        "svg.fonttype": "path",
        "svg.hashsalt": "pue-monitor-report",  # same ids every run: reproducible PDFs
        "axes.unicode_minus": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buf.getvalue()


def _dates(data: ReportData) -> list[float]:
    """The x position of each day: its index (day i is drawn at i)."""
    return [float(i) for i in range(len(data.daily))]


def _nothing(ax: Axes, text: str, values: str) -> None:
    """An axes with no data: the words in the middle and no ticks on the ``values`` axis (an empty
    axis would show ticks around 0, which reads as a measured 0)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center")
    if values == "y":
        ax.set_yticks([])
    else:
        ax.set_xticks([])


def _marker(data: ReportData) -> str:
    return "o" if len(data.daily) <= 62 else ""  # a year of points is a line


def _date_axis(ax: Axes, data: ReportData) -> None:
    """Ticks at the 1st, 5th, 10th... of a month (MM-DD), or at the 1st of each month of a year (MM)."""
    days = [dt.date.fromisoformat(r.date) for r in data.daily]
    if data.kind == "year":
        ticks = [(i, d.strftime("%m")) for i, d in enumerate(days) if d.day == 1]
    else:
        ticks = [(i, d.strftime("%m-%d")) for i, d in enumerate(days) if d.day in (1, 5, 10, 15, 20, 25)]
    ax.set_xticks([float(i) for i, _ in ticks], [label for _, label in ticks])


def daily_pue_svg(data: ReportData, lang: str, family: str) -> bytes:
    """Daily PUE (points joined; a day without PUE is a gap) with each configured limit and each
    GB 40879-2021 grade limit as a horizontal line, labelled with its value as configured."""
    t = STRINGS[lang]
    days = _dates(data)
    pues = [math.nan if r.pue is None else r.pue for r in data.daily]
    with rc_context(_rc(family)):
        fig = Figure(figsize=(7.2, 3.0))
        ax = fig.add_subplot()
        shown = [p for p in pues if not math.isnan(p)]
        if shown:
            ax.plot(days, pues, marker=_marker(data), markersize=2.5, linewidth=1.2, color="#2b83ba", label=t["pue"])
            part = [
                (x, v) for x, v, r in zip(days, pues, data.daily, strict=True) if r.coverage < 1.0 and r.pue is not None
            ]
            if part:  # days whose PUE covers only part of the day: open markers, said in the legend
                ax.plot(
                    [x for x, _ in part],
                    [v for _, v in part],
                    linestyle="none",
                    marker="o",
                    markersize=5,
                    markerfacecolor="white",
                    markeredgecolor="#e66101",
                    label=t["chart_partial"],
                    zorder=4,
                )
        else:
            ax.text(0.5, 0.5, t["chart_no_pue"], transform=ax.transAxes, ha="center", va="center")
        levels = list(shown)
        c = data.compliance
        for i, (name, value) in enumerate(sorted(c.limits.items(), key=lambda kv: kv[1])):
            label = t["chart_limit"].format(name=LIMIT_NAMES[lang].get(name, name), value=f"{value:g}")
            colour = _LIMIT_COLOURS[i % len(_LIMIT_COLOURS)]
            ax.axhline(value, color=colour, linewidth=1.2, label=label, zorder=3)  # over a grade line
            levels.append(value)
        for grade, value in sorted(c.grade_limits.items()):
            ax.axhline(value, color="#999999", linewidth=0.8, linestyle="--", zorder=2)
            ax.annotate(
                t["chart_grade"].format(grade=grade, value=f"{value:g}"),
                xy=(1.0, value),
                xycoords=("axes fraction", "data"),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=6.5,
                color="#666666",
            )
            levels.append(value)
        if levels:
            lo, hi = min(levels), max(levels)
            pad = max(0.02, (hi - lo) * 0.08)
            ax.set_ylim(lo - pad, hi + pad)
        if days:
            ax.set_xlim(days[0] - 0.5, days[-1] + 0.5)
            _date_axis(ax, data)
        ax.set_ylabel(t["chart_daily_y"])
        ax.set_title(t["chart_daily_title"], fontsize=9)
        ax.grid(axis="y", linewidth=0.3, color="#dddddd")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=4, frameon=False)
        return _svg(fig)


def energy_breakdown_svg(data: ReportData, lang: str, family: str) -> bytes:
    """Top: daily facility and IT energy. Bottom: the period's IT energy and each fully metered
    subsystem stacked, against the facility total (the gap between the two bars is what no
    subsystem meter saw; it is drawn, not computed)."""
    t = STRINGS[lang]
    roles = ROLE_NAMES[lang]
    p = data.period
    days = _dates(data)
    kwh_axis = FuncFormatter(lambda v, _pos: f"{v:,.0f}")
    with rc_context(_rc(family)):
        fig = Figure(figsize=(7.2, 4.4))
        top, bottom = fig.subplots(2, 1, height_ratios=[2.2, 1.0])
        fac = [math.nan if r.facility_kwh is None else r.facility_kwh for r in data.daily]
        it = [math.nan if r.it_kwh is None else r.it_kwh for r in data.daily]
        if days:
            top.bar(days, it, width=0.7, color=_ROLE_COLOURS["it"], label=t["chart_it"])
            mark = _marker(data)
            top.plot(
                days, fac, color=_FACILITY_COLOUR, linewidth=1.2, marker=mark, markersize=2.5, label=t["chart_facility"]
            )
            top.set_xlim(days[0] - 0.6, days[-1] + 0.6)
            _date_axis(top, data)
        top.yaxis.set_major_formatter(kwh_axis)
        if all(math.isnan(v) for v in fac + it):
            _nothing(top, t["not_measured"], "y")
        top.set_ylabel(t["chart_energy_kwh"])
        top.set_title(t["chart_energy_daily"], fontsize=9)
        top.grid(axis="y", linewidth=0.3, color="#dddddd")
        top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)

        rows = [t["chart_facility"], t["chart_breakdown"]]
        if p.facility_kwh is not None:
            bottom.barh(0, p.facility_kwh, color=_FACILITY_COLOUR, height=0.6)
        order = list(_ROLE_COLOURS)
        parts: list[tuple[str, float]] = [("it", p.it_kwh)] if p.it_kwh is not None else []
        parts += sorted(p.subsystems_kwh.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
        left = 0.0
        for role, kwh in parts:
            colour = _ROLE_COLOURS.get(role, "#8da0cb")
            bottom.barh(1, kwh, left=left, height=0.6, color=colour, label=roles.get(role, role))
            left += kwh  # where the next segment starts: drawing only, no figure of the report
        bottom.set_yticks([0, 1], rows)
        bottom.set_ylim(1.6, -0.6)
        bottom.xaxis.set_major_formatter(kwh_axis)
        if not parts and p.facility_kwh is None:
            _nothing(bottom, t["not_measured"], "x")
        bottom.set_xlabel(t["chart_energy_kwh"])
        bottom.set_title(f"{t['chart_energy_title']} ({p.label})", fontsize=9)
        bottom.grid(axis="x", linewidth=0.3, color="#dddddd")
        if parts:
            bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.subplots_adjust(hspace=0.6)
        return _svg(fig)
