"""LivePipeline: chunked == batch, restated gaps, bounded buffers, instant power."""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np
import pytest

from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.energy import SeriesSpec, interval_energy
from pue_monitor.pipeline.events import EventKind
from pue_monitor.pipeline.live import LivePipeline
from pue_monitor.pipeline.pue import REASON_FIELDS, rollup
from pue_monitor.readings import Quality, Reading
from tests.test_energy import N_CELLS, TRAPS, Trap
from tests.test_energy import T0 as T0_TRAPS

T0 = 1_700_000_040.0  # multiple of 60

SPECS = {
    ("F", "energy"): SeriesSpec("F", Role.FACILITY_INPUT, None, "counter", 1e-3, 1e7, 90.0),
    ("F", "power"): SeriesSpec("F", Role.FACILITY_INPUT, None, "power", 1e-3, None, 90.0),
    ("I", "energy"): SeriesSpec("I", Role.IT, ITLocation.PDU_OUTPUT, "counter", 1.0, None, 90.0),
    ("C", "power"): SeriesSpec("C", Role.COOLING, None, "power", 1.0, None, 90.0),
}
KEYS = list(SPECS)


def make_readings(minutes=180, it_gap=None, seed=3):
    """F: 150 kW (Wh counter wrapping at 1e7 Wh, W power), I: 100 kW (kWh), C: 40 kW."""
    rng = np.random.default_rng(seed)
    out = []
    for dev, pt, kw, unit in [
        ("F", "energy", 150.0, "Wh"),
        ("F", "power", 150.0, "W"),
        ("I", "energy", 100.0, "kWh"),
        ("C", "power", 40.0, "kW"),
    ]:
        t = T0 + 5 + 60.0 * np.arange(minutes) + rng.uniform(-3, 3, minutes)
        if dev == "I" and it_gap is not None:
            t = t[(t < T0 + it_gap[0]) | (t > T0 + it_gap[1])]
        if pt == "energy":
            kwh = kw * (t - T0) / 3600.0
            v = (9_990_000.0 + kwh * 1000.0) % 1e7 if unit == "Wh" else 5000.0 + kwh
        else:
            v = np.full(t.size, kw * (1000.0 if unit == "W" else 1.0))
        out += [Reading(float(a), "s", dev, pt, float(b), unit) for a, b in zip(t, v, strict=True)]
    out.sort(key=lambda r: r.ts)
    return out


def batch(readings, start, n):
    sid = np.array([KEYS.index((r.device, r.point)) for r in readings])
    ts = np.array([r.ts for r in readings])
    val = np.array([r.value for r in readings])
    specs = list(SPECS.values())
    return rollup(interval_energy(specs, sid, ts, val, start=start, step=60.0, n=n), specs)


def run_live(readings, chunk=600.0, grace=90.0, end=None, **kw):
    pipe = LivePipeline(SPECS, **kw)
    state: dict[float, object] = {}
    t = readings[0].ts
    end = end if end is not None else readings[-1].ts + 600
    i = 0
    while t < end:
        t += chunk
        j = i
        while j < len(readings) and readings[j].ts <= t:
            j += 1
        pipe.ingest(readings[i:j])
        i = j
        for iv in pipe.close(now=t, grace=grace):
            state[iv.start] = iv
    return pipe, state


