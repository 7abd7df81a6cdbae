"""`pue check-config`, `pue profiles`, `pue config-schema`: the site file and device profiles."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
    if args.probe:
        from pue_monitor.cli.commission import probe_command

        if not args.json:
            _print_summary(args.file, summary)
        return probe_command(site, as_json=args.json, summary=summary)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return EXIT_OK
    _print_summary(args.file, summary)
    return EXIT_OK


def _print_summary(file: str, summary: dict[str, Any]) -> None:
    print(f"{file}: OK — site {summary['site']} ({summary['timezone']}), {summary['devices']} devices")
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


def profile_points(profile: Any) -> list[dict[str, Any]]:
    """Every point of a profile as `pue profiles --points` shows it: name, where it is read
    (Modbus function, register address, datasheet number; SNMP OID, ``.<index>`` for a table
    column), the wire type, the scale (value = raw * scale) and the unit."""
    from pue_monitor.config.models import ModbusProfile

    if isinstance(profile, ModbusProfile):
        return [
            {
                "name": name,
                "function": pt.function,
                "address": pt.address,
                "datasheet": pt.datasheet or None,
                "type": pt.type,
                "registers": pt.count,
                "scale": pt.scale,
                "unit": pt.unit,
            }
            for name, pt in sorted(profile.points.items(), key=lambda kv: (kv[1].function, kv[1].address))
        ]
    rows = []
    columns = {c: (t, table.scaling) for t, table in profile.tables.items() for c in table.columns}
    for name, obj in profile.points.items():
        table, scaling = columns.get(name, (None, "profile"))
        rows.append(
            {
                "name": name,
                "oid": obj.oid + (".<index>" if table else ""),
                "table": table,
                "type": f"Counter{obj.counter_bits}" if obj.counter_bits else "number",
                # ENTITY-SENSOR-MIB rows carry their own scale and precision
                "scale": obj.scale if scaling == "profile" else scaling,
                "unit": obj.unit,
            }
        )
    return rows


def _scale(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:g}"


def cmd_profiles(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import load_profiles

    profiles = load_profiles([Path(d) for d in args.profile_dir])
    unknown = sorted(set(args.ids) - set(profiles))
    if unknown:
        print(f"pue profiles: no profile {', '.join(unknown)}; `pue profiles` lists them", file=sys.stderr)
        return EXIT_USAGE
    chosen = sorted((k, v) for k, v in profiles.items() if not args.ids or k in args.ids)
    if args.json:
        out = {
            k: {"protocol": v.protocol, "manufacturer": v.manufacturer, "model": v.model, "points": profile_points(v)}
            if args.points
            else v.model_dump()
            for k, v in chosen
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    for pid, p in chosen:
        print(f"{pid:22} {p.manufacturer} {p.model} — {len(p.points)} points")
        if not args.points:
            continue
        rows = profile_points(p)
        if p.protocol == "modbus":
            table = [
                (
                    r["name"],
                    f"{r['function']} {r['address']}",
                    r["datasheet"] or "",
                    r["type"],
                    _scale(r["scale"]),
                    r["unit"],
                )
                for r in rows
            ]
            head = ("point", "register", "datasheet", "type", "scale", "unit")
        else:
            table = [(r["name"], r["oid"], r["table"] or "", r["type"], _scale(r["scale"]), r["unit"]) for r in rows]
            head = ("point", "OID", "table", "type", "scale", "unit")
        widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=False)]
        for row in (head, *table):
            print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
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
    c.add_argument(
        "--probe",
        action="store_true",
        help="also read every device once: which answer, which configured points are missing, and the "
        "energy balance of the first readings (exit 1 when a device does not answer, a point is missing "
        "or the balance warns of a forgotten meter)",
    )
    c.set_defaults(func=cmd_check_config)

    pr = sub.add_parser("profiles", help="list device profiles (--points: every point of each)")
    pr.add_argument("ids", nargs="*", metavar="PROFILE", help="only these profiles (default: all)")
    pr.add_argument("--profile-dir", action="append", default=[], metavar="DIR")
    pr.add_argument(
        "--points",
        action="store_true",
        help="each profile's points: name, register address or OID, type, scale, unit",
    )
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_profiles)

    cs = sub.add_parser("config-schema", help="print the JSON schema of site (or profile) files")
    cs.add_argument("--profile", action="store_true", help="schema of a device profile instead")
    cs.set_defaults(func=cmd_config_schema)
