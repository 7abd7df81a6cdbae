"""Runner time handling: monotonic scheduling under wall-clock steps, and the time window.

The clock is a :class:`ManualClock` (wall and monotonic time moved by the test), the meter a
real pymodbus server on loopback whose energy register counts the true (monotonic) time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from modbus_server import free_port
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pue_monitor.clock import ManualClock, ScaledClock
from pue_monitor.collectors.base import PointValue
from pue_monitor.collectors.decode import encode
from pue_monitor.collectors.modbus import ModbusConnection, ModbusReader
from pue_monitor.collectors.runner import Runner, Schedule
from pue_monitor.config.loader import load_profiles
from pue_monitor.config.models import ModbusDevice, Role, SiteConfig, TimeWindow
from pue_monitor.pipeline.energy import SeriesSpec
from pue_monitor.pipeline.live import LivePipeline
from pue_monitor.pipeline.pue import PueInterval
from pue_monitor.readings import Reading

IEM = load_profiles()["schneider-iem3000"]
T0 = 1_751_328_000.0  # 2025-07-01 00:00 UTC
POWER_KW = 120.0
E0_WH = 5_000_000.0


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.001)


class CounterMeter:
    """An iEM3000 served by pymodbus whose import energy (int64 Wh) grows at POWER_KW of
    true time: the clock's monotonic reading, which a wall-clock step does not move."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.mono0 = clock.monotonic()
        spec = IEM.points["import_energy"]
        self.address = spec.address
        self.spec = spec

    def wh(self) -> float:
        return round(E0_WH + POWER_KW * 1000.0 * (self.clock.monotonic() - self.mono0) / 3600.0)

    async def action(self, fc, start, address, count, registers, set_values):  # pymodbus SimAction
        s = self.spec
        regs = encode(self.wh(), s.type, word_order=s.word_order, byte_order=s.byte_order, scale=s.scale)
        off = self.address - start
        registers[off : off + len(regs)] = regs
        return None

    async def __aenter__(self) -> int:
        self.port = free_port()
        dev = SimDevice(
            id=1, simdata=[SimData(self.address, values=[0] * 4, datatype=DataType.REGISTERS)], action=self.action
        )
        self.server = ModbusTcpServer([dev], address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)
        return self.port

    async def __aexit__(self, *exc: object) -> None:
        await self.server.shutdown()


def energy_spec() -> dict[tuple[str, str], SeriesSpec]:
    spec = SeriesSpec("meter", Role.FACILITY_INPUT, None, "counter", 1e-3, None, 30.0)
    return {("meter", "import_energy"): spec}


