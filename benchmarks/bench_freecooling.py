"""Free-cooling speed: `pue free-cooling --epw` on a full year, and the availability of a year of minutes.

    python -m benchmarks.bench_freecooling [--repeat 3]

1. Writes the simulator's Taiyuan-like year as an EPW (8,760 hourly rows; not timed), then times
   ``pue free-cooling --epw FILE`` in this process (read + psychrometrics + 4 economisers +
   monthly table) and as a fresh ``python -m pue_monitor`` process (interpreter and imports included).
2. Interpolates that year to 1-minute weather (525,600 rows) and times the psychrometrics alone
   (``moist_air``: wet-bulb, dew point, humidity ratio, enthalpy) and the whole classification
   (``classify``: psychrometrics + the four default economisers' fraction and mode).
3. The live state (pipeline/freecooling_live.py) of that year: per-minute values from raw readings
   (``sample_minutes``: 4 readings a minute of temperature, humidity, pressure and chiller power,
   the mode status point) and the state of every minute (``minute_states``: availability of the
   four economisers, actual mode, chiller and avoidable kWh); and the service's per-minute cost
   (``LiveFreeCooling`` ingest of one minute's readings + ``close``), averaged over a day.

One core: numpy element-wise work runs on one thread; set OMP_NUM_THREADS=1 to be sure.
Target: under 1 s each. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pue_monitor.cli import main as pue_main
from pue_monitor.cli.freecooling_cmds import write_simulated_year
from pue_monitor.config.models import CoolingConfig
from pue_monitor.freecooling.availability import Weather, classify
from pue_monitor.freecooling.epw import read_epw
from pue_monitor.freecooling.psychro import moist_air
from pue_monitor.pipeline.freecooling_live import LiveFreeCooling, minute_states, sample_minutes
from pue_monitor.readings import Reading


def _best(fn: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        epw = Path(tmp) / "sim.epw"
        write_simulated_year(epw)

        def in_process() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                assert pue_main(["free-cooling", "--epw", str(epw)]) == 0

        def fresh_process() -> None:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, "-m", "pue_monitor", "free-cooling", "--epw", str(epw)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)

        rows = []
        rows.append(("`pue free-cooling --epw` (in process)", "8,760 h", _best(in_process, args.repeat)))
        rows.append(("`pue free-cooling --epw` (new process)", "8,760 h", _best(fresh_process, args.repeat)))

        data = read_epw(epw)
        hours = np.arange(len(data), dtype=float)
        minutes = np.arange(len(data) * 60, dtype=float) / 60.0
        rng = np.random.default_rng(0)
        tdb = np.interp(minutes, hours, data.dry_bulb_c) + rng.normal(0.0, 0.1, minutes.size)
        rh = np.clip(np.interp(minutes, hours, data.rh_pct) + rng.normal(0.0, 0.5, minutes.size), 1.0, 100.0)
        pres = np.interp(minutes, hours, data.pressure_pa)
        weather = Weather(tdb, rh, pres)
        cooling = CoolingConfig(altitude_m=780.0)
        n = f"{minutes.size:,} min"
        rows.append(("psychrometrics (`moist_air`)", n, _best(lambda: moist_air(tdb, rh, pres), args.repeat)))
        rows.append(
            ("availability, 4 economisers (`classify`)", n, _best(lambda: classify(weather, cooling), args.repeat))
        )
        rows += _live_rows(tdb, rh, pres, args.repeat)
    print("| what | rows | " + " | ".join(f"run {i + 1} s" for i in range(args.repeat)) + " |")
    print("|---|---:|" + "---:|" * args.repeat)
    for name, size, times in rows:
        print(f"| {name} | {size} | " + " | ".join(f"{t:.3f}" for t in times) + " |")


def _live_rows(tdb: np.ndarray, rh: np.ndarray, pres: np.ndarray, repeat: int) -> list[tuple[str, str, list[float]]]:
    n = tdb.size
    cooling = CoolingConfig(altitude_m=780.0)
    starts = np.arange(n, dtype=float) * 60.0
    rng = np.random.default_rng(1)
    chiller = np.clip(rng.normal(80.0, 40.0, n), 0.0, None)
    status = rng.integers(0, 3, n).astype(float)
    # four readings a minute (15 s polls) of each point, as the service buffers them
    ts = np.arange(4 * n, dtype=float) * 15.0
    raw = {k: np.repeat(v, 4) for k, v in {"t": tdb, "rh": rh, "p": pres, "kw": chiller, "mode": status}.items()}

    def sample() -> None:
        for k in ("t", "rh", "p", "kw"):
            sample_minutes(ts, raw[k], starts, 60.0, 30.0)
        sample_minutes(ts, raw["mode"], starts, 60.0, 30.0, last=True)

    def states() -> None:
        minute_states(cooling, starts, dry_bulb_c=tdb, rh_pct=rh, pressure_pa=pres, chiller_kw=chiller, status=status)

    roles = {"outdoor_temperature": "t", "relative_humidity": "rh", "pressure": "p", "chiller_power": "kw",
             "economiser_mode": "mode"}  # fmt: skip
    units = {"outdoor_temperature": "degC", "relative_humidity": "%", "pressure": "Pa", "chiller_power": "kW"}
    day = 1440
    readings = [
        [Reading(ts=float(ts[j]), site="b", device="d", point=role, value=float(raw[k][j]), unit=units.get(role, ""))
         for role, k in roles.items() for j in range(4 * m, 4 * m + 4)]
        for m in range(day)
    ]  # fmt: skip

    def live_day() -> None:
        live = LiveFreeCooling(cooling, {r: ("d", r) for r in roles}, max_age=dict.fromkeys(roles, 30.0))
        for m in range(day):
            live.ingest(readings[m])
            live.close(60.0 * (m + 1), 0.0)

    n_min = f"{n:,} min"
    per_minute = [t / day * 1e3 for t in _best(live_day, repeat)]
    return [
        ("live: per-minute values from raw readings (`sample_minutes`, 5 points)", f"{4 * n:,} readings/point",
         _best(sample, repeat)),
        ("live: state of every minute (`minute_states`, 4 economisers)", n_min, _best(states, repeat)),
        ("live: service path per minute (ingest 20 readings + `close`), **ms**", "1 min", per_minute),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
