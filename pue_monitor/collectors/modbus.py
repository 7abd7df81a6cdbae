"""Modbus TCP collector (pymodbus async client).

One :class:`ModbusConnection` per host:port. Several unit ids behind one Modbus TCP
gateway (an RS-485 bus) share it and are served strictly one request at a time.
After a timeout the connection is closed, so a late answer can never be matched to a
later request (the stale-response failure other collectors have).
Timeouts are wall seconds, even on a fast simulated clock (see :mod:`pue_monitor.collectors.runner`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from pue_monitor.clock import Clock, WallClock
from pue_monitor.collectors.base import Capture, PointValue, RawValue
from pue_monitor.collectors.decode import decode, pf_four_quadrant, raw_bits
from pue_monitor.collectors.plan import PlannedPoint, ReadRequest, compile_plan
from pue_monitor.config.models import ModbusDevice, ModbusProfile
from pue_monitor.errors import (
    DecodeError,
    DeviceTimeout,
    DeviceUnreachable,
    PermanentDeviceError,
)
from pue_monitor.readings import Quality

log = logging.getLogger(__name__)

#: Modbus exception codes (Modbus Application Protocol v1.1b3, section 7)
_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
#: codes a retry may cure
_TRANSIENT_CODES = {5, 6, 10, 11}


class ModbusConnection:
    """One TCP connection to a Modbus device or gateway, shared by its unit ids.

    Timeouts and pauses are in clock seconds (so a simulated site at 60x keeps its
    meaning); reads return the clock time at which the request went on the wire.
    """

    def __init__(self, *, host: str, port: int, clock: Clock | None = None) -> None:
        self.host = host
        self.port = port
        self.clock: Clock = clock or WallClock()
        self.lock = asyncio.Lock()  # one request on the wire at a time (one bus)
        self._client: AsyncModbusTcpClient | None = None
        self.requests = 0  # sent on the wire, for tests and benchmarks

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def reset(self) -> None:
        """Drop the connection; the next request opens a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _ensure(self, timeout: float) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.reset()
        # pymodbus' own reconnect and retries are off: the runner owns both.
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=timeout, retries=0, reconnect_delay=0)
        try:
            async with asyncio.timeout(timeout):
                ok = await client.connect()
        except TimeoutError:
            ok = False
        if not ok:
            client.close()
            raise DeviceUnreachable(f"cannot connect to {self.name}")
        self._client = client
        return client

    async def read(
        self, *, function: str, address: int, count: int, unit: int, timeout: float, pause: float = 0.0
    ) -> tuple[float, list[int]]:
        """Read ``count`` registers; returns (clock time sent, registers)."""
        async with self.lock:
            try:
                return await self._read_locked(function, address, count, unit, timeout)
            finally:
                if pause:
                    await self.clock.sleep(pause)

    async def _read_locked(
        self, function: str, address: int, count: int, unit: int, timeout: float
    ) -> tuple[float, list[int]]:
        shown = timeout  # wall seconds, whatever the clock's speed (see collectors.runner)
        client = await self._ensure(timeout)
        sent = self.clock.now()
        call = client.read_holding_registers if function == "holding" else client.read_input_registers
        self.requests += 1
        try:
            async with asyncio.timeout(timeout):
                rr = await call(address, count=count, device_id=unit)
        except TimeoutError:
            self.reset()
            raise DeviceTimeout(f"{self.name} unit {unit}: no answer within {shown:g} s") from None
        except (ConnectionException, ModbusIOException) as exc:
            self.reset()
            # pymodbus reports its own no-answer timeout as a ModbusIOException
            if "timeout" in str(exc).lower() or "no response" in str(exc).lower():
                raise DeviceTimeout(f"{self.name} unit {unit}: no answer within {shown:g} s") from None
            raise DeviceUnreachable(f"{self.name} unit {unit}: {exc}") from None
        except ModbusException as exc:
            self.reset()
            raise DeviceUnreachable(f"{self.name} unit {unit}: {exc}") from None
        if rr.isError():
            code = getattr(rr, "exception_code", 0)
            what = _EXCEPTION_NAMES.get(code, f"exception code {code}")
            msg = f"{self.name} unit {unit}: {what} reading {function} {address}+{count}"
            if code in _TRANSIENT_CODES:
                raise DeviceUnreachable(msg)
            raise PermanentDeviceError(msg)
        regs = list(rr.registers)
        if len(regs) != count:
            raise DecodeError(f"{self.name} unit {unit}: asked {count} registers, got {len(regs)}")
        return sent, regs

    async def close(self) -> None:
        self.reset()


