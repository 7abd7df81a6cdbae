"""Modbus TCP collector (pymodbus async client).

One :class:`ModbusConnection` per host:port. Several unit ids behind one Modbus TCP
gateway (an RS-485 bus) share it and are served strictly one request at a time.
After a timeout the connection is closed, so a late answer can never be matched to a
later request (the stale-response failure other collectors have).
Timeouts are wall seconds, even on a fast simulated clock (see :mod:`pue_monitor.collectors.runner`).

The request path is kept lean (issue 13; ``benchmarks/bench_modbus.py`` measures it beside
collectd): each request of a device's plan is a pymodbus request PDU built once with the reader
and reused (pymodbus frames it and gives it a new transaction id each time), the request's
timeout is pymodbus' own timer (set per request, so the units behind one gateway keep their
own), and each answer's registers are decoded at once by the request's
:class:`~pue_monitor.collectors.decode.BlockDecoder`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from dataclasses import dataclass
from math import isfinite

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU, ReadHoldingRegistersRequest
from pymodbus.pdu.register_message import ReadInputRegistersRequest

from pue_monitor.clock import Clock, WallClock
from pue_monitor.collectors.base import Capture, PointValue, RawValue
from pue_monitor.collectors.decode import BlockDecoder, Order, pf_four_quadrant, raw_bits
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


class _UnansweredFilter(logging.Filter):
    """Drops pymodbus' ERROR line (with its last frames) for a request left unanswered.

    The collector turns it into :class:`~pue_monitor.errors.DeviceTimeout`, which the runner
    reports once when the device goes down; pymodbus' own line would repeat it on every poll.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No response received after")


logging.getLogger("pymodbus.logging").addFilter(_UnansweredFilter())

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
_GOOD, _BAD = Quality.GOOD, Quality.BAD


def request_pdu(function: str, address: int, count: int, unit: int) -> ModbusPDU:
    """pymodbus' read request (FC03 holding, FC04 input) for ``count`` registers of ``unit``."""
    kind = ReadHoldingRegistersRequest if function == "holding" else ReadInputRegistersRequest
    return kind(address=address, count=count, dev_id=unit)


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
        #: request PDUs by (function, address, count, unit), built once and reused: pymodbus
        #: only sets a new transaction id on each, and the lock sends one at a time
        self._pdus: dict[tuple[str, int, int, int], ModbusPDU] = {}

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
        key = (function, address, count, unit)
        pdu = self._pdus.get(key)
        if pdu is None:
            pdu = self._pdus[key] = request_pdu(function, address, count, unit)
        return await self.request(pdu, timeout, pause)

    async def request(self, pdu: ModbusPDU, timeout: float, pause: float = 0.0) -> tuple[float, list[int]]:
        """Send a read request built by :func:`request_pdu` (and reused: pymodbus only gives it a new
        transaction id); returns (clock time sent, registers). One coroutine, the hot path."""
        async with self.lock:
            try:
                client = self._client
                if client is None or not client.connected:
                    client = await self._ensure(timeout)
                # the request's timeout is pymodbus' own (one timer per request, not two); the
                # devices sharing a connection may each have their own
                params = client.ctx.comm_params
                if params.timeout_connect != timeout:
                    params.timeout_connect = timeout
                sent = self.clock.now()
                self.requests += 1
                try:
                    rr = await client.execute(False, pdu)
                except (ConnectionException, ModbusIOException, TimeoutError) as exc:
                    self.reset()
                    # pymodbus reports its own no-answer timeout as a ModbusIOException
                    text = str(exc).lower()
                    if isinstance(exc, TimeoutError) or "timeout" in text or "no response" in text:
                        # wall seconds, whatever the clock's speed (see collectors.runner)
                        raise DeviceTimeout(f"{self.name} unit {pdu.dev_id}: no answer within {timeout:g} s") from None
                    raise DeviceUnreachable(f"{self.name} unit {pdu.dev_id}: {exc}") from None
                except ModbusException as exc:
                    self.reset()
                    raise DeviceUnreachable(f"{self.name} unit {pdu.dev_id}: {exc}") from None
                if rr.isError():
                    code = getattr(rr, "exception_code", 0)
                    what = _EXCEPTION_NAMES.get(code, f"exception code {code}")
                    function = "holding" if pdu.function_code == 3 else "input"
                    msg = f"{self.name} unit {pdu.dev_id}: {what} reading {function} {pdu.address}+{pdu.count}"
                    if code in _TRANSIENT_CODES:
                        raise DeviceUnreachable(msg)
                    raise PermanentDeviceError(msg)
                regs: list[int] = rr.registers  # a new list for every response
                if len(regs) != pdu.count:
                    raise DecodeError(f"{self.name} unit {pdu.dev_id}: asked {pdu.count} registers, got {len(regs)}")
                return sent, regs
            finally:
                if pause:
                    await self.clock.sleep(pause)

    async def close(self) -> None:
        self.reset()


