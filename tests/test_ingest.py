"""`pue ingest-csv`: backfill from a building-management export through the live energy engine.

Every test runs the real command (``python -m pue_monitor ingest-csv``) against a real SQLite
store and checks the stored numbers.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import textwrap
import zoneinfo
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from pue_monitor.config.loader import load_site
from pue_monitor.pipeline.energy import interval_energy
from pue_monitor.pipeline.model import series_specs
from pue_monitor.pipeline.pue import aggregate, rollup
from pue_monitor.readings import Reading
from pue_monitor.sinks.sqlite import SqliteStore, StoreReader

PUE = [sys.executable, "-m", "pue_monitor"]
TZ = "Europe/Berlin"
ZONE = zoneinfo.ZoneInfo(TZ)
JAN = datetime(2026, 1, 1, tzinfo=ZONE).timestamp()
FEB = datetime(2026, 2, 1, tzinfo=ZONE).timestamp()

SITE = """\
site: {{id: backfill, timezone: {tz}}}
prometheus: {{enabled: false}}
store: {{path: {store}}}
devices:
  - id: grid            # utility incomer, export only; its counter is in Wh
    protocol: import
    interval: 60
    meter: {{role: facility_input, energy: energy}}
    units: {{energy: Wh}}
  - id: ups             # UPS output, rolls over at 100,000 kWh
    protocol: import
    interval: 60
    meter: {{role: it, it_location: ups_output, energy: energy, rollover: 100000}}
  - id: crac            # cooling, power only
    protocol: import
    interval: 60
    meter: {{role: cooling, power: power}}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(tz=TZ, store=tmp_path / "store.sqlite"))
    return path


