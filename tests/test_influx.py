"""InfluxDB delivery against real servers: VictoriaMetrics (v2 write API via
influxdb-client) and Debian's InfluxDB 1.6 (1.x /write, InfluxQL)."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from influxdb_client import Point
from servers import VictoriaMetrics

from pue_monitor import __version__, schema
from pue_monitor.config.models import InfluxConfig
from pue_monitor.pipeline.pue import PueInterval
from pue_monitor.readings import Quality, Reading
from pue_monitor.sinks.influx import InfluxSink
from pue_monitor.sinks.influx_output import InfluxOutput
from pue_monitor.sinks.lineprotocol import LineBuilder
from pue_monitor.sinks.spool import Spool

T0 = 1_780_000_000.0


@pytest.fixture
def vm(tmp_path):
    (tmp_path / "vm").mkdir()
    server = VictoriaMetrics(tmp_path / "vm")
    server.start()
    yield server
    server.stop()


def readings(n: int, *, device: str = "pdu-1", start: float = T0) -> list[Reading]:
    return [Reading(start + 60 * i, "dc1", device, "import_energy", 1000.0 + i / 4, "kWh") for i in range(n)]


def test_lines_match_influxdb_client_escaping():
    tricky = Reading(T0 + 0.123456789, "site one", "pdu,a=b", "power l1", 1.5, "kW", tags=(("outlet", "3 ="),))
    ours = LineBuilder().readings([tricky])[0]
    theirs = (
        Point("pue_reading")
        .tag("site", "site one")
        .tag("device", "pdu,a=b")
        .tag("point", "power l1")
        .tag("outlet", "3 =")
        .field("value", 1.5)
        .field("quality", 0)
        .time(round(tricky.ts * 1e9))
        .to_line_protocol()
    )
    assert ours == theirs
    nan = LineBuilder().readings([Reading(T0, "s", "d", "p", float("nan"), "W", Quality.BAD)])[0]
    assert nan.endswith(f" quality=2i {round(T0 * 1e9)}") and "value" not in nan  # no NaN field, ever
    iv = SimpleNamespace(start=T0, e_facility=10.0, e_it=8.0, pue=1.25, measured=1.0, estimated=0.0, missing=0.0,
                         coverage=1.0, e_unattributed=1.0, e_subsystems={"cooling": 1.0}, ppue={"cooling": 1.125},
                         category=2)  # fmt: skip
    line = LineBuilder().intervals("dc1", "1m", [iv])[0]
    assert line.startswith("pue_interval,resolution=1m,site=dc1 e_facility_kwh=10.0,e_it_kwh=8.0,pue=1.25")
    assert line.endswith(f",category=2i,schema_version={schema.SCHEMA_VERSION}i {round(T0 * 1e9)}")
    assert "ppue_cooling=1.125" in line and "e_lighting_kwh" not in line


async def write_all(cfg: InfluxConfig, batches: list[list[str]]) -> InfluxSink:
    sink = InfluxSink(cfg)
    await sink.start()
    for b in batches:
        sink.submit(b)
        await sink.flush()
    for _ in range(200):
        if sink.spool.status().queued_batches == 0:
            break
        await asyncio.sleep(0.05)
    return sink


async def test_victoriametrics_receives_v2_writes(vm, tmp_path):
    cfg = InfluxConfig(url=vm.url, bucket="pue", batch_size=100, spool={"path": str(tmp_path / "spool.sqlite")})
    sink = await write_all(cfg, [LineBuilder().readings(readings(250))])
    stats = sink.stats
    await sink.close()
    assert (stats.api, stats.points_written, stats.batches_written) == ("v2", 250, 3)
    series = vm.export('pue_reading_value{device="pdu-1"}')
    assert len(series) == 1 and series[0]["metric"]["point"] == "import_energy"
    assert series[0]["values"] == [1000.0 + i / 4 for i in range(250)]
    assert series[0]["timestamps"] == [int((T0 + 60 * i) * 1000) for i in range(250)]


async def test_victoriametrics_gets_the_schema_version_as_one_numeric_series(vm, tmp_path):
    """pue_meta has no string field: VictoriaMetrics would keep one as a meaningless 0."""
    cfg = InfluxConfig(url=vm.url, bucket="pue", spool={"path": str(tmp_path / "spool.sqlite")})
    out = InfluxOutput(InfluxSink(cfg), site="dc1")
    await out.start()
    await out.sink.flush()
    for _ in range(200):
        if out.sink.stats.points_written == 1:
            break
        await asyncio.sleep(0.05)
    await out.close()
    for _ in range(50):  # written: searchable once VictoriaMetrics has indexed the new series
        series = vm.export('{__name__=~"pue_meta.*"}')
        if series:
            break
        await asyncio.sleep(0.1)
    assert [(s["metric"], s["values"]) for s in series] == [
        (
            {"__name__": "pue_meta_schema_version", "site": "dc1", "software_version": __version__},
            [schema.SCHEMA_VERSION],
        )
    ]


async def test_influxdb_1_6_gets_1x_writes_and_answers_influxql_exactly(influx1, tmp_path):
    cfg = InfluxConfig(url=influx1.url, bucket="pue", spool={"path": str(tmp_path / "spool.sqlite")})
    rs = readings(100) + readings(100, device="pdu-2")
    sink = await write_all(cfg, [LineBuilder().readings(rs)])
    assert sink.stats.api == "v1" and sink.stats.server_version.startswith("1.6")
    await sink.close()
    rows = influx1.query("SELECT value, quality FROM pue_reading WHERE device = 'pdu-2' ORDER BY time")
    values = rows[0]["values"]
    assert [v[1] for v in values] == [1000.0 + i / 4 for i in range(100)]
    assert [v[0] for v in values] == [round((T0 + 60 * i) * 1e9) for i in range(100)]
    assert {v[2] for v in values} == {0}
    assert influx1.query("SELECT count(value) FROM pue_reading")[0]["values"][0][1] == 200


def bucket(start: float, *, e_facility: float, category: int) -> PueInterval:
    return PueInterval(start=start, end=start + 60, e_facility=e_facility, e_it=8.0, e_subsystems={},
                       pue=e_facility / 8.0, ppue={}, category=category, measured=1.0, estimated=0.0,
                       missing=0.0)  # fmt: skip


async def test_restated_bucket_with_another_category_overwrites_its_point(influx1, tmp_path):
    """category is a field: a restatement that changes it lands on the same series point
    (as a tag it made a second series and a sum over the day counted the bucket twice)."""
    cfg = InfluxConfig(url=influx1.url, bucket="pue", spool={"path": str(tmp_path / "spool.sqlite")})
    lb = LineBuilder()
    first = lb.intervals(
        "dc1", "1m", [bucket(T0, e_facility=10.0, category=2), bucket(T0 + 60, e_facility=11.0, category=2)]
    )
    restated = lb.intervals("dc1", "1m", [bucket(T0, e_facility=12.5, category=1)])
    sink = await write_all(cfg, [first, restated])
    await sink.close()
    q = "SELECT count(e_facility_kwh), sum(e_facility_kwh) FROM pue_interval WHERE resolution = '1m'"
    (row,) = influx1.query(q)[0]["values"]
    assert row[1:] == [2, 10.0 + 11.0 + 2.5]  # two buckets, the restated one counted once at 12.5
    rows = influx1.query("SELECT e_facility_kwh, pue, category, schema_version FROM pue_interval ORDER BY time")
    v = schema.SCHEMA_VERSION
    assert [r[1:] for r in rows[0]["values"]] == [[12.5, 12.5 / 8.0, 1, v], [11.0, 11.0 / 8.0, 2, v]]
    tag_keys = influx1.query("SHOW TAG KEYS FROM pue_interval")[0]["values"]
    assert sorted(k[0] for k in tag_keys) == ["resolution", "site"]
    field_types = dict(influx1.query("SHOW FIELD KEYS FROM pue_interval")[0]["values"])
    assert (field_types["category"], field_types["schema_version"]) == ("integer", "integer")


async def test_output_start_writes_schema_version_and_readings_have_no_unit_tag(influx1, tmp_path):
    cfg = InfluxConfig(url=influx1.url, bucket="pue", spool={"path": str(tmp_path / "spool.sqlite")})
    out = InfluxOutput(InfluxSink(cfg), site="dc1")
    before = time.time()
    await out.start()
    out.readings(readings(3))
    await out.sink.flush()
    for _ in range(200):
        if out.sink.spool.status().queued_batches == 0:
            break
        await asyncio.sleep(0.05)
    await out.close()
    (meta,) = influx1.query("SELECT schema_version, software_version, site FROM pue_meta")[0]["values"]
    assert meta[1:] == [schema.SCHEMA_VERSION, __version__, "dc1"]
    meta_tags = influx1.query("SHOW TAG KEYS FROM pue_meta")[0]["values"]
    assert sorted(k[0] for k in meta_tags) == sorted(schema.META_TAGS)
    assert before <= meta[0] / 1e9 <= time.time()
    tag_keys = influx1.query("SHOW TAG KEYS FROM pue_reading")[0]["values"]
    assert sorted(k[0] for k in tag_keys) == sorted(schema.READING_TAGS) == ["device", "point", "site"]
    assert influx1.query("SELECT count(value) FROM pue_reading")[0]["values"][0][1] == 3


async def test_malformed_point_is_quarantined_and_does_not_block(influx1, tmp_path):
    cfg = InfluxConfig(url=influx1.url, bucket="pue", spool={"path": str(tmp_path / "spool.sqlite")})
    lb = LineBuilder()
    bad = f'pue_reading,device=pdu-1,point=import_energy,site=dc1,unit=kWh value="broken" {round(T0 * 1e9) + 7}'
    first = lb.readings(readings(50))
    sink = await write_all(
        cfg, [first, [*lb.readings(readings(10, start=T0 + 1e5)), bad], lb.readings(readings(5, start=T0 + 2e5))]
    )
    status, quarantined = sink.spool.status(), sink.spool.quarantined()
    lines = sink.spool.quarantined_lines(int(quarantined[0]["id"]))
    await sink.close()
    assert status.queued_batches == 0 and status.quarantined_points == 1
    assert lines == [bad]
    assert "field type conflict" in str(quarantined[0]["error"]) and "HTTP 400" in str(quarantined[0]["error"])
    # the good points of the rejected batch and the later batch all arrived
    assert influx1.query("SELECT count(value) FROM pue_reading")[0]["values"][0][1] == 65


async def test_outage_spools_and_replays_in_order_after_restart_of_sink(influx1, tmp_path):
    spool_path = tmp_path / "spool.sqlite"
    cfg = InfluxConfig(url=influx1.url, bucket="pue", batch_size=10, spool={"path": str(spool_path)})
    influx1.stop()
    sink = InfluxSink(cfg)
    await sink.start()
    sink.submit(LineBuilder().readings(readings(35)))
    await sink.flush()
    await asyncio.sleep(0.5)
    assert sink.stats.up is False and sink.stats.write_failures >= 1
    await sink.close(deadline=0.2)  # the pipeline stops while the database is down
    assert Spool(spool_path).status().queued_points == 35
    influx1.start()
    sink = InfluxSink(cfg)  # a new process: the spool is replayed
    await sink.start()
    for _ in range(100):
        if sink.spool.status().queued_batches == 0:
            break
        await asyncio.sleep(0.05)
    await sink.close()
    rows = influx1.query("SELECT value FROM pue_reading ORDER BY time")[0]["values"]
    assert [r[1] for r in rows] == [1000.0 + i / 4 for i in range(35)]


def test_spool_is_bounded_and_counts_evictions(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=2**16)
    import random

    rnd = random.Random(1)
    for i in range(40):  # incompressible lines so the bound is reached
        spool.append([f"m v={rnd.random()!r},w={rnd.random()!r} {i * 1000 + j}" for j in range(100)])
    st = spool.status()
    assert st.queued_bytes <= 2**16
    assert st.evicted_batches > 0 and st.evicted_points == 100 * st.evicted_batches
    assert st.queued_batches + st.evicted_batches == 40
    oldest = spool.oldest(1)[0]
    assert oldest.id == st.evicted_batches + 1  # oldest first went
    assert gzip.decompress(oldest.body).decode().splitlines()[0].endswith(f" {(oldest.id - 1) * 1000}")
    spool.close()


def test_spool_status_cli(tmp_path):
    import json
    import subprocess
    import sys

    spool = Spool(tmp_path / "spool.sqlite")
    first = spool.append(["m v=1.0 1", "m v=2.0 2"])
    spool.append(["m v=3.0 3"])
    spool.quarantine(first, 'HTTP 400: {"error":"field type conflict"}', [b'm v="x" 2'])
    spool.close()
    cmd = [sys.executable, "-m", "pue_monitor", "spool", "status", "--spool"]
    r = subprocess.run([*cmd, str(tmp_path / "spool.sqlite"), "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert (st["queued_batches"], st["queued_points"], st["quarantined_points"]) == (1, 1, 1)
    assert "field type conflict" in st["quarantine"][0]["error"]
    r = subprocess.run([*cmd, str(tmp_path / "no.sqlite")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == f"spool {tmp_path / 'no.sqlite'}: no spool yet (nothing was ever queued)\n"
    r = subprocess.run([*cmd, str(tmp_path / "no.sqlite"), "--json"], capture_output=True, text=True, timeout=30)
    st = json.loads(r.stdout)
    assert r.returncode == 0 and (st["exists"], st["queued_batches"], st["quarantine"]) == (False, 0, [])


async def test_token_comes_from_env_and_never_reaches_logs(vm, tmp_path, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PUE_TEST_INFLUX_TOKEN", "tok-S3CRET-123")
    cfg = InfluxConfig(url=vm.url, token={"env": "PUE_TEST_INFLUX_TOKEN"}, spool={"path": str(tmp_path / "s.sqlite")})
    sink = await write_all(cfg, [LineBuilder().readings(readings(3))])
    assert sink.stats.points_written == 3
    await sink.close()
    assert "tok-S3CRET-123" not in caplog.text
    assert "tok-S3CRET-123" not in repr(cfg)
    monkeypatch.delenv("PUE_TEST_INFLUX_TOKEN")
    from pue_monitor.errors import ConfigError

    with pytest.raises(ConfigError, match="PUE_TEST_INFLUX_TOKEN"):
        InfluxSink(cfg)


# ---------------------------------------------------------------- never silent (issue 7, scope 5)

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", flush=True)
"""


