"""`pue free-cooling`: hours of full / partial / no free cooling per month from a weather file."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pue_monitor.cli.common import EXIT_OK, EXIT_USAGE, Subparsers

if TYPE_CHECKING:
    from pue_monitor.freecooling.report import SitingReport

#: the simulator's site: Taiyuan-like, 37.9° N 112.5° E, ~780 m, UTC+8 (simulator/physics.py)
SIM_LATITUDE, SIM_LONGITUDE, SIM_ELEVATION_M, SIM_TZ_H = 37.9, 112.5, 780.0, 8.0


def write_simulated_year(path: Path, *, year: int = 2026, seed: int = 1) -> None:
    """Write the simulator's weather for ``year`` (local standard time, hour-ending rows) as an EPW."""
    import datetime as dt

    import numpy as np

    from pue_monitor.freecooling.epw import Location, write_epw
    from pue_monitor.freecooling.psychro import moist_air
    from pue_monitor.simulator.physics import Noise, SimParams, weather

    start = dt.datetime(year, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=SIM_TZ_H)))
    n_days = (dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days
    k = np.arange(n_days * 24)
    t = start.timestamp() + (k + 1) * 3600.0  # hour ending
    days = [dt.date(year, 1, 1) + dt.timedelta(days=int(i)) for i in range(n_days)]
    month = np.repeat([d.month for d in days], 24)
    day = np.repeat([d.day for d in days], 24)
    hour = np.tile(np.arange(1, 25), n_days)
    p = SimParams()
    wx = weather(t, p, Noise.from_seed(seed, p))
    pres = np.asarray(wx.pressure_hpa) * 100.0
    air = moist_air(np.asarray(wx.dry_bulb_c), np.asarray(wx.rh_pct), pres)
    loc = Location(
        "Taiyuan-like (simulated)",
        "CHN",
        "pue-monitor simulator",
        "000000",
        SIM_LATITUDE,
        SIM_LONGITUDE,
        SIM_TZ_H,
        SIM_ELEVATION_M,
    )
    write_epw(
        path,
        loc,
        month,
        day,
        hour,
        np.asarray(wx.dry_bulb_c),
        air.dew_point_c,
        np.asarray(wx.rh_pct),
        pres,
        year=year,
        comment=f"pue-monitor simulator weather (SimParams defaults; seed {seed}); not measured data",
    )


def cmd_free_cooling(args: argparse.Namespace) -> int:
    from pue_monitor.config.models import CoolingConfig
    from pue_monitor.freecooling.epw import EpwError, read_epw
    from pue_monitor.freecooling.report import csv_rows, siting_report, text_table

    if args.simulated_year is not None:
        epw_path = Path(args.simulated_year)
        try:
            write_simulated_year(epw_path, year=args.year, seed=args.seed)
        except OSError as exc:
            print(f"pue free-cooling: {epw_path}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        epw_path = Path(args.epw)
    cooling = CoolingConfig()
    if args.config is not None:
        from pue_monitor.config.loader import load_site

        site = load_site(args.config)  # ConfigError: one line per problem, exit 2 (cli.main)
        if site.config.cooling is None:
            print(
                f"pue free-cooling: {args.config}: no cooling: section; using the default economisers", file=sys.stderr
            )
        else:
            cooling = site.config.cooling
    try:
        data = read_epw(epw_path)
    except EpwError as exc:
        print(f"pue free-cooling: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"pue free-cooling: {epw_path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    report = siting_report(data, cooling, str(epw_path))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(text_table(report))
    out = args.csv
    try:
        if args.csv is not None:
            with open(args.csv, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerows(csv_rows(report))
        out = args.png
        if args.png is not None:
            plot_png(report, Path(args.png))
    except OSError as exc:
        print(f"pue free-cooling: {out}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def plot_png(report: SitingReport, path: Path) -> None:
    """Stacked monthly bars of full / partial / none / unknown hours, one panel per economiser."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pue_monitor.freecooling.report import MONTHS

    n = len(report.economisers)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 3.2 * rows), squeeze=False, sharey=True)
    colours = {"full": "#2b83ba", "partial": "#abdda4", "none": "#d7191c", "unknown": "#bbbbbb"}
    x = list(range(12))
    for ax, e in zip(axes.flat, report.economisers, strict=False):
        bottom = [0.0] * 12
        for mode, colour in colours.items():
            vals = [getattr(e.months[m + 1], mode) for m in x]
            ax.bar(x, vals, bottom=bottom, color=colour, label=mode, width=0.8)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        y = e.year
        ax.set_title(f"{e.id} ({e.type}): full {y.full:g} h, partial {y.partial:g} h", fontsize=9)
        ax.set_xticks(x, [m[0] for m in MONTHS])
        ax.set_ylabel("hours")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper right", ncol=4, frameon=False)
    fig.suptitle(
        f"Free-cooling hours per month: {report.location.city} ({report.envelope} envelope)",
        fontsize=10,
        x=0.02,
        ha="left",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _year(text: str) -> int:
    try:
        y = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a year") from None
    if not 1971 <= y <= 2100:
        raise argparse.ArgumentTypeError(f"{y} is outside 1971..2100")
    return y


def add_parsers(sub: Subparsers) -> None:
    p = sub.add_parser(
        "free-cooling",
        help="free-cooling hours per month from an EnergyPlus weather (EPW) file",
        description="Hours of full, partial and no free cooling per month and for the year, for each "
        "economiser of the site's cooling: section (default: one of each type with default set points).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--epw", metavar="FILE", help="EnergyPlus weather file (typical year)")
    src.add_argument(
        "--simulated-year", metavar="OUT.epw", help="write the simulator's Taiyuan-like year as an EPW, then analyse it"
    )
    p.add_argument("--year", type=_year, default=2026, help="year of --simulated-year (default 2026)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed of --simulated-year (default 1, as `pue demo`)")
    p.add_argument("--config", metavar="SITE", help="site file whose cooling: section describes the plant")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--csv", metavar="OUT", help="also write the table as CSV")
    p.add_argument("--png", metavar="OUT", help="also draw a chart (PNG)")
    p.set_defaults(func=cmd_free_cooling)
