"""The expected-PUE model in the running service: scoring every hour, retraining on a schedule,
and saying plainly what state it is in.

:class:`ModelWatcher` owns the model directory of one site (``model.path``, default ``model/``
beside the store):

- **scoring** (:meth:`ModelWatcher.update`, after each hour closes, ``lag_s`` later so the store
  holds the hour's intervals): reads the recent window (``model.drift.window_days``) from the
  store (:func:`.history.from_store`), scores it with the loaded model and runs
  :func:`.drift.assess` with the site's thresholds; keeps the latest
  :class:`~.drift.DriftReport` and the expected PUE of the last closed hour and local day;
- **training**: the first model as soon as the store holds ``model.min_history_days`` of
  history, then every ``model.retrain_every_days`` at the local hour ``model.retrain_hour``, on
  the last ``model.history_days``. The new model is written to a temporary directory beside the
  model directory and renamed into place; on any failure the previous model stays (one log line
  per distinct failure), and the next attempt is at the next retraining hour;
- **state** (:class:`ModelStatus`): ``none`` (no model yet: threshold rules only), ``training``,
  ``ready``, ``stale`` (older than twice the schedule: retraining keeps failing) or ``failed``
  (``model.json`` unusable, e.g. written by another scikit-learn version: the one-line
  :class:`~.baseline.ModelFileError`; a new model is trained as soon as the history allows).

Store reads, scoring and training run in a worker thread (:func:`asyncio.to_thread`), never on
the event loop; :class:`ModelOutput` (an :class:`~pue_monitor.sinks.base.Output`) starts an
update from the service's tick without waiting for it. :class:`ModelCollector` exports the
state to Prometheus through the endpoint's registry (the sinks do not import this layer).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import re
import shutil
import tempfile
import time
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pue_monitor.config.models import CoolingConfig, CoolingPoints, SiteConfig
from pue_monitor.models import drift as _drift
from pue_monitor.models import history
from pue_monitor.models.data import Array, Intervals, default_cooling
from pue_monitor.sinks.base import Output

if TYPE_CHECKING:
    from pue_monitor.config.loader import LoadedSite
    from pue_monitor.models import baseline

__all__ = [
    "STATES",
    "ModelCollector",
    "ModelOutput",
    "ModelStatus",
    "ModelWatcher",
    "WatchSettings",
    "for_site",
    "off_status",
]

log = logging.getLogger(__name__)

DAY_S = 86400.0
HOUR_S = 3600.0
NONE, TRAINING, READY, STALE, FAILED = "none", "training", "ready", "stale", "failed"
STATES = (NONE, TRAINING, READY, STALE, FAILED)
RULES_ONLY = "threshold rules only"
#: :data:`.baseline.MODEL_JSON` (baseline, and scikit-learn with it, is imported only when a model
#: is loaded or trained: ~1 s that a site at cold start does not pay when the service starts)
MODEL_JSON = "model.json"
#: share of the training window's intervals that must have outdoor weather
MIN_WEATHER_SHARE = 0.5


class Reader(history.StoreLike, Protocol):
    """A store reader (:class:`pue_monitor.sinks.sqlite.StoreReader`): the reads plus ``close``."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class WatchSettings:
    """What the watcher needs of the site (see :meth:`from_config`)."""

    model_dir: Path
    points: CoolingPoints
    cooling: CoolingConfig
    timezone: str = "UTC"
    history_days: float = 56.0
    min_history_days: float = 14.0
    retrain_every_days: int = 7
    retrain_hour: int = 3
    resolution: str = "15m"
    drift_days: float = 14.0
    cusum: _drift.CusumSettings = field(default_factory=_drift.CusumSettings)
    thresholds: dict[str, float] = field(
        default_factory=lambda: {"warning": _drift.WARNING_PUE, "critical": _drift.CRITICAL_PUE}
    )
    #: an hour is scored this long after it closed (its intervals are in the store by then)
    lag_s: float = 300.0

    @classmethod
    def from_config(cls, cfg: SiteConfig, model_dir: Path) -> WatchSettings:
        m = cfg.model
        cooling = cfg.cooling or default_cooling()
        d = m.drift
        return cls(
            model_dir=model_dir,
            points=cooling.points,
            cooling=cooling,
            timezone=cfg.site.timezone,
            history_days=min(m.history_days, cfg.store.keep_readings_days),  # the weather readings kept
            min_history_days=m.min_history_days,
            retrain_every_days=m.retrain_every_days,
            retrain_hour=m.retrain_hour,
            resolution=m.resolution,
            drift_days=d.window_days,
            cusum=_drift.CusumSettings(d.bucket_s, d.k_sigma, d.h_sigma, d.min_sigma),
            thresholds={"warning": cfg.thresholds.warning, "critical": cfg.thresholds.critical},
        )


