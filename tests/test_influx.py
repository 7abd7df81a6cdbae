"""InfluxDB delivery against real servers: VictoriaMetrics (v2 write API via
influxdb-client) and Debian's InfluxDB 1.6 (1.x /write, InfluxQL)."""

from __future__ import annotations

import asyncio
import gzip
from types import SimpleNamespace

import pytest
from influxdb_client import Point
from servers import VictoriaMetrics

from pue_monitor.config.models import InfluxConfig
from pue_monitor.readings import Quality, Reading
from pue_monitor.sinks.influx import InfluxSink
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
        .tag("unit", "kW")
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
    assert line.startswith("pue_interval,category=2,resolution=1m,site=dc1 e_facility_kwh=10.0,e_it_kwh=8.0,pue=1.25")
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
    assert r.returncode == 2 and "no spool yet" in r.stderr


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
