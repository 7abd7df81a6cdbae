"""Embedded SQLite store: WAL, restart-safe, readable by a second process while written."""

from __future__ import annotations

import itertools
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
