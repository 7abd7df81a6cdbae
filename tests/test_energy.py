"""interval_energy: counters (rollover, reset, gaps), power integration, input hygiene."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.energy import SeriesSpec, Status, interval_energy
from pue_monitor.pipeline.events import EventKind, Reason

M, E, X = Status.MEASURED, Status.ESTIMATED, Status.MISSING
T0 = 1_700_000_040.0  # a multiple of 60


def spec(
    meter="F",
    kind="counter",
    *,
    factor=1.0,
    rollover=None,
    max_gap=90.0,
    role=Role.FACILITY_INPUT,
    max_power_kw=math.inf,
    resolution=0.0,
):
    loc = ITLocation.PDU_OUTPUT if role is Role.IT else None
    return SeriesSpec(meter, role, loc, kind, factor, rollover, max_gap, max_power_kw, resolution)


def run1(sp, ts, vals, *, start=T0, step=60.0, n, good=None):
    ts = np.asarray(ts, float)
    ie = interval_energy(
        [sp],
        np.zeros(len(ts), int),
        ts,
        np.asarray(vals, float),
        start=start,
        step=step,
        n=n,
        good=good,
    )
    return ie.energy[0], ie.status[0]


def test_rollover_exact():
    e, s = run1(spec(rollover=10000.0), T0 + np.array([0, 60, 120]), [9990, 5, 25], n=2)
    assert e.tolist() == [15.0, 20.0]
    assert s.tolist() == [M, M]


def test_decrease_larger_than_half_rollover_is_a_reset():
    # wrapped delta 10000 - 9990 + 9000 = 9010 >= 5000: not a plausible rollover -> reset.
    # Was booked as 9000 kWh (the new value); 9000 is no restart from zero at 10 kWh/min, so
    # the energy across is the neighbouring rate (10 kWh/min), estimated.
    ie = interval_energy(
        [spec(rollover=10000.0)], np.zeros(3, int), T0 + np.array([0, 60, 120.0]),
        np.array([9980, 9990, 9000.0]), start=T0, step=60.0, n=2,
    )  # fmt: skip
    assert ie.energy[0].tolist() == [10.0, 10.0]
    assert ie.status[0].tolist() == [M, E]
    assert ie.reason[0].tolist() == [0, Reason.RESET]
    assert ie.events() == [(2, EventKind.RESET)]


def test_reset_energy_is_estimated_from_the_neighbours():
    # was [10, 3, 10]: the new value (3) as the pair's energy loses what was used between the
    # last reading and the reset; the estimate is now the larger of the new value and the
    # neighbouring pairs' rate x dt (10 kWh/min here), flagged RESET
    ie = interval_energy(
        [spec()], np.zeros(4, int), T0 + np.array([0, 60, 120, 180.0]), np.array([1000, 1010, 3, 13.0]),
        start=T0, step=60.0, n=3,
    )  # fmt: skip
    assert ie.energy[0].tolist() == [10.0, 10.0, 10.0]
    assert ie.status[0].tolist() == [M, E, M]
    assert ie.reason[0].tolist() == [0, Reason.RESET, 0]
    assert ie.events() == [(2, EventKind.RESET)]


def test_factor_converts_to_kwh():
    e, _ = run1(spec(factor=1e-3), T0 + np.array([0, 60]), [1_000_000.0, 1_002_500.0], n=1)
    assert e[0] == pytest.approx(2.5, abs=1e-12)


def test_two_hour_gap_bridged_exactly_and_split_linearly():
    before = np.arange(0, 3601, 60.0)  # 1 kWh per minute
    after = np.arange(10800, 14401, 60.0)
    ts = np.concatenate([before, after])
    # 150 kWh during the 2-h hole (1.25 kWh/min), then 1 kWh/min again
    vals = np.concatenate([before / 60.0, 60.0 + 150.0 + (after - 10800) / 60.0])
    e, s = run1(spec(), T0 + ts, vals, n=240)
    assert e[:60] == pytest.approx(np.ones(60), abs=1e-9)
    assert e[60:180] == pytest.approx(np.full(120, 1.25), abs=1e-9)
    assert e[180:] == pytest.approx(np.ones(60), abs=1e-9)
    assert e[60:180].sum() == pytest.approx(150.0, abs=1e-9)
    assert e.sum() == pytest.approx(270.0, abs=1e-9)
    assert (s[:60] == M).all() and (s[60:180] == E).all() and (s[180:] == M).all()


def test_spacing_above_max_gap_is_estimated_but_interpolated():
    # readings at 0, 100, 120 with max_gap 90: the 100 s pair is a gap
    e, s = run1(
        spec(max_gap=90.0),
        T0 + np.array([0, 100, 120, 180]),
        [0, 10, 12, 18],
        start=T0,
        step=60.0,
        n=3,
    )
    # C(60) = 6 (linear inside the 0..100 pair), C(120) = 12, C(180) = 18
    assert e == pytest.approx([6.0, 6.0, 6.0], abs=1e-12)
    assert s.tolist() == [E, E, M]


def test_readings_off_grid_are_interpolated_and_edges_missing():
    ts = T0 + 30 + 60.0 * np.arange(5)  # 30, 90, ..., 270
    vals = 2.0 * np.arange(5)  # 2 kWh per minute
    e, s = run1(spec(), ts, vals, n=6)
    assert s.tolist() == [X, M, M, M, X, X]
    assert e == pytest.approx([0.0, 2.0, 2.0, 2.0, 0.0, 0.0], abs=1e-12)


def test_combined_rollover_reset_gap_sum_equals_true_energy():
    """Known true power; counter in Wh with rollover, a reset right after a reading, a 2-h gap."""
    rollover = 1_000_000.0  # Wh

    def true_kwh(t):  # integral of P(t) = 100 + 30 sin(2 pi t / 21600) kW, t in s
        w = 2 * math.pi / 21600
        return (100.0 * t + 30.0 * (1 - np.cos(w * t)) / w) / 3600.0

    t = np.arange(0, 12 * 3600 + 1, 60.0)
    gap = (t > 3 * 3600) & (t < 5 * 3600)  # 2-h hole: readings at 3 h and 5 h bracket it
    t = t[~gap]
    e_true = true_kwh(t)
    offset_wh = 900_000.0  # wraps past 1e6 Wh within the first ~1 h
    cum_wh = offset_wh + e_true * 1000.0
    raw = np.mod(cum_wh, rollover)
    j = int(np.searchsorted(t, 2 * 3600))  # reset right after the reading at 2 h
    raw[j + 1 :] = (e_true[j + 1 :] - e_true[j]) * 1000.0
    # the data really contains a rollover (~1 h), a reset (2 h) and a 2-h gap (3-5 h);
    # before the reset the counter reads < rollover/2, so it cannot pass for a rollover
    d = np.diff(raw)
    assert (d < 0).sum() == 2 and d[j] < 0 and raw[j] < rollover / 2
    assert np.flatnonzero(d < 0)[0] < j
    assert np.diff(t).max() == 7200.0

    sp = spec(factor=1e-3, rollover=rollover, max_gap=90.0)
    rng = np.random.default_rng(7)
    perm = rng.permutation(t.size)
    ie = interval_energy([sp], np.zeros(t.size, int), T0 + t[perm], raw[perm], start=T0, step=60.0, n=720)
    e, s = ie.energy[0], ie.status[0]
    assert e.sum() == pytest.approx(e_true[-1] - e_true[0], abs=1e-6)
    # measured minutes are exact, the gap carries exactly its true energy
    k_gap = slice(180, 300)
    assert e[k_gap].sum() == pytest.approx(true_kwh(5 * 3600) - true_kwh(3 * 3600), abs=1e-6)
    assert (s[k_gap] == E).all()
    assert s[120] == E  # the reset pair 2:00..2:01
    measured = np.flatnonzero(s == M)
    assert measured.size == 720 - 120 - 1
    exact = true_kwh(60.0 * (measured + 1)) - true_kwh(60.0 * measured)
    assert e[measured] == pytest.approx(exact, abs=1e-6)


def test_power_is_integrated_by_trapezoid_and_estimated():
    ts = T0 + 60.0 * np.arange(6)
    kw = np.arange(6, dtype=float) * 60.0  # 0, 60, ..., 300 kW, linear ramp
    e, s = run1(spec(kind="power"), ts, kw, n=5)
    # trapezoid of a linear ramp is exact: (P_k + P_k+1)/2 * 60 s / 3600
    assert e == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5], abs=1e-12)
    assert (s == E).all()


def test_power_factor_w_to_kw():
    e, _ = run1(
        spec(kind="power", factor=1e-3, max_gap=3600.0),
        T0 + np.array([0, 3600.0]),
        [50_000, 50_000],
        step=3600.0,
        n=1,
    )
    assert e[0] == pytest.approx(50.0)


def test_unsorted_input_gives_same_result_as_sorted():
    rng = np.random.default_rng(1)
    specs = [spec("A", rollover=1000.0), spec("B", kind="power", max_gap=300.0), spec("C", max_gap=30.0)]
    rows = []
    for i in range(3):
        t = np.sort(rng.uniform(0, 3600, 80))
        v = np.cumsum(rng.uniform(0, 40, 80)) % 1000.0 if i == 0 else rng.uniform(0, 100, 80)
        if i == 2:
            v = np.cumsum(v)
        rows.append((np.full(80, i), T0 + t, v))
    sid, ts, val = (np.concatenate(x) for x in zip(*rows, strict=True))
    a = interval_energy(specs, sid, ts, val, start=T0, step=300.0, n=12)
    p = rng.permutation(sid.size)
    b = interval_energy(specs, sid[p], ts[p], val[p], start=T0, step=300.0, n=12)
    assert np.array_equal(a.energy, b.energy) and np.array_equal(a.status, b.status)
    assert np.array_equal(a.reason, b.reason)
    assert [k for _, k in a.events()] == [k for _, k in b.events()] == [EventKind.ROLLOVER]
    assert (a.status != X).sum() > 20 and a.energy.sum() > 0


def test_duplicate_timestamps_resolved_whatever_the_order():
    # was: the larger value kept. Now the one on the trajectory 0 -> 20 (10 at t=60) is kept.
    sp = spec()
    ts = T0 + np.array([0, 60, 60, 120.0])
    v1 = np.array([0, 10, 11, 20.0])
    v2 = np.array([0, 11, 10, 20.0])
    for v, conflicting_row in ((v1, 2), (v2, 1)):
        ie = interval_energy([sp], np.zeros(4, int), ts, v, start=T0, step=60.0, n=2)
        assert ie.energy[0].tolist() == [10.0, 10.0]
        assert ie.status[0].tolist() == [M, M]
        assert ie.events() == [(conflicting_row, EventKind.CONFLICT)]
    # identical duplicates are no conflict
    ie = interval_energy([sp], np.zeros(4, int), ts, np.array([0, 10, 10, 20.0]), start=T0, step=60.0, n=2)
    assert ie.energy[0].tolist() == [10.0, 10.0] and ie.events() == []


def test_nan_and_bad_quality_rows_dropped():
    ts = T0 + np.array([0, 60, 90, 100, 120, 180])
    vals = np.array([0, 10, np.nan, 999, 20, 30])
    good = np.array([True, True, True, False, True, True])
    ie = interval_energy([spec()], np.zeros(6, int), ts, vals, start=T0, step=60.0, n=3, good=good)
    assert ie.energy[0].tolist() == [10.0, 10.0, 10.0]
    assert ie.status[0].tolist() == [M, M, M]
    assert ie.events() == [(2, EventKind.BAD_VALUE)]  # NaN: loud; bad quality: silent
    # unmasked, the 999 between 10 and 20 is a spike falling back: dropped, bridged
    ie = interval_energy([spec()], np.zeros(6, int), ts, vals, start=T0, step=60.0, n=3)
    assert ie.energy[0].tolist() == [10.0, 10.0, 10.0]
    assert ie.status[0].tolist() == [M, E, M]
    assert ie.reason[0].tolist() == [0, Reason.GLITCH_BRIDGED, 0]
    assert ie.events() == [(2, EventKind.BAD_VALUE), (3, EventKind.GLITCH)]


def test_series_without_readings_and_multi_series():
    specs = [spec("A"), spec("B"), spec("I", role=Role.IT)]
    sid = np.array([2, 0, 2, 0])
    ts = T0 + np.array([0, 0, 60, 60.0])
    val = np.array([5, 100, 8, 104.0])
    ie = interval_energy(specs, sid, ts, val, start=T0, step=60.0, n=1)
    assert ie.energy[:, 0].tolist() == [4.0, 0.0, 3.0]
    assert ie.status[:, 0].tolist() == [M, X, M]


def test_empty_input():
    empty = np.zeros(0)
    ie = interval_energy([spec()], empty.astype(int), empty, empty, start=T0, step=60, n=3)
    assert ie.energy.tolist() == [[0.0, 0.0, 0.0]] and (ie.status == X).all()


def test_spec_validation():
    with pytest.raises(ValueError):
        SeriesSpec("I", Role.IT, None, "counter", 1.0, None, 90.0)
    with pytest.raises(ValueError):
        spec(kind="power", rollover=100.0)
    with pytest.raises(ValueError):
        spec(factor=0.0)


# ---------------------------------------------------------------------------------------------
# Traps of real meters (issue 7): every trap asserts the energy (equal to the truth within
# 0.01 %), the status and reason of every cell and the judged readings. The same scenarios run
# through LivePipeline reading by reading in test_live_pipeline.py.

KW = 100.0  # true constant load of every scenario
PER_MIN = KW / 60.0  # kWh per 1-minute cell
N_CELLS = 60
GLITCH, BRIDGED = EventKind.GLITCH, Reason.GLITCH_BRIDGED


@dataclass
class Trap:
    name: str
    spec: SeriesSpec
    ts: np.ndarray
    value: np.ndarray
    truth: np.ndarray  # kWh per cell; NaN: the cell must be MISSING
    events: list[tuple[int, EventKind]]  # (row of ts/value, judgement)
    reasons: dict[int, Reason] = field(default_factory=dict)  # cell -> reason (power: + integrated)
    total_only: tuple[int, ...] = ()  # cells whose split is not defined by the truth (sum still is)

    def expected_reason(self) -> np.ndarray:
        base = Reason.POWER_INTEGRATED if self.spec.kind == "power" else Reason.NONE
        r = np.array([int(base | self.reasons.get(k, Reason.NONE)) for k in range(N_CELLS)])
        r[np.isnan(self.truth)] = 0
        return r

    def expected_status(self) -> np.ndarray:
        st = np.where(self.expected_reason() != 0, E, M)
        st[np.isnan(self.truth)] = X
        return st


def _counter(v0=5000.0, *, factor=1.0, rollover=None, max_power_kw=500.0, resolution=0.0):
    """61 readings, one a minute, of a counter at 100 kW (raw units = kWh / factor)."""
    ts = T0 + 60.0 * np.arange(N_CELLS + 1)
    raw = v0 + PER_MIN / factor * np.arange(N_CELLS + 1)
    if rollover is not None:
        raw = np.mod(raw, rollover)
    sp = spec(factor=factor, rollover=rollover, max_power_kw=max_power_kw, resolution=resolution, max_gap=150.0)
    return sp, ts, raw


def _power(max_power_kw=500.0):
    ts = T0 + 60.0 * np.arange(N_CELLS + 1)
    return spec(kind="power", max_power_kw=max_power_kw, max_gap=150.0), ts, np.full(ts.size, KW)


def _traps() -> list[Trap]:
    truth = np.full(N_CELLS, PER_MIN)
    out = []
    for name, bad in (("spike_1e9", 1e9), ("lone_zero", 0.0), ("denormal", 5e-324)):
        sp, ts, v = _counter()
        v[30] = v[30] + bad if name == "spike_1e9" else bad
        out.append(Trap(name, sp, ts, v, truth, [(30, GLITCH)], {29: BRIDGED, 30: BRIDGED}))
    # backwards jitter of 0.001 kWh within the register's resolution: zero energy, no reset
    sp, ts, v = _counter(resolution=0.01)
    v[30] = v[29] - 0.001
    out.append(Trap("jitter_within_resolution", sp, ts, v, truth, [], total_only=(29, 30)))
    # the same jitter on a small counter with no declared resolution: a lone low reading
    sp, ts, v = _counter(v0=10.0)
    v[30] = v[29] - 0.001
    out.append(Trap("jitter_beyond_resolution", sp, ts, v, truth, [(30, GLITCH)], {29: BRIDGED, 30: BRIDGED}))
    # Wh counter wrapping at 1e6 Wh during 7 missed polls: exact, the gap split linearly
    sp, ts, v = _counter(v0=1e6 - 31 * PER_MIN * 1000, factor=1e-3, rollover=1e6)
    keep = np.ones(ts.size, bool)
    keep[27:34] = False
    assert (np.diff(v[keep]) < 0).sum() == 1  # the wrap happens inside the hole
    out.append(
        Trap("rollover_missed_polls", sp, ts[keep], v[keep], truth, [(27, EventKind.ROLLOVER)],
             dict.fromkeys(range(26, 34), Reason.GAP_SPLIT))
    )  # fmt: skip
    # a spike that falls back on a meter with a rollover (and a loose 500 MW limit): not a wrap
    sp, ts, v = _counter(v0=100_000.0, factor=1e-3, rollover=1e6, max_power_kw=500_000.0)
    v[30] = 900_000.0
    out.append(Trap("spike_falls_back_rollover", sp, ts, v, truth, [(30, GLITCH)], {29: BRIDGED, 30: BRIDGED}))
    # a lone zero near the top of the range (no real wrap around it): not a wrap
    sp, ts, v = _counter(v0=930_500.0, factor=1e-3, rollover=1e6, max_power_kw=500_000.0)
    assert v[30] > 0.97e6
    v[30] = 0.0
    events = [(30, GLITCH), (42, EventKind.ROLLOVER)]  # the counter really wraps later
    out.append(Trap("zero_near_top_rollover", sp, ts, v, truth, events, {29: BRIDGED, 30: BRIDGED}))
    # a real reset right after reading 29: continues from the new level
    sp, ts, v = _counter()
    v[30:] = PER_MIN * np.arange(1, N_CELLS - 28)
    out.append(Trap("real_reset", sp, ts, v, truth, [(30, EventKind.RESET)], {29: Reason.RESET}))
    # meter replaced by one whose counter starts from another level (lower, then higher)
    for name, level in (("replacement_lower", 1200.0), ("replacement_higher", 900_000.0)):
        sp, ts, v = _counter()
        v[30:] = level + PER_MIN * np.arange(N_CELLS - 29)
        out.append(Trap(name, sp, ts, v, truth, [(30, EventKind.RESET)], {29: Reason.RESET}))
    # two readings with the same timestamp, the second off the trajectory (higher and lower)
    for name, delta in (("duplicate_higher", 500.0), ("duplicate_lower", -4000.0)):
        sp, ts, v = _counter()
        ts = np.insert(ts, 31, ts[30])
        v = np.insert(v, 31, v[30] + delta)
        out.append(Trap(name, sp, ts, v, truth, [(31, EventKind.CONFLICT)]))
    sp, ts, v = _counter()
    v[30] = np.nan
    out.append(Trap("nan_counter", sp, ts, v, truth, [(30, EventKind.BAD_VALUE)]))
    sp, ts, v = _power()
    v[30] = -KW
    out.append(Trap("negative_power", sp, ts, v, truth, [(30, EventKind.BAD_VALUE)]))
    sp, ts, v = _power()
    v[30] = np.nan
    out.append(Trap("nan_power", sp, ts, v, truth, [(30, EventKind.BAD_VALUE)]))
    sp, ts, v = _power()
    v[30] = 1e9
    out.append(Trap("power_spike", sp, ts, v, truth, [(30, GLITCH)], {29: BRIDGED, 30: BRIDGED}))
    # power-only meter silent for 21 minutes (> max_gap): MISSING, not estimated
    sp, ts, v = _power()
    keep = np.ones(ts.size, bool)
    keep[20:41] = False
    hole = truth.copy()
    hole[19:41] = np.nan
    out.append(Trap("power_gap", sp, ts[keep], v[keep], hole, []))
    return out


TRAPS = _traps()


@pytest.mark.parametrize("trap", TRAPS, ids=[t.name for t in TRAPS])
def test_trap_batch(trap: Trap):
    ie = interval_energy([trap.spec], np.zeros(trap.ts.size, int), trap.ts, trap.value, start=T0, step=60.0, n=N_CELLS)
    assert_trap(trap, ie.energy[0], ie.status[0], ie.reason[0], ie.events())
    # the same through a shuffled batch (CSV exports are not sorted)
    p = np.random.default_rng(5).permutation(trap.ts.size)
    ie2 = interval_energy(
        [trap.spec], np.zeros(trap.ts.size, int), trap.ts[p], trap.value[p], start=T0, step=60.0, n=N_CELLS
    )
    assert np.array_equal(ie2.energy, ie.energy) and np.array_equal(ie2.status, ie.status)
    assert sorted((int(p[r]), k) for r, k in ie2.events()) == trap.events


def assert_trap(trap: Trap, energy, status, reason, events) -> None:
    known = ~np.isnan(trap.truth)
    exact = known.copy()
    exact[list(trap.total_only)] = False
    assert energy[exact] == pytest.approx(trap.truth[exact], rel=1e-4)
    assert energy[known].sum() == pytest.approx(trap.truth[known].sum(), rel=1e-4)
    assert (energy[~known] == 0).all()
    assert status.tolist() == trap.expected_status().tolist()
    assert reason.tolist() == trap.expected_reason().tolist()
    assert events == trap.events


def test_power_above_max_and_negative_power_are_never_values():
    sp, ts, v = _power(max_power_kw=150.0)
    v[10], v[20], v[40] = 151.0, -0.5, -1e-9  # above the meter's maximum, negative
    ie = interval_energy([sp], np.zeros(ts.size, int), ts, v, start=T0, step=60.0, n=N_CELLS)
    assert ie.events() == [(10, GLITCH), (20, EventKind.BAD_VALUE), (40, EventKind.BAD_VALUE)]
    assert ie.energy[0] == pytest.approx(np.full(N_CELLS, PER_MIN), rel=1e-12)
    assert (ie.energy[0] >= 0).all()
    # within the declared resolution a tiny negative reading is zero power, not bad
    sp0 = spec(kind="power", max_power_kw=150.0, max_gap=150.0, resolution=0.01)
    ie = interval_energy([sp0], np.zeros(3, int), T0 + np.array([0, 60, 120.0]), np.array([0, -0.005, 0.0]),
                         start=T0, step=60.0, n=2)  # fmt: skip
    assert ie.events() == [] and ie.energy[0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("run", [2, 3])
def test_runs_of_bad_readings_are_glitches_too(run):
    sp, ts, v = _counter()
    v[30 : 30 + run] = 0.0  # the meter answered 0 for two or three polls
    ie = interval_energy([sp], np.zeros(ts.size, int), ts, v, start=T0, step=60.0, n=N_CELLS)
    assert ie.energy[0] == pytest.approx(np.full(N_CELLS, PER_MIN), rel=1e-9)
    assert ie.events() == [(30 + j, GLITCH) for j in range(run)]
    # bridged by one pair of (run + 1) minutes > max_gap (150 s): also a gap, split linearly
    assert (ie.reason[0][29 : 30 + run] == BRIDGED | Reason.GAP_SPLIT).all()
    assert (ie.status[0][29 : 30 + run] == E).all()
    assert np.count_nonzero(ie.reason[0]) == run + 1


def test_four_bad_readings_are_a_reset_pair_with_bounded_energy():
    """Beyond MAX_GLITCH_RUN the readings are taken as a level change and back: booked as reset
    pairs whose energy comes from the neighbours' rate — the total stays right, cells say RESET."""
    sp, ts, v = _counter()
    v[30:34] = 0.0
    ie = interval_energy([sp], np.zeros(ts.size, int), ts, v, start=T0, step=60.0, n=N_CELLS)
    # the 0 -> 0 pairs read as idle, the reset pairs at half rate: bounded, never a spike
    assert 0.9 * KW < ie.energy[0].sum() <= KW
    assert ie.energy[0].max() <= PER_MIN * (1 + 1e-9)
    assert ie.events() == [(30, EventKind.RESET), (34, EventKind.RESET)]
    assert ie.reason[0][29] == ie.reason[0][33] == Reason.RESET


