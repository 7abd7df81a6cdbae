"""Expected-PUE model: training time, scoring time and the evaluation harness on the simulator.

    python -m benchmarks model            (or: python -m benchmarks.bench_model [--repeat 3] [--seed 0])

1. Simulates a year of 15-minute intervals straight from the simulator's physics (1-minute
   sampling; not timed in the training figure) and times :func:`pue_monitor.models.baseline.fit`
   on all of it (two fits: one without the held-out weeks for the error statistics, one on all).
2. Times scoring a day of 1-minute intervals (1,440 rows): features (psychrometrics, free-cooling
   fraction) + expected PUE, and the drift assessment of that day.
3. The evaluation harness (:mod:`pue_monitor.models.harness`, the same as ``pue evaluate``): a
   simulated year from 1 May 2026, the model trained on three weeks in four; per fault the
   detection delay, the false alarms per site-month on the fault-free held-out weeks and the
   model's error, each beside its target (PASS/FAIL); the sensor-fault rows run reading by reading
   through the pipeline and the sensor-fault detector. Then a second simulated year (new weather)
   run month by month through the drift detector: MAE and false alarms.

Targets: training < 60 s, scoring < 50 ms, and the harness targets. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pue_monitor.models import baseline, drift, evaluate, harness, simdata

DAY = 86400.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="simulator seed of the harness (default 0)")
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

    t0 = time.perf_counter()
    rep = harness.run(days=364, seed=args.seed)
    total = time.perf_counter() - t0
    print()
    print(
        f"Harness (`pue evaluate --seed {args.seed}`): {rep.days} days from 2026-05-01, trained on 3 weeks in 4 "
        f"({rep.train_samples:,} intervals), {total:.1f} s in all ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in rep.seconds.items())
        + ")"
    )
    print()
    print(harness.table(rep))
    m = rep.model
    assert m is not None
    y2 = rep.start + 365 * DAY
    other = simdata.intervals(y2, 360, seed=args.seed)
    fa = 0
    for month in range(12):
        sub = other.select((other.start >= y2 + month * 30 * DAY) & (other.start < y2 + (month + 1) * 30 * DAY))
        fa += len(drift.assess(sub, m.expected_overhead_kwh(sub), m.errors.residual_std).episodes)
    err = other.pue - m.expected_pue(other)
    print(f"| the next year (new weather), 12 x 30 days: MAE | {float(np.mean(np.abs(err))):.5f} | <= 0.004 | |")
    print(f"| the next year: drift false alarms | {fa} ({fa / 12:.2f} per site-month) | < 1 per site-month | |")


if __name__ == "__main__":
    main()
