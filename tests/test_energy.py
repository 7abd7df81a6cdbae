"""interval_energy: counters (rollover, reset, gaps), power integration, input hygiene."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.energy import SeriesSpec, Status, interval_energy

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
):
    loc = ITLocation.PDU_OUTPUT if role is Role.IT else None
    return SeriesSpec(meter, role, loc, kind, factor, rollover, max_gap)


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
    # wrapped delta 10000 - 9990 + 9000 = 9010 >= 5000: not a plausible rollover -> reset
    e, s = run1(spec(rollover=10000.0), T0 + np.array([0, 60, 120]), [9980, 9990, 9000], n=2)
    assert e.tolist() == [10.0, 9000.0]
    assert s.tolist() == [M, E]


def test_reset_energy_is_current_value_and_estimated():
    e, s = run1(spec(), T0 + np.array([0, 60, 120, 180]), [1000, 1010, 3, 13], n=3)
    assert e.tolist() == [10.0, 3.0, 10.0]
    assert s.tolist() == [M, E, M]


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
        spec(kind="power", factor=1e-3),
        T0 + np.array([0, 3600.0]),
        [50_000, 50_000],
        step=3600.0,
        n=1,
    )
    assert e[0] == pytest.approx(50.0)


def test_unsorted_input_gives_same_result_as_sorted():
    rng = np.random.default_rng(1)
    specs = [spec("A", rollover=1000.0), spec("B", kind="power"), spec("C", max_gap=30.0)]
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
    assert (a.status != X).sum() > 20 and a.energy.sum() > 0


def test_duplicate_timestamps_resolved_whatever_the_order():
    sp = spec()
    ts = T0 + np.array([0, 60, 60, 120.0])
    v1 = np.array([0, 10, 11, 20.0])
    v2 = np.array([0, 11, 10, 20.0])
    e1, _ = run1(sp, ts, v1, n=2)
    e2, _ = run1(sp, ts, v2, n=2)
    assert e1.tolist() == e2.tolist() == [11.0, 9.0]


def test_nan_and_bad_quality_rows_dropped():
    ts = T0 + np.array([0, 60, 90, 100, 120, 180])
    vals = np.array([0, 10, np.nan, 999, 20, 30])
    good = np.array([True, True, True, False, True, True])
    e, s = run1(spec(), ts, vals, n=3, good=good)
    assert e.tolist() == [10.0, 10.0, 10.0]
    assert s.tolist() == [M, M, M]
    e_nomask, _ = run1(spec(), ts, vals, n=3)  # the bad row does matter when not masked
    assert e_nomask[1] != 10.0


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
