"""Real pymodbus TCP servers for the simulated site.

One :class:`pymodbus.server.ModbusTcpServer` per port on loopback: ``pdu-1..pdu-4``
share one port (an RS-485 bus behind a Modbus TCP gateway, unit ids 1-4); every other
device has its own port (unit id 1).

Registers use the pymodbus 3.16 simulator API (``SimDevice``/``SimData``): one
shared register block per unit spanning all of its profile's points, the gaps
filled with zero registers so block reads across them work. A per-device ``action``
hook runs on every request: it advances the world to ``clock.now()`` and encodes
fresh values (with :func:`pue_monitor.collectors.decode.encode`, per the profile's
type, word/byte order and scale) into the block in place before pymodbus builds
the response. FC03 and FC04 address the same shared block; the hook answers
exception 2 when a request's function does not match the points it covers (as a real
meter with separate holding/input maps would).

A killed device (:meth:`SimulatedDataCentre.kill_device`) gets no answer at all: the
hook raises ``NoSuchIdException`` and the servers run with
``ignore_missing_devices=True``, so pymodbus drops the request on the floor. Nothing
is left waiting in the server (no sleeping task that could answer late with a stale
transaction id), so the gateway keeps serving other units and the device answers
again as soon as it is revived. An unknown unit id on the gateway port gets exception
0x0B (gateway target failed to respond), as real gateways answer; on a direct port it
gets no answer.
"""

from __future__ import annotations

import contextlib
import functools
import math
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pue_monitor.clock import Clock
from pue_monitor.collectors.decode import encode
from pue_monitor.config.loader import load_profiles
from pue_monitor.config.models import UNITS, ModbusProfile, ProfilePoint
from pue_monitor.simulator.physics import economiser_mode
from pue_monitor.simulator.world import METERS, SimulatedDataCentre

SITE_ID = "sim-taiyuan"
SITE_TIMEZONE = "Asia/Shanghai"
GATEWAY = "pdu-gateway"


@dataclass(frozen=True)
class DeviceSpec:
    """A simulated Modbus device: the meter it shows (None: a sensor without a meter, the
    weather station and plant controller of :data:`PLANT_DEVICES`)."""

    id: str
    profile: str
    meter: str | None
    port_group: str  # devices in one group share a port (a gateway)
    unit_id: int = 1
    #: power factor shown (IT PSUs with PFC ≈ 0.97-0.99, VFD plant ≈ 0.9) [u]
    power_factor: float = 0.95
    #: phase-to-neutral voltage shown, V (China LV nominal 220/380 V) [c]
    voltage: float = 221.0


DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("incomer-a", "schneider-iem3000", "incomer-a", "incomer-a", power_factor=0.96, voltage=222.4),
    DeviceSpec("incomer-b", "schneider-iem3000", "incomer-b", "incomer-b", power_factor=0.96, voltage=222.1),
    DeviceSpec("pdu-1", "eastron-sdm630", "pdu-1", GATEWAY, 1, power_factor=0.98, voltage=220.6),
    DeviceSpec("pdu-2", "eastron-sdm630", "pdu-2", GATEWAY, 2, power_factor=0.98, voltage=220.9),
    DeviceSpec("pdu-3", "eastron-sdm630", "pdu-3", GATEWAY, 3, power_factor=0.97, voltage=220.4),
    DeviceSpec("pdu-4", "eastron-sdm630", "pdu-4", GATEWAY, 4, power_factor=0.98, voltage=221.2),
    DeviceSpec("chiller-plant", "pue-sim-meter", "chiller-plant", "chiller-plant", power_factor=0.90),
    DeviceSpec("crah", "abb-b-series", "crah", "crah", power_factor=0.94),
    DeviceSpec("lighting", "pue-sim-meter", "lighting", "lighting", power_factor=0.92),
    # companion KPI meters: district-heating export, rooftop PV (the towers' make-up water meter
    # publishes over MQTT: mqtt_publishers)
    DeviceSpec("heat-reuse", "pue-sim-heat-meter", "heat-reuse", "heat-reuse"),
    DeviceSpec("pv", "pue-sim-meter", "pv", "pv", power_factor=0.99, voltage=229.0),
)
#: the weather station and chiller-plant controller on Modbus (``SimulatorServers(plant=True)``),
#: for a site run on Modbus alone: the demo site's publish over MQTT (``mqtt_publishers``); the
#: profiles are the simulator's own (:data:`PLANT_PROFILES`, the site's ``profile_dirs``)
PLANT_DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("weather", "pue-sim-weather", None, "weather"),
    DeviceSpec("plant-controls", "pue-sim-plant-controls", None, "plant-controls"),
)
PLANT_PROFILES = Path(__file__).parent / "profiles"
#: (counter point, rate point) of a simulated meter by profile (default: import_energy, active_power)
_METER_POINTS = {
    "pue-sim-heat-meter": ("heat_energy", "heat_power"),
}

#: share of the total on each phase (slightly unbalanced, as real loads are) [u]
_PHASE_SHARE = (0.34, 0.335, 0.325)
_FREQUENCY_HZ = 50.0  # China grid [c]
_INT_BITS = {"u16": 16, "i16": 16, "u32": 32, "i32": 32, "u64": 64, "i64": 64}
_FC_FUNCTION = {3: "holding", 4: "input"}


