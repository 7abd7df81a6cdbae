"""The small protocol every collector implements; the runner owns everything else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pue_monitor.readings import Quality, Reading

if TYPE_CHECKING:
    from pue_monitor.collectors.runner import DeviceStats

Emit = Callable[[list[Reading]], None]


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
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RawValue:
    """What the wire carried for one point (commissioning: `pue read`).

    Filled by a reader whose ``capture`` is a dict (None, the default, captures nothing):
    ``where`` is the Modbus register range (``holding 3059+2``) or the OID, ``raw`` the
    registers as hex words or the SNMP type and value, ``note`` why no value came of it
    ("not available" code, absent object, a per-request error) or "" when it decoded.
    """

    where: str
    raw: str
    note: str = ""


#: a reader's raw capture: point -> what the wire carried (see :class:`RawValue`)
Capture = dict[str, RawValue]


class PushSource(Protocol):
    """A push protocol connection (MQTT) feeding readings of several devices.

    ``run`` owns its connection and reconnects by itself until ``stopping`` is set;
    it updates ``stats`` (one entry per device id in ``device_ids``; the runner creates
    them) and never raises for device or payload errors.
    """

    name: str
    device_ids: list[str]

    async def run(self, emit: Emit, stats: dict[str, DeviceStats], stopping: asyncio.Event) -> None: ...


class DeviceReader(Protocol):
    """Reads all planned points of one device once.

    Raises a :class:`pue_monitor.errors.DeviceError` subclass on failure; never
    retries or sleeps itself (the runner does that). The Modbus and SNMP readers also
    have a ``capture`` attribute: None (the service), or a :data:`Capture` dict they fill
    with each point's :class:`RawValue` while reading (`pue read`); the runner never uses it.
    """

    device_id: str

    async def read(self) -> list[PointValue]: ...

    async def close(self) -> None: ...
