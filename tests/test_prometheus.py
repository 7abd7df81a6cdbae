"""Prometheus exposition: energy counters a real Prometheus turns into PUE, labels, staleness."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import Prometheus

from pue_monitor.clock import ScaledClock
from pue_monitor.collectors.runner import ERROR_KINDS
from pue_monitor.config.loader import site_from_dict
from pue_monitor.pipeline.pue import PueInterval
from pue_monitor.readings import Quality, Reading
from pue_monitor.service import Service
from pue_monitor.simulator import SimulatedDataCentre, SimulatorServers
from pue_monitor.sinks.prometheus import LiveState, LiveStateOutput, PueCollector
from pue_monitor.sinks.sqlite import StoreReader
from tests.sites import WEATHER_MQTT, two_meter_site

START = dt.datetime(2026, 7, 15, 2, 0, tzinfo=dt.UTC).timestamp()
PUE_QL = (
    'increase(pue_energy_joules_total{{job="pue",role="facility_input"}}[{r}]) / ignoring(role) '
    'increase(pue_energy_joules_total{{job="pue",role="it"}}[{r}])'
)


def query(prom: Prometheus, q: str, at: float) -> list[dict[str, object]]:
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": f"{at:.3f}"})
    body = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def samples(prom: Prometheus, role: str, at: float) -> list[float]:
    res = query(prom, f'pue_energy_joules_total{{job="pue",role="{role}"}}[10m]', at)
    return [float(v) for _, v in res[0]["values"]] if res else []  # type: ignore[index]


def prefix(cum: list[float], value: float) -> int:
    """The number of store minutes whose energy sums to a scraped counter value."""
    k = min(range(len(cum)), key=lambda i: abs(cum[i] - value))
    assert cum[k] == pytest.approx(value, rel=1e-9, abs=1e-3), f"counter {value} is no sum of stored minutes"
    return k


async def test_promql_increase_of_energy_counters_gives_the_pipelines_pue(tmp_path):
    clock = ScaledClock(start=START, speed=60)
    world = SimulatedDataCentre(start=START, seed=11)
    db = tmp_path / "s.sqlite"
    async with SimulatorServers(world, clock) as servers:
        cfg = servers.site_config(interval=15, timeout=5)
        svc = Service(site_from_dict(cfg, source="<sim>"), clock=clock, prometheus_port=0, store_path=db, resume=False)
        prom = Prometheus(tmp_path, f"127.0.0.1:{svc.prometheus.port}")
        stop = asyncio.Event()
        run = asyncio.create_task(svc.run(stop))
        try:
            await asyncio.to_thread(prom.start)
            at, it = 0.0, []
            for _ in range(300):  # until Prometheus holds 6 scrapes with 5 increases of the IT counter
                at = time.time()
                it = await asyncio.to_thread(samples, prom, "it", at)
                if len(set(it)) >= 6:
                    break
                await asyncio.sleep(0.2)
            fac = await asyncio.to_thread(samples, prom, "facility_input", at)
            ratio = await asyncio.to_thread(query, prom, PUE_QL.format(r="10m"), at)
            by_meter = await asyncio.to_thread(
                query, prom, 'sum by (role) (pue_meter_energy_joules_total{job="pue"})', at
            )
            by_role = await asyncio.to_thread(query, prom, 'pue_energy_joules_total{job="pue"}', at)
            # the service polls on (a poll every 0.25 s of wall time at 60x): the scrape shows the
            # latest reading as it was between these two snapshots
            before = dict(svc.state.latest_readings)
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(svc.prometheus.url, timeout=5).read())
            latest = dict(svc.state.latest_readings)
        finally:
            stop.set()
            await run
            await asyncio.to_thread(prom.stop)
    assert len(set(it)) >= 6, f"Prometheus scraped too few energy counter values: {it}"
    assert len(fac) == len(it) and ratio, (fac, ratio)
    promql_pue = float(ratio[0]["value"][1])  # type: ignore[index]

    reader = StoreReader(db)
    rows = sorted(reader.intervals("1m"), key=lambda r: r["start"])
    reader.close()
    cum_it, cum_fac = [0.0], [0.0]
    for r in rows:
        cum_it.append(cum_it[-1] + (r["e_it_kwh"] or 0.0) * 3.6e6)
        cum_fac.append(cum_fac[-1] + (r["e_facility_kwh"] or 0.0) * 3.6e6)
    # every scrape of both counters is the store's energy of the same first k minutes, in joules
    first, last = prefix(cum_it, it[0]), prefix(cum_it, it[-1])
    assert fac[0] == pytest.approx(cum_fac[first], rel=1e-9, abs=1e-3)
    assert fac[-1] == pytest.approx(cum_fac[last], rel=1e-9, abs=1e-3)
    assert last - first >= 5
    minutes = rows[first:last]
    assert all(r["pue"] is not None for r in minutes)
    store_pue = sum(r["e_facility_kwh"] for r in minutes) / sum(r["e_it_kwh"] for r in minutes)
    assert promql_pue == pytest.approx(store_pue, rel=1e-3)
    assert 1.05 < store_pue < 2.0

    # the meters of a role add up to the role (minutes with a missing meter add to the others only)
    meters = {r["metric"]["role"]: float(r["value"][1]) for r in by_meter}  # type: ignore[index]
    roles = {r["metric"]["role"]: float(r["value"][1]) for r in by_role}  # type: ignore[index]
    assert meters.keys() == roles.keys() >= {"facility_input", "it", "cooling"}
    for role, joules in roles.items():
        assert meters[role] >= joules * (1 - 1e-12)
        if all(r["pue"] is not None for r in rows[:last]):
            assert meters[role] == pytest.approx(joules, rel=1e-9), role

    # the full exposition (counters, histograms, reading gauges, process metrics) passes promtool
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool (Debian package prometheus) is needed: ./scripts/test installs it"
    check = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fams = {f.name: f for f in text_string_to_metric_families(text.decode())}
    assert {"process_resident_memory_bytes", "python_info", "pue_build_info"} <= fams.keys()
    assert fams["pue_collector_poll_latency_seconds"].type == "histogram"
    # one gauge per point read, equal to the latest good reading the service held
    shown = {(s.labels["device"], s.labels["point"]): s.value for s in fams["pue_reading_value"].samples}
    devices = {d for d, _ in latest}
    assert devices and devices == {d for d, _ in shown}
    for key, value in shown.items():
        assert value in (before[key].value, latest[key].value) if key in before else value == latest[key].value


def _iv(start: float, fac: float | None, it: float | None, meters: dict[str, float]) -> PueInterval:
    pue = fac / it if fac is not None and it is not None else None
    return PueInterval(start, start + 60, fac, it, {}, pue, {}, 2, 1.0, 0.0, 0.0, e_meters=meters)


def _collect(state: LiveState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for m in PueCollector(state).collect() for s in m.samples
    }


def test_energy_counters_count_restated_minutes_once_and_never_go_down():
    state = LiveState(site="s", warning=1.5, critical=2.0, meter_roles={"inc": "facility_input", "it1": "it"})
    out = LiveStateOutput(state)
    out.intervals("1m", [_iv(0, 2.0, 1.0, {"inc": 2.0, "it1": 1.0}), _iv(60, None, 1.5, {"it1": 1.5})])
    assert state.energy_j == {"facility_input": 2.0 * 3.6e6, "it": 2.5 * 3.6e6}  # unknown facility not counted
    out.intervals("1m", [_iv(60, 3.0, 1.5, {"inc": 3.0, "it1": 1.5})])  # restated: facility now known
    assert state.energy_j == {"facility_input": 5.0 * 3.6e6, "it": 2.5 * 3.6e6}
    out.intervals("1m", [_iv(60, 3.0, 1.5, {"inc": 3.0, "it1": 1.5})])  # the same again: no change
    assert state.energy_j["facility_input"] == 5.0 * 3.6e6
    out.intervals("1m", [_iv(60, 2.5, 1.5, {"inc": 2.5, "it1": 1.5})])  # lowered: held, not decreased
    assert state.energy_j["facility_input"] == 5.0 * 3.6e6
    out.intervals("1m", [_iv(120, 1.0, 0.5, {"inc": 1.0, "it1": 0.5})])  # true sum 5.5 passes the held 5.0
    assert state.energy_j["facility_input"] == pytest.approx(5.5 * 3.6e6)
    out.intervals("15m", [_iv(0, 99.0, 99.0, {})])  # only minutes feed the counters
    m = _collect(state)
    assert m[("pue_energy_joules_total", (("role", "it"), ("site", "s")))] == pytest.approx(3.0 * 3.6e6)
    assert m[("pue_meter_energy_joules_total", (("meter", "inc"), ("role", "facility_input"), ("site", "s")))] == (
        pytest.approx(5.5 * 3.6e6)
    )


def test_every_metric_has_site_errors_preinitialised_latency_histogram_and_fresh_readings():
    from pue_monitor.collectors.runner import DeviceStats

    now = [1000.0]
    state = LiveState(site="dc1", warning=1.5, critical=2.0, intervals_s={"m1": 10.0}, now=lambda: now[0])
    mb = DeviceStats("m1", "modbus")
    for seconds in (0.003, 0.02, 0.02, 7.0):
        mb.observe_latency(seconds)
    mb.errors["timeout"] += 2
    state.devices = {"m1": mb, "sp": DeviceStats("sp", "sparkplug")}
    state.latest_readings = {
        ("m1", "power"): Reading(990.0, "dc1", "m1", "power", 12.5, "kW"),
        ("m1", "volts"): Reading(990.0, "dc1", "m1", "volts", float("nan"), "V", Quality.BAD),
    }
    state.store = SimpleNamespace(path="/x", up=True, pending=0, write_failures=0, dropped={})
    m = _collect(state)
    assert all(dict(labels).get("site") == "dc1" for _, labels in m), [k for k in m if ("site", "dc1") not in k[1]]
    lab = (("device", "m1"), ("protocol", "modbus"), ("site", "dc1"))
    errors = {
        dict(k[1])["kind"]: v for k, v in m.items() if k[0] == "pue_collector_errors_total" and k[1][0][1] == "m1"
    }
    assert errors == {**dict.fromkeys(ERROR_KINDS["modbus"], 0.0), "timeout": 2.0}
    sp = {dict(k[1])["kind"] for k in m if k[0] == "pue_collector_errors_total" and ("protocol", "sparkplug") in k[1]}
    assert sp == set(ERROR_KINDS["sparkplug"])
    bucket = "pue_collector_poll_latency_seconds_bucket"
    assert m[(bucket, (*lab[:1], ("le", "0.005"), *lab[1:]))] == 1
    assert m[(bucket, (*lab[:1], ("le", "0.025"), *lab[1:]))] == 3
    assert m[(bucket, (*lab[:1], ("le", "5.0"), *lab[1:]))] == 3
    assert m[(bucket, (*lab[:1], ("le", "+Inf"), *lab[1:]))] == 4
    assert m[("pue_collector_poll_latency_seconds_count", lab)] == 4
    assert m[("pue_collector_poll_latency_seconds_sum", lab)] == pytest.approx(7.043)
    value = ("pue_reading_value", (("device", "m1"), ("point", "power"), ("site", "dc1"), ("unit", "kW")))
    assert m[value] == 12.5
    assert not any(k[0] == "pue_reading_value" and ("point", "volts") in k[1] for k in m)  # BAD: not exported
    now[0] = 990.0 + 30.0  # exactly 3 intervals old: still shown
    assert value in _collect(state)
    now[0] = 990.0 + 30.5  # older than 3 poll intervals: the series goes away
    assert value not in _collect(state)
    info = [k for k in m if k[0] == "pue_build_info"]
    assert len(info) == 1 and dict(info[0][1])["version"]


async def test_sparkplug_devices_are_labelled_sparkplug_with_their_error_kinds(tmp_path):
    from pue_monitor.clock import ManualClock

    sparkplug = {"id": "gw", "protocol": "sparkplug", "group": "g1", "edge_node": "n1"}
    cfg = two_meter_site(sparkplug, WEATHER_MQTT, mqtt=True)
    svc = Service(site_from_dict(cfg, source="<test>"), clock=ManualClock(1_790_000_000.0), store_path=tmp_path / "s")
    try:
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(svc.prometheus.url, timeout=5).read().decode())
    finally:
        await svc.close()
    errors = {
        (s.labels["device"], s.labels["protocol"], s.labels["kind"])
        for f in text_string_to_metric_families(text)
        if f.name == "pue_collector_errors"
        for s in f.samples
    }
    assert {k for d, p, k in errors if (d, p) == ("gw", "sparkplug")} == {"sparkplug", "rebirth"}
    assert {k for d, p, k in errors if (d, p) == ("wx", "mqtt")} == set(ERROR_KINDS["mqtt"])
    assert all(p != "mqtt" for d, p, _ in errors if d == "gw")
    assert {k for d, p, k in errors if (d, p) == ("inc", "modbus")} == set(ERROR_KINDS["modbus"])
