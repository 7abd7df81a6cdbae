"""`pue ingest-csv FILE --config SITE`: backfill a building-management export.

Exit codes: 0 when rows were ingested (also when all of them were already stored), 1 when the
file held no usable row, 2 on a usage error (file missing or not an export, config invalid).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from pue_monitor.errors import ConfigError

__all__ = ["add_parser", "cmd_ingest_csv"]

EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2


class _Progress:
    """A progress bar on a terminal, a plain line every ``every`` seconds otherwise."""

    def __init__(self, stream: IO[str], *, enabled: bool, every: float = 5.0, name: str = "pue ingest-csv") -> None:
        self.name = name
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self.every = every if not self.tty else 0.1
        self.t0 = time.monotonic()
        self._last = -1e9
        self._stage = ""
        self._drawn = False
        self._lock = threading.Lock()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        with self._lock:  # the store writes in a thread of its own while the engine runs
            self._show(stage, done, total)

    def _show(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        final = done >= total
        if stage == self._stage and not final and now - self._last < self.every:
            return
        if stage != self._stage and not self.tty and not final and self._stage and now - self._last < self.every:
            self._stage = stage
            return
        self._stage, self._last = stage, now
        elapsed = now - self.t0
        if total <= 0:  # a stage without a count: just its name
            self.note(f"{stage} ... {elapsed:.1f} s")
            return
        share = done / total
        if self.tty:
            width = 30
            bar = "#" * round(share * width)
            self.stream.write(f"\r{stage:<24} [{bar:<{width}}] {share:4.0%} {done:,}/{total:,}  {elapsed:5.1f} s\x1b[K")
            self._drawn = True
        else:
            self.stream.write(f"{self.name}: {stage} {share:.0%} ({done:,}/{total:,}), {elapsed:.1f} s\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K")
            self._drawn = True
        else:
            self.stream.write(f"{self.name}: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def cmd_ingest_csv(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import load_site
    from pue_monitor.ingest.backfill import backfill
    from pue_monitor.ingest.export import ExportFormatError, read_export
    from pue_monitor.pipeline.kpi import KpiBasis
    from pue_monitor.pipeline.model import series_specs
    from pue_monitor.sinks.lock import InstanceLock, LockError
    from pue_monitor.sinks.sqlite import SqliteStore

    err = sys.stderr
    site = load_site(args.config)  # ConfigError -> exit 2 in cli.main
    cfg = site.config
    specs = series_specs(site)
    if not specs:
        raise ConfigError(f"{args.config}: no device has a meter: nothing to ingest into")
    # the same file `pue run` writes: store.path relative to the site file's folder; --store to the working folder
    store_path = Path(args.store) if args.store else site.resolve(cfg.store.path)
    if not store_path.parent.is_dir():
        print(f"pue ingest-csv: {store_path}: folder {store_path.parent} does not exist", file=err)
        return EXIT_USAGE
    progress = _Progress(err, enabled=not args.quiet)
    started = time.perf_counter()
    progress.note(f"reading {args.file}")
    try:
        export = read_export(args.file, specs, max_report=args.max_errors)
    except ExportFormatError as exc:
        progress.close()
        print(f"pue ingest-csv: {exc}", file=err)
        return EXIT_USAGE
    read_s = time.perf_counter() - started
    progress.note(f"read {export.rows:,} rows ({export.good:,} good, {export.bad:,} bad) in {read_s:.1f} s")
    progress.close()
    if not args.quiet:
        for bad in export.bad_rows:
            print(f"{export.path}:{bad.line}: {bad.problem.label}: {bad.detail}", file=err)
        if export.bad > len(export.bad_rows):
            print(f"{export.path}: ... and {export.bad - len(export.bad_rows):,} more bad rows", file=err)

    result: Any = None
    if export.good:
        keys = export.keys
        spec_list = [specs[k] for k in keys]
        devices = {d.id: d for d in cfg.devices}
        units = [site.unit_of(devices[dev], point) or "" for dev, point in keys]
        # the live service's single-instance lock: a running `pue run` would overwrite the
        # recomputed rollups of the open day with its own, so backfill waits for it to stop
        try:
            lock = InstanceLock(store_path, "store").acquire()
        except LockError as exc:
            print(f"pue ingest-csv: {exc}", file=err)
            return EXIT_NOTHING
        try:
            store = SqliteStore(store_path)
        except Exception as exc:  # sqlite3.Error, OSError: the path is the user's
            lock.release()
            print(f"pue ingest-csv: {store_path}: cannot open the store: {exc}", file=err)
            return EXIT_USAGE
        try:
            store.set_meta("site", cfg.site.id)
            store.set_meta("timezone", cfg.site.timezone)
            result = backfill(
                store,
                site_id=cfg.site.id,
                timezone=cfg.site.timezone,
                keys=keys,
                specs=spec_list,
                units=units,
                sid=export.sid,
                t_us=export.t_us,
                value=export.value,
                progress=progress,
                kpi=KpiBasis.from_config(cfg.kpis),
            )
        except sqlite3.Error as exc:  # locked by another writer, disk full, ...: nothing was committed
            progress.close()
            print(f"pue ingest-csv: {store_path}: {exc} (readings are stored all or none; run it again)", file=err)
            return EXIT_NOTHING
        finally:
            progress.close()
            store.close()
            lock.release()
        result.seconds = {"read csv": read_s, **result.seconds}
    elapsed = time.perf_counter() - started
    summary: dict[str, Any] = {
        "file": str(export.path),
        "store": str(store_path),
        "rows": export.rows,
        "good": export.good,
        "bad": export.bad,
        "bad_by_reason": {p.label: n for p, n in sorted(export.bad_counts.items())},
        "bad_rows": [{"line": b.line, "reason": b.problem.label, "detail": b.detail} for b in export.bad_rows],
        "inserted": result.inserted if result else 0,
        "duplicates": result.duplicates if result else 0,
        "days_recomputed": result.days if result else 0,
        "rollups": result.rollups if result else {},
        "e_facility_kwh": result.e_facility_kwh if result else None,
        "e_it_kwh": result.e_it_kwh if result else None,
        "pue": result.pue if result else None,
        "events": dict(result.events) if result else {},
        "seconds": {k: round(v, 3) for k, v in (result.seconds if result else {"read csv": read_s}).items()},
        "elapsed_s": round(elapsed, 3),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        for line in result.event_samples if result else []:
            print(f"pue ingest-csv: event {line}", file=err)
        reasons = ", ".join(f"{n:,} {label}" for label, n in summary["bad_by_reason"].items())
        print(
            f"{export.path}: {export.rows:,} rows, {export.good:,} good, {export.bad:,} bad"
            + (f" ({reasons})" if reasons else "")
        )
        if result is not None:
            pue = "n/a" if result.pue is None else f"{result.pue:.4f}"
            events = ", ".join(f"{n} {k}" for k, n in sorted(result.events.items())) or "none"
            print(
                f"stored {result.inserted:,} new readings ({result.duplicates:,} already stored or repeated) in "
                f"{store_path}; recomputed {result.days} day(s) of rollups; over those days E_DC "
                f"{_kwh(result.e_facility_kwh)} / E_IT {_kwh(result.e_it_kwh)} = PUE {pue}; "
                f"pipeline events: {events}; {elapsed:.1f} s"
            )
    if not export.good:
        print(f"pue ingest-csv: {export.path}: no row could be ingested", file=err)
        return EXIT_NOTHING
    return EXIT_OK


def _kwh(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.1f} kWh"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `ingest-csv` on the `pue` subcommand parsers (called from cli.build_parser)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "ingest-csv",
        help="backfill readings from a building-management export (CSV)",
        description="Read a long-form CSV export (timestamp with UTC offset, meter, quantity energy_kwh or "
        "power_kw, value), store its readings in the embedded store and recompute the 1m/15m/1h/1d rollups "
        "of the days it touches through the same energy engine as `pue run`. Re-ingesting a file changes "
        "nothing.",
    )
    p.add_argument("file", metavar="FILE", help="CSV export")
    p.add_argument("--config", required=True, metavar="SITE", help="site configuration (YAML)")
    p.add_argument("--store", metavar="PATH", help="embedded store file (default: the config's store.path)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary line")
    p.add_argument(
        "--max-errors", type=int, default=50, metavar="N", help="bad rows listed one by one (default 50; all counted)"
    )
    p.set_defaults(func=cmd_ingest_csv)
    return p
