"""Energy per interval from meter readings — batch and vectorised (numpy).

ISO/IEC 30134-2 defines PUE as a ratio of *energies* (kWh) over the same period, so the
pipeline first turns every meter's readings into energy on a common time grid:

* **counter** series (cumulative energy registers) are differenced; a decrease is either a
  rollover (the register wrapped at ``rollover``) or a reset/replacement of the meter;
* **power** series (no counter) are integrated with the trapezoidal rule and are always
  flagged ESTIMATED (ISO/IEC 30134-2 wants energy metered, a power integral is an estimate).

Each series becomes a monotonic cumulative energy ``C(t)`` known at its reading times; energy
of a grid interval is ``C`` linearly interpolated at the interval's boundaries, differenced.
A gap between two readings is therefore bridged exactly by the counter delta (the total over
the gap is exact) and spread linearly over the intervals it spans (those are ESTIMATED, since
the split is linear). Every interval of every series gets a :class:`Status` so the data
completeness that ISO/IEC 30134-2 asks to report alongside a PUE can be computed.

Everything is done for all series at once: one sort, one ``np.interp`` and two
``np.searchsorted`` over the whole batch; there is no Python loop over readings or intervals.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pue_monitor.config.models import ITLocation, Role

__all__ = ["IntervalEnergy", "SeriesSpec", "Status", "interval_energy"]


class Status(enum.IntEnum):
    """Data quality of one (series, interval) cell; higher is worse."""

    MEASURED = 0
    #: energy is known in total but its split over intervals is linear (gap > max_gap,
    #: counter reset) or it comes from integrating power
    ESTIMATED = 1
    #: the interval is not fully inside the series' first..last reading: energy unknown (0)
    MISSING = 2


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One energy source of one meter.

    ``factor`` converts the raw reading value to kWh (counter) or kW (power), e.g.
    ``UNITS[unit][1]`` from :mod:`pue_monitor.config.models`. ``rollover`` is in raw units (the
    reading's unit, before ``factor``). Reading spacing above ``max_gap`` seconds is a gap: it
    is bridged, but the intervals it touches are ESTIMATED.
    """

    meter: str
    role: Role
    it_location: ITLocation | None
    kind: Literal["counter", "power"]
    factor: float
    rollover: float | None
    max_gap: float

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise TypeError(f"{self.meter}: role must be a Role, not {self.role!r}")
        if (self.role is Role.IT) != (self.it_location is not None):
            raise ValueError(f"{self.meter}: it_location is required for role 'it' and only for it")
        if self.kind not in ("counter", "power"):
            raise ValueError(f"{self.meter}: kind must be 'counter' or 'power', not {self.kind!r}")
        if not (math.isfinite(self.factor) and self.factor > 0):
            raise ValueError(f"{self.meter}: factor must be finite and > 0, not {self.factor!r}")
        if self.rollover is not None:
            if self.kind != "counter":
                raise ValueError(f"{self.meter}: rollover applies to counters only")
            if not (math.isfinite(self.rollover) and self.rollover > 0):
                raise ValueError(f"{self.meter}: rollover must be finite and > 0")
        if not (self.max_gap > 0):
            raise ValueError(f"{self.meter}: max_gap must be > 0 seconds")


@dataclass
class IntervalEnergy:
    """Energy on a regular grid: interval ``k`` is ``[start + k*step, start + (k+1)*step)``."""

    start: float
    step: float
    energy: np.ndarray  # float64 [n_series, n_intervals], kWh; 0 where MISSING
    status: np.ndarray  # int8    [n_series, n_intervals], Status

    @property
    def n(self) -> int:
        return int(self.energy.shape[1])

    def starts(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.n, dtype=np.float64)


def _spec_arrays(specs: Sequence[SeriesSpec]) -> tuple[np.ndarray, ...]:
    is_counter = np.fromiter((s.kind == "counter" for s in specs), bool, len(specs))
    factor = np.fromiter((s.factor for s in specs), np.float64, len(specs))
    roll = np.fromiter((np.nan if s.rollover is None else s.rollover for s in specs), np.float64, len(specs))
    max_gap = np.fromiter((s.max_gap for s in specs), np.float64, len(specs))
    return is_counter, factor, roll, max_gap


