"""Incremental energy/PUE engine for the running service.

Wraps :func:`~pue_monitor.pipeline.energy.interval_energy` and the rollup of
:mod:`pue_monitor.pipeline.pue`: readings are buffered per series, :meth:`LivePipeline.close`
recomputes the not-yet-final intervals on a fixed ``step`` grid and returns the intervals that
are new or whose values changed (a late counter reading that bridges a gap restates the
intervals of the gap — the caller upserts by ``start``).

Finality, per series: an interval is final once a reading at/after its end exists (later
readings cannot change it), or once it ends more than ``horizon`` seconds before ``now`` (then
it stays MISSING if it was). Buffers keep, per series, only the last reading at/before the
start of its first non-final interval and everything after, so memory stays bounded by the
horizon.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from pue_monitor.config.models import Role
from pue_monitor.pipeline.energy import SeriesSpec, Status, interval_energy
from pue_monitor.pipeline.pue import PueInterval, _layout, _rollup_arrays
from pue_monitor.readings import Quality, Reading

__all__ = ["InstantPower", "LivePipeline"]

#: a cell recomputed within this tolerance of its previous value is "unchanged" (rounding)
_RTOL = 1e-9
_ATOL = 1e-9  # kWh


@dataclass(frozen=True)
class InstantPower:
    """Latest power per role (kW) and the instantaneous power ratio facility/IT.

    Not an ISO/IEC 30134-2 PUE (that is a ratio of energies); for live display only.
    """

    ts: float
    power_by_role: dict[str, float]
    pue: float | None


class LivePipeline:
    """Per-series buffers + incremental :func:`interval_energy` + rollup."""

    def __init__(
        self,
        specs_by_point: Mapping[tuple[str, str], SeriesSpec],
        *,
        step: float = 60.0,
        horizon: float = 7 * 86400,
    ) -> None:
        if not specs_by_point:
            raise ValueError("no series")
        if not (step > 0) or not (horizon > 0):
            raise ValueError("step and horizon must be > 0")
        self._keys = list(specs_by_point)
        self._specs = tuple(specs_by_point[k] for k in self._keys)
        self._index = {k: i for i, k in enumerate(self._keys)}
        self._layout = _layout(self._specs)  # validates roles per meter
        self.step = float(step)
        self.horizon = float(horizon)
        n = len(self._specs)
        # buffers: kept (sorted by sid, ts) arrays + pending rows from ingest()
        self._sid = np.zeros(0, np.int64)
        self._ts = np.zeros(0, np.float64)
        self._val = np.zeros(0, np.float64)
        self._p_sid: list[int] = []
        self._p_ts: list[float] = []
        self._p_val: list[float] = []
        # grid and per-series finality (interval indices relative to start0)
        self.start0: float | None = None
        self._done = np.zeros(n, np.int64)  # first non-final interval per series
        self._win_k0 = 0  # window covers intervals [win_k0, computed)
        self._computed = 0
        self._win_e = np.zeros((n, 0), np.float64)
        self._win_s = np.zeros((n, 0), np.int8)
        # for instant(): latest and previous reading (by ts) per series
        self._last = [(-math.inf, math.nan)] * n
        self._prev = [(-math.inf, math.nan)] * n

    @property
    def buffered(self) -> int:
        """Number of readings held in the buffers (bounded by trimming)."""
        return int(self._ts.size) + len(self._p_ts)

    @property
    def window(self) -> int:
        """Number of intervals held for restating (from the first non-final one)."""
        return int(self._win_e.shape[1])

    # ------------------------------------------------------------------ ingest

    def ingest(self, readings: Iterable[Reading]) -> None:
        """Buffer readings of known (device, point); others, BAD quality and NaN are ignored."""
        index = self._index
        last, prev = self._last, self._prev
        for r in readings:
            i = index.get((r.device, r.point))
            if i is None or r.quality != Quality.GOOD:
                continue
            ts, v = float(r.ts), float(r.value)
            if not (math.isfinite(ts) and math.isfinite(v)):
                continue
            self._p_sid.append(i)
            self._p_ts.append(ts)
            self._p_val.append(v)
            if ts > last[i][0]:
                prev[i] = last[i]
                last[i] = (ts, v)
            elif prev[i][0] < ts < last[i][0]:
                prev[i] = (ts, v)

    def _merge_pending(self) -> None:
        if not self._p_sid:
            return
        sid = np.concatenate([self._sid, np.asarray(self._p_sid, np.int64)])
        ts = np.concatenate([self._ts, np.asarray(self._p_ts, np.float64)])
        val = np.concatenate([self._val, np.asarray(self._p_val, np.float64)])
        self._p_sid, self._p_ts, self._p_val = [], [], []
        order = np.lexsort((val, ts, sid))
        self._sid, self._ts, self._val = sid[order], ts[order], val[order]

    # ------------------------------------------------------------------- close

    def close(self, now: float, grace: float) -> list[PueInterval]:
        """(Re)compute intervals ending at/before ``now - grace``; return new or changed ones.

        The result is sorted by ``start`` and depends only on the readings ingested and the
        sequence of ``close`` calls (not on the order readings arrived in within a call).
        """
        self._merge_pending()
        if self.start0 is None:
            if self._ts.size == 0:
                return []
            self.start0 = math.ceil(float(self._ts.min()) / self.step) * self.step
        start0, step = self.start0, self.step
        n_series = len(self._specs)
        k_end = max(math.floor((now - grace - start0) / step), 0)
        k_horizon = math.floor((now - self.horizon - start0) / step)

        # grow the window to [win_k0, k_end)
        if k_end > self._computed:
            extra = k_end - self._computed
            self._win_e = np.concatenate([self._win_e, np.zeros((n_series, extra))], axis=1)
            self._win_s = np.concatenate([self._win_s, np.full((n_series, extra), Status.MISSING, np.int8)], axis=1)
        old_computed = self._computed
        self._computed = max(self._computed, k_end)
        k0 = self._win_k0
        changed = np.zeros(self._computed - k0, dtype=bool)
        changed[old_computed - k0 :] = True

        # series starts/ends in the sorted buffers
        sid = self._sid
        bounds = np.searchsorted(sid, np.arange(n_series + 1))
        todo = np.flatnonzero(self._done < k_end)
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
            )
            c0 = lo - k0
            old_e = self._win_e[group, c0 : k_end - k0]
            old_s = self._win_s[group, c0 : k_end - k0]
            same = (old_s == ie.status) & np.isclose(ie.energy, old_e, rtol=_RTOL, atol=_ATOL)
            # keep previous values where only rounding differs: stable, deterministic output
            self._win_e[group, c0 : k_end - k0] = np.where(same, old_e, ie.energy)
            self._win_s[group, c0 : k_end - k0] = ie.status
            changed[c0 : k_end - k0] |= ~same.all(axis=0)

        cols = np.flatnonzero(changed)
        out: list[PueInterval] = []
        if cols.size:
            starts = start0 + (k0 + cols) * step
            out = _rollup_arrays(self._layout, self._win_e[:, cols], self._win_s[:, cols], starts, starts + step)

        # finality: reading at/after an interval's end, or older than the horizon
        last_ts = np.full(n_series, -math.inf)
        has = bounds[1:] > bounds[:-1]
        last_ts[has] = self._ts[bounds[1:][has] - 1]
        with np.errstate(invalid="ignore"):
            k_final = np.where(has, np.floor((last_ts - start0) / step), 0).astype(np.int64)
        k_final = np.maximum(k_final, k_horizon)
        self._done = np.maximum(self._done, np.minimum(k_final, k_end))
        self._trim()
        return out

    def _trim(self) -> None:
        """Drop final window columns and readings no longer needed for non-final intervals."""
        assert self.start0 is not None
        new_k0 = int(self._done.min())
        if new_k0 > self._win_k0:
            cut = new_k0 - self._win_k0
            self._win_e = self._win_e[:, cut:]
            self._win_s = self._win_s[:, cut:]
            self._win_k0 = new_k0
        if self._ts.size == 0:
            return
        # per series keep the last reading at/before the start of its first non-final interval
        b = self.start0 + self._done * self.step
        sid = self._sid
        # a row can go if the next row of the same series is also at/before b[s]
        before = self._ts <= b[sid]
        nxt_before = np.zeros_like(before)
        nxt_before[:-1] = before[1:] & (sid[1:] == sid[:-1])
        drop = before & nxt_before
        if drop.any():
            keep = ~drop
            self._sid, self._ts, self._val = sid[keep], self._ts[keep], self._val[keep]

    # ----------------------------------------------------------------- instant

    def instant(self, now: float | None = None) -> InstantPower:
        """Latest power per role (kW): power points, else the last counter delta / dt.

        ``now`` defaults to the newest reading time. A meter's value is recent if no older
        than ``3 * max_gap``; ``pue`` is None unless every facility and IT meter is recent.
        """
        specs = self._specs
        if now is None:
            now = max((t for t, _ in self._last), default=-math.inf)
        by_meter: dict[str, list[int]] = {}
        for i, s in enumerate(specs):
            by_meter.setdefault(s.meter, []).append(i)
        power: dict[str, float] = {}
        stale: set[Role] = set()
        for idx in by_meter.values():
            role = specs[idx[0]].role
            kw = self._meter_kw(idx, now)
            if kw is None:
                stale.add(role)
                continue
            power[role.value] = power.get(role.value, 0.0) + kw
        pue = None
        if Role.FACILITY_INPUT not in stale and Role.IT not in stale:
            fac = power.get(Role.FACILITY_INPUT.value)
            it = power.get(Role.IT.value)
            if fac is not None and it is not None and it > 0:
                pue = fac / it
        return InstantPower(ts=float(now), power_by_role=dict(sorted(power.items())), pue=pue)

    def _meter_kw(self, idx: list[int], now: float) -> float | None:
        specs = self._specs
        powers = [i for i in idx if specs[i].kind == "power"]
        if powers:
            total = 0.0
            for i in powers:
                t, v = self._last[i]
                if not now - t <= 3 * specs[i].max_gap:
                    return None
                total += v * specs[i].factor
            return total
        total = 0.0
        for i in idx:
            s = specs[i]
            (t0, v0), (t1, v1) = self._prev[i], self._last[i]
            if not (now - t1 <= 3 * s.max_gap and t1 - t0 <= 3 * s.max_gap and t1 > t0):
                return None
            d = v1 - v0
            if d < 0:
                if s.rollover is not None and 0 <= s.rollover - v0 + v1 < s.rollover / 2:
                    d = s.rollover - v0 + v1
                else:
                    return None  # reset: no rate until the next reading
            total += d * s.factor * 3600.0 / (t1 - t0)
        return total
