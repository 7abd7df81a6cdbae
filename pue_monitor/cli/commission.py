"""`pue read` (one device, once, every point raw and decoded) and the probe behind
`pue check-config --probe` (every device once, which answer, missing points, energy balance).

Exit codes of `pue read`: 0 the device answered (whatever the quality of its points),
1 it did not (one line naming host:port), 2 a usage or configuration error (unknown device,
unknown profile, a push device that cannot be read on demand).

Exit codes of `pue check-config --probe`: 0 every polled device answered with every
configured point and the energy balance raised no warning; 1 a device did not answer, a
configured point is missing, or the balance warns (a forgotten meter); 2 the file is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pue_monitor.cli.common import EXIT_FAILURE, EXIT_OK, Subparsers, positive
from pue_monitor.errors import ConfigError

if TYPE_CHECKING:  # the collectors are imported when a command runs, not at CLI start
    from pue_monitor.collectors.probe import DeviceProbe
    from pue_monitor.config.loader import LoadedSite
    from pue_monitor.config.models import ModbusDevice, SnmpDevice
    from pue_monitor.pipeline.balance import Balance


# ---------------------------------------------------------------------------- pue read


def _site_from_args(args: argparse.Namespace) -> tuple[LoadedSite, str]:
    """The site and device id to read: from ``--config`` or from the command line."""
    from pue_monitor.config.loader import load_site

    if args.config is not None:
        if args.protocol or args.host:
            raise ConfigError("give either --config SITE DEVICE or --protocol/--host/--profile, not both")
        if args.device is None:
            raise ConfigError(f"{args.config}: name the device to read (pue read --config SITE DEVICE)")
        site = load_site(args.config)
        ids = [d.id for d in site.config.devices]
        if args.device not in ids:
            raise ConfigError(f"{args.config}: no device {args.device!r} (devices: {', '.join(ids)})")
        return site, args.device
    if not (args.protocol and args.host and args.profile):
        raise ConfigError("without --config, give --protocol modbus|snmp, --host and --profile (see `pue profiles`)")
    if args.device is not None:
        raise ConfigError(f"DEVICE ({args.device}) names a device of a site file: add --config SITE")
    device_id = re.sub(r"[^A-Za-z0-9_.-]", "-", args.host)
    dev: dict[str, Any] = {
        "id": device_id,
        "protocol": args.protocol,
        "host": args.host,
        "profile": args.profile,
        "timeout": args.timeout or 2.0,
        "interval": max(60.0, 2 * (args.timeout or 2.0)),
    }
    if args.port is not None:
        dev["port"] = args.port
    if args.protocol == "modbus":
        if args.community is not None:
            raise ConfigError("--community is for --protocol snmp")
        dev["unit_id"] = args.unit
    else:
        if args.unit != 1:
            raise ConfigError("--unit is for --protocol modbus")
        dev["community"] = args.community if args.community is not None else "public"
    return _command_line_site(dev, args.profile_dir), device_id


#: site-file field -> the `pue read` option that sets it
_OPTION_OF = {"port": "--port", "unit_id": "--unit", "timeout": "--timeout", "host": "--host", "points": "--points"}


def _command_line_site(dev: dict[str, Any], profile_dirs: list[str]) -> LoadedSite:
    """A one-device site from command-line options. Not :func:`site_from_dict`: that checks
    the energy model (a facility and an IT meter), which a lone device to read has not."""
    from pydantic import ValidationError

    from pue_monitor.config.loader import LoadedSite, load_profiles
    from pue_monitor.config.models import SiteConfig

    try:
        cfg = SiteConfig.model_validate({"site": {"id": "pue-read"}, "devices": [dev]})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = next((str(x) for x in reversed(first["loc"]) if str(x) in _OPTION_OF), "")
        raise ConfigError(f"{_OPTION_OF.get(field, 'options')}: {first['msg']}") from None
    profiles = load_profiles([Path(d) for d in profile_dirs])
    name, protocol = dev["profile"], dev["protocol"]
    prof = profiles.get(name)
    if not (protocol == "snmp" and name == "auto") and (prof is None or prof.protocol != protocol):
        known = ", ".join(sorted(k for k, p in profiles.items() if p.protocol == protocol))
        raise ConfigError(f"--profile: no {protocol} profile {name!r} (known: {known}; see `pue profiles`)")
    return LoadedSite(Path("<command line>"), cfg, profiles)


def _narrowed(dev: ModbusDevice | SnmpDevice, site: LoadedSite, args: argparse.Namespace) -> ModbusDevice | SnmpDevice:
    """The device with ``--points`` (only those, no meter sums) and ``--timeout`` applied."""
    update: dict[str, Any] = {}
    if args.timeout is not None:
        update["timeout"] = args.timeout
        update["interval"] = max(dev.interval, 2 * args.timeout)
    if args.points:
        points = [p.strip() for p in args.points.split(",") if p.strip()]
        prof = site.profiles.get(dev.profile)
        unknown = [p for p in points if prof is not None and p.split(".", 1)[0] not in prof.points]
        if unknown:
            raise ConfigError(f"--points: profile {dev.profile!r} has no point {', '.join(unknown)}")
        update |= {"points": points, "meter": None}
    return dev.model_copy(update=update) if update else dev


def _fmt_value(v: float | None) -> str:
    """Every digit the register holds, no binary noise: a float32 value (an f32 register)
    in its shortest form (222.4, not 222.399993896), anything else to 12 digits (a Wh counter)."""
    import numpy as np

    if v is None:
        return ""
    f32 = np.float32(v)
    if math.isfinite(v) and float(f32) == v:
        return str(np.format_float_positional(f32, trim="-"))
    return f"{v:.12g}"


def print_read(p: DeviceProbe) -> None:
    if p.push:
        print(f"{p.device} ({p.protocol}, {p.address}): first message after {p.seconds:.3f} s")
    else:
        print(f"{p.device} ({p.protocol} {p.address}, profile {p.profile}): answered in {p.seconds:.3f} s")
    rows = [("POINT", "WHERE", "RAW", "VALUE", "UNIT", "QUALITY")]
    for r in p.points:
        quality = r.quality if not r.reason or r.quality == "ok" else f"{r.quality}: {r.reason}"
        rows.append((r.point, r.where, r.raw, _fmt_value(r.value), r.unit, quality))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2])]
        cells += [row[3].rjust(widths[3]), row[4].ljust(widths[4]), row[5]]
        print("  ".join(cells).rstrip())
    if p.missing:
        print(f"points with no value: {', '.join(p.missing)}")


def cmd_read(args: argparse.Namespace) -> int:
    from pue_monitor.collectors.probe import listen_push, read_device
    from pue_monitor.config.models import ModbusDevice, MqttDevice, SnmpDevice, SparkplugDevice

    site, device_id = _site_from_args(args)
    dev = next(d for d in site.config.devices if d.id == device_id)
    if isinstance(dev, MqttDevice | SparkplugDevice):
        # a push device publishes when it wants to: listen for its next message instead
        seconds = args.timeout if args.timeout is not None else dev.interval + 5.0
        if args.points:
            raise ConfigError(f"--points: device {dev.id!r} is a {dev.protocol} push device; it sends what it sends")
        print(
            f"{dev.id} is a {dev.protocol} push device: waiting up to {seconds:g} s for its next message",
            file=sys.stderr,
        )
        probe = asyncio.run(listen_push(dev, site, seconds=seconds))
    elif isinstance(dev, ModbusDevice | SnmpDevice):
        probe = asyncio.run(read_device(_narrowed(dev, site, args), site))
    else:
        raise ConfigError(f"device {dev.id!r} is an import-only device ({dev.protocol}): nothing to read")
    if args.json:
        print(json.dumps(probe.as_dict(), indent=2))
    if not probe.answered:
        who = "" if probe.error.startswith(dev.id) else f"{dev.id}: "
        print(f"pue read: {who}{probe.error}", file=sys.stderr)
        return EXIT_FAILURE
    if not args.json:
        print_read(probe)
    return EXIT_OK


# ------------------------------------------------------------------- check-config --probe


def site_balance(site: LoadedSite, probes: list[DeviceProbe]) -> Balance:
    """The energy balance of the probe's readings (:mod:`pue_monitor.pipeline.balance`)."""
    from pue_monitor.collectors.probe import is_ups, meter_kw, ups_output_kw
    from pue_monitor.config.models import KPI_ROLES
    from pue_monitor.pipeline.balance import MeterPower, UpsOutput, balance

    by_id = {p.device: p for p in probes}
    meters: list[MeterPower] = []
    ups: list[UpsOutput] = []
    for dev in site.config.devices:
        probe = by_id.get(dev.id)
        m = getattr(dev, "meter", None)
        if m is not None and m.role in KPI_ROLES:
            m = None  # water, reused heat, renewable supply: not loads of the facility's electricity balance
        if m is not None:  # an import-only or push meter has no power here: the balance is incomplete
            loc = m.it_location.value if m.it_location is not None else None
            meters.append(MeterPower(dev.id, m.role.value, meter_kw(probe, dev) if probe else None, loc))
        if probe is not None and is_ups(dev, site, probe.profile):
            ups.append(UpsOutput(dev.id, ups_output_kw(probe)))
    return balance(meters, ups)


