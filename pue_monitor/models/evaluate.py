"""Evaluation harness of the expected-PUE model and drift detection on the simulator.

A simulated year of 15-minute intervals (:mod:`.simdata`); the model is trained on all weeks
but every ``holdout_every``-th and scored on those held-out weeks:

- **MAE** of the expected interval PUE on the held-out weeks (target <= 0.004);
- **false alarms** per site-month: drift episodes on the fault-free held-out weeks (each week
  run through the CUSUM on its own), per 730 h;
- **3 % rise**: the chiller COP loss that raises the true PUE of the two days after onset by 3 %
  (:func:`cop_loss_for_rise`) is injected mid-week in a held-out summer week (ramp of 2 h);
  the detection delay is from the onset to the end of the bucket where the CUSUM crosses h;
- **COP -10 % over two weeks** (the issue's slow fault): linear COP loss from the same onset,
  watched for 14 days;
- **IT load step** +15 % (not a fault): must raise nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pue_monitor.models import baseline, drift, simdata
from pue_monitor.models.data import Intervals
from pue_monitor.simulator.physics import Faults, SimParams

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
MONTH_H = 730.0
#: the simulated site is in UTC+8
SIM_UTC_OFFSET_S = 8 * 3600.0


def weeks_of(iv: Intervals, origin: float) -> np.ndarray:
    return ((iv.start - origin) // WEEK_S).astype(np.int64)


def cop_loss_for_rise(start: float, since: float, rise: float, *, seed: int = 0, window_days: float = 2.0) -> float:
    """COP points of loss (2-hour ramp from ``since``) that raise the true PUE of
    ``[since, since + window_days]`` by ``rise`` (relative), found by bisection."""
    base = simdata.intervals(since, window_days, seed=seed)
    p0 = float(np.sum(base.facility_kwh) / np.sum(base.it_kwh))
    lo, hi = 0.0, SimParams().cop_max - 1.0
    for _ in range(30):
        mid = (lo + hi) / 2.0
        f = simdata.intervals(since, window_days, seed=seed, faults=simdata.chiller_fault(since, mid))
        p = float(np.sum(f.facility_kwh) / np.sum(f.it_kwh))
        if p / p0 - 1.0 < rise:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class Detection:
    name: str
    onset: float
    detected_at: float | None
    began: float | None
    size: float | None
    episodes: int

    @property
    def delay_h(self) -> float | None:
        return None if self.detected_at is None else (self.detected_at - self.onset) / 3600.0


def run_fault(
    model: baseline.ExpectedPue,
    name: str,
    week_start: float,
    onset: float,
    faults: Faults,
    *,
    days: float = 7.0,
    seed: int = 0,
    settings: drift.CusumSettings | None = None,
) -> Detection:
    """Simulate ``days`` from ``week_start`` with ``faults`` and run the drift detector."""
    iv = simdata.intervals(week_start, days, seed=seed, faults=faults)
    rep = drift.assess(iv, model.expected_overhead_kwh(iv), model.errors.residual_std, settings)
    after = [e for e in rep.episodes if e.detected_at > onset]
    first = after[0] if after else None
    return Detection(
        name,
        onset,
        first.detected_at if first else None,
        first.began if first else None,
        first.size if first else None,
        len(rep.episodes),
    )


@dataclass(frozen=True)
class Report:
    train_samples: int
    test_samples: int
    mae: float
    p95_abs: float
    false_alarms: int
    test_hours: float
    detections: list[Detection]
    cop_loss_3pct: float

    @property
    def false_alarms_per_site_month(self) -> float:
        return self.false_alarms / (self.test_hours / MONTH_H)


def split(iv: Intervals, origin: float, holdout_every: int) -> tuple[Intervals, Intervals, np.ndarray]:
    wk = weeks_of(iv, origin)
    test = wk % holdout_every == holdout_every - 1
    return iv.select(~test), iv.select(test), np.unique(wk[test])


def evaluate(
    *,
    start: float = simdata.YEAR_2026,
    days: int = 364,
    holdout_every: int = 4,
    seed: int = 0,
    fault_week: int | None = None,
    model: baseline.ExpectedPue | None = None,
) -> tuple[Report, baseline.ExpectedPue]:
    """Train (unless ``model`` is given) and run every check; see the module doc."""
    iv = simdata.intervals(start, days, seed=seed)
    train, test, test_weeks = split(iv, start, holdout_every)
    if model is None:
        model = baseline.fit(train, utc_offset_s=SIM_UTC_OFFSET_S)
    err = test.pue - model.expected_pue(test)
    fa = 0
    for w in test_weeks:
        wk = test.select((test.start >= start + w * WEEK_S) & (test.start < start + (w + 1) * WEEK_S))
        fa += len(drift.assess(wk, model.expected_overhead_kwh(wk), model.errors.residual_std).episodes)
    if fault_week is None:  # the held-out week nearest mid-July (chillers run then)
        fault_week = int(test_weeks[np.argmin(np.abs(test_weeks - 28))])
    w0 = start + fault_week * WEEK_S
    onset = w0 + 3.5 * DAY_S
    loss = cop_loss_for_rise(start, onset, 0.03, seed=seed)
    cop = SimParams().cop_design
    detections = [
        run_fault(model, "PUE +3 % (chiller COP)", w0, onset, simdata.chiller_fault(onset, loss), seed=seed),
        run_fault(
            model,
            "chiller COP -10 % over 14 days",
            w0,
            onset,
            Faults(chiller_degradation=((onset, 0.10 * cop / 14.0),)),
            days=17.5,
            seed=seed,
        ),
        run_fault(model, "IT load step +15 %", w0, onset, simdata.with_it_step(None, onset, 1.15), seed=seed),
    ]
    rep = Report(
        train_samples=len(train),
        test_samples=len(test),
        mae=float(np.mean(np.abs(err))),
        p95_abs=float(np.percentile(np.abs(err), 95)),
        false_alarms=fa,
        test_hours=float(np.sum(test.hours)),
        detections=detections,
        cop_loss_3pct=loss,
    )
    return rep, model
