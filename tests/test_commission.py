"""Commissioning: `pue read` and `pue check-config --probe` against the running simulator,
and the energy balance arithmetic with hand-computed numbers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pue_monitor.cli import main
from pue_monitor.clock import ManualClock
from pue_monitor.config.loader import BUILTIN_PROFILES, LoadedSite, load_profiles
from pue_monitor.config.models import ModbusProfile
from pue_monitor.pipeline.balance import MeterPower, UpsOutput, balance
from pue_monitor.simulator import SimulatedDataCentre
from pue_monitor.simulator.servers import encode_point
from pue_monitor.simulator.site import SimulatedSite

T = 1_750_000_000.0  # 2025-06-15 15:06 UTC: a summer afternoon, chillers running


# ------------------------------------------------------------------ balance, by hand


def _site_meters(*, drop: tuple[str, ...] = ()) -> list[MeterPower]:
    meters = [
        MeterPower("inc-a", "facility_input", 600.0),
        MeterPower("inc-b", "facility_input", 400.0),
        MeterPower("pdu-1", "it", 250.0, "pdu_output"),
        MeterPower("pdu-2", "it", 200.0, "pdu_output"),
        MeterPower("pdu-3", "it", 150.0, "pdu_output"),
        MeterPower("pdu-4", "it", 100.0, "pdu_output"),
        MeterPower("chillers", "cooling", 170.0),
        MeterPower("crah", "cooling", 30.0),
        MeterPower("lights", "lighting", 20.0),
    ]
    return [m for m in meters if m.device not in drop]


def test_balance_of_a_complete_site_is_clean():
    b = balance(_site_meters(), [UpsOutput("ups", 710.0)])
    # facility 1000; attributed IT 700 + cooling 200 + lighting 20 = 920; 80 kW = 8 % unattributed
    assert b.facility_kw == 1000.0
    assert b.loads_kw == {"it": 700.0, "cooling": 200.0, "lighting": 20.0}
    assert b.attributed_kw == 920.0
    assert b.unattributed_kw == pytest.approx(80.0)
    assert b.unattributed_share == pytest.approx(0.08)
    assert b.it_to_ups == pytest.approx(700.0 / 710.0)  # 98.6 %: PDU losses
    assert b.warnings == [] and b.complete


def test_balance_flags_two_forgotten_it_meters():
    b = balance(_site_meters(drop=("pdu-3", "pdu-4")), [UpsOutput("ups", 710.0)])
    # IT 450: attributed 670, 330 kW (33 %) unattributed; IT/UPS = 450/710 = 63.4 %
    assert b.unattributed_share == pytest.approx(0.33)
    assert b.it_to_ups == pytest.approx(450.0 / 710.0)
    assert len(b.warnings) == 2
    assert "33.0% of facility power (330.0 of 1000.0 kW) is not attributed" in b.warnings[0]
    assert "63.4% of the UPS output" in b.warnings[1]


def test_balance_thresholds_and_other_mistakes():
    # 12 % unattributed: over the default 10 %, under a site's own 15 %
    meters = [MeterPower("inc", "facility_input", 100.0), MeterPower("it", "it", 88.0, "pdu_output")]
    assert len(balance(meters).warnings) == 1
    assert balance(meters, max_unattributed=0.15).warnings == []
    # sub-meters read more than the incomers: a meter counted twice
    over = [MeterPower("inc", "facility_input", 100.0), MeterPower("it", "it", 105.0, "pdu_output")]
    (w,) = balance(over).warnings
    assert "more than the facility's 100.0 kW (5.0% over)" in w
    # IT above the UPS output: 103 / 100
    (w,) = balance([MeterPower("it", "it", 103.0, "it_equipment_input")], [UpsOutput("u", 100.0)]).warnings
    assert "103.0% of the UPS output" in w
    # IT at the UPS output is not "downstream": no comparison; no facility meter: no share
    b = balance([MeterPower("it", "it", 50.0, "ups_output")], [UpsOutput("u", 100.0)])
    assert b.it_to_ups is None and b.unattributed_share is None and b.warnings == []


def test_balance_with_an_unknown_meter_is_incomplete_and_silent():
    meters = [*_site_meters(drop=("pdu-3", "pdu-4")), MeterPower("pdu-3", "it", None, "pdu_output")]
    b = balance(meters, [UpsOutput("ups", 710.0)])
    assert b.unknown == ["pdu-3"] and not b.complete
    assert b.warnings == []  # the dead meter is reported as such, not as a forgotten one
    assert b.unattributed_share == pytest.approx(0.33)  # the figures are still shown


def test_site_balance_counts_an_import_only_incomer_as_unknown():
    """Incomer B comes from CSV exports only: without it the facility looks 400 kW short, so
    the balance is incomplete and silent instead of warning 'sub-meters exceed incomers'."""
    from pue_monitor.cli.commission import site_balance
    from pue_monitor.collectors.probe import OK, DeviceProbe, PointResult
    from pue_monitor.config.loader import site_from_dict

    modbus = {"protocol": "modbus", "host": "127.0.0.1", "profile": "eastron-sdm630"}
    inc_a = {**modbus, "id": "inc-a", "meter": {"role": "facility_input", "power": "active_power"}}
    inc_b = {"id": "inc-b", "protocol": "import", "meter": {"role": "facility_input", "energy": "kwh"}}
    it = {
        **modbus,
        "id": "it",
        "unit_id": 2,
        "meter": {"role": "it", "it_location": "pdu_output", "power": "active_power"},
    }

    def site(*devices: dict[str, Any]) -> LoadedSite:
        return site_from_dict({"site": {"id": "s"}, "devices": list(devices)}, source="<test>")

    def read(device: str, watts: float) -> DeviceProbe:
        point = PointResult("active_power", "input 52+2", "", watts, "W", OK)
        return DeviceProbe(device, "modbus", "", answered=True, points=[point])

    b = site_balance(site(inc_a, inc_b, it), [read("inc-a", 600_000.0), read("it", 700_000.0)])
    assert b.unknown == ["inc-b"] and b.warnings == []
    assert b.facility_kw == 600.0 and b.loads_kw == {"it": 700.0}  # W converted to kW
    # incomer A alone feeding the site: 1000 kW in, 700 kW IT, 30 % unattributed (a warning)
    b = site_balance(site(inc_a, it), [read("inc-a", 1_000_000.0), read("it", 700_000.0)])
    assert b.unattributed_share == pytest.approx(0.3) and len(b.warnings) == 1
    # an IT meter configured with its energy counter only is balanced on the active power it read
    it_energy = {**it, "meter": {"role": "it", "it_location": "pdu_output", "energy": "import_energy"}}
    b = site_balance(site(inc_a, it_energy), [read("inc-a", 1_000_000.0), read("it", 950_000.0)])
    assert b.loads_kw == {"it": 950.0} and b.unknown == [] and b.unattributed_share == pytest.approx(0.05)
    no_power = DeviceProbe(
        "it", "modbus", "", answered=True, points=[PointResult("import_energy", "", "", 5.0, "kWh", OK)]
    )
    b = site_balance(site(inc_a, it_energy), [read("inc-a", 1_000_000.0), no_power])
    assert b.unknown == ["it"] and b.warnings == []


# ------------------------------------------------------------------ against the simulator


@contextlib.asynccontextmanager
async def _sim(
    tmp_path: Path, *, drop: tuple[str, ...] = (), publish: float = 15.0
) -> AsyncIterator[tuple[SimulatedSite, Path]]:
    """The simulated site frozen at ``T`` and its site file (``drop``: devices left out;
    ``publish``: wall seconds between two MQTT publications, the clock being frozen)."""
    clock = ManualClock(T)
    world = SimulatedDataCentre(start=T - 3600, seed=11)
    async with SimulatedSite(world, clock, publish_interval=publish) as sim:
        cfg = sim.site_config(interval=60, timeout=2)
        cfg["devices"] = [d for d in cfg["devices"] if d["id"] not in drop]
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(cfg))
        yield sim, path


async def _pue(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in a thread (it runs its own event loop) while the simulator serves."""
    capsys.readouterr()
    rc = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_read_modbus_meter_prints_the_simulators_values_and_registers(tmp_path, capsys):
    async with _sim(tmp_path) as (sim, site):
        rc, out, _ = await _pue(capsys, "read", "--config", str(site), "pdu-2", "--json")
        assert rc == 0
        got = json.loads(out)
        rc, text, _ = await _pue(capsys, "read", "--config", str(site), "pdu-2")
        truth = sim.modbus.point_values("pdu-2", T)
    assert rc == 0
    prof = load_profiles()["eastron-sdm630"]
    assert isinstance(prof, ModbusProfile)
    assert got["answered"] and got["missing"] == [] and got["address"].endswith("unit 2")
    points = {p["point"]: p for p in got["points"]}
    assert set(points) == set(prof.points)
    for name, spec in prof.points.items():
        p = points[name]
        words = encode_point(spec, truth[name])  # what the meter holds at T
        assert p["raw"] == " ".join(f"0x{w:04X}" for w in words), name
        assert p["where"] == f"{spec.function} {spec.address}+{spec.count}"
        # the decoded value is the world's, within the register's resolution (f32 here)
        assert p["value"] == pytest.approx(truth[name], rel=2**-23, abs=1e-9), name
        assert p["unit"] == spec.unit and p["quality"] == "ok"
    assert truth["active_power"] > 50_000  # a real load (W), not zeros
    # the table shows the same: the point's registers and its decoded value on one line
    line = next(ln for ln in text.splitlines() if ln.startswith("active_power "))
    assert points["active_power"]["raw"] in line and line.split()[-1] == "ok"
    assert float(line.split()[-3]) == pytest.approx(points["active_power"]["value"], rel=1e-7)