def run_probe(site: LoadedSite) -> tuple[list[DeviceProbe], Balance]:
    from pue_monitor.collectors.probe import probe_site

    probes = asyncio.run(probe_site(site))
    return probes, site_balance(site, probes)


def probe_failed(probes: list[DeviceProbe], bal: Balance) -> bool:
    polled = [p for p in probes if not p.push]
    return any(not p.answered or p.missing for p in polled) or bool(bal.warnings)


def probe_dict(probes: list[DeviceProbe], bal: Balance) -> dict[str, Any]:
    return {
        "ok": not probe_failed(probes, bal),
        "devices": [p.as_dict() for p in probes],
        "balance": bal.as_dict(),
    }


def print_probe(probes: list[DeviceProbe], bal: Balance) -> None:
    print("Probe (every device read once):")
    width = max((len(p.device) for p in probes), default=0)
    for p in probes:
        head = f"  {p.device.ljust(width)}  {p.protocol:9} {p.address}"
        if p.push:
            print(f"{head}: push device, not read (it publishes on its own)")
        elif not p.answered:
            print(f"{head}: NO ANSWER: {p.error}")
        else:
            good = sum(r.quality == "ok" for r in p.points)
            print(f"{head}: answered in {p.seconds:.3f} s, {good}/{len(p.points)} points ok")
        if p.missing:
            why = {r.point: f"{r.quality}: {r.reason}" if r.reason else r.quality for r in p.points}
            shown = ", ".join(f"{m} ({why[m]})" if m in why else m for m in p.missing)
            print(f"  {' ' * width}  MISSING configured points: {shown}")
    print("Energy balance of the first readings:")
    print(f"  facility (incomers)  {bal.facility_kw:10.1f} kW")
    for role, kw in bal.loads_kw.items():
        print(f"  {role:20} {kw:10.1f} kW")
    if bal.unattributed_share is not None:
        print(f"  {'unattributed':20} {bal.unattributed_kw:10.1f} kW ({bal.unattributed_share:.1%} of facility)")
    if bal.it_to_ups is not None:
        print(
            f"  IT behind the UPSes  {bal.it_downstream_kw:10.1f} kW = {bal.it_to_ups:.1%} of the UPS output "
            f"({bal.ups_output_kw:.1f} kW)"
        )
    if bal.unknown:
        print(f"  incomplete (no power reading): {', '.join(bal.unknown)}; no balance warning without them")
    for w in bal.warnings:
        print(f"WARNING: {w}")


