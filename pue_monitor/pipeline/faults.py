"""Sensor faults: judgements about a *meter* over a stretch of time (a stuck counter, a reading
outside its physical range, a parent meter that disagrees with its sub-meters), as opposed to
:class:`~pue_monitor.pipeline.events.PipelineEvent`, a judgement about one reading.

A :class:`SensorFault` opens (``end`` is None) when a detector decides, and is handed out again
with ``end`` set when it clears; its identity is ``(device, point, kind, start)``. Outputs store
the suspect stretch (so a report can flag, not silently use, the energy of that meter in that
time) and the alert engine raises one alert per open fault.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["FaultKind", "SensorFault"]


class FaultKind(enum.StrEnum):
    STUCK = "stuck"  # value or counter flat-lined while the load it measures is not
    OUT_OF_RANGE = "out_of_range"  # outside the point's physical or configured range
    BACKWARDS = "backwards"  # a counter running backwards (not a reset, not a rollover)
    GLITCH = "glitch"  # implausible readings dropped by the pipeline (spike, lone zero)
    RESET = "reset"  # counter reset or meter replacement
    BALANCE = "balance"  # parent meter vs the sum of its sub-meters outside the loss band


@dataclass(frozen=True, slots=True)
class SensorFault:
    """One suspect stretch of one meter point (POSIX s). ``point`` is "" for a whole-meter fault
    (energy balance). ``detail``: one line for humans, naming the figures that decided it."""

    device: str
    point: str
    kind: FaultKind
    start: float
    end: float | None  # None while the fault is active
    detail: str = ""
    value: float | None = None  # the figure judged (e.g. the balance error in %), when there is one

    @property
    def active(self) -> bool:
        return self.end is None

    @property
    def key(self) -> tuple[str, str, str, float]:
        return (self.device, self.point, str(self.kind), self.start)
