"""What a report says: one typed document, built once from the store (``reports/compute.py``)
and rendered to JSON, CSV and PDF (``reports/render_*.py``) without computing anything again, so
every figure in the PDF is the same number as in the JSON.

All energies are kWh, all times POSIX seconds plus the site's IANA time zone; a figure that was not
measured is ``None`` and rendered "not measured" / "未计量", never 0. ``ReportData.to_json()`` is
the documented JSON schema (``schema_version``; keys listed in the README's "Reports" section):
the PDF and CSV render from it, and tests compare the PDF's text layer against it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "SCHEMA_VERSION",
    "AlertHistoryInfo",
    "AlertLine",
    "Compliance",
    "DailyRow",
    "FreeCoolingSummary",
    "Kpis",
    "MeterCompleteness",
    "Note",
    "PeriodFigures",
    "ReportData",
    "SiteBlock",
]

SCHEMA_VERSION = 1

Kind = Literal["month", "year"]


class Note(str):
    """A note of the report: its English text (what the JSON's ``notes`` hold), plus ``key`` and
    ``params`` so the PDF can say it in the report's language (``strings.NOTE_TEXT``)."""

    key: str
    params: dict[str, Any]

    def __new__(cls, key: str, text: str, **params: Any) -> Note:
        self = super().__new__(cls, text)
        self.key = key
        self.params = params
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy (dataclasses.asdict), pickle
        return (_note, (self.key, str(self), self.params))


def _note(key: str, text: str, params: dict[str, Any]) -> Note:
    return Note(key, text, **params)


@dataclass(frozen=True)
class SiteBlock:
    id: str
    name: str
    operator: str
    address: str
    timezone: str


@dataclass(frozen=True)
class PeriodFigures:
    """Energy-based PUE (ISO/IEC 30134-2) over one period [start, end)."""

    label: str  # "2026-10" or "2025-11..2026-10" (trailing 12 months) or "2026"
    start: float
    end: float
    facility_kwh: float | None
    it_kwh: float | None
    subsystems_kwh: dict[str, float]  # role -> kWh, only fully metered subsystems
    pue: float | None  # facility_kwh / it_kwh
    ppue: dict[str, float]  # role -> (it + x) / it
    category: int  # ISO/IEC 30134-2 category the weakest IT meter supports (0: none)
    measured: float  # shares of meter-minutes, sum to 1
    estimated: float
    missing: float


@dataclass(frozen=True)
class MeterCompleteness:
    device: str
    point: str
    role: str
    measured: float  # share of the period's minutes
    estimated: float
    missing: float
    estimated_reasons: dict[str, float]  # reason -> share (power_integrated, gap_split, reset, glitch_bridged)
    glitches: int
    resets: int
    rollovers: int
    category: int | None  # the category this meter supports (IT meters), else None


@dataclass(frozen=True)
class DailyRow:
    date: str  # local date YYYY-MM-DD
    facility_kwh: float | None
    it_kwh: float | None
    pue: float | None
    coverage: float  # share of the day's minutes with a PUE


@dataclass(frozen=True)
class Compliance:
    limits: dict[str, float]  # name -> PUE limit, e.g. {"warning": 1.4, "critical": 1.5}
    meets: dict[str, bool | None]  # name -> period PUE <= limit (None: no PUE)
    grade: int | None  # GB 40879-2021 grade the PUE falls in (1 best), None above the last
    grade_limits: dict[int, float]  # grade -> upper PUE limit (from config; standard under revision)


@dataclass(frozen=True)
class FreeCoolingSummary:
    economiser: str
    hours_full: float
    hours_partial: float
    hours_none: float
    hours_unknown: float
    hours_used: float | None
    avoided_kwh: float | None  # chiller energy that free cooling could have avoided but did not


@dataclass(frozen=True)
class Kpis:
    """ISO/IEC 30134 KPIs over the period; None: not measured."""

    wue_l_per_kwh: float | None = None
    cue_kg_per_kwh: float | None = None
    erf: float | None = None
    ref: float | None = None
    water_l: float | None = None
    reused_heat_kwh: float | None = None
    renewable_kwh: float | None = None
    #: the basis of a figure that is not a meter's: key -> "contract: SOURCE" (renewable energy
    #: from kpis.renewable_contract) or "emission factor: ..." (CUE's CO2); a key absent: metered
    basis: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertLine:
    """One alert active at some time in the period, from the alert history (alerts/history.py).
    ``started`` / ``ended``: the alert's own times (may lie outside the period; ``ended`` None:
    still firing, or its end is not known: ``status``); ``period_from`` / ``period_to``: clipped
    to the period (a firing alert: to the report's time if that is earlier), ``duration_s`` their
    difference."""

    name: str
    severity: str
    started: float
    ended: float | None
    summary: str
    status: str = "resolved"  # resolved, firing, state_lost
    labels: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    period_from: float = 0.0
    period_to: float = 0.0
    duration_s: float = 0.0
    value: float | None = None  # the value that fired it (PueHigh: the latest closed PUE then)
    threshold: float | None = None
    silenced: bool = False  # a silence matched it when it fired: not sent


@dataclass(frozen=True)
class AlertHistoryInfo:
    """Where the alerts came from: ``recorded`` False when there is no alert history (the alert
    engine never ran for the site); ``complete_from``: the history is complete from then on."""

    path: str
    recorded: bool
    complete_from: float | None


@dataclass(frozen=True)
class ReportData:
    kind: Kind
    site: SiteBlock
    period: PeriodFigures  # the month (interim PUE) or the year
    trailing_12m: PeriodFigures | None  # monthly reports: the 12 months ending with this one
    daily: list[DailyRow]
    meters: list[MeterCompleteness]
    compliance: Compliance
    kpis: Kpis
    free_cooling: list[FreeCoolingSummary] = field(default_factory=list)
    alerts: list[AlertLine] = field(default_factory=list)
    alert_history: AlertHistoryInfo | None = None  # None: not looked up
    notes: list[str] = field(default_factory=list)  # every estimate, with its reason, in words
    generated_at: float = 0.0
    generator: str = ""  # "pue-monitor X.Y.Z"
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The documented JSON document (plain dicts, lists, numbers, strings, None). The
        headline figures of ``period`` are repeated at the top (``pue``, ``facility_kwh``,
        ``it_kwh``, ``category``, ``completeness``) for readers that want only those."""
        doc = dataclasses.asdict(self)
        p = self.period
        head: dict[str, Any] = {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "pue": p.pue,
            "facility_kwh": p.facility_kwh,
            "it_kwh": p.it_kwh,
            "category": p.category,
            "completeness": {"measured": p.measured, "estimated": p.estimated, "missing": p.missing},
        }
        return {**head, **{k: v for k, v in doc.items() if k not in head}}
