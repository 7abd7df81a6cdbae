"""The service's status, liveness and readiness as JSON, served beside ``/metrics`` on the
Prometheus port (``prometheus.status: true``, the default; see :mod:`pue_monitor.sinks.http`).

``GET /status``
    every device (state pending/up/down, protocol, last success, last latency, polls, errors by
    kind, readings, last error — redacted), the pipeline (live PUE, the last closed intervals,
    category) and the outputs' health; always 200 while the service answers.
``GET /healthz``
    liveness: 200 while the event loop answers (within :attr:`StatusOutput.respond_within`
    wall seconds) and no device's polling task has ended; else 503 with the reason.
``GET /readyz``
    readiness: 200 once the configuration is loaded (the service exists), the store is open
    (when there is one) and writable, and every device has finished its first poll (answered
    or failed; push devices: a first message, or silence long enough to count as down);
    else 503 with every reason.

Requests are answered in the HTTP server's threads, but everything they report is read on
the event loop (``call_soon_threadsafe``), so a request never sees the service's state half
updated — and a loop that does not answer is exactly what liveness is about.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import math
import zoneinfo
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pue_monitor import __version__
from pue_monitor.collectors.runner import DEVICE_DOWN, DEVICE_PENDING, DEVICE_UP, ERROR_KINDS
from pue_monitor.logs import redact
from pue_monitor.sinks.base import Output, Outputs
from pue_monitor.sinks.http import Route

if TYPE_CHECKING:
    from pue_monitor.clock import Clock
    from pue_monitor.collectors.runner import Runner
    from pue_monitor.config.loader import LoadedSite
    from pue_monitor.sinks.prometheus import LiveState
    from pue_monitor.sinks.store import StoreOutput

__all__ = ["StatusOutput", "StatusSource"]

T = TypeVar("T")

#: the resolutions /status reports the latest closed interval of
WINDOWS = ("1m", "15m", "1h", "1d")


class StatusSource(Protocol):
    """What the status reads from the service (:class:`pue_monitor.service.Service`)."""

    @property
    def site(self) -> LoadedSite: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def state(self) -> LiveState: ...

    @property
    def outputs(self) -> Outputs: ...

    @property
    def store(self) -> StoreOutput | None: ...

    @property
    def runner(self) -> Runner: ...


def _num(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def iso8601(ts: float | None, tz: str) -> str | None:
    """``ts`` in the site's time zone, ISO 8601 with its offset (None stays None)."""
    if ts is None or not math.isfinite(ts):
        return None
    return dt.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)).isoformat(timespec="seconds")


def _interval(iv: Any, tz: str) -> dict[str, Any]:
    return {
        "start": iv.start,
        "end": iv.end,
        "start_local": iso8601(iv.start, tz),
        "pue": _num(iv.pue),
        "category": iv.category,
        "e_facility_kwh": _num(iv.e_facility),
        "e_it_kwh": _num(iv.e_it),
        "measured": iv.measured,
        "estimated": iv.estimated,
        "missing": iv.missing,
        "coverage": iv.coverage,
    }


