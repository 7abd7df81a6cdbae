"""`pue show` and `pue spool status`: what a run stored."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pue_monitor.cli.common import EXIT_OK, EXIT_USAGE, Subparsers, fmt, iso, kpi_summary


def cmd_show(args: argparse.Namespace) -> int:
    from pue_monitor.sinks.sqlite import StoreReader

    try:
        reader = StoreReader(args.db)
    except FileNotFoundError as exc:
        print(f"pue show: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.free_cooling:
        try:
            tz = reader.meta().get("timezone", "UTC")
            if args.month:  # the month's days (site time), then the month's totals
                t0, t1 = _month_span(args.month, tz)
                fc = reader.free_cooling("1d", start=t0, end=t1)
            else:
                fc = reader.free_cooling(args.resolution, limit=args.last)
        finally:
            reader.close()
        return _show_free_cooling(fc, tz, as_json=args.json)
    try:
        rows = reader.intervals(args.resolution, limit=args.last)
        period = reader.period_pue()
        tz = reader.meta().get("timezone", "UTC")
        if args.faults:
            faults = reader.sensor_faults(start=rows[0]["start"] if rows and not args.all else None)
        else:
            faults = reader.sensor_faults(start=rows[0]["start"], end=rows[-1]["end"]) if rows else []
    finally:
        reader.close()
    if args.faults:
        return _show_faults(faults, tz, as_json=args.json)
    for r in rows:  # data a sensor fault makes suspect is flagged, never silently used
        r["suspect"] = suspect(r["start"], r["end"], faults)
    if args.json:
        print(json.dumps({"intervals": rows, "period": period.__dict__ if period else None}, indent=2))
        return EXIT_OK
    kpi_head = " WUE L/kWh CUE kg/kWh    ERF    REF" if args.kpi else ""
    print(
        f"{'start (' + tz + ')':21} {'PUE':>6} {'E_DC kWh':>10} {'E_IT kWh':>10} cat  "
        f"measured estimated missing coverage suspect{kpi_head}"
    )
    for r in rows:
        kpis = ""
        if args.kpi:  # "-": not measured (no meter), never 0
            kpis = (
                f" {fmt(r.get('wue'), '.3f', '-'):>9} {fmt(r.get('cue'), '.3f', '-'):>10} "
                f"{fmt(r.get('erf'), '.3f', '-'):>6} {fmt(r.get('ref'), '.3f', '-'):>6}"
            )
        print(
            f"{iso(r['start'], tz):21} {fmt(r['pue']):>6} {fmt(r['e_facility_kwh'], '.2f'):>10} "
            f"{fmt(r['e_it_kwh'], '.2f'):>10} {r['category']:>3}  {r['measured']:8.0%} "
            f"{r['estimated']:9.0%} {r['missing']:7.0%} {r['coverage']:8.0%} "
            f"{', '.join(r['suspect']) if r['suspect'] else '-':>7}{kpis}"
        )
    if period:
        print(
            f"period {iso(period.start, tz)} .. {iso(period.end, tz)}: PUE {fmt(period.pue)} "
            f"(E_DC {period.e_facility_kwh:.1f} kWh / E_IT {period.e_it_kwh:.1f} kWh, "
            f"category {period.category}, interim)"
        )
        if args.kpi:
            print("period " + kpi_summary(period.__dict__, rows[-1] if rows else {}))
    return EXIT_OK


#: meter roles whose energy enters PUE: a fault on one makes the intervals it overlaps suspect
PUE_ROLES = frozenset({"facility_input", "it", "cooling", "power_distribution", "lighting", "other"})


def suspect(start: float, end: float, faults: list[dict[str, Any]]) -> list[str]:
    """Devices of the PUE meters with a sensor fault overlapping ``[start, end)`` (open faults
    run on), sorted; empty when the interval's data is not suspect."""
    return sorted(
        {
            f["device"]
            for f in faults
            if f["role"] in PUE_ROLES and f["start"] < end and (f["end"] is None or f["end"] > start)
        }
    )


def _show_faults(rows: list[dict[str, Any]], tz: str, *, as_json: bool) -> int:
    """Sensor faults: when, which meter point, what, the figure judged and why; open ones last
    to "open"."""
    if as_json:
        print(json.dumps({"sensor_faults": rows}, indent=2))
        return EXIT_OK
    if not rows:
        print("no sensor faults in this range (or the store predates them)")
        return EXIT_OK
    print(f"{'start (' + tz + ')':21} {'end':19} {'device':14} {'point':16} {'kind':12} {'value':>10}  detail")
    for f in rows:
        end = iso(f["end"], tz) if f["end"] is not None else "open"
        print(
            f"{iso(f['start'], tz):21} {end:19} {f['device']:14} {f['point'] or '-':16} {f['kind']:12} "
            f"{fmt(f['value'], '.6g', '-'):>10}  {f['detail']}"
        )
    return EXIT_OK


