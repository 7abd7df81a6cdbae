"""Clocks: wall time for stamps, monotonic time for scheduling.

Everything that stamps or schedules takes a clock, so a simulated day can pass in
seconds without any code path knowing. A clock has two readings:

- :meth:`Clock.now`: wall time (POSIX seconds, UTC). Readings are stamped with it. It may
  step (NTP, an operator, a VM resumed), forwards or backwards.
- :meth:`Clock.monotonic`: seconds on a clock that never steps, in the same units (clock
  seconds; a :class:`ScaledClock`'s runs ``speed`` times faster than real time). Intervals,
  deadlines and schedules use it, so a wall-clock step neither stalls polling nor bursts it.

:class:`ManualClock` moves only when told: ``advance`` moves both readings, ``step_wall``
moves the wall reading alone (a clock step), and sleepers wake when their monotonic
deadline is passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """Wall time for stamping and monotonic time for scheduling (both in clock seconds)."""

    speed: float

    def now(self) -> float:
        """Wall time, POSIX seconds (may step)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps (origin arbitrary)."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Sleep until wall time ``t`` (at most until the wall time seen now reaches it)."""
        ...

    async def sleep_until_monotonic(self, t: float) -> None:
        """Sleep until :meth:`monotonic` reaches ``t``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` clock seconds (monotonic)."""
        ...


class WallClock:
    """Real time: ``time.time()`` for stamps, ``time.monotonic()`` for scheduling."""

    speed = 1.0

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.time()))

    async def sleep_until_monotonic(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.monotonic()))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Time that starts at ``start`` and runs ``speed`` times faster than the wall.

    ``sleep(s)`` waits ``s / speed`` wall seconds, so intervals and timeouts written
    in clock seconds keep their meaning relative to the simulated world. Both readings
    derive from ``time.monotonic()``; :meth:`step_wall` steps the wall reading alone.
    """

    def __init__(self, *, start: float, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError("speed must be > 0")
        self.start = start
        self.speed = speed
        self._mono0 = time.monotonic()
        self._wall_offset = 0.0

    def monotonic(self) -> float:
        return (time.monotonic() - self._mono0) * self.speed

    def now(self) -> float:
        return self.start + self.monotonic() + self._wall_offset

    def step_wall(self, seconds: float) -> None:
        """Step the wall reading by ``seconds`` (negative: back); monotonic time is unchanged."""
        self._wall_offset += seconds

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, (t - self.now()) / self.speed))

    async def sleep_until_monotonic(self, t: float) -> None:
        await asyncio.sleep(max(0.0, (t - self.monotonic()) / self.speed))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds / self.speed))


class ManualClock:
    """A clock moved by hand: tests and tools that need one shared instant.

    ``advance(s)`` moves wall and monotonic time together (time passing); ``step_wall(s)``
    moves the wall time alone (a clock step). Setting ``clock.t`` sets the wall time (a
    step, as before). Sleepers wait until the clock is moved past their deadline;
    :meth:`sleepers` tells a test driver how many tasks are waiting (all idle = advance).
    """

    speed = 1.0

    def __init__(self, t: float, *, monotonic: float = 0.0) -> None:
        self._wall = float(t)
        self._mono = float(monotonic)
        self._changed: asyncio.Event | None = None
        self._waiting = 0

    @property
    def t(self) -> float:
        return self._wall

    @t.setter
    def t(self, value: float) -> None:
        self._wall = float(value)
        self._notify()

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (>= 0): wall and monotonic time move together."""
        if not seconds >= 0:
            raise ValueError("time only moves forwards; use step_wall for a wall-clock step")
        self._wall += seconds
        self._mono += seconds
        self._notify()

    def step_wall(self, seconds: float) -> None:
        """Step the wall time alone (negative: back), as NTP or an operator might."""
        self._wall += seconds
        self._notify()

    def sleepers(self) -> int:
        """Number of tasks waiting in a sleep of this clock."""
        return self._waiting

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait(self, check: Callable[[], bool]) -> None:
        self._waiting += 1
        try:
            while not check():
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()
        finally:
            self._waiting -= 1

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self.sleep_until_monotonic(self._mono + seconds)

    async def sleep_until_monotonic(self, t: float) -> None:
        if t <= self._mono:
            await asyncio.sleep(0)
            return
        await self._wait(lambda: self._mono >= t)

    async def sleep_until(self, t: float) -> None:
        if t <= self._wall:
            await asyncio.sleep(0)
            return
        await self._wait(lambda: self._wall >= t)
