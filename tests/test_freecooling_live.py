"""Live free-cooling state (issue 9 scope 3): per minute from the site's weather and plant
points, rolled up like PUE, checked against the simulator's own chiller state; and the outputs
(embedded store, Prometheus) that carry it."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import sqlite3
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pue_monitor.clock import ScaledClock
from pue_monitor.config.loader import site_from_dict
from pue_monitor.config.models import CoolingConfig
from pue_monitor.freecooling.availability import Mode
from pue_monitor.pipeline.freecooling_live import LiveFreeCooling, aggregate_free_cooling
from pue_monitor.readings import Reading
from pue_monitor.service import Service
from pue_monitor.simulator import SimulatedDataCentre
from pue_monitor.simulator.mqtt_publishers import SensorPublishers
from pue_monitor.simulator.physics import economiser_mode
from pue_monitor.simulator.site import SimulatedSite
from pue_monitor.sinks.sqlite import SCHEMA_VERSION, SqliteStore, StoreReader

TZ = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai, the simulator's site
POLL = 15.0
PTS = {
    "outdoor_temperature": ("weather", "outdoor_temperature"),
    "relative_humidity": ("weather", "relative_humidity"),
    "pressure": ("weather", "pressure"),
    "chiller_power": ("plant-controls", "chiller_power"),
    "economiser_mode": ("plant-controls", "economiser_mode"),
}
UNITS = {"outdoor_temperature": "degC", "relative_humidity": "%", "pressure": "hPa", "chiller_power": "kW"}


def _readings(role_values: dict[str, np.ndarray], ts: np.ndarray) -> list[Reading]:
    out = []
    for role, vals in role_values.items():
        dev, point = PTS[role]
        unit = UNITS.get(role, "")
        out += [
            Reading(ts=t, site="s", device=dev, point=point, value=v, unit=unit)
            for t, v in zip(ts.tolist(), vals.tolist(), strict=True)
            if np.isfinite(v)
        ]
    out.sort(key=lambda r: r.ts)
    return out


def _simulated_day(day: dt.date) -> tuple[list[Reading], SimulatedDataCentre, float]:
    """One local day of the simulator's weather station and plant controller, polled every 15 s,
    with the values as published (rounded like the MQTT messages)."""
    t0 = dt.datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp()
    world = SimulatedDataCentre(start=t0 - 600, seed=9)
    ts = t0 - 120 + POLL * np.arange(int((86400 + 240) / POLL))
    wx = world.weather_at(ts)
    ld = world.loads_at(ts)
    values = {
        "outdoor_temperature": np.round(np.asarray(wx.dry_bulb_c), 2),
        "relative_humidity": np.round(np.asarray(wx.rh_pct), 2),
        "pressure": np.round(np.asarray(wx.pressure_hpa), 2),
        "chiller_power": np.round(np.asarray(ld["chillers"]), 3),
        "economiser_mode": np.asarray(economiser_mode(ld["free_cooling_fraction"])),
    }
    return _readings(values, ts), world, t0


def _live(cooling: CoolingConfig, roles: list[str] | None = None) -> LiveFreeCooling:
    roles = roles or list(PTS)
    return LiveFreeCooling(cooling, {r: PTS[r] for r in roles}, max_age={r: 2 * POLL for r in roles})


def _sim_cooling(world: SimulatedDataCentre) -> CoolingConfig:
    return CoolingConfig.model_validate(SensorPublishers.cooling_config(world.params))


def _day_agreement(day: dt.date) -> tuple[list, np.ndarray, float, float]:
    readings, world, t0 = _simulated_day(day)
    live = _live(_sim_cooling(world))
    live.ingest(readings)
    rows = [r for r in live.close(t0 + 86400 + 60, 60.0) if t0 <= r.start < t0 + 86400 and r.economiser == "water-side"]
    assert len(rows) == 1440
    # the simulator's own state at the middle of each minute
    mids = np.array([r.start + 30.0 for r in rows])
    truth = np.asarray(economiser_mode(world.loads_at(mids)["free_cooling_fraction"])).astype(int)
    available = np.array([r.mode for r in rows])
    actual = np.array([r.actual_mode for r in rows])
    avail_rate = float(np.mean(available == truth))
    actual_rate = float(np.mean(actual == truth))
    print(f"{day}: available mode agrees with the simulator in {avail_rate:.2%} of minutes, actual {actual_rate:.2%}")
    return rows, truth, avail_rate, actual_rate


def test_cold_day_is_full_free_cooling_and_agrees_with_the_simulator_minute_by_minute():
    rows, truth, avail_rate, actual_rate = _day_agreement(dt.date(2026, 1, 15))
    assert np.mean(truth == Mode.FULL) >= 0.95  # the simulator says: a cold day
    assert sum(r.mode == Mode.FULL for r in rows) >= 0.95 * len(rows)
    assert avail_rate >= 0.99
    assert actual_rate >= 0.99
    assert not any(r.inferred for r in rows)  # from the status point
    # chillers (nearly) off all day: nothing left to avoid
    day = aggregate_free_cooling(rows, resolution="1d", tz="Asia/Shanghai")
    assert len(day) == 1 and day[0].end - day[0].start == 86400
    assert day[0].full_s + day[0].partial_s >= 0.95 * 86400
    assert day[0].used_s >= 0.95 * 86400
    assert day[0].avoidable_kwh is not None and day[0].avoidable_kwh <= 0.05 * (day[0].chiller_kwh or 0) + 1.0


def test_july_day_is_none_or_partial_and_agrees_with_the_simulator():
    rows, truth, avail_rate, actual_rate = _day_agreement(dt.date(2026, 7, 20))
    assert all(r.mode in (Mode.NONE, Mode.PARTIAL) for r in rows)
    assert np.all(truth != Mode.FULL)
    assert avail_rate >= 0.99
    assert actual_rate >= 0.99
    assert all(r.chiller_kwh is not None and r.chiller_kwh > 0 for r in rows)


def test_shoulder_day_full_and_partial_agree_with_the_simulator_in_mode_and_fraction():
    day = dt.date(2026, 4, 20)
    rows, _truth, avail_rate, actual_rate = _day_agreement(day)
    assert {Mode.FULL, Mode.PARTIAL} <= {r.mode for r in rows}  # a day with transitions
    assert avail_rate >= 0.99 and actual_rate >= 0.99
    # the fraction the economiser could carry against the simulator's own fraction at mid-minute
    world = SimulatedDataCentre(start=rows[0].start - 600, seed=9)
    sim_f = world.loads_at(np.array([r.start + 30.0 for r in rows]))["free_cooling_fraction"]
    ours = np.array([r.fraction for r in rows])
    assert float(np.max(np.abs(ours - sim_f))) < 0.02
    # the chiller runs only while the plant is partial: all of its energy is in those minutes
    full = [r for r in rows if r.actual_mode == Mode.FULL]
    assert full and all(r.chiller_kwh == pytest.approx(0.0, abs=1e-9) for r in full)


def test_missing_or_stale_weather_is_unknown_never_none():
    cooling = CoolingConfig.model_validate({"economisers": [{"id": "ws", "type": "water_side"}]})
    live = _live(cooling, ["outdoor_temperature", "relative_humidity"])
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 60)
    ts = t0 + POLL * np.arange(4 * 30)  # 30 minutes of readings ...
    keep = (ts < t0 + 600) | (ts >= t0 + 1200)  # ... with the station silent for minutes 10-19
    vals = {"outdoor_temperature": np.where(keep, 30.0, np.nan), "relative_humidity": np.where(keep, 60.0, np.nan)}
    live.ingest(_readings(vals, ts))
    rows = {r.start: r for r in live.close(t0 + 1800, 0.0)}
    assert rows[t0].mode == Mode.NONE  # hot and humid: none, with the weather known
    # minute 10 uses the reading of 9:45 (15 s old at its start, within 2 polls); from minute
    # 11 on the newest reading is older than 30 s: unknown, fraction None, never none
    assert rows[t0 + 600].mode == Mode.NONE
    for k in range(11, 20):
        r = rows[t0 + 60 * k]
        assert r.mode == Mode.UNKNOWN and r.fraction is None and r.unknown_s == 60 and r.none_s == 0
    assert rows[t0 + 1200].mode == Mode.NONE
    # without a status point or chiller power the actual mode is unknown
    assert all(r.actual_mode == Mode.UNKNOWN for r in rows.values())
    hour = aggregate_free_cooling(list(rows.values()), resolution="1h", tz="UTC")
    assert sum(h.unknown_s for h in hour) == 9 * 60
    assert sum(h.none_s for h in hour) == 21 * 60


def _dry_cooler(**live: float) -> CoolingConfig:
    # dry cooler, approach 5 K, no HX, CHW 15/21 °C: s = T + 5, f = (21 - s) / 6 = (16 - T) / 6
    return CoolingConfig.model_validate(
        {
            "economisers": [{"id": "dc", "type": "dry_cooler", "dry_cooler_approach_k": 5.0, "hx_approach_k": 0.0}],
            "live": live,
        }
    )


def test_inferred_mode_from_chiller_power_is_labelled_inferred():
    cooling = _dry_cooler(chiller_off_kw=5.0, chiller_on_kw=100.0)
    live = _live(cooling, ["outdoor_temperature", "relative_humidity", "chiller_power"])
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 60)
    ts = t0 + POLL * np.arange(16)
    kw = np.repeat([2.0, 50.0, 150.0, 100.0], 4)  # full, partial, none, none (at the on limit)
    live.ingest(_readings({"outdoor_temperature": np.full(16, 12.0), "relative_humidity": np.full(16, 50.0),
                           "chiller_power": kw}, ts))  # fmt: skip
    rows = live.close(t0 + 240, 0.0)
    assert [r.actual_mode for r in rows] == [Mode.FULL, Mode.PARTIAL, Mode.NONE, Mode.NONE]
    assert all(r.inferred for r in rows)
    assert [r.used_s for r in rows] == [60.0, 60.0, 0.0, 0.0]
    # without both thresholds the mode is not inferred: unknown, but the energies are known
    live = _live(_dry_cooler(chiller_off_kw=5.0), ["outdoor_temperature", "relative_humidity", "chiller_power"])
    live.ingest(_readings({"outdoor_temperature": np.full(16, 12.0), "relative_humidity": np.full(16, 50.0),
                           "chiller_power": kw}, ts))  # fmt: skip
    rows = live.close(t0 + 240, 0.0)
    assert [r.actual_mode for r in rows] == [Mode.UNKNOWN] * 4 and not any(r.inferred for r in rows)
    assert [r.chiller_kwh for r in rows] == pytest.approx([2.0 / 60, 50.0 / 60, 150.0 / 60, 100.0 / 60])


def test_avoidable_chiller_energy_by_hand():
    """Three minutes at 4, 13 and 20 °C with the chiller at 120 kW (2 kWh a minute) and the
    plant on mechanical cooling: available fractions 1, 0.5, 0 -> avoidable 2 + 1 + 0 = 3 kWh."""
    cooling = _dry_cooler()
    live = _live(cooling, ["outdoor_temperature", "relative_humidity", "chiller_power", "economiser_mode"])
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 3600)
    ts = t0 + POLL * np.arange(12)
    temps = np.repeat([4.0, 13.0, 20.0], 4)
    live.ingest(_readings({"outdoor_temperature": temps, "relative_humidity": np.full(12, 50.0),
                           "chiller_power": np.full(12, 120.0), "economiser_mode": np.zeros(12)}, ts))  # fmt: skip
    rows = live.close(t0 + 180, 0.0)
    assert [r.mode for r in rows] == [Mode.FULL, Mode.PARTIAL, Mode.NONE]
    assert [r.fraction for r in rows] == pytest.approx([1.0, 0.5, 0.0])
    assert [r.chiller_kwh for r in rows] == pytest.approx([2.0, 2.0, 2.0])
    assert [r.avoidable_kwh for r in rows] == pytest.approx([2.0, 1.0, 0.0])
    assert [r.actual_mode for r in rows] == [Mode.NONE] * 3 and not rows[0].inferred
    (h,) = aggregate_free_cooling(rows, resolution="1h", tz="UTC")
    assert h.avoidable_kwh == pytest.approx(3.0)
    assert h.chiller_kwh == pytest.approx(6.0)
    assert (h.full_s, h.partial_s, h.none_s, h.available_s, h.used_s) == (60.0, 60.0, 60.0, 120.0, 0.0)
    assert h.utilisation == 0.0
    assert h.fraction == pytest.approx(0.5)  # time-weighted over known seconds
    assert h.mode is None and h.actual_mode is None


def test_store_migrates_a_store_without_the_free_cooling_table(tmp_path):
    """A version 4 store (KPI columns, no free_cooling table) gains the table when opened."""
    db = tmp_path / "s.sqlite"
    SqliteStore(db).close()
    con = sqlite3.connect(db)
    con.execute("DROP TABLE free_cooling")
    con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    assert StoreReader(db).free_cooling() == []  # an old store reads as having none
    SqliteStore(db).close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert SCHEMA_VERSION >= 5  # later versions keep the table
    assert con.execute("SELECT count(*) FROM free_cooling").fetchone()[0] == 0
    con.close()


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def test_simulated_site_service_writes_free_cooling_to_store_and_prometheus(tmp_path):
    start = dt.datetime(2026, 1, 20, 4, 0, tzinfo=dt.UTC).timestamp()  # noon in Taiyuan, January
    clock = ScaledClock(start=start, speed=60)
    world = SimulatedDataCentre(start=start - 600, seed=5)
    db = tmp_path / "store.sqlite"
    async with SimulatedSite(world, clock, publish_interval=15) as sim:
        site = site_from_dict(sim.site_config(interval=15, timeout=10), source="<sim>")
        svc = Service(site, clock=clock, store_path=db, prometheus_port=0, resume=False)
        stop = asyncio.Event()
        run = asyncio.create_task(svc.run(stop))
        # 7 simulated minutes (7 s): the minutes reported start after the first reading and end at
        # the last close; a first start slowed by CI load (0.5-1 s) cost one of the 6 minutes this
        # test used to run, so it runs one more
        await clock.sleep_until(start + 7 * 60)
        metrics = await asyncio.to_thread(_scrape, svc.prometheus.url)
        latest = dict(svc.state.free_cooling)
        stop.set()
        await run
    reader = StoreReader(db)
    minutes = reader.free_cooling("1m")
    hours = reader.free_cooling("1h")
    outdoor = site.config.cooling.points.outdoor_temperature
    assert outdoor is not None
    first_reading = reader.readings(outdoor.device, outdoor.point)[0][0]
    reader.close()
    ws = [m for m in minutes if m["economiser"] == "water-side"]
    # reported from the first minute after the first outdoor reading on, none lost in between:
    # 4-5 minutes on an idle machine, 2 seen with the 60x simulation starved of CPU (five busy
    # processes on two cores), so the floor is 2
    assert ws and ws[0]["start"] == math.ceil(first_reading / 60) * 60
    assert [m["start"] for m in ws] == [ws[0]["start"] + 60 * k for k in range(len(ws))] and len(ws) >= 2
    assert all(m["mode"] == "full" and m["actual_mode"] == "full" and m["inferred"] == 0 for m in ws)
    assert all(m["fraction"] == 1.0 and m["used_s"] == 60.0 for m in ws)
    assert {m["economiser"] for m in minutes} == {"water-side", "dry-cooler"}
    # the hourly row is the sum of its minutes
    (h,) = [r for r in hours if r["economiser"] == "water-side"]
    assert h["full_s"] == pytest.approx(sum(m["full_s"] for m in ws if h["start"] <= m["start"] < h["end"]))
    # Prometheus: available fraction, the modes as a state set, the counters
    site_l = ("site", "sim-taiyuan")
    econ = ("economiser", "water-side")
    assert metrics[("pue_free_cooling_available_ratio", (econ, site_l))] == latest["water-side"].fraction == 1.0
    key = (econ, ("inferred", "false"), ("kind", "actual"), ("mode", "full"), site_l)
    assert metrics[("pue_free_cooling_mode", key)] == 1.0
    key0 = (econ, ("inferred", "false"), ("kind", "actual"), ("mode", "none"), site_l)
    assert metrics[("pue_free_cooling_mode", key0)] == 0.0
    avail = metrics[("pue_free_cooling_available_seconds_total", (econ, site_l))]
    assert avail >= 3 * 60 and avail % 60 == 0
    assert metrics[("pue_free_cooling_used_seconds_total", (econ, site_l))] == avail
    assert ("pue_free_cooling_avoidable_chiller_energy_joules_total", (econ, site_l)) in metrics


async def test_influxdb_gets_free_cooling_points_with_fixed_field_types(influx1, tmp_path):
    from test_influx import write_all

    from pue_monitor import schema
    from pue_monitor.config.models import InfluxConfig
    from pue_monitor.sinks.lineprotocol import LineBuilder

    cooling = _dry_cooler()
    live = _live(cooling, ["outdoor_temperature", "relative_humidity", "chiller_power", "economiser_mode"])
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 3600)
    ts = t0 + POLL * np.arange(12)
    live.ingest(_readings({"outdoor_temperature": np.repeat([4.0, 13.0, 20.0], 4),
                           "relative_humidity": np.full(12, 50.0), "chiller_power": np.full(12, 120.0),
                           "economiser_mode": np.repeat([2.0, 1.0, 0.0], 4)}, ts))  # fmt: skip
    rows = live.close(t0 + 180, 0.0)
    lb = LineBuilder()
    batches = [
        lb.free_cooling("dc1", "1m", rows),
        lb.free_cooling("dc1", "1h", aggregate_free_cooling(rows, resolution="1h", tz="UTC")),
    ]
    cfg = InfluxConfig(url=influx1.url, bucket="pue", spool={"path": str(tmp_path / "spool.sqlite")})
    sink = await write_all(cfg, batches)
    await sink.close()
    q = (
        "SELECT fraction, mode, actual_mode, inferred, avoidable_kwh, used_s FROM pue_free_cooling "
        "WHERE resolution = '1m' ORDER BY time"
    )
    got = [r[1:] for r in influx1.query(q)[0]["values"]]
    assert got == [[1.0, 2, 2, 0, 2.0, 60.0], [0.5, 1, 1, 0, 1.0, 60.0], [0.0, 0, 0, 0, 0.0, 0.0]]
    (h,) = influx1.query("SELECT avoidable_kwh, utilisation, mode FROM pue_free_cooling WHERE resolution = '1h'")[0][
        "values"
    ]
    assert h[1:] == [3.0, 1.0, None]  # used 120 s of 120 s available; no mode on a rollup
    tags = sorted(k[0] for k in influx1.query("SHOW TAG KEYS FROM pue_free_cooling")[0]["values"])
    assert tags == sorted(schema.FREE_COOLING_TAGS)
    types = dict(influx1.query("SHOW FIELD KEYS FROM pue_free_cooling")[0]["values"])
    assert {f: types[f] for f in schema.FREE_COOLING_INT_FIELDS} == dict.fromkeys(
        schema.FREE_COOLING_INT_FIELDS, "integer"
    )
    assert all(types[f] == "float" for f in schema.FREE_COOLING_FLOAT_FIELDS)


def test_pue_show_free_cooling_prints_the_stored_rows(tmp_path):
    import json
    import subprocess
    import sys

    from pue_monitor.cli.live import free_cooling_summary

    cooling = _dry_cooler()
    live = _live(cooling, ["outdoor_temperature", "relative_humidity", "chiller_power", "economiser_mode"])
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 3600)
    ts = t0 + POLL * np.arange(12)
    live.ingest(_readings({"outdoor_temperature": np.repeat([4.0, 13.0, 20.0], 4),
                           "relative_humidity": np.full(12, 50.0), "chiller_power": np.full(12, 120.0),
                           "economiser_mode": np.zeros(12)}, ts))  # fmt: skip
    rows = live.close(t0 + 180, 0.0)
    db = tmp_path / "s.sqlite"
    store = SqliteStore(db)
    store.set_meta("timezone", "UTC")
    hour = aggregate_free_cooling(rows, resolution="1h", tz="UTC")
    store.write(now=t0, free_cooling=[("dc1", "1m", r) for r in rows] + [("dc1", "1h", r) for r in hour])
    store.close()
    pue = [sys.executable, "-m", "pue_monitor", "show", "--db", str(db), "--free-cooling"]
    out = subprocess.run([*pue, "--last", "2"], capture_output=True, text=True, timeout=30, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 4 and "avoidable kWh" in lines[0]  # header + the last two minutes + their total
    assert lines[3].startswith("total ") and "available 0.0 h" in lines[3] and "avoidable 1.0 kWh" in lines[3]
    assert lines[1].split()[2:5] == ["dc", "partial", "0.50"] and lines[1].split()[-1] == "1.00"
    assert lines[2].split()[2:5] == ["dc", "none", "0.00"] and lines[2].split()[-1] == "0.00"
    js = json.loads(subprocess.run([*pue, "--resolution", "1h", "--json"], capture_output=True, text=True,
                                   timeout=30, check=True).stdout)  # fmt: skip
    (h,) = js["free_cooling"]
    assert (h["avoidable_kwh"], h["chiller_kwh"], h["utilisation"], h["mode"]) == (3.0, 6.0, 0.0, None)
    # a month: its days (site time), and totals that are sums of the days, never averaged ratios
    import dataclasses
    import datetime as dt

    day = hour[0]  # stored as a day row below (the row carries no resolution itself)
    feb1 = dt.datetime(2027, 2, 1, tzinfo=dt.UTC).timestamp()
    days = [dataclasses.replace(day, start=feb1 + k * 86400, end=feb1 + (k + 1) * 86400) for k in (-1, 0, 1, 28)]
    store = SqliteStore(db)
    store.write(now=t0, free_cooling=[("dc1", "1d", d) for d in days])
    store.close()
    js = json.loads(subprocess.run([*pue, "--month", "2027-02", "--json"], capture_output=True, text=True,
                                   timeout=30, check=True).stdout)  # fmt: skip
    assert [r["start"] for r in js["free_cooling"]] == [feb1, feb1 + 86400]  # not 31 Jan, not 1 Mar
    tot = js["totals"]["dc"]
    assert (tot["chiller_kwh"], tot["avoidable_kwh"], tot["intervals"]) == (12.0, 6.0, 2)
    assert tot["available_h"] == pytest.approx(2 * (day.full_s + day.partial_s) / 3600)
    bad = subprocess.run([*pue, "--month", "2027-13"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("--month '2027-13': expected YYYY-MM, e.g. 2026-01")
    # the demo's summary: hours from seconds, utilisation as a ratio of sums, kWh from joules
    summ = free_cooling_summary({("dc", "available_s"): 7200.0, ("dc", "used_s"): 5400.0, ("dc", "avoidable_j"): 3.6e7})
    assert summ == {"dc": {"available_h": 2.0, "used_h": 1.5, "utilisation": 0.75, "avoidable_kwh": 10.0}}


def test_readme_live_cooling_example_is_valid():
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "chiller_on_kw" in b]
    cooling = CoolingConfig.model_validate(yaml.safe_load(block)["cooling"])
    assert (cooling.live.chiller_off_kw, cooling.live.chiller_on_kw, cooling.live.max_age_s) == (5, 100, 60)
    assert cooling.points.economiser_mode is not None and cooling.points.economiser_mode.device == "plant-controls"


async def test_restart_keeps_hourly_and_daily_free_cooling_rows_sums_of_all_stored_minutes(tmp_path):
    start = dt.datetime(2026, 1, 20, 4, 0, tzinfo=dt.UTC).timestamp()
    clock = ScaledClock(start=start, speed=60)
    world = SimulatedDataCentre(start=start - 600, seed=6)
    db = tmp_path / "store.sqlite"
    async with SimulatedSite(world, clock, publish_interval=15) as sim:
        site = site_from_dict(sim.site_config(interval=15, timeout=10), source="<sim>")
        for stop_at in (start + 4 * 60, start + 9 * 60):
            svc = Service(site, clock=clock, store_path=db, prometheus=False)
            stop = asyncio.Event()
            run = asyncio.create_task(svc.run(stop))
            await clock.sleep_until(stop_at)
            stop.set()
            await run
    reader = StoreReader(db)
    minutes = [m for m in reader.free_cooling("1m") if m["economiser"] == "water-side"]
    buckets = {res: [r for r in reader.free_cooling(res) if r["economiser"] == "water-side"] for res in ("1h", "1d")}
    reader.close()
    first_run = [m for m in minutes if m["end"] <= start + 4 * 60]
    second_run = [m for m in minutes if m["start"] >= start + 4 * 60]
    assert len(first_run) >= 2 and len(second_run) >= 3
    for res, rows in buckets.items():
        (b,) = rows
        inside = [m for m in minutes if b["start"] <= m["start"] < b["end"]]
        assert len(inside) == len(minutes), res
        for col in ("full_s", "partial_s", "none_s", "unknown_s", "used_s"):
            assert b[col] == pytest.approx(sum(m[col] for m in inside)), (res, col)
        assert b["full_s"] == 60.0 * len(minutes)


async def test_state_file_keeps_the_free_cooling_minutes_for_a_restart(tmp_path):
    """InfluxDB-only sites resume from the state file: it holds the open day's free-cooling
    minutes, read back exactly as they were handed over."""
    from pue_monitor.pipeline.freecooling_live import interval_from_row
    from pue_monitor.sinks.state import ReadingTail, StateFile

    cooling = _dry_cooler(chiller_off_kw=5.0, chiller_on_kw=100.0)
    live = _live(cooling, ["outdoor_temperature", "relative_humidity", "chiller_power"])
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 3600)
    ts = t0 + POLL * np.arange(12)
    values = {
        "outdoor_temperature": np.repeat([4.0, 13.0, 20.0], 4),
        "relative_humidity": np.full(12, 50.0),
        "chiller_power": np.full(12, 50.0),
    }
    live.ingest(_readings(values, ts))
    rows = live.close(t0 + 180, 0.0)
    path = tmp_path / "state.json"
    state = StateFile(path, site="dc1", tail=ReadingTail([], keep=60.0))
    state.free_cooling("1m", rows)
    state.free_cooling("1h", aggregate_free_cooling(rows, resolution="1h", tz="UTC"))  # not kept: recomputed
    await state.close()
    again = StateFile(path, site="dc1", tail=ReadingTail([], keep=60.0))
    back = [interval_from_row(r) for r in again.free_cooling_rows("1m", t0)]
    assert back == rows and all(r.inferred and r.actual_mode == Mode.PARTIAL for r in back)
    assert again.free_cooling_rows("1m", t0 + 120) == [again.free_cooling_rows("1m", t0)[-1]]
    assert again.free_cooling_rows("1h", t0) == []


def test_buffers_stay_bounded_and_minutes_come_once_in_order():
    cooling = _dry_cooler()
    live = _live(cooling, ["outdoor_temperature", "relative_humidity"])
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 60)
    starts = []
    for m in range(180):
        ts = t0 + 60 * m + POLL * np.arange(4)
        live.ingest(_readings({"outdoor_temperature": np.full(4, 10.0), "relative_humidity": np.full(4, 50.0)}, ts))
        starts += [r.start for r in live.close(t0 + 60 * (m + 1) + 20, 30.0)]
        # the open minute, the one waiting for the grace, and the max age (30 s) before: <= 10 polls
        assert all(len(s.ts) <= 10 for s in live._series.values())
    assert starts == sorted(set(starts)) and starts == [t0 + 60 * k for k in range(179)]


def test_prometheus_labels_an_inferred_mode_and_counts_each_minute_once():
    """The inferred plant mode carries inferred="true"; counters add closed minutes; an unknown
    weather minute leaves the available fraction absent (never 0)."""
    from pue_monitor.sinks.prometheus import LiveState, LiveStateOutput, PrometheusEndpoint

    cooling = _dry_cooler(chiller_off_kw=5.0, chiller_on_kw=100.0)
    live = _live(cooling, ["outdoor_temperature", "relative_humidity", "chiller_power"])
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 3600)
    ts = t0 + POLL * np.arange(12)
    keep = ts < t0 + 90  # the station goes silent: 45 s old (> 30 s) when the third minute starts
    values = {
        "outdoor_temperature": np.where(keep, np.repeat([4.0, 13.0, 20.0], 4), np.nan),
        "relative_humidity": np.where(keep, 50.0, np.nan),
        "chiller_power": np.full(12, 60.0),  # partial: between 5 and 100 kW -> 1 kWh a minute
    }
    live.ingest(_readings(values, ts))
    state = LiveState(site="dc1", warning=1.4, critical=1.5)
    out = LiveStateOutput(state)
    rows = live.close(t0 + 180, 0.0)
    out.free_cooling("1m", rows[:2])
    out.free_cooling("1h", aggregate_free_cooling(rows[:2], resolution="1h", tz="UTC"))  # gauges/counters: 1m only
    endpoint = PrometheusEndpoint(state, port=0)
    try:
        m1 = _scrape(endpoint.url)
        out.free_cooling("1m", rows[2:])
        m2 = _scrape(endpoint.url)
    finally:
        endpoint.close()
    site, econ = ("site", "dc1"), ("economiser", "dc")
    partial = (econ, ("inferred", "true"), ("kind", "actual"), ("mode", "partial"), site)
    assert m1[("pue_free_cooling_mode", partial)] == 1.0
    assert m1[("pue_free_cooling_available_ratio", (econ, site))] == pytest.approx(0.5)
    # minutes 1 (full, fraction 1) and 2 (partial, 0.5): avoidable 1 + 0.5 kWh
    assert m1[("pue_free_cooling_available_seconds_total", (econ, site))] == 120.0
    assert m1[("pue_free_cooling_used_seconds_total", (econ, site))] == 120.0
    joules = ("pue_free_cooling_avoidable_chiller_energy_joules_total", (econ, site))
    assert m1[joules] == pytest.approx(1.5 * 3.6e6)
    # minute 3: weather unknown -> no fraction exported, available mode unknown, counters unchanged
    assert ("pue_free_cooling_available_ratio", (econ, site)) not in m2
    unknown = (econ, ("inferred", "false"), ("kind", "available"), ("mode", "unknown"), site)
    assert m2[("pue_free_cooling_mode", unknown)] == 1.0
    assert m2[("pue_free_cooling_available_seconds_total", (econ, site))] == 120.0
    assert m2[joules] == pytest.approx(1.5 * 3.6e6)
    assert m2[("pue_free_cooling_used_seconds_total", (econ, site))] == 180.0
