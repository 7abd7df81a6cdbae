"""rollup / aggregate: PUE = sum/sum, category, completeness, calendar buckets."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.energy import IntervalEnergy, SeriesSpec, Status, interval_energy
from pue_monitor.pipeline.events import EventKind
from pue_monitor.pipeline.live import LivePipeline
from pue_monitor.pipeline.pue import PueInterval, aggregate, rollup
from pue_monitor.readings import Reading

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


# ------------------------------------------------------------- a month with glitches (issue 7)


def _month(seed=2):
    """A 30-day month of 1-minute readings of a facility and an IT counter (kWh, read with up
    to 2 s of jitter), true power known in closed form; one zero on the IT meter, one 1e9 spike
    on the facility meter. Returns specs, sid, ts, value, the grid and the true month PUE."""
    days = 30
    t0 = ts(2024, 4, 1)
    w = 2 * np.pi / 86400.0

    def it_kwh(t):  # P_IT = 500 + 50 sin(w t) kW
        return (500.0 * t + 50.0 * (1 - np.cos(w * t)) / w) / 3600.0

    def fac_kwh(t):  # P_F = 1.15 P_IT + 10 + 5 sin(w t) kW (PUE about 1.17)
        return 1.15 * it_kwh(t) + (10.0 * t + 5.0 * (1 - np.cos(w * t)) / w) / 3600.0

    rng = np.random.default_rng(seed)
    n = days * 1440 + 1
    rel = 60.0 * np.arange(n) + rng.uniform(0, 2, (2, n))
    v_f = 1_234_567.0 + fac_kwh(rel[0])
    v_i = 800_000.0 + it_kwh(rel[1])
    v_i[20_000] = 0.0  # one poll answered 0
    v_f[31_000] += 1e9  # one poll 1e9 too high
    specs = [
        SeriesSpec("F", Role.FACILITY_INPUT, None, "counter", 1.0, None, 150.0, 500_000.0),
        SeriesSpec("I", Role.IT, ITLocation.UPS_OUTPUT, "counter", 1.0, None, 150.0, 100_000.0),
    ]
    sid = np.repeat([0, 1], n)
    tt = t0 + np.concatenate([rel[0], rel[1]])
    val = np.concatenate([v_f, v_i])
    start, n_cells = t0 + 60.0, days * 1440 - 1  # minutes fully inside both series' readings
    a, b = 60.0, 60.0 * (n_cells + 1)
    true_pue = (fac_kwh(b) - fac_kwh(a)) / (it_kwh(b) - it_kwh(a))
    return specs, sid, tt, val, start, n_cells, true_pue


def test_month_pue_with_a_zero_and_a_spike_batch():
    specs, sid, t, v, start, n, true_pue = _month()
    ie = interval_energy(specs, sid, t, v, start=start, step=60.0, n=n)
    assert ie.counts() == {EventKind.GLITCH: 2}
    ivs = rollup(ie, specs)
    month = _sum(ivs)
    days = aggregate(ivs, resolution="1d", tz="UTC")
    assert len(days) == 30 and math.fsum(d.e_it for d in days) == pytest.approx(month.e_it, rel=1e-12)
    assert month.pue == pytest.approx(true_pue, rel=1e-4)  # was 0.996 (zero) and 2.52 (spike)
    assert round(month.pue, 4) == round(true_pue, 4)
    assert month.coverage == 1.0
    # the minutes each bridge spans (readings 2 s off the minute: 3 minutes per glitch) say
    # so; nothing else is estimated
    glitchy = [i for i in ivs if i.estimated_glitch_bridged > 0]
    assert len(glitchy) == 6 and all(i.estimated == i.estimated_glitch_bridged == 0.5 for i in glitchy)
    assert sum(i.estimated > 0 for i in ivs) == 6


def test_month_pue_with_a_zero_and_a_spike_live():
    specs, sid, t, v, start, n, true_pue = _month()
    keys = [("F", "energy"), ("I", "energy")]
    pipe = LivePipeline(dict(zip(keys, specs, strict=True)), step=60.0)
    order = np.argsort(t, kind="stable")
    final: dict[float, PueInterval] = {}
    next_close = float(t.min()) + 900.0
    for i in order.tolist():  # reading by reading, as the collectors deliver them
        if t[i] > next_close:
            for iv in pipe.close(now=next_close, grace=90.0):
                final[iv.start] = iv
            next_close += 900.0
        dev, pt = keys[sid[i]]
        pipe.ingest([Reading(float(t[i]), "site", dev, pt, float(v[i]), "kWh")])
    for iv in pipe.close(now=float(t.max()) + 600.0, grace=0.0):
        final[iv.start] = iv
    ivs = [final[start + 60.0 * k] for k in range(n)]
    month = _sum(ivs)
    assert month.pue == pytest.approx(true_pue, rel=1e-4)
    assert round(month.pue, 4) == round(true_pue, 4)
    assert pipe.counts == {EventKind.GLITCH: 2}
    assert [e.kind for e in pipe.drain_events()] == [EventKind.GLITCH, EventKind.GLITCH]
    assert sum(i.estimated_glitch_bridged > 0 for i in ivs) == 6


def _sum(ivs):
    """The month as one bucket: sum over sum (a month is not a resolution of aggregate())."""
    fac = math.fsum(i.e_facility for i in ivs if i.pue is not None)
    it = math.fsum(i.e_it for i in ivs if i.pue is not None)
    cov = sum(i.pue is not None for i in ivs) / len(ivs)
    return PueInterval(ivs[0].start, ivs[-1].end, fac, it, {}, fac / it, {}, 1, 1.0, 0.0, 0.0, coverage=cov)


def test_reason_shares_tell_a_power_feed_from_a_glitch():
    """One power-only IT meter: every minute is estimated (power integrated), only the glitch
    minutes are glitch_bridged — the total share alone cannot tell them apart."""
    specs = [
        SeriesSpec("F", Role.FACILITY_INPUT, None, "counter", 1.0, None, 150.0, 500_000.0),
        SeriesSpec("I", Role.IT, ITLocation.UPS_OUTPUT, "power", 1.0, None, 150.0, 100_000.0),
    ]
    t0 = ts(2024, 1, 1)
    tt = t0 + 60.0 * np.arange(11)
    f = 1000.0 + 2.0 * np.arange(11)
    f[5] = 0.0
    sid = np.repeat([0, 1], 11)
    ie = interval_energy(specs, sid, np.tile(tt, 2), np.concatenate([f, np.full(11, 100.0)]),
                         start=t0, step=60.0, n=10)  # fmt: skip
    ivs = rollup(ie, specs)
    assert [i.estimated for i in ivs] == [0.5] * 4 + [1.0] * 2 + [0.5] * 4
    assert [i.estimated_power_integrated for i in ivs] == [0.5] * 10
    assert [i.estimated_glitch_bridged for i in ivs] == [0.0] * 4 + [0.5] * 2 + [0.0] * 4
    assert all(i.pue == pytest.approx(2.0 / (100.0 / 60.0)) for i in ivs)
    (h,) = aggregate(ivs, resolution="1h", tz="UTC")
    assert h.estimated_glitch_bridged == pytest.approx(0.1) and h.estimated_power_integrated == pytest.approx(0.5)


def test_store_migrates_and_keeps_reason_shares(tmp_path):
    """A store written before the reason columns (schema 2) gains them on open; rows keep 0."""
    import sqlite3

    from pue_monitor.sinks.sqlite import SCHEMA_VERSION, SqliteStore, StoreReader

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE pue_intervals (site TEXT NOT NULL, resolution TEXT NOT NULL, start REAL NOT NULL,
        end REAL NOT NULL, e_facility_kwh REAL, e_it_kwh REAL, pue REAL, category INTEGER NOT NULL,
        measured REAL NOT NULL, estimated REAL NOT NULL, missing REAL NOT NULL, coverage REAL NOT NULL,
        e_cooling_kwh REAL, e_power_distribution_kwh REAL, e_lighting_kwh REAL, e_other_kwh REAL,
        e_unattributed_kwh REAL, updated REAL NOT NULL, PRIMARY KEY (site, resolution, start));
        INSERT INTO pue_intervals VALUES ('s','1m',0,60,2,1,2,1,1,0,0,1,NULL,NULL,NULL,NULL,1,0);
        INSERT INTO meta VALUES ('schema_version', '2');"""
    )
    old.commit()
    old.close()
    store = SqliteStore(path)
    iv = PueInterval(60, 120, 3.0, 2.0, {}, 1.5, {}, 1, 0.5, 0.5, 0.0, estimated_power_integrated=0.5,
                     estimated_glitch_bridged=0.5)  # fmt: skip
    store.upsert_intervals("s", "1m", [iv], now=1.0)
    store.close()
    reader = StoreReader(path)
    rows = reader.intervals("1m")
    assert reader.meta()["schema_version"] == str(SCHEMA_VERSION) and SCHEMA_VERSION >= 6  # migrated to the newest
    assert reader.sensor_faults() == []  # the sensor_faults table (6) is there, empty
    assert [r["estimated_glitch_bridged"] for r in rows] == [0.0, 0.5]
    assert [r["estimated_power_integrated"] for r in rows] == [0.0, 0.5]
    assert [r["estimated_reset"] for r in rows] == [0.0, 0.0]
    reader.close()
