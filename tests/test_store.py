"""Embedded SQLite store: WAL, restart-safe, readable by a second process while written."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

import pytest

from pue_monitor.readings import Quality, Reading
from pue_monitor.sinks.sqlite import SqliteStore, StoreReader, connect


@dataclass
class Iv:  # shaped like pipeline.pue.PueInterval
    start: float
    end: float
    e_facility: float | None
    e_it: float | None
    pue: float | None
    category: int = 2
    measured: float = 1.0
    estimated: float = 0.0
    missing: float = 0.0
    coverage: float = 1.0
    e_subsystems: dict = field(default_factory=dict)
    e_unattributed: float | None = None


def test_wal_restart_and_upsert(tmp_path):
    db = tmp_path / "s.sqlite"
    store = SqliteStore(db)
    store.write_readings(
        [Reading(60.0 * i, "s", "m1", "import_energy", 100.0 + i, "kWh") for i in range(10)]
        + [Reading(0.0, "s", "m1", "active_power", float("nan"), "W", Quality.BAD)]
    )
    store.upsert_intervals("s", "1m", [Iv(0, 60, 13.0, 10.0, 1.3), Iv(60, 120, None, 10.0, None, missing=0.5)], now=1.0)
    store.close()
    assert connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    store = SqliteStore(db)  # restart: same file, nothing lost
    # a restated interval (gap bridged later) replaces the old row
    store.upsert_intervals("s", "1m", [Iv(60, 120, 14.0, 10.0, 1.4, estimated=0.5)], now=2.0)
    r = StoreReader(db)
    assert r.reading_count() == 11
    assert [v for _, v, _ in r.readings("m1", "import_energy", start=120, end=240)] == [102.0, 103.0, 104.0]
    rows = r.intervals("1m")
    assert [(x["start"], x["pue"], x["estimated"]) for x in rows] == [(0, 1.3, 0.0), (60, 1.4, 0.5)]
    period = r.period_pue()
    assert period.pue == pytest.approx(27.0 / 20.0)  # Σ E_DC / Σ E_IT, not mean(1.3, 1.4)
    assert period.intervals == 2
    r.close()
    store.close()


def test_second_process_reads_while_writer_writes(tmp_path):
    db = tmp_path / "live.sqlite"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from pue_monitor.readings import Reading
        from pue_monitor.sinks.sqlite import SqliteStore
        s = SqliteStore({str(db)!r})
        print("ready", flush=True)
        for i in range(300):
            s.write_readings([Reading(float(i), "s", "m", "p", float(j), "kWh") for j in range(50)])
            time.sleep(0.005)
        s.close()
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        reader = StoreReader(db)
        seen = []
        while writer.poll() is None:
            seen.append(reader.reading_count())  # never "database is locked"
            time.sleep(0.01)
        seen.append(reader.reading_count())
        reader.close()
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == 0
    assert seen[-1] == 300 * 50
    increasing = [b for a, b in itertools.pairwise(seen) if b > a]
    assert len(increasing) >= 5  # the reader saw the writer's progress, not just the end
    assert all(n % 50 == 0 for n in seen)  # whole transactions only


def test_reader_on_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such store"):
        StoreReader(tmp_path / "nope.sqlite")


async def test_service_applies_reading_retention(tmp_path):
    from pue_monitor.clock import ManualClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.service import Service

    day = 86400.0
    now = 1_790_000_000.0
    db = tmp_path / "r.sqlite"
    store = SqliteStore(db)
    store.write_readings([Reading(now - k * day, "s", "m", "p", float(k), "kWh") for k in (0.5, 1.5, 3.0)])
    store.close()
    dev = {"protocol": "modbus", "host": "127.0.0.1", "port": 9, "profile": "eastron-sdm630"}
    cfg = {"site": {"id": "s"}, "store": {"path": str(db), "keep_readings_days": 1.0},
           "prometheus": {"enabled": False},
           "devices": [{**dev, "id": "inc", "meter": {"role": "facility_input", "energy": "import_energy"}},
                       {**dev, "id": "it", "unit_id": 2, "meter": {"role": "it", "it_location": "pdu_output",
                                                                   "energy": "import_energy"}}]}  # fmt: skip
    svc = Service(site_from_dict(cfg, source="<test>"), clock=ManualClock(now), resume=False)
    await svc.step()
    await svc.close()
    reader = StoreReader(db)
    assert [v for _, v, _ in reader.readings("m", "p")] == [0.5]  # older than a day: gone
    reader.close()


# ------------------------------------------------------------------------------------ faults
# Each fault is real: SQLite's own SQLITE_FULL (max_page_count), a second process holding
# BEGIN EXCLUSIVE, an immutable file (chattr +i: root ignores permissions, not the inode flag),
# the file unlinked under the running service. The simulator's Modbus meters keep being
# polled throughout; after the fault clears the store must hold what it would have without it.

FAULT_START = 1_773_115_200.0  # 2026-03-10 04:00 UTC


def _scrape_store_up(url: str) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "pue_store_up")


async def _run_with_store_fault(tmp_path, inject, clear, *, fault_s: float, prepare=None):
    import asyncio

    from pue_monitor.clock import ScaledClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.service import Service
    from pue_monitor.simulator import SimulatedDataCentre, SimulatorServers

    clock = ScaledClock(start=FAULT_START - 31, speed=30)
    world = SimulatedDataCentre(start=FAULT_START - 600, seed=3)
    db = tmp_path / "store.sqlite"
    seen: dict = {}
    async with SimulatorServers(world, clock) as servers:
        site = site_from_dict(servers.site_config(interval=15, timeout=5), source="<sim>")
        svc = Service(site, clock=clock, store_path=db, prometheus_port=0, resume=False)
        svc.store.retry_cap = 1.0  # retry every wall second: the test stays short
        if prepare is not None:
            prepare(svc)
        stop = asyncio.Event()
        run = asyncio.create_task(svc.run(stop))
        await asyncio.sleep(6)  # healthy for three simulated minutes
        await svc.store.wait()  # no write in flight while the fault starts
        ctx = inject(svc, db)
        seen["readings_at_fault"] = sum(svc.state.readings.values())
        seen["minute_at_fault"] = svc.state.latest["1m"].start
        await asyncio.sleep(fault_s)
        # failing: the gauge says so, the collectors and the pipeline kept going
        seen["up_during"] = (svc.store.up, await asyncio.to_thread(_scrape_store_up, svc.prometheus.url))
        seen["readings_during"] = sum(svc.state.readings.values())
        seen["minute_during"] = svc.state.latest["1m"].start
        seen["pending_during"] = svc.store.pending
        clear(ctx)
        for _ in range(100):  # the next retry writes everything held
            await asyncio.sleep(0.1)
            if svc.store.up and svc.store.pending < 400:
                break
        seen["up_after"] = (svc.store.up, await asyncio.to_thread(_scrape_store_up, svc.prometheus.url))
        stop.set()
        await run
    seen["emitted"] = sum(svc.state.readings.values())
    return svc, world, db, seen


def _assert_fault_reported_and_survived(seen, caplog, path, cause: str) -> None:
    assert seen["up_during"] == (False, 0.0)
    assert seen["up_after"] == (True, 1.0)
    assert seen["readings_during"] > seen["readings_at_fault"] + 100  # collectors kept polling
    assert seen["minute_during"] >= seen["minute_at_fault"] + 120  # pipeline kept closing minutes
    assert seen["pending_during"] > 0
    lines = [r.getMessage() for r in caplog.records if r.name == "pue_monitor.sinks.store" and r.levelname == "ERROR"]
    assert any(str(path) in line and cause in line for line in lines), lines
    assert all("\n" not in line for line in lines)


def _assert_store_complete(db, world, site_meters=("incomer-a", "incomer-b")) -> list[dict]:
    """Every minute from the first to the last is stored once, rollups are sums of the stored
    minutes, and the facility energy of the complete minutes equals the simulator's truth."""
    import math

    from rollups import assert_rollups_are_sums_of_minutes

    reader = StoreReader(db)
    minutes = reader.intervals("1m")
    rows = {res: reader.intervals(res) for res in ("15m", "1h", "1d")}
    reader.close()
    starts = [m["start"] for m in minutes]
    assert starts == [starts[0] + 60 * k for k in range(len(starts))]
    assert len(starts) >= 5
    full = [m for m in minutes if m["coverage"] == 1.0]
    assert all(m["pue"] is not None for m in full) and len(full) >= len(minutes) - 1
    assert assert_rollups_are_sums_of_minutes(minutes, rows, "Asia/Shanghai") >= 3
    t0, t1 = full[0]["start"], full[-1]["end"]
    truth = sum(world.true_energy(m, t0, t1) for m in site_meters)
    # a sum of minutes telescopes to C(t1) - C(t0) of two 0.01 kWh registers: within
    # 2 meters x 2 ends x 0.01 kWh of the truth, whatever the fault did in between
    assert abs(math.fsum(m["e_facility_kwh"] for m in full) - truth) <= 0.04
    return minutes


