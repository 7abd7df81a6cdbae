"""Modbus TCP collector against real pymodbus servers on loopback."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from modbus_server import serve

from pue_monitor.clock import WallClock
from pue_monitor.collectors.modbus import ModbusConnection, ModbusReader
from pue_monitor.collectors.plan import compile_plan
from pue_monitor.collectors.runner import Runner, Schedule
from pue_monitor.config.loader import load_profiles
from pue_monitor.config.models import ModbusDevice
from pue_monitor.errors import DeviceTimeout, DeviceUnreachable, PermanentDeviceError
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
        runner.start()
        await asyncio.sleep(2.6)
        await runner.stop(deadline=0.5)
        for c in conns:
            await c.close()
    live_ts = [r.ts for r in got if r.device == "live"]
    assert all(r.device == "live" for r in got)
    assert len(live_ts) >= 9  # ~10 slots in 2.6 s
    # every poll on its aligned slot: no slot missed, none late by more than 50 ms
    slots = [round(t / interval) for t in live_ts]
    assert slots == list(range(slots[0], slots[0] + len(slots)))
    assert max(t - s * interval for t, s in zip(live_ts, slots, strict=True)) < 0.05
    st = runner.stats["dead"]
    assert st.up is False and st.errors["timeout"] >= 3 and st.last_success is None
    assert runner.stats["live"].up is True and runner.stats["live"].failed_polls == 0
    downs = [r for r in caplog.records if "device dead down" in r.getMessage()]
    assert len(downs) == 1  # state changes are logged once, not every failure


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