def influx_count(influx1) -> int:
    series = influx1.query("SELECT count(value) FROM pue_reading")
    return int(series[0]["values"][0][1]) if series else 0


async def wait_for(cond, timeout: float = 30.0, step: float = 0.05) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return bool(cond())


def sink_up_metric(sink: InfluxSink) -> float:
    """``pue_sink_up`` as the Prometheus endpoint renders it."""
    from pue_monitor.sinks.prometheus import PueCollector

    metric = next(m for m in PueCollector._sink_metrics(sink, "s") if m.name == "pue_sink_up")
    return float(metric.samples[0].value)


async def test_spool_locked_by_another_process_for_10_s_loses_nothing(influx1, tmp_path, caplog):
    """A second process (a real sqlite connection) holds BEGIN EXCLUSIVE on the spool for 10 s
    while the pipeline keeps submitting: the flusher's writes fail, the failure is logged with
    its cause, pue_sink_up is 0, the task restarts with backoff, and afterwards every submitted
    point is in the database."""
    import logging
    import sys

    caplog.set_level(logging.WARNING)
    spool_path = tmp_path / "spool.sqlite"
    cfg = InfluxConfig(url=influx1.url, bucket="pue", batch_size=20, flush_interval=0.1,
                       spool={"path": str(spool_path)})  # fmt: skip
    sink = InfluxSink(cfg)
    await sink.start()
    lb = LineBuilder()
    sink.submit(lb.readings(readings(20)))
    assert await wait_for(lambda: sink.stats.points_written == 20)
    assert sink_up_metric(sink) == 1.0

    locker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCKER, str(spool_path), "10", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert locker.stdout is not None
        assert await locker.stdout.readline() == b"locked\n"
        up_while_locked = []
        for k in range(1, 4):  # the pipeline keeps submitting while the spool is locked
            sink.submit(lb.readings(readings(20, start=T0 + 1e5 * k)))
            await asyncio.sleep(0.5)
        assert await wait_for(lambda: sink.stats.task_restarts >= 1, timeout=15)
        up_while_locked.append(sink_up_metric(sink))
        assert await locker.stdout.readline() == b"released\n"
    finally:
        await locker.wait()
    assert up_while_locked == [0.0]
    assert await wait_for(lambda: sink.spool.status().queued_batches == 0 and not sink._buffer, timeout=60)
    assert await wait_for(lambda: sink.stats.up is True, timeout=10)
    assert sink_up_metric(sink) == 1.0
    stats = sink.stats
    await sink.close()
    assert influx_count(influx1) == 80  # every submitted point arrived, none twice
    assert stats.points_dropped == 0 and stats.task_restarts >= 1
    failures = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert failures and "OperationalError: database is locked" in failures[0]
    assert str(spool_path) in failures[0] and "restarting it in" in failures[0]


