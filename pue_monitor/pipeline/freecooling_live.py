"""Live free-cooling state per minute, rolled up per 15 min / hour / day like PUE.

For every closed minute and every configured economiser (``cooling.economisers``):

- **available** mode and fraction of the cooling load it could carry, from the minute's
  outdoor readings through :func:`pue_monitor.freecooling.availability.classify`;
- the mode the plant **actually** ran: from the economiser mode status point (0 none,
  1 partial, 2 full) when configured, else inferred from chiller power (at/below
  ``live.chiller_off_kw`` full, at/above ``live.chiller_on_kw`` none, between partial),
  and then labelled ``inferred``;
- seconds available (full or partial) and used (the plant ran full or partial), so
  utilisation = used / available is a ratio of sums, never a mean of ratios;
- chiller energy (kWh, from chiller power over the minute) and the **avoidable** chiller
  energy: the share the economiser could have carried, ``fraction x chiller kWh`` — all of it
  in a full minute, none in a none minute (the gap cost).

A minute's value of a point is the mean of its readings inside the minute, else the newest
reading before it if that is at most ``max_age`` old at the minute's start; a mode status is
the newest reading at/before the minute's end within ``max_age``. Weather missing or stale
makes the available state unknown (``mode`` -1, fraction None), never "none"; a missing
chiller power or status makes the actual mode unknown and the chiller energies None.

:func:`minute_states` is the vectorised batch form (a year of minutes in well under a
second); :class:`LiveFreeCooling` feeds it incrementally from the service's readings.
"""

from __future__ import annotations

import bisect
import math
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pue_monitor.config.models import UNITS, CoolingConfig
from pue_monitor.freecooling.availability import Mode, Weather, classify
from pue_monitor.pipeline.pue import _bucket
from pue_monitor.readings import Quality, Reading

__all__ = [
    "POINT_ROLES",
    "FreeCoolingInterval",
    "LiveFreeCooling",
    "MinuteStates",
    "aggregate_free_cooling",
    "interval_from_row",
    "minute_states",
    "mode_name",
    "sample_minutes",
]

Array = npt.NDArray[np.float64]

#: the cooling.points fields the live state reads
POINT_ROLES = ("outdoor_temperature", "relative_humidity", "pressure", "chiller_power", "economiser_mode")

_MODE_NAMES: dict[int, str] = {Mode.UNKNOWN: "unknown", Mode.NONE: "none", Mode.PARTIAL: "partial", Mode.FULL: "full"}
_PRESSURE_PA = {"Pa": 1.0, "hPa": 100.0, "mbar": 100.0, "kPa": 1000.0}


def mode_code(name: str | None) -> int | None:
    """The mode code of ``full``, ``partial``, ``none`` or ``unknown`` (None for None)."""
    if name is None:
        return None
    return next((c for c, n in _MODE_NAMES.items() if n == name), int(Mode.UNKNOWN))


def interval_from_row(row: Mapping[str, Any]) -> FreeCoolingInterval:
    """A stored ``free_cooling`` row (the embedded store's columns) as a :class:`FreeCoolingInterval`."""

    def f(key: str) -> float | None:
        return None if row[key] is None else float(row[key])

    return FreeCoolingInterval(
        start=float(row["start"]),
        end=float(row["end"]),
        economiser=str(row["economiser"]),
        fraction=f("fraction"),
        mode=mode_code(row["mode"]),
        actual_mode=mode_code(row["actual_mode"]),
        inferred=bool(row["inferred"]),
        full_s=float(row["full_s"]),
        partial_s=float(row["partial_s"]),
        none_s=float(row["none_s"]),
        unknown_s=float(row["unknown_s"]),
        used_s=float(row["used_s"]),
        actual_unknown_s=float(row["actual_unknown_s"]),
        chiller_kwh=f("chiller_kwh"),
        avoidable_kwh=f("avoidable_kwh"),
    )


def mode_name(code: int | None) -> str:
    """``full``, ``partial``, ``none`` or ``unknown`` for a mode code (None: unknown)."""
    return "unknown" if code is None else _MODE_NAMES.get(int(code), "unknown")


