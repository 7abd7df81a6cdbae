"""`pue alerts`: ``rules`` writes a Prometheus rule file over our metrics; ``silence``,
``unsilence`` and ``list`` manage the alert engine's silences and show its firing alerts (the
files beside the store that the running service reads; see :mod:`pue_monitor.alerts.state`)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pue_monitor.cli.common import EXIT_OK, Subparsers

if TYPE_CHECKING:
    from pue_monitor.alerts.state import AlertFiles

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_LABEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def _duration(text: str) -> str:
    from pue_monitor.alerts.rules import _DURATION

    if not _DURATION.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Prometheus duration (e.g. 10m, 1h30m)")
    return text


def seconds(text: str) -> float:
    """argparse type: a Prometheus duration (``2h``, ``1h30m``, ``3d``) in seconds, > 0."""
    from pue_monitor.alerts.rules import _DURATION

    if not _DURATION.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30m, 2h, 1h30m, 3d)")
    total = sum(int(n) * _UNITS[u] for n, u in _PART.findall(text))
    if total <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0")
    return total


def matcher(text: str) -> tuple[str, str]:
    """argparse type: ``label=value``."""
    m = _LABEL.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a matcher LABEL=VALUE (e.g. alertname=PueHigh)")
    return m.group(1), m.group(2)


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


def _files(args: argparse.Namespace) -> tuple[AlertFiles, str]:
    from pue_monitor.alerts.state import AlertFiles, alerts_dir
    from pue_monitor.config.loader import load_site

    site = load_site(args.config)
    return AlertFiles(alerts_dir(site, args.db)), site.config.site.timezone


def cmd_silence(args: argparse.Namespace) -> int:
    from pue_monitor.cli.common import iso
    from pue_monitor.errors import UsageError

    matchers = dict(args.matchers)
    if len(matchers) != len(args.matchers):
        raise UsageError("a label is given twice in the matchers")
    files, tz = _files(args)
    try:
        author = args.author or getpass.getuser()
    except (KeyError, OSError):
        author = ""
    s = files.add_silence(matchers, now=time.time(), duration_s=args.duration, comment=args.comment, created_by=author)
    what = " ".join(f"{k}={v}" for k, v in sorted(s.matchers.items()))
    print(f"silence {s.id}: {what} until {iso(s.ends_at, tz)} ({tz}); end it early with `pue alerts unsilence {s.id}`")
    return EXIT_OK


def cmd_unsilence(args: argparse.Namespace) -> int:
    from pue_monitor.cli.common import iso

    files, tz = _files(args)
    s = files.expire_silence(args.id, now=time.time())
    print(f"silence {s.id} expired at {iso(s.ends_at, tz)} ({tz})")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from pue_monitor.cli.common import iso

    files, tz = _files(args)
    now = time.time()
    state = files.read_state_for_display() or {}
    alerts: list[dict[str, Any]] = sorted(
        (a for a in state.get("alerts", {}).values() if a.get("firing")),
        key=lambda a: (a["since"], a["labels"].get("alertname", "")),
    )
    silences = [s for s in files.silences() if args.all or s.active(now)]
    if args.json:
        doc = {
            "state": str(files.state_path),
            "firing": [
                {
                    "labels": a["labels"],
                    "annotations": a["annotations"],
                    "starts_at": a["since"],
                    "last_sent": a["last_sent"],
                    "silenced": any(s.active(now) and s.matches(a["labels"]) for s in silences),
                }
                for a in alerts
            ],
            "silences": [{**s.to_json(), "active": s.active(now)} for s in silences],
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return EXIT_OK
    print(f"alert state: {files.state_path}" + ("" if state else " (none yet: the service has not evaluated)"))
    print(f"firing alerts: {len(alerts)} (times in {tz})")
    for a in alerts:
        lab = a["labels"]
        extra = " ".join(f"{k}={v}" for k, v in sorted(lab.items()) if k not in ("alertname", "site", "severity"))
        muted = " [silenced]" if any(s.active(now) and s.matches(lab) for s in silences) else ""
        name, severity = lab.get("alertname", "?"), lab.get("severity", "")
        print(f"  {name:<18} {severity:<8} since {iso(a['since'], tz)}  {extra}{muted}")
        if summary := a["annotations"].get("summary"):
            print(f"      {summary}")
    print(f"{'silences' if args.all else 'active silences'}: {len(silences)}")
    for s in silences:
        what = " ".join(f"{k}={v}" for k, v in sorted(s.matchers.items()))
        state_text = "until" if s.active(now) else "expired"
        by = f" by {s.created_by}" if s.created_by else ""
        note = f": {s.comment}" if s.comment else ""
        print(f"  {s.id}  {what}  {state_text} {iso(s.ends_at, tz)}{by}{note}")
    return EXIT_OK


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="SITE", required=True, help="site file (its alerts folder: alerts.state_dir)")
    p.add_argument("--db", metavar="PATH", help="the store `pue run --db` was given (its alerts folder is beside it)")


def add_parsers(sub: Subparsers) -> None:
    p = sub.add_parser("alerts", help="alerting: silences, firing alerts, a Prometheus rule file over our metrics")
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

    si = asub.add_parser(
        "silence",
        help="silence alerts matching LABEL=VALUE for a while (the running service sees it at once)",
        description="Alerts whose labels match every LABEL=VALUE are not sent until the silence expires "
        "(they still fire, show in `pue alerts list` and count in pue_alerts_firing).",
    )
    _where(si)
    si.add_argument(
        "matchers", nargs="+", type=matcher, metavar="LABEL=VALUE", help="e.g. alertname=PueHigh device=pdu-3"
    )
    si.add_argument("--for", dest="duration", type=seconds, required=True, metavar="DURATION", help="e.g. 2h, 30m, 1d")
    si.add_argument("--comment", default="", help="why (shown by `pue alerts list`)")
    si.add_argument("--author", default=None, help="who (default: the login name)")
    si.set_defaults(func=cmd_silence)
    un = asub.add_parser("unsilence", help="expire a silence now (ID or the start of it)")
    _where(un)
    un.add_argument("id", metavar="ID")
    un.set_defaults(func=cmd_unsilence)
    ls = asub.add_parser("list", help="firing alerts (as the service last saved them) and active silences")
    _where(ls)
    ls.add_argument("--json", action="store_true", help="JSON instead of text")
    ls.add_argument("--all", action="store_true", help="expired silences too (kept 7 days)")
    ls.set_defaults(func=cmd_list)
