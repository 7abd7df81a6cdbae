"""`pue evaluate`: the evaluation harness on the simulator (issue 10, scope 7)."""

from __future__ import annotations

import argparse
import json
import time

from pue_monitor.cli.common import EXIT_FAILURE, EXIT_OK, Subparsers
from pue_monitor.errors import UsageError


def _days(text: str) -> int:
    from pue_monitor.models.harness import MIN_DAYS

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if v < MIN_DAYS:
        raise argparse.ArgumentTypeError(f"{v} is too short: at least {MIN_DAYS} days (3 training weeks + 1 held out)")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v}: a seed is 0 or more")
    return v


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pue_monitor.models import harness

    if args.clean_hours <= 0:
        raise UsageError(f"--clean-hours {args.clean_hours:g}: must be greater than 0")
    t0 = time.perf_counter()
    rep = harness.run(days=args.days, seed=args.seed, sensors=not args.no_sensors, clean_hours=args.clean_hours)
    total = time.perf_counter() - t0
    if args.json:
        print(json.dumps({**rep.as_dict(), "elapsed_s": total}, indent=2))
    else:
        start = time.strftime("%Y-%m-%d", time.gmtime(rep.start))
        print(
            f"simulated site, {rep.days} days from {start} (seed {rep.seed}); model trained on 3 weeks in 4 "
            f"({rep.train_samples:,} 15-min intervals), scored on the {len(rep.test_weeks)} held-out weeks"
        )
        print(harness.table(rep))
        if not rep.sensor_available and not args.no_sensors:
            print(
                f"sensor-fault rows: {harness.NOT_AVAILABLE} "
                f"(no FaultDetector in {harness.DETECTOR_MODULE}); they are not judged"
            )
        secs = ", ".join(f"{k} {v:.1f} s" for k, v in rep.seconds.items())
        print(f"{'all targets met' if rep.passed else 'TARGETS MISSED'}; {total:.1f} s ({secs})")
    return EXIT_OK if rep.passed else EXIT_FAILURE


def add_parsers(sub: Subparsers) -> None:
    p = sub.add_parser(
        "evaluate",
        help="the evaluation harness: a simulated site with injected faults, judged against the targets",
        description="Simulate a site (15-minute intervals from the simulator's physics), train the expected-PUE "
        "model on three weeks in four, and inject faults into held-out weeks: print per fault the detection "
        "delay, the false alarms per site-month on fault-free weeks and the model's error, each beside its "
        "target (PASS/FAIL). Sensor faults (stuck meter, counter reset, glitch) are polled reading by reading "
        "through the pipeline and the sensor-fault detector. Exit 0 when every judged target is met, 1 when "
        "one is missed.",
    )
    p.add_argument("--days", type=_days, default=364, help="simulated days from 1 May 2026 (default 364, min 28)")
    p.add_argument("--seed", type=_seed, default=0, help="simulator seed: weather and load noise (default 0)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    p.add_argument("--no-sensors", action="store_true", help="skip the sensor-fault rows (model side only)")
    p.add_argument(
        "--clean-hours",
        type=float,
        default=24.0,
        metavar="H",
        help="hours of fault-free polling for the sensor-fault false alarms (default 24)",
    )
    p.set_defaults(func=cmd_evaluate)
