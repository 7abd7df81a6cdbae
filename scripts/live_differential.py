#!/usr/bin/env python3
"""Differential check of the live pipeline against another version of it: random scenarios.

    PYTHONPATH=/path/to/old/checkout python scripts/live_differential.py 0 200 > old.txt
    PYTHONPATH=/path/to/this/checkout python scripts/live_differential.py 0 200 > new.txt
    diff old.txt new.txt

Run it from outside both checkouts (``python -m`` or the current directory would put this
checkout's ``pue_monitor`` first). Each seed builds a random site (2-7 meters, counters with and
without rollover, some power series), random polls (1/5/10 s), dead stretches, zeros, spikes,
NaN and negative power, equal-stamp duplicates, late and out-of-window readings, a random
delivery delay, tick, grace and horizon, and sometimes a configuration reload (respec) half
way; it prints a digest of everything the pipeline gave: every returned interval (all
fields), every event, instant values, ``buffered`` and ``window`` after every tick. Issue 13's
rework was checked this way against commit e79e775 on seeds 0-259: all identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys

import numpy as np

from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.energy import SeriesSpec
from pue_monitor.pipeline.live import LivePipeline
from pue_monitor.readings import Reading

T0 = 1_700_000_040.0
ROLES = [Role.FACILITY_INPUT, Role.IT, Role.COOLING, Role.IT, Role.LIGHTING, Role.IT, Role.COOLING, Role.OTHER]


def scenario(seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    specs: dict[tuple[str, str], SeriesSpec] = {}
    for m in range(int(rng.integers(2, 8))):
        role = ROLES[m]
        loc = ITLocation.PDU_OUTPUT if role is Role.IT else None
        roll = 1e4 if rng.random() < 0.3 else None
        max_kw = float(rng.choice([100.0, 1000.0, math.inf]))
        specs[(f"m{m}", "e")] = SeriesSpec(f"m{m}", role, loc, "counter", 1.0, roll, 15.0, max_kw, 0.01)
        if rng.random() < 0.3:
            specs[(f"m{m}", "p")] = SeriesSpec(f"m{m}", role, loc, "power", 1.0, None, 15.0, 1000.0)
    poll = float(rng.choice([1.0, 5.0, 10.0]))
    dur = 900.0
    rd: list[Reading] = []
    for (dev, pt), sp in specs.items():
        n = math.ceil(dur / poll)
        t = np.round(T0 + rng.uniform(0, poll) + np.arange(0, dur, poll) + rng.uniform(-0.1, 0.1, n), 2)
        kw = rng.uniform(5, 50)
        v = rng.uniform(0, 9000) + np.cumsum(np.full(t.size, kw * poll / 3600))
        if sp.rollover:
            v = np.mod(v, sp.rollover)
        if pt == "p":
            v = kw + rng.normal(0, 1, t.size)
        keep = np.ones(t.size, bool)
        if rng.random() < 0.4:  # a dead stretch
            a = int(rng.integers(0, t.size))
            keep[a : a + int(rng.integers(1, t.size // 2))] = False
        for j in range(t.size):
            if not keep[j]:
                continue
            val = float(v[j])
            x = rng.random()
            if x < 0.01:
                val = 0.0
            elif x < 0.02:
                val = val + 1e6
            elif x < 0.025:
                val = float("nan")
            elif x < 0.03 and pt == "p":
                val = -5.0
            rd.append(Reading(float(t[j]), "s", dev, pt, val, "kWh"))
            if rng.random() < 0.01:
                rd.append(Reading(float(t[j]), "s", dev, pt, val + float(rng.choice([0.0, 0.5, -0.5])), "kWh"))
            if rng.random() < 0.005:
                rd.append(Reading(float(t[j]) - rng.uniform(1, 100), "s", dev, pt, val, "kWh"))
            if rng.random() < 0.002:
                rd.append(Reading(float(t[j]) + float(rng.choice([-1e6, 1e6])), "s", dev, pt, val, "kWh"))
    deliver = np.array([r.ts for r in rd]) + rng.exponential(1.0, len(rd))
    order = np.argsort(deliver, kind="stable")
    rd = [rd[i] for i in order.tolist()]
    tick = float(rng.choice([1.0, 2.0, 5.0, 10.0]))
    grace = float(rng.choice([0.0, 3.0, poll + 2, 30.0]))
    horizon = float(rng.choice([300.0, 7 * 86400.0]))
    return specs, rd, deliver[order], tick, grace, horizon, rng


def run(seed: int) -> str:
    specs, rd, deliver, tick, grace, horizon, rng = scenario(seed)
    pipe = LivePipeline(specs, step=60.0, horizon=horizon)
    h = hashlib.sha256()
    i, t, end = 0, T0, T0 + 1000
    respec_at = T0 + 450 if rng.random() < 0.3 else None
    while t < end:
        t += tick
        while i < len(rd) and deliver[i] <= t:
            k = int(rng.integers(1, 4))
            pipe.ingest(rd[i : i + k])
            i += k
        if respec_at is not None and t >= respec_at:
            new = dict(specs)
            key = next(iter(new))
            sp = new.pop(key)
            new[key] = dataclasses.replace(sp, role=Role.OTHER, it_location=None) if sp.role is not Role.IT else sp
            new[("zz", "e")] = SeriesSpec("zz", Role.COOLING, None, "counter", 1.0, None, 15.0)
            try:
                h.update(repr(pipe.respec(new, now=t)).encode())
            except ValueError as e:
                h.update(str(e).encode())
            respec_at = None
        for iv in pipe.close(now=t, grace=grace):
            h.update(repr(sorted(dataclasses.asdict(iv).items())).encode())
        for e in pipe.drain_events():
            h.update(repr((e.ts, e.device, e.point, str(e.kind), repr(e.value), e.detail)).encode())
        if rng.random() < 0.5:
            ip = pipe.instant()
            h.update(repr((ip.ts, sorted(ip.power_by_role.items()), ip.pue)).encode())
        h.update(repr((pipe.buffered, pipe.window)).encode())
    return h.hexdigest()[:16]


def main() -> int:
    lo, hi = (int(a) for a in sys.argv[1:3]) if len(sys.argv) >= 3 else (0, 50)
    for seed in range(lo, hi):
        print(seed, run(seed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