@dataclass(frozen=True)
class FreeCoolingInterval:
    """Free-cooling state of one economiser over ``[start, end)``.

    A 1-minute row has ``mode`` / ``actual_mode`` (codes of
    :class:`~pue_monitor.freecooling.availability.Mode`; -1 unknown); a rollup has None there and
    the seconds per mode instead. ``fraction`` is the mean available fraction over the seconds
    whose weather is known (None when none is). Energies are None when chiller power is unknown
    for the whole span.
    """

    start: float
    end: float
    economiser: str
    fraction: float | None
    mode: int | None
    actual_mode: int | None
    inferred: bool
    full_s: float
    partial_s: float
    none_s: float
    unknown_s: float
    used_s: float
    actual_unknown_s: float
    chiller_kwh: float | None
    avoidable_kwh: float | None

    @property
    def available_s(self) -> float:
        """Seconds the weather allowed full or partial free cooling."""
        return self.full_s + self.partial_s

    @property
    def utilisation(self) -> float | None:
        """Used seconds over available seconds (None when nothing was available)."""
        return self.used_s / self.available_s if self.available_s > 0 else None


@dataclass(frozen=True)
class MinuteStates:
    """Arrays over ``n`` minutes (plant-wide) and per economiser id."""

    starts: Array
    step: float
    fraction: dict[str, Array]  # NaN unknown
    mode: dict[str, npt.NDArray[np.int8]]
    actual_mode: npt.NDArray[np.int8]  # -1 unknown
    inferred: bool
    chiller_kwh: Array  # NaN unknown
    avoidable_kwh: dict[str, Array]  # NaN unknown

    def rows(self) -> list[FreeCoolingInterval]:
        """One :class:`FreeCoolingInterval` per minute and economiser (minute-major)."""
        step = self.step
        out: list[FreeCoolingInterval] = []
        actual = self.actual_mode.tolist()
        used = [step if a in (Mode.FULL, Mode.PARTIAL) else 0.0 for a in actual]
        chiller = [None if math.isnan(c) else c for c in self.chiller_kwh.tolist()]
        per = {
            e: (
                [None if math.isnan(f) else f for f in self.fraction[e].tolist()],
                self.mode[e].tolist(),
                [None if math.isnan(a) else a for a in self.avoidable_kwh[e].tolist()],
            )
            for e in self.fraction
        }
        for i, s in enumerate(self.starts.tolist()):
            for e, (fr, md, av) in per.items():
                m = md[i]
                out.append(
                    FreeCoolingInterval(
                        start=s, end=s + step, economiser=e, fraction=fr[i], mode=m, actual_mode=actual[i],
                        inferred=self.inferred, full_s=step if m == Mode.FULL else 0.0,
                        partial_s=step if m == Mode.PARTIAL else 0.0, none_s=step if m == Mode.NONE else 0.0,
                        unknown_s=step if m == Mode.UNKNOWN else 0.0, used_s=used[i],
                        actual_unknown_s=step if actual[i] == Mode.UNKNOWN else 0.0,
                        chiller_kwh=chiller[i], avoidable_kwh=av[i],
                    )
                )  # fmt: skip
        return out


def sample_minutes(
    ts: npt.ArrayLike, values: npt.ArrayLike, starts: Array, step: float, max_age: float, *, last: bool = False
) -> Array:
    """The value of one point for each minute ``[s, s + step)`` of ``starts`` (sorted, evenly
    spaced or not): the mean of its readings inside (``last``: the newest reading at/before the
    end), else the newest reading before ``s`` no older than ``max_age`` at ``s``; NaN otherwise.
    ``ts`` must be sorted."""
    t = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    n = starts.size
    out = np.full(n, np.nan)
    if t.size == 0 or n == 0:
        return out
    ends = starts + step
    if last:
        j = np.searchsorted(t, ends, side="left") - 1  # newest strictly before the end
        ok = j >= 0
        jj = np.where(ok, j, 0)
        ok &= ends - t[jj] <= max_age + step
        out[ok] = v[jj[ok]]
        return out
    lo = np.searchsorted(t, starts, side="left")
    hi = np.searchsorted(t, ends, side="left")
    cnt = hi - lo
    csum = np.concatenate([[0.0], np.cumsum(v)])
    inside = cnt > 0
    out[inside] = (csum[hi[inside]] - csum[lo[inside]]) / cnt[inside]
    prev = lo - 1
    stale_ok = ~inside & (prev >= 0)
    pp = np.where(stale_ok, prev, 0)
    stale_ok &= starts - t[pp] <= max_age
    out[stale_ok] = v[pp[stale_ok]]
    return out