@dataclass(frozen=True)
class ModelStatus:
    """The model's state, said plainly (``message``), with its figures (None: not known)."""

    state: str
    message: str
    path: str
    age_s: float | None = None
    trained_at: float | None = None
    training_start: float | None = None
    training_end: float | None = None
    samples: int | None = None
    mae: float | None = None
    p95_abs: float | None = None
    residual_std: float | None = None
    next_training: float | None = None
    #: the last failed training (the previous model, if any, stays in use)
    last_error: str | None = None
    #: the last failure per step ("training", "scoring", "loading"), until that step succeeds
    errors: dict[str, str] = field(default_factory=dict)
    scored_until: float | None = None
    expected_pue: dict[str, float | None] = field(default_factory=dict)
    drifting: bool = False
    drift_pue: float | None = None
    drift_began: float | None = None
    drift_detected_at: float | None = None
    #: threshold -> window ("1d", "15m") -> seconds until the projected PUE crosses it (None: not heading there)
    projected_s: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fin(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def period_expected_pue(iv: Intervals, expected_overhead_kwh: Array, sel: Any) -> float | None:
    """Expected PUE over the selected rows that have an expected overhead, from energies."""
    ok = sel & np.isfinite(expected_overhead_kwh) & np.isfinite(iv.it_kwh) & (iv.it_kwh > 0)
    it = float(np.sum(iv.it_kwh[ok]))
    if it <= 0:
        return None
    return (it + float(np.sum(expected_overhead_kwh[ok]))) / it


def replace_dir(new: Path, target: Path) -> None:
    """Put the directory ``new`` in the place of ``target`` (its sibling). The old directory is
    renamed aside first and put back if the second rename fails; ``model.json`` is absent from
    ``target`` only between the two renames (a reader then sees "no model yet")."""
    aside = target.with_name(f".{target.name}.previous")
    if aside.exists():
        shutil.rmtree(aside)
    had = target.exists()
    if had:
        os.rename(target, aside)
    try:
        os.rename(new, target)
    except OSError:
        if had:
            os.rename(aside, target)
        raise
    if had:
        shutil.rmtree(aside, ignore_errors=True)


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def _date(ts: float, tz: str) -> str:
    return dt.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)).strftime("%Y-%m-%d")


def _span(seconds: float) -> str:
    if seconds < 2 * HOUR_S:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY_S:
        return f"{seconds / HOUR_S:.0f} h"
    return f"{seconds / DAY_S:.1f} days"