async def test_read_snmp_devices_print_oids_raw_and_true_values(tmp_path, capsys):
    async with _sim(tmp_path) as (sim, site):
        host, port = sim.snmp.ports["ups"]
        argv = ["read", "--protocol", "snmp", "--host", host, "--port", str(port), "--profile", "ups-mib"]
        rc, out, err = await _pue(capsys, *argv, "--community", "public", "--json")
        assert rc == 0, err
        ups = json.loads(out)
        rc_pdu, out_pdu, _ = await _pue(capsys, "read", "--config", str(site), "rack-pdu-1", "--json")
        pdu = json.loads(out_pdu)
        mib = sim.snmp.ups_values(T)
        kw = sim.world.shown_power_at("rack-pdu-1", T)
        kwh = sim.world.counter_at("rack-pdu-1", T)
    assert rc == 0 and rc_pdu == 0
    points = {p["point"]: p for p in ups["points"]}
    prof = load_profiles()["ups-mib"]
    for name, obj in prof.points.items():
        rows = [p for p in points.values() if p["point"] == name or p["point"].startswith(name + ".")]
        assert rows, name
        for p in rows:
            raw = int(mib[tuple(int(x) for x in p["where"].split("."))])
            assert p["where"].startswith(obj.oid)
            assert p["raw"].split()[-1] == str(raw)
            assert p["value"] == pytest.approx(raw * obj.scale) and p["quality"] == "ok"
    # the UPS output lines add up to IT + PDU losses at T (W, rounded per line)
    loads = sim.world.loads_at(T)
    out_w = sum(points[f"output_power.{i}"]["value"] for i in (1, 2, 3))
    assert out_w == pytest.approx((float(loads["it"]) + float(loads["pdu_loss"])) * 1000, abs=2)
    pv = {p["point"]: p for p in pdu["points"]}
    assert pv["device_power.1"]["value"] == pytest.approx(round(kw * 100) / 100)  # hundredths of kW
    assert pv["device_energy.1"]["value"] == pytest.approx(round(kwh * 10) / 10)  # tenths of kWh
    assert pv["device_energy.1"]["where"] == "1.3.6.1.4.1.318.1.1.26.4.3.1.9.1"