def interval_energy(
    specs: Sequence[SeriesSpec],
    sid: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    *,
    start: float,
    step: float,
    n: int,
    good: np.ndarray | None = None,
) -> IntervalEnergy:
    """Energy (kWh) and :class:`Status` of every series on the grid ``start + k*step``, ``k < n``.

    ``sid[i]`` indexes ``specs``; ``ts`` are POSIX seconds, ``value`` raw values, ``good`` an
    optional mask of GOOD-quality rows. Input need not be sorted. Non-finite values, bad rows
    and ``sid`` outside ``specs`` are dropped; duplicate (sid, ts) rows keep the largest value
    (deterministic whatever the input order).

    Counter deltas (per ISO/IEC 30134-2 energy is the difference of cumulative meter readings):
    ``delta >= 0`` is used as is; a decrease on a series with ``rollover`` whose wrapped delta
    ``rollover - prev + cur`` is below ``rollover / 2`` is a rollover; any other decrease is a
    reset or meter replacement: ``delta = cur`` (the counter restarted from 0 right after the
    previous reading; energy between that reading and the reset is unknowable) and the
    intervals the pair touches are ESTIMATED. Power is integrated with the trapezoidal rule
    (kWh = kW * s / 3600), ESTIMATED.
    """
    specs = tuple(specs)
    n_series = len(specs)
    n = int(n)
    step = float(step)
    start = float(start)
    if n < 0:
        raise ValueError("n must be >= 0")
    if not (step > 0 and math.isfinite(step)) or not math.isfinite(start):
        raise ValueError("start must be finite and step > 0")
    energy = np.zeros((n_series, n), dtype=np.float64)
    status = np.full((n_series, n), Status.MISSING, dtype=np.int8)
    out = IntervalEnergy(start=start, step=step, energy=energy, status=status)

    sid = np.asarray(sid)
    ts = np.asarray(ts, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    if not (sid.shape == ts.shape == value.shape) or sid.ndim != 1:
        raise ValueError("sid, ts and value must be 1-D arrays of the same length")
    keep = np.isfinite(ts) & np.isfinite(value) & (sid >= 0) & (sid < n_series)
    if good is not None:
        good = np.asarray(good, dtype=bool)
        if good.shape != ts.shape:
            raise ValueError("good must have the same length as ts")
        keep &= good
    if n == 0 or n_series == 0 or not keep.any():
        return out
    if not keep.all():
        sid, ts, value = sid[keep], ts[keep], value[keep]
    sid = sid.astype(np.int64, copy=False)

    # ---- sort by (sid, ts) — stable, so the result does not depend on input order
    srt = np.diff(sid) if sid.size > 1 else np.zeros(0, np.int64)
    already = sid.size < 2 or bool(np.all((srt > 0) | ((srt == 0) & (np.diff(ts) > 0))))
    if not already:
        # stable sort by ts, then stable (radix for small ints) by sid == lexsort((ts, sid))
        o1 = np.argsort(ts, kind="stable")
        key = sid[o1].astype(np.int16 if n_series <= np.iinfo(np.int16).max else np.int64)
        order = o1[np.argsort(key, kind="stable")]
        sid, ts, value = sid[order], ts[order], value[order]
        dup = (sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1])
        if dup.any():  # equal (sid, ts): keep the largest value, whatever the input order
            head = np.ones(sid.size, dtype=bool)
            head[1:] = ~dup
            idx = np.flatnonzero(head)
            value = np.maximum.reduceat(value, idx)
            sid, ts = sid[idx], ts[idx]
    n_rows = sid.size

    is_counter, factor, roll, max_gap = _spec_arrays(specs)

    # ---- per-row series bookkeeping
    new_series = np.empty(n_rows, dtype=bool)
    new_series[0] = True
    np.not_equal(sid[1:], sid[:-1], out=new_series[1:])
    first_idx = np.flatnonzero(new_series)
    last_idx = np.empty_like(first_idx)
    last_idx[:-1] = first_idx[1:] - 1
    last_idx[-1] = n_rows - 1
    present = sid[first_idx]  # series that have readings, ascending

    # ---- increments of each reading pair (pair p ends at row p+1)
    sp = sid[1:]
    same = ~new_series[1:]
    prev_v, cur_v = value[:-1], value[1:]
    dt = np.diff(ts)
    counter_p = is_counter[sp]
    d = cur_v - prev_v
    decrease = counter_p & (d < 0)
    r = roll[sp]
    wrapped = r - prev_v + cur_v
    with np.errstate(invalid="ignore"):
        is_roll = decrease & (wrapped >= 0) & (wrapped < r * 0.5)  # NaN rollover -> False
    is_reset = decrease & ~is_roll
    inc = np.where(
        counter_p,
        np.where(d >= 0, d, np.where(is_roll, wrapped, np.maximum(cur_v, 0.0))),
        (prev_v + cur_v) * (0.5 / 3600.0) * dt,  # trapezoid, kW*s -> kWh
    )
    inc *= factor[sp]
    inc[~same] = 0.0
    bad = (is_reset | ~counter_p | (dt > max_gap[sp])) & same

    # monotonic cumulative energy per series (kWh), made relative to each series' first row
    cum = np.empty(n_rows, dtype=np.float64)
    cum[0] = 0.0
    np.cumsum(inc, out=cum[1:])
    cum -= np.repeat(cum[first_idx], last_idx - first_idx + 1)
    # cumulative count of bad pairs ending at or before each row
    cbad = np.empty(n_rows, dtype=np.int64)
    cbad[0] = 0
    np.cumsum(bad, out=cbad[1:])

    # ---- one interp for all series: offset each series on its own stretch of the x axis
    t_lo = min(float(ts.min()), start)
    t_hi = max(float(ts.max()), start + n * step)
    span = math.ceil(t_hi - t_lo) + 1.0
    t0 = start
    x = (ts - t0) + sid.astype(np.float64) * span

    bounds = start + step * np.arange(n + 1, dtype=np.float64)
    first_t = ts[first_idx][:, None]
    last_t = ts[last_idx][:, None]
    qb = np.clip(bounds[None, :], first_t, last_t)  # [n_present, n+1]
    qx = (qb - t0) + present.astype(np.float64)[:, None] * span
    c_at = np.interp(qx.ravel(), x, cum).reshape(qx.shape)
    e = np.diff(c_at, axis=1)

    covered = (bounds[None, :-1] >= first_t) & (bounds[None, 1:] <= last_t)
    # pairs overlapping interval k: those ending at rows lo..hi (see module docs)
    lo = np.searchsorted(x, qx[:, :-1], side="right")
    hi = np.searchsorted(x, qx[:, 1:], side="left")
    np.clip(lo, 1, n_rows - 1, out=lo)
    np.clip(hi, 0, n_rows - 1, out=hi)
    n_bad = cbad[hi] - cbad[lo - 1]
    st = np.where(n_bad > 0, Status.ESTIMATED, Status.MEASURED).astype(np.int8)
    st[~covered] = Status.MISSING
    e[~covered] = 0.0

    energy[present] = e
    status[present] = st
    return out
