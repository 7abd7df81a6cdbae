"""Configuration reload (SIGHUP): a running service re-reads its site file without losing energy.

The service runs against the simulator's real Modbus servers on a :class:`ManualClock` moved by
the test (every poll slot is reached, so poll counts are exact); one test sends a real SIGHUP to
a `pue run` process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pue_monitor.clock import ManualClock
from pue_monitor.config.loader import load_site
from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.energy import SeriesSpec
from pue_monitor.pipeline.live import LivePipeline
from pue_monitor.pipeline.pue import PueInterval
from pue_monitor.readings import Reading
from pue_monitor.service import Service, Snapshot
from pue_monitor.simulator import SimulatedDataCentre
from pue_monitor.simulator.servers import SimulatorServers
from pue_monitor.sinks.sqlite import StoreReader

START = dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC).timestamp()  # noon in Asia/Shanghai
INTERVAL = 15.0
IT_METERS = ("pdu-1", "pdu-2", "pdu-3", "pdu-4")  # the Modbus simulator's IT meters


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def write_site(path: Path, cfg: dict[str, Any], *, without: str) -> None:
    doc = {**cfg, "devices": [d for d in cfg["devices"] if d["id"] != without]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


class Driver:
    """Moves the clock in 5 s steps; after each, waits until every polling task sleeps again
    (so each slot's poll has happened) and runs the service's step every 10 s."""

    def __init__(self, svc: Service, clock: ManualClock) -> None:
        self.svc, self.clock = svc, clock

    async def settle(self) -> None:
        for _ in range(5):  # let the tasks the clock woke leave their sleep
            await asyncio.sleep(0)
        deadline = time.monotonic() + 30
        while self.clock.sleepers() < len(self.svc.runner._task_of):
            assert time.monotonic() < deadline, "polling tasks did not go back to sleep"
            await asyncio.sleep(0.002)

    async def until(self, t: float) -> None:
        while self.clock.now() < t:
            self.clock.advance(5.0)
            await self.settle()
            if self.clock.now() % 10 == 0:
                await self.svc.step()


async def test_reload_adds_removes_keeps_polling_and_energy(tmp_path, caplog):
    """Four minutes with 'lighting' (no 'crah'); an invalid file and a file that needs a restart
    are refused (nothing changes); then the valid reload: 'crah' added, 'lighting' removed,
    every other device untouched. The energy of the whole run equals the simulator's truth."""
    caplog.set_level(logging.INFO, logger="pue_monitor.service")
    clock = ManualClock(START - 30)
    world = SimulatedDataCentre(start=START - 600, seed=11)
    site_file = tmp_path / "site.yaml"
    minutes: dict[float, PueInterval] = {}

    def on_tick(snap: Snapshot) -> None:
        for iv in snap.closed:
            minutes[iv.start] = iv

    async with SimulatorServers(world, clock) as servers:
        cfg = servers.site_config(interval=INTERVAL, timeout=2.0)
        cfg["store"] = {"path": str(tmp_path / "store.sqlite")}
        cfg["prometheus"] = {"enabled": True, "port": 0}
        write_site(site_file, cfg, without="crah")
        svc = Service(load_site(site_file), clock=clock, on_tick=on_tick)
        try:
            t_reload = await _scenario(svc, clock, cfg, site_file, caplog, minutes)
        finally:
            await svc.runner.stop()
            await svc.final_step()
            await svc.close()

    # every minute from the first to the last full one is there, complete and measured
    full = sorted((iv for iv in minutes.values() if iv.coverage == 1.0), key=lambda iv: iv.start)
    first, last = full[0].start, full[-1].end
    assert first <= START and last >= START + 540
    assert [iv.start for iv in full] == [first + 60 * k for k in range(len(full))]
    assert all(iv.pue is not None and iv.measured == 1.0 and iv.estimated == 0 for iv in full)
    fac = sum(iv.e_facility for iv in full if iv.e_facility is not None)
    it = sum(iv.e_it for iv in full if iv.e_it is not None)
    assert fac == pytest.approx(world.true_energy("facility_input", first, last), rel=1e-4)
    assert it == pytest.approx(sum(world.true_energy(m, first, last) for m in IT_METERS), rel=1e-4)
    # lighting counts up to the minute of its last reading, crah from the minute after its first
    with_l = [iv for iv in full if "lighting" in iv.e_meters]
    with_c = [iv for iv in full if "crah" in iv.e_meters]
    leave, join = with_l[-1].end, with_c[0].start
    assert with_l == [iv for iv in full if iv.start < leave] and with_c == [iv for iv in full if iv.start >= join]
    assert t_reload - 60 <= leave <= t_reload < join <= t_reload + 60
    # (both registers count 0.01 kWh steps: the ends of a span are each off by up to one step)
    e_light = sum(iv.e_meters["lighting"] for iv in with_l)
    assert e_light == pytest.approx(world.true_energy("lighting", first, leave), abs=0.02)
    e_crah = sum(iv.e_meters["crah"] for iv in with_c)
    assert e_crah == pytest.approx(world.true_energy("crah", join, last), abs=0.02)
    # the stored day: the same energy (the stop's partial minute included, up to its cut)
    reader = StoreReader(tmp_path / "store.sqlite")
    stored = reader.intervals("1m")
    (day,) = reader.intervals("1d")
    reader.close()
    tail = stored[-1]
    cut = tail["start"] + 60 * tail["coverage"]
    assert day["e_facility_kwh"] == pytest.approx(world.true_energy("facility_input", first, cut), rel=1e-4)
    assert day["e_it_kwh"] == pytest.approx(sum(world.true_energy(m, first, cut) for m in IT_METERS), rel=1e-4)


async def _scenario(
    svc: Service, clock: ManualClock, cfg: dict[str, Any], site_file: Path, caplog: Any, minutes: dict[float, Any]
) -> float:
    """Runs the reloads; returns the time of the valid one."""
    drive = Driver(svc, clock)
    await svc.outputs.start()
    svc.runner.start()
    await drive.settle()
    await drive.until(START + 240)
    unchanged = sorted(set(svc.runner.stats) - {"lighting"})
    assert len(unchanged) == len(svc.runner.stats) - 1 >= 7 and "crah" not in unchanged  # all but lighting
    tasks = {d: svc.runner._task_of[d] for d in unchanged}
    stats = {d: svc.runner.stats[d] for d in unchanged}
    used = {(d["host"], d["port"]) for d in cfg["devices"] if d["id"] in unchanged}
    clients = {k: c._client for k, c in svc.connections.items() if k in used}
    assert len(clients) >= 3 and all(clients.values())  # each connected

    # an invalid file: one line naming the file and the error; nothing changes
    text = await asyncio.to_thread(site_file.read_text)
    await asyncio.to_thread(site_file.write_text, text.replace("interval: 15.0", "interval: -1", 1))
    caplog.clear()
    assert await svc.reload() is False
    (rec,) = [r for r in caplog.records if "reload" in r.getMessage()]
    msg = rec.getMessage()
    assert rec.levelno == logging.ERROR and "\n" not in msg
    assert str(site_file) in msg and "still running the previous configuration" in msg and "interval" in msg
    # a valid file that changes what only a restart applies: refused whole (crah not started)
    cfg_tz = {**cfg, "site": {**cfg["site"], "timezone": "Europe/Berlin"}}
    write_site(site_file, cfg_tz, without="lighting")
    caplog.clear()
    assert await svc.reload() is False
    (rec,) = [r for r in caplog.records if "reload" in r.getMessage()]
    assert "site.timezone changed: a restart is needed" in rec.getMessage()
    assert "crah" not in svc.runner.stats and "lighting" in svc.runner.stats
    assert svc.site.config.site.timezone == "Asia/Shanghai"

    # the valid reload: crah added, lighting removed, the rest unchanged
    await drive.until(START + 300)
    write_site(site_file, cfg, without="lighting")
    lighting = svc.runner.stats["lighting"]
    at_reload = {d: s.polls for d, s in stats.items()}
    t_reload = clock.now()
    caplog.clear()
    assert await svc.reload() is True
    (rec,) = [r for r in caplog.records if "reload" in r.getMessage()]
    assert f"1 devices added (crah), 1 removed (lighting), 0 changed, {len(unchanged)} unchanged" in rec.getMessage()
    lighting_polls = lighting.polls
    await drive.until(START + 600)

    # unchanged devices: same task, same stats, same connection, every slot polled
    slots = int(clock.now() // INTERVAL) - int(t_reload // INTERVAL)
    assert slots == 20
    for d in unchanged:
        assert svc.runner._task_of[d] is tasks[d] and not tasks[d].done()
        assert svc.runner.stats[d] is stats[d]
        assert stats[d].polls - at_reload[d] == slots, d
        assert stats[d].failed_polls == 0
    assert {k: c._client for k, c in svc.connections.items() if k in used} == clients
    # the removed device stopped; the added one polls
    assert "lighting" not in svc.runner.stats and lighting.polls == lighting_polls
    assert svc.runner.stats["crah"].polls == slots and svc.state.readings["crah"] > 0
    assert svc.prometheus is not None
    metrics = await asyncio.to_thread(scrape, svc.prometheus.url)
    site_lab = ("site", cfg["site"]["id"])
    assert metrics[("pue_config_reloads_total", (("result", "failure"), site_lab))] == 2
    assert metrics[("pue_config_reloads_total", (("result", "success"), site_lab))] == 1
    # the energy counters of the meters that continued: every closed minute counted once
    for meter, role in (("incomer-a", "facility_input"), ("pdu-2", "it"), ("chiller-plant", "cooling")):
        j = metrics[("pue_meter_energy_joules_total", (("meter", meter), ("role", role), site_lab))]
        assert j == pytest.approx(3.6e6 * sum(iv.e_meters[meter] for iv in minutes.values()), rel=1e-12)
    return t_reload


def test_sighup_reloads_a_running_pue_run_and_an_invalid_file_keeps_it_running(tmp_path):
    """A real `pue run` process: SIGHUP with a device added logs what was applied; SIGHUP with a
    broken file logs one line naming the file and keeps running; SIGTERM then stops it (exit 0)."""
    site = tmp_path / "site.yaml"
    dead = {"protocol": "modbus", "host": "127.0.0.1", "port": 9, "profile": "eastron-sdm630"}
    dead |= {"interval": 1, "timeout": 0.5}
    energy = {"energy": "import_energy"}
    cfg: dict[str, Any] = {
        "site": {"id": "hup"},
        "prometheus": {"enabled": False},
        "store": {"path": str(tmp_path / "hup.sqlite")},
        "devices": [
            {**dead, "id": "inc", "meter": {"role": "facility_input", "energy": "import_energy"}},
            {**dead, "id": "it", "unit_id": 2, "meter": {"role": "it", "it_location": "ups_output", **energy}},
        ],
    }
    site.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pue_monitor", "-v", "run", "--config", str(site), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in:\n{''.join(lines)}")

    try:
        wait_for("device inc down")  # running: polls have started
        cfg["devices"].append({**dead, "id": "extra", "unit_id": 3})
        site.write_text(yaml.safe_dump(cfg))
        proc.send_signal(signal.SIGHUP)
        line = wait_for("reloaded")
        assert f"reloaded {site}: 1 devices added (extra), 0 removed, 0 changed, 2 unchanged" in line
        wait_for("device extra down")  # the added device is polled
        site.write_text("site: {id: hup}\ndevices: [\n")
        proc.send_signal(signal.SIGHUP)
        line = wait_for("reload of")
        assert "ERROR" in line and str(site) in line and "still running the previous configuration" in line
        time.sleep(0.5)
        assert proc.poll() is None  # still running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not any("Traceback" in ln for ln in lines)


# ------------------------------------------------------------------ the pipeline's model swap


def _feed(pipes: list[LivePipeline], t0: float, t1: float, kw: dict[tuple[str, str], float]) -> list[PueInterval]:
    """Counter readings every 15 s in [t0, t1) for each series (kWh at ``kw``), closing each
    pipeline every minute; returns the last pipeline's closed intervals."""
    out: list[PueInterval] = []
    for t in np.arange(t0, t1, 15.0).tolist():
        rs = [Reading(t, "s", d, p, 1000.0 + power * (t - T0) / 3600.0, "kWh") for (d, p), power in kw.items()]
        for pipe in pipes:
            pipe.ingest(rs)
        if t % 60 == 45:
            for pipe in pipes:
                got = pipe.close(t, 20.0)
            out += got
    return out


T0 = 1_700_000_040.0  # a multiple of 60


def _spec(meter: str, role: Role, loc: ITLocation | None = None, max_gap: float = 40.0) -> SeriesSpec:
    return SeriesSpec(meter, role, loc, "counter", 1.0, None, max_gap)


def test_pipeline_respec_keeps_continuing_series_exact_and_books_changes_at_a_boundary():
    a = {
        ("F", "e"): _spec("F", Role.FACILITY_INPUT),
        ("I", "e"): _spec("I", Role.IT, ITLocation.UPS_OUTPUT),
        ("C", "e"): _spec("C", Role.COOLING),
        ("U", "e"): _spec("U", Role.OTHER),
    }
    kw = {("F", "e"): 150.0, ("I", "e"): 100.0, ("C", "e"): 40.0, ("L", "e"): 5.0, ("U", "e"): 2.0}
    ref, pipe = LivePipeline(a), LivePipeline(a)
    before = _feed([ref, pipe], T0, T0 + 900, kw)  # the same for both
    # F unchanged but its max_gap (poll interval) changed: swapped in place; I moved to the PDU
    # outputs (category 2): a new version; U's unit changed (kWh -> Wh); C removed; L and Z
    # (never answers) added
    b = {
        ("F", "e"): _spec("F", Role.FACILITY_INPUT, max_gap=50.0),
        ("I", "e"): _spec("I", Role.IT, ITLocation.PDU_OUTPUT),
        ("U", "e"): SeriesSpec("U", Role.OTHER, None, "counter", 1e-3, None, 40.0),
        ("L", "e"): _spec("L", Role.LIGHTING),
        ("Z", "e"): _spec("Z", Role.COOLING),
    }
    change = pipe.respec(b, now=T0 + 900)
    assert (change.kept, change.changed, change.added, change.removed) == (
        [("F", "e")],
        [("I", "e"), ("U", "e")],
        [("L", "e"), ("Z", "e")],
        [("C", "e")],
    )
    with pytest.raises(ValueError, match="different roles"):  # a bad model changes nothing
        pipe.respec({**b, ("F", "p"): _spec("F", Role.IT, ITLocation.PDU_OUTPUT)}, now=T0 + 900)
    out = {iv.start: iv for iv in [*before, *_feed([pipe], T0 + 900, T0 + 1800, kw)]}
    refs = {iv.start: iv for iv in [*before, *_feed([ref], T0 + 900, T0 + 1800, kw)]}
    assert set(out) == set(refs) and len(out) >= 28
    for s, iv in out.items():
        assert iv.e_meters["F"] == refs[s].e_meters["F"]  # the continuing meter: exactly the same
        assert iv.e_facility == refs[s].e_facility
    # C: in the model up to the minute of its last reading (T0+885: 14:45 -> until T0+840)
    assert [s for s, iv in out.items() if "C" in iv.e_meters] == [s for s in out if s < T0 + 840]
    # I's old version ends there too and its new one (category 2) starts there with the same
    # readings: its energy continues, measured
    cat = {s: iv.category for s, iv in out.items()}
    assert {c for s, c in cat.items() if s < T0 + 840} == {1} and {c for s, c in cat.items() if s >= T0 + 840} == {2}
    assert all(iv.e_it == pytest.approx(100.0 / 60) and iv.pue is not None for iv in out.values())
    assert all(iv.e_meters["I"] == refs[s].e_meters["I"] for s, iv in out.items() if s != T0 + 840)
    # U's readings mean something else now (Wh): no old reading carries over, so the minute
    # before its first new one is MISSING (never silently absent), then it counts in Wh
    assert [s for s, iv in out.items() if "U" not in iv.e_meters] == [T0 + 840]
    assert all(iv.e_meters["U"] == pytest.approx(2.0 / 60 * (1e-3 if s > T0 + 840 else 1)) for s, iv in out.items()
               if s != T0 + 840)  # fmt: skip
    # L joins at the first minute starting at/after its first reading (T0+900, on the boundary);
    # Z never answered: it joins at its deadline (3 max_gap after the reload), MISSING from then on
    assert min(s for s, iv in out.items() if "L" in iv.e_meters) == T0 + 900
    assert all(iv.e_meters["L"] == pytest.approx(5.0 / 60) for iv in out.values() if "L" in iv.e_meters)
    z_from = T0 + 900 + 3 * 40.0
    assert all(("cooling" in iv.e_subsystems) == (s < T0 + 840) for s, iv in out.items() if s < z_from)
    assert all(iv.missing > 0 and "cooling" not in iv.e_subsystems for s, iv in out.items() if s >= z_from + 60)
    # instant power: the current model only (no C, no Z before it answers)
    assert set(pipe.instant().power_by_role) == {"facility_input", "it", "lighting", "other"}


async def test_reload_restarts_the_mqtt_connection_only_when_push_devices_change(tmp_path):
    """MQTT devices share one broker connection: removing one restarts it, the other MQTT
    device's counts continue (same stats), the removed topic is no longer read; a Modbus
    device is untouched; a reload that changes no push device keeps the connection."""
    import aiomqtt

    from pue_monitor.clock import WallClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.simulator.broker import Broker
    from tests.sites import two_meter_site

    def mqtt_dev(dev_id: str) -> dict[str, Any]:
        return {"id": dev_id, "protocol": "mqtt", "subscriptions": [{"topic": dev_id, "points": [{"point": "t"}]}]}

    async def until(cond: Any) -> None:
        deadline = time.monotonic() + 10
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    async with Broker(kind="mosquitto") as broker:
        cfg = two_meter_site(mqtt_dev("wx1"), mqtt_dev("wx2"), mqtt=True)
        cfg["mqtt"] = {"host": broker.host, "port": broker.port}
        cfg["prometheus"] = {"enabled": False}
        cfg["store"] = {"path": str(tmp_path / "m.sqlite")}
        svc = Service(site_from_dict(cfg, source="<test>"), clock=WallClock())
        await svc.outputs.start()
        svc.runner.start()
        try:
            first = svc.source
            assert first is not None
            await until(lambda: first.connected)
            async with aiomqtt.Client(broker.host, broker.port) as pub:

                async def publish_both() -> None:
                    await pub.publish("wx1", "21.5", qos=1)
                    await pub.publish("wx2", "22.5", qos=1)

                await publish_both()
                await until(lambda: svc.state.readings["wx1"] == 1 and svc.state.readings["wx2"] == 1)
                wx1, inc_task = svc.runner.stats["wx1"], svc.runner._task_of["inc"]
                # a reload that changes no push device: the same connection
                cfg["thresholds"] = {"warning": 1.6, "critical": 1.9}
                assert await svc.reload(site=site_from_dict(cfg, source="<test>")) is True
                assert svc.source is first and svc.runner._task_of[first] is not None
                assert svc.state.warning == 1.6
                # wx2 removed: the connection restarts for wx1 alone
                cfg["devices"] = [d for d in cfg["devices"] if d["id"] != "wx2"]
                assert await svc.reload(site=site_from_dict(cfg, source="<test>")) is True
                second = svc.source
                assert second is not None and second is not first and second.device_ids == ["wx1"]
                assert first not in svc.runner._task_of
                await until(lambda: second.connected)
                await publish_both()
                await until(lambda: svc.state.readings["wx1"] == 2)
                await asyncio.sleep(0.2)
                assert "wx2" not in svc.runner.stats and "wx2" not in svc.state.readings
                assert svc.runner.stats["wx1"] is wx1 and wx1.polls == 2  # the counts continue
                assert svc.runner._task_of["inc"] is inc_task  # the Modbus device: untouched
        finally:
            await svc.runner.stop()
            await svc.close()


def test_the_unit_reloads_with_sighup_and_verifies(tmp_path):
    from tests.test_deploy import analyze, rendered_unit, settings

    unit = rendered_unit(tmp_path)
    assert settings(unit)["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    verify = analyze("verify", str(unit))
    assert (verify.returncode, verify.stderr, verify.stdout) == (0, "", "")


async def test_reload_restarts_changed_devices_and_their_energy_continues(tmp_path):
    """pdu-1's timeout and the chiller's role change: both restart (new task, counts from 0);
    the chiller counts as 'other' from the minute of its last old reading on, with its old
    readings carried over, so every minute stays complete and measured and the energy of
    every role equals the simulator's truth across the reload."""
    clock = ManualClock(START - 30)
    world = SimulatedDataCentre(start=START - 600, seed=12)
    minutes: dict[float, PueInterval] = {}

    def on_tick(snap: Snapshot) -> None:
        for iv in snap.closed:
            minutes[iv.start] = iv

    async with SimulatorServers(world, clock) as servers:
        cfg = servers.site_config(interval=INTERVAL, timeout=2.0)
        cfg["prometheus"] = {"enabled": False}
        cfg["store"] = {"path": str(tmp_path / "c.sqlite")}
        site_file = tmp_path / "site.yaml"
        write_site(site_file, cfg, without="")
        svc = Service(load_site(site_file), clock=clock, on_tick=on_tick)
        drive = Driver(svc, clock)
        try:
            await svc.outputs.start()
            svc.runner.start()
            await drive.settle()
            await drive.until(START + 180)
            old_pdu1, old_task = svc.runner.stats["pdu-1"], svc.runner._task_of["pdu-1"]
            pdu2 = svc.runner._task_of["pdu-2"]
            for d in cfg["devices"]:
                if d["id"] == "pdu-1":
                    d["timeout"] = 1.5
                if d["id"] == "chiller-plant":
                    d["meter"]["role"] = "other"
            await asyncio.to_thread(write_site, site_file, cfg, without="")
            t_reload = clock.now()
            assert await svc.reload() is True
            await drive.until(START + 420)
            slots = int(clock.now() // INTERVAL) - int(t_reload // INTERVAL)
            new_pdu1 = svc.runner.stats["pdu-1"]
            assert new_pdu1 is not old_pdu1 and svc.runner._task_of["pdu-1"] is not old_task and old_task.done()
            assert new_pdu1.polls == slots and svc.runner._task_of["pdu-2"] is pdu2
        finally:
            await svc.runner.stop()
            await svc.close()
    full = sorted((iv for iv in minutes.values() if iv.coverage == 1.0), key=lambda iv: iv.start)
    first, last = full[0].start, full[-1].end
    assert [iv.start for iv in full] == [first + 60 * k for k in range(len(full))] and last >= START + 360
    assert all(iv.pue is not None and iv.measured == 1.0 for iv in full)
    other = [iv.start for iv in full if "other" in iv.e_subsystems]
    switch = other[0]
    assert t_reload - 60 <= switch <= t_reload and other == [iv.start for iv in full if iv.start >= switch]
    for iv in full:  # cooling: the chiller and the CRAH before the switch, the CRAH alone after
        chiller = iv.e_meters["chiller-plant"] if iv.start < switch else 0.0
        assert iv.e_subsystems["cooling"] == pytest.approx(chiller + iv.e_meters["crah"], rel=1e-12)
    fac = sum(iv.e_facility for iv in full if iv.e_facility is not None)
    it = sum(iv.e_it for iv in full if iv.e_it is not None)
    assert fac == pytest.approx(world.true_energy("facility_input", first, last), rel=1e-4)
    assert it == pytest.approx(sum(world.true_energy(m, first, last) for m in IT_METERS), rel=1e-4)
    # the chiller's energy across the switch: cooling before, other after, nothing lost or doubled
    # (about 0.8 kWh a minute; its register counts 0.01 kWh steps, each end of a span is off by
    # up to one)
    chiller = sum(iv.e_meters["chiller-plant"] for iv in full)
    assert chiller == pytest.approx(world.true_energy("chiller-plant", first, last), abs=0.02)
    other_kwh = sum(iv.e_subsystems.get("other", 0.0) for iv in full)
    assert other_kwh == pytest.approx(world.true_energy("chiller-plant", switch, last), abs=0.02)
