"""EnergyPlus weather (EPW) files: the typical-year format planners use for a candidate site.

Format (EnergyPlus "Auxiliary Programs", Weather Converter, EnergyPlus Weather File (EPW) Data
Dictionary): 8 header lines (LOCATION, DESIGN CONDITIONS, TYPICAL/EXTREME PERIODS, GROUND
TEMPERATURES, HOLIDAYS/DAYLIGHT SAVINGS, COMMENTS 1, COMMENTS 2, DATA PERIODS), then one row
per record, 35 comma-separated fields, of which these are read:

====  ============================  ==========  ================  ==============
 no.  field                         unit        missing code      valid range
====  ============================  ==========  ================  ==============
  1   year                                                        (any; TMY mixes years)
  2   month                                                       1..12
  3   day                                                         1..days of month
  4   hour                          h           (hour ending)     1..24
  5   minute                                                      0..60
  7   dry bulb temperature          °C          99.9              -70 .. 70
  8   dew point temperature         °C          99.9              -70 .. 70
  9   relative humidity             %           999               0 .. 110
 10   atmospheric station pressure  Pa          999999            31,000 .. 120,000
====  ============================  ==========  ================  ==============

Hour *h* is the hour ending at h:00 local standard time, so hour 24 is 23:00-24:00 of the row's
own day (it is not moved to the next day: 31 December hour 24 stays in December). A missing
code or a value outside the valid range is missing (NaN), as EnergyPlus treats it; RH above
100 % (up to 110) is 100 %. When RH is missing and the dew point is not, RH comes from the
dew point. 29 February is accepted (leap years, 8,784 hours). A row that is not numbers, has
too few fields or an impossible date is an error naming the file, line and field.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pue_monitor.freecooling.psychro import Array, sat_vap_pres

HEADER_LINES = 8
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # leap-year month lengths

#: (index, name, missing code, lower, upper) of the float fields read
_FIELDS = (
    (6, "dry bulb temperature", 99.9, -70.0, 70.0),
    (7, "dew point temperature", 99.9, -70.0, 70.0),
    (8, "relative humidity", 999.0, 0.0, 110.0),
    (9, "atmospheric station pressure", 999999.0, 31000.0, 120000.0),
)


class EpwError(ValueError):
    """A malformed EPW file; the message names the file, line and field."""


@dataclass(frozen=True)
class Location:
    city: str
    country: str
    source: str
    wmo: str
    latitude: float
    longitude: float
    tz_hours: float
    elevation_m: float


@dataclass(frozen=True)
class EpwData:
    """The rows of an EPW file as arrays (NaN where missing)."""

    location: Location
    year: np.ndarray
    month: np.ndarray
    day: np.ndarray
    hour: np.ndarray  #: 1..24, hour ending
    minute: np.ndarray
    dry_bulb_c: Array
    dew_point_c: Array
    rh_pct: Array  #: measured, or from the dew point where missing
    pressure_pa: Array
    records_per_hour: int

    @property
    def hours_per_row(self) -> float:
        return 1.0 / self.records_per_hour

    def __len__(self) -> int:
        return int(self.month.size)


def _num(path: Path, line: int, field: int, name: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise EpwError(f"{path}:{line}: field {field} ({name}): {text.strip()[:40]!r} is not a number") from None
    if not math.isfinite(v):
        raise EpwError(f"{path}:{line}: field {field} ({name}): {text.strip()[:40]!r} is not a finite number")
    return v


def _location(path: Path, text: str) -> Location:
    f = next(csv.reader([text]))
    if not f or f[0].strip().upper() != "LOCATION" or len(f) < 10:
        raise EpwError(f"{path}:1: expected 'LOCATION,city,state,country,source,WMO,lat,lon,tz,elevation'")
    names = ("latitude", "longitude", "time zone", "elevation")
    lat, lon, tz, elev = (_num(path, 1, i + 1, n, f[i]) for i, n in zip(range(6, 10), names, strict=True))
    return Location(f[1].strip(), f[3].strip(), f[4].strip(), f[5].strip(), lat, lon, tz, elev)


def _records_per_hour(path: Path, text: str) -> int:
    f = next(csv.reader([text]))
    if not f or f[0].strip().upper() != "DATA PERIODS" or len(f) < 3:
        raise EpwError(f"{path}:8: expected 'DATA PERIODS,count,records per hour,...'")
    n = _num(path, 8, 3, "records per hour", f[2])
    if n not in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60):
        raise EpwError(f"{path}:8: field 3 (records per hour): {f[2]!r} must divide 60")
    return int(n)


def read_epw(path: str | Path) -> EpwData:
    """Read an EPW file. Raises :class:`EpwError` (one line) for a malformed file, OSError if unreadable."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = p.read_text(encoding="latin-1")  # older files carry Latin-1 station names
    return parse_epw(text, p)