async def test_read_shows_an_absent_snmp_row_as_missing(tmp_path, capsys):
    async with _sim(tmp_path) as (sim, _):
        host, port = sim.snmp.ports["ups"]
        rc, out, _ = await _pue(
            capsys,
            *("read", "--protocol", "snmp", "--host", host, "--port", str(port), "--profile", "ups-mib"),
            *("--points", "output_power.1,output_power.7", "--json"),
        )
    assert rc == 0  # the agent answered
    got = {p["point"]: p for p in json.loads(out)["points"]}
    assert got["output_power.1"]["quality"] == "ok"
    assert got["output_power.7"]["quality"] == "missing"
    assert got["output_power.7"]["reason"] == "NoSuchObject"  # what the simulated agent answers
    assert json.loads(out)["missing"] == ["output_power.7"]


async def test_read_shows_a_not_available_code_with_its_registers(capsys):
    """An ABB B21 answers FFFF.. / 7FFF.. for what it does not measure (tests/modbus_server.py)."""
    from modbus_server import serve

    abb = load_profiles()["abb-b-series"]
    na = {"import_energy": [0xFFFF] * 4, "active_power": [0x7FFF, 0xFFFF], "voltage_l1": 230.1}
    async with serve({3: (abb, na)}) as (port, _):
        argv = ("read", "--protocol", "modbus", "--host", "127.0.0.1", "--port", str(port), "--unit", "3")
        rc, out, _ = await _pue(capsys, *argv, "--profile", "abb-b-series", "--json")
        rc_text, text, _ = await _pue(capsys, *argv, "--profile", "abb-b-series")
    assert rc == 0 and rc_text == 0
    got = {p["point"]: p for p in json.loads(out)["points"]}
    assert got["import_energy"]["raw"] == "0xFFFF 0xFFFF 0xFFFF 0xFFFF"
    assert (got["import_energy"]["quality"], got["import_energy"]["value"]) == ("not available", None)
    assert got["active_power"]["raw"] == "0x7FFF 0xFFFF" and got["active_power"]["quality"] == "not available"
    assert got["voltage_l1"]["value"] == pytest.approx(230.1) and got["voltage_l1"]["quality"] == "ok"
    line = next(ln for ln in text.splitlines() if ln.startswith("import_energy "))
    assert line.endswith("not available: the device's not-available code") and "0xFFFF 0xFFFF 0xFFFF 0xFFFF" in line


