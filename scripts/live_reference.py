#!/usr/bin/env python3
"""Write the reference of the replayed simulated day (tests/data/live_day_reference.json.gz).

    PYTHONPATH=. python scripts/live_reference.py [--check]

Replays ``tests.test_live_pipeline.simulated_day()`` (one simulated day, 15 s polls, with a
counter reset, a wrap, dead and stuck meters, spikes, zeros, a glitch run, a conflicting
duplicate, a late replay) through :class:`~pue_monitor.pipeline.live.LivePipeline` as the
service feeds it, and stores every interval it returned, every event and every instant value.

The stored file was made with the pipeline as it was BEFORE issue 13's rework (commit e79e775,
``git show e79e775:pue_monitor/pipeline/live.py``); the test
``test_replayed_simulated_day_equals_the_reference_of_the_code_before_issue_13`` holds the new
pipeline to it bit for bit. To remake it from that code: check out e79e775's
``pue_monitor/pipeline/`` in a scratch worktree, copy this script and tests/test_live_pipeline.py
there, and run it. ``--check`` compares with the stored file instead of writing it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys

from tests.test_live_pipeline import DAY_REFERENCE, replay_day, simulated_day


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the stored reference")
    a = ap.parse_args()
    got = json.loads(json.dumps(replay_day(simulated_day())))
    if a.check:
        with gzip.open(DAY_REFERENCE, "rt") as f:
            same = json.load(f) == got
        print("same as the reference" if same else "DIFFERENT from the reference")
        return 0 if same else 1
    with gzip.open(DAY_REFERENCE, "wt") as f:
        json.dump(got, f, separators=(",", ":"))
    print(f"wrote {DAY_REFERENCE}: {len(got['intervals'])} intervals, {len(got['events'])} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
