"""`pue model train` and `pue model show`: the expected-PUE model (issue 10)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pue_monitor.cli.common import EXIT_OK, Subparsers, positive
from pue_monitor.errors import UsageError, UserError

DAY_S = 86400.0


def cmd_train(args: argparse.Namespace) -> int:
    from pue_monitor.config.loader import load_site
    from pue_monitor.models import baseline, history
    from pue_monitor.models.data import default_cooling
    from pue_monitor.sinks.sqlite import StoreReader

    site = load_site(args.config)
    cfg = site.config
    cooling = cfg.cooling or default_cooling()
    if cooling.points.outdoor_temperature is None or cooling.points.relative_humidity is None:
        raise UsageError(
            f"{args.config}: cooling.points.outdoor_temperature and relative_humidity are needed to train",
            "name the weather station's points in the site file",
        )
    db = Path(args.db) if args.db else site.resolve(cfg.store.path)
    out = Path(args.out) if args.out else db.parent / "model"
    try:
        reader = StoreReader(db)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    end = time.time() if args.end is None else args.end
    start = end - args.days * DAY_S
    try:
        iv = history.from_store(reader, cooling.points, start=start, end=end, resolution=args.resolution)
    finally:
        reader.close()
    try:
        model = baseline.fit(iv, cooling=cooling, utc_offset_s=history.utc_offset_s(cfg.site.timezone, end))
    except ValueError as exc:
        raise UserError(f"{db}: {exc} ({len(iv)} {args.resolution} intervals in the last {args.days:g} days)") from None
    model.save(out)
    print(f"model written to {out}: {baseline.describe(out)}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from pue_monitor.models import baseline

    print(baseline.describe(args.dir))
    return EXIT_OK


def add_parsers(sub: Subparsers) -> None:
    p = sub.add_parser("model", help="the expected-PUE model: train it from the store, show it")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    t = msub.add_parser("train", help="train the expected-PUE model on the store's history")
    t.add_argument("--config", required=True, metavar="FILE", help="site configuration (cooling points, timezone)")
    t.add_argument("--db", metavar="PATH", help="store file (default: store.path of the site file)")
    t.add_argument("--out", metavar="DIR", help="model directory (default: model/ next to the store)")
    t.add_argument("--days", type=positive, default=90.0, help="training window, days back from now (default 90)")
    t.add_argument("--end", type=positive, default=None, metavar="POSIX_S", help="window end (default now)")
    t.add_argument("--resolution", choices=["15m", "1h"], default="15m", help="stored intervals to train on")
    t.set_defaults(func=cmd_train)
    s = msub.add_parser("show", help="describe a model directory (or say there is no model yet)")
    s.add_argument("dir", metavar="DIR")
    s.set_defaults(func=cmd_show)