async def test_read_a_dead_port_fails_with_one_line_naming_host_and_port(capsys):
    port = _free_port(socket.SOCK_STREAM)
    argv = ("read", "--protocol", "modbus", "--host", "127.0.0.1", "--port", str(port), "--profile", "eastron-sdm630")
    rc, out, err = await _pue(capsys, *argv, "--timeout", "0.5")
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "Traceback" not in err
    assert err.startswith("pue read: ") and "cannot connect" in err
    udp = _free_port(socket.SOCK_DGRAM)
    argv = ("read", "--protocol", "snmp", "--host", "127.0.0.1", "--port", str(udp), "--profile", "ups-mib")
    rc, out, err = await _pue(capsys, *argv, "--timeout", "0.3")
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and f"127.0.0.1:{udp}" in err and "no answer within 0.3 s" in err
    # a host name that does not resolve (RFC 6761 .invalid): the same one line, no traceback
    argv = ("read", "--protocol", "snmp", "--host", "meter.invalid", "--profile", "ups-mib")
    rc, out, err = await _pue(capsys, *argv)
    assert rc == 1 and out == "" and "Traceback" not in err
    assert err == "pue read: meter.invalid (meter.invalid:161): cannot resolve host name 'meter.invalid'\n"


async def test_read_usage_errors_exit_2(tmp_path, capsys):
    async with _sim(tmp_path) as (_, site):
        rc, _, err = await _pue(capsys, "read", "--config", str(site), "pdu-9")
        assert rc == 2 and f"{site}: no device 'pdu-9'" in err and "pdu-1" in err
        rc, _, err = await _pue(capsys, "read", "--config", str(site), "weather", "--points", "pressure")
        assert rc == 2 and "push device" in err
    rc, _, err = await _pue(capsys, "read", "--protocol", "modbus", "--host", "127.0.0.1")
    assert rc == 2 and "--profile" in err
    rc, _, err = await _pue(capsys, "read", "--protocol", "modbus", "--host", "h", "--profile", "no-such-meter")
    assert rc == 2 and "no-such-meter" in err and err.count("\n") == 1


