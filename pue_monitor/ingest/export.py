"""Read a building-management export (long-form CSV) into validated readings, with polars.

Format: a header line with (at least) the columns ``timestamp``, ``meter``, ``quantity``,
``value``; one reading per line:

* ``timestamp`` ISO 8601 with a UTC offset (``2026-01-05T13:00:00+01:00``, ``...Z``; a space for
  the ``T`` is accepted); a local time without offset is rejected — it is ambiguous at DST;
* ``meter`` a device id of the site config that has a ``meter:``;
* ``quantity`` ``energy_kwh`` (a cumulative energy counter, kWh) or ``power_kw`` (kW);
* ``value`` a finite number (``.`` as decimal point).

The file is parsed by polars' multi-threaded CSV reader; every check is a vectorised
expression, so a bad row costs no more than a good one. Bad rows are kept apart with their
line number and reason; good rows become ``(series index, µs timestamp, value)`` arrays, the
value converted to the unit of the meter's point (so backfilled and live readings of one series
agree in the store).
"""

from __future__ import annotations

import csv
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from pue_monitor.pipeline.energy import SeriesSpec

__all__ = ["COLUMNS", "QUANTITIES", "BadRow", "Export", "ExportFormatError", "Problem", "read_export"]

COLUMNS = ("timestamp", "meter", "quantity", "value")
#: CSV quantity -> the series kind that carries it
QUANTITIES: dict[str, str] = {"energy_kwh": "counter", "power_kw": "power"}
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%z"
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?")


class ExportFormatError(Exception):
    """The file cannot be read as an export at all (missing, unreadable, no such columns)."""


class Problem(enum.IntEnum):
    """Why a row was rejected (0 = good)."""

    OK = 0
    MISSING_FIELD = 1
    BAD_TIMESTAMP = 2
    NO_OFFSET = 3
    UNKNOWN_METER = 4
    UNKNOWN_QUANTITY = 5
    NO_SUCH_QUANTITY = 6
    AMBIGUOUS = 7
    BAD_VALUE = 8
    NON_FINITE = 9

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Problem.OK: "ok",
    Problem.MISSING_FIELD: "missing field",
    Problem.BAD_TIMESTAMP: "unparseable timestamp",
    Problem.NO_OFFSET: "timestamp without UTC offset",
    Problem.UNKNOWN_METER: "unknown meter",
    Problem.UNKNOWN_QUANTITY: "unknown quantity",
    Problem.NO_SUCH_QUANTITY: "meter without that quantity",
    Problem.AMBIGUOUS: "meter sums several points of that quantity",
    Problem.BAD_VALUE: "non-numeric value",
    Problem.NON_FINITE: "non-finite value",
}


@dataclass(frozen=True)
class BadRow:
    line: int  # 1-based line of the file (the header is line 1)
    problem: Problem
    detail: str  # the offending field, quoted

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem.label}: {self.detail}"


@dataclass
class Export:
    """Validated rows of one file; ``sid`` indexes ``keys``."""

    path: Path
    keys: list[tuple[str, str]]
    sid: np.ndarray  # int32
    t_us: np.ndarray  # int64, POSIX µs (UTC)
    value: np.ndarray  # float64, in the unit of the series' point
    rows: int  # data rows read
    bad_counts: dict[Problem, int] = field(default_factory=dict)
    bad_rows: list[BadRow] = field(default_factory=list)  # the first ``max_report`` bad rows, by line

    @property
    def good(self) -> int:
        return int(self.sid.size)

    @property
    def bad(self) -> int:
        return sum(self.bad_counts.values())


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            first = next(csv.reader(f), None)
    except FileNotFoundError:
        raise ExportFormatError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportFormatError(f"{path}: cannot read: {exc}") from None
    if first is None:
        raise ExportFormatError(f"{path}: empty file (expected a header: {','.join(COLUMNS)})")
    names = [c.strip() for c in first]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ExportFormatError(
            f"{path}: line 1: missing column(s) {', '.join(missing)} (header must name {', '.join(COLUMNS)})"
        )
    return names


