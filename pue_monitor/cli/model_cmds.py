"""`pue model train|drift|status|show`: the expected-PUE model (issue 10)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pue_monitor.cli.common import EXIT_FAILURE, EXIT_OK, Subparsers, iso, positive
from pue_monitor.errors import UsageError, UserError

DAY_S = 86400.0


def _site_history(args: argparse.Namespace, days: float) -> tuple[Any, Path, Any, float]:
    """(site config, store path, intervals of the window, window end) for --config/--db/--end."""
    from pue_monitor.config.loader import load_site
    from pue_monitor.models import history
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
    try:
        reader = StoreReader(db)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    end = time.time() if args.end is None else args.end
    try:
        iv = history.from_store(reader, cooling.points, start=end - days * DAY_S, end=end, resolution=args.resolution)
    finally:
        reader.close()
    return cfg, db, iv, end


def cmd_train(args: argparse.Namespace) -> int:
    from pue_monitor.models import baseline, history
    from pue_monitor.models.data import default_cooling

    cfg, db, iv, end = _site_history(args, args.days)
    cooling = cfg.cooling or default_cooling()
    out = Path(args.out) if args.out else db.parent / "model"
    try:
        model = baseline.fit(iv, cooling=cooling, utc_offset_s=history.utc_offset_s(cfg.site.timezone, end))
    except ValueError as exc:
        raise UserError(f"{db}: {exc} ({len(iv)} {args.resolution} intervals in the last {args.days:g} days)") from None
    model.save(out)
    print(f"model written to {out}: {baseline.describe(out)}")
    return EXIT_OK


def _hours(s: float | None) -> str:
    return "not heading there" if s is None else ("now" if s == 0 else f"in {s / 3600:.1f} h ({s / DAY_S:.1f} days)")


def cmd_drift(args: argparse.Namespace) -> int:
    from pue_monitor.models import baseline, drift

    cfg, db, iv, end = _site_history(args, args.days)
    model_dir = Path(args.model) if args.model else db.parent / "model"
    model = baseline.load(model_dir)
    tz = cfg.site.timezone
    if model is None:
        msg = f"{baseline.NO_MODEL} in {model_dir}: no drift check (threshold rules only until `pue model train`)"
        print(json.dumps({"model": None, "message": msg}) if args.json else msg)
        return EXIT_OK
    rep = drift.assess(iv, model.expected_overhead_kwh(iv), model.errors.residual_std, now=end)
    if args.json:
        print(json.dumps({"model": str(model_dir), "intervals": len(iv), **_report_dict(rep)}, indent=2))
        return EXIT_OK
    print(
        f"{len(iv)} {args.resolution} intervals, {iso(end - args.days * DAY_S, tz)} .. {iso(end, tz)} ({tz}); "
        f"CUSUM k {rep.k:.4f}, h {rep.h:.4f} PUE (sigma {rep.sigma:.4f})"
    )
    if not rep.episodes:
        print("no drift")
    for e in rep.episodes:
        until = "ongoing" if e.ended is None else f"ended {iso(e.ended, tz)}"
        print(f"drift began {iso(e.began, tz)}, detected {iso(e.detected_at, tz)}, {until}: +{e.size:.4f} PUE")
    p = rep.projection
    if p is not None:
        print(
            f"drift now {p.drift_now:+.4f} PUE, trend {p.slope_per_day:+.4f} PUE/day; expected PUE last 24 h: "
            f"daily {p.daily_expected_pue:.3f}, highest 15-min {p.peak_interval_expected_pue:.3f}"
        )
        for name in p.daily:
            print(f"  {name}: daily PUE {_hours(p.daily[name])}, 15-minute PUE {_hours(p.interval[name])}")
    return EXIT_OK


def _report_dict(rep: Any) -> dict[str, Any]:
    import dataclasses

    return {
        "now": rep.now,
        "sigma": rep.sigma,
        "k": rep.k,
        "h": rep.h,
        "drifting": rep.drifting,
        "episodes": [dataclasses.asdict(e) for e in rep.episodes],
        "projection": None if rep.projection is None else dataclasses.asdict(rep.projection),
    }


def cmd_show(args: argparse.Namespace) -> int:
    from pue_monitor.models import baseline

    print(baseline.describe(args.dir))
    return EXIT_OK


def model_lines(model: dict[str, Any], tz: str) -> list[str]:
    """The text report of the /status ``model`` section (see :class:`pue_monitor.models.watch.ModelStatus`)."""
    out = [f"model: {model['message']}"]
    if model.get("path"):
        out.append(f"  directory {model['path']}")
    if model.get("trained_at") is not None:
        out.append(
            f"  trained {iso(model['trained_at'], tz)} on {iso(model['training_start'], tz)} .. "
            f"{iso(model['training_end'], tz)} ({model['samples']} intervals); held-out MAE {model['mae']:.5f}, "
            f"p95 {model['p95_abs']:.5f} PUE"
        )
    if model.get("next_training") is not None:
        out.append(f"  next training {iso(model['next_training'], tz)}")
    exp = model.get("expected_pue") or {}
    if any(v is not None for v in exp.values()):
        shown = ", ".join(f"{w} {v:.3f}" for w, v in exp.items() if v is not None)
        out.append(f"  expected PUE (last closed hour / local day): {shown}")
    for name, by_window in (model.get("projected_s") or {}).items():
        out.append(f"  {name}: daily PUE {_hours(by_window.get('1d'))}, 15-minute PUE {_hours(by_window.get('15m'))}")
    return out


def cmd_status(args: argparse.Namespace) -> int:
    import sys

    from pue_monitor.cli.status_cmds import Unreachable, fetch, status_url, url_from_site

    url = status_url(args.url) if args.url else url_from_site(args.config)
    try:
        doc = fetch(url, args.timeout)
    except Unreachable as exc:
        print(f"pue model status: {exc} (is `pue run` running?)", file=sys.stderr)
        if args.config:
            from pue_monitor.config.loader import load_site
            from pue_monitor.models import baseline, watch

            site = load_site(args.config)
            where = watch.model_dir(site, site.resolve(site.config.store.path))
            print(f"not running; the model directory says: {baseline.describe(where)}")
        return EXIT_FAILURE
    model = doc.get("model")
    if not isinstance(model, dict):
        raise UserError(f"{url}: the service reports no model section (a pue-monitor older than this one?)")
    if args.json:
        print(json.dumps(model, indent=2))
    else:
        print("\n".join(model_lines(model, str(doc.get("timezone", "UTC")))))
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
    d = msub.add_parser("drift", help="drift of actual PUE above expected over the store's recent history")
    d.add_argument("--config", required=True, metavar="FILE", help="site configuration (cooling points, timezone)")
    d.add_argument("--db", metavar="PATH", help="store file (default: store.path of the site file)")
    d.add_argument("--model", metavar="DIR", help="model directory (default: model/ next to the store)")
    d.add_argument("--days", type=positive, default=14.0, help="window, days back from now (default 14)")
    d.add_argument("--end", type=positive, default=None, metavar="POSIX_S", help="window end (default now)")
    d.add_argument("--resolution", choices=["15m", "1h"], default="15m", help="stored intervals to check")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_drift)
    st = msub.add_parser(
        "status",
        help="the running service's model: state, age, error, expected PUE, drift (from its /status)",
        description="Ask a running `pue run` for its expected-PUE model (GET /status on its Prometheus port): "
        "state (none: threshold rules only, training, ready, stale, failed), age, training window, held-out "
        "MAE, expected PUE and drift. Exit 0 when the service answered, 1 when none did (then the model "
        "directory on disk is described), 2 usage error.",
    )
    where = st.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="FILE", help="site file: ask the service at its prometheus.host/port")
    where.add_argument("--url", metavar="URL", help="the service's status URL or host:port")
    st.add_argument("--json", action="store_true", help="print the model section of /status as JSON")
    st.add_argument("--timeout", type=positive, default=5.0, metavar="SECONDS", help="HTTP timeout (default 5)")
    st.set_defaults(func=cmd_status)
    s = msub.add_parser("show", help="describe a model directory (or say there is no model yet)")
    s.add_argument("dir", metavar="DIR")
    s.set_defaults(func=cmd_show)
