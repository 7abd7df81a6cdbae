"""Training data from the embedded store: :class:`~.data.Intervals` over a window.

Reads, through any object with the read methods of :class:`pue_monitor.sinks.sqlite.StoreReader`
(:class:`StoreLike`; this lower layer does not import the sinks), the stored PUE intervals of one
resolution (``e_facility_kwh``, ``e_it_kwh``; rows where either is missing are dropped) and the
outdoor weather readings the site's ``cooling.points`` name (dry-bulb °C, RH %, optionally
pressure hPa), averaged over each interval from good-quality readings (NaN where none).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any, Protocol

import numpy as np

from pue_monitor.config.models import CoolingPoints, PointRef
from pue_monitor.models.data import Array, Intervals

GOOD = 0  # pue_monitor.readings.Quality.GOOD


class StoreLike(Protocol):
    def intervals(
        self, resolution: str = "1m", *, start: float | None = None, end: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]: ...

    def readings(
        self, device: str, point: str, *, start: float | None = None, end: float | None = None
    ) -> list[tuple[float, float, int]]: ...


def utc_offset_s(timezone: str, at: float) -> float:
    """The site's UTC offset (s) at ``at`` (the time-of-day features use one offset per model)."""
    off = dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(timezone)).utcoffset()
    return 0.0 if off is None else off.total_seconds()


def interval_means(start: Array, end: Array, ts: Array, values: Array) -> Array:
    """Mean of the ``values`` stamped in ``[start_i, end_i)`` per interval (NaN where none).

    Intervals must be sorted and must not overlap."""
    out = np.full(start.size, np.nan)
    if ts.size == 0 or start.size == 0:
        return out
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    i = np.searchsorted(start, ts, side="right") - 1
    inside = (i >= 0) & (ts < end[np.clip(i, 0, None)])
    idx = i[inside]
    n = np.bincount(idx, minlength=start.size)
    s = np.bincount(idx, weights=values[inside], minlength=start.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    result: Array = np.asarray(out, dtype=np.float64)
    return result


def _point(reader: StoreLike, ref: PointRef | None, start: float, end: float, iv_start: Array, iv_end: Array) -> Array:
    if ref is None:
        return np.full(iv_start.size, np.nan)
    rows = [r for r in reader.readings(ref.device, ref.point, start=start, end=end) if r[2] == GOOD]
    ts = np.array([r[0] for r in rows], dtype=np.float64)
    v = np.array([r[1] for r in rows], dtype=np.float64)
    return interval_means(iv_start, iv_end, ts, v)


def from_store(
    reader: StoreLike, points: CoolingPoints, *, start: float, end: float, resolution: str = "15m"
) -> Intervals:
    """Intervals of ``resolution`` inside ``[start, end]`` with their outdoor weather."""
    rows = [
        r
        for r in reader.intervals(resolution, start=start, end=end)
        if r.get("e_facility_kwh") is not None and r.get("e_it_kwh") is not None
    ]
    s = np.array([r["start"] for r in rows], dtype=np.float64)
    e = np.array([r["end"] for r in rows], dtype=np.float64)
    pressure = None
    if points.pressure is not None:
        pressure = _point(reader, points.pressure, start, end, s, e) * 100.0
    return Intervals(
        start=s,
        end=e,
        it_kwh=np.array([r["e_it_kwh"] for r in rows], dtype=np.float64),
        facility_kwh=np.array([r["e_facility_kwh"] for r in rows], dtype=np.float64),
        dry_bulb_c=_point(reader, points.outdoor_temperature, start, end, s, e),
        rh_pct=_point(reader, points.relative_humidity, start, end, s, e),
        pressure_pa=pressure,
    )
