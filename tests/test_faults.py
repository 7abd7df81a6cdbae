"""Sensor faults: each detector on scripted readings (kind, start, figures, clearing), the
simulated world (a stuck IT meter within the hour, a clean day without a fault), the meter
hierarchy's configuration errors, the store and `pue show --faults`."""

from __future__ import annotations

import math
import textwrap
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pue_monitor.config.loader import check_site, load_site
from pue_monitor.config.models import DEFAULT_MAX_POWER_KW, ITLocation, Role
from pue_monitor.errors import ConfigError
from pue_monitor.pipeline.energy import SeriesSpec
from pue_monitor.pipeline.faults import FaultDetector, FaultKind, FaultSettings, SensorFault
from pue_monitor.pipeline.live import LivePipeline
from pue_monitor.readings import Reading
from pue_monitor.simulator.world import METERS, SimulatedDataCentre

T0 = 1_750_000_020.0  # a poll grid 20 s into the minute
POLL = 60.0


def spec(meter: str, kind: str, *, role: Role = Role.IT, max_kw: float = 1000.0, res: float = 0.01) -> SeriesSpec:
    return SeriesSpec(
        meter=meter,
        role=role,
        it_location=ITLocation.PDU_OUTPUT if role is Role.IT else None,
        kind="counter" if kind == "counter" else "power",
        factor=1.0,
        rollover=None,
        max_gap=2.5 * POLL,
        max_power_kw=max_kw,
        resolution=res if kind == "counter" else 0.0,
    )


def rd(ts: float, device: str, point: str, value: float, unit: str = "kW") -> Reading:
    return Reading(ts, "s", device, point, float(value), unit)


def run(det: FaultDetector, readings: list[list[Reading]], pipeline: LivePipeline | None = None) -> list[SensorFault]:
    """Feed one poll at a time (and the pipeline's events), checking after each."""
    out: list[SensorFault] = []
    for poll in readings:
        now = max(r.ts for r in poll)
        det.readings(poll)
        if pipeline is not None:
            pipeline.ingest(poll, now=now)
            pipeline.close(now, 5.0)
            det.events(pipeline.drain_events())
        out += det.check(now)
    return out


# --------------------------------------------------------------------------- stuck


def test_stuck_power_point_opens_at_the_first_repeat_and_clears_when_it_moves() -> None:
    rng = np.random.default_rng(1)
    det = FaultDetector({("m", "p"): spec("m", "power")}, FaultSettings(stuck_polls=15))
    values = [round(100.0 + rng.normal(0, 2.0), 3) for _ in range(120)]  # a meter that jitters
    values += [values[-1]] * 30  # frozen from poll 119 on (the last moving value repeated)
    values += [101.234]
    polls = [[rd(T0 + k * POLL, "m", "p", v)] for k, v in enumerate(values)]
    opened_at = None
    faults: list[SensorFault] = []
    for k, poll in enumerate(polls):
        det.readings(poll)
        got = det.check(poll[0].ts)
        if got and opened_at is None:
            opened_at = k
        faults += got
    assert [f.kind for f in faults] == [FaultKind.STUCK, FaultKind.STUCK]
    opened, cleared = faults
    assert opened.start == T0 + 119 * POLL  # the run began with the last value that moved
    assert opened_at == 119 + 14  # 15 identical polls
    assert opened.value == values[-2]
    assert "repeated in 15 polls over 840 s" in opened.detail and "changed in 100% of its last" in opened.detail
    assert cleared.end == T0 + 150 * POLL and cleared.start == opened.start
    assert det.active() == []