def probe_command(site: LoadedSite, *, as_json: bool, summary: dict[str, Any] | None = None) -> int:
    """What `check-config --probe` runs once the file is valid (summary: the file's own)."""
    probes, bal = run_probe(site)
    if as_json:
        out = dict(summary or {})
        out["probe"] = probe_dict(probes, bal)
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print_probe(probes, bal)
    return EXIT_FAILURE if probe_failed(probes, bal) else EXIT_OK


# ------------------------------------------------------------------------------ parsers


def add_parsers(sub: Subparsers) -> None:
    r = sub.add_parser(
        "read",
        help="read one device once and print every point (raw, decoded, unit, quality)",
        description="Read one device once and print every point: Modbus registers as hex words or the SNMP "
        "OID and raw value, the decoded value, unit and quality (an MQTT or Sparkplug device: the readings of "
        "its next message). Exit 0 the device answered, 1 it did not, 2 usage or configuration error.",
    )
    r.add_argument("device", nargs="?", metavar="DEVICE", help="device id in the site file (with --config)")
    r.add_argument("--config", metavar="SITE", help="site file the device is in")
    r.add_argument("--protocol", choices=("modbus", "snmp"), help="without a site file: the protocol")
    r.add_argument("--host", help="without a site file: host name or address")
    r.add_argument("--port", type=int, help="port (default 502 for modbus, 161 for snmp)")
    r.add_argument("--profile", help="profile id (`pue profiles`), or auto for SNMP by sysObjectID")
    r.add_argument("--unit", type=int, default=1, metavar="N", help="modbus unit id (default 1)")
    r.add_argument("--community", metavar="C", help="SNMP v2c community (default public)")
    r.add_argument("--points", metavar="P1,P2", help="only these points (default all of the profile)")
    r.add_argument(
        "--timeout",
        type=positive,
        metavar="S",
        help="per-request timeout, s (default the device's, or 2); push devices: how long to wait for a message "
        "(default the device's interval + 5)",
    )
    r.add_argument("--profile-dir", action="append", default=[], metavar="DIR", help="extra profile folder")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.set_defaults(func=cmd_read)
