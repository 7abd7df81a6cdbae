"""The `pue` command line: one module per command group, each registering its parsers.

Exit codes (:mod:`pue_monitor.cli.common`): 0 success (also after a clean stop on Ctrl-C or
SIGTERM), 1 runtime failure, 2 usage or configuration error. A failure the user can fix
(:class:`pue_monitor.errors.UserError`: a path, a port, a permission, a file that is not a
store) is one line on stderr naming the file, port or config field and what to do; its
traceback only with ``-v``. An unexpected error (a bug) is logged with its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pue_monitor import __version__
from pue_monitor.cli import (
    alerts_cmds,
    commission,
    config_cmds,
    evaluate_cmds,
    freecooling_cmds,
    grafana_cmds,
    live,
    model_cmds,
    report_cmds,
    simulate,
    status_cmds,
    store_cmds,
)
from pue_monitor.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from pue_monitor.errors import ConfigError, UserError

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main", "setup_logging"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")

EPILOG = f"""\
global options (-v, --log-level, --log-format) go before or after the command:
  `pue -v run ...` and `pue run ... -v` are the same.

logs go to stderr, one line per record, secrets redacted; timestamps are UTC, ISO 8601
with offset (2026-11-24T13:58:17.822+00:00); --log-format json writes one JSON object a line
(time, level, logger, message, exception).

exit status:
  {EXIT_OK}  success (also after a clean stop on Ctrl-C or SIGTERM)
  {EXIT_FAILURE}  runtime failure (a path, port or permission the message names; a closed pipe)
  {EXIT_USAGE}  usage or configuration error
"""


def _add_global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """-v, --log-level, --log-format. On subcommands they default to SUPPRESS, so an option
    given before the command is kept unless repeated after it (then the later one wins;
    -v counts add up)."""
    keep = argparse.SUPPRESS
    g = p.add_argument_group("global options")
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose" if top else "verbose_after",
        default=0 if top else keep,
        help="more log output (-v info, -vv debug); tracebacks of user errors",
    )
    g.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        default=None if top else keep,
        help="log level: " + ", ".join(LOG_LEVELS) + " (default warning; overrides -v)",
    )
    g.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text" if top else keep,
        help="text lines (default) or one JSON object a line; timestamps in UTC either way",
    )


def _subparsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser under ``p`` (``spool status`` too), each once."""
    found: list[argparse.ArgumentParser] = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if child not in found:
                    found += [child, *(c for c in _subparsers(child) if c not in found)]
    return found


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pue",
        description="Measure a data centre's energy and PUE (ISO/IEC 30134-2) live.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"pue-monitor {__version__}")
    _add_global_options(p, top=True)
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
    commission.add_parsers(sub)
    freecooling_cmds.add_parsers(sub)
    model_cmds.add_parsers(sub)
    evaluate_cmds.add_parsers(sub)
    alerts_cmds.add_parsers(sub)
    report_cmds.add_parsers(sub)
    grafana_cmds.add_parsers(sub)
    for child in _subparsers(p):
        _add_global_options(child, top=False)
    return p


def setup_logging(verbose: int = 0, *, level: str | None = None, fmt: str = "text") -> None:
    """Log to stderr, redacted: no configured secret and no URL userinfo in any line,
    whichever library logs it (see :mod:`pue_monitor.logs`). Timestamps in UTC."""
    from pue_monitor.logs import JsonFormatter, UtcFormatter, install_redaction

    numeric = getattr(logging, level.upper()) if level else logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else UtcFormatter())
    logging.basicConfig(level=numeric, handlers=[handler])
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL if numeric > logging.DEBUG else logging.DEBUG)
    logging.captureWarnings(True)  # library warnings go through the redacting handlers too
    install_redaction()


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (`pue show | head`): exit quietly, as the Python docs'
    SIGPIPE recipe does; stdout goes to /dev/null so the interpreter's final flush cannot
    raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    from pue_monitor.logs import redact

    args = build_parser().parse_args(argv)
    args.verbose += getattr(args, "verbose_after", 0)
    setup_logging(args.verbose, level=args.log_level, fmt=args.log_format)
    log = logging.getLogger("pue_monitor")
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return EXIT_OK
    except UserError as exc:  # ConfigError included: the message names the file, field, port
        if args.verbose:
            log.error("pue %s: traceback (shown with -v)", args.command, exc_info=True)
        text = redact(str(exc))
        if isinstance(exc, ConfigError):
            sep = "\n" if "\n" in text else " "
            text = f"configuration error:{sep}{text}"
        print(f"pue {args.command}: {text}", file=sys.stderr)
        return exc.exit_code
    except Exception:  # a bug or an environment failure: the traceback, but through the redacting log
        log.critical("pue %s failed", args.command, exc_info=True)
        return EXIT_FAILURE
