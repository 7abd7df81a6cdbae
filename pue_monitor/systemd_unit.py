"""The systemd unit shipped with pue-monitor (``pue_monitor/deploy/pue-monitor.service``) and
``pue systemd-unit``, which prints it with ``ExecStart`` pointing at this install's ``pue``."""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONFIG", "DEFAULT_PUE", "add_parser", "default_pue_path", "render", "template"]

#: the paths the shipped unit file names
DEFAULT_PUE = "/usr/local/bin/pue"
DEFAULT_CONFIG = "/etc/pue-monitor/site.yaml"


def template() -> str:
    return resources.files("pue_monitor").joinpath("deploy/pue-monitor.service").read_text(encoding="utf-8")


def _quote(path: str) -> str:
    """A path as one systemd command-line word."""
    if any(c.isspace() or c in "\"'\\;$%" for c in path):
        escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
        return f'"{escaped}"'
    return path


def render(pue: str = DEFAULT_PUE, config: str = DEFAULT_CONFIG) -> str:
    """The unit with ``pue`` as the executable and ``config`` as the site file."""
    if not Path(pue).is_absolute():
        raise ValueError(f"the pue executable must be an absolute path for systemd: {pue}")
    if not Path(config).is_absolute():
        raise ValueError(f"the site file must be an absolute path for systemd: {config}")
    text = template()
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("ExecStart="):
            line = line.replace(DEFAULT_PUE, _quote(pue), 1).replace(DEFAULT_CONFIG, _quote(config), 1)
        lines.append(line)
    return "".join(lines)


def default_pue_path() -> str:
    """This install's ``pue`` script: next to the running interpreter (a venv), else on PATH."""
    beside = Path(sys.executable).with_name("pue")
    if beside.is_file():
        return str(beside.absolute())
    found = shutil.which("pue")
    return str(Path(found).absolute()) if found else DEFAULT_PUE


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    try:
        text = render(args.pue or default_pue_path(), str(Path(args.config).absolute()))
    except ValueError as exc:
        print(f"pue systemd-unit: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `systemd-unit` on the `pue` subcommand parsers (called from cli.build_parser)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "systemd-unit",
        help="print the systemd unit for this install (pue systemd-unit > /etc/systemd/system/pue-monitor.service)",
        description="Print the shipped systemd unit (hardened, DynamicUser, StateDirectory=pue-monitor) with "
        "ExecStart pointing at this install's pue executable.",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE", help=f"site file (default {DEFAULT_CONFIG})")
    p.add_argument("--pue", metavar="PATH", help="pue executable (default: this install's)")
    p.set_defaults(func=cmd_systemd_unit)
    return p
