"""Expected-PUE model: training time, scoring time and the evaluation harness on the simulator.

    python -m benchmarks.bench_model [--repeat 3]

1. Simulates a year of 15-minute intervals straight from the simulator's physics (1-minute
   sampling; not timed in the training figure) and times :func:`pue_monitor.models.baseline.fit`
   on all of it (two fits: one without the held-out weeks for the error statistics, one on all).
2. Times scoring a day of 1-minute intervals (1,440 rows): features (psychrometrics, free-cooling
   fraction) + expected PUE, and the drift assessment of that day.
3. The harness (:mod:`pue_monitor.models.evaluate`): trained on three weeks in four, scored on the
   held-out weeks: MAE, false alarms per site-month, detection delay of a 3 % PUE rise, of a chiller
   COP losing 10 % over two weeks, and an IT load step (+15 %, must raise nothing). Also a second
   simulated year (2027, new weather) run month by month through the detector: false alarms.

Targets: training < 60 s, scoring < 50 ms, MAE <= 0.004, 3 % rise within 48 h, < 1 false alarm
per site-month, nothing on the IT step. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pue_monitor.models import baseline, drift, evaluate, simdata

DAY = 86400.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    y = simdata.YEAR_2026

    t0 = time.perf_counter()
    year = simdata.intervals(y, 364)
    sim_s = time.perf_counter() - t0
    fits = []
    model = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model = baseline.fit(year, utc_offset_s=evaluate.SIM_UTC_OFFSET_S)
        fits.append(time.perf_counter() - t0)
    assert model is not None
    day = simdata.intervals(y + 200 * DAY, 1, interval_s=60.0)
    scores, assess = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        oh = model.expected_overhead_kwh(day)
        scores.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        drift.assess(day, oh, model.errors.residual_std)
        assess.append(time.perf_counter() - t0)

    print("| what | rows | " + " | ".join(f"run {i + 1} s" for i in range(args.repeat)) + " |")
    print("|---|---:|" + "---:|" * args.repeat)
    print(
        f"| simulate a year of 15-min intervals (1-min sampling) | {len(year):,} | {sim_s:.3f} |"
        + " |" * (args.repeat - 1)
    )
    for name, rows, times in (
        ("train (`baseline.fit`) on the year", f"{len(year):,}", fits),
        ("score a day of minutes (expected overhead)", f"{len(day):,}", scores),
        ("drift assessment of that day", f"{len(day):,}", assess),
    ):
        print(f"| {name} | {rows} | " + " | ".join(f"{t:.4f}" for t in times) + " |")

    rep, m = evaluate.evaluate()
    print()
    print("| harness (simulator, 2026; trained on 3 weeks in 4) | figure | target |")
    print("|---|---:|---|")
    print(f"| MAE of expected 15-min PUE, {rep.test_samples:,} held-out intervals | {rep.mae:.5f} | <= 0.004 |")
    print(f"| 95th percentile of the absolute error | {rep.p95_abs:.5f} | |")
    print(
        f"| false alarms on {rep.test_hours / 730:.1f} fault-free held-out site-months "
        f"| {rep.false_alarms} ({rep.false_alarms_per_site_month:.2f} per site-month) | < 1 per site-month |"
    )
    targets = {"PUE +3 % (chiller COP)": "<= 48 h", "IT load step +15 %": "nothing"}
    for d in rep.detections:
        got = "not detected" if d.delay_h is None else f"{d.delay_h:.0f} h"
        if d.began is not None:
            got += f", onset estimate {(d.began - d.onset) / 3600:+.0f} h, size {d.size:.4f}"
        print(f"| {d.name}: detection delay | {got} | {targets.get(d.name, 'reported')} |")
    print(f"| COP loss that makes +3 % PUE (mid-July) | {rep.cop_loss_3pct:.2f} COP points | |")

    y2 = y + 365 * DAY
    other = simdata.intervals(y2, 360)
    fa = 0
    for month in range(12):
        sub = other.select((other.start >= y2 + month * 30 * DAY) & (other.start < y2 + (month + 1) * 30 * DAY))
        fa += len(drift.assess(sub, m.expected_overhead_kwh(sub), m.errors.residual_std).episodes)
    err = other.pue - m.expected_pue(other)
    print(f"| 2027 (new weather), 12 x 30 days: MAE | {float(np.mean(np.abs(err))):.5f} | <= 0.004 |")
    print(f"| 2027: false alarms | {fa} ({fa / 12:.2f} per site-month) | < 1 per site-month |")


if __name__ == "__main__":
    main()
