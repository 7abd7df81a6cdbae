"""The alert engine as a service output: it takes the intervals and sensor faults every output
sees, evaluates once per service tick (``flush(now)``), keeps its state in the alert files, appends
every alert that fires or resolves to the alert history (:mod:`pue_monitor.alerts.history`) and
delivers each group in a background task (a slow notifier never holds up the service).

Notifiers get the engine's groups (new, repeated and resolved alerts); Alertmanager also gets
every firing, unsilenced alert again every ``alerts.alertmanager_refresh_s`` (it resolves an
alert nobody re-posts within its ``resolve_timeout``), which it deduplicates itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pue_monitor.alerts.engine import AlertEngine, DeliveryHealth, DeviceState, Evaluation
from pue_monitor.alerts.history import AlertHistory
from pue_monitor.alerts.model import Alert
from pue_monitor.alerts.notifiers import Alertmanager, Notifier, NotifierStats, build_notifiers
from pue_monitor.alerts.state import AlertFiles, alerts_dir
from pue_monitor.errors import UserError
from pue_monitor.sinks.base import Output, OutputHealth

if TYPE_CHECKING:
    from pathlib import Path

    from pue_monitor.config.loader import LoadedSite
    from pue_monitor.models.drift import DriftReport
    from pue_monitor.pipeline.faults import SensorFault
    from pue_monitor.pipeline.pue import PueInterval

__all__ = ["AlertCollector", "AlertOutput", "build_alert_output"]

log = logging.getLogger("pue_monitor.alerts")

#: groups waiting for delivery; past this the oldest is dropped (logged, counted)
MAX_QUEUE = 256
#: seconds ``close`` waits for deliveries in flight
CLOSE_WAIT_S = 10.0


class AlertOutput(Output):
    """Evaluates the engine each tick, saves its state, delivers in a task."""

    name = "alerts"

    def __init__(
        self,
        engine: AlertEngine,
        files: AlertFiles,
        notifiers: Sequence[Notifier],
        *,
        stats: NotifierStats | None = None,
        refresh_s: float = 60.0,
        history: AlertHistory | None = None,
    ) -> None:
        self.engine = engine
        self.files = files
        self.history = history
        self._reconciled = False
        self._history_error: str | None = None
        self.notifiers = list(notifiers)
        self.stats = stats if stats is not None else NotifierStats()
        self.refresh_s = refresh_s
        self.last: Evaluation | None = None
        self.dropped_groups = 0
        self._queue: deque[tuple[Notifier, list[Alert]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refreshed = -float("inf")
        self._error: str | None = None
        self._closing = False
        self.active_silences = 0
        self.firing_counts: dict[tuple[str, str], int] = engine.counts()

    def restore(self) -> None:
        """Continue from the saved state, if any (a bad one is moved aside and logged)."""
        doc = self.files.load_state()
        if doc is None:
            return
        try:
            self.engine.restore(doc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.engine.clear()
            self.files.state_unusable(f"not an alert state of this version ({type(exc).__name__}: {exc})")
            return
        self.firing_counts = self.engine.counts()
        firing = self.engine.firing()
        if firing:
            log.info(
                "alerts: %d firing alert(s) restored from %s (not sent again before their repeat is due)",
                len(firing),
                self.files.state_path,
            )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._deliver(), name="alert delivery")

    def intervals(self, resolution: str, intervals: Sequence[PueInterval]) -> None:
        self.engine.intervals(resolution, intervals)

    def sensor_faults(self, faults: Sequence[SensorFault]) -> None:
        self.engine.sensor_faults(faults)

    def evaluate(self, now: float) -> Evaluation:
        """Evaluate, save the state, queue the deliveries (what ``flush`` does, without awaiting)."""
        silences = self.files.silences()
        first = self.history is not None and not self._reconciled
        if first:  # the restored firing alerts, before the engine moves on
            self._history(lambda h: h.adopt(self.engine.firing(), now))
        ev = self.engine.evaluate(now, silences)
        self.last = ev
        # the history before the state: a crash in between repeats a transition, never loses one
        if self.history is not None and self._history(lambda h: h.record(ev.transitions, now)) and first:
            self._reconciled = self._history(lambda h: h.mark_lost(self.engine.firing(), now))
        self.active_silences = sum(1 for s in silences if s.active(now))
        self.firing_counts = self.engine.counts()  # read by /metrics in the HTTP thread
        try:
            self.files.save_state(self.engine.snapshot())
            self._error = None
        except UserError as exc:  # names the file and the cause; logged once per cause
            if str(exc) != self._error:
                log.error("%s (alerts are still evaluated and sent; the state is lost on a restart)", exc)
            self._error = str(exc)
        refresh = bool(ev.firing) and now - self._refreshed >= self.refresh_s
        if refresh:
            self._refreshed = now
        for n in self.notifiers:
            if isinstance(n, Alertmanager) and refresh:
                sent = {a.fingerprint for a in ev.group}
                group = [*ev.group, *(a for a in ev.firing if a.fingerprint not in sent)]
            else:
                group = ev.group
            if group:
                self._enqueue(n, group)
        return ev

    def _history(self, write: Callable[[AlertHistory], object]) -> bool:
        """Run a write of the history; a failure is logged once per cause (True: written)."""
        assert self.history is not None
        try:
            write(self.history)
        except UserError as exc:  # names the file; the transitions stay queued for the next evaluation
            if str(exc) != self._history_error:
                log.error("%s (%d transition(s) kept for the next attempt)", exc, self.history.pending)
            self._history_error = str(exc)
            return False
        self._history_error = None
        return True

    def _enqueue(self, notifier: Notifier, group: list[Alert]) -> None:
        if len(self._queue) >= MAX_QUEUE:
            lost, _ = self._queue.popleft()
            self.dropped_groups += 1
            log.error("alerts: delivery queue full (%d groups): dropped the oldest group for %s", MAX_QUEUE, lost.name)
        self._queue.append((notifier, group))
        self._wake.set()

    async def flush(self, now: float) -> None:
        self.evaluate(now)
        if self._task is None:  # not started (a test driving the output): deliver inline
            await self.drain()

    async def drain(self) -> None:
        """Deliver everything queued, notifiers concurrently, each notifier's groups in order."""
        while self._queue:
            batch: dict[Notifier, list[list[Alert]]] = {}
            while self._queue:
                n, g = self._queue.popleft()
                batch.setdefault(n, []).append(g)
            await asyncio.gather(*(self._send_all(n, gs) for n, gs in batch.items()))

    @staticmethod
    async def _send_all(n: Notifier, groups: list[list[Alert]]) -> None:
        for g in groups:
            await n.send(g)  # never raises for a delivery failure; counts and logs it

    async def _deliver(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.drain()
            except Exception as exc:  # a bug in a notifier must not end delivery for good
                log.error("alerts: delivery failed: %s: %s", type(exc).__name__, exc)

    async def close(self) -> None:
        """Deliver what is queued (at most :data:`CLOSE_WAIT_S` seconds), then stop."""
        task, self._task = self._task, None
        self._closing = True
        self._wake.set()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=CLOSE_WAIT_S)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._queue:
            log.error("alerts: %d notification group(s) not delivered at shutdown", len(self._queue))
        if self.history is not None:
            if self.history.pending:
                log.error("%s: %d alert transition(s) not written at shutdown", self.history.path, self.history.pending)
            self.history.close()

    def health(self) -> OutputHealth:
        down = [f"{n.name}: {n.health()['last_error']}" for n in self.notifiers if not n.health()["up"]]
        if self._history_error:
            down.insert(0, self._history_error)
        if self._error:
            down.insert(0, self._error)
        return OutputHealth(self.name, not down, "; ".join(down), self.dropped_groups)

    def collector(self) -> AlertCollector:
        return AlertCollector(self)


