"""Supervision: every device is an independently scheduled task.

The runner, not the collectors, owns scheduling, timeouts, retries with capped jittered
backoff, per-device statistics and state — pending until the first poll ends, then up or
down (:attr:`DeviceStats.state`; up/down logged once on each change).

Time
    Polls are scheduled on the clock's monotonic reading, aligned to the wall-clock grid
    (``k * interval``) so devices' readings share timestamps; readings are stamped with
    wall time. A wall-clock step in either direction therefore neither stalls polling
    nor bursts it: the next slot is at most one interval away and is re-aligned to the
    stepped wall grid (the step is logged once). A poll that overruns its slot skips the
    missed slots instead of catching up.

    Every reading, polled or pushed, passes the :class:`~pue_monitor.config.models.TimeWindow`
    check on its way to ``emit``: a timestamp more than ``ahead_s`` after the clock or
    ``behind_s`` before it is rejected, counted in the device's
    :attr:`DeviceStats.out_of_window` and logged (at most once a minute per device,
    naming the device, the timestamp and the clock). It never reaches the pipeline.

Timeouts are wall seconds
    A device's ``timeout`` ("no answer within 5 s") is real seconds whatever the clock's
    speed: the collectors apply it with ``asyncio.timeout`` on the event loop's clock, and
    retry pauses are wall seconds too. Intervals and schedules are clock seconds. On a real
    site (speed 1) the two are the same; on a simulated clock running 60x a 5 s timeout is
    still 5 s of waiting for an answer, so a busy machine raises no false "device down"
    (a timed-out poll that overruns its slot skips the missed slots, as above).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pue_monitor.clock import Clock
from pue_monitor.collectors.base import DeviceReader, Emit, PushSource
from pue_monitor.config.models import TimeWindow
from pue_monitor.errors import DeviceError, PermanentDeviceError, TransientDeviceError
from pue_monitor.readings import Reading

log = logging.getLogger(__name__)

LOG_EVERY = 60.0  # real seconds between two reports of out-of-window readings of one device
STEP_TOLERANCE = 1.0  # clock seconds of wall-vs-monotonic change that count as a wall-clock step

#: upper bounds (wall seconds) of the poll-latency histogram buckets; +Inf is implied
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: the states of a device (:attr:`DeviceStats.state`)
DEVICE_PENDING, DEVICE_UP, DEVICE_DOWN = "pending", "up", "down"
_POLLED_KINDS = ("timeout", "connection", "protocol", "decode", "internal")
#: every error kind a device of each protocol can count (``DeviceStats.errors``), so that
#: exports can show each at 0 before it first happens
ERROR_KINDS: dict[str, tuple[str, ...]] = {
    "modbus": _POLLED_KINDS,
    "snmp": (*_POLLED_KINDS, "no-points"),
    # MalformedPayload kinds (collectors/mqtt.py)
    "mqtt": ("json", "number", "path", "range", "timestamp", "type", "value"),
    "sparkplug": ("sparkplug", "rebirth"),
}


def _utc(ts: float) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


class WindowCheck:
    """The time-window check with its rate-limited log; shared by the runner and MQTT.

    ``split(readings)`` returns the readings inside the window and counts the others in
    ``stats[device].out_of_window`` (devices without stats in :attr:`unknown`).
    """

    def __init__(self, window: TimeWindow, clock: Clock) -> None:
        self.window = window
        self.clock = clock
        self.unknown = 0
        self._log_at: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def split(self, readings: list[Reading], stats: dict[str, DeviceStats], *, where: str = "") -> list[Reading]:
        now = self.clock.now()
        lo, hi = now - self.window.behind_s, now + self.window.ahead_s
        if all(lo <= r.ts <= hi for r in readings):
            return readings
        keep: list[Reading] = []
        for r in readings:
            if lo <= r.ts <= hi:
                keep.append(r)
                continue
            st = stats.get(r.device)
            if st is None:
                self.unknown += 1
            else:
                st.out_of_window += 1
            self._report(r, now, where)
        return keep

    def _report(self, r: Reading, now: float, where: str) -> None:
        key = f"{r.device}{where}"
        t = time.monotonic()
        last = self._log_at.get(key)
        if last is not None and t - last < LOG_EVERY:
            self._suppressed[key] += 1
            return
        if len(self._log_at) >= 10_000:
            self._log_at = {k: v for k, v in self._log_at.items() if t - v < LOG_EVERY}
        self._log_at[key] = t
        more = self._suppressed.pop(key, 0)
        side = "ahead of" if r.ts > now else "behind"
        w = self.window.ahead_s if r.ts > now else self.window.behind_s
        log.warning(
            "device %s%s: reading %s stamped %s is %.0f s %s the clock (%s; window %g s): rejected%s",
            r.device,
            where,
            r.point,
            _utc(r.ts),
            abs(r.ts - now),
            side,
            _utc(now),
            w,
            f" (+{more} more in the last minute)" if more else "",
        )


class _InternalError(DeviceError):
    """An unexpected exception while polling (a bug), as the runner reports it."""

    kind = "internal"


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
    #: successful polls per LATENCY_BUCKETS bucket (not cumulative; the last is > 10 s)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    up: bool | None = None  # None until the first poll ends (see :attr:`state`)
    out_of_window: int = 0  # readings rejected by the time-window check
    last_error_kind: str | None = None  # kind of the failure that made it down (timeout, connection, ...)
    down_since: float | None = None  # clock time the current outage was first seen

    @property
    def state(self) -> str:
        """``pending`` (no poll or message has ended yet: neither up nor down), ``up`` or ``down``."""
        return DEVICE_PENDING if self.up is None else DEVICE_UP if self.up else DEVICE_DOWN

    def mark_down(self, kind: str, text: str, now: float) -> None:
        """Record a failure that leaves the device down (``kind`` names the cause)."""
        self.last_error, self.last_error_kind = text, kind
        if self.up is not False:
            self.down_since = now

    def observe_latency(self, seconds: float) -> None:
        """Record the duration of a successful poll."""
        self.last_latency = seconds
        self.latency_sum += seconds
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1


@dataclass(frozen=True)
class Schedule:
    interval: float  # clock seconds (monotonic)
    timeout: float  # wall seconds, whatever the clock's speed
    retries: int


class Runner:
    """Runs one polling task per device until :meth:`stop`."""

    def __init__(
        self,
        *,
        site: str,
        clock: Clock,
        emit: Emit,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        time_window: TimeWindow | None = None,
    ) -> None:
        self.site = site
        self.clock = clock
        self.emit = emit
        self.window = WindowCheck(time_window or TimeWindow(), clock)
        self._wall_offset = clock.now() - clock.monotonic()  # for logging wall-clock steps
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats: dict[str, DeviceStats] = {}
        self._devices: list[tuple[DeviceReader, Schedule, str]] = []
        self._sources: list[PushSource] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        # per task (device id or source): its own stop, so a reload can end one task alone
        self._task_of: dict[object, asyncio.Task[None]] = {}
        self._stop_of: dict[object, asyncio.Event] = {}
        self._running = False

    def add(self, reader: DeviceReader, schedule: Schedule, *, protocol: str) -> None:
        """Poll a device (at once when the runner is running: a reload adds devices live)."""
        self._devices.append((reader, schedule, protocol))
        self.stats[reader.device_id] = DeviceStats(reader.device_id, protocol)
        if self._running:
            self._start_device(reader, schedule)

    async def remove(self, device_id: str, *, deadline: float = 2.0) -> None:
        """Stop polling one device (reload): its poll in flight gets ``deadline`` wall seconds,
        then its task is cancelled; its reader is closed and its stats forgotten. The other
        devices' tasks are not touched."""
        await self._end_task(device_id, deadline)
        for entry in [d for d in self._devices if d[0].device_id == device_id]:
            self._devices.remove(entry)
            await entry[0].close()
        self.stats.pop(device_id, None)

    async def remove_source(self, source: PushSource, *, keep_stats: Iterable[str] = (), deadline: float = 2.0) -> None:
        """Stop a push source (reload); its devices' stats are forgotten except ``keep_stats``
        (devices a replacing source takes over: their counts continue)."""
        await self._end_task(source, deadline)
        if source in self._sources:
            self._sources.remove(source)
        keep = set(keep_stats)
        for dev in source.device_ids:
            if dev not in keep:
                self.stats.pop(dev, None)

    async def _end_task(self, key: object, deadline: float) -> None:
        stop, task = self._stop_of.pop(key, None), self._task_of.pop(key, None)
        if stop is not None:
            stop.set()
        if task is None:
            return
        _, pending = await asyncio.wait([task], timeout=deadline)
        for t in pending:
            t.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._tasks.remove(task)

    def _start_device(self, reader: DeviceReader, schedule: Schedule) -> None:
        stop = self._stop_of[reader.device_id] = asyncio.Event()
        task = asyncio.create_task(self._poll_loop(reader, schedule, stop), name=f"poll {reader.device_id}")
        self._task_of[reader.device_id] = task
        self._tasks.append(task)

    def _start_source(self, source: PushSource) -> None:
        stop = self._stop_of[source] = asyncio.Event()
        task = asyncio.create_task(self._source_loop(source, stop), name=f"source {source.name}")
        self._task_of[source] = task
        self._tasks.append(task)

    def add_source(self, source: PushSource, *, protocol: str, protocols: dict[str, str] | None = None) -> None:
        """A push source (MQTT): one task for its connection, stats for each of its devices
        (``protocols``: device -> protocol where it differs from ``protocol``, e.g. sparkplug)."""
        self._sources.append(source)
        for dev in source.device_ids:
            proto = (protocols or {}).get(dev, protocol)
            if dev not in self.stats or self.stats[dev].protocol != proto:  # a reload's new source continues
                self.stats[dev] = DeviceStats(dev, proto)
        if hasattr(source, "window_check"):  # MQTT also counts rejections per topic
            setattr(source, "window_check", self.window)  # noqa: B010
        if self._running:
            self._start_source(source)

    def deliver(self, readings: list[Reading]) -> None:
        """Hand readings to ``emit`` after the time-window check (see the module doc)."""
        keep = self.window.split(readings, self.stats)
        if keep:
            self.emit(keep)

    def start(self) -> None:
        self._running = True
        for reader, schedule, _ in self._devices:
            self._start_device(reader, schedule)
        for source in self._sources:
            self._start_source(source)

    def dead_tasks(self) -> list[str]:
        """Names of polling/source tasks that ended although the runner was not stopped (a
        bug): empty while every device is being polled (liveness, ``/healthz``)."""
        if self._stopping.is_set():
            return []
        return [t.get_name() for t in self._tasks if t.done()]

    async def _source_loop(self, source: PushSource, stop: asyncio.Event) -> None:
        """Run a push source; a crash (a bug) is logged and the source restarted after a pause."""
        while not stop.is_set():
            try:
                await source.run(self.deliver, self.stats, stop)
                return
            except Exception:
                log.exception("source %s failed; restarting in %.0f s", source.name, self.backoff_cap)
                if not await self._sleep_wall(self.backoff_cap):
                    return

    async def stop(self, deadline: float = 2.0) -> None:
        """Two-phase stop: let polls in flight finish (bounded), then cancel."""
        self._stopping.set()
        self._running = False
        for ev in self._stop_of.values():
            ev.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=deadline)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._task_of.clear()
        self._stop_of.clear()
        for reader, _, _ in reversed(self._devices):
            await reader.close()

    async def _sleep_until_monotonic(self, t: float, stop: asyncio.Event | None = None) -> bool:
        """Sleep until the clock's monotonic time ``t``; False when stopping (``stop``: the
        task's own stop, default the runner's)."""
        stop = stop or self._stopping
        if stop.is_set():
            return False
        sleeper = asyncio.ensure_future(self.clock.sleep_until_monotonic(t))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
        return not stop.is_set()

    def _offset(self) -> tuple[float, float]:
        """(monotonic now, wall - monotonic); logs a wall-clock step once."""
        mono = self.clock.monotonic()
        offset = self.clock.now() - mono
        step = offset - self._wall_offset
        if abs(step) > STEP_TOLERANCE:
            log.warning(
                "wall clock stepped %s %.1f s; polling keeps its monotonic schedule",
                "forward" if step > 0 else "back",
                abs(step),
            )
            self._wall_offset = offset
        return mono, offset

    @staticmethod
    def _aligned(mono: float, offset: float, every: float) -> float:
        """The monotonic time of the next wall-grid slot (``k * every`` wall) after ``mono``."""
        wall = mono + offset
        return mono + (math.floor(wall / every + 1) * every - wall)

    async def _poll_loop(self, reader: DeviceReader, sch: Schedule, stop: asyncio.Event | None = None) -> None:
        stop = stop or self._stopping
        stats = self.stats[reader.device_id]
        failures = 0
        mono, offset = self._offset()
        nxt = self._aligned(mono, offset, sch.interval)
        while not stop.is_set():
            if not await self._sleep_until_monotonic(nxt, stop):
                return
            ok = await self.poll_once(reader, sch, stats, slot_end=nxt + sch.interval)
            failures = 0 if ok else failures + 1
            # a failing device backs off to at most 8 intervals
            every = sch.interval * min(8, 2 ** max(0, failures - 2))
            mono, new_offset = self._offset()
            if abs(new_offset - offset) > STEP_TOLERANCE:
                offset = new_offset  # wall clock stepped: the next slot on the new wall grid
                nxt = self._aligned(mono, offset, every)
            else:
                nxt += every
                if nxt <= mono:  # overran (slow poll, stalled loop): skip missed slots, no burst
                    nxt += math.ceil((mono - nxt) / every) * every

    async def poll_once(
        self, reader: DeviceReader, sch: Schedule, stats: DeviceStats, *, slot_end: float | None = None
    ) -> bool:
        """One poll with retries. Returns True on success. Never raises DeviceError.

        ``slot_end`` (monotonic clock time): no retry is started that would run into it.
        """
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
                    if slot_end is not None and self.clock.monotonic() + delay * self.clock.speed >= slot_end:
                        break  # never run into the next slot
                    if not await self._sleep_wall(delay):
                        break
                continue
            except DeviceError as exc:  # decode errors and other device faults
                error = exc
                stats.errors[exc.kind] += 1
                break
            except Exception as exc:  # a bug must not end this device's task, nor others'
                error = _InternalError(f"internal error: {exc!r}")
                stats.errors["internal"] += 1
                if stats.errors["internal"] == 1:
                    log.exception("device %s: unexpected error while polling", reader.device_id)
                break
            stats.observe_latency(time.monotonic() - t0)
            stats.last_success = ts
            if stats.up is not True:
                if stats.up is False:
                    log.info("device %s recovered", reader.device_id)
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
            self.deliver(readings)
            return True
        stats.failed_polls += 1
        stats.mark_down(error.kind if error is not None else "internal", str(error), self.clock.now())
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