async def test_corrupt_batch_is_quarantined_and_the_rest_arrives(influx1, tmp_path, caplog):
    import logging
    import sqlite3

    caplog.set_level(logging.WARNING)
    spool_path = tmp_path / "spool.sqlite"
    spool = Spool(spool_path)
    lb = LineBuilder()
    ids = [spool.append(lb.readings(readings(n, start=T0 + 1e5 * k))) for k, n in enumerate((10, 7, 5))]
    spool.close()
    with sqlite3.connect(spool_path) as conn:  # bit rot in batch 2: a gzip header, then garbage
        conn.execute("UPDATE batches SET body = ? WHERE id = ?", (b"\x1f\x8b\x08\x00garbage-not-deflate", ids[1]))
    cfg = InfluxConfig(url=influx1.url, bucket="pue", spool={"path": str(spool_path)})
    sink = InfluxSink(cfg)
    await sink.start()
    assert await wait_for(lambda: sink.spool.status().queued_batches == 0)
    status, quarantined = sink.spool.status(), sink.spool.quarantined()
    stats = sink.stats
    await sink.close()
    assert influx_count(influx1) == 22 - 7  # submitted minus exactly what was quarantined
    assert (status.quarantined_batches, status.quarantined_points) == (1, 7)
    assert quarantined[0]["id"] == ids[1] and "corrupt batch" in str(quarantined[0]["error"])
    assert (stats.batches_quarantined, stats.points_written, stats.task_restarts) == (1, 15, 0)
    msg = next(r.getMessage() for r in caplog.records if "is corrupt" in r.getMessage())
    assert f"batch {ids[1]} (7 points)" in msg and str(spool_path) in msg
    with sqlite3.connect(spool_path) as conn:  # kept as it was, for inspection
        assert conn.execute("SELECT body FROM quarantine WHERE id = ?", (ids[1],)).fetchone()[0].endswith(b"deflate")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_spool_file_at_start_is_moved_aside(tmp_path, caplog, damage):
    import logging
    import os
    import random

    caplog.set_level(logging.ERROR)
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    rnd = random.Random(3)
    for i in range(30):  # incompressible, so the file spans many pages
        spool.append([f"m v={rnd.random()!r},w={rnd.random()!r} {i * 1000 + j}" for j in range(100)])
    spool._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    spool.close()
    size = path.stat().st_size
    if damage == "truncated":
        os.truncate(path, size // 2)  # a copy cut short, a disk that filled up mid-write
    else:
        path.write_bytes(rnd.randbytes(size))
    damaged = path.read_bytes()
    spool = Spool(path)
    assert spool.moved_aside is not None and spool.moved_aside.name.startswith("spool.sqlite.corrupt-")
    assert spool.moved_aside.read_bytes() == damaged  # kept, byte for byte
    assert spool.status().queued_batches == 0
    spool.append(["m v=1.0 1"])  # the fresh spool works
    assert spool.status().queued_points == 1
    spool.close()
    msg = next(r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage())
    assert str(path) in msg and str(spool.moved_aside) in msg
    assert Spool(path).moved_aside is None  # the fresh one is sound at the next start


# A tiny HTTP server: a stand-in where no real InfluxDB behaves this way (a proxy or a web
# server answering 200 with a page; a redirect loop; an echo service). It is a real HTTP
# peer on a loopback port, spoken to over real sockets.


class Peer:
    def __init__(self, status: int, body: str = "", *, redirect: bool = False, version: str | None = None) -> None:
        self.status, self.body, self.redirect, self.version = status, body, redirect, version
        self.requests: list[str] = []
        self.url = ""

    async def __aenter__(self) -> Peer:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path}")
            if request.path == "/ping":
                headers = {"X-Influxdb-Version": self.version} if self.version else {}
                return web.Response(status=204, headers=headers)
            if self.redirect:
                raise web.HTTPFound(str(request.url))
            await request.read()
            return web.Response(status=self.status, text=self.body)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_200_with_garbage_body_is_not_a_write(influx1, tmp_path, api):
    """Only 204 means written: a 200 with a page keeps every batch in the spool; the same
    spool then delivers everything to a real InfluxDB."""
    spool_path = tmp_path / "spool.sqlite"
    async with Peer(200, "<html><body>Welcome to nginx!</body></html>") as peer:
        cfg = InfluxConfig(url=peer.url, api=api, bucket="pue", batch_size=10, spool={"path": str(spool_path)})
        sink = InfluxSink(cfg)
        await sink.start()
        sink.submit(LineBuilder().readings(readings(25)))
        await sink.flush()
        assert await wait_for(lambda: sink.stats.write_failures >= 2)
        status, stats = sink.spool.status(), sink.stats
        await sink.close(deadline=0.2)
    assert any(r.startswith("POST /") for r in peer.requests)  # it did answer our writes
    assert (status.queued_batches, status.queued_points) == (3, 25)
    assert stats.points_written == 0 and stats.up is False
    assert "HTTP 200" in stats.last_error and "204" in stats.last_error
    sink = InfluxSink(cfg.model_copy(update={"url": influx1.url, "api": "auto"}))
    await sink.start()
    assert await wait_for(lambda: sink.spool.status().queued_batches == 0)
    await sink.close()
    assert influx_count(influx1) == 25