def _inferred_modes(chiller_kw: Array, off_kw: float, on_kw: float) -> npt.NDArray[np.int8]:
    out = np.full(chiller_kw.shape, Mode.PARTIAL, dtype=np.int8)
    out[chiller_kw <= off_kw] = Mode.FULL
    out[chiller_kw >= on_kw] = Mode.NONE
    out[np.isnan(chiller_kw)] = Mode.UNKNOWN
    return out


def _status_modes(status: Array) -> npt.NDArray[np.int8]:
    r = np.rint(status)
    ok = np.isfinite(r) & (r >= Mode.NONE) & (r <= Mode.FULL)
    out = np.full(status.shape, Mode.UNKNOWN, dtype=np.int8)
    out[ok] = r[ok].astype(np.int8)
    return out


def minute_states(
    cooling: CoolingConfig,
    starts: npt.ArrayLike,
    *,
    dry_bulb_c: Array,
    rh_pct: Array,
    pressure_pa: Array | None = None,
    chiller_kw: Array | None = None,
    status: Array | None = None,
    step: float = 60.0,
) -> MinuteStates:
    """The state of every minute from per-minute point values (NaN: missing or stale).

    ``status`` (mode codes) wins over ``chiller_kw`` for the actual mode; with only chiller
    power the mode is inferred from ``cooling.live`` thresholds (``inferred`` True), and is
    unknown when they are not both set.
    Vectorised: one :func:`classify` call for all minutes.
    """
    st = np.asarray(starts, dtype=np.float64)
    n = st.size
    av = classify(Weather(dry_bulb_c, rh_pct, pressure_pa), cooling)
    chiller = np.full(n, np.nan) if chiller_kw is None else np.asarray(chiller_kw, dtype=np.float64)
    inferred = False
    if status is not None:
        actual = _status_modes(np.asarray(status, dtype=np.float64))
    elif chiller_kw is not None and cooling.live.chiller_off_kw is not None and cooling.live.chiller_on_kw is not None:
        actual = _inferred_modes(chiller, cooling.live.chiller_off_kw, cooling.live.chiller_on_kw)
        inferred = True
    else:
        actual = np.full(n, Mode.UNKNOWN, dtype=np.int8)
    kwh = chiller * (step / 3600.0)
    avoidable = {e: f * kwh for e, f in av.fraction.items()}  # NaN when either is unknown
    return MinuteStates(
        starts=st, step=step, fraction=av.fraction, mode=av.mode, actual_mode=actual, inferred=inferred,
        chiller_kwh=kwh, avoidable_kwh=avoidable,
    )  # fmt: skip


# ------------------------------------------------------------------------- rollups


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return math.fsum(known) if known else None


def _merge(start: float, end: float, economiser: str, rows: Sequence[FreeCoolingInterval]) -> FreeCoolingInterval:
    known = [(r.fraction, r.end - r.start - r.unknown_s) for r in rows if r.fraction is not None]
    secs = math.fsum(w for _, w in known)
    fraction = math.fsum(f * w for f, w in known) / secs if secs > 0 else None
    return FreeCoolingInterval(
        start=start,
        end=end,
        economiser=economiser,
        fraction=fraction,
        mode=None,
        actual_mode=None,
        inferred=any(r.inferred for r in rows),
        full_s=math.fsum(r.full_s for r in rows),
        partial_s=math.fsum(r.partial_s for r in rows),
        none_s=math.fsum(r.none_s for r in rows),
        unknown_s=math.fsum(r.unknown_s for r in rows),
        used_s=math.fsum(r.used_s for r in rows),
        actual_unknown_s=math.fsum(r.actual_unknown_s for r in rows),
        chiller_kwh=_sum_or_none(r.chiller_kwh for r in rows),
        avoidable_kwh=_sum_or_none(r.avoidable_kwh for r in rows),
    )


def aggregate_free_cooling(
    rows: Sequence[FreeCoolingInterval], *, resolution: str, tz: str
) -> list[FreeCoolingInterval]:
    """15m / 1h / 1d rows per economiser from finer rows, on wall-clock buckets in ``tz``
    (days from local midnight, as :func:`pue_monitor.pipeline.pue.aggregate`): sums of seconds
    and energies; ``fraction`` time-weighted over the known seconds."""
    zone = zoneinfo.ZoneInfo(tz)
    groups: dict[tuple[float, float, str], list[FreeCoolingInterval]] = {}
    b: tuple[float, float] = (math.inf, -math.inf)
    for r in sorted(rows, key=lambda r: r.start):
        if not (b[0] <= r.start < b[1]):
            b = _bucket(r.start, resolution, zone)
        groups.setdefault((b[0], b[1], r.economiser), []).append(r)
    return [_merge(s, e, econ, g) for (s, e, econ), g in groups.items()]