async def test_read_push_devices_listens_for_their_next_message(tmp_path, capsys):
    async with _sim(tmp_path, publish=0.3) as (sim, site):
        rc, out, err = await _pue(capsys, "read", "--config", str(site), "weather", "--timeout", "10", "--json")
        wx = sim.world.weather_at(T)
        rc_sp, text, _ = await _pue(capsys, "read", "--config", str(site), "crah-sensors", "--timeout", "10")
        cfg = yaml.safe_load(site.read_text())
        cfg["mqtt"]["port"] = _free_port(socket.SOCK_STREAM)  # nobody there
        site.write_text(yaml.safe_dump(cfg))
        rc_dead, out_dead, err_dead = await _pue(capsys, "read", "--config", str(site), "water-meter", "--timeout", "1")
    assert rc == 0, err
    assert "weather is a mqtt push device: waiting up to 10 s" in err
    got = json.loads(out)
    assert got["answered"] and got["address"] == "dc/sim/weather"
    values = {p["point"]: (p["value"], p["unit"], p["quality"]) for p in got["points"]}
    # the station publishes the world's weather at T rounded to 0.01
    assert values["outdoor_temperature"] == (pytest.approx(float(wx.dry_bulb_c), abs=0.005), "degC", "ok")
    assert values["relative_humidity"] == (pytest.approx(float(wx.rh_pct), abs=0.005), "%", "ok")
    assert values["pressure"] == (pytest.approx(float(wx.pressure_hpa), abs=0.005), "hPa", "ok")
    assert rc_sp == 0 and "supply_temperature" in text and "first message after" in text
    assert rc_dead == 1 and out_dead == ""
    last = err_dead.strip().splitlines()[-1]
    assert last.startswith(f"pue read: water-meter: broker 127.0.0.1:{cfg['mqtt']['port']}: no message")
    assert "within 1 s" in last and "Traceback" not in err_dead


def _expected_balance(sim: SimulatedSite, it_meters: tuple[str, ...]) -> tuple[float, float]:
    """(unattributed share, IT / UPS output) from the world's own powers at T."""
    w = sim.world
    facility = w.shown_power_at("incomer-a", T) + w.shown_power_at("incomer-b", T)
    others = sum(w.shown_power_at(m, T) for m in (*it_meters, "chiller-plant", "crah", "lighting"))
    loads = w.loads_at(T)
    ups = float(loads["it"]) + float(loads["pdu_loss"])
    it = sum(w.shown_power_at(m, T) for m in it_meters)
    return (facility - others) / facility, it / ups


async def test_probe_of_the_full_site_is_clean(tmp_path, capsys):
    async with _sim(tmp_path) as (sim, site):
        rc, out, _ = await _pue(capsys, "check-config", "--probe", "--json", str(site))
        rc_text, text, _ = await _pue(capsys, "check-config", "--probe", str(site))
        share, ratio = _expected_balance(sim, ("pdu-1", "pdu-2", "pdu-3", "pdu-4", "rack-pdu-1", "rack-pdu-2"))
    assert rc == 0 and rc_text == 0
    got = json.loads(out)
    probe = got["probe"]
    assert probe["ok"] is True and got["site"] == "sim-taiyuan"
    polled = [d for d in probe["devices"] if d["protocol"] in ("modbus", "snmp")]
    n_polled = sum(1 for d in yaml.safe_load(site.read_text())["devices"] if d["protocol"] in ("modbus", "snmp"))
    assert len(polled) == n_polled >= 12 and all(d["answered"] and not d["missing"] for d in polled)
    assert {d["device"] for d in probe["devices"] if d["error"] == "push"} == {
        "weather",
        "crah-sensors",
        "water-meter",
        "plant-controls",
    }
    bal = probe["balance"]
    assert bal["warnings"] == [] and bal["complete"]
    assert 0.0 < share < 0.10  # UPS and PDU losses only
    assert bal["unattributed_share"] == pytest.approx(share, abs=1e-4)
    assert bal["it_to_ups"] == pytest.approx(ratio, abs=1e-4)
    assert "WARNING" not in text and "unattributed" in text