async def test_unauthorised_write_keeps_the_data_for_retry(tmp_path):
    """401/403/404 are about credentials or a missing database, not the data: retried, never quarantined."""
    async with Peer(401, '{"error":"authorization failed"}', version="1.6.7") as peer:
        cfg = InfluxConfig(url=peer.url, bucket="pue", spool={"path": str(tmp_path / "s.sqlite")})
        sink = InfluxSink(cfg)
        await sink.start()
        sink.submit(LineBuilder().readings(readings(12)))
        await sink.flush()
        assert await wait_for(lambda: sink.stats.write_failures >= 2)
        status = sink.spool.status()
        await sink.close(deadline=0.2)
    assert (status.queued_points, status.quarantined_points) == (12, 0)


async def test_unexpected_library_error_in_the_sender_is_logged_and_restarted(vm, tmp_path, monkeypatch, caplog):
    """A token with a newline (a secret file edited on Windows, pasted twice) makes aiohttp
    raise ValueError inside influxdb-client: not a connection error, not an HTTP answer. The
    sender must not die: the error is logged with its cause, pue_sink_up is 0, the task
    restarts with backoff, and the data stays in the spool."""
    import logging

    caplog.set_level(logging.ERROR)
    monkeypatch.setenv("PUE_TEST_BAD_TOKEN", "tok-first-half\ntok-second-half")
    cfg = InfluxConfig(url=vm.url, api="v2", token={"env": "PUE_TEST_BAD_TOKEN"},
                       spool={"path": str(tmp_path / "s.sqlite")})  # fmt: skip
    sink = InfluxSink(cfg)
    await sink.start()
    sink.submit(LineBuilder().readings(readings(30)))
    await sink.flush()
    assert await wait_for(lambda: sink.stats.task_restarts >= 2, timeout=15)
    up, status = sink_up_metric(sink), sink.spool.status()
    await sink.close(deadline=0.2)
    assert up == 0.0 and sink.stats.points_written == 0
    assert (status.queued_batches, status.queued_points) == (1, 30)
    failures = [r.getMessage() for r in caplog.records if "sender failed" in r.getMessage()]
    assert len(failures) >= 2 and "ValueError" in failures[0] and "restarting it in 0.5 s" in failures[0]
    assert "restarting it in 1.0 s" in failures[1]  # backoff doubles
    assert "tok-first-half" not in caplog.text


