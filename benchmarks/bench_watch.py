"""Cost of the live model watcher (models/watch.py) on a real store, and what the event loop sees.

    python -m benchmarks.bench_watch [--days 56] [--poll 60] [--repeat 5]

A store holding ``days`` of simulated 15-minute intervals (models/simdata.py) and the weather
station's readings every ``poll`` seconds (dry-bulb and RH: the rows the model reads besides the
intervals). Measured, wall time:

1. the first training (store read of the whole window, the two fits, save and directory swap),
   through :meth:`ModelWatcher.update` as the service runs it, while a 10 ms ticker runs on the
   event loop: the longest gap between its ticks says whether the loop was blocked;
2. the hourly scoring (store read of ``drift.window_days``, features, expected overhead, CUSUM and
   projection), median and max of ``repeat``;
3. the cold-start probe (how much history the store holds: intervals only), median of ``repeat``.

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DAY = 86400.0


def fill(path: Path, days: float, poll: float) -> float:
    """The store; returns the end of its history."""
    from pue_monitor.models import simdata
    from pue_monitor.pipeline.pue import PueInterval
    from pue_monitor.readings import Reading
    from pue_monitor.simulator.physics import Noise, SimParams
    from pue_monitor.sinks.sqlite import SqliteStore

    t0 = simdata.YEAR_2026 + 120 * DAY
    iv = simdata.intervals(t0, days)
    store = SqliteStore(path)
    rows = [
        PueInterval(float(s), float(e), float(f), float(i), {}, float(f / i), {}, 1, 1.0, 0.0, 0.0)
        for s, e, f, i in zip(iv.start, iv.end, iv.facility_kwh, iv.it_kwh, strict=True)
    ]
    store.upsert_intervals("b", "15m", rows, now=1.0)
    ts = t0 + np.arange(int(days * DAY / poll)) * poll + poll / 2
    wx = simdata.weather(ts, SimParams(), Noise.from_seed(0))
    for lo in range(0, ts.size, 200_000):
        sl = slice(lo, lo + 200_000)
        t_, db, rh = ts[sl], wx.dry_bulb_c[sl], wx.rh_pct[sl]
        readings = [Reading(float(t), "b", "wx", "t", float(v), "degC") for t, v in zip(t_, db, strict=True)]
        readings += [Reading(float(t), "b", "wx", "rh", float(v), "percent") for t, v in zip(t_, rh, strict=True)]
        store.write_readings(readings)
    store.close()
    return t0 + days * DAY


async def run(days: float, poll: float, repeat: int) -> list[tuple[str, str]]:
    from pue_monitor.config.models import CoolingPoints, PointRef
    from pue_monitor.models.data import default_cooling
    from pue_monitor.models.watch import ModelWatcher, WatchSettings
    from pue_monitor.sinks.sqlite import StoreReader

    with tempfile.TemporaryDirectory(prefix="pue-bench-watch-") as tmp:
        db = Path(tmp) / "store.sqlite"
        t = time.perf_counter()
        end = fill(db, days, poll)
        fill_s = time.perf_counter() - t
        points = CoolingPoints(
            outdoor_temperature=PointRef(device="wx", point="t"), relative_humidity=PointRef(device="wx", point="rh")
        )
        settings = WatchSettings(
            model_dir=Path(tmp) / "model",
            points=points,
            cooling=default_cooling(),
            timezone="Asia/Shanghai",
            history_days=days,
        )
        now = [end + 600.0]
        w = ModelWatcher(lambda: StoreReader(db), settings, clock=lambda: now[0])

        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.01)
                t = time.perf_counter()
                gaps.append(t - last)
                last = t

        tick = asyncio.create_task(ticker())
        t = time.perf_counter()
        await w.update(now[0])
        train_s = time.perf_counter() - t
        done.set()
        await tick
        st = w.status()
        assert st.state == "ready", st.message
        model = w.model
        assert model is not None
        scores = []
        for _ in range(repeat):
            t = time.perf_counter()
            await asyncio.to_thread(w._score, model, end)
            scores.append(time.perf_counter() - t)
        probes = []
        for _ in range(repeat):
            t = time.perf_counter()
            await asyncio.to_thread(w._history, end - days * DAY, end)
            probes.append(time.perf_counter() - t)
        n_readings = 2 * int(days * DAY / poll)
        return [
            ("store", f"{days:g} days: {model.samples:,} 15-min intervals, {n_readings:,} weather readings "
             f"(filled in {fill_s:.1f} s)"),
            ("first training (read + 2 fits + save + swap), in the worker thread", f"{train_s:.2f} s"),
            ("longest event-loop gap during it (10 ms ticker)", f"{max(gaps) * 1000:.0f} ms"),
            (f"hourly scoring: read {settings.drift_days:g} days + score + CUSUM, median / max of {repeat}",
             f"{statistics.median(scores) * 1000:.0f} / {max(scores) * 1000:.0f} ms"),
            (f"cold-start history probe, median of {repeat}", f"{statistics.median(probes) * 1000:.1f} ms"),
            ("held-out MAE of the model", f"{st.mae:.5f} PUE"),
        ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_watch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=56.0, help="history in the store and training window (default 56)")
    ap.add_argument("--poll", type=float, default=60.0, help="weather readings every N s (default 60)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    rows = asyncio.run(run(args.days, args.poll, args.repeat))
    print("| step | wall time |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
