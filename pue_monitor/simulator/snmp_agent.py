"""Real SNMP agents (pysnmp command responders) for the simulated site.

One pysnmp :class:`SnmpEngine` per agent, each on its own loopback UDP port, v2c
community ``public``:

``ups``
    UPS-MIB (RFC 1628) with 3 input and 3 output lines. Output power = IT + PDU losses,
    input true power = output + UPS loss (:func:`physics.loads`), split over the lines;
    load % against a third of the rated output per line; battery normal, on mains.
``rack-pdu-1``, ``rack-pdu-2``
    APC PowerNet rPDU2: rPDU2DeviceStatusPower (hundredths of kW), rPDU2DeviceStatusEnergy
    (tenths of kWh, the world's counter with its faults: a :meth:`reset_counter` restarts it
    and moves rPDU2DeviceStatusEnergyStartTime), one phase (current, voltage, power).

Values are computed live: a custom MIB instrumentation answers GET/GETNEXT/GETBULK from a
snapshot of the world taken when each request arrives (at ``clock.now()``), so every value
in one answer belongs to the same instant. A killed device
(:meth:`SimulatedDataCentre.kill_device`) gets no answer at all (a timeout for the manager).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import socket
from collections.abc import Callable
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp  # type: ignore[import-untyped]
from pysnmp.entity import config, engine  # type: ignore[import-untyped]
from pysnmp.entity.rfc3413 import cmdrsp, context  # type: ignore[import-untyped]
from pysnmp.error import PySnmpError  # type: ignore[import-untyped]
from pysnmp.proto import rfc1902, rfc1905  # type: ignore[import-untyped]
from pysnmp.smi.instrum import AbstractMibInstrumController  # type: ignore[import-untyped]

from pue_monitor.clock import Clock
from pue_monitor.simulator.physics import UTC_OFFSET_S
from pue_monitor.simulator.world import METERS, SimulatedDataCentre

Oid = tuple[int, ...]
Values = dict[Oid, Any]

COMMUNITY = "public"
UPS_SYS_OBJECT_ID = "1.3.6.1.2.1.33"  # upsMIB itself, as generic cards report it [u]
RPDU2_SYS_OBJECT_ID = "1.3.6.1.4.1.318.1.3.4.6"  # masterSwitchrPDU2 (PowerNet-MIB 4.2.6) [c]

_SYS = (1, 3, 6, 1, 2, 1, 1)
_UPS = (1, 3, 6, 1, 2, 1, 33, 1)
_RPDU2 = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26)
#: share of the total on each line / phase (slightly unbalanced, as real loads are) [u]
_LINE_SHARE = (0.34, 0.335, 0.325)
_VOLTAGE = 220  # V, China LV phase-to-neutral nominal [c]
_FREQUENCY_DHZ = 500  # 0.1 Hz units, 50 Hz grid [c]
#: UPS battery energy at the rated output for 10 minutes [u: a typical DC autonomy]
_BATTERY_KWH_FACTOR = 10.0 / 60.0
#: rack PDU power factor and voltage shown [u]
_PDU_PF = 0.98


def _oid(text: str) -> Oid:
    return tuple(int(x) for x in text.split("."))


def _start_time_text(t: float) -> str:
    """APC's "mm/dd/yyyy hh:mm:ss" in site local time (UTC+8)."""
    return dt.datetime.fromtimestamp(t + UTC_OFFSET_S, dt.UTC).strftime("%m/%d/%Y %H:%M:%S")


class _Drop(PySnmpError):  # type: ignore[misc]
    """Raised while handling a request for a dead device: pysnmp sends no answer."""


class LiveMib(AbstractMibInstrumController):  # type: ignore[misc]
    """A read-only MIB whose values come from ``snapshot()`` (refreshed per request)."""

    def __init__(self, snapshot: Callable[[], Values | None]) -> None:
        self._snapshot_fn = snapshot
        self._values: Values = {}
        self._keys: list[Oid] = []
        self.requests = 0

    def refresh(self) -> None:
        self.requests += 1
        values = self._snapshot_fn()
        if values is None:
            raise _Drop("simulated device is dead")
        self._values = values
        self._keys = sorted(values)

    def read_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        out = []
        for name, _ in var_binds:
            value = self._values.get(tuple(name))
            out.append((name, rfc1905.noSuchObject if value is None else value))
        return out

    def read_next_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        out = []
        for name, _ in var_binds:
            i = bisect.bisect_right(self._keys, tuple(name))
            if i < len(self._keys):
                key = self._keys[i]
                out.append((rfc1902.ObjectName(key), self._values[key]))
            else:
                out.append((name, rfc1905.endOfMibView))
        return out

    def write_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        raise _Drop("read-only agent")


