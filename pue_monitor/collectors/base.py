"""The small protocol every collector implements; the runner owns everything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pue_monitor.readings import Quality


@dataclass(frozen=True, slots=True)
class PointValue:
    point: str
    value: float
    unit: str
    quality: Quality = Quality.GOOD
    #: clock time the request carrying this value was sent; None = the poll's start.
    #: On a shared bus a poll may wait for its turn: stamping the wait's start would
    #: misplace counter readings in time and so misattribute energy between intervals.
    ts: float | None = None


class DeviceReader(Protocol):
    """Reads all planned points of one device once.

    Raises a :class:`pue_monitor.errors.DeviceError` subclass on failure; never
    retries or sleeps itself (the runner does that).
    """

    device_id: str

    async def read(self) -> list[PointValue]: ...

    async def close(self) -> None: ...
