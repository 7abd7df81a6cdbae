"""`pue check-config`, `pue profiles`, `pue config-schema`: the site file and device profiles."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pue_monitor.cli.common import EXIT_OK, EXIT_USAGE, Subparsers

_CATEGORY_NAMES = {
    1: "basic, IT at UPS output",
    2: "intermediate, IT at PDU output",
    3: "advanced, IT at equipment input",
}


def cmd_check_config(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import check_site
    from pue_monitor.config.summary import energy_model_summary
    from pue_monitor.logs import redact

    result = check_site(args.file)
    if result.errors or result.site is None:
        if len(result.errors) == 1:  # a file that cannot be read or parsed: one line
            print(f"pue check-config: {redact(result.errors[0])}", file=sys.stderr)
            return EXIT_USAGE
        print(f"pue check-config: {args.file}: {len(result.errors)} errors:", file=sys.stderr)
        for line in result.errors:
            print(f"  {redact(line)}", file=sys.stderr)
        print("every field and its limits: `pue config-schema`", file=sys.stderr)
        return EXIT_USAGE
    site = result.site
    summary = energy_model_summary(site)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"{args.file}: OK — site {summary['site']} ({summary['timezone']}), {summary['devices']} devices")
    print(f"PUE thresholds: warning {summary['thresholds']['warning']}, critical {summary['thresholds']['critical']}")
    cat = summary["measurement_category"]
    print(f"Measurement category (ISO/IEC 30134-2): {cat} ({_CATEGORY_NAMES[cat]})")
    for role, meters in summary["roles"].items():
        print(f"  {role}:")
        for m in meters:
            extra = f", {m['it_location']}" if "it_location" in m else ""
            extra += f", rolls over at {m['rollover']:g}" if "rollover" in m else ""
            print(f"    {m['device']}: {m['point']} ({m['energy']}{extra})")
    if summary["unmetered_subsystems"]:
        print("Unmetered subsystems (no partial PUE): " + ", ".join(summary["unmetered_subsystems"]))
    from pue_monitor.pipeline.kpi import KPI_STANDARDS

    print("Companion KPIs:")
    for kpi, how in summary["kpis"].items():
        print(f"  {kpi.upper()} ({KPI_STANDARDS[kpi]}): {how}")
    return EXIT_OK


def cmd_profiles(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import load_profiles

    profiles = load_profiles([Path(d) for d in args.profile_dir])
    if args.json:
        print(json.dumps({k: v.model_dump() for k, v in sorted(profiles.items())}, indent=2))
        return EXIT_OK
    for pid, p in sorted(profiles.items()):
        print(f"{pid:22} {p.manufacturer} {p.model} — {len(p.points)} points")
    return EXIT_OK


def cmd_config_schema(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter

    from pue_monitor.config.models import Profile, SiteConfig

    schema = TypeAdapter(Profile).json_schema() if args.profile else SiteConfig.model_json_schema()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return EXIT_OK


def add_parsers(sub: Subparsers) -> None:
    c = sub.add_parser("check-config", help="validate a site file and summarise its energy model")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=cmd_check_config)

    pr = sub.add_parser("profiles", help="list device profiles")
    pr.add_argument("--profile-dir", action="append", default=[], metavar="DIR")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_profiles)

    cs = sub.add_parser("config-schema", help="print the JSON schema of site (or profile) files")
    cs.add_argument("--profile", action="store_true", help="schema of a device profile instead")
    cs.set_defaults(func=cmd_config_schema)
