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
