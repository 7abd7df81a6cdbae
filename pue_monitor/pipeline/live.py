"""Incremental energy/PUE engine for the running service.

Wraps :func:`~pue_monitor.pipeline.energy.interval_energy` and the rollup of
:mod:`pue_monitor.pipeline.pue`: readings are buffered per series, :meth:`LivePipeline.close`
recomputes the not-yet-final intervals on a fixed ``step`` grid and returns the intervals that
are new or whose values changed (a late counter reading that bridges a gap restates the
intervals of the gap — the caller upserts by ``start``).

Finality, per series: an interval is final once a *judged* reading at/after its end exists
(later readings cannot change it), or once it ends more than ``horizon`` seconds before
``now`` (then it stays MISSING if it was). A lone zero or a spike can only be told from a reset
by the reading after it, so a counter's newest reading is *held*: it is left out of the energy
while its step from the previous reading is implausible, a wrap or a rate jump (> 4x), and the
intervals after the previous reading are reported MISSING until the next poll (one poll interval
of latency, only around suspicious readings). A counter reading's judgement (its event, and the
finality of the intervals up to it) waits for two newer readings, since the next one may be the
glitch; intervals are still reported (and restated) before they are final. Buffers keep, per
series, only the last good reading at/before the start of its first non-final interval and
everything after, so memory stays bounded by the horizon.

Time: a reading older than its series' newest accepted one is rejected (LATE), not re-sorted
into history; one outside ``[now - horizon, now + max_ahead]`` (``now`` = the latest ``now``
given to :meth:`LivePipeline.close` or :meth:`LivePipeline.ingest`) is rejected
(OUT_OF_WINDOW), so one old or future reading can neither make the pipeline build every interval
since then nor move finality or live power past the present. Judgements are queued as
:class:`~pue_monitor.pipeline.events.PipelineEvent` for :meth:`LivePipeline.drain_events`.

Cost (issue 13): a tick handles only what arrived since the last one. The time checks of a
batch are vectorised; accepted readings wait in small chunks sorted by (series, time, value);
the last and previous reading per series (for :meth:`LivePipeline.instant`, vectorised over the
series) are kept in arrays. The full pass — merge the chunks into the kept rows (an insert, not
a re-sort: a series' readings never go back in time), recompute the open intervals with
:func:`interval_energy`, judge, finalise, trim — runs only when it can change something: the
grid end moved, a series still open got readings, the horizon or a retirement finalises
something, or a reading lands at/before its series' first open interval. Otherwise
:meth:`LivePipeline.close` returns ``[]`` at once, exactly what the full pass would have
returned, so the results are bit for bit those of a full pass at every tick.

Threads: :meth:`LivePipeline.ingest` (without ``now``) may run on one thread (the event loop)
while :meth:`LivePipeline.close` runs on another (the service's worker thread): ingest only
appends to staging lists and the event queue, under a lock. ``close``, ``instant``, ``respec``
and ``ingest(now=...)`` must not run concurrently with each other.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from pue_monitor.config.models import Role
from pue_monitor.pipeline.energy import EVENT_KINDS, SeriesSpec, Status, interval_energy
from pue_monitor.pipeline.events import EventKind, PipelineEvent
from pue_monitor.pipeline.kpi import KpiBasis
from pue_monitor.pipeline.pue import PueInterval, _layout, _rollup_arrays
from pue_monitor.readings import Quality, Reading

#: judgements that drop the reading (the others keep it)
_DROPPED = frozenset({EventKind.GLITCH, EventKind.CONFLICT, EventKind.BAD_VALUE})

__all__ = ["InstantPower", "LivePipeline", "ModelChange"]

#: a cell recomputed within this tolerance of its previous value is "unchanged" (rounding)
_RTOL = 1e-9
_ATOL = 1e-9  # kWh
_NEVER = 2**62  # k_stop of a series that is not retired
#: SeriesSpec fields that only change how readings are judged: swapped in place by respec()
_JUDGEMENT = ("max_gap", "max_power_kw", "resolution")


@dataclass(frozen=True)
class InstantPower:
    """Latest power per role (kW) and the instantaneous power ratio facility/IT.

    Not an ISO/IEC 30134-2 PUE (that is a ratio of energies); for live display only.
    """

    ts: float
    power_by_role: dict[str, float]
    pue: float | None


@dataclass
class ModelChange:
    """What :meth:`LivePipeline.respec` did, by (device, point)."""

    kept: list[tuple[str, str]] = field(default_factory=list)
    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)


class LivePipeline:
    """Per-series buffers + incremental :func:`interval_energy` + rollup."""

    def __init__(
        self,
        specs_by_point: Mapping[tuple[str, str], SeriesSpec],
        *,
        step: float = 60.0,
        horizon: float = 7 * 86400,
        max_ahead: float = 600.0,
        max_events: int = 10_000,
        kpi: KpiBasis | None = None,
    ) -> None:
        if not specs_by_point:
            raise ValueError("no series")
        if not (step > 0) or not (horizon > 0) or not (max_ahead >= 0):
            raise ValueError("step and horizon must be > 0, max_ahead >= 0")
        self._keys = list(specs_by_point)
        self._specs = tuple(specs_by_point[k] for k in self._keys)
        self._index = {k: i for i, k in enumerate(self._keys)}
        self._layout = _layout(self._specs)  # validates roles per meter
        self.kpi = kpi
        self.step = float(step)
        self.horizon = float(horizon)
        self.max_ahead = float(max_ahead)
        n = len(self._specs)
        self._is_counter = np.array([s.kind == "counter" for s in self._specs], dtype=bool)
        # buffers: kept (sorted by sid, ts) arrays + pending rows from ingest()
        self._sid = np.zeros(0, np.int64)
        self._ts = np.zeros(0, np.float64)
        self._val = np.zeros(0, np.float64)
        self._drop = np.zeros(0, bool)  # judged (final) glitch / conflict rows, kept for context
        # ingest() may run on the event loop while close() runs in a worker thread: the
        # staging lists and the event queue are swapped/appended under this lock
        self._lock = threading.RLock()
        self._u_sid: list[int] = []  # ingested, time not checked yet
        self._u_ts: list[float] = []
        self._u_val: list[float] = []
        #: accepted, not merged yet: chunks each sorted by (sid, ts, value), in arrival order
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._n_pending = 0
        self._verified = 0  # pending chunks checked by _due() against the current finality
        self._dirty = np.zeros(n, bool)  # series with pending rows
        self._k_full = -1  # k_end of the last full pass (-1: a full pass is due)
        # grid and per-series finality (interval indices relative to start0)
        self.start0: float | None = None
        self._done = np.zeros(n, np.int64)  # first non-final interval per series
        self._win_k0 = 0  # window covers intervals [win_k0, computed)
        self._computed = 0
        self._win_e = np.zeros((n, 0), np.float64)
        self._win_s = np.zeros((n, 0), np.int8)
        self._win_r = np.zeros((n, 0), np.uint8)
        # for instant(): latest and previous reading (first at each newer ts) per series
        self._last_t = np.full(n, -math.inf)
        self._last_v = np.full(n, math.nan)
        self._prev_t = np.full(n, -math.inf)
        self._prev_v = np.full(n, math.nan)
        # time: the latest ``now`` we were told; readings before it are checked at close()
        self._now: float | None = None
        self._last_ts = np.full(n, -math.inf)  # newest accepted reading per series
        self._evt_ts = np.full(n, -math.inf)  # events emitted up to this ts per series
        self._events: collections.deque[PipelineEvent] = collections.deque(maxlen=max_events)
        # model changes (respec): series i counts in the intervals starting in [join, leave);
        # a retired series' cells from k_stop on are irrelevant (final)
        self._join = np.full(n, -math.inf)
        self._leave = np.full(n, math.inf)
        self._k_stop = np.full(n, _NEVER, np.int64)
        self._epochs = False  # True once a respec made the model differ between intervals
        #: new meters waiting for their first readings: meter -> (series, deadline)
        self._waiting: dict[str, tuple[list[int], float]] = {}
        self._waiting_sids: dict[int, str] = {}
        self._first_ts: dict[int, float] = {}
        #: judged readings per kind since the start (never reset; drain_events() does not clear it)
        self.counts: collections.Counter[EventKind] = collections.Counter()
        self._spec_cache: _InstantArrays | None = None  # instant()'s per-series arrays

    @property
    def buffered(self) -> int:
        """Number of readings held in the buffers (bounded by trimming)."""
        return int(self._ts.size) + self._n_pending + len(self._u_ts)

    @property
    def window(self) -> int:
        """Number of intervals held for restating (from the first non-final one)."""
        return int(self._win_e.shape[1])

    # ------------------------------------------------------------------ ingest

    def ingest(self, readings: Iterable[Reading], *, now: float | None = None) -> None:
        """Buffer readings of known (device, point); others and BAD quality are ignored.

        NaN, infinite and negative power (beyond the series' resolution) are rejected as
        BAD_VALUE at once. The time checks — outside ``[now - horizon, now + max_ahead]`` is
        OUT_OF_WINDOW, older than the series' newest accepted reading is LATE — run in arrival
        order against ``now`` when given, else at the next :meth:`close` (or :meth:`instant`)
        against its ``now``.
        """
        with self._lock:
            index, specs = self._index, self._specs
            u_sid, u_ts, u_val = self._u_sid, self._u_ts, self._u_val
            good, isfinite = Quality.GOOD, math.isfinite
            for r in readings:
                i = index.get((r.device, r.point))
                if i is None or r.quality != good:
                    continue
                ts, v = float(r.ts), float(r.value)
                if not (isfinite(ts) and isfinite(v)):
                    self._event(i, ts, v, EventKind.BAD_VALUE, "not a finite number")
                    continue
                if v < 0.0:
                    sp = specs[i]
                    if sp.kind == "power" and v < -sp.resolution:
                        self._event(i, ts, v, EventKind.BAD_VALUE, "negative power on a consumer meter")
                        continue
                u_sid.append(i)
                u_ts.append(ts)
                u_val.append(v)
        if now is not None and math.isfinite(now):
            self._now = float(now)
            self._check(self._now)

    def _event(self, i: int, ts: float, v: float | None, kind: EventKind, detail: str = "") -> None:
        dev, point = self._keys[i]
        with self._lock:
            self.counts[kind] += 1
            self._events.append(PipelineEvent(ts=ts, device=dev, point=point, kind=kind, value=v, detail=detail))

    def drain_events(self) -> list[PipelineEvent]:
        """Judgements made since the last call (oldest first; at most ``max_events`` are kept
        between calls, ``counts`` has them all)."""
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    def _check(self, now: float) -> None:
        """Time checks of the readings ingested since the last call, in arrival order.

        Vectorised: a reading inside the window is accepted iff it is not older than the newest
        earlier one of its series inside the window (or the series' newest accepted before this
        batch): a rejected reading is older than that maximum, so it never changes it."""
        with self._lock:
            if not self._u_sid:
                return
            sid = np.asarray(self._u_sid, np.int64)
            ts = np.asarray(self._u_ts, np.float64)
            val = np.asarray(self._u_val, np.float64)
            self._u_sid, self._u_ts, self._u_val = [], [], []
        lo, hi = now - self.horizon, now + self.max_ahead
        inside = (ts >= lo) & (ts <= hi)
        w = np.flatnonzero(inside)
        o = w[np.argsort(sid[w], kind="stable")]  # by series, arrival order within
        so, to = sid[o], ts[o]
        first = np.ones(o.size, dtype=bool)
        first[1:] = so[1:] != so[:-1]
        prior = self._last_ts[so]  # newest accepted before this batch
        if o.size > 1:
            # exclusive running max of ts within each series: ranks offset by series
            uniq, rank = np.unique(to, return_inverse=True)
            key = so * (uniq.size + 1) + rank.reshape(-1)
            run = np.maximum.accumulate(key)
            prev_rank = np.empty(o.size, np.int64)
            prev_rank[1:] = run[:-1] - so[1:] * (uniq.size + 1)
            within = ~first
            prior = np.where(within, np.maximum(prior, uniq[np.where(within, prev_rank, 0)]), prior)
        late = to < prior
        acc_o = o[~late]
        if not inside.all() or late.any():  # events in arrival order
            rej = np.zeros(sid.size, dtype=bool)
            rej[~inside] = True
            rej[o[late]] = True
            behind = np.zeros(sid.size)
            behind[o[late]] = prior[late]
            for r in np.flatnonzero(rej).tolist():
                i, t, v = int(sid[r]), float(ts[r]), float(val[r])
                if not inside[r]:
                    side = "ahead of" if t > now else "behind"
                    detail = f"{abs(t - now):.0f} s {side} the pipeline clock"
                    self._event(i, t, v, EventKind.OUT_OF_WINDOW, detail)
                else:
                    detail = f"{float(behind[r]) - t:.3f} s older than the series' newest"
                    self._event(i, t, v, EventKind.LATE, detail)
        if acc_o.size == 0:
            return
        acc = np.sort(acc_o)  # accepted rows in arrival order
        a_sid, a_ts, a_val = sid[acc], ts[acc], val[acc]
        if self._waiting_sids:  # new meters: their first readings, in arrival order
            for i, t in zip(a_sid.tolist(), a_ts.tolist(), strict=True):
                if i in self._waiting_sids:
                    self._first_reading(i, t)
        # last/prev for instant(): each series' first reading at each newer ts
        sa, ta, va = sid[acc_o], ts[acc_o], val[acc_o]  # by series, arrival order within
        head = np.ones(sa.size, dtype=bool)
        head[1:] = sa[1:] != sa[:-1]
        before = np.empty(sa.size)
        before[1:] = ta[:-1]
        before[head] = self._last_t[sa[head]]
        upd = np.flatnonzero(ta > before)
        if upd.size:
            us = sa[upd]
            last_of = np.ones(upd.size, dtype=bool)
            last_of[:-1] = us[1:] != us[:-1]
            two = np.zeros(upd.size, dtype=bool)  # the update before the last one, same series
            two[:-1] = last_of[1:] & (us[:-1] == us[1:])
            single = last_of & ~np.roll(two, 1) if upd.size > 1 else last_of
            s1 = us[single]
            self._prev_t[s1], self._prev_v[s1] = self._last_t[s1], self._last_v[s1]
            s2, r2 = us[two], upd[two]
            self._prev_t[s2], self._prev_v[s2] = ta[r2], va[r2]
            sl, rl = us[last_of], upd[last_of]
            self._last_t[sl], self._last_v[sl] = ta[rl], va[rl]
        np.maximum.at(self._last_ts, sa, ta)
        chunk = np.lexsort((a_val, a_ts, a_sid))  # stable: arrival order among equal rows
        self._pending.append((a_sid[chunk], a_ts[chunk], a_val[chunk]))
        self._n_pending += int(chunk.size)
        self._dirty[a_sid] = True

    def _merge_pending(self) -> None:
        """Merge the pending chunks into the kept rows: the same order as a stable lexsort by
        (sid, ts, value) of the kept rows followed by the pending ones in arrival order.

        A series' accepted readings never go back in time, so a stable sort by series alone
        (a radix sort of small integers, linear) already orders the rows by (sid, ts); only
        equal stamps (a duplicate across two batches) may need the value order, and then the
        full lexsort runs."""
        if not self._pending:
            return
        chunks, self._pending, self._n_pending = self._pending, [], 0
        self._dirty[:] = False
        parts = [(self._sid, self._ts, self._val)] if self._sid.size else []
        parts += chunks
        n_kept = int(self._sid.size)
        if len(parts) == 1:
            self._sid, self._ts, self._val = chunks[0]
            self._drop = np.zeros(self._sid.size, bool)
            return
        sid = np.concatenate([p[0] for p in parts])
        ts = np.concatenate([p[1] for p in parts])
        val = np.concatenate([p[2] for p in parts])
        drop = np.zeros(sid.size, bool)
        drop[:n_kept] = self._drop
        key = sid.astype(np.int16) if len(self._specs) <= np.iinfo(np.int16).max else sid
        o = np.argsort(key, kind="stable")
        sid, ts, val, drop = sid[o], ts[o], val[o], drop[o]
        tie = (sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1]) & (val[1:] < val[:-1])
        if tie.any():
            o = np.lexsort((val, ts, sid))  # stable: equal rows stay in arrival order
            sid, ts, val, drop = sid[o], ts[o], val[o], drop[o]
        self._sid, self._ts, self._val, self._drop = sid, ts, val, drop

    # ------------------------------------------------------------------ respec

    def respec(self, specs_by_point: Mapping[tuple[str, str], SeriesSpec], *, now: float) -> ModelChange:
        """Swap the energy model (a configuration reload) without losing any state of the
        series that continue.

        Per (device, point):

        - same spec: kept as is (buffers, finality, judgements; its energy continues exactly);
        - only ``max_gap``/``max_power_kw``/``resolution`` differ: the spec is swapped in place;
        - gone: the series is *retired*: it counts in the intervals before ``B`` and in no later
          one, where ``B`` is the start of its last reading's interval, but never before the
          first interval not yet computed (intervals already reported keep their data);
        - otherwise changed (role, IT location, unit, rollover, ...): retired as above, and the
          new version counts from the same ``B`` on. When its readings mean the same (kind,
          factor and rollover equal: a new role or IT location) it starts with the old
          version's readings, so its energy continues; otherwise it has none before its first
          new reading and is MISSING until then (never silently absent);
        - new: its meter joins the model at the first interval that starts after the first
          reading of each of its new series (so a new meter does not show MISSING for the
          minutes before it was ever polled), or, if a series has no reading within three
          ``max_gap`` of ``now``, at that deadline (from then on MISSING, never silently
          absent).

        Raises ValueError (nothing changed) when the new model has no series or a meter with
        mixed roles.
        """
        if not specs_by_point:
            raise ValueError("no series")
        _layout(tuple(specs_by_point.values()))  # validates roles per meter
        ref = self._now if self._now is not None else max(self._u_ts, default=None)
        if ref is not None:  # readings ingested so far belong to the series as they were
            self._check(ref)
        change = ModelChange()
        cut = self._next_start()
        # new series are appended; retired ones keep their rows until the window passes them
        add_keys: list[tuple[str, str]] = []
        add_specs: list[SeriesSpec] = []
        add_join: list[float] = []
        specs = list(self._specs)
        retire: dict[int, float] = {}
        new_meters: dict[str, list[int]] = {}
        carry: list[tuple[int, int]] = []  # (old, new) series of a changed meter with the same readings
        for key, spec in specs_by_point.items():
            i = self._index.get(key)
            if i is not None and specs[i] == spec:
                change.kept.append(key)
                continue
            if i is not None and all(
                getattr(specs[i], f) == getattr(spec, f) for f in SeriesSpec.__dataclass_fields__ if f not in _JUDGEMENT
            ):
                specs[i] = spec
                change.kept.append(key)
                continue
            sid = len(specs) + len(add_specs)
            if i is not None:
                retire[i] = self._boundary(i, cut)
                add_join.append(retire[i])
                change.changed.append(key)
                if (spec.kind, spec.factor, spec.rollover) == (specs[i].kind, specs[i].factor, specs[i].rollover):
                    carry.append((i, sid))  # its readings mean the same: the new version has them
            else:
                add_join.append(math.inf)
                new_meters.setdefault(spec.meter, []).append(sid)
                change.added.append(key)
            add_keys.append(key)
            add_specs.append(spec)
        for key, i in self._index.items():
            if key not in specs_by_point:
                retire[i] = self._boundary(i, cut)
                change.removed.append(key)
        if not (retire or add_specs or specs != list(self._specs)):
            return change
        # ---- commit (nothing above changed the pipeline)
        n_add = len(add_specs)
        self._keys = [*self._keys, *add_keys]
        self._specs = (*specs, *add_specs)
        self._index = {k: i for k, i in self._index.items() if k in specs_by_point and i not in retire}
        n_old = len(specs)
        for j, key in enumerate(add_keys):
            self._index[key] = n_old + j
        self._is_counter = np.array([sp.kind == "counter" for sp in self._specs], dtype=bool)
        self._layout = _layout(tuple(self._specs[i] for i in sorted(self._index.values())))
        cols = self._win_e.shape[1]
        self._win_e = np.concatenate([self._win_e, np.zeros((n_add, cols))])
        self._win_s = np.concatenate([self._win_s, np.full((n_add, cols), Status.MISSING, np.int8)])
        self._win_r = np.concatenate([self._win_r, np.zeros((n_add, cols), np.uint8)])
        self._done = np.concatenate([self._done, np.full(n_add, self._computed, np.int64)])
        self._last_t = np.concatenate([self._last_t, np.full(n_add, -math.inf)])
        self._last_v = np.concatenate([self._last_v, np.full(n_add, math.nan)])
        self._prev_t = np.concatenate([self._prev_t, np.full(n_add, -math.inf)])
        self._prev_v = np.concatenate([self._prev_v, np.full(n_add, math.nan)])
        self._last_ts = np.concatenate([self._last_ts, np.full(n_add, -math.inf)])
        self._spec_cache = None
        self._evt_ts = np.concatenate([self._evt_ts, np.full(n_add, -math.inf)])
        self._join = np.concatenate([self._join, np.asarray(add_join, np.float64)])
        self._leave = np.concatenate([self._leave, np.full(n_add, math.inf)])
        self._k_stop = np.concatenate([self._k_stop, np.full(n_add, _NEVER, np.int64)])
        self._dirty = np.concatenate([self._dirty, np.zeros(n_add, bool)])
        self._carry(carry)
        self._verified = 0
        self._k_full = -1
        for i, b in retire.items():
            self._leave[i] = b
            self._k_stop[i] = self._k_of(b)
            if i in self._waiting_sids:  # a new meter removed again before it joined
                self._drop_waiting(self._waiting_sids[i])
        deadline = now + 3 * max((sp.max_gap for sp in add_specs), default=0.0)
        for meter, sids in new_meters.items():
            self._waiting[meter] = (sids, deadline)
            for j in sids:
                self._waiting_sids[j] = meter
        if self.start0 is None:  # nothing computed yet: the new model holds from the start
            self._join[n_old:] = -math.inf
            self._leave[list(retire)] = -math.inf
            self._k_stop[list(retire)] = 0
            for meter in list(self._waiting):
                self._drop_waiting(meter)
        self._epochs = True
        return change

    def _carry(self, pairs: list[tuple[int, int]]) -> None:
        """Copy the buffered readings and reading state of old series to their new versions."""
        if not pairs:
            return
        self._merge_pending()
        old = np.asarray([i for i, _ in pairs], np.int64)
        new = np.full(len(self._specs), -1, np.int64)
        new[old] = [j for _, j in pairs]
        rows = np.flatnonzero(np.isin(self._sid, old))
        c_sid, c_ts, c_val = new[self._sid[rows]], self._ts[rows], self._val[rows]
        chunk = np.lexsort((c_val, c_ts, c_sid))
        self._pending.append((c_sid[chunk], c_ts[chunk], c_val[chunk]))
        self._n_pending += int(chunk.size)
        drop = self._drop[rows]
        self._merge_pending()
        if drop.any():  # judged glitches stay dropped in the copy
            copied = np.flatnonzero(np.isin(self._sid, new[old]))
            self._drop[copied] = drop[np.lexsort((self._val[rows], self._ts[rows], new[self._sid[rows]]))]
        for i, j in pairs:
            self._last_t[j], self._last_v[j] = self._last_t[i], self._last_v[i]
            self._prev_t[j], self._prev_v[j] = self._prev_t[i], self._prev_v[i]
            self._last_ts[j] = self._last_ts[i]
            self._evt_ts[j] = self._evt_ts[i]

    def _next_start(self) -> float:
        """Start of the first interval not computed yet (-inf before the first close)."""
        return -math.inf if self.start0 is None else self.start0 + self._computed * self.step

    def _boundary(self, i: int, cut: float) -> float:
        last = float(self._last_ts[i])
        return max(cut, math.floor(last / self.step) * self.step) if math.isfinite(last) else cut

    def _k_of(self, t: float) -> int:
        if self.start0 is None or not math.isfinite(t):
            return 0 if t < 0 else _NEVER
        return max(0, round((t - self.start0) / self.step))

    def _first_reading(self, i: int, ts: float) -> None:
        meter = self._waiting_sids[i]
        self._first_ts[i] = ts
        sids, _ = self._waiting[meter]
        if all(j in self._first_ts for j in sids):
            self._join_meter(meter, max(self._first_ts[j] for j in sids))

    def _join_meter(self, meter: str, ts: float) -> None:
        sids, _ = self._waiting[meter]
        at = math.ceil(ts / self.step) * self.step
        self._join[sids] = max(at, self._next_start())
        self._spec_cache = None
        self._drop_waiting(meter)

    def _drop_waiting(self, meter: str) -> None:
        sids, _ = self._waiting.pop(meter)
        for j in sids:
            self._waiting_sids.pop(j, None)
            self._first_ts.pop(j, None)

    def _rollup(self, cols: np.ndarray) -> list[PueInterval]:
        """Roll up window columns ``cols``, each with the series in the model at its start."""
        k0 = self._win_k0
        assert self.start0 is not None
        starts = self.start0 + (k0 + cols) * self.step
        if not self._epochs:
            return _rollup_arrays(
                self._layout, self._win_e[:, cols], self._win_s[:, cols], starts, starts + self.step,
                self._win_r[:, cols], per_meter=True, kpi=self.kpi,
            )  # fmt: skip
        active = (self._join[:, None] <= starts[None, :]) & (starts[None, :] < self._leave[:, None])
        out: list[PueInterval] = []
        patterns, which = np.unique(active, axis=1, return_inverse=True)
        for p in range(patterns.shape[1]):
            sids = np.flatnonzero(patterns[:, p])
            c = cols[which.reshape(-1) == p]
            if sids.size == 0:
                continue
            st = self.start0 + (k0 + c) * self.step
            out += _rollup_arrays(
                _layout(tuple(self._specs[i] for i in sids.tolist())),
                self._win_e[np.ix_(sids, c)], self._win_s[np.ix_(sids, c)], st, st + self.step,
                self._win_r[np.ix_(sids, c)], per_meter=True, kpi=self.kpi,
            )  # fmt: skip
        out.sort(key=lambda iv: iv.start)
        return out

    # ------------------------------------------------------------------- close

    def close(self, now: float, grace: float) -> list[PueInterval]:
        """(Re)compute intervals ending at/before ``now - grace``; return new or changed ones.

        The result is sorted by ``start`` and depends only on the readings ingested and the
        sequence of ``close`` calls (not on the order readings arrived in within a call).
        """
        self._now = float(now)
        self._check(self._now)
        for meter, (_, deadline) in list(self._waiting.items()):
            if deadline <= now:  # a new meter silent since the reload: in the model, MISSING
                self._join_meter(meter, deadline)
        if self.start0 is None:
            self._merge_pending()
            if self._ts.size == 0:
                return []
            first = max(float(self._ts.min()), now - self.horizon)  # never more than the horizon
            self.start0 = math.ceil(first / self.step) * self.step
        start0, step = self.start0, self.step
        n_series = len(self._specs)
        k_end = max(math.floor((now - grace - start0) / step), 0)
        k_horizon = math.floor((now - self.horizon - start0) / step)
        if not self._due(k_end, k_horizon):
            # nothing to (re)compute, no finality to move, nothing to trim: the new readings
            # wait in their chunks (what the full pass below would do with them is a no-op)
            return []
        self._merge_pending()
        self._verified = 0
        self._k_full = k_end

        # grow the window to [win_k0, k_end)
        if k_end > self._computed:
            extra = k_end - self._computed
            self._win_e = np.concatenate([self._win_e, np.zeros((n_series, extra))], axis=1)
            self._win_s = np.concatenate([self._win_s, np.full((n_series, extra), Status.MISSING, np.int8)], axis=1)
            self._win_r = np.concatenate([self._win_r, np.zeros((n_series, extra), np.uint8)], axis=1)
        old_computed = self._computed
        self._computed = max(self._computed, k_end)
        k0 = self._win_k0
        changed = np.zeros(self._computed - k0, dtype=bool)
        changed[old_computed - k0 :] = True

        # series starts/ends in the sorted buffers
        sid = self._sid
        bounds = np.searchsorted(sid, np.arange(n_series + 1))
        # a counter reading is judged once its series has two newer ones (the next one may be
        # the glitch itself: only the one after tells); power readings at once
        has2 = bounds[1:] - bounds[:-1] >= 2
        second = np.full(n_series, -math.inf)
        second[has2] = self._ts[bounds[1:][has2] - 2]
        judged = (self._ts < second[sid]) | ~self._is_counter[sid]
        todo = np.flatnonzero(self._done < np.minimum(k_end, self._k_stop))
        # one interval_energy call per distinct first-non-final interval (usually 1-3 groups)
        for lo in np.unique(self._done[todo]).tolist():
            group = todo[self._done[todo] == lo]
            in_group = np.zeros(n_series, dtype=bool)
            in_group[group] = True
            rows = np.flatnonzero(in_group[sid])
            remap = np.full(n_series, -1, np.int64)
            remap[group] = np.arange(group.size)
            ie = interval_energy(
                [self._specs[g] for g in group],
                remap[sid[rows]],
                self._ts[rows],
                self._val[rows],
                start=start0 + lo * step,
                step=step,
                n=k_end - lo,
                hold_last=True,
            )
            if ie.event_row.size:
                self._judged(rows[ie.event_row], ie.event_kind, judged)
            c0 = lo - k0
            old_e = self._win_e[group, c0 : k_end - k0]
            old_s = self._win_s[group, c0 : k_end - k0]
            old_r = self._win_r[group, c0 : k_end - k0]
            same = (old_s == ie.status) & (old_r == ie.reason) & np.isclose(ie.energy, old_e, rtol=_RTOL, atol=_ATOL)
            # keep previous values where only rounding differs: stable, deterministic output
            self._win_e[group, c0 : k_end - k0] = np.where(same, old_e, ie.energy)
            self._win_s[group, c0 : k_end - k0] = ie.status
            self._win_r[group, c0 : k_end - k0] = ie.reason
            changed[c0 : k_end - k0] |= ~same.all(axis=0)

        cols = np.flatnonzero(changed)
        out: list[PueInterval] = self._rollup(cols) if cols.size else []

        # finality: a judged reading at/after an interval's end, or older than the horizon
        n_judged = np.bincount(sid[judged], minlength=n_series)
        has = n_judged > 0
        last_ts = np.full(n_series, -math.inf)
        last_ts[has] = self._ts[bounds[:-1][has] + n_judged[has] - 1]
        with np.errstate(invalid="ignore"):
            k_final = np.where(has, np.floor((last_ts - start0) / step), 0).astype(np.int64)
        k_final = np.maximum(k_final, k_horizon)
        # a retired series gets no more readings: final once computed past its boundary
        k_final = np.where(self._k_stop <= k_end, k_end, k_final)
        self._done = np.maximum(self._done, np.minimum(k_final, k_end))
        self._trim()
        return out

    def _due(self, k_end: int, k_horizon: int) -> bool:
        """Whether this close can change anything. Not when the grid end is the last full
        pass's and no series that is still open got a reading since (its recomputation would
        repeat the last one: same rows, same range), no retired series is to be finalised, the
        horizon finalises nothing, and no pending reading is at/before the start of its
        series' first non-final interval (it could become the anchor :meth:`_trim` keeps).
        A silent meter therefore costs nothing per tick until the horizon passes a minute."""
        if k_end != self._k_full or k_end > self._computed:
            return True
        done, k_stop = self._done, self._k_stop
        if bool((self._dirty & (done < np.minimum(k_end, k_stop))).any()):
            return True
        if bool(((k_stop <= k_end) & (done < k_end)).any()):
            return True
        if bool((done < min(k_horizon, k_end)).any()):
            return True
        if self._verified < len(self._pending):
            assert self.start0 is not None
            b = self.start0 + done * self.step
            for c_sid, c_ts, _ in self._pending[self._verified :]:
                if bool((c_ts <= b[c_sid]).any()):
                    return True
            self._verified = len(self._pending)
        return False

    def _judged(self, pos: np.ndarray, kinds: np.ndarray, judged: np.ndarray) -> None:
        """Queue the final judgements among ``pos`` (buffer rows), once each."""
        fin = judged[pos]
        pos, kinds = pos[fin], kinds[fin]
        if pos.size == 0:
            return
        sid, ts, val = self._sid[pos], self._ts[pos], self._val[pos]
        new = ts > self._evt_ts[sid]
        for p, k, s, t, v in zip(pos[new].tolist(), kinds[new].tolist(), sid[new].tolist(),
                                 ts[new].tolist(), val[new].tolist(), strict=True):  # fmt: skip
            kind = EVENT_KINDS[k]
            self._event(s, t, v, kind, _DETAIL[kind])
            if kind in _DROPPED:
                self._drop[p] = True
        np.maximum.at(self._evt_ts, sid, ts)

    def _trim(self) -> None:
        """Drop final window columns and readings no longer needed for non-final intervals."""
        assert self.start0 is not None
        new_k0 = int(self._done.min())
        if new_k0 > self._win_k0:
            cut = new_k0 - self._win_k0
            self._win_e = self._win_e[:, cut:]
            self._win_s = self._win_s[:, cut:]
            self._win_r = self._win_r[:, cut:]
            self._win_k0 = new_k0
        if self._ts.size == 0:
            return
        # per series keep the last good reading at/before the start of its first non-final
        # interval (the anchor) and everything after it
        b = self.start0 + self._done * self.step
        sid = self._sid
        cand = ~self._drop & (self._ts <= b[sid])
        # anchor: the last candidate row of each series (rows are sorted by series)
        run = np.maximum.accumulate(np.where(cand, np.arange(sid.size), -1))
        bounds = np.searchsorted(sid, np.arange(len(self._specs) + 1))
        end = bounds[1:]
        has = end > bounds[:-1]
        anchor = np.where(has, run[np.maximum(end - 1, 0)], -1)
        anchor = np.where(anchor >= bounds[:-1], anchor, -1)
        drop = np.arange(sid.size) < anchor[sid]
        if drop.any():
            keep = ~drop
            self._sid, self._ts, self._val = sid[keep], self._ts[keep], self._val[keep]
            self._drop = self._drop[keep]

    # ----------------------------------------------------------------- instant

    def instant(self, now: float | None = None) -> InstantPower:
        """Latest power per role (kW): power points, else the last counter delta / dt.

        ``now`` defaults to the latest ``now`` given to :meth:`close` (before any, the newest
        reading time). A meter's value is recent if no older than ``3 * max_gap``; ``pue`` is
        None unless every facility and IT meter is recent. A counter step that is a reset or
        implies more than the meter's ``max_power_kw`` gives no rate until the next reading.

        Vectorised over the series; sums are taken in series order, then meter order, as a
        loop would (``np.bincount`` adds its weights in order).
        """
        ref = self._now
        if ref is None and self._u_ts:  # never told the time: trust the newest reading
            with self._lock:
                ref = max(self._u_ts, default=None)
        if ref is not None:
            self._check(ref)
        if now is None:
            now = self._now if self._now is not None else float(self._last_t.max(initial=-math.inf))
        ia = self._instant_arrays()
        lt, lv = self._last_t[ia.sids], self._last_v[ia.sids]
        recent = now - lt <= 3 * ia.max_gap
        # power series: the latest value
        kw_p = lv * ia.factor
        # counter series: the last delta over its time
        pt, pv = self._prev_t[ia.sids], self._prev_v[ia.sids]
        d = lv - pv
        roll = ia.roll
        with np.errstate(invalid="ignore"):
            w = roll - pv + lv
            wrap = (d < 0) & (w >= 0) & (w < roll / 2)
            d = np.where(d < 0, np.where(wrap, w, np.nan), d)
            dt = lt - pt
            ok_c = recent & (dt <= 3 * ia.max_gap) & (lt > pt) & ~np.isnan(d)
            kw_c = np.where(ok_c, d * ia.factor * 3600.0 / np.where(ok_c, dt, 1.0), 0.0)
            ok_c &= ~(kw_c > ia.max_kw)
        used = ia.power | ~ia.meter_has_power[ia.meter]  # a meter with power points uses those only
        ok = np.where(ia.power, recent, ok_c)
        kw = np.where(ia.power, kw_p, kw_c)
        n_m = ia.meter_role.size
        bad = np.bincount(ia.meter[used & ~ok], minlength=n_m) > 0
        total = np.bincount(ia.meter[used], weights=kw[used], minlength=n_m)
        good_m = ~bad & ia.meter_counted
        n_roles = len(_ROLES)
        by_role = np.bincount(ia.meter_role[good_m], weights=total[good_m], minlength=n_roles)
        has_role = np.bincount(ia.meter_role[good_m], minlength=n_roles) > 0
        stale = set(np.flatnonzero(np.bincount(ia.meter_role[bad & ia.meter_counted], minlength=n_roles)).tolist())
        power = {_ROLES[r].value: float(by_role[r]) for r in np.flatnonzero(has_role).tolist()}
        pue = None
        if _ROLE_IDX[Role.FACILITY_INPUT] not in stale and _ROLE_IDX[Role.IT] not in stale:
            fac = power.get(Role.FACILITY_INPUT.value)
            it = power.get(Role.IT.value)
            if fac is not None and it is not None and it > 0:
                pue = fac / it
        return InstantPower(ts=float(now), power_by_role=dict(sorted(power.items())), pue=pue)

    def _instant_arrays(self) -> _InstantArrays:
        """Per-series arrays of the series in the model now, cached until the model changes."""
        if self._spec_cache is not None:
            return self._spec_cache
        specs = self._specs
        sids = [i for i in range(len(specs)) if self._join[i] < math.inf and self._leave[i] == math.inf]
        meters: dict[str, int] = {}
        for i in sids:
            meters.setdefault(specs[i].meter, len(meters))
        meter = np.array([meters[specs[i].meter] for i in sids], np.int64)
        power = np.array([specs[i].kind == "power" for i in sids], bool)
        first_role: dict[int, Role] = {}
        for i in sids:
            first_role.setdefault(meters[specs[i].meter], specs[i].role)
        meter_role = np.array([_ROLE_IDX[first_role[m]] for m in range(len(meters))], np.int64)
        ia = _InstantArrays(
            sids=np.array(sids, np.int64),
            meter=meter,
            power=power,
            factor=np.array([specs[i].factor for i in sids], np.float64),
            roll=np.array([math.nan if specs[i].rollover is None else specs[i].rollover for i in sids], np.float64),
            max_gap=np.array([specs[i].max_gap for i in sids], np.float64),
            max_kw=np.array([specs[i].max_power_kw for i in sids], np.float64),
            meter_has_power=np.bincount(meter[power], minlength=len(meters)) > 0,
            meter_role=meter_role,
            meter_counted=np.array([first_role[m] is not Role.WATER for m in range(len(meters))], bool),
        )
        self._spec_cache = ia
        return ia


@dataclass(frozen=True)
class _InstantArrays:
    sids: np.ndarray  # series in the model now, ascending
    meter: np.ndarray  # meter index of each (meters in order of their first series)
    power: np.ndarray  # bool: a power series
    factor: np.ndarray
    roll: np.ndarray  # NaN: no rollover
    max_gap: np.ndarray
    max_kw: np.ndarray
    meter_has_power: np.ndarray  # per meter: has a power series (then its counters are not used)
    meter_role: np.ndarray  # per meter: index into _ROLES of its first series' role
    meter_counted: np.ndarray  # per meter: not a water meter (a flow, not a power)


_ROLES: tuple[Role, ...] = tuple(Role)
_ROLE_IDX = {r: i for i, r in enumerate(_ROLES)}

_DETAIL = {
    EventKind.GLITCH: "implausible reading dropped, energy bridged by its neighbours",
    EventKind.RESET: "counter reset or replaced: continues from a new level (energy across estimated)",
    EventKind.ROLLOVER: "counter wrapped at its rollover",
    EventKind.CONFLICT: "same timestamp, different value: the one off the trajectory dropped",
    EventKind.BAD_VALUE: "physically impossible value",
    EventKind.LATE: "older than the series' newest reading",
    EventKind.OUT_OF_WINDOW: "outside the pipeline's time window",
}
