"""A real pymodbus TCP server serving profile points, for collector tests.

Not a mock: the collector talks Modbus TCP over loopback to pymodbus' own server.
Behaviour hooks (slow, silent) go through pymodbus' SimDevice ``action`` callback.

Holding (FC03) and input (FC04) registers are separate blocks (pymodbus' non-shared mode),
as on real meters: reading a point with the wrong function code gets "illegal data
address" (or the other table's values), so a profile with a wrong ``function`` fails a test.
A value may be a float (encoded as the profile says) or a list of raw registers (a register
dump of a real device, or a "not available" code).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence
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


Value = float | Sequence[int]


def _registers(profile: Profile, values: Mapping[str, Value]) -> dict[str, list[SimData]]:
    """Register blocks by function ("holding", "input"), each block one merged request's span."""
    blocks: dict[str, list[SimData]] = {"holding": [], "input": []}
    for req in compile_plan(dict(profile.points), max_registers=125):
        regs = [0] * req.count
        for pp in req.points:
            s = pp.spec
            v = values.get(pp.name, 0.0)
            if isinstance(v, int | float):
                raw = encode(v, s.type, word_order=s.word_order, byte_order=s.byte_order, scale=s.scale)
            else:
                raw = list(v)
                assert len(raw) == s.count, f"{pp.name}: {s.count} registers, got {len(raw)}"
            regs[pp.offset : pp.offset + s.count] = raw
        blocks[req.function].append(SimData(req.address, values=regs, datatype=DataType.REGISTERS))
    return blocks


#: a register no profile point uses: a table without points still needs one block
_FILLER = SimData(0xFFFE, values=[0], datatype=DataType.REGISTERS)


def _device(unit: int, profile: Profile, values: Mapping[str, Value], beh: UnitBehaviour) -> SimDevice:
    async def action(fc, start, address, count, registers, set_values):
        beh.requests.append((fc, address, count))
        if beh.silent:
            await beh.release.wait()
        if beh.delay:
            await asyncio.sleep(beh.delay)
        return None

    blocks = _registers(profile, values)
    bits = [SimData(0, values=[False], datatype=DataType.BITS)]
    holding = blocks["holding"] or [_FILLER]
    inputs = blocks["input"] or [_FILLER]
    return SimDevice(id=unit, simdata=(bits, bits, holding, inputs), action=action)


@asynccontextmanager
async def serve(units: Mapping[int, tuple[Profile, Mapping[str, Value]]]):
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