async def test_probe_flags_two_forgotten_it_meters(tmp_path, capsys):
    async with _sim(tmp_path, drop=("rack-pdu-1", "rack-pdu-2")) as (sim, site):
        rc, out, _ = await _pue(capsys, "check-config", "--probe", "--json", str(site))
        rc_text, text, _ = await _pue(capsys, "check-config", "--probe", str(site))
        share, ratio = _expected_balance(sim, ("pdu-1", "pdu-2", "pdu-3", "pdu-4"))
        full_share, _ = _expected_balance(sim, ("pdu-1", "pdu-2", "pdu-3", "pdu-4", "rack-pdu-1", "rack-pdu-2"))
    assert rc == 1 and rc_text == 1
    probe = json.loads(out)["probe"]
    assert probe["ok"] is False
    assert all(d["answered"] for d in probe["devices"] if d["protocol"] in ("modbus", "snmp"))
    bal = probe["balance"]
    # the two rack PDUs carry 15 % of IT: their power is now unattributed on top of the losses
    assert share > 0.15 and share - full_share > 0.10
    assert bal["unattributed_share"] == pytest.approx(share, abs=1e-4)
    assert bal["it_to_ups"] == pytest.approx(ratio, abs=1e-4) and ratio < 0.9
    assert len(bal["warnings"]) == 2
    assert f"{share:.1%} of facility power" in bal["warnings"][0]
    assert f"WARNING: {share:.1%} of facility power" in text
    assert "an IT meter is missing?" in text


async def test_probe_reports_a_dead_device_and_a_missing_point(tmp_path, capsys):
    (tmp_path / "profiles").mkdir()
    sim_meter = yaml.safe_load((BUILTIN_PROFILES / "pue-sim-meter.yaml").read_text())
    sim_meter["id"] = "pue-sim-meter-plus"
    sim_meter["points"]["reactive_power"] = {"address": 4000, "type": "f32", "unit": "kW", "function": "holding"}
    (tmp_path / "profiles" / "plus.yaml").write_text(yaml.safe_dump(sim_meter))
    async with _sim(tmp_path) as (sim, site):
        cfg = yaml.safe_load(site.read_text())
        cfg["profile_dirs"] = [str(tmp_path / "profiles")]
        for d in cfg["devices"]:
            if d["id"] == "lighting":
                d["profile"] = "pue-sim-meter-plus"
                d["points"] = [*d["points"], "reactive_power"]
        site.write_text(yaml.safe_dump(cfg))
        next(d for d in cfg["devices"] if d["id"] == "pdu-3")["timeout"] = 0.5
        site.write_text(yaml.safe_dump(cfg))
        sim.world.kill_device("pdu-3", T - 1)
        rc, out, _ = await _pue(capsys, "check-config", "--probe", "--json", str(site))
        rc_text, text, _ = await _pue(capsys, "check-config", "--probe", str(site))
        rc_read, read_text, _ = await _pue(capsys, "read", "--config", str(site), "lighting")
    assert rc == 1 and rc_text == 1 and rc_read == 0
    devices = {d["device"]: d for d in json.loads(out)["probe"]["devices"]}
    host, port, _ = sim.modbus.ports["pdu-3"]
    assert not devices["pdu-3"]["answered"]
    assert f"{host}:{port} unit 3: no answer within 0.5 s" in devices["pdu-3"]["error"]
    assert devices["pdu-4"]["answered"]  # the gateway still serves the other units
    assert devices["lighting"]["missing"] == ["reactive_power"]
    (bad,) = [p for p in devices["lighting"]["points"] if p["point"] == "reactive_power"]
    assert bad["quality"] == "error" and "illegal data address" in bad["reason"] and bad["where"] == "holding 4000+2"
    bal = json.loads(out)["probe"]["balance"]
    assert bal["unknown"] == ["pdu-3"] and bal["warnings"] == []  # incomplete: no false alarm
    assert "NO ANSWER" in text and "MISSING configured points: reactive_power (error:" in text
    assert "incomplete (no power reading): pdu-3" in text
    assert math.isfinite(next(p["value"] for p in devices["lighting"]["points"] if p["point"] == "active_power"))
    line = next(ln for ln in read_text.splitlines() if ln.startswith("reactive_power"))
    assert "error: " in line and "illegal data address" in line
