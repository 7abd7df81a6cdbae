"""Supervision: every device is an independently scheduled task.

The runner, not the collectors, owns scheduling (aligned to the clock so devices'
readings share timestamps), timeouts, retries with capped jittered backoff, per-device
statistics and up/down state (logged once on each change).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from pue_monitor.clock import Clock
from pue_monitor.collectors.base import DeviceReader, Emit, PushSource
from pue_monitor.errors import DeviceError, PermanentDeviceError, TransientDeviceError
from pue_monitor.readings import Reading

log = logging.getLogger(__name__)


@dataclass
class DeviceStats:
    """Health of one device, exported to Prometheus and shown by the CLI."""

    device: str
    protocol: str
    polls: int = 0
    failed_polls: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by kind: timeout, connection, ...
    last_success: float | None = None  # clock time
    last_error: str | None = None
    last_latency: float | None = None  # wall seconds of the last successful poll
    latency_sum: float = 0.0
    up: bool | None = None  # None until the first poll ends


@dataclass(frozen=True)
class Schedule:
    interval: float  # clock seconds
    timeout: float
    retries: int


class Runner:
    """Runs one polling task per device until :meth:`stop`."""

    def __init__(
        self, *, site: str, clock: Clock, emit: Emit, backoff_base: float = 0.2, backoff_cap: float = 5.0
    ) -> None:
        self.site = site
        self.clock = clock
        self.emit = emit
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats: dict[str, DeviceStats] = {}
        self._devices: list[tuple[DeviceReader, Schedule, str]] = []
        self._sources: list[PushSource] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def add(self, reader: DeviceReader, schedule: Schedule, *, protocol: str) -> None:
        self._devices.append((reader, schedule, protocol))
        self.stats[reader.device_id] = DeviceStats(reader.device_id, protocol)

    def add_source(self, source: PushSource, *, protocol: str) -> None:
        """A push source (MQTT): one task for its connection, stats for each of its devices."""
        self._sources.append(source)
        for dev in source.device_ids:
            self.stats[dev] = DeviceStats(dev, protocol)

    def start(self) -> None:
        for reader, schedule, _ in self._devices:
            task = asyncio.create_task(self._poll_loop(reader, schedule), name=f"poll {reader.device_id}")
            self._tasks.append(task)
        for source in self._sources:
            task = asyncio.create_task(self._source_loop(source), name=f"source {source.name}")
            self._tasks.append(task)

    async def _source_loop(self, source: PushSource) -> None:
        """Run a push source; a crash (a bug) is logged and the source restarted after a pause."""
        while not self._stopping.is_set():
            try:
                await source.run(self.emit, self.stats, self._stopping)
                return
            except Exception:
                log.exception("source %s failed; restarting in %.0f s", source.name, self.backoff_cap)
                if not await self._sleep_wall(self.backoff_cap):
                    return

    async def stop(self, deadline: float = 2.0) -> None:
        """Two-phase stop: let polls in flight finish (bounded), then cancel."""
        self._stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=deadline)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for reader, _, _ in reversed(self._devices):
            await reader.close()

    async def _sleep_until(self, t: float) -> bool:
        """Sleep until clock time ``t``; False when stopping."""
        return await self._sleep_wall(max(0.0, (t - self.clock.now()) / self.clock.speed))

    async def _poll_loop(self, reader: DeviceReader, sch: Schedule) -> None:
        stats = self.stats[reader.device_id]
        failures = 0
        while not self._stopping.is_set():
            # aligned slot; a failing device backs off to at most 8 intervals
            every = sch.interval * min(8, 2 ** max(0, failures - 2))
            nxt = math.floor(self.clock.now() / every + 1) * every
            if not await self._sleep_until(nxt):
                return
            ok = await self.poll_once(reader, sch, stats, slot_end=nxt + sch.interval)
            failures = 0 if ok else failures + 1

    async def poll_once(
        self, reader: DeviceReader, sch: Schedule, stats: DeviceStats, *, slot_end: float | None = None
    ) -> bool:
        """One poll with retries. Returns True on success. Never raises DeviceError."""
        stats.polls += 1
        attempts = sch.retries + 1
        error: DeviceError | None = None
        for attempt in range(attempts):
            ts = self.clock.now()
            t0 = time.monotonic()
            try:
                values = await reader.read()
            except PermanentDeviceError as exc:
                error = exc
                stats.errors[exc.kind] += 1
                break  # a retry will not fix it
            except TransientDeviceError as exc:
                error = exc
                stats.errors[exc.kind] += 1
                if attempt + 1 < attempts:
                    delay = min(self.backoff_cap, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)
                    if slot_end is not None and self.clock.now() + delay * self.clock.speed >= slot_end:
                        break  # never run into the next slot
                    if not await self._sleep_wall(delay):
                        break
                continue
            except DeviceError as exc:  # decode errors and other device faults
                error = exc
                stats.errors[exc.kind] += 1
                break
            except Exception as exc:  # a bug must not end this device's task, nor others'
                error = DeviceError(f"internal error: {exc!r}")
                stats.errors["internal"] += 1
                if stats.errors["internal"] == 1:
                    log.exception("device %s: unexpected error while polling", reader.device_id)
                break
            latency = time.monotonic() - t0
            stats.last_latency = latency
            stats.latency_sum += latency
            stats.last_success = ts
            if stats.up is not True:
                if stats.up is False:
                    log.warning("device %s recovered", reader.device_id)
                stats.up = True
            readings = [
                Reading(
                    ts if v.ts is None else v.ts,
                    self.site,
                    reader.device_id,
                    v.point,
                    v.value,
                    v.unit,
                    v.quality,
                    v.tags,
                )
                for v in values
            ]
            self.emit(readings)
            return True
        stats.failed_polls += 1
        stats.last_error = str(error)
        if stats.up is not False:
            log.warning("device %s down: %s", reader.device_id, error)
            stats.up = False
        return False

    async def _sleep_wall(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False