def ingest(csv: Path, site: Path, *extra: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [*PUE, "ingest-csv", str(csv), "--config", str(site), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, summary, proc.stderr


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, ZONE).isoformat()


# ---------------------------------------------------------------------------- truth


def p_grid(t: np.ndarray) -> np.ndarray:  # kW
    return 420.0 + 60.0 * np.sin(2 * np.pi * (t - JAN) / 86400.0)


def p_ups(t: np.ndarray) -> np.ndarray:  # kW
    return 330.0 + 25.0 * np.sin(2 * np.pi * (t - JAN) / 86400.0 + 0.7)


def e_grid(t: np.ndarray) -> np.ndarray:  # kWh since JAN, exact integral of p_grid
    w = 2 * np.pi / 86400.0
    return (420.0 * (t - JAN) + 60.0 / w * (1 - np.cos(w * (t - JAN)))) / 3600.0


def e_ups(t: np.ndarray) -> np.ndarray:
    w = 2 * np.pi / 86400.0
    return (330.0 * (t - JAN) + 25.0 / w * (math.cos(0.7) - np.cos(w * (t - JAN) + 0.7))) / 3600.0


def month_csv(path: Path, *, traps: bool) -> dict[str, float]:
    """January 2026 of 1-minute readings (grid in Wh, UPS in kWh, CRAC power) with the faults
    a real export has; returns the hand-computed true energies of the month."""
    t = JAN + 60.0 * np.arange(round((FEB - JAN) / 60) + 1)  # inclusive of Feb 1 00:00
    grid = 5_000_000.0 + e_grid(t) * 1000.0  # Wh counter reading
    ups = 90_000.0 + e_ups(t)  # kWh: crosses 100,000 on day ~1.3 and wraps
    k_reset, k_replace = 20 * 1440 + 17, 27 * 1440 + 600
    # a real reset of the grid meter right after reading k_reset-1: it restarts from 0
    grid[k_reset:] = (e_grid(t[k_reset:]) - e_grid(t[k_reset - 1])) * 1000.0
    # the UPS meter is replaced after reading k_replace-1: the new one starts from 0 too
    ups[k_replace:] = e_ups(t[k_replace:]) - e_ups(t[k_replace - 1])
    ups = np.mod(ups, 100_000.0)
    rows: list[tuple[float, str, str, str]] = []
    for k, ts in enumerate(t):
        rows.append((ts, "grid", "energy_kwh", repr(float(grid[k]) / 1000.0)))
        rows.append((ts, "ups", "energy_kwh", repr(float(ups[k]))))
        rows.append((ts, "crac", "power_kw", repr(80.0 + 5.0 * math.sin(k / 100.0))))
    wrap = int(np.flatnonzero(np.diff(ups) < -50_000)[0]) + 1  # first reading after the wrap
    missed = {(t[wrap + d], "ups") for d in (-2, -1, 0)}  # three missed polls across the wrap
    rows = [r for r in rows if (r[0], r[1]) not in missed]
    rows.append(rows[1000])  # an exact duplicate row
    rows.append(rows[5000])
    if traps:
        day = 86400.0 / 60
        trap_rows = {
            (t[int(3 * day + 100)], "ups"): repr(float(ups[int(3 * day + 100)]) + 1e9),  # spike
            (t[int(5 * day + 7)], "grid"): "0",  # a lone zero
            (t[int(8 * day + 50)], "ups"): "5e-324",  # a denormal
            (t[int(11 * day + 400)], "grid"): repr(float(grid[int(11 * day + 399)]) / 1000.0 - 0.001),  # jitter back
        }
        rows = [(ts, m, q, trap_rows.get((ts, m), v)) for ts, m, q, v in rows]
        k = int(14 * day + 3)  # a conflicting duplicate: same time, a spiked value
        rows.append((t[k], "grid", "energy_kwh", repr(float(grid[k]) / 1000.0 + 50_000.0)))
    rows.sort(key=lambda r: r[0])
    with path.open("w") as f:
        f.write("timestamp,meter,quantity,value\n")
        for ts, m, q, v in rows:
            f.write(f"{iso(ts)},{m},{q},{v}\n")
    e_fac = float(e_grid(np.array(FEB)) - e_grid(np.array(JAN)))
    e_it = float(e_ups(np.array(FEB)) - e_ups(np.array(JAN)))
    return {"facility": e_fac, "it": e_it, "pue": e_fac / e_it}


# ---------------------------------------------------------------------------- tests


def test_bad_rows_reported_by_line_and_reason_good_rows_kept(tmp_path, site):
    csv = tmp_path / "export.csv"
    t0 = datetime(2026, 3, 2, tzinfo=ZONE).timestamp()
    lines = ["timestamp,meter,quantity,value"]
    for k in range(10):
        ts = iso(t0 + 60 * k)
        lines += [f"{ts},grid,energy_kwh,{1000 + 7 * k}", f"{ts},ups,energy_kwh,{500 + 5 * k}"]
    bad = {
        "2026-03-02 10:00:00,grid,energy_kwh,1": "timestamp without UTC offset",
        "yesterday,grid,energy_kwh,1": "unparseable timestamp",
        "2026-03-02T10:00:00+01:00,chiller,energy_kwh,1": "unknown meter",
        "2026-03-02T10:00:00+01:00,crac,energy_kwh,1": "meter without that quantity",
        "2026-03-02T10:00:00+01:00,grid,reactive_kvarh,1": "unknown quantity",
        "2026-03-02T10:00:00+01:00,grid,energy_kwh,n/a": "non-numeric value",
        "2026-03-02T10:00:00+01:00,grid,energy_kwh,inf": "non-finite value",
        "2026-03-02T10:00:00+01:00,grid,energy_kwh,": "missing field",
    }
    where = {}
    for i, row in enumerate(bad):
        lines.insert(3 + 2 * i, row)  # spread among the good rows
    for n, text in enumerate(lines, start=1):
        if text in bad:
            where[n] = bad[text]
    csv.write_text("\n".join(lines) + "\n")

    code, summary, err = ingest(csv, site)
    assert code == 0, err
    assert summary["good"] == 20 and summary["bad"] == len(bad) and summary["inserted"] == 20
    assert {b["line"]: b["reason"] for b in summary["bad_rows"]} == where
    for line, reason in where.items():  # also on stderr, one line each, naming file and line
        assert f"{csv}:{line}: {reason}" in err
    assert summary["bad_by_reason"] == {r: 1 for r in where.values()}
    reader = StoreReader(tmp_path / "store.sqlite")
    # stored in the point's unit: the grid counter is in Wh
    assert [v for _, v, _ in reader.readings("grid", "energy")] == [1000_000.0 + 7000.0 * k for k in range(10)]
    assert [v for _, v, _ in reader.readings("ups", "energy")] == [500.0 + 5 * k for k in range(10)]
    # PUE of the nine complete minutes: 7 kWh / 5 kWh a minute
    minutes = [r for r in reader.intervals("1m", limit=10_000) if r["pue"] is not None]
    assert len(minutes) == 9 and all(r["pue"] == pytest.approx(1.4) for r in minutes)
    reader.close()


def test_usage_errors_and_nothing_ingested(tmp_path, site):
    code, _, err = ingest(tmp_path / "missing.csv", site)
    assert code == 2 and "missing.csv: no such file" in err and "Traceback" not in err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("time,meter,value\n2026-01-01T00:00:00Z,grid,1\n")
    code, _, err = ingest(wrong, site)
    assert code == 2 and "missing column(s) timestamp, quantity" in err
    bad_site = tmp_path / "bad.yaml"
    bad_site.write_text("site: {id: x}\ndevices: []\n")
    code, _, err = ingest(wrong, bad_site)
    assert code == 2 and "configuration error" in err and "Traceback" not in err
    useless = tmp_path / "useless.csv"
    useless.write_text("timestamp,meter,quantity,value\n2026-01-01T00:00:00,grid,energy_kwh,1\n")
    code, summary, err = ingest(useless, site)
    assert code == 1 and summary["good"] == 0 and "no row could be ingested" in err
    assert summary["bad_rows"] == [{"line": 2, "reason": "timestamp without UTC offset",
                                    "detail": "timestamp '2026-01-01T00:00:00'"}]  # fmt: skip


def _stored(db: Path) -> tuple[int, dict[str, list[tuple]]]:
    r = StoreReader(db)
    try:
        rows = {
            res: [tuple(v for k, v in x.items() if k != "updated") for x in r.intervals(res, limit=10**6)]
            for res in ("1m", "15m", "1h", "1d")
        }
        return r.reading_count(), rows
    finally:
        r.close()


def test_refuses_while_a_live_run_holds_the_store(tmp_path, site):
    """`pue run` holds the store's single-instance lock; a backfill then would have its
    recomputed rollups overwritten by the live service, so it refuses and stores nothing."""
    from pue_monitor.sinks.lock import InstanceLock

    csv = tmp_path / "month.csv"
    month_csv(csv, traps=False)
    db = tmp_path / "store.sqlite"
    held = InstanceLock(db, "store").acquire()  # what Service takes at start
    try:
        code, _, err = ingest(csv, site)
    finally:
        held.release()
    assert code == 1
    assert f"store {db} is in use by another pue process (pid {os.getpid()}" in err
    assert "Traceback" not in err and not db.exists()
    code, summary, err = ingest(csv, site)  # once it is released, the backfill goes through
    assert code == 0 and summary["inserted"] > 0, err


def test_reingest_changes_nothing_and_rollups_equal_the_engine(tmp_path, site):
    csv = tmp_path / "month.csv"
    month_csv(csv, traps=False)
    db = tmp_path / "store.sqlite"
    code, first, err = ingest(csv, site)
    assert code == 0, err
    count1, rows1 = _stored(db)
    assert first["inserted"] == count1 == first["good"] - 2  # the two repeated rows are stored once
    code, again, err = ingest(csv, site)
    assert code == 0, err
    count2, rows2 = _stored(db)
    assert again["inserted"] == 0 and again["duplicates"] == again["good"]
    assert count2 == count1 and rows2 == rows1

    # the stored rollups are what the engine gives on all stored readings of those days
    loaded = load_site(site)
    specs = series_specs(loaded)
    keys = list(specs)
    reader = StoreReader(db)
    sid, ts, val = [], [], []
    for i, (dev, point) in enumerate(keys):
        for t, v, _ in reader.readings(dev, point):
            sid.append(i)
            ts.append(t)
            val.append(v)
    reader.close()
    start = JAN
    end = datetime(2026, 2, 2, tzinfo=ZONE).timestamp()
    ie = interval_energy(list(specs.values()), np.array(sid), np.array(ts), np.array(val),
                         start=start, step=60.0, n=round((end - start) / 60))  # fmt: skip
    minutes = rollup(ie, list(specs.values()))
    r = StoreReader(db)
    stored_1m = r.intervals("1m", limit=10**6)
    assert len(stored_1m) == len(minutes)
    assert sum(m.pue is not None for m in minutes) == 31 * 1440  # January complete, nothing after
    for got, want in zip(stored_1m, minutes, strict=True):
        assert got["start"] == want.start
        for col, value in (("e_facility_kwh", want.e_facility), ("e_it_kwh", want.e_it), ("pue", want.pue)):
            assert (got[col] is None) == (value is None)
            assert value is None or got[col] == pytest.approx(value, rel=1e-9, abs=1e-9)
        assert got["estimated"] == pytest.approx(want.estimated) and got["missing"] == pytest.approx(want.missing)
    for res in ("15m", "1h", "1d"):
        want_rows = aggregate(minutes, resolution=res, tz=TZ)
        got_rows = r.intervals(res, limit=10**6)
        assert [g["start"] for g in got_rows] == [w.start for w in want_rows]
        for g, w in zip(got_rows, want_rows, strict=True):
            assert (g["pue"] is None) == (w.pue is None)
            if w.pue is not None:
                assert g["pue"] == pytest.approx(w.pue, rel=1e-9)
                assert g["e_facility_kwh"] == pytest.approx(w.e_facility, rel=1e-9)
                assert g["coverage"] == pytest.approx(w.coverage)
    days = r.intervals("1d", limit=100)
    r.close()
    assert [datetime.fromtimestamp(d["start"], ZONE).day for d in days[:3]] == [1, 2, 3]
    assert len(days) == 32  # January and the day of the Feb 1 00:00 reading


@pytest.mark.parametrize(
    "traps", [False, True], ids=["rollover-reset-replacement-duplicates", "plus-spike-zero-denormal-jitter-conflict"]
)
def test_month_with_traps_gives_true_energy_and_pue(tmp_path, site, traps):
    csv = tmp_path / "month.csv"
    truth = month_csv(csv, traps=traps)
    code, summary, err = ingest(csv, site)
    assert code == 0, err
    if traps:  # the engine's judgements are reported per file: spike, zero, denormal; reset, replacement
        assert summary["events"].get("glitch", 0) >= 3 and summary["events"].get("reset", 0) == 2
        assert summary["events"].get("conflict", 0) == 1
    r = StoreReader(tmp_path / "store.sqlite")
    jan = [d for d in r.intervals("1d", limit=100) if JAN <= d["start"] < FEB]
    r.close()
    assert len(jan) == 31 and all(d["coverage"] == pytest.approx(1.0) for d in jan)
    e_fac = math.fsum(d["e_facility_kwh"] for d in jan)
    e_it = math.fsum(d["e_it_kwh"] for d in jan)
    assert e_fac == pytest.approx(truth["facility"], rel=1e-4)
    assert e_it == pytest.approx(truth["it"], rel=1e-4)
    assert round(e_fac / e_it, 4) == round(truth["pue"], 4)


def test_backfill_bridges_into_live_data(tmp_path, site):
    """Live readings exist from 06:00; an export of the night before is ingested: the minutes
    between the last exported and the first live reading are bridged, the live day's rollups
    are recomputed, and the live readings are untouched."""
    db = tmp_path / "store.sqlite"
    day = datetime(2026, 4, 10, tzinfo=ZONE).timestamp()
    live_t0 = day + 6 * 3600
    store = SqliteStore(db)
    store.write_readings(
        [Reading(live_t0 + 60 * k, "backfill", "grid", "energy", 2_000_000.0 + 6000.0 * k, "Wh") for k in range(60)]
        + [Reading(live_t0 + 60 * k, "backfill", "ups", "energy", 800.0 + 4.0 * k, "kWh") for k in range(60)]
    )
    store.close()
    csv = tmp_path / "night.csv"
    lines = ["timestamp,meter,quantity,value"]
    # the export ends at 05:50 with 30 minutes to the first live reading (06:00)
    for k in range(-300, -9):
        ts = iso(live_t0 + 60 * k)
        lines += [f"{ts},grid,energy_kwh,{2000.0 + 6.0 * k}", f"{ts},ups,energy_kwh,{800.0 + 4.0 * k}"]
    csv.write_text("\n".join(lines) + "\n")
    code, summary, err = ingest(csv, site)
    assert code == 0, err
    assert summary["inserted"] == 2 * 291 and summary["days_recomputed"] == 1
    r = StoreReader(db)
    minutes = {m["start"]: m for m in r.intervals("1m", limit=10**6)}
    assert len(r.readings("grid", "energy")) == 291 + 60
    (daily,) = [d for d in r.intervals("1d") if d["start"] == day]
    r.close()
    # the gap 05:50..06:00 is bridged by the counters: 60 kWh of grid, 40 of UPS, estimated
    gap = [minutes[live_t0 - 60 * k] for k in range(1, 10)]
    assert all(m["pue"] == pytest.approx(1.5) and m["estimated"] > 0 for m in gap)
    # 00:00 .. 06:59 with readings from 01:00 (export) .. 06:59 (live): 359 minutes of energy
    assert daily["e_facility_kwh"] == pytest.approx(6.0 * 359)
    assert daily["e_it_kwh"] == pytest.approx(4.0 * 359)


async def test_import_devices_are_never_polled(tmp_path):
    from pue_monitor.service import Service

    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        site: {{id: mixed}}
        prometheus: {{enabled: false}}
        store: {{path: {tmp_path / "s.sqlite"}}}
        devices:
          - {{id: main, protocol: modbus, host: 127.0.0.1, port: 1502, profile: pue-sim-meter, interval: 10,
             timeout: 1, meter: {{role: facility_input, energy: import_energy}}}}
          - {{id: ups, protocol: import, interval: 900,
             meter: {{role: it, it_location: ups_output, energy: energy}}}}
        """)
    )
    site = load_site(path)
    assert site.unit_of(site.config.devices[1], "energy") == "kWh"
    service = Service(site, prometheus=False)
    try:
        assert set(service.runner.stats) == {"main"}  # the import meter has no collector
        assert service.grace < 60  # and its 900 s export spacing sets no deadline for live minutes
        assert ("ups", "energy") in service.specs  # but it is in the energy model
    finally:
        await service.close()
    bad = path.read_text().replace("meter: {role: it", "units: {energy: kWhh}, meter: {role: it")
    path.write_text(bad)
    from pue_monitor.errors import ConfigError

    with pytest.raises(ConfigError, match="unit 'kWhh' is not one of"):
        load_site(path)


def test_day_list_covers_dst_days():
    from pue_monitor.ingest.backfill import _day_starts

    spring = datetime(2026, 3, 29, 12, tzinfo=ZONE).timestamp()
    days = _day_starts(spring, spring, ZONE)
    assert [b - a for a, b in itertools.pairwise(days)] == [23 * 3600]
    assert datetime.fromtimestamp(days[0], ZONE) == datetime(2026, 3, 29, tzinfo=ZONE)
    assert timedelta(seconds=days[1] - days[0]) == timedelta(hours=23)


def test_readme_import_device_example_validates():
    import re

    import yaml

    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.config.models import ImportDevice

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "protocol: import" in b]
    devices = yaml.safe_load(textwrap.dedent(block))
    it = {"id": "ups", "protocol": "import", "meter": {"role": "it", "it_location": "ups_output", "power": "p"}}
    site = site_from_dict({"site": {"id": "r"}, "devices": [*devices, it]}, source="README.md")
    grid = site.config.devices[0]
    assert isinstance(grid, ImportDevice) and site.unit_of(grid, "energy") == "MWh"
    assert site.unit_of(site.config.devices[1], "p") == "kW"
    assert series_specs(site)[("grid", "energy")].factor == 1000.0  # MWh -> kWh


def test_bulk_insert_is_all_or_nothing(tmp_path):
    """A failure in the middle of a bulk load leaves the store as it was: no rows, the series
    index in place (and no index on ts alone: pruning goes through the series index), back in
    WAL mode."""
    from pue_monitor.sinks.sqlite import connect

    db = tmp_path / "s.sqlite"
    store = SqliteStore(db)
    store.write_readings([Reading(1.0, "s", "a", "energy", 5.0, "kWh")])

    def series():
        yield "a", "energy", "kWh", [float(t) for t in range(10, 210)], [float(v) for v in range(200)]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        store.bulk_insert_readings("s", series(), expected_rows=200)
    conn = connect(db)
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 1
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "readings_series" in names and "readings_ts" not in names
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # and a good load stores every row, 64 to a statement plus the remainder
    n = store.bulk_insert_readings("s", series_ok(), expected_rows=130)
    assert n == 130
    got = store.good_readings("b", "p", start=0, end=1e9)
    assert got == [(float(t), t * 0.5) for t in range(130)]
    store.close()


def series_ok():
    yield "b", "p", "kWh", np.arange(130, dtype=float), np.arange(130) * 0.5


@pytest.mark.parametrize("layout", ["time-ordered", "shuffled", "ties"])
def test_backfill_sort_matches_a_full_sort(layout):
    """The fast sorts (by series alone for a time-ordered export, by a (series, time) key
    otherwise) give exactly the (series, time, value) order of a full three-column sort,
    and rows tied on series and time (repeats, conflicts) are ordered by value."""
    import polars as pl

    from pue_monitor.ingest.backfill import _sorted

    rng = np.random.default_rng(7)
    n = 5000
    sid = rng.integers(0, 40, n).astype(np.int32)
    if layout == "time-ordered":  # strictly increasing per series (a fresh time per row)
        t = (1_767_222_000_000_000 + np.arange(n) * 1_000_000).astype(np.int64)
    elif layout == "shuffled":
        t = (1_767_222_000_000_000 + rng.permutation(n) * 1_000_000).astype(np.int64)
    else:  # few distinct times: many rows share series and time
        t = (1_767_222_000_000_000 + np.sort(rng.integers(0, 30, n)) * 60_000_000).astype(np.int64)
    v = rng.integers(0, 5, n).astype(np.float64)
    got = _sorted(sid, t, v)
    want = pl.DataFrame({"sid": sid, "t": t, "v": v}).sort(["sid", "t", "v"])
    assert got.equals(want)
    assert got.schema == want.schema
    assert got.height == n