class AlertCollector(Collector):
    """``pue_alerts_firing{site, alertname, severity}``, ``pue_alert_silences_active{site}`` and
    the notifiers' counters (``pue_alert_notifications_total{site, notifier, result}``, ...)."""

    def __init__(self, output: AlertOutput) -> None:
        self.output = output

    def collect(self) -> Iterator[Metric]:
        out = self.output
        site = out.engine.site
        firing = GaugeMetricFamily(
            "pue_alerts_firing",
            "Alerts the engine has firing now (silenced ones included), per alertname and severity.",
            labels=["site", "alertname", "severity"],
        )
        for (name, severity), n in sorted(out.firing_counts.items()):
            firing.add_metric([site, name, severity], n)
        yield firing
        silences = GaugeMetricFamily(
            "pue_alert_silences_active", "Silences in force now (pue alerts silence).", labels=["site"]
        )
        silences.add_metric([site], out.active_silences)
        yield silences
        yield from out.stats.metrics(site, [n.name for n in out.notifiers])


def build_alert_output(
    site: LoadedSite,
    *,
    store_path: str | Path | None = None,
    devices: Callable[[], Mapping[str, DeviceState]] | None = None,
    outputs: Callable[[], Sequence[DeliveryHealth]] | None = None,
    drift: Callable[[], DriftReport | None] | None = None,
) -> AlertOutput:
    """The alert output of ``site`` (its ``alerts:`` section), its state restored. ``drift``:
    the live model watcher's latest report (also settable later: ``output.engine.drift``)."""
    cfg = site.config
    stats = NotifierStats()
    notifiers = build_notifiers(cfg.alerts, base_dir=site.base_dir, stats=stats)
    engine = AlertEngine(cfg.site.id, cfg.thresholds, cfg.alerts, drift=drift, devices=devices, outputs=outputs)
    folder = alerts_dir(site, store_path)
    out = AlertOutput(
        engine,
        AlertFiles(folder),
        notifiers,
        stats=stats,
        refresh_s=cfg.alerts.alertmanager_refresh_s,
        history=AlertHistory(folder, keep_days=cfg.alerts.history_days),
    )
    out.restore()
    return out