# ------------------------------------------------------------------------ incremental


@dataclass
class _Series:
    ts: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)


class LiveFreeCooling:
    """Buffers the cooling points' readings; :meth:`close` returns the minutes that ended.

    ``points``: field name of ``cooling.points`` (:data:`POINT_ROLES`) -> (device, point);
    ``max_age``: per field, seconds (see the module docstring). Minutes are reported once,
    in order, from the first one starting after the first reading.
    """

    def __init__(
        self,
        cooling: CoolingConfig,
        points: Mapping[str, tuple[str, str]],
        *,
        max_age: Mapping[str, float],
        step: float = 60.0,
    ) -> None:
        unknown = set(points) - set(POINT_ROLES)
        if unknown:
            raise ValueError(f"unknown cooling point role(s): {', '.join(sorted(unknown))}")
        if "outdoor_temperature" not in points:
            raise ValueError("the live free-cooling state needs cooling.points.outdoor_temperature")
        self.cooling = cooling
        self.step = float(step)
        self.max_age = {k: float(max_age[k]) for k in points}
        self._series: dict[str, _Series] = {}
        self._by_key: dict[tuple[str, str], list[str]] = {}
        for role, key in points.items():
            self._series[role] = _Series()
            self._by_key.setdefault(key, []).append(role)
        self.next_start: float | None = None

    @staticmethod
    def _factor(role: str, unit: str) -> float:
        """To Pa (pressure, hPa when the unit is not given) and kW (chiller power)."""
        if role == "pressure":
            return _PRESSURE_PA.get(unit, 100.0)  # hPa unless told otherwise
        if role == "chiller_power":
            kind, f = UNITS.get(unit, ("power", 1.0))
            return f if kind == "power" else 1.0
        return 1.0

    @property
    def keys(self) -> list[tuple[str, str]]:
        return list(self._by_key)

    def ingest(self, readings: Iterable[Reading]) -> None:
        by_key = self._by_key
        for r in readings:
            roles = by_key.get((r.device, r.point))
            if roles is None or r.quality != Quality.GOOD:
                continue
            ts, v = float(r.ts), float(r.value)
            if not (math.isfinite(ts) and math.isfinite(v)):
                continue
            for role in roles:
                s = self._series[role]
                if s.ts and ts < s.ts[-1]:
                    continue  # late: the minute it belongs to may be reported already
                s.ts.append(ts)
                s.val.append(v * self._factor(role, r.unit))

    def close(self, now: float, grace: float) -> list[FreeCoolingInterval]:
        """States of the minutes ending at/before ``now - grace`` not reported yet."""
        step = self.step
        if self.next_start is None:
            firsts = [s.ts[0] for s in self._series.values() if s.ts]
            if not firsts:
                return []
            self.next_start = math.ceil(min(firsts) / step) * step
        k = math.floor((now - grace - self.next_start) / step)
        if k <= 0:
            return []
        starts = self.next_start + step * np.arange(k, dtype=np.float64)
        vals = {role: self._sample(role, starts) for role in self._series}
        st = minute_states(
            self.cooling,
            starts,
            dry_bulb_c=vals["outdoor_temperature"],
            rh_pct=vals.get("relative_humidity", np.full(k, np.nan)),
            pressure_pa=vals.get("pressure"),
            chiller_kw=vals.get("chiller_power"),
            status=vals.get("economiser_mode"),
            step=step,
        )
        self.next_start = float(starts[-1] + step)
        self._trim()
        return st.rows()

    def _sample(self, role: str, starts: Array) -> Array:
        s = self._series[role]
        return sample_minutes(s.ts, s.val, starts, self.step, self.max_age[role], last=role == "economiser_mode")

    def _trim(self) -> None:
        assert self.next_start is not None
        for role, s in self._series.items():
            # keep the newest reading at/before keep_from (a later minute may still use it) and all after
            keep_from = self.next_start - self.max_age[role] - self.step
            i = bisect.bisect_right(s.ts, keep_from) - 1
            if i > 0:
                del s.ts[:i], s.val[:i]