def parse_epw(text: str, path: Path = Path("<epw>")) -> EpwData:
    lines = text.splitlines()
    if len(lines) <= HEADER_LINES:
        raise EpwError(f"{path}: {len(lines)} lines; an EPW file has {HEADER_LINES} header lines, then data rows")
    loc = _location(path, lines[0])
    rph = _records_per_hour(path, lines[7])
    n = len(lines) - HEADER_LINES
    ints = np.zeros((n, 5), dtype=np.int64)
    vals = np.empty((n, 4), dtype=np.float64)
    rows = 0
    for k, text in enumerate(lines[HEADER_LINES:]):
        line = HEADER_LINES + 1 + k
        if not text.strip():
            continue  # a blank line (a trailing newline)
        f = text.split(",")  # data rows hold no quoted fields: one line is one row, whatever it holds
        if len(f) < 10:
            raise EpwError(f"{path}:{line}: {len(f)} fields; a data row has 35 (at least 10 are read)")
        for j, name in enumerate(("year", "month", "day", "hour", "minute")):
            v = _num(path, line, j + 1, name, f[j])
            if v != int(v):
                raise EpwError(f"{path}:{line}: field {j + 1} ({name}): {f[j].strip()!r} is not a whole number")
            ints[rows, j] = int(v)
        _, mo, d, h, mi = ints[rows]
        if not 1 <= mo <= 12:
            raise EpwError(f"{path}:{line}: field 2 (month): {mo} is not 1..12")
        if not 1 <= d <= _DAYS[mo - 1]:
            raise EpwError(f"{path}:{line}: field 3 (day): {d} is not a day of month {mo}")
        if not 1 <= h <= 24:
            raise EpwError(f"{path}:{line}: field 4 (hour): {h} is not 1..24 (EPW hours end at 1:00..24:00)")
        if not 0 <= mi <= 60:
            raise EpwError(f"{path}:{line}: field 5 (minute): {mi} is not 0..60")
        for c, (i, name, _, _, _) in enumerate(_FIELDS):
            vals[rows, c] = _num(path, line, i + 1, name, f[i])
        rows += 1
    if rows == 0:
        raise EpwError(f"{path}: no data rows after the {HEADER_LINES} header lines")
    ints, vals = ints[:rows], vals[:rows]
    for c, (_, _, missing, lo, hi) in enumerate(_FIELDS):
        col = vals[:, c]
        col[(col == missing) | (col < lo) | (col > hi)] = np.nan
    tdb, tdp, rh, pres = (vals[:, c].copy() for c in range(4))
    rh = np.minimum(rh, 100.0)
    from_dp = np.isnan(rh) & ~np.isnan(tdp) & ~np.isnan(tdb)
    if from_dp.any():
        rh[from_dp] = np.minimum(
            100.0, 100.0 * sat_vap_pres(np.minimum(tdp[from_dp], tdb[from_dp])) / sat_vap_pres(tdb[from_dp])
        )
    return EpwData(
        location=loc,
        year=ints[:, 0],
        month=ints[:, 1],
        day=ints[:, 2],
        hour=ints[:, 3],
        minute=ints[:, 4],
        dry_bulb_c=tdb,
        dew_point_c=tdp,
        rh_pct=rh,
        pressure_pa=pres,
        records_per_hour=rph,
    )


def write_epw(
    path: str | Path,
    location: Location,
    month: np.ndarray,
    day: np.ndarray,
    hour: np.ndarray,
    dry_bulb_c: Array,
    dew_point_c: Array,
    rh_pct: Array,
    pressure_pa: Array,
    *,
    year: int = 2026,
    comment: str = "",
) -> None:
    """Write hourly rows as an EPW file (fields not modelled get their missing codes)."""
    # fields 11-35 (radiation, illuminance, wind, sky, weather, snow, precipitation): missing codes
    tail = "," + ",".join(
        ["9999"] * 6
        + ["999999"] * 3
        + ["9999", "999", "999", "99", "99", "9999", "99999", "9", "999999999"]
        + ["999", ".999", "999", "99", "999", "999", "99"]
    )
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        lc = location
        fh.write(
            f"LOCATION,{lc.city},-,{lc.country},{lc.source},{lc.wmo},{lc.latitude:.2f},{lc.longitude:.2f},"
            f"{lc.tz_hours:.1f},{lc.elevation_m:.1f}\n"
        )
        fh.write("DESIGN CONDITIONS,0\nTYPICAL/EXTREME PERIODS,0\nGROUND TEMPERATURES,0\n")
        fh.write("HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0\n")
        fh.write(f"COMMENTS 1,{comment.replace(',', ';')}\nCOMMENTS 2,\n")
        fh.write(f"DATA PERIODS,1,1,Data,{_weekday(year)},1/1,12/31\n")

        def fmt(v: float, missing: str, spec: str) -> str:
            return missing if math.isnan(v) else format(v, spec)

        for i in range(len(month)):
            fh.write(
                f"{year},{int(month[i])},{int(day[i])},{int(hour[i])},60,?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9?9*9*9?9?9?9,"
                f"{fmt(float(dry_bulb_c[i]), '99.9', '.1f')},{fmt(float(dew_point_c[i]), '99.9', '.1f')},"
                f"{fmt(float(rh_pct[i]), '999', '.0f')},{fmt(float(pressure_pa[i]), '999999', '.0f')}{tail}\n"
            )


def _weekday(year: int) -> str:
    import datetime as dt

    return dt.date(year, 1, 1).strftime("%A")