def _month_span(month: str, tz: str) -> tuple[float, float]:
    """[start, end) of calendar month ``YYYY-MM`` in the site's time zone, epoch seconds."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from pue_monitor.errors import UsageError

    try:
        first = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=ZoneInfo(tz))
    except ValueError:
        raise UsageError(f"--month {month!r}: expected YYYY-MM, e.g. 2026-01") from None
    nxt = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return first.timestamp(), nxt.timestamp()


def free_cooling_totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per economiser, the sums over ``rows`` (whole intervals, never averaged ratios): hours
    available (full + partial) and used, utilisation = used / available hours, chiller and
    avoidable chiller kWh (None when no row knew it)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = out.setdefault(
            r["economiser"], {"available_h": 0.0, "used_h": 0.0, "unknown_h": 0.0, "chiller_kwh": None,
                              "avoidable_kwh": None, "intervals": 0}
        )  # fmt: skip
        t["available_h"] += (r["full_s"] + r["partial_s"]) / 3600
        t["used_h"] += r["used_s"] / 3600
        t["unknown_h"] += r["unknown_s"] / 3600
        t["intervals"] += 1
        for k in ("chiller_kwh", "avoidable_kwh"):
            if r[k] is not None:
                t[k] = (t[k] or 0.0) + r[k]
    for t in out.values():
        t["utilisation"] = t["used_h"] / t["available_h"] if t["available_h"] > 0 else None
    return out


def _show_free_cooling(rows: list[dict[str, Any]], tz: str, *, as_json: bool) -> int:
    """Free-cooling rows: available mode and fraction, what the plant ran, hours, utilisation
    (used / available hours) and chiller kWh that free cooling could have avoided; then the
    totals of the rows shown, per economiser."""
    totals = free_cooling_totals(rows)
    if as_json:
        for r in rows:
            avail = r["full_s"] + r["partial_s"]
            r["utilisation"] = r["used_s"] / avail if avail > 0 else None
        print(json.dumps({"free_cooling": rows, "totals": totals}, indent=2))
        return EXIT_OK
    if not rows:
        print("no free-cooling rows (the site has no cooling: points, or the store predates them)")
        return EXIT_OK
    print(
        f"{'start (' + tz + ')':21} {'economiser':14} {'available':>9} {'fraction':>8} {'actual':>16} "
        f"{'avail h':>8} {'used h':>7} {'util':>5} {'chiller kWh':>11} {'avoidable kWh':>13}"
    )
    for r in rows:
        avail = r["full_s"] + r["partial_s"]
        util = r["used_s"] / avail if avail > 0 else None
        actual = (r["actual_mode"] or "-") + (" (inferred)" if r["inferred"] and r["actual_mode"] else "")
        print(
            f"{iso(r['start'], tz):21} {r['economiser']:14} {r['mode'] or '-':>9} {fmt(r['fraction'], '.2f'):>8} "
            f"{actual:>16} {avail / 3600:8.2f} {r['used_s'] / 3600:7.2f} {fmt(util, '.0%'):>5} "
            f"{fmt(r['chiller_kwh'], '.2f'):>11} {fmt(r['avoidable_kwh'], '.2f'):>13}"
        )
    first, last = iso(rows[0]["start"], tz), iso(rows[-1]["end"], tz)
    for econ, t in totals.items():
        print(
            f"total {first} .. {last} {econ}: free cooling available {t['available_h']:.1f} h, used "
            f"{t['used_h']:.1f} h (utilisation {fmt(t['utilisation'], '.0%')}), weather unknown "
            f"{t['unknown_h']:.1f} h; chiller {fmt(t['chiller_kwh'], '.1f')} kWh, avoidable "
            f"{fmt(t['avoidable_kwh'], '.1f')} kWh"
        )
    return EXIT_OK


def cmd_spool_status(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import load_site
    from pue_monitor.sinks.spool import Spool, SpoolStatus

    if args.config:
        site = load_site(args.config)
        if site.config.influxdb is None:
            print(f"pue spool status: {args.config} has no influxdb: section (nothing is spooled)", file=sys.stderr)
            return EXIT_USAGE
        path = Path(site.config.influxdb.spool.path)
        if not path.is_absolute():
            path = site.base_dir / path
    else:
        path = Path(args.spool)
    if not path.exists():  # a normal answer: InfluxDB never refused a write since the spool's start
        if args.json:
            empty = SpoolStatus(0, 0, 0, None, 0, 0, 0, 0)
            print(json.dumps({"spool": str(path), "exists": False, **empty.as_dict(), "quarantine": []}, indent=2))
        else:
            print(f"spool {path}: no spool yet (nothing was ever queued)")
        return EXIT_OK
    spool = Spool(path)
    try:
        status, quarantined = spool.status(), spool.quarantined()
    finally:
        spool.close()
    if args.json:
        print(json.dumps({"spool": str(path), "exists": True, **status.as_dict(), "quarantine": quarantined}, indent=2))
        return EXIT_OK
    age = f", oldest {status.oldest_age_s:.0f} s old" if status.oldest_age_s is not None else ""
    print(f"spool {path}")
    print(
        f"  queued:      {status.queued_batches} batches, {status.queued_points} points, "
        f"{status.queued_bytes} bytes{age}"
    )
    print(f"  quarantined: {status.quarantined_batches} batches, {status.quarantined_points} points")
    print(f"  evicted:     {status.evicted_batches} batches, {status.evicted_points} points (lost: spool was full)")
    for q in quarantined:
        print(f"    batch {q['id']}: {q['points']} points rejected: {q['error']}")
    return EXIT_OK


def cmd_store_compact(args: argparse.Namespace) -> int:
    """Archive the closed UTC days of raw readings into the store's day files (what `pue run`
    does an hour after each UTC midnight; here for a store written by an older version, a
    backfill, or a run that is stopped)."""
    import time
    from datetime import UTC, datetime

    from pue_monitor.sinks.sqlite import SqliteStore, StoreReader
    from pue_monitor.sinks.store import COMPACT_AFTER

    if args.db:
        db = Path(args.db)
    else:
        from pue_monitor.config.loader import load_site

        site = load_site(args.config)  # ConfigError -> exit 2 in cli.main
        db = site.resolve(site.config.store.path)
    if not db.exists():
        print(
            f"pue store compact: {db}: no such store (has `pue run` or `pue ingest-csv` written it?)", file=sys.stderr
        )
        return EXIT_USAGE
    if args.before:
        try:
            day = datetime.strptime(args.before, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            print(f"pue store compact: --before {args.before!r} is not a day: give YYYY-MM-DD (UTC)", file=sys.stderr)
            return EXIT_USAGE
        before = day.timestamp()
    else:
        before = time.time() - COMPACT_AFTER
    store = SqliteStore(db)
    try:
        res = store.compact_readings(before)
    finally:
        store.close()
    reader = StoreReader(db)
    try:
        days = reader.archived_days()
        left = reader.table_reading_count()
    finally:
        reader.close()
    file_rows, file_bytes = sum(d.rows for d in days), sum(d.bytes for d in days)
    summary = {
        "store": str(db),
        "archived_days": res.days,
        "archived_readings": res.readings,
        "bytes_written": res.bytes,
        "seconds": round(res.seconds, 3),
        "table_readings": left,
        "day_files": len(days),
        "day_file_readings": file_rows,
        "day_file_bytes": file_bytes,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    what = f"{len(res.days)} day(s) ({res.days[0]} .. {res.days[-1]})" if res.days else "no closed day"
    print(
        f"store {db}: archived {res.readings:,} readings of {what} in {res.seconds:.1f} s "
        f"({res.bytes / 1e6:.1f} MB written); table now {left:,} readings; day files: {len(days)} "
        f"({file_rows:,} readings, {file_bytes / 1e6:.1f} MB)"
    )
    return EXIT_OK


def add_parsers(sub: Subparsers) -> None:
    st = sub.add_parser("store", help="the embedded store's raw readings: archive closed days into day files")
    stsub = st.add_subparsers(dest="store_cmd", required=True, metavar="{compact}")
    c = stsub.add_parser(
        "compact",
        help="move the readings of closed UTC days from the SQLite table into Parquet day files "
        "(safe while `pue run` writes)",
    )
    where = c.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="SITE", help="the site file (its store.path)")
    where.add_argument("--db", metavar="PATH", help="the store file")
    c.add_argument(
        "--before",
        metavar="YYYY-MM-DD",
        help="archive the UTC days before this one (default: every day that ended over an hour ago)",
    )
    c.add_argument("--json", action="store_true", help="print a JSON summary")
    c.set_defaults(func=cmd_store_compact)

    s = sub.add_parser("show", help="print stored PUE intervals (safe while a run writes)")
    s.add_argument("--db", required=True, metavar="PATH")
    s.add_argument("--resolution", default="1m", choices=["1m", "15m", "1h", "1d"])
    s.add_argument("--last", type=int, default=15, metavar="N", help="last N intervals (default 15)")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--kpi",
        action="store_true",
        help="add the companion KPIs: WUE (ISO/IEC 30134-9), CUE (-8), ERF (-6), REF (-3); '-' = not measured",
    )
    s.add_argument(
        "--free-cooling",
        action="store_true",
        help="free-cooling state per economiser instead of PUE: available and actual mode, hours, "
        "utilisation, avoidable chiller kWh; totals per economiser at the end",
    )
    s.add_argument(
        "--faults",
        action="store_true",
        help="list the sensor faults (stuck, out of range, glitch, reset, backwards, balance) from the first "
        "interval shown on (with --all: every one stored) instead of PUE",
    )
    s.add_argument("--all", action="store_true", help="with --faults: every sensor fault in the store")
    s.add_argument(
        "--month",
        metavar="YYYY-MM",
        help="with --free-cooling: the days of this calendar month (site time) and the month's totals",
    )
    s.set_defaults(func=cmd_show)

    sp = sub.add_parser("spool", help="the InfluxDB spool (queued and quarantined batches)")
    spsub = sp.add_subparsers(dest="spool_command", required=True, metavar="COMMAND")
    sps = spsub.add_parser("status", help="show queued, quarantined and evicted batches")
    where = sps.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="FILE", help="site configuration naming the spool")
    where.add_argument("--spool", metavar="PATH", help="spool file")
    sps.add_argument("--json", action="store_true")
    sps.set_defaults(func=cmd_spool_status)
