"""Clocks: wall time for real sites, scaled time for the simulator and tests.

Everything that stamps or schedules takes a clock, so a simulated day can pass in
seconds without any code path knowing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Source of POSIX time (seconds, UTC) for stamping and scheduling."""

    speed: float

    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    """Real time."""

    speed = 1.0

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.time()))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Time that starts at ``start`` and runs ``speed`` times faster than the wall.

    ``sleep(s)`` waits ``s / speed`` wall seconds, so intervals and timeouts written
    in clock seconds keep their meaning relative to the simulated world.
    """

    def __init__(self, *, start: float, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.start = start
        self.speed = speed
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._mono0) * self.speed

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, (t - self.now()) / self.speed))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds / self.speed))


class ManualClock:
    """A clock moved by hand (``clock.t = ...``): tests and tools that need one shared instant."""

    speed = 1.0

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(0)