def encode_point(point: ProfilePoint, value: float) -> list[int]:
    """Registers for ``value`` (already in the point's unit, after scale).

    Integer types: unsigned values wrap at the register size (a counter rolling over),
    signed values saturate.
    """
    if point.type in _INT_BITS:
        bits = _INT_BITS[point.type]
        raw = round(value / point.scale) if math.isfinite(value) else 0
        if point.type.startswith("u"):
            raw %= 2**bits
        else:
            raw = max(-(2 ** (bits - 1)), min(2 ** (bits - 1) - 1, raw))
        # hand encode() an exact multiple of the scale so its rounding gives back raw
        regs = encode(
            raw * point.scale,
            point.type,
            word_order=point.word_order,
            byte_order=point.byte_order,
            scale=point.scale,
        )
        return regs
    return encode(
        value,
        point.type,
        word_order=point.word_order,
        byte_order=point.byte_order,
        scale=point.scale,
    )


def _unit_factor(unit: str) -> float:
    """Multiply kW / kWh by this to get ``unit`` (W, kW, Wh, kWh, ...)."""
    return 1.0 / UNITS[unit][1]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SimulatorServers:
    """Async context manager running the site's Modbus TCP servers.

    >>> async with SimulatorServers(world, clock) as servers:
    ...     servers.ports["pdu-2"]   # ("127.0.0.1", 40123, 2)
    """

    #: ports in use: one per gateway/device group (consecutive from ``first_port`` when given)
    PORTS = len({d.port_group for d in DEVICES})

    def __init__(
        self,
        world: SimulatedDataCentre,
        clock: Clock,
        *,
        host: str = "127.0.0.1",
        first_port: int | None = None,
        plant: bool = False,
    ) -> None:
        self.world = world
        self.clock = clock
        self.host = host
        self._next_port = first_port  # None: free ports chosen by the kernel
        #: also serve :data:`PLANT_DEVICES` (weather and plant on Modbus; ``site_config`` adds a
        #: ``cooling:`` section reading them)
        self.plant = plant
        self.specs: tuple[DeviceSpec, ...] = DEVICES + (PLANT_DEVICES if plant else ())
        self.profiles: dict[str, ModbusProfile] = {
            k: p for k, p in load_profiles([PLANT_PROFILES] if plant else []).items() if isinstance(p, ModbusProfile)
        }
        self.devices: dict[str, DeviceSpec] = {d.id: d for d in self.specs}
        self.ports: dict[str, tuple[str, int, int]] = {}
        self._servers: list[ModbusTcpServer] = []
        self.requests = 0  # answered or dropped read requests, for tests/diagnostics

    # ----------------------------------------------------------------- values

    def point_values(self, device_id: str, t: float) -> dict[str, float]:
        """Every point of the device at ``t``, in the profile's units (before scale)."""
        spec = self.devices[device_id]
        prof = self.profiles[spec.profile]
        w = self.world
        out: dict[str, float] = {}
        if spec.meter is None:
            wx = w.weather_at(t)
            values = {
                "outdoor_temperature": wx.dry_bulb_c,
                "relative_humidity": wx.rh_pct,
                "pressure": wx.pressure_hpa,
                "wet_bulb_temperature": wx.wet_bulb_c,
            }
            if "economiser_mode" in prof.points or "chiller_power" in prof.points:
                ld = w.loads_at(t)  # as the MQTT plant controller reports them (mqtt_publishers.plant_status)
                values["economiser_mode"] = float(economiser_mode(float(ld["free_cooling_fraction"])))
                values["chiller_power"] = float(ld["chillers"])
            return {name: float(values.get(name, 0.0)) for name in prof.points}
        p_kw = w.shown_power_at(spec.meter, t)
        e_kwh = w.counter_at(spec.meter, t)
        v = spec.voltage
        i_total = p_kw * 1000.0 / (3.0 * v * spec.power_factor)
        for name, pt in prof.points.items():
            kind = UNITS.get(pt.unit, ("", 0.0))[0]
            if name in ("active_power", "heat_power") and kind == "power":
                val = p_kw * _unit_factor(pt.unit)
            elif name in ("import_energy", "total_energy", "heat_energy") and kind == "energy":
                val = e_kwh * _unit_factor(pt.unit)
            elif name == "export_energy":
                val = 0.0
            elif name.startswith("power_l") and kind == "power":
                val = p_kw * _PHASE_SHARE[int(name[-1]) - 1] * _unit_factor(pt.unit)
            elif name.startswith("current_l"):
                val = i_total * 3.0 * _PHASE_SHARE[int(name[-1]) - 1]
            elif name == "current_avg":
                val = i_total
            elif name.startswith("voltage"):
                val = v
            elif name == "power_factor":
                val = spec.power_factor
            elif name == "frequency":
                val = _FREQUENCY_HZ
            else:
                val = 0.0
            out[name] = float(val)
        return out

    # ----------------------------------------------------------------- modbus

    async def _action(
        self,
        device_id: str,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        t = self.clock.now()
        if self.world.is_dead(device_id, t):
            # no answer at all: the server drops requests for "missing" devices
            raise NoSuchIdException(f"simulated device {device_id} is dead")
        if set_values is not None:
            return ExcCodes.ILLEGAL_ADDRESS  # measurement registers are read-only
        wanted = _FC_FUNCTION.get(function_code)
        if wanted is None:
            return ExcCodes.ILLEGAL_FUNCTION
        prof = self.profiles[self.devices[device_id].profile]
        end = address + count
        hit = {n: p for n, p in prof.points.items() if p.address < end and p.address + p.count > address}
        if any(p.function != wanted for p in hit.values()):
            return ExcCodes.ILLEGAL_ADDRESS
        if not hit:
            return None
        self.world.advance_to(t)
        values = self.point_values(device_id, t)
        for name, pt in hit.items():
            off = pt.address - start_address
            current_registers[off : off + pt.count] = encode_point(pt, values[name])
        return None

    async def _unknown_unit(self, gateway: bool, *_: Any) -> ExcCodes | None:
        if gateway:
            return ExcCodes.GATEWAY_NO_RESPONSE
        raise NoSuchIdException("no such unit")

    def _sim_device(self, spec: DeviceSpec) -> SimDevice:
        prof = self.profiles[spec.profile]
        lo = min(p.address for p in prof.points.values())
        hi = max(p.address + p.count for p in prof.points.values())
        block = SimData(address=lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)
        return SimDevice(id=spec.unit_id, simdata=[block], action=functools.partial(self._action, spec.id))

    async def __aenter__(self) -> SimulatorServers:
        groups: dict[str, list[DeviceSpec]] = {}
        for spec in self.specs:
            groups.setdefault(spec.port_group, []).append(spec)
        try:
            for group, specs in groups.items():
                sim = [self._sim_device(s) for s in specs]
                sim.append(
                    SimDevice(
                        id=0,
                        # covers every address, so the hook (not the range check) decides
                        simdata=[SimData(address=0, count=65535, values=0, datatype=DataType.REGISTERS)],
                        action=functools.partial(self._unknown_unit, group == GATEWAY),
                    )
                )
                port = await self._start(sim)
                for s in specs:
                    self.ports[s.id] = (self.host, port, s.unit_id)
        except BaseException:
            await self._stop()
            raise
        return self

    async def _start(self, sim: list[SimDevice]) -> int:
        last: Exception | None = None
        for _ in range(20 if self._next_port is None else 1):
            port = _free_port(self.host) if self._next_port is None else self._next_port
            server = ModbusTcpServer(sim, address=(self.host, port), ignore_missing_devices=True)
            try:
                await server.serve_forever(background=True)
            except RuntimeError as exc:  # port taken between probe and bind: try another
                last = exc
                await server.shutdown()  # type: ignore[no-untyped-call]
                continue
            if self._next_port is not None:
                self._next_port += 1
            self._servers.append(server)
            return port
        raise RuntimeError(
            f"could not bind a Modbus server on {self.host}{f':{port}' if self._next_port else ''}: {last}"
        )

    async def _stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            with contextlib.suppress(Exception):
                await server.shutdown()  # type: ignore[no-untyped-call]

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    # ------------------------------------------------------------------ config

    def site_config(self, *, interval: float, timeout: float) -> dict[str, Any]:
        """Site configuration (validates as :class:`~pue_monitor.config.models.SiteConfig`)
        pointing a collector at the running servers."""
        if not self.ports:
            raise RuntimeError("servers are not running (use `async with SimulatorServers(...)`)")
        devices = []
        for spec in self.specs:
            host, port, unit = self.ports[spec.id]
            prof = self.profiles[spec.profile]
            dev: dict[str, Any] = {
                "id": spec.id,
                "protocol": "modbus",
                "host": host,
                "port": port,
                "unit_id": unit,
                "profile": spec.profile,
                "interval": interval,
                "timeout": timeout,
                "points": list(prof.points),
            }
            if spec.meter is not None:
                m = METERS[spec.meter]
                counter, rate = _METER_POINTS.get(spec.profile, ("import_energy", "active_power"))
                meter: dict[str, Any] = {"role": m.role, "energy": counter, "power": rate}
                if m.it_location:
                    meter["it_location"] = m.it_location
                if m.rollover_kwh is not None:
                    # in the point's unit after scale (kWh for pue-sim-meter)
                    meter["rollover"] = m.rollover_kwh * _unit_factor(prof.points[counter].unit)
                dev["meter"] = meter
            devices.append(dev)
        cfg: dict[str, Any] = {
            "site": {
                "id": SITE_ID,
                "name": "Simulated data centre (Taiyuan-like climate)",
                "timezone": SITE_TIMEZONE,
            },
            "devices": devices,
        }
        if self.plant:  # the free-cooling model on the Modbus weather station and plant controller
            from pue_monitor.simulator.mqtt_publishers import SensorPublishers

            cfg["profile_dirs"] = [str(PLANT_PROFILES)]
            cfg["cooling"] = SensorPublishers.cooling_config(self.world.params)
        return cfg
