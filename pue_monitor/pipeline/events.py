"""What the pipeline tells its outputs besides energy: why a cell is estimated, and which
readings it judged implausible.

``Reason`` is a bit mask per (series, interval) cell next to its :class:`Status`: a cell may be
ESTIMATED for several reasons at once. ``PipelineEvent`` is one judgement about one reading
(dropped as a glitch, booked as a reset, ...): outputs log, count and store them so that a
number in a report can be traced back to the readings that made it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["EventKind", "PipelineEvent", "Reason"]


class Reason(enum.IntFlag):
    """Why an ESTIMATED cell is estimated (bits; 0 = measured or missing)."""

    NONE = 0
    #: energy from integrating a power series (no counter)
    POWER_INTEGRATED = 1
    #: the cell lies in a gap between readings longer than the series' max_gap: the total is
    #: exact (counter delta) but its split over the intervals is linear
    GAP_SPLIT = 2
    #: a counter reset or meter replacement: energy between the last reading before and the
    #: reset is unknowable
    RESET = 4
    #: a reading judged implausible was dropped and the energy across it bridged by its neighbours
    GLITCH_BRIDGED = 8


class EventKind(enum.StrEnum):
    GLITCH = "glitch"  # implausible reading dropped (spike, lone zero/low value, denormal)
    RESET = "reset"  # counter reset or meter replacement (continues from the new level)
    ROLLOVER = "rollover"  # counter wrapped at its declared rollover
    CONFLICT = "conflict"  # two readings with the same timestamp and different values
    LATE = "late"  # older than the series' last reading: rejected, not re-sorted into history
    OUT_OF_WINDOW = "out_of_window"  # timestamp too far ahead of or behind the collector's clock
    BAD_VALUE = "bad_value"  # physically impossible (negative consumer power, NaN, not-available code)


@dataclass(frozen=True, slots=True)
class PipelineEvent:
    """One judgement about one reading of one series."""

    ts: float  # the reading's timestamp (POSIX s)
    device: str
    point: str
    kind: EventKind
    value: float | None  # the raw value judged (None when there was none)
    detail: str = ""  # one line for humans, e.g. "+1.0e9 kWh in 60 s = 6e10 kW > max 500 kW"
