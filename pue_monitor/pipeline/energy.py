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
the split is linear). Every interval of every series gets a :class:`Status` and, when
ESTIMATED, a :class:`~pue_monitor.pipeline.events.Reason` bit mask, so the data completeness
that ISO/IEC 30134-2 asks to report alongside a PUE can be computed and explained.

**Plausibility** (one mechanism for the live pipeline, resume and backfill). A pair of
consecutive counter readings ``a -> b`` over ``dt`` seconds is *plausible* when

* ``-tol <= b - a <= e_max`` (``tol`` = the register ``resolution`` plus two float32 ulps of
  ``a``: backwards steps within it are jitter and count as zero energy; ``e_max`` =
  ``max_power_kw * dt`` in raw units), or
* it is a wrap: the series declares ``rollover`` ``R`` and ``0 <= R - a + b <= e_max`` and
  ``< R / 2``.

A reading ``i`` is a **glitch** (dropped, GLITCH event, the energy across it bridged by its
neighbours and the cells that pair spans flagged GLITCH_BRIDGED) when the trajectory without
it, ``i-1 -> i+1``, is plausible while the path through it is not, or explains more energy
(a spike falling back "as a wrap" adds a whole ``R``). A lone zero, denormal, low value or
spike followed by the old trajectory is therefore dropped, whatever the meter's rollover; a
real wrap (also over missed polls) is kept and exact. A remaining implausible pair is a
**reset or meter replacement** (RESET event): the counter continued from a new level. Its
energy is the new value when that is consistent with a restart from zero (at most 1.5x the
neighbouring pairs' energy), else the neighbouring pairs' mean rate times ``dt``; the cells it
spans are flagged RESET. Two readings with the same timestamp and different values are a
CONFLICT: the one nearer the line through the neighbouring readings is kept. A power reading
that is NaN, negative beyond its resolution (every meter of the model is a consumer) is
BAD_VALUE, one above ``max_power_kw`` a GLITCH; a power series' pair longer than ``max_gap``
leaves the cells it spans MISSING (a power integral over a hole would be a guess).

Everything is done for all series at once: one sort, one ``np.interp`` and two
``np.searchsorted`` over the whole batch; judging readings adds a few vectorised passes and
fancy indexing on the (few) suspicious rows; there is no Python loop over readings or
intervals.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.events import EventKind, Reason

__all__ = ["EVENT_KINDS", "FLOAT32_REL", "IntervalEnergy", "SeriesSpec", "Status", "interval_energy"]

#: relative tolerance of a float register: two float32 ulps (float32 energy registers lose
#: resolution as they grow: 8 Wh steps at 100 MWh)
FLOAT32_REL = 2.0**-22

#: ``IntervalEnergy.event_kind`` codes index this tuple
EVENT_KINDS: tuple[EventKind, ...] = tuple(EventKind)
_CODE = {k: i for i, k in enumerate(EVENT_KINDS)}

# packed per-pair flags (21-bit counters each) for one cumsum over all pairs
_GAP, _RESET_SH, _GLITCH_SH = 1, 21, 42
_MASK21 = np.uint64((1 << 21) - 1)


class Status(enum.IntEnum):
    """Data quality of one (series, interval) cell; higher is worse."""

    MEASURED = 0
    #: energy is known in total but its split over intervals is linear (gap > max_gap,
    #: counter reset, glitch bridged) or it comes from integrating power; see ``reason``
    ESTIMATED = 1
    #: the interval is not fully inside the series' first..last reading, or inside a power
    #: series' gap: energy unknown (0)
    MISSING = 2


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One energy source of one meter.

    ``factor`` converts the raw reading value to kWh (counter) or kW (power), e.g.
    ``UNITS[unit][1]`` from :mod:`pue_monitor.config.models`. ``rollover`` is in raw units (the
    reading's unit, before ``factor``). Reading spacing above ``max_gap`` seconds is a gap: it
    is bridged (counter) or MISSING (power), and the intervals it touches are flagged.
    ``max_power_kw`` is the meter's physically possible maximum (kW; an increment implying
    more is implausible); ``resolution`` the register's resolution in raw units (backwards
    steps within it are jitter, not resets; negative power within it is zero).
    """

    meter: str
    role: Role
    it_location: ITLocation | None
    kind: Literal["counter", "power"]
    factor: float
    rollover: float | None
    max_gap: float
    max_power_kw: float = math.inf
    resolution: float = 0.0

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
        if not (self.max_power_kw > 0):
            raise ValueError(f"{self.meter}: max_power_kw must be > 0, not {self.max_power_kw!r}")
        if not (math.isfinite(self.resolution) and self.resolution >= 0):
            raise ValueError(f"{self.meter}: resolution must be finite and >= 0")


def _empty_u8() -> np.ndarray:
    return np.zeros((0, 0), np.uint8)


@dataclass
class IntervalEnergy:
    """Energy on a regular grid: interval ``k`` is ``[start + k*step, start + (k+1)*step)``.

    ``reason`` is a :class:`Reason` bit mask per cell (0 unless ESTIMATED). ``event_row`` are
    indices into the arrays given to :func:`interval_energy` of the readings it judged, with
    ``event_kind`` codes into :data:`EVENT_KINDS` (GLITCH, CONFLICT and BAD_VALUE readings were
    dropped; RESET and ROLLOVER readings were used), sorted by row.
    """

    start: float
    step: float
    energy: np.ndarray  # float64 [n_series, n_intervals], kWh; 0 where MISSING
    status: np.ndarray  # int8    [n_series, n_intervals], Status
    reason: np.ndarray = field(default_factory=_empty_u8)  # uint8 [n_series, n_intervals], Reason
    event_row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    event_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))

    def __post_init__(self) -> None:
        if self.reason.shape != self.status.shape:
            if self.reason.size:
                raise ValueError("reason must have the shape of status")
            self.reason = np.zeros(self.status.shape, np.uint8)

    @property
    def n(self) -> int:
        return int(self.energy.shape[1])

    def starts(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.n, dtype=np.float64)

    def events(self) -> list[tuple[int, EventKind]]:
        """(row, kind) of every judged reading."""
        return [(r, EVENT_KINDS[k]) for r, k in zip(self.event_row.tolist(), self.event_kind.tolist(), strict=True)]

    def counts(self) -> dict[EventKind, int]:
        """Number of judged readings per kind (kinds with none are left out)."""
        c = np.bincount(self.event_kind, minlength=len(EVENT_KINDS))
        return {EVENT_KINDS[i]: int(v) for i, v in enumerate(c.tolist()) if v}


@dataclass(frozen=True)
class _SpecArrays:
    is_counter: np.ndarray
    factor: np.ndarray
    roll: np.ndarray  # NaN: no rollover
    max_gap: np.ndarray
    max_kw: np.ndarray
    res: np.ndarray
    rate_max: np.ndarray  # raw units per second at max_power_kw (counters: kWh/s / factor)


@functools.lru_cache(maxsize=64)  # the live pipeline asks for the same few tuples every tick
def _spec_arrays(specs: tuple[SeriesSpec, ...]) -> _SpecArrays:
    n = len(specs)
    is_counter = np.fromiter((s.kind == "counter" for s in specs), bool, n)
    factor = np.fromiter((s.factor for s in specs), np.float64, n)
    roll = np.fromiter((np.nan if s.rollover is None else s.rollover for s in specs), np.float64, n)
    max_gap = np.fromiter((s.max_gap for s in specs), np.float64, n)
    max_kw = np.fromiter((s.max_power_kw for s in specs), np.float64, n)
    res = np.fromiter((s.resolution for s in specs), np.float64, n)
    return _SpecArrays(is_counter, factor, roll, max_gap, max_kw, res, max_kw / 3600.0 / factor)


def _judge(
    a: np.ndarray, b: np.ndarray, dt: np.ndarray, s: np.ndarray, sa: _SpecArrays
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counter pairs ``a -> b``: (plausible, increment in raw units, is_wrap, tol)."""
    tol = sa.res[s] + FLOAT32_REL * np.abs(a)
    e_max = sa.rate_max[s] * dt + tol
    d = b - a
    up = (d >= -tol) & (d <= e_max)
    r = sa.roll[s]
    w = r - a + b
    with np.errstate(invalid="ignore"):
        wrap = (d < -tol) & (w >= 0) & (w <= e_max) & (w < 0.5 * r)  # NaN rollover -> False
    ok = up | wrap
    inc = np.where(wrap, w, np.maximum(d, 0.0))
    return ok, inc, wrap, tol