def read_export(path: str | Path, specs: Mapping[tuple[str, str], SeriesSpec], *, max_report: int = 50) -> Export:
    """Parse and check ``path`` against the site's series (``pipeline.model.series_specs``)."""
    path = Path(path)
    names = _header(path)
    keys = list(specs)
    meters = sorted({s.meter for s in specs.values()})
    meter_index = {m: i for i, m in enumerate(meters)}
    quantities = list(QUANTITIES)
    # (meter, quantity) -> sid; -1 the meter has no series of that kind, -2 several (ambiguous)
    lut = np.full(len(meters) * len(quantities), -1, np.int64)
    for i, spec in enumerate(specs.values()):
        slot = meter_index[spec.meter] * len(quantities) + quantities.index(
            "energy_kwh" if spec.kind == "counter" else "power_kw"
        )
        lut[slot] = i if lut[slot] == -1 else -2
    factor = np.array([s.factor for s in specs.values()] + [1.0], np.float64)

    # fast path: one pass of the multi-threaded reader, every check a vectorised expression; the
    # raw text is kept only for suspect rows (null elsewhere), for a second, forgiving look
    t = pl.col("timestamp").str.to_datetime(_TS_FORMAT, strict=False, time_unit="us", time_zone="UTC").dt.epoch("us")
    q_index = {q: i for i, q in enumerate(quantities)}
    mi = pl.col("meter").replace_strict(meter_index, default=-1, return_dtype=pl.Int32)
    qi = pl.col("quantity").replace_strict(q_index, default=-1, return_dtype=pl.Int32)
    v = pl.col("value").cast(pl.Float64, strict=False)
    # parsed columns first, then the suspect flag from them (once, not once per text column)
    suspect = pl.col("t").is_null() | (pl.col("mi") < 0) | (pl.col("qi") < 0) | pl.col("v").is_null()
    try:
        df = (
            pl.scan_csv(path, infer_schema=False, truncate_ragged_lines=True, encoding="utf8-lossy")
            .with_columns(t.alias("t"), mi.alias("mi"), qi.alias("qi"), v.alias("v"))
            .with_columns(suspect.alias("suspect"))
            .select(
                "t", "mi", "qi", "v", *(pl.when(pl.col("suspect")).then(pl.col(c)).alias(f"{c}_text") for c in COLUMNS)
            )
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ExportFormatError(f"{path}: cannot parse as CSV: {str(exc).splitlines()[0]}") from None
    del names
    n = df.height
    any_suspect = df.select(pl.any_horizontal(pl.col("t", "v").is_null().any(), (pl.col("mi", "qi") < 0).any()))
    if n and not any_suspect.item():
        # fast path, every field parsed: only the meter/quantity pairing and finiteness to check
        sid_fast = lut[df["mi"].to_numpy().astype(np.int64) * len(quantities) + df["qi"].to_numpy()]
        v_fast = df["v"].to_numpy()
        if sid_fast.min() >= 0 and np.isfinite(v_fast).all():
            return Export(
                path=path,
                keys=keys,
                sid=sid_fast.astype(np.int32),
                t_us=df["t"].to_numpy(),
                value=v_fast / factor[sid_fast],
                rows=n,
            )
    t_arr = df["t"].fill_null(np.iinfo(np.int64).min).to_numpy().copy()
    mi_a = df["mi"].to_numpy().copy()
    qi_a = df["qi"].to_numpy().copy()
    v_a = df["v"].fill_null(np.nan).to_numpy().copy()
    v_null = df["v"].is_null().to_numpy().copy()
    problem = np.zeros(n, np.int8)
    missing = np.zeros(n, bool)
    t_ok = df["t"].is_not_null().to_numpy().copy()

    # second look at the suspect rows: surrounding blanks, 'Z', a space for 'T', no seconds, ...
    retry = np.flatnonzero(~t_ok | (mi_a < 0) | (qi_a < 0) | v_null)
    if retry.size:
        sub = df.select(pl.col(f"{c}_text").gather(retry).str.strip_chars().alias(c) for c in COLUMNS)
        missing[retry] = sub.select(pl.any_horizontal(pl.col(c).is_null() | (pl.col(c) == "") for c in COLUMNS))[
            :, 0
        ].to_numpy()
        mi_a[retry] = sub["meter"].replace_strict(meter_index, default=-1, return_dtype=pl.Int32).to_numpy()
        qi_a[retry] = sub["quantity"].replace_strict(q_index, default=-1, return_dtype=pl.Int32).to_numpy()
        v2 = sub["value"].cast(pl.Float64, strict=False)
        v_a[retry] = v2.fill_null(np.nan).to_numpy()
        v_null[retry] = v2.is_null().to_numpy()
        # a whole file in another common form ('Z', a space for 'T') stays vectorised
        norm = sub["timestamp"].str.replace(r"[zZ]$", "+00:00").str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
        t2 = norm.str.to_datetime(_TS_FORMAT, strict=False, time_unit="us", time_zone="UTC").dt.epoch("us")
        fixed = (t2.is_not_null() & ~pl.Series(t_ok[retry])).to_numpy()
        t_arr[retry[fixed]] = t2.filter(fixed).to_numpy()
        t_ok[retry[fixed]] = True
        for j, text in zip(retry.tolist(), sub["timestamp"].to_list(), strict=True):
            if t_ok[j] or not text:
                continue
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                problem[j] = Problem.NO_OFFSET if _NAIVE.fullmatch(text) else Problem.BAD_TIMESTAMP
                continue
            if when.tzinfo is None:
                problem[j] = Problem.NO_OFFSET
            else:
                t_arr[j] = round(when.timestamp() * 1_000_000)
                t_ok[j] = True

    code = np.where((mi_a >= 0) & (qi_a >= 0), mi_a * len(quantities) + qi_a, 0)
    sid = np.where((mi_a >= 0) & (qi_a >= 0), lut[code] if lut.size else -1, -1)
    # first problem wins, in the order a reader checks a row
    checks = (
        (Problem.MISSING_FIELD, missing),
        (Problem.UNKNOWN_METER, mi_a < 0),
        (Problem.UNKNOWN_QUANTITY, qi_a < 0),
        (Problem.NO_SUCH_QUANTITY, sid == -1),
        (Problem.AMBIGUOUS, sid == -2),
        (Problem.BAD_VALUE, v_null),
        (Problem.NON_FINITE, ~np.isfinite(v_a)),
    )
    for p, mask in checks:
        problem[(problem == 0) & mask] = p
    problem[(problem == 0) & ~t_ok] = Problem.BAD_TIMESTAMP

    good = problem == 0
    out = Export(
        path=path,
        keys=keys,
        sid=sid[good].astype(np.int32),
        t_us=t_arr[good],
        value=v_a[good] / factor[sid[good]],
        rows=n,
    )
    bad_idx = np.flatnonzero(~good)
    if bad_idx.size:
        counts = np.bincount(problem[bad_idx], minlength=len(Problem))
        out.bad_counts = {Problem(i): int(c) for i, c in enumerate(counts) if c}
        out.bad_rows = _describe(path, bad_idx[:max_report], problem)
    return out


def _describe(path: Path, idx: np.ndarray, problem: np.ndarray) -> list[BadRow]:
    """Quote the offending field of the first bad rows (re-read from the file up to the last)."""
    wanted = {int(i): Problem(int(problem[i])) for i in idx}
    last = max(wanted)
    out: list[BadRow] = []
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader)]
        col = {c: header.index(c) for c in COLUMNS}
        field_of = {
            Problem.BAD_TIMESTAMP: "timestamp",
            Problem.NO_OFFSET: "timestamp",
            Problem.UNKNOWN_METER: "meter",
            Problem.UNKNOWN_QUANTITY: "quantity",
            Problem.NO_SUCH_QUANTITY: "meter",
            Problem.AMBIGUOUS: "meter",
            Problem.BAD_VALUE: "value",
            Problem.NON_FINITE: "value",
        }
        for r, fields in enumerate(reader):
            p = wanted.get(r)
            if p is not None:
                if p is Problem.MISSING_FIELD:
                    empty = [c for c in COLUMNS if col[c] >= len(fields) or not fields[col[c]].strip()]
                    detail = ", ".join(empty)
                else:
                    name = field_of[p]
                    text = fields[col[name]] if col[name] < len(fields) else ""
                    detail = f"{name} {text!r}"
                    if p is Problem.NO_SUCH_QUANTITY:
                        detail += f" has no {fields[col['quantity']].strip()!r} point"
                out.append(BadRow(line=reader.line_num, problem=p, detail=detail))
            if r >= last:
                break
    return out
