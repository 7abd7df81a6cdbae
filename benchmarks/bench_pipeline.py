"""Throughput of the energy engine: batch interval_energy + rollup, and the live pipeline.

    python -m benchmarks.bench_pipeline [--meters 1000 --minutes 1440 --repeat 3]

Synthesises 1-minute counter readings (with jitter) for N meters — 1 facility incomer per 50,
IT meters at the three measurement locations, cooling, distribution, lighting; every 7th meter
has a Wh counter that rolls over during the run — and times ``interval_energy`` + ``rollup``
on the whole batch (one core: numpy only, no threads of our own), once clean and once with
traps (one lone zero and one 1e9 spike per meter, all judged and bridged). Then feeds
200 meters x 4 hours to :class:`LivePipeline` one reading at a time with ``close`` every
simulated minute, as the service does, and reports the cost per reading. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pue_monitor.config.models import ITLocation, Role
from pue_monitor.pipeline.energy import SeriesSpec, interval_energy
from pue_monitor.pipeline.events import EventKind
from pue_monitor.pipeline.pue import rollup

T0 = 1_700_000_040.0


def synthesise(meters: int, minutes: int, seed: int = 0, traps: bool = False):
    """specs, sid, ts, value (unsorted: shuffled within each minute, as collectors deliver).

    ``traps``: one reading of every meter reads 0 and another is 1e9 too high."""
    rng = np.random.default_rng(seed)
    specs: list[SeriesSpec] = []
    kw = np.empty(meters)
    for i in range(meters):
        if i % 50 == 0:
            role, loc, p = Role.FACILITY_INPUT, None, 1500.0
        elif i % 5 == 1:
            role, loc, p = Role.COOLING, None, 30.0
        elif i % 25 == 2:
            role, loc, p = Role.POWER_DISTRIBUTION, None, 5.0
        elif i % 25 == 3:
            role, loc, p = Role.LIGHTING, None, 1.0
        else:
            role = Role.IT
            loc = tuple(ITLocation)[i % 3]
            p = 20.0
        wh = i % 7 == 0
        specs.append(
            SeriesSpec(f"m{i:05d}", role, loc, "counter", 1e-3 if wh else 1.0,
                       1e6 if wh else None, 90.0, 10.0 * p)
        )  # fmt: skip
        kw[i] = p
    t = T0 + 60.0 * np.arange(minutes)[None, :] + rng.uniform(0, 2, (meters, minutes))
    power = kw[:, None] * (1 + 0.1 * rng.standard_normal((meters, minutes)))
    inc = np.maximum(power, 0) / 60.0  # kWh per minute
    cum = np.cumsum(inc, axis=1)
    scale = np.array([1000.0 if s.rollover else 1.0 for s in specs])[:, None]
    start_v = rng.uniform(0, 1e6, meters)[:, None] * (scale > 1)  # Wh counters start anywhere
    value = start_v + cum * scale
    value = np.where(scale > 1, np.mod(value, 1e6), value)
    if traps:
        rows = np.arange(meters)
        k0 = rng.integers(1, minutes // 2 - 1, meters)
        k1 = rng.integers(minutes // 2, minutes - 2, meters)
        value[rows, k0] = 0.0
        value[rows, k1] += 1e9
    sid = np.broadcast_to(np.arange(meters)[:, None], (meters, minutes))
    order = np.argsort(t.T.ravel(), kind="stable")  # time-major, as readings arrive
    return specs, sid.T.ravel()[order], t.T.ravel()[order], value.T.ravel()[order]


def run(meters: int = 1000, minutes: int = 1440, repeat: int = 3, traps: bool = False) -> list[dict]:
    """Time interval_energy + rollup; one dict per repetition (readings, seconds, readings/s)."""
    specs, sid, ts, value = synthesise(meters, minutes, traps=traps)
    n = minutes - 1
    results = []
    for r in range(repeat):
        t0 = time.perf_counter()
        ie = interval_energy(specs, sid, ts, value, start=T0 + 60.0, step=60.0, n=n)
        t1 = time.perf_counter()
        ivs = rollup(ie, specs)
        t2 = time.perf_counter()
        assert len(ivs) == n
        assert not traps or ie.counts()[EventKind.GLITCH] == 2 * meters
        results.append(
            {
                "benchmark": "pipeline.interval_energy+rollup" + (" (traps)" if traps else ""),
                "run": r + 1,
                "meters": meters,
                "minutes": minutes,
                "readings": int(sid.size),
                "intervals": n,
                "energy_s": t1 - t0,
                "rollup_s": t2 - t1,
                "seconds": t2 - t0,
                "readings_per_s": sid.size / (t2 - t0),
            }
        )
    return results


def run_live(meters: int = 200, minutes: int = 240, repeat: int = 3) -> list[dict]:
    """Cost per reading of :class:`LivePipeline`: readings fed one poll round at a time (as
    the collectors deliver them) and ``close`` once per simulated minute, as the service does.
    """
    from pue_monitor.pipeline.live import LivePipeline
    from pue_monitor.readings import Reading

    specs, sid, ts, value = synthesise(meters, minutes)
    keys = [(s.meter, "energy") for s in specs]
    readings = [
        Reading(float(t), "s", keys[i][0], "energy", float(v), "kWh")
        for i, t, v in zip(sid.tolist(), ts.tolist(), value.tolist(), strict=True)
    ]
    per_minute = [readings[k * meters : (k + 1) * meters] for k in range(minutes)]
    results = []
    for r in range(repeat):
        pipe = LivePipeline(dict(zip(keys, specs, strict=True)), step=60.0, horizon=3600.0)
        t0 = time.perf_counter()
        for k, batch in enumerate(per_minute):
            for reading in batch:  # the service hands over each poll's readings
                pipe.ingest([reading])
            pipe.close(now=T0 + 60.0 * (k + 1) + 5.0, grace=63.0)
        t1 = time.perf_counter()
        results.append(
            {
                "benchmark": "pipeline.live",
                "run": r + 1,
                "meters": meters,
                "minutes": minutes,
                "readings": len(readings),
                "seconds": t1 - t0,
                "us_per_reading": (t1 - t0) / len(readings) * 1e6,
            }
        )
    return results


def live_table(results: list[dict]) -> str:
    lines = ["| run | meters | readings | seconds | µs/reading |", "|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['run']} | {r['meters']} | {r['readings']:,} | {r['seconds']:.3f} | {r['us_per_reading']:.2f} |"
        )
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    lines = [
        "| run | meters | readings | interval_energy s | rollup s | seconds | readings/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['run']}{' traps' if 'traps' in r['benchmark'] else ''} | {r['meters']} | {r['readings']:,} | "
            f"{r['energy_s']:.3f} | "
            f"{r['rollup_s']:.3f} | {r['seconds']:.3f} | {r['readings_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--minutes", type=int, default=1440)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    res = run(a.meters, a.minutes, a.repeat)
    res_traps = run(a.meters, a.minutes, a.repeat, traps=True)
    print(table(res + res_traps))
    best = max(r["readings_per_s"] for r in res)
    best_t = max(r["readings_per_s"] for r in res_traps)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"\nbest {best:,.0f} readings/s clean, {best_t:,.0f} with traps (target >= 500,000; OMP_NUM_THREADS={threads})"
    )
    live = run_live(repeat=a.repeat)
    print("\nLive pipeline, one reading at a time, close() every simulated minute:\n")
    print(live_table(live))
    print(f"\nbest {min(r['us_per_reading'] for r in live):.2f} µs per reading")


if __name__ == "__main__":
    main()