def assert_same(a, b):
    assert a.start == b.start and a.end == b.end
    for f in ("e_facility", "e_it", "pue", "e_unattributed"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            assert x == pytest.approx(y, rel=1e-9, abs=1e-9), f
    assert a.e_subsystems == pytest.approx(b.e_subsystems, rel=1e-9)
    assert (a.measured, a.estimated, a.missing, a.category) == (
        b.measured,
        b.estimated,
        b.missing,
        b.category,
    )


def test_chunked_live_equals_batch():
    readings = make_readings()
    pipe, state = run_live(readings)
    start0 = pipe.start0
    assert start0 == T0 + 60  # first step boundary at/after the first reading (T0+2..T0+8)
    starts = sorted(state)
    assert starts == [start0 + 60.0 * k for k in range(len(starts))]
    ref = batch(readings, start0, len(starts))
    for iv, r in zip((state[s] for s in starts), ref, strict=True):
        assert_same(iv, r)
    # physical check: minute k=10 is fully measured: PUE 150/100, cooling 40 kW
    iv = state[start0 + 600]
    assert iv.e_facility == pytest.approx(2.5, rel=1e-9)  # 150 kW * 1 min (counter, incl. rollover)
    assert iv.e_it == pytest.approx(100 / 60, rel=1e-9)
    assert iv.pue == pytest.approx(1.5, rel=1e-9)
    assert iv.e_subsystems["cooling"] == pytest.approx(40 / 60, rel=1e-9)
    assert (iv.measured, iv.estimated) == (pytest.approx(2 / 3), pytest.approx(1 / 3))


def test_unfinished_intervals_are_missing_and_closing_again_returns_nothing_new():
    readings = make_readings(minutes=30)
    pipe = LivePipeline(SPECS)
    pipe.ingest(readings)
    first = pipe.close(now=T0 + 30 * 60 + 60, grace=0.0)
    assert [i.start for i in first] == [T0 + 60 + 60.0 * k for k in range(30)]
    assert first[-1].pue is None  # last minute not covered by a reading at/after its end
    assert pipe.close(now=T0 + 30 * 60 + 60, grace=0.0) == []  # deterministic, nothing changed


def test_gap_is_restated_when_meter_returns():
    gap = (1800.0, 1800.0 + 3600.0)  # IT meter silent for 1 h
    readings = make_readings(minutes=150, it_gap=gap)
    pipe = LivePipeline(SPECS)
    returned: dict[float, list] = {}
    prev = -np.inf
    for cut in (T0 + 1500, T0 + 3000, T0 + gap[1] - 60, T0 + 9000):  # 3rd: just before return
        pipe.ingest([r for r in readings if prev < r.ts <= cut])
        prev = cut
        for iv in pipe.close(now=cut, grace=60.0):
            returned.setdefault(iv.start, []).append(iv)
    in_gap = T0 + 60.0 * 45  # minute inside the hole
    versions = returned[in_gap]
    assert len(versions) == 2
    assert versions[0].e_it is None and versions[0].pue is None
    assert versions[0].e_facility == pytest.approx(2.5, rel=1e-9)
    assert versions[1].e_it == pytest.approx(100 / 60, rel=1e-6)  # constant power: linear = true
    assert versions[1].pue == pytest.approx(1.5, rel=1e-6)
    assert versions[1].estimated > 0
    # final state matches the batch computation
    final = {s: v[-1] for s, v in returned.items()}
    starts = sorted(final)
    ref = batch(readings, pipe.start0, len(starts))
    for s, r in zip(starts, ref, strict=True):
        assert_same(final[s], r)
    # every minute of the hole was restated with the bridged (linear) IT energy
    hole = [s for s in starts if T0 + gap[0] + 60 <= s < T0 + gap[1] - 60]
    assert len(hole) >= 57
    assert all(final[s].e_it == pytest.approx(100 / 60, rel=1e-6) for s in hole)
    assert all(final[s].estimated == pytest.approx(2 / 3) for s in hole)  # F power + I counter
    assert len(returned[T0 + 600]) == 1  # minutes before the hole were never restated


def test_buffers_and_window_stay_bounded_with_a_dead_meter():
    readings = [r for r in make_readings(minutes=400) if r.device != "I" or r.ts < T0 + 600]
    pipe, state = run_live(readings, horizon=3600.0)
    assert pipe.window <= 62  # horizon (60 intervals) + grace
    assert pipe.buffered <= 4 * 80
    # dead IT meter -> intervals finalised without PUE, but facility energy still there
    late = state[max(state) - 3600]
    assert late.pue is None and late.e_facility == pytest.approx(2.5, rel=1e-9)
    assert late.missing == pytest.approx(1 / 3)


def test_unknown_points_and_bad_quality_ignored():
    pipe = LivePipeline(SPECS)
    pipe.ingest(
        [
            Reading(T0, "s", "X", "energy", 1.0, "kWh"),
            Reading(T0, "s", "I", "energy", 1.0, "kWh", Quality.BAD),
            Reading(T0, "s", "I", "energy", float("nan"), "kWh"),
        ]
    )
    assert pipe.buffered == 0
    assert pipe.close(now=T0 + 600, grace=0) == []


def test_instant_power_and_pue():
    pipe = LivePipeline(SPECS)
    pipe.ingest(
        [
            Reading(T0, "s", "F", "power", 149_000.0, "W"),
            Reading(T0 + 60, "s", "F", "power", 150_000.0, "W"),
            Reading(T0, "s", "F", "energy", 9_999_000.0, "Wh"),  # ignored: F has a power point
            Reading(T0 + 60, "s", "F", "energy", 1_500.0, "Wh"),
            Reading(T0, "s", "I", "energy", 100.0, "kWh"),
            Reading(T0 + 60, "s", "I", "energy", 101.5, "kWh"),  # 1.5 kWh / 60 s = 90 kW
            Reading(T0 + 60, "s", "C", "power", 40.0, "kW"),
        ]
    )
    ip = pipe.instant()
    assert ip.ts == T0 + 60
    assert ip.power_by_role == {
        "cooling": pytest.approx(40.0),
        "facility_input": pytest.approx(150.0),
        "it": pytest.approx(90.0),
    }
    assert ip.pue == pytest.approx(150.0 / 90.0)
    # IT values older than 3 * max_gap: no instant PUE
    stale = pipe.instant(now=T0 + 60 + 3 * 90 + 1)
    assert stale.pue is None and "it" not in stale.power_by_role


def test_instant_counter_rollover_rate():
    pipe = LivePipeline({k: SPECS[k] for k in [("F", "energy"), ("I", "energy")]})
    pipe.ingest(
        [
            Reading(T0, "s", "F", "energy", 9_999_000.0, "Wh"),
            Reading(T0 + 60, "s", "F", "energy", 1_500.0, "Wh"),  # 2.5 kWh in 60 s across rollover
            Reading(T0, "s", "I", "energy", 10.0, "kWh"),
            Reading(T0 + 60, "s", "I", "energy", 12.0, "kWh"),
        ]
    )
    ip = pipe.instant()
    assert ip.power_by_role["facility_input"] == pytest.approx(150.0)
    assert ip.pue == pytest.approx(150.0 / 120.0)


# ---------------------------------------------------------------------------------------------
# The traps of test_energy.py, fed to the live pipeline one reading at a time (issue 7)


def feed_one_by_one(trap: Trap, *, grace: float = 65.0):
    """Each reading as the collector delivers it, close() after each one; final state per start."""
    pipe = LivePipeline({("F", "p"): trap.spec})
    final: dict[float, object] = {}
    for t, v in zip(trap.ts.tolist(), trap.value.tolist(), strict=True):
        pipe.ingest([Reading(t, "s", "F", "p", v, "kWh")])
        for iv in pipe.close(now=t + 1.0, grace=grace):
            final[iv.start] = iv
    for iv in pipe.close(now=float(trap.ts.max()) + 3600.0, grace=0.0):  # after the horizon of judging
        final[iv.start] = iv
    return pipe, final


@pytest.mark.parametrize("trap", TRAPS, ids=[t.name for t in TRAPS])
def test_trap_live(trap: Trap):
    pipe, final = feed_one_by_one(trap)
    assert pipe.start0 == T0_TRAPS
    cells = [final[T0_TRAPS + 60.0 * k] for k in range(N_CELLS)]
    energy = np.array([0.0 if iv.e_facility is None else iv.e_facility for iv in cells])
    status = np.array([2 if iv.missing else 1 if iv.estimated else 0 for iv in cells])
    reason = np.array([sum(int(r) for r, f in REASON_FIELDS.items() if getattr(iv, f) == 1.0) for iv in cells])
    events = [(e.ts, e.kind) for e in pipe.drain_events()]
    expected = [(float(trap.ts[r]), k) for r, k in trap.events]
    known = ~np.isnan(trap.truth)
    exact = known.copy()
    exact[list(trap.total_only)] = False
    assert energy[exact] == pytest.approx(trap.truth[exact], rel=1e-4)
    assert energy[known].sum() == pytest.approx(trap.truth[known].sum(), rel=1e-4)
    assert status.tolist() == trap.expected_status().tolist()
    assert reason.tolist() == trap.expected_reason().tolist()
    assert sorted(events) == sorted(expected)
    assert pipe.counts == {k: n for k, n in collections.Counter(k for _, k in expected).items()}
    assert pipe.drain_events() == []  # each judgement once


# ------------------------------------------------------------------------------ time (issue 7)

YEAR = 365 * 86400.0


def minute_by_minute(readings, pipe, *, extra=(), grace=90.0):
    """Feed readings as they arrive (plus ``extra`` readings injected at given times), close
    every minute; returns {start: final interval}."""
    extra = sorted(extra, key=lambda x: x[0])
    state: dict[float, object] = {}
    t = T0
    i = j = 0
    end = readings[-1].ts + 300
    while t < end:
        t += 60.0
        while j < len(extra) and extra[j][0] <= t:
            pipe.ingest([extra[j][1]])
            j += 1
        batch = []
        while i < len(readings) and readings[i].ts <= t:
            batch.append(readings[i])
            i += 1
        pipe.ingest(batch)
        for iv in pipe.close(now=t, grace=grace):
            state[iv.start] = iv
        if T0 + 600 < t < end - 600:
            assert pipe.instant().pue == pytest.approx(1.5, rel=1e-6), t
    return state


def test_old_and_future_readings_never_move_the_grid_nor_blank_live_pue():
    readings = make_readings(minutes=60)
    old = Reading(T0 - 3 * YEAR, "s", "I", "energy", 1.0, "kWh")  # Sparkplug replay from years ago
    future = Reading(T0 + YEAR, "s", "I", "energy", 1e6, "kWh")  # a device clock a year ahead
    pipe = LivePipeline(SPECS)
    pipe.ingest([old, future])  # before the pipeline was ever told the time
    state = minute_by_minute(
        readings,
        pipe,
        extra=[(T0 + 1200, future), (T0 + 1500, old), (T0 + 1800, Reading(T0 + 700, "s", "C", "power", 40.0, "kW"))],
    )
    assert pipe.start0 == T0 + 60  # the first real reading's minute, not three years ago
    assert min(state) == T0 + 60 and len(state) < 70  # no minute built from three years ago
    events = [e for e in pipe.drain_events() if e.kind != EventKind.ROLLOVER]  # F's counter wraps
    assert collections.Counter(e.kind for e in events) == {
        EventKind.OUT_OF_WINDOW: 4,  # old + future, before and after the clock was known
        EventKind.LATE: 1,  # the C reading stamped 18 minutes back
    }
    assert {e.device for e in events} == {"I", "C"}
    ref = batch(readings, T0 + 60, 58)  # the same minutes without the bad readings
    for r in ref:
        assert_same(state[r.start], r)
    assert all(state[r.start].pue == pytest.approx(1.5, rel=1e-6) for r in ref[1:-1])


def test_reading_ahead_within_the_window_is_accepted_but_cannot_finalise_the_future():
    readings = make_readings(minutes=30)
    pipe = LivePipeline(SPECS, max_ahead=600.0)
    pipe.ingest(readings[:40])
    now = readings[39].ts
    ahead = Reading(now + 500, "s", "C", "power", 40.0, "kW")  # 500 s ahead: inside the window
    pipe.ingest([ahead])
    out = pipe.close(now=now, grace=90.0)
    assert max(iv.end for iv in out) <= now - 90.0  # nothing past now - grace is ever computed
    assert [e.kind for e in pipe.drain_events()] == [EventKind.ROLLOVER]  # F's counter, really
    assert pipe.instant().ts == now  # live power is "now", not the reading ahead


def test_late_reading_is_rejected_not_resorted_into_history():
    readings = make_readings(minutes=40)
    pipe = LivePipeline(SPECS)
    late = [r for r in readings if r.device == "I"][10]
    moved = Reading(late.ts, "s", "I", "energy", late.value + 50.0, "kWh")  # a replay, other value
    state = minute_by_minute(readings, pipe, extra=[(T0 + 1500, moved)])
    (ev,) = [e for e in pipe.drain_events() if e.kind != EventKind.ROLLOVER]
    assert (ev.kind, ev.device, ev.ts, ev.value) == (EventKind.LATE, "I", late.ts, late.value + 50.0)
    assert pipe.counts[EventKind.LATE] == 1
    ref = batch(readings, T0 + 60, 38)
    for r in ref:
        assert_same(state[r.start], r)


def test_instant_power_ignores_a_spike_and_a_zero():
    specs = {
        ("F", "energy"): SeriesSpec("F", Role.FACILITY_INPUT, None, "counter", 1.0, None, 90.0, 1000.0),
        ("I", "energy"): SeriesSpec("I", Role.IT, ITLocation.PDU_OUTPUT, "counter", 1.0, None, 90.0, 1000.0),
    }
    pipe = LivePipeline(specs)
    final: dict[float, object] = {}

    def tick(now, *readings):
        pipe.ingest([Reading(T0 + t, "s", d, "energy", v, "kWh") for t, d, v in readings])
        final.update({iv.start: iv for iv in pipe.close(now=T0 + now, grace=0.0)})
        return pipe.instant()

    tick(1, (0, "F", 100.0), (0, "I", 50.0))
    ip = tick(61, (60, "F", 102.5), (60, "I", 51.0 + 1e9))  # F 150 kW; I spike: 6e10 kW > 1000 kW
    assert ip.pue is None and "it" not in ip.power_by_role  # no rate rather than 6e10 kW
    assert ip.power_by_role["facility_input"] == pytest.approx(150.0)
    assert tick(121, (120, "F", 105.0), (120, "I", 0.0)).pue is None  # then a zero: no rate either
    tick(181, (180, "F", 107.5), (180, "I", 53.0))
    assert tick(241, (240, "F", 110.0), (240, "I", 54.0)).pue == pytest.approx(150.0 / 60.0)
    tick(301, (300, "F", 112.5), (300, "I", 55.0))
    # both bad readings of I were judged glitches, and I used 1 kWh a minute throughout
    assert [(e.ts, e.kind) for e in pipe.drain_events()] == [(T0 + 60, EventKind.GLITCH), (T0 + 120, EventKind.GLITCH)]
    assert [final[T0 + 60.0 * k].e_it for k in range(5)] == pytest.approx([1.0] * 5)
    assert [final[T0 + 60.0 * k].pue for k in range(5)] == pytest.approx([2.5] * 5)


@pytest.mark.parametrize("second", [0, 10, 20, 30, 40, 50])
@pytest.mark.parametrize("limit_kw", [400.0, 600.0, 1000.0])
def test_a_spike_as_the_newest_reading_drops_only_itself(second: int, limit_kw: float) -> None:
    """A spike implausible over one poll but plausible over two to four (10-s polls, +5 kWh on a
    60 kW meter; limits 1,000 / 600 / 400 kW) arriving as the newest reading: the readings before
    it are good and must stay; the spike is judged a glitch once the next reading arrives,
    whatever second of the minute it is."""
    specs = {
        ("F", "energy"): SeriesSpec("F", Role.FACILITY_INPUT, None, "counter", 1.0, None, 25.0, 1000.0),
        ("I", "energy"): SeriesSpec("I", Role.IT, ITLocation.PDU_OUTPUT, "counter", 1.0, None, 25.0, limit_kw),
    }
    pipe = LivePipeline(specs)
    spike_at = T0 + 600.0 + second
    events = []
    final: dict[float, object] = {}
    for k in range(1, 121):
        t = T0 + 10.0 * k
        it = 100.0 + k / 6.0 + (5.0 if t == spike_at else 0.0)  # 60 kW, +5 kWh at the spike
        pipe.ingest([Reading(t, "s", "F", "energy", 200.0 + k / 4.0, "kWh"), Reading(t, "s", "I", "energy", it, "kWh")])
        final.update({iv.start: iv for iv in pipe.close(now=t, grace=14.0)})
        events += [(e.ts, e.kind) for e in pipe.drain_events()]
    assert events == [(spike_at, EventKind.GLITCH)]
    assert [final[T0 + 60.0 * m].e_it for m in range(1, 18)] == pytest.approx([1.0] * 17)


# ------------------------------------------------------- a replayed simulated day (issue 13)

DAY0 = 1_784_073_600.0  # 2026-07-15 00:00 UTC
DAY_POLL = 15.0  # s between polls of every meter
DAY_TICK = 10.0  # s between close() calls, as the service ticks
DAY_GRACE = DAY_POLL + 5.0 + 1.0  # the service's grace: max interval + max wait + 1
DAY_REFERENCE = "tests/data/live_day_reference.json.gz"


def day_specs() -> dict[tuple[str, str], SeriesSpec]:
    """Every simulated meter but the water one as a kWh counter, the CRAH also as kW power."""
    from pue_monitor.simulator import METERS

    specs: dict[tuple[str, str], SeriesSpec] = {}
    for m in METERS.values():
        if m.role == "water":
            continue
        loc = ITLocation(m.it_location) if m.it_location else None
        gap = 3 * DAY_POLL
        spec = SeriesSpec(m.id, Role(m.role), loc, "counter", 1.0, m.rollover_kwh, gap, 20_000.0, 0.01)
        specs[(m.id, "energy")] = spec
    specs[("crah", "power")] = SeriesSpec("crah", Role.COOLING, None, "power", 1.0, None, 3 * DAY_POLL, 20_000.0)
    return specs


def simulated_day() -> list[tuple[float, list[Reading]]]:
    """(delivery time, readings) of one simulated day: 15 s polls with a per-meter phase and
    jitter, plus what real sites send: a counter reset, a wrap, a dead device for an hour, one
    dying before the end, a stuck meter, lone spikes and zeros, a two-reading glitch run, a
    conflicting duplicate, a late replay, an unknown point and a NaN.

    The simulator's true power is integrated here on its own 5 s grid (midpoint rule, as the
    simulator does) and what the meters show is derived from it vectorised (its per-call
    ``counter_at`` would take 20 s for a day)."""
    from pue_monitor.simulator import METERS, SimulatedDataCentre

    world = SimulatedDataCentre(start=DAY0 - 900.0, seed=13)
    h = 3600.0
    grid = np.arange(DAY0 - 900.0, DAY0 + 86400.0 + 900.0, 5.0)
    loads = world.loads_at(grid + 2.5)
    specs = day_specs()
    rng = np.random.default_rng(13)
    n_polls = int(86400 / DAY_POLL)
    k = np.arange(-8, n_polls + 8)
    reset = {"pdu-2": DAY0 + 6 * h + 7}
    preset = {"lighting": (DAY0 + 3 * h, 2**32 * 0.01 - 0.5)}  # wraps minutes later
    dead = {"pdu-3": (DAY0 + 9 * h, DAY0 + 10 * h + 13), "rack-pdu-2": (DAY0 + 23 * h + 3530, math.inf)}
    stuck = {"crah": (DAY0 + 14 * h, DAY0 + 14 * h + 1200)}
    glitch = {("incomer-a", 2000): 1e9, ("pdu-1", 2500): 0.0, ("chiller-plant", 3001): 0.0,
              ("chiller-plant", 3002): 0.0, ("rack-pdu-1", 4000): 3e6}  # fmt: skip
    polls: dict[int, list[Reading]] = {int(j): [] for j in k}
    for dev, pt in specs:
        t = np.round(DAY0 + k * DAY_POLL + rng.uniform(0, DAY_POLL) + rng.uniform(-0.2, 0.2, k.size), 3)
        if dev in stuck:
            s0, s1 = stuck[dev]
            t_eff = np.where((t >= s0) & (t < s1), s0, t)
        else:
            t_eff = t
        power = np.asarray(loads[dev], dtype=np.float64)
        if pt == "power":
            v = np.interp(t_eff, grid + 2.5, power)
        else:
            cum = np.concatenate([[0.0], np.cumsum(power * (5.0 / 3600.0))])
            e = np.interp(t_eff, np.append(grid, grid[-1] + 5.0), cum)
            v = world.initial_counters[dev] + e
            for name, (at, base) in [*((m, (a, 0.0)) for m, a in reset.items()), *preset.items()]:
                if name == dev:
                    e_at = np.interp(at, np.append(grid, grid[-1] + 5.0), cum)
                    v = np.where(t_eff >= at, base + e - e_at, v)
            roll = METERS[dev].rollover_kwh
            if roll is not None:
                v = np.fmod(v, roll)
        alive = np.ones(t.size, dtype=bool)
        if dev in dead:
            alive = ~((t >= dead[dev][0]) & (t < dead[dev][1]))
        for j, tj, vj, ok in zip(k.tolist(), t.tolist(), v.tolist(), alive.tolist(), strict=True):
            if not ok:
                continue
            if pt == "energy":
                vj = glitch.get((dev, j), vj)
            polls[j].append(Reading(tj, "sim", dev, pt, vj, "kWh" if pt == "energy" else "kW"))
            if (dev, pt, j) == ("rack-pdu-1", "energy", 1000):
                polls[j].append(Reading(tj, "sim", dev, pt, vj + 5.0, "kWh"))  # same stamp, other value
    polls[1500] += [
        Reading(DAY0 + 100 * DAY_POLL, "sim", "pdu-4", "energy", 1.0, "kWh"),  # a late replay
        Reading(DAY0 + 1500 * DAY_POLL, "sim", "incomer-b", "voltage", 230.0, "V"),  # not in the model
        Reading(DAY0 + 1500 * DAY_POLL, "sim", "pdu-1", "energy", float("nan"), "kWh"),
    ]
    rounds = []
    for j, batch in polls.items():
        order = rng.permutation(len(batch))  # collectors deliver in any order
        rounds.append((DAY0 + (j + 1) * DAY_POLL + 0.5, [batch[o] for o in order.tolist()]))
    return rounds


def replay_day(rounds: list[tuple[float, list[Reading]]]) -> dict[str, Any]:
    """Feed the rounds to a LivePipeline as the service does (each round as it arrives, close()
    every tick, instant() after it). Returns the sha256 of everything it gave (every returned
    interval with all its fields, restatements included, every event, every instant value, in
    order, floats as ``repr``), the events, the counts, and of each returned interval the
    start, facility and IT energy, PUE and missing share (to show where a difference is)."""
    import dataclasses
    import hashlib
    import json

    pipe = LivePipeline(day_specs(), step=60.0)
    digest = hashlib.sha256()
    events: list[list[Any]] = []
    intervals: list[list[Any]] = []
    i = 0
    t = rounds[0][0]
    end = rounds[-1][0] + 120.0
    while t < end:
        t += DAY_TICK
        while i < len(rounds) and rounds[i][0] <= t:
            pipe.ingest(rounds[i][1])
            i += 1
        for iv in pipe.close(now=t, grace=DAY_GRACE):
            digest.update(repr(sorted(dataclasses.asdict(iv).items())).encode())
            intervals.append([iv.start, iv.e_facility, iv.e_it, iv.pue, iv.missing])
        for e in pipe.drain_events():
            events.append([e.ts, e.device, e.point, str(e.kind), repr(e.value), e.detail])
        ip = pipe.instant()
        digest.update(repr((ip.ts, sorted(ip.power_by_role.items()), ip.pue)).encode())
    digest.update(json.dumps(events).encode())
    counts = sorted([str(k), n] for k, n in pipe.counts.items())
    return {"sha256": digest.hexdigest(), "counts": counts, "events": events, "intervals": intervals}


def test_replayed_simulated_day_equals_the_reference_of_the_code_before_issue_13():
    """Every interval returned (restatements included), every event and every instant value of
    a simulated day with faults, bit for bit as the pipeline before issue 13 gave them
    (reference made by scripts/live_reference.py, see there)."""
    import gzip
    import json

    got = json.loads(json.dumps(replay_day(simulated_day())))  # as stored: lists
    with gzip.open(DAY_REFERENCE, "rt") as f:
        ref = json.load(f)
    assert got["counts"] == ref["counts"]
    assert got["events"] == ref["events"]
    assert len(got["intervals"]) == len(ref["intervals"])
    for a, b in zip(got["intervals"], ref["intervals"], strict=True):
        assert a == b
    assert got["sha256"] == ref["sha256"]  # every field, every instant value
    # the day is not trivial: it has the faults it claims, and a full day of minutes
    kinds = dict(ref["counts"])
    assert kinds == {"glitch": 5, "reset": 2, "rollover": 1, "conflict": 1, "late": 1, "bad_value": 1}
    final = {iv[0]: iv for iv in ref["intervals"]}
    day = [final[DAY0 + 60.0 * m] for m in range(1440)]
    assert sum(iv[3] is not None for iv in day) >= 1370  # PUE in all but the dead meter's hour
    assert all(1.0 < iv[3] < 2.0 for iv in day if iv[3] is not None)


def test_ingest_while_close_runs_in_another_thread_loses_nothing():
    """The service runs close() in a worker thread while the collectors keep calling ingest()
    on the loop: every reading lands in one close or the next, none is lost or seen twice, so
    the final minutes equal the batch engine's over all readings."""
    import threading

    readings = make_readings(minutes=120)
    pipe = LivePipeline(SPECS)
    final: dict[float, object] = {}
    stop = threading.Event()
    now = [readings[0].ts]

    def closer() -> None:
        while not stop.is_set():
            for iv in pipe.close(now=now[0], grace=90.0):
                final[iv.start] = iv

    th = threading.Thread(target=closer)
    th.start()
    try:
        for r in readings:  # one at a time, as the collectors hand them over
            pipe.ingest([r])
            now[0] = r.ts
    finally:
        stop.set()
        th.join()
    for iv in pipe.close(now=readings[-1].ts + 600, grace=90.0):
        final[iv.start] = iv
    assert {e.kind for e in pipe.drain_events()} == {EventKind.ROLLOVER}  # F's counter wraps
    assert pipe.counts.keys() == {EventKind.ROLLOVER}  # no reading judged late or out of window
    starts = sorted(final)
    ref = batch(readings, pipe.start0, len(starts))
    for s, r in zip(starts, ref, strict=True):
        assert_same(final[s], r)


async def test_service_step_closes_the_pipeline_off_the_loop_and_never_twice_at_once(tmp_path):
    """Service.step runs the pipeline's close() in a worker thread (the collectors share the
    loop); a step cancelled while its close() runs leaves it to finish, and the final step
    waits for it: two close() calls never overlap, and the minutes are the same."""
    import asyncio
    import threading

    from pue_monitor.clock import ManualClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.service import Service
    from tests.sites import two_meter_site

    t0 = 1_790_000_000.0 - 1_790_000_000.0 % 60 + 30
    clock = ManualClock(t0)
    svc = Service(
        site_from_dict(two_meter_site(), source="<test>"), clock=clock, store_path=tmp_path / "s.sqlite",
        prometheus=False, resume=False,
    )  # fmt: skip
    loop_thread = threading.get_ident()
    threads: list[int] = []
    active = [0]
    overlap = [False]
    gate = threading.Event()
    gate.set()
    started = threading.Event()
    close = svc.pipeline.close

    def watched_close(now: float, grace: float):
        active[0] += 1
        overlap[0] |= active[0] > 1
        threads.append(threading.get_ident())
        started.set()
        gate.wait(10)
        try:
            return close(now, grace)
        finally:
            active[0] -= 1

    svc.pipeline.close = watched_close  # type: ignore[method-assign]
    minutes: dict[float, object] = {}

    def feed(k: int) -> None:
        clock.t = t0 + k * 60
        svc._on_readings(
            [
                Reading(clock.t, "s", "inc", "import_energy", 1000.0 + 3.0 * k, "kWh"),
                Reading(clock.t, "s", "it", "import_energy", 500.0 + 2.0 * k, "kWh"),
            ]
        )

    for k in range(6):
        feed(k)
        snap = await svc.step()
        minutes.update({iv.start: iv for iv in snap.closed})
    assert threads and all(t != loop_thread for t in threads)
    # a step cancelled while its close() is held in the worker thread
    feed(6)
    gate.clear()
    started.clear()
    step = asyncio.create_task(svc.step())
    await asyncio.to_thread(lambda: started.wait(10))
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert active[0] == 1  # still running in its thread
    feed(7)  # the collectors go on meanwhile
    asyncio.get_running_loop().call_later(0.2, gate.set)
    snap = await svc.final_step()  # waits for the cancelled step's close() first
    minutes.update({iv.start: iv for iv in snap.closed})
    await svc.close()
    assert not overlap[0] and active[0] == 0
    full = [iv for s, iv in sorted(minutes.items()) if iv.pue is not None]
    assert len(full) >= 5
    assert all(iv.pue == pytest.approx(1.5) for iv in full)  # 3 kWh / 2 kWh a minute