class ModbusReader:
    """Reads one device (one unit id) through a shared :class:`ModbusConnection`."""

    def __init__(
        self, device: ModbusDevice, profile: ModbusProfile, points: list[str], connection: ModbusConnection
    ) -> None:
        self.device = device
        self.device_id = device.id
        self.connection = connection
        cap = device.max_registers_per_request or profile.max_registers_per_request
        specs = {}
        for p in points:
            spec = profile.points[p]
            ov = device.overrides.get(p)
            if ov is not None:  # the device reports against its datasheet: its own scale/unit
                update = {k: v for k, v in (("scale", ov.scale), ("unit", ov.unit)) if v is not None}
                spec = spec.model_copy(update=update)
            specs[p] = spec
        #: raw bit patterns meaning "not available", per point (profile-level and point-level)
        self.not_available = {p: profile.not_available_codes(p) for p in points}
        #: readings made BAD by a "not available" code, per point (tests, metrics)
        self.unavailable: Counter[str] = Counter()
        #: None, or filled with each point's registers while reading (`pue read`); with a
        #: capture a request the device refuses (exception code) marks its points and the
        #: read goes on with the next request, so one wrong address does not hide the rest
        self.capture: Capture | None = None
        self.plan: tuple[ReadRequest, ...] = compile_plan(
            specs,
            max_registers=cap,
            one_point_per_request=device.one_register_per_request,
        )

    async def read(self) -> list[PointValue]:
        out: list[PointValue] = []
        d = self.device
        for req in self.plan:
            try:
                sent, regs = await self.connection.read(
                    function=req.function,
                    address=req.address,
                    count=req.count,
                    unit=d.unit_id,
                    timeout=d.timeout,
                    pause=d.request_pause,
                )
            except PermanentDeviceError as exc:
                if self.capture is None:
                    raise
                for pp in req.points:
                    self.capture[pp.name] = RawValue(_where(req.function, pp), "", str(exc))
                continue
            for pp in req.points:
                out.append(self._value(pp, regs[pp.offset : pp.offset + pp.spec.count], sent))
        return out

    def _value(self, pp: PlannedPoint, regs: list[int], sent: float) -> PointValue:
        """One point: BAD (value NaN) for a "not available" code or a non-finite value."""
        s = pp.spec
        codes = self.not_available.get(pp.name)
        bits = raw_bits(regs, word_order=s.word_order, byte_order=s.byte_order) if codes else None
        na = codes is not None and bits in codes
        if self.capture is not None:
            words = " ".join(f"0x{r:04X}" for r in regs)
            self.capture[pp.name] = RawValue(_where(s.function, pp), words, "not available" if na else "")
        if na:
            self.unavailable[pp.name] += 1
            return PointValue(pp.name, math.nan, s.unit, Quality.BAD, sent)
        value = decode(regs, s.type, word_order=s.word_order, byte_order=s.byte_order)
        if s.encoding == "pf-four-quadrant":
            value = pf_four_quadrant(value)
        value *= s.scale
        quality = Quality.GOOD if math.isfinite(value) else Quality.BAD
        return PointValue(pp.name, value, s.unit, quality, sent)

    async def close(self) -> None:
        # the connection is shared; the runner closes connections itself
        return None


def _where(function: str, pp: PlannedPoint) -> str:
    """``holding 3059+2``: the point's registers as a Modbus tool names them."""
    return f"{function} {pp.spec.address}+{pp.spec.count}"
