"""Simulated data centre: physics numbers, ground truth, faults, real Modbus servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from pue_monitor.clock import ManualClock, ScaledClock
from pue_monitor.collectors.decode import decode
from pue_monitor.config.loader import load_profiles
from pue_monitor.config.models import UNITS, SiteConfig
from pue_monitor.simulator import physics
from pue_monitor.simulator.physics import METER_IDS, SimParams
from pue_monitor.simulator.servers import SimulatorServers
from pue_monitor.simulator.world import SIM_METER_ROLLOVER_KWH, SimulatedDataCentre

CST = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai, no DST
P = SimParams()


def local(y: int, m: int, d: int, h: float = 0.0) -> float:
    return dt.datetime(y, m, d, tzinfo=CST).timestamp() + h * 3600.0


FixedClock = ManualClock  # the test moves it by hand


# ------------------------------------------------------------------------- physics


@pytest.mark.parametrize("load,target", [(0.10, 0.88), (0.25, 0.93), (0.50, 0.955), (0.75, 0.965)])
def test_ups_efficiency_curve_within_one_point(load: float, target: float) -> None:
    eta = float(physics.ups_efficiency(load, P))
    assert abs(eta - target) <= 0.01
    # and the fit is a genuine least-squares fit, much closer than the tolerance
    assert abs(eta - target) <= 0.003


def test_ups_loss_rises_with_load_over_operating_range() -> None:
    x = np.linspace(0.05, 0.95, 91)  # the fit peaks at ~96 % load (c2 < 0)
    loss = physics.ups_loss_kw(x * P.ups_rated_kw, P)
    assert np.all(np.diff(loss) > 0)
    assert float(loss[0]) > 0.01 * P.ups_rated_kw  # no-load loss ≈ 1 % of rating


def test_chiller_cop_falls_as_wet_bulb_rises() -> None:
    cop_design = float(physics.chiller_cop(P.wet_bulb_design_c, P))
    assert cop_design == pytest.approx(6.5)
    hot = float(physics.chiller_cop(P.wet_bulb_design_c + 2.0, P))
    assert hot == pytest.approx(6.5 * (1 - 2 * 0.03))
    cops = physics.chiller_cop(np.array([10.0, 15.0, 20.0, 24.0, 28.0]), P)
    assert np.all(np.diff(cops) < 0)
    assert float(physics.chiller_cop(-10.0, P)) == P.cop_max  # condenser-water floor
    assert float(physics.chiller_cop(P.wet_bulb_design_c, P, degradation=1.5)) == pytest.approx(5.0)


def test_free_cooling_fraction_thresholds() -> None:
    # full when wb + 4 + 2 <= 15, none when >= 21, linear between
    f = physics.free_cooling_fraction(np.array([-10.0, 9.0, 12.0, 15.0, 20.0]), P)
    assert f.tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])


def test_climate_matches_taiyuan_normals() -> None:
    def month_mean(y: int, m: int) -> float:
        t0 = local(y, m, 1)
        t1 = local(y + (m == 12), m % 12 + 1, 1)
        t = np.arange(t0, t1, 3600.0)
        return float(np.mean(physics.weather(t, P).dry_bulb_c))

    assert month_mean(2025, 1) == pytest.approx(-5.5, abs=0.3)
    assert month_mean(2025, 7) == pytest.approx(24.0, abs=0.3)
    t = np.arange(local(2025, 1, 1), local(2026, 1, 1), 3 * 3600.0)
    w = physics.weather(t, P)
    assert float(np.mean(w.dry_bulb_c)) == pytest.approx(10.5, abs=0.2)
    assert np.all(w.wet_bulb_c <= w.dry_bulb_c + 1e-9)
    assert float(np.min(w.pressure_hpa)) > 900 and float(np.max(w.pressure_hpa)) < 940
    # diurnal: afternoon ~12 K warmer than pre-dawn, RH the other way round
    day = physics.weather(np.array([local(2025, 7, 10, 3), local(2025, 7, 10, 15)]), P)
    assert day.dry_bulb_c[1] - day.dry_bulb_c[0] == pytest.approx(12.0, abs=0.2)
    assert day.rh_pct[0] > day.rh_pct[1] + 15
    # summers are humid, winters dry
    jan = physics.weather(np.arange(local(2025, 1, 1), local(2025, 2, 1), 3600.0), P)
    jul = physics.weather(np.arange(local(2025, 7, 1), local(2025, 8, 1), 3600.0), P)
    assert float(np.mean(jul.rh_pct)) > float(np.mean(jan.rh_pct)) + 15
    assert 18.0 < float(np.mean(jul.wet_bulb_c)) < 22.5


def test_it_load_daily_cycle_and_weekend() -> None:
    wed_peak = float(physics.it_load_kw(local(2025, 7, 9, 14), P))
    wed_low = float(physics.it_load_kw(local(2025, 7, 9, 2), P))
    sat_peak = float(physics.it_load_kw(local(2025, 7, 12, 14), P))
    assert wed_peak == pytest.approx(600 * 1.08)
    assert wed_low == pytest.approx(600 * 0.92)
    assert sat_peak == pytest.approx(600 * 1.08 * 0.95)
    # continuous across Friday midnight (1 h ramp)
    ts = np.arange(local(2025, 7, 11, 23.0), local(2025, 7, 12, 1.0), 5.0)
    assert np.max(np.abs(np.diff(physics.it_load_kw(ts, P)))) < 0.1


def test_loads_balance_and_split() -> None:
    t = np.array([local(2025, 1, 15, 3), local(2025, 4, 15, 12), local(2025, 7, 15, 15)])
    ld = physics.loads(t, P, noise=physics.Noise.from_seed(7))
    parts = ld["it"] + ld["pdu_loss"] + ld["ups_loss"] + ld["chiller-plant"] + ld["crah"] + ld["lighting"]
    np.testing.assert_allclose(ld["incomer-a"] + ld["incomer-b"], parts, rtol=1e-12)
    it_meters = [f"pdu-{i}" for i in range(1, 5)] + ["rack-pdu-1", "rack-pdu-2"]
    np.testing.assert_allclose(sum(ld[m] for m in it_meters), ld["it"], rtol=1e-12)
    np.testing.assert_allclose(ld["pdu-1"] / ld["it"], 0.255)
    np.testing.assert_allclose(ld["pdu-4"] / ld["it"], 0.17)
    np.testing.assert_allclose(ld["rack-pdu-1"] / ld["it"], 0.08)
    np.testing.assert_allclose(ld["rack-pdu-2"] / ld["it"], 0.07)
    np.testing.assert_allclose(ld["crah"] / ld["it"], 0.04)
    np.testing.assert_allclose(ld["pdu_loss"] / ld["it"], 1 / 0.985 - 1)
    assert np.all((ld["lighting"] > 10) & (ld["lighting"] < 22))  # ~1-2 % of 1 MW


def test_cold_january_night_is_fully_free_cooled() -> None:
    world = SimulatedDataCentre(start=local(2025, 1, 1), seed=1)
    night = world.loads_at(local(2025, 1, 15, 3))
    summer = SimulatedDataCentre(start=local(2025, 7, 1), seed=1).loads_at(local(2025, 7, 15, 15))
    assert night["free_cooling_fraction"] == 1.0
    assert night["chillers"] == 0.0
    assert summer["free_cooling_fraction"] == 0.0
    assert summer["chillers"] > 60.0
    # chiller plant power much lower even though the IT load is comparable
    assert night["chiller-plant"] < 0.5 * summer["chiller-plant"]
    assert night["chiller-plant"] / night["it"] < 0.10
    assert night["pue"] < summer["pue"] - 0.1


# --------------------------------------------------------------------------- world


@pytest.fixture(scope="module")
def january() -> SimulatedDataCentre:
    w = SimulatedDataCentre(start=local(2025, 1, 1), seed=11)
    w.advance_to(local(2025, 2, 1))
    return w


@pytest.fixture(scope="module")
def july() -> SimulatedDataCentre:
    w = SimulatedDataCentre(start=local(2025, 7, 1), seed=11)
    w.advance_to(local(2025, 8, 1))
    return w


def test_pue_by_season(january: SimulatedDataCentre, july: SimulatedDataCentre) -> None:
    pue_jan = january.true_pue(local(2025, 1, 1), local(2025, 2, 1))
    pue_jul = july.true_pue(local(2025, 7, 1), local(2025, 8, 1))
    assert 1.20 <= pue_jan <= 1.35
    assert 1.35 <= pue_jul <= 1.50
    assert pue_jul - pue_jan > 0.1
    # PUE is the energy ratio, not the mean of instantaneous ratios
    t = np.arange(local(2025, 7, 1), local(2025, 8, 1), 300.0) + 150.0
    ld = july.loads_at(t)
    assert pue_jul == pytest.approx(float(ld["facility"].sum() / ld["it"].sum()), rel=1e-4)
    # IT energy for the month ≈ 600 kW average x 744 h (minus weekends, ± noise)
    assert july.true_energy("it", local(2025, 7, 1), local(2025, 8, 1)) == pytest.approx(
        600 * 744 * (1 - 0.05 * 8 / 31), rel=0.01
    )


def test_true_energy_equals_integral_of_power(july: SimulatedDataCentre) -> None:
    t0 = local(2025, 7, 3, 9) + 1.7  # off the 5 s grid
    t1 = local(2025, 7, 3, 13) + 3.2
    ts = np.linspace(t0, t1, int((t1 - t0) / 0.25) + 1)  # fine grid, trapezoid rule
    ld = july.loads_at(ts)
    for meter in ("incomer-a", "pdu-3", "chiller-plant", "crah", "lighting"):
        fine = float(np.trapezoid(ld[meter], ts)) / 3600.0
        assert july.true_energy(meter, t0, t1) == pytest.approx(fine, rel=2e-7), meter
    fine_fac = float(np.trapezoid(ld["facility"], ts)) / 3600.0
    fine_it = float(np.trapezoid(ld["it"], ts)) / 3600.0
    assert july.true_energy("facility_input", t0, t1) == pytest.approx(fine_fac, rel=2e-7)
    assert july.true_energy("it", t0, t1) == pytest.approx(fine_it, rel=2e-7)
    assert july.true_pue(t0, t1) == pytest.approx(fine_fac / fine_it, rel=5e-7)


def test_energy_is_additive_balanced_and_linear_inside_a_step(july: SimulatedDataCentre) -> None:
    a, b, c = local(2025, 7, 5), local(2025, 7, 5, 7.3) + 0.4, local(2025, 7, 6, 2)
    for m in METER_IDS:
        assert july.true_energy(m, a, c) == pytest.approx(
            july.true_energy(m, a, b) + july.true_energy(m, b, c), rel=1e-12
        )
    # Σ incomers = every sub-meter + the unmetered UPS and PDU losses
    metered = sum(
        july.true_energy(m, a, c)
        for m in ("pdu-1", "pdu-2", "pdu-3", "pdu-4", "rack-pdu-1", "rack-pdu-2", "chiller-plant", "crah", "lighting")
    )
    losses = july.true_energy("ups_loss", a, c) + july.true_energy("pdu_loss", a, c)
    assert july.true_energy("facility_input", a, c) == pytest.approx(metered + losses, rel=1e-12)
    assert july.true_energy("cooling", a, c) == pytest.approx(
        july.true_energy("chiller-plant", a, c) + july.true_energy("crah", a, c), rel=1e-12
    )
    # inside one 5 s step the cumulative energy is linear in time
    s = july.start + 1000 * july.step
    e = [july.true_cumulative("pdu-1", s + x) for x in (0.0, 1.0, 2.5, 5.0)]
    assert e[2] - e[0] == pytest.approx((e[3] - e[0]) / 2, rel=1e-9)
    assert e[1] - e[0] == pytest.approx((e[3] - e[0]) / 5, rel=1e-9)
    # one step carries midpoint power x step
    p_mid = july.power_at(s + 2.5)["pdu-1"]
    assert e[3] - e[0] == pytest.approx(p_mid * 5.0 / 3600.0, rel=1e-12)


def test_a_simulated_day_is_fast() -> None:
    w = SimulatedDataCentre(start=local(2025, 3, 1), seed=2)
    t = time.perf_counter()
    w.advance_to(local(2025, 3, 2))
    assert time.perf_counter() - t < 2.0
    assert w.true_energy("it", local(2025, 3, 1), local(2025, 3, 2)) == pytest.approx(
        600 * 24 * 0.95, rel=0.03
    )  # 1 March 2025 is a Saturday


def test_initial_counters_deterministic_tens_of_mwh() -> None:
    a = SimulatedDataCentre(start=local(2025, 1, 1), seed=5)
    b = SimulatedDataCentre(start=local(2025, 1, 1), seed=5)
    c = SimulatedDataCentre(start=local(2025, 1, 1), seed=6)
    assert a.initial_counters == b.initial_counters
    assert a.initial_counters != c.initial_counters
    for m in METER_IDS:
        assert 10_000 <= a.initial_counters[m] <= 900_000
        assert a.counter_at(m, a.start) == a.initial_counters[m]
    t = local(2025, 1, 2, 5.5)
    assert a.counter_at("crah", t) == pytest.approx(
        a.initial_counters["crah"] + a.true_energy("crah", a.start, t), rel=1e-12
    )
    assert a.counter_at("crah", t) == b.counter_at("crah", t)


# -------------------------------------------------------------------------- faults


def test_reset_counter_restarts_but_truth_continues() -> None:
    t0 = local(2025, 4, 1)
    w = SimulatedDataCentre(start=t0, seed=3)
    ref = SimulatedDataCentre(start=t0, seed=3)
    at = t0 + 6 * 3600.0
    w.reset_counter("pdu-2", at)
    before = w.counter_at("pdu-2", at - 1.0)
    assert before > 10_000
    assert w.counter_at("pdu-2", at) == 0.0
    t1 = at + 3600.0
    assert w.counter_at("pdu-2", t1) == pytest.approx(w.true_energy("pdu-2", at, t1), rel=1e-12)
    assert 120 < w.counter_at("pdu-2", t1) < 180  # ~23 % of ~600 kW for an hour
    # ground truth untouched by the fault
    assert w.true_energy("pdu-2", t0, t1) == ref.true_energy("pdu-2", t0, t1)
    assert w.true_pue(t0, t1) == ref.true_pue(t0, t1)
    # other meters unaffected
    assert w.counter_at("pdu-1", t1) == ref.counter_at("pdu-1", t1)


def test_stick_meter_freezes_power_and_counter() -> None:
    t0 = local(2025, 4, 1)
    w = SimulatedDataCentre(start=t0, seed=3)
    since, until = t0 + 3600.0, t0 + 3 * 3600.0
    w.stick_meter("crah", since, until)
    c_since, p_since = w.counter_at("crah", since), w.shown_power_at("crah", since)
    for t in (since + 10, since + 3600, until - 1):
        assert w.counter_at("crah", t) == c_since
        assert w.shown_power_at("crah", t) == p_since
    assert w.power_at(until - 1)["crah"] != p_since  # the truth moves on
    # after the fault the counter shows the true total again (a jump)
    assert w.counter_at("crah", until + 5) == pytest.approx(
        w.initial_counters["crah"] + w.true_energy("crah", t0, until + 5), rel=1e-12
    )


def test_preset_counter_forces_rollover() -> None:
    t0 = local(2025, 7, 1)
    w = SimulatedDataCentre(start=t0, seed=3)
    at = t0 + 600.0
    w.preset_counter("chiller-plant", SIM_METER_ROLLOVER_KWH - 5.0, at=at)
    t = at + 3600.0  # ~150 kW plant → wraps after a couple of minutes
    e = w.true_energy("chiller-plant", at, t)
    assert e > 50
    assert w.counter_at("chiller-plant", t) == pytest.approx(e - 5.0, rel=1e-9)
    assert w.counter_at("chiller-plant", at + 1.0) > SIM_METER_ROLLOVER_KWH - 5.0
    # preset at "now" by default
    w.advance_to(t0 + 7200.0)
    w.preset_counter("lighting", 123.0)
    assert w.counter_at("lighting", t0 + 7200.0) == pytest.approx(123.0)


def test_degrade_chiller_makes_pue_drift_up() -> None:
    t0 = local(2025, 7, 1)
    w = SimulatedDataCentre(start=t0, seed=4)
    ref = SimulatedDataCentre(start=t0, seed=4)
    w.degrade_chiller(0.2, since=t0 + 86400.0)
    day = 86400.0
    assert w.true_pue(t0, t0 + day) == pytest.approx(ref.true_pue(t0, t0 + day), rel=1e-12)
    drift = [
        w.true_pue(t0 + k * day, t0 + (k + 1) * day) - ref.true_pue(t0 + k * day, t0 + (k + 1) * day) for k in (2, 5, 9)
    ]
    assert 0 < drift[0] < drift[1] < drift[2]
    assert drift[2] > 0.02  # COP 7 → ~5 after 9 days: chillers use ~35 % more
    assert w.loads_at(t0 + 10 * day)["cop"] == pytest.approx(ref.loads_at(t0 + 10 * day)["cop"] - 0.2 * 9, rel=1e-9)
    w.advance_to(t0 + 12 * day)
    with pytest.raises(ValueError):
        w.degrade_chiller(0.1, since=t0 + 11 * day)  # cannot rewrite the past


def test_kill_device_windows() -> None:
    w = SimulatedDataCentre(start=0.0, seed=1)
    w.kill_device("pdu-3", 100.0, 200.0)
    w.kill_device("weather", 150.0)
    assert not w.is_dead("pdu-3", 99.9)
    assert w.is_dead("pdu-3", 100.0) and w.is_dead("pdu-3", 199.0)
    assert not w.is_dead("pdu-3", 200.0)
    assert w.is_dead("weather", 1e9)
    w.revive_device("weather", 300.0)
    assert w.is_dead("weather", 299.0) and not w.is_dead("weather", 300.0)


# ------------------------------------------------------------------------- servers


async def _client(host: str, port: int, request_timeout: float = 1.0) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(host, port=port, timeout=request_timeout, retries=0)
    assert await client.connect()
    return client


async def test_sdm630_via_gateway_matches_world() -> None:
    t = local(2025, 7, 10, 14.5)
    world = SimulatedDataCentre(start=local(2025, 7, 10), seed=21)
    clock = FixedClock(t)
    async with SimulatorServers(world, clock) as servers:
        host, port, unit = servers.ports["pdu-2"]
        assert unit == 2
        assert {servers.ports[f"pdu-{i}"][1] for i in range(1, 5)} == {port}  # one gateway
        # every other device has a port of its own (the weather station now publishes over MQTT)
        others = ("incomer-a", "incomer-b", "chiller-plant", "crah", "lighting")
        assert len({servers.ports[d][1] for d in others} | {port}) == len(others) + 1
        client = await _client(host, port)
        try:
            # one block read across the SDM630 points (gaps read as zeros)
            rr = await client.read_input_registers(0x0000, count=0x4C, device_id=2)
            assert not rr.isError()
            regs = rr.registers
            power_w = decode(regs[0x34:0x36], "f32")
            energy = decode(regs[0x48:0x4A], "f32")
            expected_kw = world.power_at(t)["pdu-2"]
            assert power_w == pytest.approx(expected_kw * 1000.0, rel=1.2e-7)
            assert 120_000 < power_w < 180_000  # 23 % of ~650 kW
            assert energy == pytest.approx(world.counter_at("pdu-2", t), rel=1.2e-7)
            phases = sum(decode(regs[a : a + 2], "f32") for a in (0x0C, 0x0E, 0x10))
            assert phases == pytest.approx(power_w, rel=1e-6)
            assert decode(regs[0x46:0x48], "f32") == 50.0
            assert 215 < decode(regs[0:2], "f32") < 230
            assert regs[0x12:0x34] == [0] * (0x34 - 0x12)  # gap
            rr = await client.read_input_registers(0x0156, count=2, device_id=2)
            assert decode(rr.registers, "f32") == pytest.approx(energy, rel=1.2e-7)
            # other units on the bus are other meters
            rr = await client.read_input_registers(0x34, count=2, device_id=4)
            assert decode(rr.registers, "f32") == pytest.approx(world.power_at(t)["pdu-4"] * 1000, rel=1.2e-7)
            # the world advances with the clock: 10 simulated minutes later
            clock.t = t + 600.0
            rr = await client.read_input_registers(0x48, count=2, device_id=2)
            e2 = decode(rr.registers, "f32")
            assert e2 - energy == pytest.approx(world.true_energy("pdu-2", t, t + 600.0), abs=0.02)
            assert world.now == t + 600.0
            # wrong function for input registers → exception 2; unknown unit → 0x0B
            rr = await client.read_holding_registers(0x34, count=2, device_id=2)
            assert rr.isError() and rr.exception_code == 2
            rr = await client.read_input_registers(0x34, count=2, device_id=9)
            assert rr.isError() and rr.exception_code == 0x0B
        finally:
            client.close()


async def test_every_meter_decodes_to_the_world() -> None:
    t = local(2025, 1, 20, 10.25)
    world = SimulatedDataCentre(start=local(2025, 1, 20), seed=22)
    async with SimulatorServers(world, FixedClock(t)) as servers:
        cfg = SiteConfig.model_validate(servers.site_config(interval=10.0, timeout=2.0))
        assert cfg.site.id == "sim-taiyuan" and cfg.site.timezone == "Asia/Shanghai"
        profiles = load_profiles()
        roles = {}
        for dev in cfg.devices:
            assert (dev.host, dev.port, dev.unit_id) == servers.ports[dev.id]
            prof = profiles[dev.profile]
            client = await _client(dev.host, dev.port)
            try:
                got = {}
                for name in dev.points or []:
                    pt = prof.points[name]
                    read = client.read_holding_registers if pt.function == "holding" else client.read_input_registers
                    rr = await read(pt.address, count=pt.count, device_id=dev.unit_id)
                    assert not rr.isError(), (dev.id, name, rr)
                    got[name] = decode(
                        rr.registers,
                        pt.type,
                        word_order=pt.word_order,
                        byte_order=pt.byte_order,
                        scale=pt.scale,
                    )
            finally:
                client.close()
            assert dev.meter is not None  # every Modbus device is a meter (weather is on MQTT)
            roles[dev.id] = dev.meter.role.value
            (rate,), (counter,) = dev.meter.power_points, dev.meter.energy_points
            pw = prof.points[rate]
            pe = prof.points[counter]
            to_kw = UNITS[pw.unit][1]  # to kW (water: L/h, as the world's "power" of a water meter)
            to_kwh = UNITS[pe.unit][1]  # to kWh (water: L)
            p_true = world.power_at(t)[dev.id]
            e_true = world.counter_at(dev.id, t)
            step_p = abs(pw.scale) * to_kw  # integer resolution
            assert got[rate] * to_kw == pytest.approx(p_true, rel=2e-7, abs=step_p), dev.id
            assert got[counter] * to_kwh == pytest.approx(e_true, rel=2e-7, abs=pe.scale * to_kwh), dev.id
        assert roles == {
            "incomer-a": "facility_input",
            "incomer-b": "facility_input",
            "pdu-1": "it",
            "pdu-2": "it",
            "pdu-3": "it",
            "pdu-4": "it",
            "chiller-plant": "cooling",
            "crah": "cooling",
            "lighting": "lighting",
            "heat-reuse": "heat_reuse",
            "pv": "renewable",
        }
        pdu = next(d for d in cfg.devices if d.id == "pdu-1")
        assert pdu.meter is not None and pdu.meter.it_location is not None
        assert pdu.meter.it_location.category == 2
        plant = next(d for d in cfg.devices if d.id == "chiller-plant")
        assert plant.meter is not None and plant.meter.rollover == pytest.approx(SIM_METER_ROLLOVER_KWH)


async def test_killed_device_times_out_while_others_answer() -> None:
    t = local(2025, 7, 10, 9)
    world = SimulatedDataCentre(start=local(2025, 7, 10), seed=23)
    clock = FixedClock(t)
    async with SimulatorServers(world, clock) as servers:
        world.kill_device("pdu-3", t, t + 60.0)
        world.kill_device("crah", t)
        host, port, _ = servers.ports["pdu-3"]
        gw = await _client(host, port, request_timeout=0.3)
        crah = await _client(*servers.ports["crah"][:2], request_timeout=0.3)
        lighting = await _client(*servers.ports["lighting"][:2], request_timeout=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(ModbusIOException):
                await gw.read_input_registers(0x34, count=2, device_id=3)
            assert 0.25 < time.monotonic() - started < 1.5  # a timeout, not an error reply
            with pytest.raises(ModbusIOException):
                await crah.read_holding_registers(0x5B14, count=2, device_id=1)
            # another unit on the same gateway and connection still answers
            rr = await gw.read_input_registers(0x34, count=2, device_id=2)
            assert not rr.isError()
            assert decode(rr.registers, "f32") == pytest.approx(world.power_at(t)["pdu-2"] * 1000, rel=1.2e-7)
            rr = await lighting.read_holding_registers(0, count=4, device_id=1)
            assert not rr.isError()
            # after the outage the dead unit answers again, with the right value
            clock.t = t + 61.0
            rr = await gw.read_input_registers(0x34, count=2, device_id=3)
            assert not rr.isError()
            assert decode(rr.registers, "f32") == pytest.approx(world.power_at(t + 61.0)["pdu-3"] * 1000, rel=1.2e-7)
            rr = await gw.read_input_registers(0x34, count=2, device_id=1)
            assert not rr.isError()
        finally:
            for c in (gw, crah, lighting):
                c.close()
    await asyncio.sleep(0.05)
    leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert leftovers == []


async def test_scaled_clock_counters_track_true_energy() -> None:
    start = local(2025, 7, 10, 12)
    world = SimulatedDataCentre(start=start, seed=24)
    clock = ScaledClock(start=start, speed=3600.0)  # an hour per wall second
    async with SimulatorServers(world, clock) as servers:
        host, port, unit = servers.ports["incomer-a"]
        client = await _client(host, port)
        try:
            rr = await client.read_holding_registers(3203, count=4, device_id=unit)
            e0 = decode(rr.registers, "i64") / 1000.0
            t_a = world.now
            await asyncio.sleep(0.5)  # half a simulated hour
            rr = await client.read_holding_registers(3203, count=4, device_id=unit)
            e1 = decode(rr.registers, "i64") / 1000.0
            t_b = world.now
        finally:
            client.close()
    assert 1500 < t_b - t_a < 2500
    assert e1 - e0 == pytest.approx(world.true_energy("incomer-a", t_a, t_b), abs=0.002)
    assert e1 - e0 > 150  # ~400 kW for half an hour


def test_it_meter_shares_must_cover_all_it() -> None:
    assert sum(P.pdu_split) + sum(P.rack_pdu_split) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must sum to 1"):
        SimParams(rack_pdu_split=(0.08, 0.08))