def _refreshing(base: type) -> type:
    """A command responder that takes a fresh snapshot before each request."""

    class Responder(base):  # type: ignore[misc]
        def handle_management_operation(self, snmp_engine: Any, state_ref: Any, context_name: Any, pdu: Any) -> Any:
            self.snmpContext.get_mib_instrum(context_name).refresh()
            return super().handle_management_operation(snmp_engine, state_ref, context_name, pdu)

    Responder.__name__ = f"Live{base.__name__}"
    return Responder


_RESPONDERS = tuple(
    _refreshing(b) for b in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder, cmdrsp.BulkCommandResponder)
)


class SnmpAgents:
    """Async context manager running the site's SNMP agents on free loopback UDP ports.

    >>> async with SnmpAgents(world, clock) as agents:
    ...     agents.ports["rack-pdu-1"]   # ("127.0.0.1", 40123)
    """

    DEVICES: tuple[str, ...] = ("ups", "rack-pdu-1", "rack-pdu-2")

    def __init__(
        self, world: SimulatedDataCentre, clock: Clock, *, host: str = "127.0.0.1", first_port: int | None = None
    ) -> None:
        self.world = world
        self.clock = clock
        self.host = host
        self.first_port = first_port  # None: free UDP ports; else consecutive from here, in DEVICES order
        self.ports: dict[str, tuple[str, int]] = {}
        self.mibs: dict[str, LiveMib] = {}
        self._engines: list[Any] = []
        self._t0 = clock.now()

    # ----------------------------------------------------------------- values

    def _system(self, device: str, sys_object_id: str, descr: str, t: float) -> Values:
        return {
            (*_SYS, 1, 0): rfc1902.OctetString(descr),
            (*_SYS, 2, 0): rfc1902.ObjectIdentifier(sys_object_id),
            (*_SYS, 3, 0): rfc1902.TimeTicks(int(max(0.0, t - self._t0) * 100) % 2**32),
            (*_SYS, 5, 0): rfc1902.OctetString(device),
        }

    def ups_values(self, t: float) -> Values:
        """UPS-MIB values at ``t`` (the power flows of :func:`physics.loads`)."""
        ld = self.world.loads_at(t)
        p = self.world.params
        out_kw = float(ld["it"]) + float(ld["pdu_loss"])
        in_kw = out_kw + float(ld["ups_loss"])
        v: Values = self._system("ups", UPS_SYS_OBJECT_ID, "pue-monitor simulated UPS (UPS-MIB)", t)
        minutes = p.ups_rated_kw * _BATTERY_KWH_FACTOR / max(out_kw, 1e-3) * 60.0
        v.update(
            {
                (*_UPS, 2, 1, 0): rfc1902.Integer32(2),  # batteryNormal
                (*_UPS, 2, 2, 0): rfc1902.Integer32(0),  # seconds on battery
                (*_UPS, 2, 3, 0): rfc1902.Integer32(round(minutes)),
                (*_UPS, 2, 4, 0): rfc1902.Integer32(100),
                (*_UPS, 2, 5, 0): rfc1902.Integer32(5460),  # 546.0 V DC string [u]
                (*_UPS, 2, 7, 0): rfc1902.Integer32(24),
                (*_UPS, 3, 2, 0): rfc1902.Integer32(len(_LINE_SHARE)),
                (*_UPS, 4, 1, 0): rfc1902.Integer32(3),  # normal
                (*_UPS, 4, 2, 0): rfc1902.Integer32(_FREQUENCY_DHZ),
                (*_UPS, 4, 3, 0): rfc1902.Integer32(len(_LINE_SHARE)),
            }
        )
        line_rated_w = p.ups_rated_kw * 1000.0 / len(_LINE_SHARE)
        for line, share in enumerate(_LINE_SHARE, start=1):
            w_in, w_out = in_kw * share * 1000.0, out_kw * share * 1000.0
            v[(*_UPS, 3, 3, 1, 2, line)] = rfc1902.Integer32(_FREQUENCY_DHZ)
            v[(*_UPS, 3, 3, 1, 3, line)] = rfc1902.Integer32(_VOLTAGE)
            v[(*_UPS, 3, 3, 1, 4, line)] = rfc1902.Integer32(round(w_in / _VOLTAGE * 10))
            v[(*_UPS, 3, 3, 1, 5, line)] = rfc1902.Integer32(round(w_in))
            v[(*_UPS, 4, 4, 1, 2, line)] = rfc1902.Integer32(_VOLTAGE)
            v[(*_UPS, 4, 4, 1, 3, line)] = rfc1902.Integer32(round(w_out / _VOLTAGE * 10))
            v[(*_UPS, 4, 4, 1, 4, line)] = rfc1902.Integer32(round(w_out))
            v[(*_UPS, 4, 4, 1, 5, line)] = rfc1902.Integer32(round(w_out / line_rated_w * 100))
        return v

    def rpdu2_values(self, device: str, t: float) -> Values:
        """APC rPDU2 values of rack PDU ``device`` (a meter of the world) at ``t``."""
        w = self.world
        kw = w.shown_power_at(device, t)
        kwh = w.counter_at(device, t)
        since = w.counter_since(device, t)
        v: Values = self._system(device, RPDU2_SYS_OBJECT_ID, f"pue-monitor simulated APC rack PDU {device}", t)
        dev = (*_RPDU2, 4, 3, 1)
        phase = (*_RPDU2, 6, 3, 1)
        v.update(
            {
                (*dev, 1, 1): rfc1902.Integer32(1),
                (*dev, 5, 1): rfc1902.Integer32(round(kw * 100)),
                (*dev, 9, 1): rfc1902.Integer32(round(kwh * 10)),
                (*dev, 10, 1): rfc1902.OctetString(_start_time_text(since)),
                (*phase, 1, 1): rfc1902.Integer32(1),
                (*phase, 5, 1): rfc1902.Integer32(round(kw * 1000 / (_VOLTAGE * _PDU_PF) * 10)),
                (*phase, 6, 1): rfc1902.Integer32(_VOLTAGE),
                (*phase, 7, 1): rfc1902.Integer32(round(kw * 100)),
            }
        )
        return v

    def values(self, device: str, t: float) -> Values:
        return self.ups_values(t) if device == "ups" else self.rpdu2_values(device, t)

    def _snapshot(self, device: str) -> Values | None:
        t = self.clock.now()
        if self.world.is_dead(device, t):
            return None
        self.world.advance_to(t)
        return self.values(device, t)

    # ------------------------------------------------------------------ agents

    def _start_agent(self, device: str) -> int:
        snmp_engine = engine.SnmpEngine()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0 if self.first_port is None else self.first_port + len(self.ports)))
            port = int(sock.getsockname()[1])
            config.add_transport(snmp_engine, udp.DOMAIN_NAME, udp.UdpAsyncioTransport().open_server_mode(sock=sock))
        except BaseException:
            sock.close()
            raise
        self._engines.append(snmp_engine)
        config.add_v1_system(snmp_engine, "sim-area", COMMUNITY)
        ctx = context.SnmpContext(snmp_engine)
        mib = LiveMib(lambda: self._snapshot(device))
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", mib)
        for responder in _RESPONDERS:
            responder(snmp_engine, ctx)
        self.mibs[device] = mib
        return port

    async def __aenter__(self) -> SnmpAgents:
        try:
            for device in self.DEVICES:
                self.ports[device] = (self.host, self._start_agent(device))
            await asyncio.sleep(0.01)  # let the datagram endpoints open
        except BaseException:
            await self._stop()
            raise
        return self

    async def _stop(self) -> None:
        engines, self._engines = self._engines, []
        for e in engines:
            if e.transport_dispatcher is not None:
                e.close_dispatcher()
        await asyncio.sleep(0)  # let the cancelled timer tasks finish

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    # ------------------------------------------------------------------ config

    def devices_config(self, *, interval: float, timeout: float) -> list[dict[str, Any]]:
        """Site-config device entries (``devices:`` items) pointing at the running agents."""
        if not self.ports:
            raise RuntimeError("agents are not running (use `async with SnmpAgents(...)`)")
        out: list[dict[str, Any]] = []
        for device in self.DEVICES:
            host, port = self.ports[device]
            dev: dict[str, Any] = {
                "id": device,
                "protocol": "snmp",
                "host": host,
                "port": port,
                "version": "2c",
                "community": COMMUNITY,
                "profile": "ups-mib" if device == "ups" else "apc-rpdu2",
                "interval": interval,
                "timeout": timeout,
            }
            if device != "ups":
                m = METERS[device]
                dev["meter"] = {
                    "role": m.role,
                    "it_location": m.it_location,
                    "energy": "device_energy.1",
                    "power": "device_power.1",
                }
            out.append(dev)
        return out
