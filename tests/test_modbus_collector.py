"""Modbus TCP collector against real pymodbus servers on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pytest
from modbus_server import serve

from pue_monitor.clock import WallClock
from pue_monitor.collectors.modbus import ModbusConnection, ModbusReader
from pue_monitor.collectors.plan import compile_plan
from pue_monitor.collectors.runner import Runner, Schedule
from pue_monitor.config.loader import load_profiles, site_from_dict
from pue_monitor.config.models import ModbusDevice
from pue_monitor.errors import DeviceTimeout, DeviceUnreachable, PermanentDeviceError
from pue_monitor.pipeline.energy import Status, interval_energy
from pue_monitor.pipeline.model import series_specs
from pue_monitor.readings import Quality

P = load_profiles()
SDM = P["eastron-sdm630"]
SDM_VALUES = {
    "voltage_l1": 230.1,
    "voltage_l2": 229.5,
    "voltage_l3": 231.0,
    "current_l1": 40.25,
    "power_l1": 9261.5,
    "active_power": 27604.5,
    "power_factor": 0.97,
    "frequency": 50.0,
    "import_energy": 98765.25,
    "export_energy": 1.5,
    "total_energy": 98766.75,
}


def device(port: int, unit: int = 1, *, profile: str = "eastron-sdm630", **kw) -> ModbusDevice:
    return ModbusDevice(
        id=kw.pop("id", f"dev{unit}"),
        protocol="modbus",
        host="127.0.0.1",
        port=port,
        unit_id=unit,
        profile=profile,
        **kw,
    )


def reader(dev: ModbusDevice, conn: ModbusConnection) -> ModbusReader:
    prof = P[dev.profile]
    return ModbusReader(dev, prof, list(dev.points or prof.points), conn)


async def test_sdm630_profile_read_back():
    async with serve({1: (SDM, SDM_VALUES)}) as (port, beh):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        values = {v.point: v for v in await reader(device(port), conn).read()}
        await conn.close()
    for name, expected in SDM_VALUES.items():
        assert values[name].value == pytest.approx(expected, rel=1e-6), name  # float32
        assert values[name].quality is Quality.GOOD
    assert values["active_power"].unit == "W" and values["import_energy"].unit == "kWh"
    # contiguous registers merged: 0x00-0x11, 0x34, 0x3E, 0x46-0x4B, 0x156 -> 5 requests
    assert [(fc, a, c) for fc, a, c in beh[1].requests] == [
        (4, 0x00, 18),
        (4, 0x34, 2),
        (4, 0x3E, 2),
        (4, 0x46, 6),
        (4, 0x156, 2),
    ]


async def test_schneider_int64_energy_and_holding_registers():
    iem = P["schneider-iem3000"]
    vals = {"active_power": 412.75, "import_energy": 123_456_789_012.0}  # kW, Wh
    async with serve({7: (iem, vals)}) as (port, beh):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        got = {v.point: v.value for v in await reader(device(port, 7, profile="schneider-iem3000"), conn).read()}
        await conn.close()
    assert got["import_energy"] == 123_456_789_012.0
    assert got["active_power"] == pytest.approx(412.75)
    assert {fc for fc, _, _ in beh[7].requests} == {3}


async def test_per_device_request_knobs():
    async with serve({1: (SDM, SDM_VALUES)}) as (port, beh):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        await reader(device(port, max_registers_per_request=4), conn).read()
        capped = list(beh[1].requests)
        beh[1].requests.clear()
        await reader(device(port, one_register_per_request=True), conn).read()
        single = list(beh[1].requests)
        beh[1].requests.clear()
        t0 = time.monotonic()
        await reader(device(port, request_pause=0.05), conn).read()
        paused = time.monotonic() - t0
        await conn.close()
    # 18 registers -> 5 requests, 0x46..0x4B (6) -> 2, three single values -> 3
    assert max(c for _, _, c in capped) <= 4 and len(capped) == 5 + 2 + 3
    assert len(single) == len(SDM.points) and all(c == 2 for _, _, c in single)
    assert paused >= 5 * 0.05


def test_plan_never_splits_a_value():
    plan = compile_plan(dict(SDM.points), max_registers=3)
    assert all(r.count == 2 for r in plan)
    with pytest.raises(ValueError, match="needs 4 registers"):
        compile_plan({"e": P["schneider-iem3000"].points["import_energy"]}, max_registers=3)


async def test_gateway_timeout_resets_connection_so_late_answer_is_not_matched():
    """Unit 1 answers late; unit 2's next answer must be unit 2's, on a fresh connection."""
    vals1 = dict(SDM_VALUES, active_power=1111.0)
    vals2 = dict(SDM_VALUES, active_power=2222.0)
    async with serve({1: (SDM, vals1), 2: (SDM, vals2)}) as (port, beh):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        r1 = reader(device(port, 1, timeout=0.3, points=["active_power"]), conn)
        r2 = reader(device(port, 2, timeout=0.3, points=["active_power"]), conn)
        beh[1].delay = 0.5  # the answer arrives 0.2 s after we gave up
        with pytest.raises(DeviceTimeout, match=r"unit 1: no answer within 0\.3 s"):
            await r1.read()
        assert conn._client is None  # connection dropped
        for _ in range(5):
            got = (await r2.read())[0].value
            assert got == 2222.0
            await asyncio.sleep(0.05)  # the late answer for unit 1 would land here
        beh[1].delay = 0
        assert (await r1.read())[0].value == 1111.0
        await conn.close()


async def test_gateway_serialises_units():
    async with serve({u: (SDM, dict(SDM_VALUES, active_power=float(u))) for u in (1, 2, 3)}) as (port, beh):
        for b in beh.values():
            b.delay = 0.05
        conn = ModbusConnection(host="127.0.0.1", port=port)
        readers = [reader(device(port, u, points=["active_power"]), conn) for u in (1, 2, 3)]
        t0 = time.monotonic()
        results = await asyncio.gather(*(r.read() for r in readers))
        took = time.monotonic() - t0
        await conn.close()
    assert [r[0].value for r in results] == [1.0, 2.0, 3.0]
    assert took >= 3 * 0.05  # one request on the bus at a time
    assert conn.requests == 3


async def test_illegal_address_is_permanent_and_dead_port_unreachable():
    async with serve({1: (P["pue-sim-meter"], {"active_power": 5.0})}) as (port, _):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        with pytest.raises(PermanentDeviceError, match="illegal data address"):
            await reader(device(port, profile="eastron-sdm630", points=["import_energy"]), conn).read()
        await conn.close()
    conn = ModbusConnection(host="127.0.0.1", port=port)  # server gone: connection refused
    with pytest.raises(DeviceUnreachable, match="cannot connect"):
        await reader(device(port, timeout=0.5), conn).read()


async def test_nan_reading_is_flagged_bad():
    async with serve({1: (SDM, dict(SDM_VALUES, active_power=float("nan")))}) as (port, _):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        vals = {v.point: v for v in await reader(device(port, points=["active_power", "import_energy"]), conn).read()}
        await conn.close()
    assert vals["active_power"].quality is Quality.BAD
    assert vals["import_energy"].quality is Quality.GOOD


async def test_dead_device_does_not_delay_live_device(caplog):
    """A silent device (its own host:port) times out and retries; the live one keeps its slots."""
    interval = 0.25
    async with serve({1: (SDM, SDM_VALUES)}) as (live_port, _), serve({1: (SDM, SDM_VALUES)}) as (dead_port, dead_beh):
        dead_beh[1].silent = True
        got: list = []
        runner = Runner(site="t", clock=WallClock(), emit=got.extend, backoff_base=0.05)
        live = device(live_port, id="live", points=["active_power"], timeout=0.2, interval=interval)
        dead = device(dead_port, id="dead", points=["active_power"], timeout=0.2, interval=interval)
        conns = [ModbusConnection(host="127.0.0.1", port=p) for p in (live_port, dead_port)]
        runner.add(reader(live, conns[0]), Schedule(interval, 0.2, 2), protocol="modbus")
        runner.add(reader(dead, conns[1]), Schedule(interval, 0.2, 2), protocol="modbus")
        caplog.set_level(logging.WARNING, logger="pue_monitor.collectors.runner")
        probe_late: dict[int, float] = {}
        probe = asyncio.create_task(_slot_probe(interval, probe_late))
        runner.start()
        await asyncio.sleep(2.6)
        await runner.stop(deadline=0.5)
        probe.cancel()
        for c in conns:
            await c.close()
    live_ts = [r.ts for r in got if r.device == "live"]
    assert all(r.device == "live" for r in got)
    assert len(live_ts) >= 9  # ~10 slots in 2.6 s
    # every poll on its aligned slot: no slot missed, none later than 50 ms beyond what the event
    # loop itself was late on that slot. A task of this test wakes on the same slots: on an idle
    # machine it is < 2 ms late, under a two-core CPU hog up to ~60 ms (the OS, not the runner);
    # a live poll waiting behind the dead device's 0.2 s timeout is late by >= 0.2 s either way.
    slots = [round(t / interval) for t in live_ts]
    assert slots == list(range(slots[0], slots[0] + len(slots)))
    late = {s: t - s * interval for t, s in zip(live_ts, slots, strict=True)}
    assert all(late[s] < 0.05 + probe_late[s] for s in slots), (late, probe_late)
    # a loop blocked for the dead device's timeout would make the probe as late as the live poll:
    # the loop itself never stalls that long, or this test could not tell the two apart
    assert max(probe_late[s] for s in slots) < 0.15, probe_late
    st = runner.stats["dead"]
    assert st.up is False and st.errors["timeout"] >= 3 and st.last_success is None
    assert runner.stats["live"].up is True and runner.stats["live"].failed_polls == 0
    downs = [r for r in caplog.records if "device dead down" in r.getMessage()]
    assert len(downs) == 1  # state changes are logged once, not every failure


async def _slot_probe(interval: float, late: dict[int, float]) -> None:
    """Wake on every wall-grid slot ``k * interval`` (as the runner does) and note how late the
    event loop let this task run: ``late[k]`` seconds."""
    k = math.floor(time.time() / interval) + 1
    while True:
        await asyncio.sleep(max(0.0, k * interval - time.time()))
        late[k] = time.time() - k * interval
        k += 1


class _Exploding:
    device_id = "buggy"

    def __init__(self) -> None:
        self.calls = 0

    async def read(self):
        self.calls += 1
        raise ZeroDivisionError("profile bug")

    async def close(self) -> None:
        return None


async def test_unexpected_error_is_counted_and_polling_goes_on(caplog):
    runner = Runner(site="t", clock=WallClock(), emit=lambda r: None)
    bad = _Exploding()
    runner.add(bad, Schedule(0.1, 0.05, 0), protocol="modbus")
    runner.start()
    await asyncio.sleep(0.55)
    await runner.stop()
    st = runner.stats["buggy"]
    assert bad.calls >= 3 and st.errors["internal"] == bad.calls and st.up is False
    assert "ZeroDivisionError" in st.last_error
    assert sum("unexpected error" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------- real register maps, not-available codes

MBMD = json.loads((Path(__file__).parent / "data" / "mbmd-register-maps.json").read_text())


def test_abb_profile_matches_mbmd_register_map():
    """Our ABB map against volkszaehler/mbmd's (written independently from ABB's manual)."""
    abb = P["abb-b-series"]
    for name, ref in MBMD["abb-b-series"].items():
        p = abb.points[name]
        assert (p.function, p.address, p.type, p.unit) == (ref["function"], ref["address"], ref["type"], ref["unit"])
        assert p.scale == pytest.approx(1 / ref["divisor"])
    # mbmd's "not available" byte patterns are our type-max codes
    assert abb.not_available_codes("active_power") == {int(MBMD["abb-not-available"]["signed"][:8], 16)}
    assert abb.not_available_codes("import_energy") == {int(MBMD["abb-not-available"]["unsigned"], 16)}
    assert {p.function for p in P["schneider-iem3000"].points.values()} == {MBMD["iem3000-function"]}


async def test_abb_not_available_codes_are_bad_never_a_value():
    """A B21 (single phase) answers FFFF.. / 7FFF.. for what it does not measure: BAD, NaN, counted."""
    abb = P["abb-b-series"]
    na = {"import_energy": [0xFFFF] * 4, "active_power": [0x7FFF, 0xFFFF], "voltage_l1": 230.1}
    ok = {"import_energy": 12_345.67, "active_power": -1234.56, "voltage_l1": 229.9}
    # one below the code is a value: i32 0x7FFFFFFE = 21,474,836.46 W
    edge = {"import_energy": [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], "active_power": [0x7FFF, 0xFFFE], "voltage_l1": 0.0}
    async with serve({1: (abb, na), 2: (abb, ok), 3: (abb, edge)}) as (port, beh):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        readers = {u: reader(device(port, u, profile="abb-b-series"), conn) for u in (1, 2, 3)}
        got = {u: {v.point: v for v in await r.read()} for u, r in readers.items()}
        await conn.close()
    bad = got[1]
    assert bad["import_energy"].quality is Quality.BAD and math.isnan(bad["import_energy"].value)
    assert bad["active_power"].quality is Quality.BAD and math.isnan(bad["active_power"].value)
    assert (bad["voltage_l1"].value, bad["voltage_l1"].quality) == (pytest.approx(230.1), Quality.GOOD)
    assert readers[1].unavailable == {"import_energy": 1, "active_power": 1}
    good = got[2]
    assert good["import_energy"].value == pytest.approx(12_345.67) and good["import_energy"].quality is Quality.GOOD
    assert good["active_power"].value == pytest.approx(-1234.56) and good["active_power"].quality is Quality.GOOD
    assert readers[2].unavailable == {}
    assert got[3]["active_power"].value == pytest.approx(21_474_836.46)
    assert got[3]["active_power"].quality is Quality.GOOD
    assert got[3]["import_energy"].value == pytest.approx((2**64 - 2) * 0.01)  # a value (implausible: ENGINE's)
    assert {fc for fc, _, _ in beh[1].requests} == {3}  # holding registers, as ABB and mbmd say


async def test_point_level_not_available_code(tmp_path):
    """A profile may declare its own codes per point (raw bit pattern, before scale and sign)."""
    prof = P["pue-sim-meter"].model_copy(
        update={
            "points": {
                **P["pue-sim-meter"].points,
                "voltage_l1": P["pue-sim-meter"].points["voltage_l1"].model_copy(update={"not_available": [0x8000]}),
            }
        }
    )
    async with serve({1: (prof, {"voltage_l1": [0x8000], "active_power": 10.0}), 2: (prof, {"voltage_l1": 231.5})}) as (
        port,
        _,
    ):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        r1 = ModbusReader(device(port, 1, profile="pue-sim-meter"), prof, list(prof.points), conn)
        r2 = ModbusReader(device(port, 2, profile="pue-sim-meter"), prof, list(prof.points), conn)
        v1 = {v.point: v for v in await r1.read()}
        v2 = {v.point: v for v in await r2.read()}
        await conn.close()
    assert v1["voltage_l1"].quality is Quality.BAD and math.isnan(v1["voltage_l1"].value)
    assert v1["active_power"].value == pytest.approx(10.0) and v1["active_power"].quality is Quality.GOOD
    assert v2["voltage_l1"].value == pytest.approx(231.5) and v2["voltage_l1"].quality is Quality.GOOD


async def test_wrong_function_code_fails():
    """Holding and input registers are apart on the test server, as on a real meter."""
    wrong = SDM.model_copy(
        update={"points": {n: p.model_copy(update={"function": "holding"}) for n, p in SDM.points.items()}}
    )
    async with serve({1: (SDM, SDM_VALUES)}) as (port, beh):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        with pytest.raises(PermanentDeviceError, match="illegal data address reading holding 52\\+2"):
            await ModbusReader(device(port), wrong, ["active_power"], conn).read()
        right = await reader(device(port, points=["active_power"]), conn).read()
        await conn.close()
    assert right[0].value == pytest.approx(27604.5) and right[0].quality is Quality.GOOD
    assert [fc for fc, _, _ in beh[1].requests] == [4]  # the FC03 request was refused before any action


async def test_iem3000_power_factor_four_quadrant():
    """Register 3084 holds the PF with its quadrant (-2..2); the reading is the PF (-1..1)."""
    iem = P["schneider-iem3000"]
    cases = {1: 0.92, 2: 1.2, 3: -1.25, 4: -0.85}  # register values
    expect = {1: 0.92, 2: 0.8, 3: -0.75, 4: -0.85}  # DOCA0005EN-04 p. 109
    async with serve({u: (iem, {"power_factor": v, "active_power": 12.5}) for u, v in cases.items()}) as (port, _):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        got = {}
        for u in cases:
            vals = await reader(device(port, u, profile="schneider-iem3000", points=["power_factor"]), conn).read()
            got[u] = vals[0]
        await conn.close()
    for u, pf in expect.items():
        assert got[u].value == pytest.approx(pf, abs=1e-6), u
        assert got[u].quality is Quality.GOOD


async def test_per_device_scale_and_unit_override():
    """A meter reporting in hundredths where its datasheet says tenths: the device's scale wins."""
    sim = P["pue-sim-meter"]
    async with serve({1: (sim, {"active_power": 1234.5, "import_energy": 5000.25})}) as (port, _):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        dev = device(
            port,
            profile="pue-sim-meter",
            overrides={"active_power": {"scale": 0.01}, "import_energy": {"scale": 0.00001, "unit": "MWh"}},
        )
        got = {v.point: v for v in await ModbusReader(dev, sim, list(sim.points), conn).read()}
        plain = {v.point: v for v in await reader(device(port, profile="pue-sim-meter"), conn).read()}
        await conn.close()
    assert plain["active_power"].value == pytest.approx(1234.5)  # raw 12345 at the profile's 0.1 W
    assert (got["active_power"].value, got["active_power"].unit) == (pytest.approx(123.45), "W")
    assert (got["import_energy"].value, got["import_energy"].unit) == (pytest.approx(5.00025), "MWh")  # = 5000.25 kWh
    assert (got["voltage_l1"].value, got["voltage_l1"].unit) == (plain["voltage_l1"].value, "V")