def test_a_point_that_often_repeats_or_reads_zero_is_never_stuck() -> None:
    det = FaultDetector(
        {("light", "p"): spec("light", "power", role=Role.LIGHTING), ("pv", "p"): spec("pv", "power")},
        FaultSettings(stuck_polls=15),
    )
    rng = np.random.default_rng(2)
    polls = []
    for k in range(600):
        light = 12.0 if (k // 7) % 2 else 12.5  # a step signal: repeats most polls
        pv = round(50 + rng.normal(0, 1), 2) if k < 300 else 0.0  # jitters, then night
        polls.append([rd(T0 + k * POLL, "light", "p", light), rd(T0 + k * POLL, "pv", "p", pv)])
    assert run(det, polls) == []


def counter_site() -> dict[tuple[str, str], SeriesSpec]:
    return {
        ("it", "e"): spec("it", "counter"),
        ("it", "p"): spec("it", "power"),
        ("pv", "e"): spec("pv", "counter", role=Role.RENEWABLE),
        ("light", "e"): spec("light", "counter", role=Role.LIGHTING),
    }


def test_stuck_counter_with_load_opens_and_clears_not_when_load_is_zero() -> None:
    det = FaultDetector(counter_site(), FaultSettings(stuck_counter_s=900.0, stuck_polls=10_000))
    e_it = e_pv = 5000.0
    e_light = 100.0
    polls, stick, stop = [], 100, 200
    for k in range(300):
        ts = T0 + k * POLL
        if not stick <= k < stop:
            e_it += 120.0 * POLL / 3600.0  # 120 kW: 2 kWh per poll
        kw = 0.0 if k >= 250 else 120.0
        e_light += 0.0 if k >= 150 else 6.0 * POLL / 3600.0  # lighting switched off: power 0, no power point
        e_pv += 0.0 if k >= 150 else 30.0 * POLL / 3600.0  # PV at night
        polls.append(
            [
                rd(ts, "it", "e", round(e_it, 2), "kWh"),
                rd(ts, "it", "p", kw),
                rd(ts, "pv", "e", round(e_pv, 2), "kWh"),
                rd(ts, "light", "e", round(e_light, 2), "kWh"),
            ]
        )
    faults = run(det, polls)
    it = [f for f in faults if f.device == "it"]
    assert [(f.kind, f.point) for f in it] == [(FaultKind.STUCK, "e")] * 2
    opened, cleared = it
    assert opened.start == T0 + (stick - 1) * POLL  # the last reading that advanced
    assert opened.detail.startswith("counter stood at 5200 for 900 s")
    assert opened.detail.endswith("; its power points integrate to 30 kWh meanwhile")
    assert cleared.end == T0 + stop * POLL
    # the lighting meter has no power point: it is judged by its own rate (6 kW over 15 min = 1.5 kWh
    # = 150 resolutions): its switch-off is a STUCK fault, the PV's (a role that stops) is not
    light = [f for f in faults if f.device == "light"]
    assert [f.kind for f in light] == [FaultKind.STUCK] and light[0].start == T0 + 149 * POLL
    assert light[0].detail.endswith("; at its recent rate of 6 kW it would have advanced 1.5 kWh")
    assert not [f for f in faults if f.device == "pv"]
    # a counter that stops while its power point reads 0 is not stuck
    det2 = FaultDetector(counter_site(), FaultSettings(stuck_counter_s=900.0))
    e = 5000.0
    polls = []
    for k in range(200):
        e += 0.0 if k >= 100 else 2.0
        polls.append([rd(T0 + k * POLL, "it", "e", e, "kWh"), rd(T0 + k * POLL, "it", "p", 0.0 if k >= 100 else 120.0)])
    assert run(det2, polls) == []


def sim_specs() -> dict[tuple[str, str], SeriesSpec]:
    out = {}
    for m in METERS.values():
        role = Role(m.role)
        loc = ITLocation(m.it_location) if m.it_location else None
        for kind, point in (("counter", "energy"), ("power", "power")):
            out[(m.id, point)] = SeriesSpec(
                meter=m.id, role=role, it_location=loc, kind="counter" if kind == "counter" else "power",
                factor=1.0, rollover=m.rollover_kwh if kind == "counter" else None, max_gap=2.5 * POLL,
                max_power_kw=DEFAULT_MAX_POWER_KW[role], resolution=0.01 if kind == "counter" else 0.0,
            )  # fmt: skip
    return out


def sim_polls(world: SimulatedDataCentre, t0: float, n: int) -> list[list[Reading]]:
    """What the simulator's meters show every minute: counters to 0.01 kWh, power to 1 W, and
    the weather station's temperature and humidity to 0.1."""
    polls = []
    for k in range(1, n + 1):
        t = t0 + k * POLL
        world.advance_to(t)
        poll = []
        for m in METERS:
            poll.append(rd(t, m, "energy", round(world.counter_at(m, t), 2), "kWh"))
            poll.append(rd(t, m, "power", round(world.shown_power_at(m, t), 3)))
        wx = world.weather_at(t)
        poll.append(rd(t, "weather", "outdoor_temperature", round(float(wx.dry_bulb_c), 1), "degC"))
        poll.append(rd(t, "weather", "relative_humidity", round(float(wx.rh_pct), 1), "%RH"))
        polls.append(poll)
    return polls


def local(y: int, m: int, d: int) -> float:
    return datetime(y, m, d, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def test_stuck_it_meter_in_the_simulated_world_within_the_hour() -> None:
    t0 = local(2025, 7, 10)
    world = SimulatedDataCentre(start=t0, seed=5)
    since = t0 + 4 * 3600 + 17
    world.stick_meter("pdu-1", since, since + 5400)
    det = FaultDetector(sim_specs())
    seen: dict[tuple[str, str], float] = {}
    faults = []
    for poll in sim_polls(world, t0, 8 * 60):
        now = poll[0].ts
        det.readings(poll)
        for f in det.check(now):
            seen.setdefault((f.point, "end" if f.end else "open"), now)
            faults.append(f)
    assert {(f.device, f.kind) for f in faults} == {("pdu-1", FaultKind.STUCK)}
    for point in ("energy", "power"):
        assert seen[(point, "open")] - since <= 3600  # target: within the hour (here ~15 min)
        opened = next(f for f in faults if f.point == point)
        assert since <= opened.start < since + POLL  # the first frozen reading
        assert seen[(point, "end")] - (since + 5400) <= POLL  # cleared at the first reading after
    energy = next(f for f in faults if f.point == "energy" and f.end is None)
    flat = float(energy.detail.split(" for ")[1].split(" s;")[0])
    kwh = float(energy.detail.split("integrate to ")[1].split(" kWh")[0])
    assert flat >= 900
    assert kwh == pytest.approx(world.shown_power_at("pdu-1", since) * flat / 3600, rel=0.01)


def test_a_clean_simulated_day_raises_no_fault() -> None:
    t0 = local(2025, 4, 20)
    world = SimulatedDataCentre(start=t0, seed=7)
    specs = sim_specs()
    det = FaultDetector(specs)
    pipeline = LivePipeline(specs)
    assert run(det, sim_polls(world, t0, 1440), pipeline) == []
    assert det.active() == []
    # the detectors did judge: every meter's power point has its jitter history
    judged = [k for k, a in det._analog.items() if len(a.changes) >= 60 and sum(a.changes) / len(a.changes) >= 0.9]
    assert len(judged) >= 10


# ---------------------------------------------------------------------- out of range


def test_out_of_range_power_temperature_and_configured_range() -> None:
    specs = {("m", "p"): spec("m", "power", max_kw=500.0)}
    det = FaultDetector(specs, FaultSettings(hold_s=300.0, ranges={("ahu", "supply"): (10.0, 30.0)}))
    polls = []
    for k in range(40):
        ts = T0 + k * POLL
        p = -3.0 if k == 5 else 650.0 if 20 <= k < 22 else 100.0 + k % 3
        temp = 150.0 if k == 10 else 22.0 + 0.1 * (k % 2)
        supply = 31.5 if 12 <= k < 14 else 18.0 + 0.1 * (k % 2)
        polls.append([rd(ts, "m", "p", p), rd(ts, "room", "t", temp, "degC"), rd(ts, "ahu", "supply", supply, "degC")])
    faults = run(det, polls)
    got = [(f.device, f.start, f.end, f.value) for f in faults if f.end is not None]
    assert all(f.kind is FaultKind.OUT_OF_RANGE for f in faults)
    # each clears after hold_s (300 s = 5 polls) back in range; the suspect stretch ends at the
    # first reading back in range
    assert sorted(got) == [
        ("ahu", T0 + 12 * POLL, T0 + 14 * POLL, 31.5),
        ("m", T0 + 5 * POLL, T0 + 6 * POLL, -3.0),
        ("m", T0 + 20 * POLL, T0 + 22 * POLL, 650.0),
        ("room", T0 + 10 * POLL, T0 + 11 * POLL, 150.0),
    ]
    details = {f.device + str(f.start): f.detail for f in faults}
    assert details[f"m{T0 + 20 * POLL}"] == "650 kW outside the physical range [0, 500] kW"
    assert details[f"ahu{T0 + 12 * POLL}"] == "31.5 degC outside the configured range [10, 30] degC"
    assert details[f"room{T0 + 10 * POLL}"] == "150 degC outside the physical range [-60, 90] degC"


# ---------------------------------------------------------------- glitch, reset, backwards


def test_glitch_reset_and_backwards_open_the_same_minute_and_clear_after_the_hold() -> None:
    specs = {("a", "e"): spec("a", "counter"), ("b", "e"): spec("b", "counter"), ("c", "e"): spec("c", "counter")}
    det = FaultDetector(specs, FaultSettings(hold_s=900.0))
    pipeline = LivePipeline(specs, step=60.0)
    a = b = c = 20_000.0
    polls = []
    for k in range(120):
        ts = T0 + k * POLL
        a += 2.0
        b += 2.0
        c += 2.0
        va = 9e6 if k in (30, 36) else a  # two lone spikes six minutes apart: one fault
        if k == 50:
            b = 0.5  # reset to zero
        if k == 70:
            c -= 50.0  # runs backwards, far from zero
        polls.append([rd(ts, "a", "e", va, "kWh"), rd(ts, "b", "e", b, "kWh"), rd(ts, "c", "e", c, "kWh")])
    faults = run(det, polls, pipeline)
    kinds = [(f.device, f.kind, f.start, f.end) for f in faults]
    assert kinds == [
        ("a", FaultKind.GLITCH, T0 + 30 * POLL, None),
        ("a", FaultKind.GLITCH, T0 + 30 * POLL, T0 + 36 * POLL + 900.0),  # held after the last spike
        ("b", FaultKind.RESET, T0 + 50 * POLL, None),
        ("b", FaultKind.RESET, T0 + 50 * POLL, T0 + 50 * POLL + 900.0),
        ("c", FaultKind.BACKWARDS, T0 + 70 * POLL, None),
        ("c", FaultKind.BACKWARDS, T0 + 70 * POLL, T0 + 70 * POLL + 900.0),
    ]
    assert faults[0].value == 9e6 and faults[2].value == 0.5
    # the start is the reading's own minute, whatever the pipeline's judging delay (two polls)
    for f in faults:
        assert math.floor(f.start / 60) == math.floor((T0 + round((f.start - T0) / POLL) * POLL) / 60)


# -------------------------------------------------------------------------- balance


def balance_polls(child_b: float = 1.0, k_max: int = 180) -> list[list[Reading]]:
    rng = np.random.default_rng(3)
    e = {"main": 80_000.0, "a": 10_000.0, "b": 30_000.0}
    polls = []
    for k in range(k_max):
        ts = T0 + k * POLL
        kw_a = 100.0 + rng.normal(0, 3)
        kw_b = 80.0 + rng.normal(0, 3)
        e["a"] += kw_a / 60
        e["b"] += kw_b / 60 * (child_b if k >= 69 else 1.0)  # the pairs from T0 + 68 polls on
        e["main"] += (kw_a + kw_b) * 1.03 / 60  # 3 % losses upstream of the sub-meters
        polls.append([rd(ts, m, "e", round(v, 2), "kWh") for m, v in e.items()])
    return polls


def balance_specs() -> dict[tuple[str, str], SeriesSpec]:
    return {(m, "e"): spec(m, "counter", role=Role.OTHER) for m in ("main", "a", "b")}


def test_balance_fault_when_a_sub_meter_reads_20_percent_low() -> None:
    settings = FaultSettings(parents={"a": "main", "b": "main"}, balance_window_s=900.0)
    assert run(FaultDetector(balance_specs(), settings), balance_polls()) == []  # clean: ~2.9 %
    faults = run(FaultDetector(balance_specs(), settings), balance_polls(child_b=0.8))
    assert len(faults) == 1
    (f,) = faults
    assert (f.device, f.point, f.kind, f.end) == ("main", "", FaultKind.BALANCE, None)
    assert (T0 + 68 * POLL) % 900 == 0  # the change is at a window boundary
    assert f.start == T0 + 68 * POLL
    # parent 1.03 (a + b), b read 20 % low: (1.03 * 180 - (100 + 0.8 * 80)) / (1.03 * 180) = 11.5 %
    assert f.value == pytest.approx(11.5, abs=0.6)
    assert "outside the loss band [-2, 8] %" in f.detail and "(a, b)" in f.detail


def test_balance_fault_when_a_sub_meter_is_left_out_and_clears_when_back_in_band() -> None:
    settings = FaultSettings(parents={"a": "main"}, balance_window_s=900.0)
    faults = run(FaultDetector(balance_specs(), settings), balance_polls())
    assert [(f.device, f.kind, f.end) for f in faults] == [("main", FaultKind.BALANCE, None)]
    assert faults[0].start == math.ceil(T0 / 900) * 900  # the first whole window
    assert faults[0].value == pytest.approx((1.03 * 180 - 100) / (1.03 * 180) * 100, abs=1.0)
    # judged only above min_load_kw
    quiet = FaultSettings(parents={"a": "main"}, balance_min_load_kw=1000.0)
    assert run(FaultDetector(balance_specs(), quiet), balance_polls()) == []


# --------------------------------------------------------------------------- config

SITE = """\
site: {id: f1}
balance: {loss_band_pct: [-1, 6], window: 1h, min_load_kw: 5}
faults: {hold_s: 600, stuck_polls: 20}
devices:
  - id: main
    protocol: modbus
    host: 127.0.0.1
    profile: schneider-iem3000
    meter: {role: facility_input, energy: import_energy}
  - id: pdu1
    protocol: modbus
    host: 127.0.0.1
    port: 5021
    profile: eastron-sdm630
    overrides: {active_power: {range: [0, 80]}}
    meter: {role: it, it_location: pdu_output, energy: import_energy, power: active_power, parent: main}
  - id: wx
    protocol: mqtt
    subscriptions: [{topic: wx, points: [{point: t, unit: degC, range: [-40, 50]}]}]
mqtt: {host: 127.0.0.1}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_from_site_takes_hierarchy_ranges_and_settings(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, SITE))
    det = FaultDetector.from_site(site)
    s = det.settings
    assert (s.hold_s, s.stuck_polls, s.stuck_counter_s) == (600.0, 20, 900.0)
    assert s.parents == {"pdu1": "main"}
    assert (s.loss_band_pct, s.balance_window_s, s.balance_min_load_kw) == ((-1.0, 6.0), 3600.0, 5.0)
    assert s.ranges == {("pdu1", "active_power"): (0.0, 80.0), ("wx", "t"): (-40.0, 50.0)}
    # the SDM630's power is in W: its physical bound is max_power_kw in W, unless configured
    det.readings([rd(T0, "pdu1", "active_power", 90.0, "W"), rd(T0, "wx", "t", 51.0, "degC")])
    assert {(f.device, f.value) for f in det.check(T0)} == {("pdu1", 90.0), ("wx", 51.0)}
    bare = FaultDetector.from_site(site.config)  # without profiles: kWh and kW
    assert set(bare.specs) == set(det.specs)


@pytest.mark.parametrize(
    ("parent", "message"),
    [
        ("nope", "no device 'nope' in devices"),
        ("pdu1", "device 'pdu1' cannot be its own parent"),
        ("wx", "parent 'wx' is no meter, not an electricity meter"),
    ],
)
def test_hierarchy_errors_name_line_and_field(tmp_path: Path, parent: str, message: str) -> None:
    text = SITE.replace("parent: main}", f"parent: {parent}}}")
    with pytest.raises(ConfigError) as ei:
        load_site(write(tmp_path, text))
    assert str(ei.value) == f"{tmp_path / 'site.yaml'}:16: devices[1].meter.parent: {message}"


def test_hierarchy_cycle_and_bad_range_are_config_errors(tmp_path: Path) -> None:
    text = SITE.replace(
        "meter: {role: facility_input, energy: import_energy}",
        "meter: {role: facility_input, energy: import_energy, parent: pdu1}",
    )
    check = check_site(write(tmp_path, text), secrets=False, directories=False)
    assert check.errors == [
        f"{tmp_path / 'site.yaml'}:9: devices[0].meter.parent: the meter hierarchy has a cycle: main -> pdu1 -> main"
    ]
    text = SITE.replace("range: [0, 80]", "range: [80, 0]")
    check = check_site(write(tmp_path, text), secrets=False, directories=False)
    assert len(check.errors) == 1
    assert "devices[1].overrides.active_power.range" in check.errors[0]
    assert "the low end must be below the high end" in check.errors[0]


# ------------------------------------------------------------- store, show, service, metrics


def test_store_round_trip_and_migration_from_schema_5(tmp_path: Path) -> None:
    import sqlite3

    from pue_monitor.sinks.sqlite import SCHEMA_VERSION, SqliteStore, StoreReader

    db = tmp_path / "f.sqlite"
    SqliteStore(db).close()
    con = sqlite3.connect(db)  # make it a version-5 store: no sensor_faults table
    con.execute("DROP TABLE sensor_faults")
    con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    assert StoreReader(db).sensor_faults() == []  # an old store reads as having none
    store = SqliteStore(db)
    opened = SensorFault("pdu-1", "energy", FaultKind.STUCK, 1000.0, None, "counter stood", 52079.0)
    store.write(sensor_faults=[("s", opened, "it")], now=1.0)
    store.write(
        sensor_faults=[("s", SensorFault("main", "", FaultKind.BALANCE, 3000.0, 3900.0, "b", 11.5), "")], now=2.0
    )
    cleared = SensorFault("pdu-1", "energy", FaultKind.STUCK, 1000.0, 2000.0, "counter stood", 52079.0)
    store.write(sensor_faults=[("s", cleared, "it")], now=3.0)
    store.close()
    reader = StoreReader(db)
    assert reader.meta()["schema_version"] == str(SCHEMA_VERSION) and SCHEMA_VERSION >= 6  # migrated to the newest
    rows = reader.sensor_faults()
    assert [(r["device"], r["point"], r["kind"], r["start"], r["end"], r["value"], r["role"]) for r in rows] == [
        ("pdu-1", "energy", "stuck", 1000.0, 2000.0, 52079.0, "it"),  # upserted by its key: cleared
        ("main", "", "balance", 3000.0, 3900.0, 11.5, ""),
    ]
    assert [r["device"] for r in reader.sensor_faults(start=2000.0)] == ["main"]  # overlapping only
    assert [r["device"] for r in reader.sensor_faults(start=0.0, end=1000.0)] == []
    assert [r["device"] for r in reader.sensor_faults(start=1500.0, end=3001.0)] == ["pdu-1", "main"]
    reader.close()


async def test_service_stores_faults_flags_suspect_minutes_and_exports_the_gauge(tmp_path: Path, capsys) -> None:
    import asyncio
    import json
    import shutil
    import subprocess
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from pue_monitor.cli import main
    from pue_monitor.clock import ManualClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.service import Service
    from pue_monitor.sinks.sqlite import StoreReader
    from tests.sites import two_meter_site

    t0 = 1_790_000_000.0 - 1_790_000_000.0 % 60 + 30  # polls at :30
    clock = ManualClock(t0)
    db = tmp_path / "f.sqlite"
    svc = Service(site_from_dict(two_meter_site(), source="<test>"), clock=clock, store_path=db, resume=False)
    spike, spike2 = 10, 35
    texts = {}
    for k in range(40):
        clock.t = t0 + k * 60
        inc = 9e6 if k in (spike, spike2) else 1000.0 + 2.0 * k
        it = 500 + 1.5 * k
        svc._on_readings(
            [rd(clock.t, "inc", "import_energy", inc, "kWh"), rd(clock.t, "it", "import_energy", it, "kWh")]
        )
        await svc.step()
        if k in (spike + 5, 39):
            url = svc.prometheus.url
            texts[k] = await asyncio.to_thread(lambda u=url: urllib.request.urlopen(u, timeout=5).read().decode())
    stopped = clock.t
    await svc.final_step()  # the second fault is still open: it ends at the stop
    await svc.close()

    def gauge(text: str) -> dict[tuple[str, ...], float]:
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        fam = fams["pue_sensor_faults_active"]
        return {tuple(s.labels[k] for k in ("site", "device", "point", "kind")): s.value for s in fam.samples}

    assert gauge(texts[spike + 5]) == {("s", "inc", "import_energy", "glitch"): 1.0}
    assert gauge(texts[39]) == {("s", "inc", "import_energy", "glitch"): 1.0}  # the first cleared, the second open
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool (Debian package prometheus) is needed: ./scripts/test installs it"
    check = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=texts[spike + 5], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    reader = StoreReader(db)
    row, row2 = reader.sensor_faults()
    reader.close()
    t_spike, t_spike2 = t0 + spike * 60, t0 + spike2 * 60
    assert (row["device"], row["kind"], row["start"], row["end"], row["role"]) == (
        "inc", "glitch", t_spike, t_spike + 900.0, "facility_input",
    )  # fmt: skip
    assert (row2["start"], row2["end"]) == (t_spike2, stopped)
    assert row2["detail"].endswith("; still open when pue-monitor stopped")
    assert main(["show", "--db", str(db), "--json", "--last", "60"]) == 0
    shown = json.loads(capsys.readouterr().out)["intervals"]
    flagged = [r["start"] for r in shown if r["suspect"]]
    assert flagged and all(r["suspect"] == ["inc"] for r in shown if r["suspect"])
    # exactly the minutes that overlap [spike, spike + 15 min)
    faulty = [(t_spike, t_spike + 900), (t_spike2, stopped)]
    assert flagged == [r["start"] for r in shown if any(r["start"] < b and r["end"] > a for a, b in faulty)]
    assert main(["show", "--db", str(db), "--faults"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["start", "(UTC)", "end", "device", "point", "kind", "value", "detail"]
    assert out[1].split()[4:8] == ["inc", "import_energy", "glitch", "9e+06"]
    assert "pipeline judged a reading glitch (value 9e+06)" in out[1]
    assert main(["show", "--db", str(db), "--last", "60"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split()[-1] == "suspect"
    assert sum(line.split()[-1] == "inc" for line in text[1:]) == len(flagged)


def test_the_readme_example_is_valid_and_read_by_from_site() -> None:
    import re

    import yaml

    from pue_monitor.config.loader import site_from_dict

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if b.startswith("balance:")]
    cfg = yaml.safe_load(block)
    site = site_from_dict({"site": {"id": "r"}, "mqtt": {"host": "127.0.0.1"}, **cfg}, source="README.md")
    s = FaultDetector.from_site(site).settings
    assert s.parents == {"pdu-1": "incomer-a"}
    assert s.ranges == {("pdu-1", "active_power"): (0.0, 80000.0), ("room", "t"): (10.0, 45.0)}
    assert (s.loss_band_pct, s.balance_window_s, s.hold_s, s.stuck_polls) == ((-2.0, 8.0), 900.0, 900.0, 15)


def test_a_reload_adopts_open_faults_and_a_stop_ends_them() -> None:
    from pue_monitor.pipeline.events import EventKind, PipelineEvent

    specs = {("a", "e"): spec("a", "counter"), ("b", "e"): spec("b", "counter")}
    old = FaultDetector(specs, FaultSettings(hold_s=900.0))
    old.events(
        [
            PipelineEvent(T0, "a", "e", EventKind.RESET, 0.5, "restart"),
            PipelineEvent(T0 + 60, "b", "e", EventKind.GLITCH, 9e9, "spike"),
        ]
    )
    assert [f.device for f in old.check(T0 + 120)] == ["a", "b"]
    # b is removed from the site: its fault ends at the reload; a's is held on as before
    new = FaultDetector({("a", "e"): specs[("a", "e")]}, FaultSettings(hold_s=900.0)).adopt(old, T0 + 300, ["a"])
    assert [(f.device, f.end) for f in new.check(T0 + 300)] == [("b", T0 + 300)]
    assert [f.device for f in new.active()] == ["a"]
    assert new.check(T0 + 899) == []
    assert [(f.device, f.end) for f in new.check(T0 + 900)] == [("a", T0 + 900)]
    new.events([PipelineEvent(T0 + 1000, "a", "e", EventKind.RESET, 0.7, "restart")])
    new.close_all(T0 + 1100)
    (opened, ended) = new.check(T0 + 1100)
    assert (opened.start, opened.end, ended.start, ended.end) == (T0 + 1000, None, T0 + 1000, T0 + 1100)
    assert ended.detail.endswith("; still open when pue-monitor stopped") and new.active() == []
