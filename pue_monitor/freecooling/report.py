"""Free-cooling hours per month and for the year, from a weather file (the siting question)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pue_monitor.config.models import CoolingConfig
from pue_monitor.freecooling.availability import Mode, Weather, classify
from pue_monitor.freecooling.epw import EpwData, Location

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Hours:
    """Hours in each availability class; ``load`` = hours x carried fraction (unknown rows excluded)."""

    full: float
    partial: float
    none: float
    unknown: float
    load: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class EconomiserHours:
    id: str
    type: str
    months: dict[int, Hours]
    year: Hours


@dataclass(frozen=True)
class SitingReport:
    source: str
    location: Location
    altitude_m: float
    envelope: str
    rows: int
    hours_per_row: float
    economisers: list[EconomiserHours] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "location": dict(self.location.__dict__),
            "altitude_m": self.altitude_m,
            "envelope": self.envelope,
            "rows": self.rows,
            "hours_per_row": self.hours_per_row,
            "economisers": [
                {
                    "id": e.id,
                    "type": e.type,
                    "months": [{"month": m, **h.as_dict()} for m, h in sorted(e.months.items())],
                    "year": e.year.as_dict(),
                }
                for e in self.economisers
            ],
        }


def _hours(mode: np.ndarray, frac: np.ndarray, sel: np.ndarray, dt_h: float) -> Hours:
    m = mode[sel]
    counts = np.bincount(m.astype(np.int64) + 1, minlength=4)  # -1 unknown .. 2 full
    f = frac[sel]
    return Hours(
        full=float(counts[Mode.FULL + 1]) * dt_h,
        partial=float(counts[Mode.PARTIAL + 1]) * dt_h,
        none=float(counts[Mode.NONE + 1]) * dt_h,
        unknown=float(counts[Mode.UNKNOWN + 1]) * dt_h,
        load=float(np.nansum(f)) * dt_h,
    )


def siting_report(
    data: EpwData, cooling: CoolingConfig, source: str, *, altitude_from_file: bool = True
) -> SitingReport:
    """Hours of full / partial / none / unknown free cooling per economiser, month and year.

    The pressure is the file's station pressure where given, else the standard atmosphere at the
    altitude: the LOCATION line's elevation (``altitude_from_file``), or the config's."""
    if altitude_from_file and math.isfinite(data.location.elevation_m):
        cooling = cooling.model_copy(update={"altitude_m": data.location.elevation_m})
    avail = classify(Weather(data.dry_bulb_c, data.rh_pct, data.pressure_pa), cooling)
    dt_h = data.hours_per_row
    month_sel = {m: data.month == m for m in range(1, 13)}
    everything = np.ones(len(data), dtype=bool)
    out = []
    for e in cooling.economisers:
        mode, frac = avail.mode[e.id], avail.fraction[e.id]
        out.append(
            EconomiserHours(
                id=e.id,
                type=e.type,
                months={m: _hours(mode, frac, sel, dt_h) for m, sel in month_sel.items()},
                year=_hours(mode, frac, everything, dt_h),
            )
        )
    env = cooling.envelope if isinstance(cooling.envelope, str) else "custom"
    return SitingReport(source, data.location, cooling.altitude_m, env, len(data), dt_h, out)


CSV_HEADER = ("economiser", "type", "period", "full_h", "partial_h", "none_h", "unknown_h", "load_h")


def csv_rows(report: SitingReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [CSV_HEADER]
    for e in report.economisers:
        periods: list[tuple[str, Hours]] = [(str(m), h) for m, h in sorted(e.months.items())]
        periods.append(("year", e.year))
        for name, h in periods:
            rows.append(
                (e.id, e.type, name, *(f"{v:g}" for v in (h.full, h.partial, h.none, h.unknown, round(h.load, 1))))
            )
    return rows


def text_table(report: SitingReport) -> str:
    loc = report.location
    lines = [
        f"Free-cooling hours: {report.source} ({loc.city}, {loc.country}; {loc.latitude:.2f}, {loc.longitude:.2f}; "
        f"{report.altitude_m:g} m), {report.rows} rows of {report.hours_per_row:g} h; "
        f"IT inlet envelope: {report.envelope}",
    ]
    for e in report.economisers:
        lines.append("")
        lines.append(f"{e.id} ({e.type})")
        lines.append(f"{'month':>6} {'full':>7} {'partial':>7} {'none':>7} {'unknown':>7} {'load-h':>7}")
        for m, h in sorted(e.months.items()):
            lines.append(_row(MONTHS[m - 1], h))
        lines.append(_row("year", e.year))
    return "\n".join(lines)


def _row(name: str, h: Hours) -> str:
    return f"{name:>6} {h.full:>7g} {h.partial:>7g} {h.none:>7g} {h.unknown:>7g} {h.load:>7.0f}"
