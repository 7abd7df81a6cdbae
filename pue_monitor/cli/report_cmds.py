"""`pue report`: the monthly (interim PUE + trailing 12 months) or annual report for regulators,
recomputed from the stored readings (reports/compute.py), with the period's alerts from the alert
history (reports/alert_list.py), written as JSON, CSV, PDF and a SHA-256 manifest of those files.

Exit codes (cli/common.py): 0 written; 1 a runtime failure (no readings in the period, the store
missing or unreadable, the PDF renderer not installed); 2 a usage or configuration error (a bad
month or year, an unknown format or language, an invalid site file).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from pue_monitor.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Subparsers

__all__ = ["FORMATS", "LANGS", "add_parsers", "cmd_report"]

FORMATS = ("pdf", "json", "csv")
LANGS = ("zh", "en")


def add_parsers(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="monthly or annual PUE report for regulators (JSON, CSV, PDF, SHA-256 manifest)",
        description="Recompute the energy-based PUE (ISO/IEC 30134-2) of a month and its trailing 12 months "
        "(--month), or the annual KPI set of Delegated Regulation (EU) 2024/1364 (--year), from the "
        "readings in the store, and write the report's files and a SHA-256 manifest of them.",
        epilog="exit status: 0 written; 1 no readings in the period, store missing or unreadable, PDF "
        "renderer missing; 2 bad month/year, unknown format or language, invalid site file",
    )
    p.add_argument("--config", required=True, metavar="SITE", help="site file (YAML)")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", metavar="YYYY-MM", help="calendar month in the site's time zone")
    when.add_argument("--year", metavar="YYYY", help="calendar year in the site's time zone (EU annual KPI set)")
    p.add_argument(
        "--format",
        default="pdf,json,csv",
        metavar="LIST",
        help="comma-separated: " + ", ".join(FORMATS) + " (default all)",
    )
    p.add_argument("--lang", default="zh", metavar="LANG", help="PDF language: zh (default) or en")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the files (created; default .)")
    p.add_argument("--db", metavar="STORE", help="store file (default: store.path of the site file)")
    p.add_argument(
        "--source",
        choices=("store", "influxdb"),
        help="read the readings from the embedded store or from the site's InfluxDB (InfluxQL: 1.x, 2.x with "
        "its 1.x API); default: the store, unless the site file turns it off",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary (files, headline figures, timings)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_report)


def _formats(text: str) -> list[str] | str:
    wanted = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        return f"--format {text!r}: unknown format {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}"
    return [f for f in FORMATS if f in wanted]


def cmd_report(args: argparse.Namespace) -> int:
    from pue_monitor.alerts.state import alerts_dir
    from pue_monitor.config.loader import load_site
    from pue_monitor.ingest.command import _Progress
    from pue_monitor.reports import output
    from pue_monitor.reports.alert_list import with_alerts
    from pue_monitor.reports.compute import build_month, build_year, parse_month, parse_year
    from pue_monitor.reports.influx_source import InfluxReadings
    from pue_monitor.sinks.sqlite import StoreReader

    err = sys.stderr
    formats = _formats(args.format)
    if isinstance(formats, str):
        print(f"pue report: {formats}", file=err)
        return EXIT_USAGE
    if args.lang not in LANGS:
        print(f"pue report: --lang {args.lang!r}: choose zh or en", file=err)
        return EXIT_USAGE
    # a bad month or year is a usage error before anything is read (UsageError -> exit 2)
    label = f"{parse_month(args.month)[0]:04d}-{parse_month(args.month)[1]:02d}" if args.month else ""
    if args.year:
        label = f"{parse_year(args.year):04d}"
    render_pdf: Any = None
    if "pdf" in formats:
        try:  # written by the PDF part (reports/render_pdf.py); imported only when asked for
            render_pdf = importlib.import_module("pue_monitor.reports.render_pdf").render_pdf
        except ImportError:
            print(
                "pue report: --format pdf: this pue-monitor has no PDF renderer (pue_monitor.reports.render_pdf); "
                "use --format json,csv",
                file=err,
            )
            return EXIT_FAILURE
    site = load_site(args.config)  # ConfigError -> exit 2 in cli.main
    cfg = site.config
    source = args.source or ("store" if cfg.store_enabled or args.db else "influxdb")
    if source == "influxdb" and (cfg.influxdb is None or args.db):
        why = "--db names a store" if args.db else f"{args.config} has no influxdb: section"
        print(f"pue report: --source influxdb: {why}", file=err)
        return EXIT_USAGE
    db = Path(args.db) if args.db else site.resolve(cfg.store.path)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"pue report: --out {out_dir}: cannot create the folder: {exc.strerror}", file=err)
        return EXIT_FAILURE
    reader: StoreReader | InfluxReadings
    if source == "influxdb":
        assert cfg.influxdb is not None
        reader = InfluxReadings(cfg.influxdb, cfg.site.id, base_dir=site.base_dir)
    else:
        try:
            reader = StoreReader(db)
        except FileNotFoundError as exc:
            print(f"pue report: {exc}", file=err)
            return EXIT_FAILURE
    progress = _Progress(err, enabled=not args.quiet, name="pue report")
    stats: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        if args.month:
            data = build_month(reader, site, args.month, progress=progress, stats=stats)
        else:
            data = build_year(reader, site, args.year, progress=progress, stats=stats)
    finally:
        progress.close()
        reader.close()
    # the period's alerts, from the alert engine's history beside the store (alerts.state_dir)
    data = with_alerts(data, alerts_dir(site, args.db), now=time.time())
    clock = time.perf_counter()
    stem = out_dir / f"pue-report-{site.config.site.id}-{label}"
    files: list[Path] = []
    if "json" in formats:
        files.append(Path(f"{stem}.json"))
        output.write_json(data, files[-1])
    if "csv" in formats:
        files.append(Path(f"{stem}-daily.csv"))
        output.write_daily_csv(data, files[-1])
    if args.year and ("json" in formats or "csv" in formats):
        ej = Path(f"{stem}-eu-kpis.json") if "json" in formats else None
        ec = Path(f"{stem}-eu-kpis.csv") if "csv" in formats else None
        output.write_eu_kpis(data, ej, ec)
        files += [p for p in (ej, ec) if p is not None]
    if render_pdf is not None:
        files.append(Path(f"{stem}-{args.lang}.pdf"))
        render_pdf(data, files[-1], args.lang)
    manifest = Path(f"{stem}.sha256")
    output.write_manifest(files, manifest)
    stats.setdefault("seconds", {})["write files"] = time.perf_counter() - clock
    stats["seconds"]["total"] = time.perf_counter() - started
    p = data.period
    if args.json:
        summary = {
            "kind": data.kind,
            "period": p.label,
            "pue": p.pue,
            "facility_kwh": p.facility_kwh,
            "it_kwh": p.it_kwh,
            "category": p.category,
            "completeness": {"measured": p.measured, "estimated": p.estimated, "missing": p.missing},
            "trailing_12m_pue": data.trailing_12m.pue if data.trailing_12m is not None else None,
            "alerts": len(data.alerts),
            "files": [str(f) for f in [*files, manifest]],
            "source": source,
            "readings": stats.get("readings", 0),
            "seconds": {k: round(v, 3) for k, v in stats["seconds"].items()},
        }
        print(json.dumps(summary, indent=2))
    else:
        shown = "not stated (no minute with both energies)" if p.pue is None else f"{p.pue:.4f}"
        print(f"{p.label}: PUE {shown}, category {p.category}; wrote {', '.join(str(f) for f in files)}")
        print(f"manifest {manifest} (verify: cd {out_dir} && sha256sum -c {manifest.name})")
    return EXIT_OK