def _resolve_duplicates(
    sid: np.ndarray, ts: np.ndarray, value: np.ndarray, dup: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows to keep (mask) and conflicting rows dropped, for sorted rows with equal (sid, ts).

    Of each group of equal (sid, ts) the value nearest the line through the neighbouring
    readings of the series is kept (ties, or no neighbours: the smaller value), whatever the
    input order; dropped rows whose value differs from the kept one are conflicts.
    """
    n = sid.size
    head = np.ones(n, dtype=bool)
    head[1:] = ~dup
    gstart = np.flatnonzero(head)
    gend = np.append(gstart[1:], n)
    size = gend - gstart
    mg = np.flatnonzero(size > 1)
    gs, ge, cnt = gstart[mg], gend[mg], size[mg]
    ip, inx = np.maximum(gs - 1, 0), np.minimum(ge, n - 1)
    has_p = (gs > 0) & (sid[ip] == sid[gs])
    has_n = (ge < n) & (sid[inx] == sid[gs])
    vp, vn, tp, tn, tg = value[ip], value[inx], ts[ip], ts[inx], ts[gs]
    with np.errstate(invalid="ignore", divide="ignore"):
        line = vp + (vn - vp) * (tg - tp) / (tn - tp)
    ref = np.where(has_p & has_n, line, np.where(has_p, vp, np.where(has_n, vn, np.nan)))
    total = int(cnt.sum())
    offs = np.repeat(np.cumsum(cnt) - cnt, cnt)
    rows = np.repeat(gs, cnt) + (np.arange(total) - offs)
    gidx = np.repeat(np.arange(mg.size), cnt)
    v = value[rows]
    r = np.repeat(ref, cnt)
    score = np.where(np.isnan(r), 0.0, np.abs(v - r))
    o = np.lexsort((v, score, gidx))
    first = np.ones(total, dtype=bool)
    first[1:] = gidx[o][1:] != gidx[o][:-1]
    chosen = rows[o[first]]
    dropped = rows[o[~first]]
    conflict = dropped[value[dropped] != np.repeat(value[chosen], cnt - 1)]
    keep = head
    keep[gs] = False
    keep[chosen] = True
    return keep, conflict


class _Rows:
    """The working rows (sid, ts, value) and how they map back to the caller's indices."""

    def __init__(self, sid: np.ndarray, ts: np.ndarray, value: np.ndarray) -> None:
        self.sid, self.ts, self.value = sid, ts, value
        self._maps: list[np.ndarray] = []
        self.ev_rows: list[np.ndarray] = []
        self.ev_kinds: list[np.ndarray] = []
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def pairs(self, sa: _SpecArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:func:`_judge` of every consecutive pair of rows (cached until the rows change)."""
        if self._pairs is None:
            v = self.value
            self._pairs = _judge(v[:-1], v[1:], np.diff(self.ts), self.sid[1:], sa)
        return self._pairs

    def take(self, idx: np.ndarray) -> None:
        """Keep rows ``idx`` (indices or a boolean mask) in that order."""
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        self.sid, self.ts, self.value = self.sid[idx], self.ts[idx], self.value[idx]
        self._maps.append(idx)
        self._pairs = None

    def orig(self, pos: np.ndarray) -> np.ndarray:
        for m in reversed(self._maps):
            pos = m[pos]
        return pos

    def event(self, pos: np.ndarray, kind: EventKind, *, original: bool = False) -> None:
        if pos.size:
            self.ev_rows.append(pos.astype(np.int64) if original else self.orig(pos))
            self.ev_kinds.append(np.full(pos.size, _CODE[kind], np.uint8))


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
    hold_last: bool = False,
) -> IntervalEnergy:
    """Energy (kWh), :class:`Status`, :class:`Reason` and judged readings of every series on
    the grid ``start + k*step``, ``k < n``.

    ``sid[i]`` indexes ``specs``; ``ts`` are POSIX seconds, ``value`` raw values, ``good`` an
    optional mask of GOOD-quality rows. Input need not be sorted. Bad-quality rows and ``sid``
    outside ``specs`` are dropped silently; non-finite rows and impossible power are dropped as
    BAD_VALUE; duplicates, glitches, resets and rollovers are judged as the module docs say
    (deterministic whatever the input order).

    Counter deltas (per ISO/IEC 30134-2 energy is the difference of cumulative meter readings)
    are exact for plausible pairs and across bridged glitches; reset pairs are estimated.
    Power is integrated with the trapezoidal rule (kWh = kW * s / 3600), ESTIMATED.

    ``hold_last`` (live use): a counter's newest reading is left out while it cannot be judged
    yet — its pair with the previous reading is implausible, a wrap, or more than 4x the
    previous pair's rate — until the next reading shows whether it is a glitch.
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
    reason = np.zeros((n_series, n), dtype=np.uint8)
    out = IntervalEnergy(start=start, step=step, energy=energy, status=status, reason=reason)

    sid = np.asarray(sid)
    ts = np.asarray(ts, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    if not (sid.shape == ts.shape == value.shape) or sid.ndim != 1:
        raise ValueError("sid, ts and value must be 1-D arrays of the same length")
    if n_series == 0 or sid.size == 0:
        return out
    sa = _spec_arrays(specs)
    rows = _Rows(sid, ts, value)

    # ---- input hygiene: unknown series and bad quality silently, non-finite / impossible loudly
    keep = (sid >= 0) & (sid < n_series)
    if good is not None:
        good = np.asarray(good, dtype=bool)
        if good.shape != ts.shape:
            raise ValueError("good must have the same length as ts")
        keep &= good
    finite = np.isfinite(ts) & np.isfinite(value)
    bad = keep & ~finite
    keep &= finite
    has_power = not bool(sa.is_counter.all())
    p_glitch: np.ndarray | None = None
    if has_power:
        s0 = np.where(keep, sid, 0)
        pw = keep & ~sa.is_counter[s0]
        if pw.any():
            neg = pw & (value < -sa.res[s0])
            high = pw & (value * sa.factor[s0] > sa.max_kw[s0])
            bad |= neg
            keep &= ~neg
            if high.any():
                p_glitch = high  # judged GLITCH; kept until sorted to know what it bridges
    if bad.any():
        rows.event(np.flatnonzero(bad), EventKind.BAD_VALUE, original=True)
    if not keep.any():
        return _finish(out, rows)
    if not keep.all():
        rows.take(keep)
        if p_glitch is not None:
            p_glitch = p_glitch[keep]
    rows.sid = rows.sid.astype(np.int64, copy=False)

    # ---- sort by (sid, ts) — stable, so the result does not depend on input order
    sid, ts = rows.sid, rows.ts
    srt = np.diff(sid) if sid.size > 1 else np.zeros(0, np.int64)
    already = sid.size < 2 or bool(np.all((srt > 0) | ((srt == 0) & (np.diff(ts) > 0))))
    if not already:
        # stable sort by ts, then stable (radix for small ints) by sid == lexsort((ts, sid))
        o1 = np.argsort(ts, kind="stable")
        key = sid[o1].astype(np.int16 if n_series <= np.iinfo(np.int16).max else np.int64)
        order = o1[np.argsort(key, kind="stable")]
        rows.take(order)
        if p_glitch is not None:
            p_glitch = p_glitch[order]
        sid, ts = rows.sid, rows.ts
        dup = (sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1])
        if dup.any():  # equal (sid, ts): keep the one on the trajectory, whatever the input order
            o2 = np.lexsort((rows.value, ts, sid))  # values in order too: input order never matters
            rows.take(o2)
            if p_glitch is not None:
                p_glitch = p_glitch[o2]
            sid, ts = rows.sid, rows.ts
            kmask, conflict = _resolve_duplicates(sid, ts, rows.value, dup)
            rows.event(conflict, EventKind.CONFLICT)
            rows.take(kmask)
            if p_glitch is not None:
                p_glitch = p_glitch[kmask]

    # ---- glitches: judged on the trajectory, dropped, the pair across them flagged
    bridged_rows: np.ndarray | None = None
    for k in range(1, MAX_GLITCH_RUN + 1):  # single bad readings first, then runs of 2, 3
        glitch = _counter_glitches(rows, sa, k, pending_last=hold_last)
        if k == 1 and p_glitch is not None:
            glitch = p_glitch if glitch is None else glitch | p_glitch
        if glitch is None:
            break
        if not glitch.any():
            continue
        rows.event(np.flatnonzero(glitch), EventKind.GLITCH)
        keep_g = ~glitch
        before = np.cumsum(glitch)[keep_g]  # glitches up to each kept row
        rows.take(keep_g)
        bridged = np.zeros(rows.sid.size, dtype=bool)
        bridged[1:] = before[1:] != before[:-1]  # a glitch lies between row j-1 and j
        bridged_rows = bridged if bridged_rows is None else bridged | bridged_rows[keep_g]

    if hold_last:
        held = _held_rows(rows, sa)
        if held is not None:
            keep_h = ~held
            rows.take(keep_h)
            if bridged_rows is not None:
                bridged_rows = bridged_rows[keep_h]

    _grid(out, rows, sa, bridged_rows)
    return _finish(out, rows)


def _finish(out: IntervalEnergy, rows: _Rows) -> IntervalEnergy:
    if rows.ev_rows:
        r = np.concatenate(rows.ev_rows)
        k = np.concatenate(rows.ev_kinds)
        o = np.argsort(r, kind="stable")
        out.event_row, out.event_kind = r[o], k[o]
    return out


def _series_bounds(sid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """new_series mask, first and last row of each series (rows sorted by sid)."""
    n_rows = sid.size
    new_series = np.empty(n_rows, dtype=bool)
    new_series[0] = True
    np.not_equal(sid[1:], sid[:-1], out=new_series[1:])
    first_idx = np.flatnonzero(new_series)
    last_idx = np.empty_like(first_idx)
    last_idx[:-1] = first_idx[1:] - 1
    last_idx[-1] = n_rows - 1
    return new_series, first_idx, last_idx


#: longest run of consecutive bad readings recognised as a glitch (bridged by its neighbours)
MAX_GLITCH_RUN = 3


def _counter_glitches(rows: _Rows, sa: _SpecArrays, k: int, *, pending_last: bool = False) -> np.ndarray | None:
    """Mask of counter readings judged glitches in runs of ``k`` (None: nothing is suspicious).

    Rows ``i .. i+k-1`` are a glitch run when the pair ``i-1 -> i+k`` across them is plausible
    while the path through them has an implausible pair or more energy. Overlapping or adjacent
    candidate runs: the one farther from the line through its neighbours wins.

    ``pending_last`` (live use): a series' newest reading is judged only once the next one
    arrives, so when ``i+k`` is the newest and the only evidence against the run is the step
    into it (the path up to ``i+k-1`` plausible, no extra energy), the newest reading is the
    suspect, not the run: a spike arriving as the newest reading must not drop the good readings
    before it.
    """
    sid, ts, v = rows.sid, rows.ts, rows.value
    n_rows = sid.size
    if n_rows < k + 2 or not sa.is_counter.any():
        return None
    s = sid[1:]
    same = s == sid[:-1]
    ok, inc, wrap, _ = rows.pairs(sa)
    sus = same & sa.is_counter[s] & (~ok | wrap)  # pair p = rows (p, p+1)
    if not sus.any():
        return None
    mask = np.zeros(n_rows, dtype=bool)
    p = np.flatnonzero(sus)
    cand = np.unique(np.concatenate([p + d for d in range(-k + 1, 2)]))
    cand = cand[(cand >= 1) & (cand + k <= n_rows - 1)]
    sc = sid[cand]
    cand = cand[(sid[cand - 1] == sc) & (sid[cand + k] == sc)]
    if cand.size == 0:
        return mask
    i0, i2 = cand - 1, cand + k
    ok_skip, inc_skip, _, tol = _judge(v[i0], v[i2], ts[i2] - ts[i0], sid[cand], sa)
    path_ok = np.ones(cand.size, dtype=bool)
    path_inc = np.zeros(cand.size)
    for j in range(k):  # the k+1 pairs of the path through the run, the last one below
        path_ok &= ok[i0 + j]
        path_inc += inc[i0 + j]
    before_last_ok = path_ok.copy()
    path_ok &= ok[i0 + k]
    path_inc += inc[i0 + k]
    more = path_inc > inc_skip + 2.0 * tol
    g = ok_skip & (~path_ok | more)
    if pending_last:
        newest = (i2 == n_rows - 1) | (sid[np.minimum(i2 + 1, n_rows - 1)] != sid[cand])
        g &= ~(newest & before_last_ok & ~more)
    hit = cand[g]
    if hit.size == 0:
        return mask
    near = np.diff(hit) <= k  # runs that overlap or touch: only one of them can be the glitch
    if near.any():
        clash = np.zeros(hit.size, dtype=bool)
        clash[1:] |= near
        clash[:-1] |= near
        ch = hit[clash]
        h0, h2 = ch - 1, ch + k
        slope = (v[h2] - v[h0]) / (ts[h2] - ts[h0])
        dev = np.zeros(ch.size)
        for j in range(k):
            dev = np.maximum(dev, np.abs(v[ch + j] - (v[h0] + slope * (ts[ch + j] - ts[h0]))))
        taken: set[int] = set()
        for idx in np.argsort(-dev, kind="stable").tolist():  # few: clashing candidates only
            h = int(ch[idx])
            if not any(h + j in taken for j in range(-k, k + 1)):
                taken.add(h)
        hit = np.sort(np.concatenate([hit[~clash], np.fromiter(taken, np.int64, len(taken))]))
    for j in range(k):
        mask[hit + j] = True
    return mask


def _held_rows(rows: _Rows, sa: _SpecArrays) -> np.ndarray | None:
    """Newest counter readings that cannot be judged before the next one arrives."""
    sid, ts, v = rows.sid, rows.ts, rows.value
    if sid.size < 2:
        return None
    _, first_idx, last_idx = _series_bounds(sid)
    li = last_idx[(last_idx > first_idx) & sa.is_counter[sid[last_idx]]]
    if li.size == 0:
        return None
    s = sid[li]
    dt = ts[li] - ts[li - 1]
    ok, inc, wrap, tol = _judge(v[li - 1], v[li], dt, s, sa)
    held = ~ok | wrap
    pi = li - 2  # the pair before, if in the same series
    has_prev = (pi >= 0) & (sid[np.maximum(pi, 0)] == s)
    if has_prev.any():
        q = li[has_prev]
        ok_p, inc_p, _, _ = _judge(v[q - 2], v[q - 1], ts[q - 1] - ts[q - 2], s[has_prev], sa)
        rate_p = inc_p / (ts[q - 1] - ts[q - 2])
        jump = ok_p & (inc[has_prev] > 4.0 * rate_p * dt[has_prev] + tol[has_prev])
        held[has_prev] |= jump
    if not held.any():
        return None
    mask = np.zeros(sid.size, dtype=bool)
    mask[li[held]] = True
    return mask


def _neighbour_rate(rate: np.ndarray, valid: np.ndarray, pair_sid: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Mean of the nearest valid ``rate`` before and after each pair ``at`` of the same series
    (NaN where the series has no valid pair)."""
    m = rate.size
    idx = np.where(valid, np.arange(m), -1)
    prev = np.maximum.accumulate(idx)[at]
    idx_n = np.where(valid, np.arange(m), m)
    nxt = np.minimum.accumulate(idx_n[::-1])[::-1][at]
    s = pair_sid[at]
    hp = (prev >= 0) & (pair_sid[np.maximum(prev, 0)] == s)
    hn = (nxt < m) & (pair_sid[np.minimum(nxt, m - 1)] == s)
    rp = np.where(hp, rate[np.maximum(prev, 0)], np.nan)
    rn = np.where(hn, rate[np.minimum(nxt, m - 1)], np.nan)
    both = hp & hn
    return np.where(both, 0.5 * (rp + rn), np.where(hp, rp, rn))


def _grid(out: IntervalEnergy, rows: _Rows, sa: _SpecArrays, bridged_rows: np.ndarray | None) -> None:
    """Energy, status and reason of every cell from the judged rows."""
    sid, ts, value = rows.sid, rows.ts, rows.value
    n_rows = sid.size
    if n_rows == 0:
        return
    start, step, n = out.start, out.step, out.n
    new_series, first_idx, last_idx = _series_bounds(sid)
    present = sid[first_idx]  # series that have readings, ascending

    # ---- increments of each reading pair (pair p ends at row p+1)
    sp = sid[1:]
    same = ~new_series[1:]
    prev_v, cur_v = value[:-1], value[1:]
    dt = np.diff(ts)
    counter_p = sa.is_counter[sp]
    ok, inc_raw, wrap, tol = rows.pairs(sa)
    wrap = wrap.copy()
    power_p = ~counter_p
    inc = np.where(
        counter_p,
        inc_raw,
        (np.maximum(prev_v, 0.0) + np.maximum(cur_v, 0.0)) * (0.5 / 3600.0) * dt,  # kW*s -> kWh
    )
    level = same & counter_p & ~ok  # reset or replacement: continues from a new level
    if level.any():
        at = np.flatnonzero(level)
        valid = same & counter_p & ok
        rate = _neighbour_rate(np.where(valid, inc_raw / np.where(dt > 0, dt, 1.0), 0.0), valid, sp, at)
        cur, d_at, t_at = cur_v[at], dt[at], tol[at]
        known = np.isfinite(rate)
        r0 = np.where(known, rate, 0.0)
        restart = (cur >= 0) & (cur <= 1.5 * r0 * d_at + t_at)
        e_max = sa.rate_max[sp[at]] * d_at + t_at
        inc[at] = np.where(
            known,
            np.where(restart, np.maximum(cur, r0 * d_at), r0 * d_at),
            np.where((cur >= 0) & (cur <= e_max), cur, 0.0),
        )
        rows.event(at + 1, EventKind.RESET)
    wrap &= same & counter_p
    if wrap.any():
        rows.event(np.flatnonzero(wrap) + 1, EventKind.ROLLOVER)
    inc *= sa.factor[sp]
    inc[~same] = 0.0
    gap = same & (dt > sa.max_gap[sp])

    # packed flags: gap | reset << 21 | glitch bridged << 42, cumulated over pairs
    flags = gap.astype(np.uint64)
    if level.any():
        flags |= level.astype(np.uint64) << np.uint64(_RESET_SH)
    any_glitch = bridged_rows is not None and bool(bridged_rows.any())
    if any_glitch:
        assert bridged_rows is not None
        flags |= (bridged_rows[1:] & same).astype(np.uint64) << np.uint64(_GLITCH_SH)

    # monotonic cumulative energy per series (kWh), made relative to each series' first row
    cum = np.empty(n_rows, dtype=np.float64)
    cum[0] = 0.0
    np.cumsum(inc, out=cum[1:])
    cum -= np.repeat(cum[first_idx], last_idx - first_idx + 1)
    cflag = np.empty(n_rows, dtype=np.uint64)
    cflag[0] = 0
    np.cumsum(flags, out=cflag[1:])

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
    np.clip(lo, 1, max(n_rows - 1, 1), out=lo)
    np.clip(hi, 0, n_rows - 1, out=hi)
    fl = cflag[hi] - cflag[lo - 1]  # uint64: exact (modular) per-field counts
    ctr = sa.is_counter[present][:, None]
    is_gap = (fl & _MASK21) != 0
    rs = np.where(is_gap & ctr, np.uint8(Reason.GAP_SPLIT), np.uint8(0))
    if level.any():
        rs |= np.where(((fl >> np.uint64(_RESET_SH)) & _MASK21) != 0, np.uint8(Reason.RESET), np.uint8(0))
    if any_glitch:
        rs |= np.where((fl >> np.uint64(_GLITCH_SH)) != 0, np.uint8(Reason.GLITCH_BRIDGED), np.uint8(0))
    if power_p.any():
        rs |= np.where(ctr, np.uint8(0), np.uint8(Reason.POWER_INTEGRATED))
        covered &= ctr | ~is_gap  # a power series' gap is MISSING, not estimated
    st = np.where(rs != 0, Status.ESTIMATED, Status.MEASURED).astype(np.int8)
    st[~covered] = Status.MISSING
    e[~covered] = 0.0
    rs[~covered] = 0

    out.energy[present] = e
    out.status[present] = st
    out.reason[present] = rs
