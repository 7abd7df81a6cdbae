"""rollup / aggregate: PUE = sum/sum, category, completeness, calendar buckets."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.energy import IntervalEnergy, SeriesSpec, Status, interval_energy
from pue_monitor.pipeline.pue import PueInterval, aggregate, rollup

M, E, X = Status.MEASURED, Status.ESTIMATED, Status.MISSING


def ts(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def sp(meter, role, kind="counter", loc=None):
    return SeriesSpec(meter, role, loc, kind, 1.0, None, 90.0)


SPECS = [
    sp("F", Role.FACILITY_INPUT),
    sp("I1", Role.IT, loc=ITLocation.PDU_OUTPUT),
    sp("I2", Role.IT, loc=ITLocation.IT_EQUIPMENT_INPUT),
    sp("C", Role.COOLING),
]


JAN1 = ts(2024, 1, 1)


def ie_of(energy, status, start=JAN1, step=60.0):
    return IntervalEnergy(start, step, np.asarray(energy, float), np.asarray(status, np.int8))


def test_rollup_numbers_category_and_shares():
    energy = [[30.0, 30.0], [12.0, 12.0], [8.0, 8.0], [6.0, 6.0]]
    status = [[M, M], [M, E], [M, X], [E, M]]
    a, b = rollup(ie_of(energy, status), SPECS)
    assert a.start == ts(2024, 1, 1) and a.end == a.start + 60
    assert a.e_facility == 30.0 and a.e_it == 20.0
    assert a.pue == pytest.approx(1.5)
    assert a.e_subsystems == {"cooling": 6.0}
    assert a.ppue == {"cooling": pytest.approx(26.0 / 20.0)}
    assert a.e_unattributed == pytest.approx(4.0)
    assert a.category == 2  # weakest IT meter: PDU output
    assert (a.measured, a.estimated, a.missing) == (0.75, 0.25, 0.0)
    assert a.estimated_flag
    # I2 missing in the second interval: no E_IT, no PUE; facility and cooling still known
    assert b.e_it is None and b.pue is None and b.ppue == {} and b.e_unattributed is None
    assert b.e_facility == 30.0 and b.e_subsystems == {"cooling": 6.0}
    assert (b.measured, b.estimated, b.missing) == (0.5, 0.25, 0.25)


def test_negative_unattributed_signals_metering_error():
    (a,) = rollup(ie_of([[20.0], [15.0], [0.0], [8.0]], [[M], [M], [M], [M]]), SPECS)
    assert a.e_unattributed == pytest.approx(20.0 - 15.0 - 8.0)
    assert a.e_unattributed < 0


def test_aggregate_is_sum_over_sum_not_mean_of_ratios():
    specs = [sp("F", Role.FACILITY_INPUT), sp("I", Role.IT, loc=ITLocation.UPS_OUTPUT)]
    # interval 1: 150/100 = 1.5 ; interval 2: 30/10 = 3.0 ; mean of ratios would be 2.25
    ivs = rollup(ie_of([[150.0, 30.0], [100.0, 10.0]], [[M, M], [M, M]]), specs)
    assert [i.pue for i in ivs] == [1.5, 3.0]
    (h,) = aggregate(ivs, resolution="1h", tz="UTC")
    assert h.pue == pytest.approx(180.0 / 110.0)
    assert h.pue != pytest.approx(2.25)
    assert (h.e_facility, h.e_it) == (180.0, 110.0)
    assert h.start == ts(2024, 1, 1) and h.end == ts(2024, 1, 1, 1)
    assert h.coverage == 1.0 and h.category == 1


def test_aggregate_skips_intervals_without_pue_and_reports_coverage():
    energy = [
        [30.0, 30.0, 40.0, 30.0],
        [12.0, 12.0, 20.0, 12.0],
        [8.0, 8.0, 10.0, 8.0],
        [6.0, 6.0, 6.0, 6.0],
    ]
    status = [[M] * 4, [M] * 4, [M, X, M, M], [M] * 4]
    ivs = rollup(ie_of(energy, status), SPECS)
    (q,) = aggregate(ivs, resolution="15m", tz="UTC")
    assert q.coverage == pytest.approx(0.75)
    assert q.e_facility == 100.0 and q.e_it == 70.0  # the same three intervals
    assert q.pue == pytest.approx(100.0 / 70.0)
    assert q.e_subsystems == {"cooling": 18.0}
    assert q.ppue == {"cooling": pytest.approx(88.0 / 70.0)}
    assert q.missing == pytest.approx(1 / 16) and q.measured == pytest.approx(15 / 16)


def test_daily_buckets_start_at_local_midnight_shanghai():
    specs = [sp("F", Role.FACILITY_INPUT), sp("I", Role.IT, loc=ITLocation.IT_EQUIPMENT_INPUT)]
    n = 48  # hourly intervals 2024-01-01 00:00 .. 2024-01-03 00:00 UTC
    fac = np.arange(1, n + 1, dtype=float) * 2.0
    it = np.full(n, 1.0)
    ivs = rollup(ie_of([fac, it], [[M] * n, [M] * n], step=3600.0), specs)
    days = aggregate(ivs, resolution="1d", tz="Asia/Shanghai")
    assert [d.start for d in days] == [ts(2023, 12, 31, 16), ts(2024, 1, 1, 16), ts(2024, 1, 2, 16)]
    assert [d.end - d.start for d in days] == [86400.0] * 3
    assert [d.e_it for d in days] == [16.0, 24.0, 8.0]
    # first day: hours 0..15 UTC -> fac 2..32
    assert days[0].e_facility == sum(2.0 * k for k in range(1, 17))
    assert days[1].pue == pytest.approx(sum(2.0 * k for k in range(17, 41)) / 24.0)


def test_daily_bucket_on_dst_day_is_23_hours():
    specs = [sp("F", Role.FACILITY_INPUT), sp("I", Role.IT, loc=ITLocation.PDU_OUTPUT)]
    start = ts(2024, 3, 30, 23)  # 2024-03-31 00:00 Europe/Berlin (CET)
    ivs = rollup(ie_of([np.full(23, 2.0), np.ones(23)], [[M] * 23, [M] * 23], start, 3600.0), specs)
    (day,) = aggregate(ivs, resolution="1d", tz="Europe/Berlin")
    assert day.start == start and day.end == ts(2024, 3, 31, 22)
    assert day.e_it == 23.0


def test_aggregate_of_aggregates_keeps_weights():
    specs = [sp("F", Role.FACILITY_INPUT), sp("I", Role.IT, loc=ITLocation.PDU_OUTPUT)]
    n = 120
    fac = np.where(np.arange(n) < 60, 3.0, 1.5)
    it = np.where(np.arange(n) < 60, 2.0, 1.0)
    st_it = [M] * 30 + [X] * 30 + [M] * 60
    ivs = rollup(ie_of([fac, it], [[M] * n, st_it]), specs)
    q = aggregate(ivs, resolution="15m", tz="UTC")
    (h2,) = aggregate(q, resolution="1d", tz="UTC")
    (direct,) = aggregate(ivs, resolution="1d", tz="UTC")
    assert h2.pue == pytest.approx(direct.pue) == pytest.approx((90 + 90) / (60 + 60))
    assert h2.coverage == pytest.approx(direct.coverage) == pytest.approx(0.75)
    assert h2.missing == pytest.approx(direct.missing) == pytest.approx(30 / 240)


def test_counter_preferred_over_power_of_same_meter():
    specs = [
        SeriesSpec("F", Role.FACILITY_INPUT, None, "counter", 1.0, None, 90.0),
        SeriesSpec("F", Role.FACILITY_INPUT, None, "power", 1.0, None, 90.0),
        SeriesSpec("I", Role.IT, ITLocation.PDU_OUTPUT, "power", 1.0, None, 90.0),
    ]
    t0 = ts(2024, 1, 1)
    sid = np.array([0, 0, 1, 1, 2, 2])
    t = t0 + np.array([0, 60, 0, 60, 0, 60.0])
    v = np.array([100, 103, 999, 999, 120, 120.0])  # power of F is wrong on purpose
    ie = interval_energy(specs, sid, t, v, start=t0, step=60.0, n=1)
    (a,) = rollup(ie, specs)
    assert a.e_facility == 3.0  # counter, not 999 kW * 1 min
    assert a.e_it == pytest.approx(2.0)  # power-only meter: 120 kW * 60 s
    assert a.pue == pytest.approx(1.5)
    assert (a.measured, a.estimated) == (0.5, 0.5)  # F measured (counter), I estimated (power)


def test_no_it_energy_gives_no_pue():
    specs = [sp("F", Role.FACILITY_INPUT), sp("I", Role.IT, loc=ITLocation.PDU_OUTPUT)]
    (a,) = rollup(ie_of([[5.0], [0.0]], [[M], [M]]), specs)
    assert a.e_it == 0.0 and a.pue is None


def test_inconsistent_meter_roles_rejected():
    specs = [sp("F", Role.FACILITY_INPUT), sp("F", Role.COOLING, kind="power")]
    with pytest.raises(ValueError, match="different roles"):
        rollup(ie_of([[1.0], [1.0]], [[M], [M]]), specs)


def test_estimated_flag_false_when_all_measured():
    iv = PueInterval(0, 60, 1.0, 1.0, {}, 1.0, {}, 3, 1.0, 0.0, 0.0)
    assert not iv.estimated_flag