def test_judged_readings_are_vectorised_for_many_series():
    """The batch path (CSV backfill) judges every series at once; events map to input rows."""
    rng = np.random.default_rng(11)
    n_meters = 50
    specs, rows = [], []
    for m in range(n_meters):
        sp, ts, v = _counter(v0=float(rng.uniform(1000, 9000)))
        specs.append(SeriesSpec(f"m{m}", sp.role, None, "counter", 1.0, None, 150.0, 500.0, 0.0))
        if m % 5 == 0:
            v[17 + m % 40] = 0.0  # one lone zero on every fifth meter
        rows.append((np.full(ts.size, m), ts, v))
    sid, ts, v = (np.concatenate(x) for x in zip(*rows, strict=True))
    p = rng.permutation(sid.size)
    ie = interval_energy(specs, sid[p], ts[p], v[p], start=T0, step=60.0, n=N_CELLS)
    assert ie.energy.sum(axis=1) == pytest.approx(np.full(n_meters, KW), rel=1e-9)
    assert ie.counts() == {GLITCH: 10}
    glitched = sorted(int(sid[p][r]) for r, _ in ie.events())
    assert glitched == list(range(0, n_meters, 5))
    assert all(v[p][r] == 0.0 for r, _ in ie.events())


def test_series_specs_carry_max_power_and_resolution_from_the_site(tmp_path):
    from pue_monitor.config.loader import load_site
    from pue_monitor.config.models import DEFAULT_MAX_POWER_KW
    from pue_monitor.errors import ConfigError
    from pue_monitor.pipeline.model import series_specs

    site = """\
site: {id: t1, timezone: UTC}
devices:
  - id: inc
    protocol: modbus
    host: 127.0.0.1
    profile: schneider-iem3000
    meter: {role: facility_input, energy: import_energy, power: active_power}
  - id: pdu1
    protocol: modbus
    host: 127.0.0.1
    port: 5021
    profile: eastron-sdm630
    meter: {role: it, it_location: pdu_output, energy: import_energy, max_power_kw: 22, resolution: 0.01}
"""
    path = tmp_path / "site.yaml"
    path.write_text(site)
    specs = series_specs(load_site(path))
    inc_e, inc_p, pdu = (
        specs[("inc", "import_energy")],
        specs[("inc", "active_power")],
        specs[("pdu1", "import_energy")],
    )
    assert inc_e.max_power_kw == inc_p.max_power_kw == DEFAULT_MAX_POWER_KW[Role.FACILITY_INPUT] == 500_000.0
    assert (inc_e.resolution, inc_p.resolution) == (0.0, 0.0)
    assert (pdu.max_power_kw, pdu.resolution) == (22.0, 0.01)
    path.write_text(site.replace("max_power_kw: 22", "max_power_kw: -1"))
    with pytest.raises(ConfigError, match="max_power_kw"):
        load_site(path)
