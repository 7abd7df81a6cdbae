"""`pue status`: every device of a running service (state, last success, latency, errors by
kind, readings), its pipeline and outputs — from the service's ``/status`` (served on its
Prometheus port) — or, with ``--db``, what a store last recorded when no service runs.

Exit status: 0 no device down (pending ones are not down), 1 a device down or no service
answering, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pue_monitor.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Subparsers, fmt, iso, positive

DEFAULT_TIMEOUT_S = 5.0
#: hosts a service binds to that a client cannot connect to as such
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class Unreachable(Exception):
    """No pue-monitor service answered at the URL (the message says why)."""


def status_url(url: str) -> str:
    """``host:port``, ``http://host:port[/]`` or ``.../metrics`` -> ``http://host:port/status``."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path in ("", "/metrics"):
        path = "/status"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def url_from_site(path: str) -> str:
    """The /status URL of the service that runs ``path`` (its ``prometheus:`` section)."""
    from pue_monitor.config.loader import load_site
    from pue_monitor.errors import ConfigError

    prom = load_site(path).config.prometheus
    if not prom.enabled or not prom.status:
        field = "prometheus.enabled" if not prom.enabled else "prometheus.status"
        raise ConfigError(f"{path}: {field} is false, so the service serves no /status (use --db STORE)")
    if prom.port == 0:
        raise ConfigError(
            f"{path}: prometheus.port is 0 (a free port picked at start): give --url with the status URL "
            "that `pue run` printed"
        )
    host = _ANY.get(prom.host, prom.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{prom.port}/status"


def fetch(url: str, timeout: float) -> dict[str, Any]:
    """GET the /status document; :class:`Unreachable` with a one-line reason otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:  # 503: starting, stopping, loop not answering
        try:
            why = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            why = exc.reason
        raise Unreachable(f"{url} answered {exc.code}: {why}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"no pue-monitor service answers at {url} ({reason})") from None
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise Unreachable(f"{url} answered, but not with pue-monitor's status (is it another program?)")
    return doc


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 0:
        return f"in {-seconds:.0f} s"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Aligned columns; ``right``: indexes of right-aligned (numeric) columns."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return lines


def render(doc: dict[str, Any], url: str) -> list[str]:
    """The text report of a /status document."""
    tz = doc.get("timezone", "UTC")
    s = doc["summary"]
    ready = "ready" if doc.get("ready") else "not ready: " + "; ".join(doc.get("not_ready", []))
    out = [
        f"site {doc['site']} at {doc.get('now_local')} (from {url}; pue-monitor {doc.get('version')})",
        f"devices {s['up']}/{s['devices']} up, {s['down']} down, {s['pending']} pending | service {ready}",
    ]
    pipe = doc.get("pipeline", {})
    last = pipe.get("last_interval")
    line = f"PUE now {fmt(pipe.get('pue_instant')).strip()}"
    if last:
        line += (
            f"; last minute {iso(last['start'], tz)[11:16]} PUE {fmt(last['pue']).strip()} "
            f"(category {last['category']}, {last['measured']:.0%} measured)"
        )
    else:
        line += "; no closed interval yet"
    out.append(line)
    model = doc.get("model")
    if isinstance(model, dict) and model.get("message"):
        out.append(f"model: {model['message']}")
    out.append("")
    rows, notes = [], []
    for d in doc["devices"]:
        errors = ", ".join(f"{k} {n}" for k, n in d["errors"].items() if n) or "-"
        latency = d.get("last_latency_s")
        rows.append(
            [
                d["id"],
                d["protocol"],
                d["state"].upper() if d["state"] == "down" else d["state"],
                age(d.get("last_success_age_s")),
                "-" if latency is None else f"{latency * 1000:.0f} ms",
                str(d["polls"]),
                errors,
                str(d["readings"]),
            ]
        )
        if d["state"] == "down":
            since = f" since {iso(d['down_since'], tz)}" if d.get("down_since") is not None else ""
            notes.append(f"  {d['id']} down{since} ({d.get('last_error_kind')}): {d.get('last_error')}")
    header = ["device", "protocol", "state", "last success", "latency", "polls", "errors", "readings"]
    out += table(header, rows, right={4, 5, 7})
    if notes:
        out += ["", *notes]
    outputs = doc.get("outputs", [])
    if outputs:
        state = {True: "up", False: "FAILING", None: "not written yet"}
        parts = [
            f"{o['name']} {state[o['up']]}" + (f" ({o['detail']})" if o.get("detail") else "")
            + (f", {o['dropped']} dropped" if o.get("dropped") else "")
            for o in outputs
        ]  # fmt: skip
        out += ["", "outputs: " + "; ".join(parts)]
    return out


def from_store(args: argparse.Namespace) -> int:
    from pue_monitor.readings import Quality
    from pue_monitor.sinks.sqlite import StoreReader

    try:
        reader = StoreReader(args.db)
    except FileNotFoundError as exc:
        print(f"pue status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        meta = reader.meta()
        series = reader.last_per_series()
        minutes = reader.intervals("1m", limit=args.last)
    finally:
        reader.close()
    tz = meta.get("timezone", "UTC")
    now = time.time()
    devices: dict[str, dict[str, Any]] = {}
    for r in series:
        d = devices.setdefault(r["device"], {"device": r["device"], "last_reading": r["ts"], "series": 0})
        d["last_reading"] = max(d["last_reading"], r["ts"])
        d["series"] += 1
    if args.json:
        doc = {
            "source": "store",
            "store": str(args.db),
            "site": meta.get("site"),
            "timezone": tz,
            "devices": list(devices.values()),
            "series": series,
            "intervals": minutes,
        }
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(
        f"from the store {args.db} (no running service was asked: device states are not known, "
        f"only what was last written); site {meta.get('site', '?')}, times in {tz}"
    )
    if not series:
        print("no readings stored")
    else:
        print()
        rows = [[d["device"], iso(d["last_reading"], tz), age(now - d["last_reading"]), str(d["series"])]
                for d in devices.values()]  # fmt: skip
        print("\n".join(table(["device", "last reading", "age", "series"], rows, right={3})))
        if args.series:
            print()
            rows = [
                [
                    r["device"],
                    r["point"],
                    iso(r["ts"], tz),
                    fmt(r["value"], ".6g"),
                    r["unit"],
                    Quality(r["quality"]).name,
                ]
                for r in series
            ]
            print("\n".join(table(["device", "point", "last reading", "value", "unit", "quality"], rows, right={3})))
    print()
    if not minutes:
        print("no 1-minute interval stored")
    else:
        print(f"1-minute intervals, newest last ({len(minutes)}):")
        rows = [
            [iso(m["start"], tz), fmt(m["pue"]), str(m["category"]), f"{m['measured']:.0%}", f"{m['coverage']:.0%}"]
            for m in minutes
        ]
        print("\n".join(table(["start", "PUE", "category", "measured", "coverage"], rows, right={1, 2, 3, 4})))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    if args.db:
        return from_store(args)
    url = status_url(args.url) if args.url else url_from_site(args.config)
    try:
        doc = fetch(url, args.timeout)
    except Unreachable as exc:
        print(
            f"pue status: {exc}; start the service with `pue run --config SITE` (status is served on its "
            "prometheus.port), or read the store with `pue status --db STORE`",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(render(doc, url)))
    return EXIT_FAILURE if doc["summary"]["down"] else EXIT_OK


def add_parsers(sub: Subparsers) -> None:
    p = sub.add_parser(
        "status",
        help="devices, pipeline and outputs of a running service (or what a store last recorded)",
        description="Ask a running `pue run`/`pue demo` for its status (GET /status on its Prometheus "
        "port): every device's state (pending/up/down), last success, latency, errors by kind and "
        "readings. Exit 0 when no device is down, 1 when one is or no service answers, 2 usage error. "
        "With --db, answer from a store file instead (no service needed).",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", metavar="URL", help="the service's status URL or host:port (as `pue run` prints it)")
    where.add_argument("--config", metavar="FILE", help="site file: ask the service at its prometheus.host/port")
    where.add_argument("--db", metavar="STORE", help="no service: the last readings and intervals in this store")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    p.add_argument(
        "--timeout",
        type=positive,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"HTTP timeout (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument("--last", type=int, default=5, metavar="N", help="--db: last N 1-minute intervals (default 5)")
    p.add_argument("--series", action="store_true", help="--db: also the newest reading of every series")
    p.set_defaults(func=cmd_status)
