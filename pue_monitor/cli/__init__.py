"""The `pue` command line: one module per command group, each registering its parsers.

Exit codes: 0 success (also after a clean stop on Ctrl-C/SIGTERM), 1 runtime failure,
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pue_monitor import __version__
from pue_monitor.cli import config_cmds, live, simulate, status_cmds, store_cmds
from pue_monitor.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from pue_monitor.errors import ConfigError

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main", "setup_logging"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pue", description="Measure a data centre's energy and PUE (ISO/IEC 30134-2) live."
    )
    p.add_argument("--version", action="version", version=f"pue-monitor {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    live.add_parsers(sub)
    config_cmds.add_parsers(sub)
    store_cmds.add_parsers(sub)
    status_cmds.add_parsers(sub)

    from pue_monitor.ingest.command import add_parser as add_ingest_parser  # `pue ingest-csv`
    from pue_monitor.systemd_unit import add_parser as add_unit_parser  # `pue systemd-unit`

    add_ingest_parser(sub)
    add_unit_parser(sub)
    simulate.add_parsers(sub)
    return p


def setup_logging(verbose: int = 0) -> None:
    """Log to stderr, redacted: no configured secret and no URL userinfo in any line,
    whichever library logs it (see :mod:`pue_monitor.logs`)."""
    from pue_monitor.logs import install_redaction

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL if verbose < 2 else logging.DEBUG)
    logging.captureWarnings(True)  # library warnings go through the redacting handlers too
    install_redaction()


def main(argv: list[str] | None = None) -> int:
    from pue_monitor.logs import redact

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        text = redact(str(exc))
        sep = "\n" if "\n" in text else " "
        print(f"pue {args.command}: configuration error:{sep}{text}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception:  # a bug or an environment failure: the traceback, but through the redacting log
        logging.getLogger("pue_monitor").critical("pue %s failed", args.command, exc_info=True)
        return EXIT_FAILURE
