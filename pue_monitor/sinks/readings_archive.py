"""Day files of raw readings: the columnar archive next to the embedded store.

Closed UTC days of raw readings are moved out of the SQLite ``readings`` table into one Parquet
file per site and day (``<store>.readings/<site>/YYYY-MM-DD.<generation>.parquet``), so the table
keeps only the open days (its insert cost no longer grows with history) and a report reads a
month as 31 columnar files instead of 44 M SQLite rows.

A file holds every reading of its day, sorted by (device, point, ts):

* ``device``, ``point``, ``unit``, ``tags``: categorical (dictionary + run-length encoded: a few
  bytes per file, not per reading);
* ``dt_us``: int64 microseconds, the first reading of each series absolute, the others the step
  from the previous reading of the series (a 1 s poll is a small, repetitive number);
  stamps are kept to the microsecond (a stamp is rounded by at most 0.5 µs when archived; the
  stamps of imports and of the simulator are whole milliseconds and come back bit for bit);
* ``value``: float32 when every value of the file is exactly a float32 (what a Modbus float
  register delivers), float64 otherwise: always lossless;
* ``quality``: int8.

Parquet (zstd) through polars. Which file holds a day is recorded in the store's
``reading_files`` table, in the same transaction that deletes the archived rows from
``readings``: a crash between writing a file and that commit leaves an orphan file nobody
reads (a later compaction writes a new generation), never a duplicate or a lost reading.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DayCache", "DayData", "Labels", "archive_dir", "day_bounds", "day_of", "decode", "encode_day", "write_day"]

DAY = 86400.0


def archive_dir(store_path: str | Path) -> Path:
    """The folder of the day files of the store at ``store_path``: ``<store>.readings``."""
    p = Path(store_path)
    return p.with_name(p.name + ".readings")


def day_of(ts: float) -> date:
    """The UTC day of a POSIX stamp."""
    return datetime.fromtimestamp(ts, UTC).date()


def day_bounds(day: date) -> tuple[float, float]:
    """[00:00, next 00:00) UTC of ``day`` as POSIX seconds."""
    t0 = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return t0, t0 + DAY


def _us(ts: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(ts, np.float64) * 1e6).astype(np.int64)


def encode_day(
    device: np.ndarray,
    point: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    quality: np.ndarray,
    unit: np.ndarray,
    tags: np.ndarray,
) -> Any:
    """A polars DataFrame of one day's readings in the file layout (rows sorted here, stably:
    readings with equal (device, point, ts) keep their given order)."""
    import polars as pl

    df = pl.DataFrame(
        {
            "device": pl.Series(device, dtype=pl.String),
            "point": pl.Series(point, dtype=pl.String),
            "us": _us(ts),
            "value": pl.Series(np.asarray(value, np.float64)),
            "quality": pl.Series(np.asarray(quality), dtype=pl.Int8),
            "unit": pl.Series(unit, dtype=pl.String),
            "tags": pl.Series(tags, dtype=pl.String),
        }
    ).sort(["device", "point", "us"], maintain_order=True)
    us = df["us"].to_numpy()
    dt = np.diff(us, prepend=np.int64(0))
    key = df.select(pl.concat_str(["device", "point"], separator="\x00")).to_series()
    first = np.ones(df.height, bool)
    if df.height:
        first[1:] = (key[1:] != key[:-1]).to_numpy()
    dt[first] = us[first]
    v = df["value"].to_numpy()
    v32 = v.astype(np.float32)
    exact32 = bool(np.array_equal(v32.astype(np.float64), v, equal_nan=True))
    return df.select(
        pl.col("device").cast(pl.Categorical),
        pl.col("point").cast(pl.Categorical),
        pl.Series("dt_us", dt),
        pl.Series("value", v32) if exact32 else pl.col("value"),
        "quality",
        pl.col("unit").cast(pl.Categorical),
        pl.col("tags").cast(pl.Categorical),
    )


def write_day(folder: Path, day: date, generation: int, frame: Any) -> tuple[Path, int]:
    """Write ``frame`` (:func:`encode_day`) as ``folder/YYYY-MM-DD.<generation>.parquet``:
    a temporary file, fsync, rename (a reader never sees half a file). Returns (path, bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day.isoformat()}.{generation}.parquet"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        frame.write_parquet(tmp, compression="zstd", compression_level=3, statistics=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path, path.stat().st_size