class StatusOutput(Output):
    """Serves /status, /healthz and /readyz (see the module doc) for ``service``.

    An output so that it knows when the service started (``start``), runs steps (``flush``)
    and stops (``close``); :meth:`routes` go to :class:`~pue_monitor.sinks.prometheus.PrometheusEndpoint`.
    """

    name = "status"

    def __init__(self, service: StatusSource, *, respond_within: float = 2.0) -> None:
        self.service = service
        self.respond_within = respond_within  # wall seconds the event loop has to answer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: float | None = None  # clock time
        self._steps = 0
        self._closed = False
        #: extra top-level sections of /status: name -> callable giving its JSON (run on the loop),
        #: added by the service for parts the sinks do not import (the expected-PUE model); an
        #: output of the same name reports in its section, not in "outputs"
        self.sections: dict[str, Callable[[], Any]] = {}

    def routes(self) -> dict[str, Route]:
        return {"/status": self.status, "/healthz": self.healthz, "/readyz": self.readyz}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = self.service.clock.now()

    async def flush(self, now: float) -> None:
        self._steps += 1

    async def close(self) -> None:
        self._closed = True

    # ------------------------------------------------------------------ routes

    def status(self) -> tuple[int, Any]:
        ok, body = self._on_loop(self.snapshot)
        return (200, body) if ok else (503, {"error": body})

    def healthz(self) -> tuple[int, Any]:
        ok, dead = self._on_loop(self._dead)
        if not ok:
            return 503, {"status": "not alive", "reason": dead}
        if dead:
            return 503, {"status": "not alive", "reason": "polling tasks ended: " + ", ".join(dead)}
        return 200, {"status": "alive"}

    def readyz(self) -> tuple[int, Any]:
        ok, reasons = self._on_loop(self.not_ready)
        if not ok:
            return 503, {"status": "not ready", "reasons": [reasons]}
        if reasons:
            return 503, {"status": "not ready", "reasons": reasons}
        return 200, {"status": "ready"}

    # -------------------------------------------------------- on the event loop

    def _on_loop(self, fn: Callable[[], T]) -> tuple[bool, T | str]:
        """``(True, fn())`` run on the service's event loop, or ``(False, why not)``."""
        loop = self._loop
        if self._closed:
            return False, "the service is stopping"
        if loop is None:
            return False, "the service is starting (not running yet)"
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            if not done.set_running_or_notify_cancel():
                return  # the request gave up waiting
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the request thread, raised there
                done.set_exception(exc)

        try:
            loop.call_soon_threadsafe(call)
        except RuntimeError:  # the loop is closed
            return False, "the service is stopping"
        try:
            return True, done.result(timeout=self.respond_within)
        except TimeoutError:
            done.cancel()
            return False, f"the event loop did not answer within {self.respond_within:g} s"

    def _dead(self) -> list[str]:
        runner = getattr(self.service, "runner", None)  # built after the outputs
        return runner.dead_tasks() if runner is not None else []

    def not_ready(self) -> list[str]:
        """Why the service is not ready (empty: ready)."""
        svc = self.service
        why: list[str] = []
        store = svc.store
        if store is not None:
            if store.store is None:
                why.append(f"store {store.path} is not open: {redact(store.last_error)}")
            elif store.up is False:
                why.append(f"store {store.path} is failing: {redact(store.last_error)}")
        pending = [d for d, s in svc.state.devices.items() if s.state == DEVICE_PENDING]
        if pending:
            names = ", ".join(pending[:10]) + (f" and {len(pending) - 10} more" if len(pending) > 10 else "")
            why.append(f"waiting for the first poll of {len(pending)} device(s): {names}")
        if self._steps == 0:
            why.append("the pipeline has not run a step yet")
        return why

    def snapshot(self) -> dict[str, Any]:
        """The /status document."""
        svc = self.service
        cfg = svc.site.config
        tz = cfg.site.timezone
        st = svc.state
        now = svc.clock.now()
        devices = []
        for dev, s in st.devices.items():
            kinds = dict.fromkeys(ERROR_KINDS.get(s.protocol, ()), 0)
            kinds.update(s.errors)
            last = s.last_success
            devices.append(
                {
                    "id": dev,
                    "protocol": s.protocol,
                    "state": s.state,
                    "last_success": last,
                    "last_success_local": iso8601(last, tz),
                    "last_success_age_s": _num(now - last) if last is not None else None,
                    "last_latency_s": _num(s.last_latency),
                    "polls": s.polls,
                    "failed_polls": s.failed_polls,
                    "errors": dict(sorted(kinds.items())),
                    "readings": st.readings[dev],
                    "out_of_window": s.out_of_window,
                    "down_since": s.down_since if s.state == DEVICE_DOWN else None,
                    "last_error_kind": s.last_error_kind,
                    "last_error": redact(s.last_error) if s.last_error else None,
                }
            )
        states = [d["state"] for d in devices]
        reasons = self.not_ready()
        return {
            "site": cfg.site.id,
            "timezone": tz,
            "version": __version__,
            "now": now,
            "now_local": iso8601(now, tz),
            "started": self._started,
            "ready": not reasons,
            "not_ready": reasons,
            "summary": {
                "devices": len(devices),
                "up": states.count(DEVICE_UP),
                "down": states.count(DEVICE_DOWN),
                "pending": states.count(DEVICE_PENDING),
            },
            "devices": devices,
            "pipeline": {
                "pue_instant": _num(st.instant_pue),
                "power_kw": {k: _num(v) for k, v in st.power_kw_by_role.items()},
                "last_interval": _interval(st.latest["1m"], tz) if "1m" in st.latest else None,
                "latest": {w: _interval(st.latest[w], tz) for w in WINDOWS if w in st.latest},
            },
            "outputs": [
                {"name": h.name, "up": h.up, "detail": redact(h.detail), "dropped": h.dropped}
                for h in svc.outputs.all_health()
                if h.name not in (self.name, *self.sections)
            ],
            **{name: section() for name, section in self.sections.items()},
        }
