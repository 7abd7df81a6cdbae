"""`pue grafana`: dashboards as code. ``build`` regenerates the committed JSON (``--check``: exit 1
when it is stale), ``provision DIR`` writes a ready provisioning tree, ``push --url URL`` puts the
folder, datasources and dashboards into a running Grafana (needs the extra ``grafana``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pue_monitor.cli.common import EXIT_FAILURE, EXIT_OK, Subparsers

#: where `pue grafana build` writes (inside the package: provision and push read it from there too)
JSON_DIR = Path(__file__).resolve().parent.parent / "grafana" / "json"


def cmd_build(args: argparse.Namespace) -> int:
    from pue_monitor.errors import UserError
    from pue_monitor.grafana.dashboards import build_all, render

    out: Path = args.dir
    fresh = {name: render(model) for name, model in build_all().items()}
    if args.check:
        stale = []
        for name, text in fresh.items():
            path = out / name
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        extra = sorted(p.name for p in out.glob("*.json") if p.name not in fresh) if out.is_dir() else []
        if stale or extra:
            what = ", ".join([*(f"{n} stale" for n in stale), *(f"{n} not built by the code" for n in extra)])
            print(f"pue grafana build --check: {out}: {what}; run `pue grafana build`", file=sys.stderr)
            return EXIT_FAILURE
        print(f"{out}: {len(fresh)} dashboards up to date")
        return EXIT_OK
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in fresh.items():
            tmp = out / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, out / name)
    except OSError as exc:
        raise UserError(f"{out}: cannot write the dashboards: {exc.strerror or exc}") from None
    print(f"{out}: wrote {', '.join(fresh)}")
    return EXIT_OK


def _sources(args: argparse.Namespace) -> object:
    from pue_monitor.grafana.provisioning import Sources

    return Sources(
        influx_url=args.influx_url,
        influx_database=args.influx_database,
        prometheus_url=args.prometheus_url,
        influx_token_env=getattr(args, "influx_token_env", None),
        influx_user=args.influx_user,
        influx_password_env=getattr(args, "influx_password_env", None),
    )


def cmd_provision(args: argparse.Namespace) -> int:
    from pue_monitor.grafana.provisioning import Sources, write

    src = _sources(args)
    assert isinstance(src, Sources)
    for path in write(args.dir, src, args.dashboards_path):
        print(path)
    print(f"point Grafana at it: [paths] provisioning = {args.dir.absolute()} (or GF_PATHS_PROVISIONING)")
    return EXIT_OK


def _token(args: argparse.Namespace) -> str:
    from pue_monitor.errors import UsageError, UserError

    if args.token_file is not None:
        try:
            token = str(args.token_file.read_text(encoding="utf-8")).strip()
        except OSError as exc:
            raise UserError(f"{args.token_file}: cannot read the token file: {exc.strerror or exc}") from None
        if not token:
            raise UserError(f"{args.token_file}: the token file is empty")
        return token
    token = os.environ.get("GRAFANA_TOKEN", "").strip()
    if not token:
        raise UsageError(
            "no Grafana token", "set GRAFANA_TOKEN or give --token-file (a service account token, Editor role)"
        )
    return token


def cmd_push(args: argparse.Namespace) -> int:
    from pue_monitor.grafana.provisioning import Sources
    from pue_monitor.grafana.push import push

    token = _token(args)
    src = _sources(args)
    assert isinstance(src, Sources)
    res = push(args.url, token, src, timeout=args.timeout)
    for label, items in (("created", res.created), ("updated", res.updated), ("unchanged", res.unchanged)):
        for item in items:
            print(f"{label:9} {item}")
    return EXIT_OK


def _source_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("datasources (as Grafana's server reaches them)")
    g.add_argument("--influx-url", default="http://127.0.0.1:8086", help="InfluxDB URL (default %(default)s)")
    g.add_argument(
        "--influx-database", default="pue", help="database (1.x) or DBRP-mapped bucket (2.x, 3), default %(default)s"
    )
    g.add_argument("--influx-user", default=None, help="InfluxDB 1.x user")
    g.add_argument("--prometheus-url", default="http://127.0.0.1:9090", help="Prometheus URL (default %(default)s)")


def add_parsers(sub: Subparsers) -> None:
    g = sub.add_parser("grafana", help="Grafana dashboards: build, provision, push")
    gsub = g.add_subparsers(dest="grafana_command", required=True, metavar="SUBCOMMAND")

    b = gsub.add_parser("build", help="regenerate the dashboard JSON from the code")
    b.add_argument("--dir", type=Path, default=JSON_DIR, help="output directory (default: the package's json/)")
    b.add_argument("--check", action="store_true", help="write nothing; exit 1 when the JSON is stale")
    b.set_defaults(func=cmd_build)

    p = gsub.add_parser("provision", help="write a Grafana provisioning tree (datasources, dashboards)")
    p.add_argument("dir", type=Path, metavar="DIR", help="the provisioning directory to write")
    p.add_argument(
        "--dashboards-path",
        default=None,
        help="where Grafana's server finds DIR/dashboards/pue-monitor (default: its absolute path here)",
    )
    _source_options(p)
    p.add_argument(
        "--influx-token-env",
        metavar="NAME",
        default=None,
        help="environment variable of Grafana's process holding an InfluxDB token (written as $NAME)",
    )
    p.add_argument(
        "--influx-password-env",
        metavar="NAME",
        default=None,
        help="environment variable of Grafana's process holding the 1.x password (written as $NAME)",
    )
    p.set_defaults(func=cmd_provision)

    u = gsub.add_parser("push", help="create the folder, datasources and dashboards in a running Grafana")
    u.add_argument("--url", required=True, help="Grafana's URL, e.g. http://grafana:3000")
    u.add_argument(
        "--token-file", type=Path, default=None, help="file holding the API token (default: env GRAFANA_TOKEN)"
    )
    u.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout, seconds (default %(default)s)")
    _source_options(u)
    u.set_defaults(func=cmd_push)
