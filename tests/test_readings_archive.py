"""Day files of raw readings (sinks/readings_archive.py, schema 7): exact round trip, compaction,
crash safety, migration of an older store, retention, and reports from files = from the table;
the staging table of the live writes (schema 8): every reader sees staged readings."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from pue_monitor.readings import Quality, Reading
from pue_monitor.sinks.readings_archive import archive_dir, decode, encode_day, write_day
from pue_monitor.sinks.sqlite import SCHEMA_VERSION, SqliteStore, StoreReader

PUE = [sys.executable, "-m", "pue_monitor"]
DAY = 86400.0
T0 = datetime(2026, 9, 21, tzinfo=UTC).timestamp()  # a UTC midnight
KEYS = [("a", "energy"), ("b", "energy"), ("c'x", "power"), ("zz", "p")]  # zz: never read


def _readings(seed: int = 0, days: int = 4) -> list[Reading]:
    """Three series over ``days`` UTC days at 1 min, stamps jittered to the ms, some BAD, one
    series with a gap of a day and a quarter, one None value."""
    rng = np.random.default_rng(seed)
    out = []
    for dev, point in KEYS[:3]:
        for i in range(days * 1440):
            if dev == "b" and 1440 <= i < 2 * 1440 + 300:
                continue
            q = Quality.BAD if i % 97 == 0 else Quality.GOOD
            v = None if (dev, i) == ("a", 2000) else float(i) + float(rng.normal())
            ts = T0 + 60.0 * i + round(float(rng.uniform(0, 1)), 3)
            out.append(Reading(ts, "s", dev, point, v, "kWh" if point == "energy" else "kW", q))  # type: ignore[arg-type]
    return out


def _answers(db: Path, store: SqliteStore) -> dict[str, object]:
    """What every reader of raw readings gives (arrays as lists, so == compares them exactly)."""
    reader = StoreReader(db)
    try:
        wins = {}
        for name, (lo, hi) in {
            "day+": (T0 + DAY + 3600, T0 + 2 * DAY + 7200),  # inside b's gap: margins from far
            "edge": (T0 + 2 * DAY, T0 + 2 * DAY + 10),
            "before": (T0 - 40 * DAY, T0 - 9 * DAY),  # no reading inside: margins only
            "after": (T0 + 9 * DAY, T0 + 40 * DAY),
        }.items():
            wins[name] = [(t.tolist(), v.tolist()) for t, v in reader.good_windows(KEYS, start=lo, end=hi, margin=8)]
        return {
            "windows": wins,
            "count": reader.reading_count(),
            "series": [reader.readings(d, p) for d, p in KEYS],
            "series_window": reader.readings("b", "energy", start=T0 + 0.5 * DAY, end=T0 + 2.5 * DAY),
            "last_per_series": reader.last_per_series(),
            "good": store.good_readings("b", "energy", start=T0, end=T0 + 3 * DAY),
            "edge": store.edge_readings("b", "energy", before=T0 + DAY + 100, after=T0 + 2 * DAY + 100, n=8),
            "since": store.readings_since(KEYS, T0 + 1.5 * DAY),
            "last": store.last_readings(KEYS),
        }
    finally:
        reader.close()


def test_a_day_file_gives_back_exactly_what_was_written(tmp_path: Path) -> None:
    """Values (float64 and float32-exact files, NaN), quality, units, tags and microsecond
    stamps come back bit for bit, sorted by (device, point, ts), repeats kept in order."""
    rng = np.random.default_rng(3)
    n = 5000
    dev = rng.choice(np.array(["a", "b", "c'x", "日本"], object), n)
    pt = rng.choice(np.array(["energy", "power"], object), n)
    ts = T0 + rng.integers(0, 86_400_000_000, n) / 1e6
    ts[10] = ts[11]  # a repeated stamp
    for value in (rng.normal(size=n) * 1e3, rng.normal(size=n).astype(np.float32).astype(np.float64)):
        value[5] = np.nan
        q = rng.integers(0, 3, n).astype(np.int8)
        unit = rng.choice(np.array(["kWh", "W"], object), n)
        tags = rng.choice(np.array(["", "rack=r1,row=2"], object), n)
        frame = encode_day(dev, pt, ts, value, q, unit, tags)
        path, size = write_day(tmp_path, date(2026, 9, 21), 0, frame)
        assert path.name == "2026-09-21.0.parquet" and size == path.stat().st_size
        got = decode(path, full=True)
        assert got.rows == n and sorted(got.index) == sorted(set(zip(dev, pt, strict=True)))
        for (d, p), (lo, hi) in got.index.items():
            m = (dev == d) & (pt == p)
            order = np.argsort(ts[m], kind="stable")
            assert got.ts[lo:hi].tolist() == ts[m][order].tolist()
            np.testing.assert_array_equal(got.value[lo:hi], value[m][order])  # NaN == NaN here
            assert got.quality[lo:hi].tolist() == q[m][order].tolist()
            assert got.unit is not None and got.tags is not None
            assert got.unit[lo:hi] == unit[m][order].tolist() and got.tags[lo:hi] == tags[m][order].tolist()


def test_compaction_moves_closed_days_and_every_reader_answers_the_same(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    store = SqliteStore(db)
    rs = _readings()
    store.write_readings(rs)
    before = _answers(db, store)
    # the first three UTC days are closed at T0 + 3 days + 5 s; the fourth stays in the table
    res = store.compact_readings(T0 + 3 * DAY + 5)
    assert res.days == ["2026-09-21", "2026-09-22", "2026-09-23"]
    assert res.readings == sum(r.ts < T0 + 3 * DAY for r in rs)
    reader = StoreReader(db)
    assert reader.table_reading_count() == len(rs) - res.readings
    assert [(d.day, d.rows) for d in reader.archived_days()] == [
        (day, sum(T0 + k * DAY <= r.ts < T0 + (k + 1) * DAY for r in rs)) for k, day in enumerate(res.days)
    ]
    reader.close()
    assert sorted(p.name for p in (archive_dir(db) / "s").iterdir()) == [f"{d}.0.parquet" for d in res.days]
    assert _answers(db, store) == before
    # all days archived: the table empty, the answers the same (margins found in far day files)
    assert store.compact_readings(T0 + 10 * DAY).days == ["2026-09-24"]
    assert _answers(db, store) == before
    # a late reading of an archived day: kept in the table (read at once), then merged into a new
    # generation of the day's file; the old generation is deleted
    late = Reading(T0 + 100.5, "s", "a", "energy", 5.0, "kWh")
    store.write_readings([late])
    with_late = _answers(db, store)
    assert with_late["count"] == len(rs) + 1
    assert store.compact_readings(T0 + 10 * DAY).days == ["2026-09-21"]
    assert _answers(db, store) == with_late
    names = sorted(p.name for p in (archive_dir(db) / "s").iterdir())
    assert "2026-09-21.1.parquet" in names and "2026-09-21.0.parquet" not in names
    store.close()


def test_a_crash_between_the_file_and_the_commit_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A process killed after writing a day file but before the transaction that deletes the rows
    and records the file: the file is an orphan nobody reads; the next compaction archives the day."""
    db = tmp_path / "s.sqlite"
    store = SqliteStore(db)
    store.write_readings(_readings(days=2))
    before = _answers(db, store)
    store.close()
    script = textwrap.dedent(
        f"""
        import os
        import pue_monitor.sinks.sqlite as sq
        real = sq.write_day
        def crash(*a, **k):
            real(*a, **k)
            os._exit(9)  # killed: no cleanup, no commit
        sq.write_day = crash
        sq.SqliteStore({str(db)!r}).compact_readings({T0 + 2 * DAY!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == 9
    orphans = list((archive_dir(db) / "s").iterdir())
    assert [p.name for p in orphans] == ["2026-09-21.0.parquet"]  # written, never recorded
    store = SqliteStore(db)
    assert _answers(db, store) == before  # read from the table only: no duplicate
    assert store.compact_readings(T0 + 2 * DAY).days == ["2026-09-21", "2026-09-22"]
    assert _answers(db, store) == before
    store.close()


def test_a_schema_6_store_migrates_and_the_first_run_archives_its_closed_days(tmp_path: Path) -> None:
    """An older store (no reading_files table, every reading in the table) is read as before by
    this version's reader, becomes schema 7 when the writer opens it, and the store output's
    first write archives its closed days; the open day stays in the table."""
    import asyncio

    from pue_monitor.sinks.store import StoreOutput

    db = tmp_path / "old.sqlite"
    store = SqliteStore(db)
    rs = _readings(days=3)
    store.write_readings(rs)
    store.close()
    with sqlite3.connect(db) as conn:  # what version 6 had
        conn.execute("DROP TABLE reading_files")
        conn.execute("DROP TABLE reading_series")
        conn.execute("DROP TABLE readings_staging")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    conn.close()
    reader = StoreReader(db)
    assert reader.reading_count() == len(rs) and reader.archived_days() == []
    reader.close()

    async def run() -> StoreOutput:
        out = StoreOutput(db, site="s")
        await out.flush(T0 + 2 * DAY + 7200)  # 02:00 UTC of the third day: two days closed
        await out.wait()
        await asyncio.get_running_loop().run_in_executor(None, out.wait_compaction)
        await out.close()
        return out

    out = asyncio.run(run())
    assert [c.days for c in out.compactions] == [["2026-09-21", "2026-09-22"]]
    reader = StoreReader(db)
    assert reader.meta()["schema_version"] == str(SCHEMA_VERSION) == "8"
    assert reader.reading_count() == len(rs)
    assert reader.table_reading_count() == sum(r.ts >= T0 + 2 * DAY for r in rs)
    reader.close()


def _staging_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        n = int(conn.execute("SELECT count(*) FROM readings_staging").fetchone()[0])
    conn.close()
    return n


def test_every_reader_sees_staged_readings(tmp_path: Path) -> None:
    """Readings in day files, in the table and in the staging table (the live writes, schema 8),
    with a reading of the same stamp in table and staging and twice in staging: every reader
    answers exactly as when all were written into the table; the writer's own readers move the
    staged readings into the table first."""
    rs = _readings(days=4)
    cut = T0 + 2.5 * DAY
    part1 = [r for r in rs if r.ts < cut]
    part2 = [r for r in rs if r.ts >= cut]
    a_in_table = next(r for r in part1 if r.device == "a" and r.ts > T0 + 2 * DAY + 60 and r.value is not None)
    a_staged = next(r for r in part2 if r.device == "a" and r.value is not None)
    dups = [
        Reading(a_in_table.ts, "s", "a", "energy", -1.0, "kWh"),
        Reading(a_staged.ts, "s", "a", "energy", -2.0, "kWh"),
    ]
    dups.append(Reading(a_staged.ts, "s", "a", "energy", -3.0, "kWh"))
    answers = {}
    for name, stage in (("table", 0.0), ("staged", 1e9)):
        db = tmp_path / f"{name}.sqlite"
        store = SqliteStore(db)
        store.write_readings(part1)
        assert store.compact_readings(T0 + 2 * DAY).days == ["2026-09-21", "2026-09-22"]
        store.close()
        store = SqliteStore(db, stage_seconds=stage)
        store.write(part2, now=cut)
        store.write(dups, now=cut + 1.0)
        staged = _staging_rows(db)
        assert staged == (len(part2) + len(dups) if stage else 0)
        reader = StoreReader(db)
        assert reader.table_reading_count() == len(rs) + len(dups) - sum(r.ts < T0 + 2 * DAY for r in rs)
        reader.close()
        answers[name] = _answers(db, store)  # its StoreReader part first, then the writer's readers
        assert _staging_rows(db) == 0  # the writer's readers moved them (in one transaction)
        store.close()
    assert answers["staged"] == answers["table"]
    last = {(r["device"], r["point"]): r for r in answers["staged"]["last_per_series"]}  # type: ignore[union-attr]
    assert last[("a", "energy")]["ts"] == max(r.ts for r in rs if r.device == "a")


def test_one_reader_follows_the_staging_table_across_writes_and_moves(tmp_path: Path) -> None:
    """A reader asked again and again (a report's groups, a long-lived reader) while the writer
    stages and moves: each answer equals a fresh reader's on the same state."""
    db = tmp_path / "live.sqlite"
    store = SqliteStore(db, stage_seconds=1e9)
    keys = [("a", "energy"), ("b", "energy")]
    reader = StoreReader(db)

    def windows(r: StoreReader) -> object:
        return [(t.tolist(), v.tolist()) for t, v in r.good_windows(keys, start=T0 + 5, end=T0 + 50, margin=3)]

    seen = []
    for step in range(6):
        if step == 3:
            assert store.move_staged() == 40 * 3 * len(keys) + 1
        k = 40 * min(step, 3) + 10 * max(0, step - 3)
        batch = [
            Reading(T0 + k + i, "s", d, p, float(k + i), "kWh") for i in range(10 if step >= 3 else 40) for d, p in keys
        ]
        if step == 1:  # a reading of the same stamp again, staged later: after the first among equal stamps
            batch.append(Reading(T0 + 20, "s", "a", "energy", -1.0, "kWh"))
        store.write(batch, now=T0)
        fresh = StoreReader(db)
        want = windows(fresh)
        fresh.close()
        got = windows(reader)
        assert got == want
        seen.append(sum(len(t) for t, _ in got))  # type: ignore[attr-defined]
    assert seen == sorted(seen) and seen[-1] > seen[0]
    reader.close()
    store.close()


def test_staged_readings_survive_a_crash_and_the_next_writer_moves_them(tmp_path: Path) -> None:
    """A reading acknowledged by ``write`` is durable while staged: a writer process that dies
    without closing leaves it where readers find it, and the next writer moves it (once)."""
    db = tmp_path / "crash.sqlite"
    code = textwrap.dedent(
        f"""
        import os
        from pue_monitor.readings import Reading
        from pue_monitor.sinks.sqlite import SqliteStore
        store = SqliteStore({str(db)!r}, stage_seconds=1e9)
        store.write([Reading({T0} + i, "s", "a", "energy", float(i), "kWh") for i in range(500)], now={T0})
        os._exit(0)  # no close: what a crash leaves
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert _staging_rows(db) == 500
    reader = StoreReader(db)
    assert reader.reading_count() == 500
    assert reader.readings("a", "energy")[-1] == (T0 + 499, 499.0, 0)
    reader.close()
    store = SqliteStore(db)  # opening moves what was left staged
    assert _staging_rows(db) == 0
    assert [(r.ts, r.value) for r in store.last_readings([("a", "energy")])] == [(T0 + 499, 499.0)]
    store.close()
    reader = StoreReader(db)
    assert reader.table_reading_count() == 500
    assert [t for t, _, _ in reader.readings("a", "energy")] == [T0 + i for i in range(500)]
    reader.close()


def test_a_schema_7_store_migrates_to_8(tmp_path: Path) -> None:
    """A schema-7 store (no staging table) is read by this version's reader, gains the staging
    table and version 8 when a writer opens it, and keeps every reading."""
    db = tmp_path / "seven.sqlite"
    store = SqliteStore(db)
    rs = _readings(days=1)
    store.write_readings(rs)
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE readings_staging")
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    conn.close()
    reader = StoreReader(db)
    want = _answers_reader_only(reader)
    assert reader.reading_count() == len(rs)
    reader.close()
    store = SqliteStore(db, stage_seconds=60.0)
    store.write([Reading(T0 + DAY + 1, "s", "a", "energy", 1.0, "kWh")], now=T0 + DAY + 1)
    assert _staging_rows(db) == 1
    store.close()
    assert _staging_rows(db) == 0
    reader = StoreReader(db)
    assert reader.meta()["schema_version"] == "8"
    assert reader.reading_count() == len(rs) + 1
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM readings WHERE ts = ?", (T0 + DAY + 1,))
    conn.close()
    assert _answers_reader_only(reader) == want
    reader.close()


def _answers_reader_only(reader: StoreReader) -> object:
    wins = [(t.tolist(), v.tolist()) for t, v in reader.good_windows(KEYS, start=T0, end=T0 + DAY, margin=8)]
    return wins, [reader.readings(d, p) for d, p in KEYS], reader.last_per_series()


def test_retention_deletes_whole_day_files(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    store = SqliteStore(db)
    rs = _readings(days=4)
    store.write_readings(rs)
    store.compact_readings(T0 + 4 * DAY)
    # keep from 12:00 of the second day: the first day goes, the second (partly kept) stays whole
    gone = store.prune_reading_files(T0 + 1.5 * DAY)
    assert gone == sum(r.ts < T0 + DAY for r in rs)
    reader = StoreReader(db)
    assert [d.day for d in reader.archived_days()] == ["2026-09-22", "2026-09-23", "2026-09-24"]
    assert reader.reading_count() == len(rs) - gone
    assert min(t for t, _, _ in reader.readings("a", "energy")) >= T0 + DAY
    reader.close()
    assert sorted(p.name for p in (archive_dir(db) / "s").iterdir())[0] == "2026-09-22.0.parquet"
    store.close()


def test_the_report_from_day_files_equals_the_report_from_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-computed month of test_report (rollover, meter replacement, gap, glitch,
    power-only meter) and the first month of its readings (margins only after), reported from
    the table and again after every day was compacted into day files, and by two worker
    processes: the same figures, bit for bit."""
    from test_report import ROLL, SITE, readings

    from pue_monitor.config.loader import load_site
    from pue_monitor.reports import compute
    from pue_monitor.reports.compute import build_month

    db = tmp_path / "store.sqlite"
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(store=db, roll=ROLL))
    store = SqliteStore(db)
    series = [(dev, point, "kW" if point == "power" else "kWh", ts, v) for dev, (ts, v, point) in readings().items()]
    store.bulk_insert_readings("acc", sorted(series), expected_rows=sum(s[3].size for s in series))
    site = load_site(path)

    def month() -> object:
        reader = StoreReader(db)
        try:
            return [build_month(reader, site, m, trailing=False, now=0.0) for m in ("2026-10", "2025-10")]
        finally:
            reader.close()

    from_table = month()
    res = store.compact_readings(datetime(2026, 11, 10, tzinfo=UTC).timestamp())
    assert len(res.days) > 390 and StoreReader(db).table_reading_count() == 0
    store.close()
    assert month() == from_table
    # the days shared among worker processes (what a site of PROCESS_MIN_SERIES series gets)
    monkeypatch.setattr(compute, "PROCESS_MIN_SERIES", 1)
    monkeypatch.setattr(compute, "PROCESSES", 2)
    stats: dict[str, object] = {}
    reader = StoreReader(db)
    try:
        assert build_month(reader, site, "2026-10", trailing=False, now=0.0, stats=stats) == from_table[0]  # type: ignore[index]
    finally:
        reader.close()
    assert stats["worker processes"] == 2


def test_cli_store_compact(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    store = SqliteStore(db)
    rs = _readings(days=2)
    store.write_readings(rs)
    store.close()
    proc = subprocess.run(
        [*PUE, "store", "compact", "--db", str(db), "--before", "2026-09-22", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    first = sum(r.ts < T0 + DAY for r in rs)
    assert (got["archived_days"], got["archived_readings"], got["table_readings"]) == (
        ["2026-09-21"],
        first,
        len(rs) - first,
    )
    assert got["day_files"] == 1 and got["day_file_bytes"] > 0
    for args, err in (
        (["--db", str(tmp_path / "none.sqlite")], f"pue store compact: {tmp_path / 'none.sqlite'}: no such store"),
        (["--db", str(db), "--before", "2026-13-01"], "pue store compact: --before '2026-13-01' is not a day"),
    ):
        bad = subprocess.run([*PUE, "store", "compact", *args], capture_output=True, text=True, check=False)
        assert bad.returncode == 2 and bad.stderr.startswith(err) and bad.stderr.count("\n") == 1, bad.stderr