class Labels:
    """A text column of a day file as codes into its distinct values (units, tags): 4 bytes a
    reading instead of a Python string each (a day at 1 s of 1,000 meters is 86 M readings)."""

    def __init__(self, codes: np.ndarray, names: list[str]) -> None:
        self.codes = codes
        self.names = names
        self._arr = np.asarray(names, object)

    def __getitem__(self, k: int | slice) -> Any:
        if isinstance(k, slice):
            return self._arr[self.codes[k]].tolist()
        return self.names[int(self.codes[k])]

    def array(self) -> np.ndarray:
        """Every row's value (object array)."""
        out: np.ndarray = self._arr[self.codes]
        return out

    @classmethod
    def of(cls, column: Any) -> Labels:
        """From a polars categorical column (equal strings have equal codes within a column)."""
        import polars as pl

        phys = column.to_physical().fill_null(np.iinfo(np.uint32).max).to_numpy()
        uniq, first = np.unique(phys, return_index=True)
        names = [x if x is not None else "" for x in column.gather(first).cast(pl.String).to_list()]
        return cls(np.searchsorted(uniq, phys).astype(np.uint32), names)


@dataclass
class DayData:
    """One decoded day file: the readings of each series are the slice ``index[(device, point)]``
    of the arrays (by ts). ``unit`` and ``tags`` only when decoded with ``full``."""

    path: Path
    index: dict[tuple[str, str], tuple[int, int]]
    ts: np.ndarray  # float64 seconds
    value: np.ndarray  # float64 (NaN: no value)
    quality: np.ndarray  # int8
    unit: Labels | None = None  # per row
    tags: Labels | None = None

    @property
    def rows(self) -> int:
        return int(self.ts.size)

    @property
    def nbytes(self) -> int:
        return int(self.ts.nbytes + self.value.nbytes + self.quality.nbytes) + (
            8 * self.rows if self.unit is not None else 0
        )

    def series(self, device: str, point: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = self.index.get((device, point), (0, 0))
        return self.ts[lo:hi], self.value[lo:hi], self.quality[lo:hi]

    def good(self, device: str, point: str) -> tuple[np.ndarray, np.ndarray]:
        """(ts, value) of the GOOD readings of one series (quality 0, a value), by ts."""
        ts, v, q = self.series(device, point)
        keep = (q == 0) & ~np.isnan(v)
        if keep.all():
            return ts, v
        return ts[keep], v[keep]


def decode(path: Path, *, full: bool = False) -> DayData:
    """Read a day file back (``full``: with units and tags, to rebuild whole readings)."""
    import polars as pl

    cols = ["device", "point", "dt_us", "value", "quality"] + (["unit", "tags"] if full else [])
    df = pl.read_parquet(path, columns=cols)
    n = df.height
    starts = np.zeros(0, np.int64)
    if n:  # a new series where device or point changes (rows are sorted by both)
        # equal strings have equal codes within a column: a change of either code starts a series
        dev = df["device"].to_physical().to_numpy()
        pnt = df["point"].to_physical().to_numpy()
        change = np.ones(n, bool)
        change[1:] = (dev[1:] != dev[:-1]) | (pnt[1:] != pnt[:-1])
        starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n).astype(np.int64)
    # ts: the first of each series absolute, the rest steps: a running sum restarted per series
    cs = np.cumsum(df["dt_us"].to_numpy())
    base = np.zeros(starts.size, np.int64)
    base[1:] = cs[starts[1:] - 1]
    us = cs - np.repeat(base, ends - starts)
    ts = us / 1e6
    devs = df["device"].gather(starts).cast(pl.String).to_list()
    pnts = df["point"].gather(starts).cast(pl.String).to_list()
    index = {(d, p): (int(s), int(e)) for d, p, s, e in zip(devs, pnts, starts, ends, strict=True)}
    value = df["value"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    quality = df["quality"].fill_null(0).to_numpy().astype(np.int8, copy=False)
    unit = Labels.of(df["unit"]) if full else None
    tags = Labels.of(df["tags"]) if full else None
    return DayData(path, index, ts, value, quality, unit, tags)


class DayCache:
    """Decoded day files, newest use kept, within a memory budget (bytes of arrays)."""

    def __init__(self, budget: int = 1 << 30) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._days: OrderedDict[tuple[Path, bool], DayData] = OrderedDict()

    def get(self, path: Path, *, full: bool = False) -> DayData:
        with self._lock:
            for key in ((path, True), (path, full)):
                if key in self._days:
                    self._days.move_to_end(key)
                    return self._days[key]
        day = decode(path, full=full)
        with self._lock:
            self._days[(path, full)] = day
            used = sum(d.nbytes for d in self._days.values())
            while used > self.budget and len(self._days) > 1:
                _, old = self._days.popitem(last=False)
                used -= old.nbytes
        return day

    def get_many(self, paths: Iterable[Path]) -> list[DayData]:
        """Several files decoded in parallel (polars and numpy release the GIL)."""
        from concurrent.futures import ThreadPoolExecutor

        todo = list(paths)
        if len(todo) <= 1:
            return [self.get(p) for p in todo]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="day-files") as pool:
            return list(pool.map(self.get, todo))

    def clear(self) -> None:
        with self._lock:
            self._days.clear()