async def test_store_disk_full_buffers_bounded_and_counts_what_it_drops(tmp_path, caplog):
    def prepare(svc):
        svc.store.max_pending_readings = 300  # small bound: the outage overflows it

    def inject(svc, db):
        st = svc.store.store
        with st._lock:  # a real SQLITE_FULL: the database may not grow by a single page
            pages = st._conn.execute("PRAGMA page_count").fetchone()[0]
            st._conn.execute(f"PRAGMA max_page_count = {pages}")
        return st

    def clear(st):
        with st._lock:
            st._conn.execute("PRAGMA max_page_count = 1073741823")

    svc, world, db, seen = await _run_with_store_fault(tmp_path, inject, clear, fault_s=6, prepare=prepare)
    _assert_fault_reported_and_survived(seen, caplog, db, "disk full")
    dropped = svc.store.dropped["readings"]
    assert dropped > 0 and svc.store.dropped["intervals"] == 0
    reader = StoreReader(db)
    stored = reader.reading_count()
    reader.close()
    assert stored == seen["emitted"] - dropped  # exactly the counted drops are missing
    _assert_store_complete(db, world)


async def test_store_locked_by_another_process_for_10_s(tmp_path, caplog):
    import subprocess
    import sys
    import textwrap

    def inject(svc, db):
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
                import sqlite3, time
                c = sqlite3.connect({str(db)!r}, isolation_level=None)
                c.execute("BEGIN EXCLUSIVE")
                print("locked", flush=True)
                time.sleep(10)
                c.execute("COMMIT")
            """),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout.readline().strip() == "locked"
        return holder

    def clear(holder):
        holder.wait(timeout=30)
        assert holder.returncode == 0

    svc, world, db, seen = await _run_with_store_fault(tmp_path, inject, clear, fault_s=8)
    _assert_fault_reported_and_survived(seen, caplog, db, "locked by another process")
    reader = StoreReader(db)
    assert reader.reading_count() == seen["emitted"]  # nothing lost, nothing twice
    reader.close()
    assert sum(svc.store.dropped.values()) == 0
    _assert_store_complete(db, world)


async def test_store_read_only_file(tmp_path, caplog):
    import subprocess

    def inject(svc, db):
        files = [str(db), f"{db}-wal"]  # not -shm: SQLite maps it, an immutable map faults the process
        subprocess.run(["chattr", "+i", *files], check=True)
        return files

    def clear(files):
        subprocess.run(["chattr", "-i", *files], check=False)

    try:
        _, world, db, seen = await _run_with_store_fault(tmp_path, inject, clear, fault_s=6)
    finally:  # never leave an immutable file behind (tmp_path could not be removed)
        clear([str(tmp_path / "store.sqlite"), str(tmp_path / "store.sqlite-wal")])
    _assert_fault_reported_and_survived(seen, caplog, db, "read-only")
    reader = StoreReader(db)
    assert reader.reading_count() == seen["emitted"]
    reader.close()
    _assert_store_complete(db, world)


async def test_store_file_deleted_while_running_is_recreated(tmp_path, caplog):
    import os

    marks: dict = {}

    def inject(svc, db):
        marks["written"] = svc.store.readings_written
        os.unlink(db)
        return None

    svc, world, db, seen = await _run_with_store_fault(tmp_path, inject, lambda _: None, fault_s=4)
    assert svc.store.recreated == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "pue_monitor.sinks.store"]
    assert any(str(db) in line and "deleted" in line and "recreating" in line for line in lines), lines
    reader = StoreReader(db)
    # the new file holds every reading not written before the deletion; the rest went with the old file
    assert reader.reading_count() == seen["emitted"] - marks["written"] > 100
    reader.close()
    # the rollups of the whole run were rewritten from memory: nothing missing
    minutes = _assert_store_complete(db, world)
    assert minutes[0]["start"] <= seen["minute_at_fault"]  # written before the deletion, and again after


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_store_at_start_is_moved_aside(tmp_path, caplog, damage):
    from pue_monitor.clock import ManualClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.service import Service

    db = tmp_path / "s.sqlite"
    store = SqliteStore(db)
    tags = (("x", "y" * 200),)
    store.write_readings([Reading(60.0 * i, "s", "m", "p", float(i), "kWh", tags=tags) for i in range(3000)])
    store.close()
    size = db.stat().st_size
    if damage == "truncated":
        with open(db, "r+b") as f:
            f.truncate(size // 2)
    else:
        db.write_bytes(b"this is not a database\n" * 100)
    dev = {"protocol": "modbus", "host": "127.0.0.1", "port": 9, "profile": "eastron-sdm630"}
    cfg = {"site": {"id": "s"}, "store": {"path": str(db)}, "prometheus": {"enabled": False},
           "devices": [{**dev, "id": "inc", "meter": {"role": "facility_input", "energy": "import_energy"}},
                       {**dev, "id": "it", "unit_id": 2, "meter": {"role": "it", "it_location": "pdu_output",
                                                                   "energy": "import_energy"}}]}  # fmt: skip
    svc = Service(site_from_dict(cfg, source="<test>"), clock=ManualClock(1_790_000_000.0))
    import asyncio

    async def use() -> None:
        svc._on_readings([Reading(1_790_000_000.0, "s", "inc", "import_energy", 5.0, "kWh")])
        await svc.step()
        await svc.close()

    asyncio.run(use())
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("s.sqlite.corrupt-") and p.name[-1] == "Z"]
    assert len(aside) == 1 and aside[0].stat().st_size > 0  # kept for forensics
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(str(db) in line and str(aside[0]) in line and "corrupt" in line for line in lines), lines
    reader = StoreReader(db)
    assert reader.reading_count() == 1  # a fresh store, written by this run
    reader.close()


def test_second_pue_run_on_the_same_store_refuses_to_start(tmp_path):
    import signal

    import yaml

    dev = {"protocol": "modbus", "host": "127.0.0.1", "port": 9, "profile": "eastron-sdm630", "interval": 1.0,
           "timeout": 0.5}  # fmt: skip
    cfg = {"site": {"id": "s"}, "store": {"path": str(tmp_path / "one.sqlite")}, "prometheus": {"enabled": False},
           "devices": [{**dev, "id": "inc", "meter": {"role": "facility_input", "energy": "import_energy"}},
                       {**dev, "id": "it", "unit_id": 2, "meter": {"role": "it", "it_location": "pdu_output",
                                                                   "energy": "import_energy"}}]}  # fmt: skip
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(cfg))
    run = [sys.executable, "-m", "pue_monitor", "run", "--config", str(site), "-q"]
    first = subprocess.Popen(run, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "one.sqlite.lock"
        for _ in range(200):
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.05)
        second = subprocess.run([*run, "--duration", "5"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        err = second.stderr.strip().splitlines()
        assert len(err) == 1, second.stderr  # one line, no traceback
        assert str(tmp_path / "one.sqlite") in err[0] and f"pid {first.pid}" in err[0]
        assert first.poll() is None  # the first one is untouched
        first.send_signal(signal.SIGKILL)  # the kernel releases the lock of a killed process
        first.wait(timeout=10)
        third = subprocess.run([*run, "--duration", "1"], capture_output=True, text=True, timeout=60)
        assert third.returncode == 0, third.stderr
    finally:
        first.kill()
        first.wait(timeout=10)


def test_spool_and_state_file_are_single_instance_too(tmp_path):
    from pue_monitor.clock import ManualClock
    from pue_monitor.config.loader import site_from_dict
    from pue_monitor.service import Service
    from pue_monitor.sinks.lock import AlreadyRunning

    dev = {"protocol": "modbus", "host": "127.0.0.1", "port": 9, "profile": "eastron-sdm630"}
    cfg = {"site": {"id": "s"}, "prometheus": {"enabled": False},
           "influxdb": {"url": "http://127.0.0.1:9", "spool": {"path": str(tmp_path / "sp.sqlite")}},
           "devices": [{**dev, "id": "inc", "meter": {"role": "facility_input", "energy": "import_energy"}},
                       {**dev, "id": "it", "unit_id": 2, "meter": {"role": "it", "it_location": "pdu_output",
                                                                   "energy": "import_energy"}}]}  # fmt: skip
    site = site_from_dict(cfg, source="<test>")
    first = Service(site, clock=ManualClock(1_790_000_000.0))
    assert first.store is None and first.state_file.path == tmp_path / "sp.sqlite.state.json"
    spool = re.escape(str(tmp_path / "sp.sqlite"))
    with pytest.raises(AlreadyRunning, match=rf"InfluxDB spool {spool} is in use .*pid {os.getpid()}"):
        Service(site, clock=ManualClock(1_790_000_000.0))
    # another spool, the same state file
    cfg["influxdb"]["spool"]["path"] = str(tmp_path / "other.sqlite")
    cfg["store"] = {"state_path": str(tmp_path / "sp.sqlite.state.json")}
    with pytest.raises(AlreadyRunning, match=r"state file .*sp\.sqlite\.state\.json is in use"):
        Service(site_from_dict(cfg, source="<test>"), clock=ManualClock(1_790_000_000.0))
    import asyncio

    asyncio.run(first.close())
    again = Service(site, clock=ManualClock(1_790_000_000.0))  # released at close
    asyncio.run(again.close())


def _chattr(flag: str, path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True)


async def test_store_read_only_at_start_buffers_until_writable(tmp_path, caplog):
    import asyncio

    from pue_monitor.sinks.store import StoreOutput

    db = tmp_path / "ro.sqlite"
    store = SqliteStore(db)
    store.write_readings([Reading(1.0, "s", "d", "p", 1.0, "kWh")])
    store.close()
    _chattr("+i", db)
    try:
        out = StoreOutput(db, site="s", retry_cap=0.2)  # does not raise: the service starts anyway
        assert out.up is False and "read-only" in out.last_error
        out.readings([Reading(60.0 * i, "s", "d", "p", float(i), "kWh") for i in range(2, 12)])
        await out.flush(100.0)
        await out.wait()
        assert (out.up, out.pending) == (False, 10)
    finally:
        _chattr("-i", db)
    await asyncio.sleep(0.3)  # past the backoff
    await out.flush(100.0)
    await out.wait()
    assert (out.up, out.pending) == (True, 0)
    await out.close()
    reader = StoreReader(db)
    assert reader.reading_count() == 11  # the old reading and the ten held while read-only
    reader.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "pue_monitor.sinks.store"]
    assert sum(str(db) in line and "read-only" in line for line in lines) == 1  # once, not per retry


def test_prune_goes_series_by_series_without_a_ts_index(tmp_path):
    """Retention deletes every reading older than the cutoff in every series, keeps the rest
    (exact counts per series), through the (device, point, ts) index: a store made before the
    index on ts alone was dropped loses it at open, and the plan of each step names the
    series index."""
    db = tmp_path / "s.sqlite"
    with connect(db) as conn:  # a store of the old schema: both indexes
        conn.executescript(
            """CREATE TABLE readings (ts REAL NOT NULL, site TEXT NOT NULL, device TEXT NOT NULL,
            point TEXT NOT NULL, value REAL, unit TEXT NOT NULL, quality INTEGER NOT NULL,
            tags TEXT NOT NULL DEFAULT '');
            CREATE INDEX readings_series ON readings (device, point, ts);
            CREATE INDEX readings_ts ON readings (ts);"""
        )
    conn.close()
    store = SqliteStore(db)
    SqliteStore(db).close()  # the migration is idempotent: opening again changes nothing
    names = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "readings_ts" not in names and "readings_series" in names
    # 7 series (two devices sharing point names, a quote in a name), each with its own span;
    # one series wholly older than the cutoff, one wholly newer, one with bad readings
    series = {("a", "energy"): (0, 100), ("a", "power"): (50, 150), ("b", "energy"): (0, 40),
              ("b", "power"): (120, 200), ("c'x", "energy"): (10, 190), ("d", "p"): (99, 101),
              ("e", "energy"): (0, 300)}  # fmt: skip
    readings = []
    for (device, point), (lo, hi) in series.items():
        for i in range(lo, hi):
            q = Quality.BAD if device == "e" and i % 3 == 0 else Quality.GOOD
            readings.append(Reading(60.0 * i, "s", device, point, float(i), "kWh", q))
    store.write_readings(readings)
    cutoff = 60.0 * 100  # readings at ts < 6000 go
    want_gone = {k: max(0, min(hi, 100) - lo) for k, (lo, hi) in series.items()}
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)  # the SQL prune runs, values filled in
    assert store.prune_readings(cutoff) == sum(want_gone.values()) == 100 + 50 + 40 + 0 + 90 + 1 + 100
    store._conn.set_trace_callback(None)
    steps = [q for q in statements if q.startswith(("SELECT", "DELETE"))]
    assert len(steps) == 2 * len(series) + 1  # first series, then per series: delete, next series
    for q in steps:
        plan = " ".join(str(r[3]) for r in store._conn.execute("EXPLAIN QUERY PLAN " + q))
        assert "readings_series" in plan, (q, plan)  # an index seek or a LIMIT 1 index scan, never the table
    reader = StoreReader(db)
    for (device, point), (lo, hi) in series.items():
        got = reader.readings(device, point)
        assert [ts for ts, _, _ in got] == [60.0 * i for i in range(max(lo, 100), hi)], (device, point)
    assert reader.reading_count() == sum(hi - lo for lo, hi in series.values()) - sum(want_gone.values())
    assert store.prune_readings(cutoff) == 0  # nothing left to prune
    reader.close()
    store.close()
