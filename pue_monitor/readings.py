"""The one record every collector produces."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Quality(enum.IntEnum):
    """Quality of a single reading (OPC-UA-like, coarse)."""

    GOOD = 0
    #: decoded, but not trustworthy (NaN/inf from the device, value outside the declared range)
    BAD = 2


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one point of one device at one time.

    ``ts`` is POSIX seconds (UTC) of the moment the request was sent.
    """

    ts: float
    site: str
    device: str
    point: str
    value: float
    unit: str
    quality: Quality = Quality.GOOD
    #: low-cardinality identifiers beyond device/point, e.g. (("outlet", "12"),) for a table row
    tags: tuple[tuple[str, str], ...] = ()