@dataclass(frozen=True, slots=True)
class _Out:
    """How one planned point becomes a value (everything looked up once, at plan time)."""

    name: str
    unit: str
    scale: float
    pf: bool  # Schneider four-quadrant power factor
    #: raw bit patterns meaning "not available" (empty: none)
    codes: frozenset[int]
    offset: int
    count: int
    word_order: Order
    byte_order: Order
    where: str  # ``holding 3059+2``


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One request of the plan with its block decoder and its points' outputs."""

    request: ReadRequest
    pdu: ModbusPDU  # pymodbus' request, built once
    decode: BlockDecoder
    outs: tuple[_Out, ...]
    #: no point has "not available" codes: values go straight from the decoder
    plain: bool


class ModbusReader:
    """Reads one device (one unit id) through a shared :class:`ModbusConnection`.

    Each request's registers are decoded at once (:class:`~pue_monitor.collectors.decode.BlockDecoder`,
    compiled with the plan); per value only the scale, the quality and its :class:`PointValue` remain.
    """

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
        self._prepared = tuple(self._prepare(req) for req in self.plan)

    def _prepare(self, req: ReadRequest) -> _Prepared:
        outs = tuple(
            _Out(
                name=pp.name,
                unit=pp.spec.unit,
                scale=pp.spec.scale,
                pf=pp.spec.encoding == "pf-four-quadrant",
                codes=self.not_available.get(pp.name) or frozenset(),
                offset=pp.offset,
                count=pp.spec.count,
                word_order=pp.spec.word_order,
                byte_order=pp.spec.byte_order,
                where=_where(req.function, pp),
            )
            for pp in req.points
        )
        fields = [(pp.offset, pp.spec.type, pp.spec.word_order, pp.spec.byte_order) for pp in req.points]
        pdu = request_pdu(req.function, req.address, req.count, self.device.unit_id)
        return _Prepared(req, pdu, BlockDecoder(req.count, fields), outs, not any(o.codes for o in outs))

    async def read(self) -> list[PointValue]:
        out: list[PointValue] = []
        d = self.device
        conn = self.connection
        for prep in self._prepared:
            try:
                sent, regs = await conn.request(prep.pdu, d.timeout, d.request_pause)
            except PermanentDeviceError as exc:
                if self.capture is None:
                    raise
                for o in prep.outs:
                    self.capture[o.name] = RawValue(o.where, "", str(exc))
                continue
            raws = prep.decode(regs)
            if prep.plain and self.capture is None:
                for o, raw in zip(prep.outs, raws, strict=True):
                    value = float(raw)
                    if o.pf:
                        value = pf_four_quadrant(value)
                    value *= o.scale
                    out.append(PointValue(o.name, value, o.unit, _GOOD if isfinite(value) else _BAD, sent))
            else:
                for o, raw in zip(prep.outs, raws, strict=True):
                    out.append(self._value(o, regs[o.offset : o.offset + o.count], raw, sent))
        return out

    def _value(self, o: _Out, regs: list[int], raw: float, sent: float) -> PointValue:
        """One point: BAD (value NaN) for a "not available" code or a non-finite value."""
        na = bool(o.codes) and raw_bits(regs, word_order=o.word_order, byte_order=o.byte_order) in o.codes
        if self.capture is not None:
            words = " ".join(f"0x{r:04X}" for r in regs)
            self.capture[o.name] = RawValue(o.where, words, "not available" if na else "")
        if na:
            self.unavailable[o.name] += 1
            return PointValue(o.name, math.nan, o.unit, Quality.BAD, sent)
        value = float(raw)
        if o.pf:
            value = pf_four_quadrant(value)
        value *= o.scale
        quality = Quality.GOOD if math.isfinite(value) else Quality.BAD
        return PointValue(o.name, value, o.unit, quality, sent)

    async def close(self) -> None:
        # the connection is shared; the runner closes connections itself
        return None


def _where(function: str, pp: PlannedPoint) -> str:
    """``holding 3059+2``: the point's registers as a Modbus tool names them."""
    return f"{function} {pp.spec.address}+{pp.spec.count}"