class ModelWatcher:
    """Scores, retrains and reports one site's expected-PUE model (see the module doc).

    ``reader_factory`` opens a store reader (called, used and closed in the worker thread);
    ``clock`` gives the service's time (the model's age)."""

    def __init__(
        self,
        reader_factory: Callable[[], Reader],
        settings: WatchSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader_factory = reader_factory
        self.settings = settings
        self.clock = clock
        self.model: baseline.ExpectedPue | None = None
        self._file_error: str | None = None  # model.json unusable (state failed while no model)
        self._file_sig: tuple[int, int] | None = None  # (mtime_ns, inode) of the model.json loaded
        self._training = False
        #: the last failure, one line, by step ("training", "scoring", "loading"); cleared by a success
        self._errors: dict[str, str] = {}
        self._logged: set[str] = set()
        self._next_training: float | None = None  # None: as soon as the history allows
        self._history_s: float | None = None  # history the store held at the last probe
        self._probed_hour: float | None = None
        self._report: _drift.DriftReport | None = None
        self._expected: dict[str, float | None] = {}
        self._scored_until: float | None = None
        self._scored_model: baseline.ExpectedPue | None = None
        self._postponed = False  # the last due retraining was put off: PUE was drifting
        self._lock = asyncio.Lock()
        self._load()

    # ------------------------------------------------------------------ the API

    def drift(self) -> _drift.DriftReport | None:
        """The latest drift report (None: no model, or nothing scored yet)."""
        return self._report if self.model is not None else None

    def expected_pue(self, window: str) -> float | None:
        """Expected PUE of the last closed hour ("1h") or local day ("1d") (None: not known)."""
        return self._expected.get(window) if self.model is not None else None

    @property
    def state(self) -> str:
        if self._training:
            return TRAINING
        if self.model is None:
            return FAILED if self._file_error is not None else NONE
        if self.clock() - self.model.created > 2 * self.settings.retrain_every_days * DAY_S:
            return STALE
        return READY

    def status(self) -> ModelStatus:
        s = self.settings
        m = self.model
        state = self.state
        now = self.clock()
        path = str(s.model_dir)
        base: dict[str, Any] = {
            "path": path,
            "next_training": self._next_training,
            "last_error": self._errors.get("training"),
            "errors": dict(self._errors),
        }
        if m is None:
            if self._file_error is not None:
                why = f"model unusable: {self._file_error}"
            else:
                have = "not checked yet" if self._history_s is None else f"{_span(self._history_s)} stored"
                why = (
                    f"no model yet: {RULES_ONLY} (history {have}; the first model is trained once the store "
                    f"holds {s.min_history_days:g} days)"
                )
            if state == TRAINING:
                msg = f"training the first expected-PUE model on the last {s.history_days:g} days: {RULES_ONLY} so far"
            else:
                msg = f"{why}: {RULES_ONLY}" if self._file_error is not None else why
                msg += self._failures()
            return ModelStatus(state=state, message=msg, **base)
        rep = self._report
        cur = rep.current if rep is not None else None
        days = (m.training_end - m.training_start) / DAY_S
        age = now - m.created
        msg = (
            f"expected-PUE model {state}: trained on {_date(m.training_start, s.timezone)}.."
            f"{_date(m.training_end, s.timezone)} ({days:.0f} days), held-out MAE {m.errors.mae:.5f} PUE, "
            f"{_span(max(age, 0.0))} old"
        )
        if state == TRAINING:
            msg += "; retraining now (this model stays in use until the new one is ready)"
        if state == STALE:
            msg += f" (retraining every {s.retrain_every_days} days has not succeeded)"
        if self._postponed and self._next_training is not None:
            msg += f"; retraining postponed to {self._local(self._next_training)} while PUE drifts above expected"
        msg += self._failures()
        if rep is None:
            msg += "; no hour scored yet"
        elif cur is not None:
            began = dt.datetime.fromtimestamp(cur.began, zoneinfo.ZoneInfo(s.timezone))
            msg += f"; DRIFT since {began:%Y-%m-%d %H:%M}: +{cur.size:.4f} PUE above expected"
        else:
            msg += "; no drift"
        projected: dict[str, dict[str, float | None]] = {}
        if rep is not None and rep.projection is not None:
            p = rep.projection
            since = max(0.0, now - rep.now)  # the report is as of the scored hour's end

            def left(secs: float | None) -> float | None:
                return None if secs is None else max(0.0, secs - since)

            projected = {n: {"1d": left(p.daily[n]), "15m": left(p.interval[n])} for n in p.daily}
        return ModelStatus(
            state=state,
            message=msg,
            age_s=age,
            trained_at=m.created,
            training_start=m.training_start,
            training_end=m.training_end,
            samples=m.samples,
            mae=m.errors.mae,
            p95_abs=m.errors.p95_abs,
            residual_std=m.errors.residual_std,
            scored_until=self._scored_until,
            expected_pue=dict(self._expected),
            drifting=cur is not None,
            drift_pue=(cur.size if cur is not None else 0.0) if rep is not None else None,
            drift_began=cur.began if cur is not None else None,
            drift_detected_at=cur.detected_at if cur is not None else None,
            projected_s=projected,
            **base,
        )

    async def update(self, now: float) -> None:
        """Reload a model replaced on disk, score the hours closed since the last update, train
        when due (not while drifting: a model trained now would learn the fault as normal; the
        attempt moves to the next retraining hour), and score again with a new model. Store
        reads, training and scoring run in a worker thread."""
        async with self._lock:
            await asyncio.to_thread(self._reload_if_changed)
            await self._score_if_due(now)
            if self._training_due(now):
                rep = self._report if self.model is not None else None
                if rep is not None and rep.drifting:
                    self._postponed = True
                    self._next_training = self._next_hour_slot(now)
                    log.info(
                        "model retraining postponed to %s: PUE drifts above expected", self._local(self._next_training)
                    )
                else:
                    self._postponed = False
                    await self._train(now)
                    await self._score_if_due(now)

    async def _score_if_due(self, now: float) -> None:
        until = math.floor((now - self.settings.lag_s) / HOUR_S) * HOUR_S
        m = self.model
        if m is None or (self._scored_model is m and self._scored_until is not None and until <= self._scored_until):
            return
        try:
            report, expected = await asyncio.to_thread(self._score, m, until)
        except Exception as exc:  # a store that cannot be read: said once, kept running
            self._fail("scoring", exc)
        else:
            self._report, self._expected = report, expected
            self._scored_until, self._scored_model = until, m
            self._errors.pop("scoring", None)

    def _local(self, ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(self.settings.timezone)).isoformat(timespec="minutes")

    # ------------------------------------------------------------- scheduling

    def next_retraining(self, after: float) -> float:
        """The retraining hour (local) ``retrain_every_days`` dates after ``after``'s date."""
        tz = zoneinfo.ZoneInfo(self.settings.timezone)
        d = dt.datetime.fromtimestamp(after, tz).date() + dt.timedelta(days=self.settings.retrain_every_days)
        return dt.datetime(d.year, d.month, d.day, self.settings.retrain_hour, tzinfo=tz).timestamp()

    def _next_hour_slot(self, now: float) -> float:
        """The next retraining hour (local) strictly after ``now`` (a failed attempt's retry)."""
        tz = zoneinfo.ZoneInfo(self.settings.timezone)
        local = dt.datetime.fromtimestamp(now, tz)
        slot = dt.datetime(local.year, local.month, local.day, self.settings.retrain_hour, tzinfo=tz)
        if slot.timestamp() <= now:
            d = local.date() + dt.timedelta(days=1)
            slot = dt.datetime(d.year, d.month, d.day, self.settings.retrain_hour, tzinfo=tz)
        return slot.timestamp()

    def _training_due(self, now: float) -> bool:
        if self._next_training is not None:
            return now >= self._next_training
        # no model (cold start or an unusable file): probe the history once per hour
        hour = math.floor(now / HOUR_S)
        if self._probed_hour == hour:
            return False
        self._probed_hour = hour
        return True

    async def _train(self, now: float) -> None:
        s = self.settings
        if self.model is None:  # the first model: only once the store holds enough history
            try:
                self._history_s = await asyncio.to_thread(self._history, now - s.history_days * DAY_S, now)
            except Exception as exc:
                self._fail("training", exc)
                return
            if self._history_s < s.min_history_days * DAY_S:
                return
        self._training = True
        try:
            model = await asyncio.to_thread(self._fit_and_save, now)
        except Exception as exc:
            self._fail("training", exc)
            self._next_training = self._next_hour_slot(now)
            return
        finally:
            self._training = False
        self.model, self._file_error = model, None
        self._errors.pop("training", None)
        self._errors.pop("loading", None)
        self._logged.clear()
        self._next_training = self.next_retraining(now)
        log.info("model: %s", self.status().message)

    def _failures(self) -> str:
        said = {"training": "last training failed", "scoring": "scoring failed", "loading": "model file not loaded"}
        return "".join(f"; {said[k]}: {v}" for k, v in self._errors.items())

    def _fail(self, what: str, exc: BaseException) -> None:
        msg = _one_line(exc)
        self._errors[what] = msg
        key = re.sub(r"\d+", "#", f"{what}: {msg}")  # the same cause with other counts: said once
        if key not in self._logged:
            self._logged.add(key)
            kept = "the previous model stays in use" if self.model is not None else RULES_ONLY
            log.warning("model %s failed (%s): %s", what, kept, msg)

    # --------------------------------------------------------- worker thread

    def _read(self, start: float, end: float) -> Intervals:
        reader = self.reader_factory()
        try:
            return history.from_store(
                reader, self.settings.points, start=start, end=end, resolution=self.settings.resolution
            )
        finally:
            reader.close()

    def _history(self, start: float, end: float) -> float:
        """Seconds of history with IT energy the store holds in ``[start, end]`` (intervals only)."""
        try:
            reader = self.reader_factory()
        except FileNotFoundError:
            return 0.0
        try:
            rows = [
                r
                for r in reader.intervals(self.settings.resolution, start=start, end=end)
                if r.get("e_it_kwh") is not None and r["e_it_kwh"] > 0 and r.get("e_facility_kwh") is not None
            ]
        finally:
            reader.close()
        if not rows:
            return 0.0
        return float(max(r["end"] for r in rows) - min(r["start"] for r in rows))

    def _fit_and_save(self, now: float) -> baseline.ExpectedPue:
        s = self.settings
        start = now - s.history_days * DAY_S
        iv = self._read(start, now)
        weather = np.isfinite(iv.dry_bulb_c) & np.isfinite(iv.rh_pct)
        if len(iv) and weather.mean() < MIN_WEATHER_SHARE:
            names = ", ".join(
                f"{r.device}/{r.point}" for r in (s.points.outdoor_temperature, s.points.relative_humidity) if r
            )
            raise ValueError(
                f"only {weather.mean():.0%} of the {len(iv)} {s.resolution} intervals of the training window have "
                f"outdoor weather readings (cooling.points: {names}); {MIN_WEATHER_SHARE:.0%} are needed"
            )
        from pue_monitor.models import baseline

        model = baseline.fit(iv, cooling=s.cooling, utc_offset_s=history.utc_offset_s(s.timezone, now))
        model.created = now
        target = s.model_dir
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.training-", dir=target.parent))
        try:
            model.save(tmp)
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._file_sig = self._signature()
        return model

    def _score(self, m: baseline.ExpectedPue, until: float) -> tuple[_drift.DriftReport, dict[str, float | None]]:
        s = self.settings
        iv = self._read(until - s.drift_days * DAY_S, until)
        # an interval without outdoor weather is not judged (the estimator would guess the weather)
        weather = np.isfinite(iv.dry_bulb_c) & np.isfinite(iv.rh_pct)
        exp: Array = np.full(len(iv), np.nan)
        if weather.any():  # nothing stored in the window (a long outage): no judgement, not an error
            exp[weather] = m.expected_overhead_kwh(iv.select(weather))
        report = _drift.assess(iv, exp, m.errors.residual_std, s.cusum, now=until, thresholds=s.thresholds)
        tz = zoneinfo.ZoneInfo(s.timezone)
        day_end = dt.datetime.fromtimestamp(until, tz).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        day_start = (dt.datetime.fromtimestamp(day_end, tz) - dt.timedelta(days=1)).replace(hour=0).timestamp()
        expected = {
            "1h": period_expected_pue(iv, exp, (iv.start >= until - HOUR_S) & (iv.end <= until)),
            "1d": period_expected_pue(iv, exp, (iv.start >= day_start) & (iv.end <= day_end)),
        }
        return report, expected

    def _signature(self) -> tuple[int, int] | None:
        try:
            st = (self.settings.model_dir / MODEL_JSON).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def _load(self) -> None:
        """Load the model directory as it is on disk (at start, and when model.json changed)."""
        sig = self._signature()
        if sig is None:  # no model.json: no model yet (or still the one in use)
            self._file_sig, self._file_error = None, None
            return
        from pue_monitor.models import baseline

        try:
            m = baseline.load(self.settings.model_dir)
        except baseline.ModelFileError as exc:
            self._file_sig = sig
            msg = _one_line(exc)
            if self.model is not None:  # keep the one in use; say why the file was not taken
                self._fail("loading", exc)
                return
            self._file_error = msg
            self._next_training = None  # train a usable one as soon as the history allows
            if msg not in self._logged:
                self._logged.add(msg)
                log.warning("model unusable (%s): %s", RULES_ONLY, msg)
            return
        self._file_sig = sig
        if m is None:
            return
        self.model, self._file_error = m, None
        self._next_training = self.next_retraining(m.created)

    def _reload_if_changed(self) -> None:
        if self._signature() != self._file_sig:
            self._load()

    def reconfigure(self, cfg: SiteConfig) -> None:
        """A reloaded site file (SIGHUP): its thresholds, weather points and plant apply from the
        next scoring (the ``model:`` section itself needs a restart)."""
        self.settings = WatchSettings.from_config(cfg, self.settings.model_dir)
        self._scored_until = None  # score again with the new settings

    # ---------------------------------------------------------------- plumbing

    def output(self) -> ModelOutput:
        return ModelOutput(self)

    def collector(self, site: str) -> ModelCollector:
        return ModelCollector(self, site)


class ModelOutput(Output):
    """Starts :meth:`ModelWatcher.update` from the service's tick, in the background (one at a
    time, at most every ``every_s`` clock seconds, the first ``every_s`` after the first tick):
    the tick never waits for a store read, scoring or training."""

    name = "model"

    def __init__(self, watcher: ModelWatcher, *, every_s: float = 60.0) -> None:
        self.watcher = watcher
        self.every_s = every_s  # clock seconds between updates (scoring is hourly; this is the check)
        self.task: asyncio.Task[None] | None = None
        self._last = -math.inf

    async def flush(self, now: float) -> None:
        if self.task is not None and not self.task.done():
            return
        if self.task is not None and not self.task.cancelled() and (exc := self.task.exception()) is not None:
            log.error("model update failed: %s", _one_line(exc))
            self.task = None
        if self._last == -math.inf:  # the first update a minute after start: not while the service starts
            self._last = now
            return
        if 0 <= now - self._last < self.every_s:
            return
        self._last = now
        self.task = asyncio.create_task(self.watcher.update(now), name="model-update")

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            with contextlib.suppress(Exception):
                await self.task  # a training in its thread finishes (it cannot be interrupted)


class ModelCollector(Collector):
    """Prometheus gauges of the model's state (registered on the endpoint's registry)."""

    def __init__(self, watcher: ModelWatcher, site: str) -> None:
        self.watcher = watcher
        self.site = site

    def collect(self) -> Iterator[Metric]:
        st = self.watcher.status()
        site = self.site
        state = GaugeMetricFamily(
            "pue_model_state",
            "Expected-PUE model state: 1 for the current one (none: no model yet, threshold rules only; training; "
            "ready; stale: older than twice the retraining schedule; failed: model file unusable).",
            labels=["site", "state"],
        )
        for name in STATES:
            state.add_metric([site, name], 1.0 if st.state == name else 0.0)
        yield state
        if st.age_s is None or st.mae is None:
            return
        yield _gauge("pue_model_age_seconds", "Age of the expected-PUE model in use.", site, st.age_s)
        yield _gauge(
            "pue_model_mae",
            "Mean absolute error of the model's expected interval PUE on held-out weeks, PUE points.",
            site,
            st.mae,
        )
        exp = GaugeMetricFamily(
            "pue_expected_pue",
            "Expected PUE for the conditions (weather, IT load, time of day) over the last closed hour (1h) "
            "or local day (1d), from energies.",
            labels=["site", "window"],
        )
        for w in ("1h", "1d"):
            v = st.expected_pue.get(w)
            if v is not None and math.isfinite(v):
                exp.add_metric([site, w], v)
        yield exp
        if st.drift_pue is None:
            return
        yield _gauge(
            "pue_pue_drift",
            "Drift of actual PUE above expected (CUSUM episode size), PUE points; 0 when not drifting.",
            site,
            st.drift_pue,
        )
        proj = GaugeMetricFamily(
            "pue_drift_projected_seconds",
            "While drifting: seconds until the daily (1d) or 15-minute (15m) PUE is projected to reach the "
            "threshold (0: already there); absent when not heading there.",
            labels=["site", "threshold", "window"],
        )
        for thr, by_window in st.projected_s.items():
            for w, secs in by_window.items():
                if secs is not None and math.isfinite(secs):
                    proj.add_metric([site, thr, w], secs)
        yield proj


def _gauge(name: str, doc: str, site: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["site"])
    g.add_metric([site], value)
    return g


def model_dir(site: LoadedSite, store: Path) -> Path:
    """``model.path`` (relative: to the site file's folder), default ``model/`` beside the store."""
    raw = site.config.model.path
    return site.resolve(raw) if raw is not None else store.parent / "model"


def for_site(site: LoadedSite, store: Path | None, *, clock: Callable[[], float] = time.time) -> ModelWatcher | None:
    """The watcher of a site whose model is on (``model.enabled``; it reads ``store``), else None."""
    cfg = site.config
    if not cfg.model_enabled or store is None:
        return None
    from pue_monitor.sinks.sqlite import StoreReader

    def reader() -> Reader:
        return StoreReader(store)

    return ModelWatcher(reader, WatchSettings.from_config(cfg, model_dir(site, store)), clock=clock)


def off_status(cfg: SiteConfig) -> dict[str, Any]:
    """The /status model section of a site without the model (why, said plainly)."""
    if cfg.model.enabled is False:
        why = "model.enabled is false"
    elif not cfg.store_enabled:
        why = "no embedded store to learn from"
    elif not cfg.model_weather:
        why = "cooling.points names no outdoor temperature and relative humidity"
    else:
        why = (
            f"store.keep_readings_days ({cfg.store.keep_readings_days:g}) keeps less weather than the "
            f"{cfg.model.min_history_days:g} days the first model needs"
        )
    return {"state": "off", "message": f"expected-PUE model off ({why}): {RULES_ONLY}"}
