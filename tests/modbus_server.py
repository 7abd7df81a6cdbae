"""A real pymodbus TCP server serving profile points, for collector tests.

Not a mock: the collector talks Modbus TCP over loopback to pymodbus' own server.
Behaviour hooks (slow, silent) go through pymodbus' SimDevice ``action`` callback.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pue_monitor.collectors.decode import encode
from pue_monitor.collectors.plan import compile_plan
from pue_monitor.config.models import Profile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class UnitBehaviour:
    """Mutable per-unit behaviour, changed by tests while the server runs."""

    delay: float = 0.0  # seconds before answering
    silent: bool = False  # never answer
    requests: list[tuple[int, int, int]] = field(default_factory=list)  # (fc, address, count)
    #: set at shutdown so requests held by ``silent`` end instead of leaking server tasks
    release: asyncio.Event = field(default_factory=asyncio.Event)


def _registers(profile: Profile, values: Mapping[str, float]) -> list[SimData]:
    blocks = []
    for req in compile_plan(dict(profile.points), max_registers=125):
        regs = [0] * req.count
        for pp in req.points:
            s = pp.spec
            regs[pp.offset : pp.offset + s.count] = encode(
                values.get(pp.name, 0.0), s.type, word_order=s.word_order, byte_order=s.byte_order, scale=s.scale
            )
        blocks.append(SimData(req.address, values=regs, datatype=DataType.REGISTERS))
    return blocks


def _device(unit: int, profile: Profile, values: Mapping[str, float], beh: UnitBehaviour) -> SimDevice:
    async def action(fc, start, address, count, registers, set_values):
        beh.requests.append((fc, address, count))
        if beh.silent:
            await beh.release.wait()
        if beh.delay:
            await asyncio.sleep(beh.delay)
        return None

    return SimDevice(id=unit, simdata=_registers(profile, values), action=action)


@asynccontextmanager
async def serve(units: Mapping[int, tuple[Profile, Mapping[str, float]]]):
    """Serve ``{unit_id: (profile, values)}`` on a free loopback port.

    Yields ``(port, {unit_id: UnitBehaviour})``.
    """
    beh = {u: UnitBehaviour() for u in units}
    devices = [_device(u, p, v, beh[u]) for u, (p, v) in units.items()]
    port = free_port()
    server = ModbusTcpServer(devices, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield port, beh
    finally:
        for b in beh.values():
            b.release.set()
        await asyncio.sleep(0.01)
        await server.shutdown()
