"""Throughput of the energy engine: batch interval_energy + rollup, and the live pipeline.

    python -m benchmarks.bench_pipeline [--meters 1000 --minutes 1440 --repeat 3]

Synthesises 1-minute counter readings (with jitter) for N meters — 1 facility incomer per 50,
IT meters at the three measurement locations, cooling, distribution, lighting; every 7th meter
has a Wh counter that rolls over during the run — and times ``interval_energy`` + ``rollup``
on the whole batch (one core: numpy only, no threads of our own), once clean and once with
traps (one lone zero and one 1e9 spike per meter, all judged and bridged). Then feeds
200 meters x 4 hours to :class:`LivePipeline` one reading at a time with ``close`` every
simulated minute, as the service does, and reports the cost per reading. Prints markdown tables.

``--scale`` (issue 13): the live pipeline over 100 / 1,000 / 10,000 meters polled every 1 s and
10 s, run as the service runs it: readings handed over meter by meter on an asyncio loop, and
every tick (``min(10 s, poll)``) the step's ``close`` + ``drain_events`` in a worker thread, then
``instant`` on the loop; a ticker task on the loop measures its lag while the step runs (the
worst time the loop was not available to the collectors), and again for 3 s with the loop idle
(what the machine's other jobs alone cause). One meter of the model never answers (as on any
real site). No output at all: what is measured is the pipeline, not SQLite or InfluxDB writes.
Prints µs of pipeline CPU per meter-second (ingest + step, after a 2-minute warm-up), step
median/max (wall, in the worker thread), the worst on-loop time (the larger of that loop lag,
instant's CPU and one hand-over's CPU, 1 % of the meters), and the single-numpy-pass
reference: the batch ``interval_energy`` + ``rollup`` over the same readings in one call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
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


def _scale_specs(meters: int):
    specs, *_ = synthesise(meters, 2)
    return specs


def run_scale(
    meters: int, poll: float, *, warm_min: float = 2.0, measure_min: float = 4.0, seed: int = 0, silent: int = 1
) -> dict:
    """One scale scenario (see the module docs); returns its figures. ``silent`` meters of the
    model never answer (as on any real site: a meter down, one configured but not wired)."""
    from pue_monitor.pipeline.live import LivePipeline
    from pue_monitor.readings import Reading

    specs = _scale_specs(meters)
    keys = [(s.meter, "energy") for s in specs]
    pipe = LivePipeline(dict(zip(keys, specs, strict=True)), step=60.0)
    rng = np.random.default_rng(seed)
    kw = np.array([s.max_power_kw / 10.0 for s in specs])
    raw = np.array([1000.0 if s.rollover else 1.0 for s in specs])  # Wh counters
    base = rng.uniform(0, 1e5, meters)
    phase = rng.uniform(0, poll, meters)
    order = np.argsort(phase)[: meters - silent]  # meters in the order their poll completes
    names = [k[0] for k in keys]
    grace = poll + 3.0  # the service's: max interval + timeout x (retries + 1) + 1, 1 s timeout, 1 retry
    tick = min(10.0, poll)
    t_warm = T0 + warm_min * 60.0
    t_end = t_warm + measure_min * 60.0
    group = max(1, meters // 100)  # meters handed over between two yields to the loop

    def values(t: np.ndarray) -> np.ndarray:
        e = base + kw * (t - T0) / 3600.0 * (1.0 + 0.01 * np.sin(t / 37.0))  # kWh, slowly varying
        v = e * raw
        return np.where(raw > 1, np.mod(v, 1e6), v)

    res = {"ingest_s": 0.0, "step_cpu_s": 0.0, "steps": [], "loop_max": 0.0, "readings": 0,
           "ingest_max": 0.0, "instant_max": 0.0}  # fmt: skip
    batch_sid: list[np.ndarray] = []
    batch_ts: list[np.ndarray] = []
    batch_val: list[np.ndarray] = []

    def work(now: float) -> tuple[float, float]:
        c0 = time.thread_time()
        pipe.close(now, grace)
        pipe.drain_events()
        return time.thread_time() - c0, 0.0

    async def main() -> None:
        running = True

        async def ticker() -> None:
            while running:
                t0 = time.perf_counter()
                await asyncio.sleep(0.001)
                lag = time.perf_counter() - t0 - 0.001
                if measuring and in_step:
                    lags.append(lag)

        measuring = in_step = False
        lags: list[float] = []
        tk = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        k = 0
        next_tick = T0 + tick
        while True:
            t_round = T0 + k * poll
            if t_round >= t_end:
                break
            measuring = t_round >= t_warm
            ts = np.round(t_round + phase, 3)
            val = values(ts)
            rd = [Reading(t, "s", names[i], "energy", v, "kWh") for i, t, v in
                  zip(order.tolist(), ts[order].tolist(), val[order].tolist(), strict=True)]  # fmt: skip
            if measuring:
                batch_sid.append(order)
                batch_ts.append(ts[order])
                batch_val.append(val[order])
                res["readings"] += order.size
            for g in range(0, order.size, group):  # the collectors hand over meter by meter
                t0 = time.thread_time()
                for r in rd[g : g + group]:
                    pipe.ingest([r])
                dt = time.thread_time() - t0
                if measuring:
                    res["ingest_s"] += dt
                    res["ingest_max"] = max(res["ingest_max"], dt)
                await asyncio.sleep(0)
            k += 1
            while next_tick <= T0 + k * poll:  # the service's ticks until the next round
                now = next_tick + 0.5
                t0 = time.perf_counter()
                in_step = True
                cpu, _ = await loop.run_in_executor(None, work, now)
                in_step = False
                c0 = time.thread_time()
                pipe.instant()  # on the loop, after the outputs' flush
                on_loop = time.thread_time() - c0
                if measuring:
                    res["step_cpu_s"] += cpu + on_loop
                    res["steps"].append(time.perf_counter() - t0)
                    res["instant_max"] = max(res["instant_max"], on_loop)
                next_tick += tick
        measuring, in_step = True, True  # the loop idle: the lag the machine alone causes
        res["step_lags"], lags = lags, []
        await asyncio.sleep(3.0)
        res["idle_lags"] = lags
        running = False
        await tk

    asyncio.run(main())
    seconds = measure_min * 60.0
    meter_s = order.size * seconds  # meter-seconds measured (of the meters that answer)
    sid = np.concatenate(batch_sid)
    ts = np.concatenate(batch_ts)
    val = np.concatenate(batch_val)
    n = int(measure_min)
    t0 = time.perf_counter()
    ie = interval_energy(specs, sid, ts, val, start=t_warm, step=60.0, n=n)
    rollup(ie, specs)
    numpy_s = time.perf_counter() - t0
    steps = res["steps"]
    step_lags = np.asarray(res["step_lags"] or [0.0])
    idle_lags = np.asarray(res["idle_lags"] or [0.0])
    return {
        "benchmark": "pipeline.live_scale",
        "meters": meters,
        "silent": silent,
        "poll_s": poll,
        "readings": res["readings"],
        "us_per_meter_s": (res["ingest_s"] + res["step_cpu_s"]) / meter_s * 1e6,
        "ingest_us_per_reading": res["ingest_s"] / res["readings"] * 1e6,
        "step_median_ms": statistics.median(steps) * 1e3,
        "step_max_ms": max(steps) * 1e3,
        "loop_max_ms": max(float(step_lags.max()), res["ingest_max"], res["instant_max"]) * 1e3,
        "loop_lag_ms": float(step_lags.max()) * 1e3,
        "loop_lag_p99_ms": float(np.percentile(step_lags, 99)) * 1e3,
        "idle_lag_ms": float(idle_lags.max()) * 1e3,
        "idle_lag_p99_ms": float(np.percentile(idle_lags, 99)) * 1e3,
        "instant_max_ms": res["instant_max"] * 1e3,
        "ingest_max_ms": res["ingest_max"] * 1e3,
        "numpy_us_per_meter_s": numpy_s / meter_s * 1e6,
        "threads": threading.active_count(),
    }


def scale_table(results: list[dict]) -> str:
    lines = [
        "| meters | poll | readings | µs per meter-second | of which ingest µs/reading | step median ms "
        "| step max ms | worst on-loop ms (loop lag during the step / instant CPU / one hand-over CPU) "
        "| loop lag p99 during steps ms | loop lag, loop idle: max / p99 ms | one numpy pass µs per meter-second |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['meters']:,} | {r['poll_s']:g} s | {r['readings']:,} | {r['us_per_meter_s']:.2f} | "
            f"{r['ingest_us_per_reading']:.2f} | {r['step_median_ms']:.1f} | {r['step_max_ms']:.1f} | "
            f"{r['loop_max_ms']:.1f} ({r['loop_lag_ms']:.1f} / {r['instant_max_ms']:.1f} / {r['ingest_max_ms']:.1f}) | "
            f"{r['loop_lag_p99_ms']:.1f} | {r['idle_lag_ms']:.1f} / {r['idle_lag_p99_ms']:.1f} | "
            f"{r['numpy_us_per_meter_s']:.2f} |"
        )
    return "\n".join(lines)


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
    ap.add_argument("--scale", action="store_true", help="only the live pipeline at 100 / 1,000 / 10,000 meters")
    ap.add_argument("--no-scale", action="store_true", help="without the live pipeline at scale")
    ap.add_argument("--scale-meters", type=int, nargs="*", default=[100, 1000, 10000])
    ap.add_argument("--scale-polls", type=float, nargs="*", default=[1.0, 10.0])
    ap.add_argument("--scale-minutes", type=float, default=4.0, help="measured (after 2 minutes of warm-up)")
    ap.add_argument("--scale-silent", type=int, default=1, help="meters of the model that never answer")
    a = ap.parse_args(argv)
    if a.scale:
        _scale(a)
        return
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
    if not a.no_scale:
        print()
        _scale(a)


def _scale(a: argparse.Namespace) -> None:
    rows = []
    for poll in a.scale_polls:
        for m in a.scale_meters:
            rows.append(run_scale(m, poll, measure_min=a.scale_minutes, silent=a.scale_silent))
            print(scale_table(rows[-1:]).splitlines()[-1], flush=True)
    print(f"\nLive pipeline at scale (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}):\n")
    print(scale_table(rows))
    print("\ntarget: <= 5 µs per meter-second and worst on-loop < 20 ms at 10,000 meters / 1 s")


if __name__ == "__main__":
    main()