async def test_abb_not_available_poll_moves_no_energy():
    """Three polls of an ABB counter, the middle one "not available": the energy is the truth."""
    abb = P["abb-b-series"]
    polls = {1: {"import_energy": 100.00}, 2: {"import_energy": [0xFFFF] * 4}, 3: {"import_energy": 100.05}}
    async with serve({u: (abb, v) for u, v in polls.items()}) as (port, _):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        got = [
            (await reader(device(port, u, profile="abb-b-series", points=["import_energy"]), conn).read())[0]
            for u in polls
        ]
        await conn.close()
    site = site_from_dict(
        {
            "site": {"id": "t"},
            "devices": [
                {
                    "id": "abb",
                    "protocol": "modbus",
                    "host": "127.0.0.1",
                    "profile": "abb-b-series",
                    "meter": {"role": "facility_input", "energy": "import_energy"},
                },
                {
                    "id": "it",
                    "protocol": "modbus",
                    "host": "127.0.0.1",
                    "port": 1503,
                    "profile": "eastron-sdm630",
                    "meter": {"role": "it", "it_location": "pdu_output", "power": "active_power"},
                },
            ],
        },
        source="test.yaml",
    )
    spec = series_specs(site)[("abb", "import_energy")]
    t0 = 1_752_105_600.0
    # what the live pipeline takes: GOOD readings only (LivePipeline.ingest drops BAD and NaN)
    kept = [(t0 + 60.0 * k, v.value) for k, v in enumerate(got) if v.quality is Quality.GOOD]
    assert [v.quality for v in got] == [Quality.GOOD, Quality.BAD, Quality.GOOD]
    ie = interval_energy(
        [spec],
        np.zeros(len(kept), dtype=np.int64),
        np.array([t for t, _ in kept]),
        np.array([v for _, v in kept]),
        start=t0,
        step=120.0,
        n=1,
    )
    assert float(ie.energy[0, 0]) == pytest.approx(0.05, rel=1e-4)  # kWh, within 0.01 %
    assert ie.status[0, 0] == Status.MEASURED