@pytest.mark.parametrize("step", [-120.0, 120.0, 0.0])
async def test_wall_clock_steps_create_no_energy(step: float, caplog) -> None:
    """Polls every 10 s of monotonic time feed a LivePipeline; the wall clock steps by
    ``step`` at minute 10 and back by ``-step`` at minute 25 of a 40-minute run. Exactly one
    poll per slot (no stall, no burst), and the energy booked equals the true energy."""
    caplog.set_level(logging.WARNING, logger="pue_monitor.collectors.runner")
    interval = 10.0
    clock = ManualClock(T0 - interval, monotonic=1000.0)
    got: list[Reading] = []
    runner = Runner(site="t", clock=clock, emit=got.extend)
    pipeline = LivePipeline(energy_spec())
    intervals: dict[float, PueInterval] = {}
    mono_at: list[float] = []  # monotonic time of each poll
    async with CounterMeter(clock) as port:
        dev = ModbusDevice(
            id="meter", protocol="modbus", host="127.0.0.1", port=port, profile="schneider-iem3000", interval=interval
        )
        conn = ModbusConnection(host="127.0.0.1", port=port, clock=clock)
        runner.add(ModbusReader(dev, IEM, ["import_energy"], conn), Schedule(interval, 2.0, 0), protocol="modbus")
        stats = runner.stats["meter"]
        runner.start()
        await wait_for(lambda: clock.sleepers() == 1)
        n_polls = 40 * 6 + 1  # 40 minutes, from wall T0 to T0 + 2400 s
        for k in range(1, n_polls + 1):
            if k == 10 * 6 + 1:
                clock.step_wall(step)
            if k == 25 * 6 + 1:
                clock.step_wall(-step)
            for _ in range(10):  # 1-second ticks: nothing is due in between
                clock.advance(1.0)
                await asyncio.sleep(0)
            await wait_for(lambda k=k: stats.polls == k and clock.sleepers() == 1)
            mono_at.append(clock.monotonic())
            pipeline.ingest(got)
            got.clear()
            for iv in pipeline.close(clock.now(), grace=0.0):
                intervals[iv.start] = iv
        await runner.stop()
        await conn.close()
    assert stats.polls == n_polls and stats.failed_polls == 0  # one poll per 10 s slot
    assert len(mono_at) == n_polls and mono_at[-1] - mono_at[0] == (n_polls - 1) * interval
    booked = sum(iv.e_facility or 0.0 for iv in intervals.values())
    # the first poll is at wall T0 (the grid's start); the last one at a minute boundary
    truth = POWER_KW * (mono_at[-1] - mono_at[0]) / 3600.0  # 80 kWh
    assert booked == pytest.approx(truth, rel=1e-4)
    assert max(intervals) + 60.0 == T0 + (n_polls - 1) * interval
    steps = [r.getMessage() for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert len(steps) == (2 if step else 0)


async def test_scaled_clock_step_keeps_polling_cadence() -> None:
    """With a clock that runs by itself, a wall step back (forward) of 120 s neither stalls
    nor bursts polling: polls stay one interval apart in monotonic time."""

    class Probe:
        device_id = "probe"

        def __init__(self) -> None:
            self.mono: list[float] = []

        async def read(self) -> list[PointValue]:
            self.mono.append(clock.monotonic())
            return [PointValue("v", 1.0, "")]

        async def close(self) -> None:
            return None

    clock = ScaledClock(start=T0, speed=100.0)  # a 10 s interval is 0.1 s of real time
    probe = Probe()
    runner = Runner(site="t", clock=clock, emit=lambda r: None)
    runner.add(probe, Schedule(10.0, 1.0, 0), protocol="x")
    runner.start()
    await wait_for(lambda: len(probe.mono) == 3)
    clock.step_wall(-120.0)
    await wait_for(lambda: len(probe.mono) == 6)
    clock.step_wall(+120.0)
    await wait_for(lambda: len(probe.mono) == 9)
    await runner.stop()
    gaps = [b - a for a, b in zip(probe.mono, probe.mono[1:], strict=False)]
    assert all(5.0 < g < 15.0 for g in gaps), gaps  # ~10 s each; a stall would be 130 s, a burst ~0


# ----------------------------------------------------------------------- time window


class Stamped:
    """A device whose next poll returns the given values (each with its own timestamp)."""

    def __init__(self, device_id: str = "dev") -> None:
        self.device_id = device_id
        self.values: list[PointValue] = []

    async def read(self) -> list[PointValue]:
        return self.values

    async def close(self) -> None:
        return None


async def test_time_window_rejects_and_counts_out_of_window_readings(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="pue_monitor.collectors.runner")
    clock = ManualClock(T0)
    got: list[Reading] = []
    runner = Runner(site="t", clock=clock, emit=got.extend, time_window=TimeWindow(ahead_s=600, behind_s=3600))
    dev = Stamped()
    sch = Schedule(60.0, 1.0, 0)
    runner.add(dev, sch, protocol="x")
    stats = runner.stats["dev"]
    stamps = [T0, T0 + 600, T0 - 3600, T0 + 601, T0 - 3601, T0 - 20 * 365 * 86400.0, T0 + 86400]
    dev.values = [PointValue(f"p{i}", float(i), "kWh", ts=t) for i, t in enumerate(stamps)]
    assert await runner.poll_once(dev, sch, stats)
    assert [r.ts for r in got] == [T0, T0 + 600, T0 - 3600]  # the edges are inside
    assert stats.out_of_window == 4 and stats.up is True
    logs = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(logs) == 1  # rate-limited: once a minute per device
    assert "device dev" in logs[0] and "2025-07-01T00:10:01Z" in logs[0] and "2025-07-01T00:00:00Z" in logs[0]
    # all rejected: nothing is emitted at all
    got.clear()
    dev.values = [PointValue("p0", 1.0, "kWh", ts=T0 + 10_000)]
    assert await runner.poll_once(dev, sch, stats)
    assert got == [] and stats.out_of_window == 5


async def test_out_of_window_readings_never_move_the_pipeline() -> None:
    """A counter reading stamped 20 years ago or a day ahead, between good ones, changes
    nothing: the grid starts at the first good reading and the minute holds the true 2 kWh."""
    clock = ManualClock(T0)
    pipeline = LivePipeline(energy_spec())
    runner = Runner(site="t", clock=clock, emit=pipeline.ingest)
    dev = Stamped("meter")
    sch = Schedule(60.0, 1.0, 0)
    runner.add(dev, sch, protocol="x")
    stats = runner.stats["meter"]
    polls = [(T0, T0, 1000.0), (T0, T0 - 20 * 365 * 86400.0, 0.0), (T0, T0 + 86400.0, 9e9), (T0 + 60, T0 + 60, 3000.0)]
    for now, ts, wh in polls:
        clock.t = now
        dev.values = [PointValue("import_energy", wh, "Wh", ts=ts)]
        assert await runner.poll_once(dev, sch, stats)
    out = pipeline.close(T0 + 60, grace=0.0)
    assert pipeline.start0 == T0
    assert [(iv.start, iv.e_facility) for iv in out] == [(T0, pytest.approx(2.0))]
    assert stats.out_of_window == 2


def test_time_window_config_is_validated() -> None:
    base = {"site": {"id": "s"}, "devices": [{"id": "x", "protocol": "modbus", "host": "h", "profile": "p"}]}
    cfg = SiteConfig.model_validate(base)
    assert (cfg.time_window.ahead_s, cfg.time_window.behind_s) == (600.0, 7 * 86400.0)
    cfg = SiteConfig.model_validate({**base, "time_window": {"ahead_s": 60, "behind_s": 3600}})
    assert (cfg.time_window.ahead_s, cfg.time_window.behind_s) == (60.0, 3600.0)
    for bad in ({"ahead_s": float("inf")}, {"behind_s": float("nan")}, {"ahead_s": -1}, {"behind_s": 8 * 86400}):
        with pytest.raises(ValueError, match="time_window"):
            SiteConfig.model_validate({**base, "time_window": bad})


def test_readme_time_window_example_validates() -> None:
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if b.startswith("time_window:"))
    base = {"site": {"id": "s"}, "devices": [{"id": "x", "protocol": "modbus", "host": "h", "profile": "p"}]}
    cfg = SiteConfig.model_validate({**base, **yaml.safe_load(block)})
    assert cfg.time_window == TimeWindow()  # the README states the defaults
