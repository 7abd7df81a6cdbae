"""The outputs interface: what the service hands to the store, InfluxDB, Prometheus, the
local state file and (later) the alert engine.

Every output sees the same streams — raw readings, closed intervals per resolution
("1m", "15m", "1h", "1d"; a restated interval comes again with the same ``start``), the
pipeline's judgements about single readings (:class:`~pue_monitor.pipeline.events.PipelineEvent`)
and, on sites with a ``cooling:`` section, the free-cooling state per economiser and resolution
(:class:`~pue_monitor.pipeline.freecooling_live.FreeCoolingInterval`)
— through one small interface, so the service is wiring only:

* ``readings`` / ``intervals`` / ``events`` hand data over; they are called on the event loop,
  must not block and must not raise (an output buffers, bounded, and says what it drops);
* ``flush(now)`` is called once per service tick: do (or start) the I/O for what was handed
  over; an output whose target is failing keeps its bounded buffer and retries with backoff;
* ``health()`` says whether the output works (``pue_store_up``, ``pue_sink_up``);
* ``start()`` / ``close()`` bracket a run; ``close`` writes what it can.

:class:`Outputs` fans the streams out to several outputs and isolates them: an exception in
one output is logged (once per output and cause) and never reaches the collectors, the
pipeline or the other outputs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pue_monitor.pipeline.events import PipelineEvent
from pue_monitor.readings import Reading

if TYPE_CHECKING:
    from pue_monitor.pipeline.faults import SensorFault
    from pue_monitor.pipeline.freecooling_live import FreeCoolingInterval
    from pue_monitor.pipeline.pue import PueInterval

__all__ = ["EventLog", "Output", "OutputHealth", "Outputs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputHealth:
    """``up``: True works, False failing, None not known yet (nothing written)."""

    name: str
    up: bool | None
    detail: str = ""  # the last error (path and cause), "" when up
    dropped: int = 0  # items dropped because a bounded buffer was full (data lost, counted)


class Output:
    """Base class of an output; every hook is a no-op so an output overrides what it needs."""

    name = "output"

    async def start(self) -> None:
        """Connect, start background tasks."""

    def readings(self, readings: Sequence[Reading]) -> None:
        """Raw readings as collected (GOOD and BAD). Non-blocking; never raises."""

    def intervals(self, resolution: str, intervals: Sequence[PueInterval]) -> None:
        """New or restated intervals of one resolution. Non-blocking; never raises."""

    def events(self, events: Sequence[PipelineEvent]) -> None:
        """The pipeline's judgements about single readings. Non-blocking; never raises."""

    def free_cooling(self, resolution: str, rows: Sequence[FreeCoolingInterval]) -> None:
        """New or restated free-cooling rows (per economiser) of one resolution. Non-blocking;
        never raises."""

    def sensor_faults(self, faults: Sequence[SensorFault]) -> None:
        """Sensor faults opened or cleared since the last call (a cleared one comes again with
        ``end`` set). Non-blocking; never raises."""

    async def flush(self, now: float) -> None:
        """Once per service tick (``now``: clock time): write what was handed over."""

    async def close(self) -> None:
        """Write what is left (best effort) and release resources."""

    def health(self) -> OutputHealth:
        return OutputHealth(self.name, True)


class Outputs(Output):
    """Fan-out to several outputs; an output's failure never reaches the caller or the others."""

    name = "outputs"

    def __init__(self, outputs: Sequence[Output] = ()) -> None:
        self.outputs: list[Output] = list(outputs)
        self._failed: set[tuple[str, str, str]] = set()  # (output, hook, error type) logged once

    def add(self, output: Output) -> None:
        self.outputs.append(output)

    def _guard(self, out: Output, hook: str, exc: Exception) -> None:
        key = (out.name, hook, type(exc).__name__)
        if key not in self._failed:
            self._failed.add(key)
            log.error("output %s failed in %s: %s: %s (kept running)", out.name, hook, type(exc).__name__, exc)

    async def start(self) -> None:
        for out in self.outputs:
            await out.start()  # a failure to start is fatal: nothing has run yet

    def readings(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        for out in self.outputs:
            try:
                out.readings(readings)
            except Exception as exc:  # isolate outputs from each other and the pipeline
                self._guard(out, "readings", exc)

    def intervals(self, resolution: str, intervals: Sequence[PueInterval]) -> None:
        if not intervals:
            return
        for out in self.outputs:
            try:
                out.intervals(resolution, intervals)
            except Exception as exc:
                self._guard(out, "intervals", exc)

    def events(self, events: Sequence[PipelineEvent]) -> None:
        if not events:
            return
        for out in self.outputs:
            try:
                out.events(events)
            except Exception as exc:
                self._guard(out, "events", exc)

    def free_cooling(self, resolution: str, rows: Sequence[FreeCoolingInterval]) -> None:
        if not rows:
            return
        for out in self.outputs:
            try:
                out.free_cooling(resolution, rows)
            except Exception as exc:
                self._guard(out, "free_cooling", exc)

    def sensor_faults(self, faults: Sequence[SensorFault]) -> None:
        if not faults:
            return
        for out in self.outputs:
            try:
                out.sensor_faults(faults)
            except Exception as exc:
                self._guard(out, "sensor_faults", exc)

    async def flush(self, now: float) -> None:
        for out in self.outputs:
            try:
                await out.flush(now)
            except Exception as exc:
                self._guard(out, "flush", exc)

    async def close(self) -> None:
        for out in self.outputs:
            try:
                await out.close()
            except Exception as exc:
                self._guard(out, "close", exc)

    def health(self) -> OutputHealth:
        states = [o.health() for o in self.outputs]
        up = None if any(s.up is None for s in states) else all(s.up for s in states)
        if any(s.up is False for s in states):
            up = False
        detail = "; ".join(f"{s.name}: {s.detail}" for s in states if s.detail)
        return OutputHealth(self.name, up, detail, sum(s.dropped for s in states))

    def all_health(self) -> list[OutputHealth]:
        return [o.health() for o in self.outputs]


class EventLog(Output):
    """Logs pipeline events rate-limited — at most one line per (device, kind) per ``every``
    seconds, with the count since the last line — and counts them all (for Prometheus)."""

    name = "event log"

    def __init__(self, *, every: float = 60.0) -> None:
        self.every = every
        self.counts: Counter[tuple[str, str]] = Counter()  # (device, kind) -> events, all time
        self._unlogged: Counter[tuple[str, str]] = Counter()
        self._last_line: dict[tuple[str, str], float] = {}
        self._example: dict[tuple[str, str], PipelineEvent] = {}
        self._mono = time.monotonic

    def events(self, events: Sequence[PipelineEvent]) -> None:
        for ev in events:
            key = (ev.device, str(ev.kind))
            self.counts[key] += 1
            self._unlogged[key] += 1
            self._example[key] = ev
        self._log(force=False)

    def _log(self, *, force: bool) -> None:
        now = self._mono()
        for key, n in list(self._unlogged.items()):
            if not force and now - self._last_line.get(key, -1e18) < self.every:
                continue
            ev = self._example[key]
            log.warning(
                "%s %s: %d reading(s) judged %s since the last report (latest %s at %.0f%s)",
                ev.device,
                ev.point,
                n,
                ev.kind,
                "value " + repr(ev.value) if ev.value is not None else "no value",
                ev.ts,
                ": " + ev.detail if ev.detail else "",
            )
            self._last_line[key] = now
            del self._unlogged[key]

    async def flush(self, now: float) -> None:
        self._log(force=False)

    async def close(self) -> None:
        self._log(force=True)