async def test_each_device_on_a_shared_connection_keeps_its_own_timeout(caplog):
    """The request timeout is pymodbus' own, set per request: a gateway's units keep theirs.

    Both units answer after 0.5 s. Unit 1 (timeout 2 s) opens the connection and gets its value;
    unit 2 (timeout 0.2 s) times out on the same connection; unit 1 still waits out its answer.
    pymodbus' own ERROR line for the unanswered request is left out (the runner reports it).
    """
    caplog.set_level(logging.ERROR, logger="pymodbus.logging")
    vals = dict(SDM_VALUES, active_power=1234.5)
    async with serve({1: (SDM, vals), 2: (SDM, vals)}) as (port, beh):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        slow_ok = reader(device(port, 1, timeout=2.0, interval=5, points=["active_power"]), conn)
        impatient = reader(device(port, 2, timeout=0.2, points=["active_power"]), conn)
        beh[1].delay = beh[2].delay = 0.5
        assert (await slow_ok.read())[0].value == 1234.5
        with pytest.raises(DeviceTimeout, match=r"unit 2: no answer within 0\.2 s"):
            await impatient.read()
        assert (await slow_ok.read())[0].value == 1234.5
        await conn.close()
    assert [fc for fc, _, _ in beh[1].requests] == [4, 4] and len(beh[2].requests) == 1
    # (the in-process test server's own "Cancel send" for the answer nobody waits for may remain)
    assert not [r for r in caplog.records if "No response received" in r.getMessage()]


async def test_request_objects_are_built_once():
    """The plan's pymodbus requests are built with the reader and reused on every poll."""
    async with serve({1: (SDM, SDM_VALUES)}) as (port, beh):
        conn = ModbusConnection(host="127.0.0.1", port=port)
        r = reader(device(port), conn)
        pdus = [id(p.pdu) for p in r._prepared]
        first = {v.point: v.value for v in await r.read()}
        second = {v.point: v.value for v in await r.read()}
        await conn.close()
    assert first == second and set(first) == set(SDM.points)
    assert all(first[k] == pytest.approx(v, rel=1e-6) for k, v in SDM_VALUES.items())
    assert [id(p.pdu) for p in r._prepared] == pdus and len(pdus) == len(r.plan)
    # each poll puts every request of the plan on the wire, with a new transaction id
    assert [(a, c) for _, a, c in beh[1].requests] == 2 * [(q.address, q.count) for q in r.plan]