def readme_downsampling_sql() -> list[str]:
    """The InfluxQL statements of the README's "Retention and downsampling" (kept honest here)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("**Retention and downsampling.**") :]
    block = section[section.index("```sql\n") + 7 : section.index("```", section.index("```sql\n") + 7)]
    statements, current = [], ""
    for line in block.splitlines():
        line = line.split("--")[0].strip()
        current = f"{current} {line}".strip()
        if current.startswith("CREATE CONTINUOUS QUERY") and not current.endswith("END"):
            continue
        if current:
            statements.append(current)
            current = ""
    return statements


def influxql_post(server: Any, q: str) -> dict[str, Any]:
    data = urllib.parse.urlencode({"db": "pue", "q": q, "epoch": "ns"}).encode()
    result: dict[str, Any] = json.loads(urllib.request.urlopen(f"{server.url}/query", data=data, timeout=10).read())
    assert "error" not in result["results"][0], (q, result)
    return result


async def test_readme_retention_policies_and_continuous_query_keep_the_rollups(influx1, tmp_path):
    """The README's 1.x recipe, run against InfluxDB 1.6: the CQ's SELECT (over a fixed time
    range, as one CQ run does) copies 15m/1h/1d rollups to "long" unchanged and no 1m point."""
    statements = readme_downsampling_sql()
    assert [s.split(" ON ")[0] for s in statements] == [
        'CREATE RETENTION POLICY "short"',
        'CREATE RETENTION POLICY "long"',
        'CREATE CONTINUOUS QUERY "keep_rollups"',
    ]
    for s in statements:
        influxql_post(influx1, s)
    cfg = InfluxConfig(url=influx1.url, bucket="pue/short", spool={"path": str(tmp_path / "spool.sqlite")})
    day = 86_400 * (int(time.time()) // 86_400 - 2)  # inside the 30-day "short" policy
    lb = LineBuilder()
    minutes = [bucket(day + 60 * i, e_facility=10.0 + i, category=2) for i in range(30)]
    quarters = [bucket(day + 900 * i, e_facility=100.0 + i, category=1 + i % 2) for i in range(2)]
    daily = [bucket(day, e_facility=9000.0, category=2)]
    sink = await write_all(
        cfg,
        [lb.intervals("dc1", "1m", minutes), lb.intervals("dc1", "15m", quarters), lb.intervals("dc1", "1d", daily)],
    )
    await sink.close()
    cq = statements[2]
    select = cq[cq.index("BEGIN") + 5 : cq.rindex("END")].strip()
    select = select.replace(" WHERE ", f" WHERE time >= {day * 10**9} AND time < {(day + 86_400) * 10**9} AND ")
    influxql_post(influx1, select)
    long = influx1.query('SELECT * FROM "pue"."long"."pue_interval" ORDER BY time')[0]
    cols = long["columns"]
    rows = sorted((dict(zip(cols, r, strict=True)) for r in long["values"]), key=lambda r: (r["resolution"], r["time"]))
    got = [(r["resolution"], r["time"] // 10**9, r["last_e_facility_kwh"], r["last_category"]) for r in rows]
    assert got == [("15m", day, 100.0, 1), ("15m", day + 900, 101.0, 2), ("1d", day, 9000.0, 2)]
    assert {r["site"] for r in rows} == {"dc1"} and {r["last_schema_version"] for r in rows} == {schema.SCHEMA_VERSION}
    short = influx1.query('SELECT count(e_facility_kwh) FROM "pue"."short"."pue_interval" GROUP BY resolution')
    assert {s["tags"]["resolution"]: s["values"][0][1] for s in short} == {"1m": 30, "15m": 2, "1d": 1}
