"""`pue alerts`: alerting helpers. ``rules`` writes a Prometheus rule file over our metrics
(later: ``list``, ``silence``)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from pue_monitor.cli.common import EXIT_OK, Subparsers


def _duration(text: str) -> str:
    from pue_monitor.alerts.rules import _DURATION

    if not _DURATION.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Prometheus duration (e.g. 10m, 1h30m)")
    return text


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically (a rule file Prometheus reloads is never half written)."""
    from pue_monitor.errors import UserError

    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the rule file there: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the rule file: {exc.strerror or exc}") from None


def cmd_rules(args: argparse.Namespace) -> int:
    from pue_monitor.alerts.rules import rule_file
    from pue_monitor.config.models import Thresholds

    site: str | None = None
    thresholds = Thresholds()
    if args.config:
        from pue_monitor.config.loader import load_site

        cfg = load_site(args.config).config
        site, thresholds = cfg.site.id, cfg.thresholds
    elif args.simulator:
        from pue_monitor.simulator.servers import SITE_ID

        site = SITE_ID
    text = rule_file(
        site=site,
        warning=thresholds.warning,
        critical=thresholds.critical,
        pue_for=args.pue_for,
        down_for=args.down_for,
        job=args.job,
    )
    if args.output:
        _write(Path(args.output), text)
        print(f"wrote {args.output}: check it with `promtool check rules {args.output}`", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def add_parsers(sub: Subparsers) -> None:
    p = sub.add_parser("alerts", help="alerting: a Prometheus rule file over our metrics")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")
    r = asub.add_parser(
        "rules",
        help="write a Prometheus rule file (PUE over the site's limits, device down, data loss, service absent)",
        description="Prometheus alerting rules over pue-monitor's metrics, for the site's thresholds "
        "(without --config: every site, warning 1.4, critical 1.5). Check with `promtool check rules FILE`.",
    )
    where = r.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="SITE", help="site file: its site id and PUE thresholds")
    where.add_argument("--simulator", action="store_true", help="the simulator's site (pue demo / pue simulate)")
    r.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")
    r.add_argument(
        "--for",
        dest="pue_for",
        type=_duration,
        default="10m",
        metavar="DURATION",
        help="how long PUE must stay over a limit before the alert fires (default 10m)",
    )
    r.add_argument(
        "--down-for",
        type=_duration,
        default="5m",
        metavar="DURATION",
        help="how long a device, the store, InfluxDB delivery or the service must be down (default 5m)",
    )
    r.add_argument("--job", default="pue", help="Prometheus job scraping pue-monitor, for its `up` (default pue)")
    r.set_defaults(func=cmd_rules)
