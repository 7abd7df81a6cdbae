"""MQTT source against a real Mosquitto started by each test on a free loopback port.

A missing mosquitto binary fails these tests (``Broker(kind="mosquitto")`` raises): they
are the proof that the collector speaks to a real broker, so they must never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from pue_monitor.clock import ScaledClock, WallClock
from pue_monitor.collectors import sparkplug as sp
from pue_monitor.collectors.mqtt import MqttSource, parse_timestamp
from pue_monitor.config.models import MqttBroker, SiteConfig
from pue_monitor.readings import Quality, Reading
from pue_monitor.simulator.broker import Broker
from pue_monitor.simulator.mqtt_publishers import SensorParams, SensorPublishers, crah_temperatures, make_up_litres
from pue_monitor.simulator.world import SimulatedDataCentre

T0 = 1_751_328_000.0  # 2025-07-01 00:00 UTC


def devices(spec: list[dict[str, Any]], broker: Broker, **mqtt: Any) -> tuple[MqttBroker, list[Any]]:
    cfg = SiteConfig.model_validate(
        {"site": {"id": "t"}, "devices": spec, "mqtt": {"host": broker.host, "port": broker.port, **mqtt}}
    )
    assert cfg.mqtt is not None
    return cfg.mqtt, list(cfg.devices)


class Running:
    """A source running in a task, its readings collected."""

    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.readings: list[Reading] = []
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "timed out waiting"
            assert self.task is not None and not self.task.done(), "source ended"
            await asyncio.sleep(0.01)

    def values(self, device: str, point: str) -> list[float]:
        return [r.value for r in self.readings if r.device == device and r.point == point]


@contextlib.asynccontextmanager
async def running(source: MqttSource) -> AsyncIterator[Running]:
    run = Running(source)
    run.task = asyncio.create_task(source.run(run.readings.extend, {}, run.stopping), name="test source")
    try:
        yield run
    finally:
        run.stopping.set()
        await asyncio.wait_for(run.task, timeout=10)


@contextlib.asynccontextmanager
async def publisher(broker: Broker, **kw: Any) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"pub-{random.random()}", **kw) as c:
        yield c


async def subscribed(run: Running) -> None:
    """Wait until the source holds its subscriptions (its broker state is up)."""
    await run.wait_for(lambda: run.source.connected)


# --------------------------------------------------------------------------- payloads


async def test_json_plain_and_sparkplug_payloads_become_readings() -> None:
    spec = [
        {
            "id": "ahu",
            "protocol": "mqtt",
            "subscriptions": [
                {
                    "topic": "site/+/ahu",
                    "timestamp": "meta.ts",
                    "points": [
                        {"point": "supply_temp", "path": "data.temps[0].v", "unit": "degC"},
                        {"point": "fan_power", "path": "data.fan_w", "unit": "kW", "scale": 0.001},
                    ],
                }
            ],
        },
        {
            "id": "tank",
            "protocol": "mqtt",
            "subscriptions": [{"topic": "site/tank/level", "points": [{"point": "level", "unit": "%"}]}],
        },
        {
            "id": "gw",
            "protocol": "sparkplug",
            "group": "g1",
            "edge_node": "node-1",
            "metrics": {"Energy": {"point": "import_energy", "unit": "kWh", "scale": 0.001}},
        },
        {"id": "gw-d2", "protocol": "sparkplug", "group": "g1", "edge_node": "node-1", "device": "d2"},
    ]
    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker)
        source = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."))
        async with running(source) as run, publisher(broker) as pub:
            await subscribed(run)
            ncmd: list[bytes] = []
            await pub.subscribe("spBv1.0/g1/NCMD/#", qos=1)

            async def collect() -> None:
                async for m in pub.messages:
                    ncmd.append(bytes(m.payload))  # type: ignore[arg-type]

            listener = asyncio.create_task(collect(), name="ncmd listener")
            try:
                doc = {"meta": {"ts": 1_751_328_123_456}, "data": {"temps": [{"v": 21.5}, {"v": 0}], "fan_w": 2500}}
                await pub.publish("site/hall-1/ahu", json.dumps(doc), qos=1)
                await pub.publish("site/hall-2/ahu", json.dumps({**doc, "meta": {"ts": "2025-07-01T08:00:00+08:00"}}))
                await pub.publish("site/tank/level", b" 73.25\n", qos=1)
                # Sparkplug: data before any birth -> an NCMD rebirth request
                await pub.publish("spBv1.0/g1/DDATA/node-1/d2", sp.encode_payload([], ts_ms=0, seq=9), qos=1)
                await run.wait_for(lambda: len(ncmd) == 1)
                assert sp.is_rebirth_command(ncmd[0]) and source.rebirths_requested == 1
                ms = 1_751_328_200_000
                births = [
                    (
                        "NBIRTH/node-1",
                        [("bdSeq", None, sp.UINT64, 0), ("Energy", 1, sp.UINT32, 123_456_789)],
                        0,
                    ),
                    ("DBIRTH/node-1/d2", [("Inlet Temp", 2, sp.FLOAT, 24.5)], 1),
                    ("DDATA/node-1/d2", [(None, 2, sp.FLOAT, 25.25)], 2),
                    ("NDATA/node-1", [(None, 1, sp.UINT32, 123_457_000)], 3),
                ]
                for i, (t, metrics, seq) in enumerate(births):
                    payload = sp.encode_payload(metrics, ts_ms=ms + i * 1000, seq=seq, units={"Inlet Temp": "degC"})
                    await pub.publish(f"spBv1.0/g1/{t}", payload, qos=1)
                await run.wait_for(lambda: len(run.readings) == 11)
            finally:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
    got = {(r.device, r.point, r.ts, r.tags): (r.value, r.unit) for r in run.readings}
    assert got[("ahu", "supply_temp", 1_751_328_123.456, ())] == (21.5, "degC")
    assert got[("ahu", "fan_power", 1_751_328_123.456, ())] == (2.5, "kW")
    assert got[("ahu", "supply_temp", T0, ())] == (21.5, "degC")  # 08:00+08:00 = 00:00 UTC
    tank = next(r for r in run.readings if r.device == "tank")
    assert (tank.value, tank.unit, tank.quality) == (73.25, "%", Quality.GOOD)
    assert abs(tank.ts - time.time()) < 5  # no timestamp configured: arrival
    # node metrics (with the configured name/scale) and all of its devices' (tagged) on "gw";
    # only d2's on "gw-d2" (named after the metric, unit from the birth)
    assert got[("gw", "import_energy", 1_751_328_200.0, ())] == pytest.approx((123_456.789, "kWh"))
    assert got[("gw", "import_energy", 1_751_328_203.0, ())] == pytest.approx((123_457.0, "kWh"))
    assert got[("gw", "inlet_temp", 1_751_328_201.0, (("sparkplug_device", "d2"),))] == (24.5, "degC")
    assert got[("gw-d2", "inlet_temp", 1_751_328_202.0, ())] == (25.25, "degC")
    assert run.source.stats["ahu"].polls == 2 and run.source.stats["tank"].polls == 1
    assert all(run.source.stats[d].up for d in ("ahu", "tank", "gw", "gw-d2"))
    assert not run.source.malformed


@pytest.mark.parametrize(
    ("value", "ts"),
    [
        (1_751_328_000, T0),
        (1_751_328_000_500, T0 + 0.5),
        ("2025-07-01T00:00:00Z", T0),
        ("2025-07-01T00:00:00", T0),
        ("1751328000.25", T0 + 0.25),
    ],
)
def test_timestamps(value: Any, ts: float) -> None:
    assert parse_timestamp(value) == ts


async def test_simulated_sensors_end_to_end() -> None:
    """The simulator's sensors through Mosquitto: values match the world; the edge node
    born before we subscribed is asked to rebirth and answers."""
    world = SimulatedDataCentre(start=T0, seed=3)
    clock = ScaledClock(start=T0 + 3600.0, speed=120.0)
    params = SensorParams()
    async with (
        Broker(kind="mosquitto") as broker,
        SensorPublishers(world, clock, host=broker.host, port=broker.port, interval=30.0) as pubs,
    ):
        cfg = SiteConfig.model_validate(
            {"site": {"id": "sim"}, "devices": pubs.devices_config(), "mqtt": pubs.broker_config()}
        )
        assert cfg.mqtt is not None
        source = MqttSource(cfg.mqtt, list(cfg.devices), site_id="sim", clock=clock, base_dir=Path("."))
        async with running(source) as run:
            await run.wait_for(lambda: len(run.values("water-meter", "make_up_water")) >= 3, timeout=15)
            await run.wait_for(lambda: len(run.values("crah-sensors", "return_temperature")) >= 6, timeout=15)
        assert pubs.births == 2 and source.rebirths_requested == 1
    weather = [r for r in run.readings if r.device == "weather"]
    assert len(weather) >= 9
    for r in weather:
        wx = world.weather_at(r.ts)
        expected = {"outdoor_temperature": wx.dry_bulb_c, "relative_humidity": wx.rh_pct, "pressure": wx.pressure_hpa}
        assert r.value == pytest.approx(float(expected[r.point]), abs=0.006), r
        assert r.ts % 30 == 0  # the publisher's simulated-time schedule
    crah = [r for r in run.readings if r.device == "crah-sensors" and r.point == "return_temperature"]
    for r in crah:
        unit = dict(r.tags)["sparkplug_device"]
        supply, ret = crah_temperatures(float(world.loads_at(r.ts)["heat_load"]), params)[int(unit[-1]) - 1]
        assert r.value == pytest.approx(ret, abs=1e-5) and r.unit == "degC"
        assert 26 < r.value < 32 and 20 <= supply <= 22
    water = [r for r in run.readings if r.device == "water-meter"]
    assert all(r.unit == "L" for r in water)
    # litres between two readings = make-up water for the heat rejected meanwhile;
    # the meter is stamped on arrival, so compare against the publisher's slots
    w = [r.value for r in water]
    slots = [r.ts for r in weather if r.point == "pressure"]
    litres = make_up_litres(world, slots[-2], slots[-1])
    assert w[-1] - w[-2] == pytest.approx(litres, abs=0.1)
    assert 6 < litres < 13  # 600-1000 kW rejected x 30 s x ~1.5 L/kWh (evaporation + blowdown)


# ------------------------------------------------------------------------ persistence


async def test_persistent_session_survives_subscriber_and_broker_restarts(monkeypatch, caplog) -> None:
    """QoS 1 messages published while we are away (10 s) and across a broker restart
    arrive exactly once; the password never reaches a log."""
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Pw-42"
    monkeypatch.setenv("PUE_TEST_MQTT_PW", secret)
    spec = [
        {
            "id": "seq",
            "protocol": "mqtt",
            "subscriptions": [{"topic": "t/seq", "timestamp": "ts", "points": [{"point": "n", "path": "n"}]}],
        }
    ]
    users = {"pue": secret, "pub": "pub-pw"}
    async with Broker(kind="mosquitto", users=users) as broker:
        cfg, devs = devices(
            spec, broker, client_id="persist-1", username="pue", password={"env": "PUE_TEST_MQTT_PW"}, keepalive=5
        )

        def source() -> MqttSource:
            return MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."), backoff_cap=0.5)

        def msg(n: int) -> bytes:
            return json.dumps({"ts": (T0 + n) * 1000, "n": n}).encode()

        seen: list[float] = []
        pub_kw = {"username": "pub", "password": "pub-pw", "protocol": aiomqtt.ProtocolVersion.V5}
        async with running(source()) as run, publisher(broker, **pub_kw) as pub:
            await subscribed(run)
            for n in range(10):
                await pub.publish("t/seq", msg(n), qos=1)
            await run.wait_for(lambda: len(run.readings) == 10)
        seen += [r.value for r in run.readings]
        # 1) the subscriber is away for 10 s while the publisher keeps publishing QoS 1
        n = 10
        async with publisher(broker, **pub_kw) as pub:
            t_end = time.monotonic() + 10.0
            while time.monotonic() < t_end:
                await pub.publish("t/seq", msg(n), qos=1)
                n += 1
                await asyncio.sleep(0.05)
        # 2) the broker restarts (persistence) while those messages wait in our session
        await broker.stop()
        await broker.start()
        async with publisher(broker, **pub_kw) as pub:
            for _ in range(10):
                await pub.publish("t/seq", msg(n), qos=1)
                n += 1
        # a new process (new source, same client id) resumes the session
        async with running(source()) as run:
            await run.wait_for(lambda: len(run.readings) >= n - 10, timeout=15)
            # 3) the broker goes down under a connected source and comes back
            await broker.stop()
            await run.wait_for(lambda: not run.source.connected)
            await broker.start()
            await run.wait_for(lambda: run.source.connected, timeout=10)
            async with publisher(broker, **pub_kw) as pub:
                for _ in range(20):
                    await pub.publish("t/seq", msg(n), qos=1)
                    n += 1
            await run.wait_for(lambda: len(run.readings) >= n - 10, timeout=10)
            await asyncio.sleep(0.3)  # room for any late duplicate
        seen += [r.value for r in run.readings]
        assert run.source.stats["seq"].up is True
    counts = Counter(seen)
    assert n > 150  # about 190 published while away
    assert sorted(counts) == list(range(n)), "every message received"
    assert set(counts.values()) == {1}, "... exactly once"
    text = caplog.text
    assert secret not in text
    assert text.count(f"broker 127.0.0.1:{broker.port} down") == 1
    assert text.count(f"broker 127.0.0.1:{broker.port} recovered") == 1


async def test_unacked_messages_are_redelivered_and_deduplicated() -> None:
    """A message handed on but whose PUBACK never reached the broker comes back flagged DUP
    after the reconnect: dropped (even without a payload timestamp). A publisher's own
    resend (DUP=0, same sample) is dropped by its (device, point, ts, value)."""
    spec = [
        {"id": "num", "protocol": "mqtt", "subscriptions": [{"topic": "t/num", "points": [{"point": "v"}]}]},
        {
            "id": "seq",
            "protocol": "mqtt",
            "subscriptions": [{"topic": "t/seq", "timestamp": "ts", "points": [{"point": "n", "path": "n"}]}],
        },
    ]
    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker, client_id="redeliver-1")
        src = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."), backoff_cap=0.2)
        async with running(src) as run:
            await subscribed(run)
        emitted = list(run.readings)
        async with publisher(broker) as pub:
            for n in range(5):
                await pub.publish("t/num", str(n), qos=1)
        # our session receives them and hands them on, but the acks are lost (no ack sent)
        client = src._client(aiomqtt.ProtocolVersion.V5, connect_timeout=5.0)
        async with client:
            async for m in client.messages:
                assert not getattr(m, "dup", True)
                emitted += src.process(str(m.topic), bytes(m.payload), qos=m.qos)  # type: ignore[arg-type]
                if len(emitted) == 5:
                    break
        async with running(src) as run:
            await subscribed(run)
            async with publisher(broker) as pub:
                await pub.publish("t/num", b"5", qos=1)
                for n in (7, 7, 8):  # a publisher resending sample 7
                    await pub.publish("t/seq", json.dumps({"ts": (T0 + n) * 1000, "n": n}), qos=1)
            await run.wait_for(lambda: len(run.readings) == 3)
            await asyncio.sleep(0.2)
        emitted += run.readings
    assert [r.value for r in emitted] == [0, 1, 2, 3, 4, 5, 7, 8]
    assert src.duplicates == Counter({"": 5, "seq": 1})  # 5 DUP redeliveries, 1 resent sample


# ------------------------------------------------------------------------------- fuzz


def _fuzz_payloads(rng: random.Random, kind: str) -> bytes:
    """A payload that is malformed for the topic's configuration, by construction."""
    if kind == "json":
        choice = rng.randrange(9)
        if choice == 0:
            return b"\xff" + rng.randbytes(rng.randrange(0, 64))  # not UTF-8
        if choice == 1:
            return json.dumps({"ts": T0 * 1000, "v": 1})[: rng.randrange(1, 20)].encode()  # truncated
        if choice == 2:
            return json.dumps({"ts": T0 * 1000, "v": rng.choice(["1", None, True, [1], {"a": 1}])}).encode()
        if choice == 3:
            return json.dumps({"ts": T0 * 1000, "v": float("nan")}).encode()  # NaN
        if choice == 4:
            return b'{"ts": %d, "v": 1e999}' % int(T0 * 1000)  # inf
        if choice == 5:
            return b'{"ts": %d, "v": 1%s}' % (int(T0 * 1000), b"0" * 400)  # too big for a float
        if choice == 6:
            return json.dumps({"v": 1.0}).encode()  # timestamp missing
        if choice == 7:
            return json.dumps({"ts": "yesterday", "v": 1.0}).encode()
        return b"[" * 5000  # deep nesting
    if kind == "number":
        return rng.choice([b"", b"abc", b"1,5", b"\xff\xfe", b"0x10", b"{}", b"1 2", rng.randbytes(8) + b"\xff"])
    # Sparkplug: bad protobuf, or valid protobuf that is not valid Sparkplug
    if rng.random() < 0.8:
        return b"\xff\xff" + rng.randbytes(rng.randrange(0, 40))
    return sp.encode_payload([("x", None, sp.DOUBLE, 1.0)], ts_ms=0, seq=None)  # no seq


async def test_fuzz_malformed_payloads(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="pue_monitor")
    spec = [
        {
            "id": "j",
            "protocol": "mqtt",
            "subscriptions": [{"topic": "fz/json", "timestamp": "ts", "points": [{"point": "v", "path": "v"}]}],
        },
        {"id": "p", "protocol": "mqtt", "subscriptions": [{"topic": "fz/num", "points": [{"point": "v"}]}]},
        {"id": "s", "protocol": "sparkplug", "group": "fz", "edge_node": "n"},
    ]
    topics = {"fz/json": "json", "fz/num": "number", "spBv1.0/fz/NDATA/n": "sparkplug"}
    rng = random.Random(20251122)
    plan = [rng.choice(list(topics)) for _ in range(10_000)]
    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker, client_id="fuzz-1")
        source = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."))
        async with running(source) as run, publisher(broker, max_inflight_messages=200) as pub:
            await subscribed(run)
            for i in range(0, len(plan), 500):
                await asyncio.gather(
                    *(pub.publish(t, _fuzz_payloads(rng, topics[t]), qos=1) for t in plan[i : i + 500])
                )
            # a valid message on each topic after the storm is still processed
            await pub.publish("fz/json", json.dumps({"ts": T0 * 1000, "v": 42.5}), qos=1)
            await pub.publish("fz/num", b"17", qos=1)
            await pub.publish("spBv1.0/fz/NBIRTH/n", sp.encode_payload([("m", 1, sp.DOUBLE, 9.5)], ts_ms=0, seq=0))
            await run.wait_for(lambda: any(r.device == "s" for r in run.readings), timeout=20)
            assert run.task is not None and not run.task.done()
    expected = Counter(plan)
    assert dict(source.malformed) == dict(expected)
    assert source.messages == 10_003
    # the NBIRTH goes at QoS 0, the others at QoS 1: MQTT orders messages within a QoS level only
    assert sorted(r.value for r in run.readings if r.quality is Quality.GOOD) == [9.5, 17.0, 42.5]
    bad = [r for r in run.readings if r.quality is Quality.BAD]
    assert bad and all(not math.isfinite(r.value) for r in bad)  # NaN/inf kept, flagged bad
    assert source.stats["j"].errors.keys() <= {"json", "type", "value", "range", "timestamp"}
    assert source.stats["p"].errors["number"] == expected["fz/num"]
    assert source.stats["s"].errors["sparkplug"] == expected["spBv1.0/fz/NDATA/n"]
    reports = [r.getMessage() for r in caplog.records if "malformed payload" in r.getMessage()]
    assert len(reports) == 3  # at most once per topic per minute
    assert {t for t in topics if any(repr(t) in m for m in reports)} == set(topics)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --------------------------------------------------------------------- MQTT 3.1.1 broker


async def test_amqtt_fallback_speaks_mqtt_311() -> None:
    """Without Mosquitto the demo uses amqtt (MQTT 3.1.1 only): the source falls back."""
    spec = [{"id": "x", "protocol": "mqtt", "subscriptions": [{"topic": "a/b", "points": [{"point": "v"}]}]}]
    async with Broker(kind="amqtt") as broker:
        cfg, devs = devices(spec, broker)
        source = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."))
        async with running(source) as run:
            await run.wait_for(lambda: source.connected, timeout=10)
            async with publisher(broker) as pub:
                await pub.publish("a/b", b"3.5", qos=1)
            await run.wait_for(lambda: len(run.readings) == 1)
    assert run.readings[0].value == 3.5


async def test_broker_down_10s_while_publisher_keeps_sending() -> None:
    """The acceptance case as written: the broker is stopped for 10 s while a publisher keeps
    publishing QoS 1 (paho queues while offline and resends on reconnect); after both
    reconnect, the collector receives every message exactly once."""
    import paho.mqtt.client as paho

    sub = {"topic": "t/down", "timestamp": "ts", "points": [{"point": "n", "path": "n"}]}
    spec = [{"id": "seq", "protocol": "mqtt", "subscriptions": [sub]}]
    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker, client_id="down-10s", keepalive=5)
        src = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."), backoff_cap=0.5)
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="pub-down-10s", clean_session=False)
        pub.max_queued_messages_set(0)  # unlimited offline queue
        pub.reconnect_delay_set(0.1, 0.5)
        pub.connect(broker.host, broker.port, keepalive=5)
        pub.loop_start()
        try:
            async with running(src) as run:
                await subscribed(run)
                n = 0

                def send() -> None:
                    nonlocal n
                    pub.publish("t/down", json.dumps({"ts": (T0 + n) * 1000, "n": n}), qos=1)
                    n += 1

                for _ in range(20):
                    send()
                    await asyncio.sleep(0.05)
                await run.wait_for(lambda: len(run.readings) == 20)
                await broker.stop()
                t_end = time.monotonic() + 10.0
                while time.monotonic() < t_end:  # the broker is down: paho queues these
                    send()
                    await asyncio.sleep(0.05)
                sent_while_down = n - 20
                await broker.start()
                for _ in range(20):
                    send()
                    await asyncio.sleep(0.05)
                await run.wait_for(lambda: len(run.readings) >= n, timeout=30)
                await asyncio.sleep(0.5)  # room for any late duplicate
                got = Counter(r.value for r in run.readings)
        finally:
            pub.loop_stop()
            pub.disconnect()
    assert sent_while_down > 150
    assert sorted(got) == list(range(n)), "every message received"
    assert set(got.values()) == {1}, "... exactly once"


# --------------------------------------------------------------------------- overload


@contextlib.contextmanager
def paho_publisher(broker: Broker, name: str) -> Any:
    """A publisher with its own network thread (so a busy test loop does not slow it)."""
    import paho.mqtt.client as paho

    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{name}")
    pub.max_queued_messages_set(0)
    pub.max_inflight_messages_set(1000)
    pub.connect(broker.host, broker.port, keepalive=30)
    pub.loop_start()
    try:
        yield pub
    finally:
        pub.loop_stop()
        pub.disconnect()


def slow(readings: list[Reading], into: list[Reading], seconds: float = 0.0005) -> None:
    """An emit that takes ``seconds`` per call (a busy pipeline)."""
    time.sleep(seconds)
    into.extend(readings)


async def test_qos0_flood_drops_are_bounded_and_counted() -> None:
    """20,000 QoS 0 messages at a collector slower than the flood: the queue never holds more
    than ``queue_messages``; every message is either processed or counted as dropped."""
    spec = [{"id": "f", "protocol": "mqtt", "subscriptions": [{"topic": "fl/0", "qos": 0, "points": [{"point": "n"}]}]}]
    sent = 20_000
    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker, client_id="flood-0", queue_messages=500)
        src = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."))
        got: list[Reading] = []
        run = Running(src)
        run.task = asyncio.create_task(src.run(lambda rs: slow(rs, got), {}, run.stopping))
        try:
            await subscribed(run)
            with paho_publisher(broker, "flood-0") as pub:
                for i in range(sent):
                    pub.publish("fl/0", str(i), qos=0)
                    if i % 1000 == 999:
                        await asyncio.sleep(0)
                await run.wait_for(lambda: src.messages + src.dropped["fl/0"] == sent, timeout=60)
                await asyncio.sleep(0.3)  # nothing more arrives
        finally:
            run.stopping.set()
            await asyncio.wait_for(run.task, timeout=10)
    values = [int(r.value) for r in got]
    assert src.dropped["fl/0"] > 1000, "the flood outran the collector (else this test proves nothing)"
    assert len(values) + src.dropped["fl/0"] == sent  # received + dropped = sent, exactly
    assert len(set(values)) == len(values) and values == sorted(values)  # no duplicate, in order
    assert src.queue_high_water[0] == 500  # the bound held (and was reached)


async def test_qos1_flood_is_back_pressure_nothing_lost() -> None:
    """3,000 QoS 1 messages at a slow collector: the broker holds what we have not
    acknowledged; every message arrives once, in order; our queue never holds more than the
    Receive Maximum (Mosquitto 2.0.11 sends more than that under a flood, its issue 2301: then
    the source stops reading the socket until the queue is half drained)."""
    spec = [{"id": "f", "protocol": "mqtt", "subscriptions": [{"topic": "fl/1", "qos": 1, "points": [{"point": "n"}]}]}]
    sent = 3_000
    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker, client_id="flood-1", receive_maximum=20, queue_messages=100)
        src = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."))
        got: list[Reading] = []
        run = Running(src)
        run.task = asyncio.create_task(src.run(lambda rs: slow(rs, got, 0.002), {}, run.stopping))
        try:
            await subscribed(run)
            with paho_publisher(broker, "flood-1") as pub:
                infos = [pub.publish("fl/1", str(i), qos=1) for i in range(sent)]
                await run.wait_for(lambda: all(i.is_published() for i in infos), timeout=30)
                published_at = len(got)
                await run.wait_for(lambda: len(got) == sent, timeout=60)
                await asyncio.sleep(0.3)  # room for any duplicate
        finally:
            run.stopping.set()
            await asyncio.wait_for(run.task, timeout=10)
    assert published_at < sent / 2, "the broker accepted the flood long before we processed it"
    assert [int(r.value) for r in got] == list(range(sent))  # nothing lost, nothing twice, in order
    assert not src.dropped
    assert src.queue_high_water[1] == 20  # the bound held (and was reached)


_FLOOD_PUBLISHER = """
import sys, time
import paho.mqtt.client as paho
host, port, t0, wall0, speed, seconds = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
rates = {"fac": 150.0, "it": 100.0}
pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="pub-flood-ts")
pub.max_queued_messages_set(0)
pub.connect(host, port, keepalive=30)
pub.loop_start()
meters = noise = 0
end = time.time() + seconds
while time.time() < end:
    for dev, rate in rates.items():
        t = t0 + (time.time() - wall0) * speed  # the collector's simulated time
        pub.publish("m/" + dev, repr(rate * (t - t0) / 3600.0), qos=0)
        meters += 1
    for _ in range(10):
        pub.publish("m/noise", str(noise), qos=0)
        noise += 1
    time.sleep(0.01)
time.sleep(0.5)
pub.loop_stop()
pub.disconnect()
print(meters, noise)
"""


async def test_flood_keeps_arrival_stamps_and_minute_pue() -> None:
    """Counter meters without payload timestamps, published every 0.3 s (simulated) by another
    process while a QoS 0 flood on another topic keeps our queue long: readings keep their
    arrival time (not the time they were processed), so each 1-minute PUE is the true 1.5."""
    import subprocess
    import sys

    from pue_monitor.config.models import ITLocation, Role
    from pue_monitor.pipeline.energy import SeriesSpec
    from pue_monitor.pipeline.live import LivePipeline

    speed = 30.0
    spec = [
        {"id": "fac", "protocol": "mqtt", "subscriptions": [{"topic": "m/fac", "qos": 0, "points": [{"point": "e"}]}]},
        {"id": "it", "protocol": "mqtt", "subscriptions": [{"topic": "m/it", "qos": 0, "points": [{"point": "e"}]}]},
        {
            "id": "noise",
            "protocol": "mqtt",
            "subscriptions": [{"topic": "m/noise", "qos": 0, "points": [{"point": "n"}]}],
        },
    ]
    rates = {"fac": 150.0, "it": 100.0}  # kW
    clock = ScaledClock(start=T0, speed=speed)

    wall0 = time.time()
    got: list[Reading] = []
    delays: list[float] = []

    def emit(rs: list[Reading]) -> None:
        time.sleep(0.0015)  # a busy consumer: ~650 messages/s, the flood is ~1,100/s
        for r in rs:
            if r.device != "noise":
                delays.append(clock.now() - (T0 + r.value * 3600.0 / rates[r.device]))  # since sent
                got.append(r)

    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker, client_id="flood-ts", queue_messages=100_000)
        src = MqttSource(cfg, devs, site_id="t", clock=clock, base_dir=Path("."))
        run = Running(src)
        run.task = asyncio.create_task(src.run(emit, {}, run.stopping))
        try:
            await subscribed(run)
            args = [broker.host, str(broker.port), repr(T0), repr(wall0), repr(speed), "8"]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _FLOOD_PUBLISHER, *args, stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
            meters, noise = map(int, out.split())
            await run.wait_for(lambda: src.messages >= meters + noise, timeout=60)
        finally:
            run.stopping.set()
            await asyncio.wait_for(run.task, timeout=10)
    assert not src.dropped and len(got) == meters
    assert max(delays) > 60.0, "readings waited in the queue (else this test proves nothing)"
    err = [abs(r.ts - (T0 + r.value * 3600.0 / rates[r.device])) for r in got]
    # stamped on arrival: typically within 0.1 s simulated (3 ms real) of sending; a loop stall
    # (garbage collection with thousands of messages queued) delays a few by up to ~100 ms real
    assert sorted(err)[len(err) // 2] < 0.1 and max(err) < 10.0
    specs = {
        ("fac", "e"): SeriesSpec("fac", Role.FACILITY_INPUT, None, "counter", 1.0, None, 30.0),
        ("it", "e"): SeriesSpec("it", Role.IT, ITLocation.UPS_OUTPUT, "counter", 1.0, None, 30.0),
    }
    pipeline = LivePipeline(specs)
    pipeline.ingest(got)
    minutes = [iv for iv in pipeline.close(max(r.ts for r in got), grace=0.0) if iv.pue is not None]
    assert len(minutes) >= 3
    # A reading stamped d seconds late moves rate*d of energy across a minute boundary: a minute's
    # PUE is off by at most about (2 boundaries x 2 meters) x d / 60 relative. A loop stall under
    # CI load stamps a few readings up to max(err) late, so each minute is held to that bound (the
    # issue measured 39 against 1.5) and the sum over the minutes, where those shifts cancel
    # between neighbours, to 0.1 %.
    per_minute = max(1e-3, 4 * max(err) / 60)
    for iv in minutes:
        assert iv.pue == pytest.approx(1.5, rel=per_minute), iv
    total = sum(iv.e_facility for iv in minutes) / sum(iv.e_it for iv in minutes)
    assert total == pytest.approx(1.5, rel=1e-3)


async def test_sparkplug_100k_metrics_never_block_the_loop() -> None:
    """An NBIRTH and an NDATA of 100,000 metrics each (3 MB) through Mosquitto: every metric
    becomes a reading and the event loop is never blocked for more than 100 ms (a ticker task
    measures its lag). The readings go to a consumer that keeps numbers, as the pipeline does."""
    n = 100_000
    spec = [{"id": "big", "protocol": "sparkplug", "group": "g", "edge_node": "n"}]
    ms = int(time.time() * 1000)
    birth = sp.encode_payload(
        [("bdSeq", None, sp.UINT64, 0)] + [(f"m{i}", i + 1, sp.DOUBLE, float(i)) for i in range(n)], ts_ms=ms, seq=0
    )
    data = sp.encode_payload([(None, i + 1, sp.DOUBLE, i + 0.5) for i in range(n)], ts_ms=ms + 1000, seq=1)
    lags: list[float] = []
    by_ts: Counter[float] = Counter()
    values: dict[str, float] = {}

    def consume(readings: list[Reading]) -> None:
        for r in readings:
            by_ts[r.ts] += 1
            if r.ts == (ms + 1000) / 1000:
                values[r.point] = r.value

    async def ticker() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t - 0.005)

    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker, client_id="big-1")
        src = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."))
        stopping = asyncio.Event()
        task = asyncio.create_task(src.run(consume, {}, stopping), name="big source")
        try:
            await asyncio.wait_for(_until(lambda: src.connected), 10)
            async with publisher(broker) as pub:
                tick = asyncio.create_task(ticker(), name="lag ticker")
                try:
                    await pub.publish("spBv1.0/g/NBIRTH/n", birth, qos=1)
                    await pub.publish("spBv1.0/g/NDATA/n", data, qos=1)
                    await asyncio.wait_for(_until(lambda: by_ts.total() == 2 * n), 60)
                    await asyncio.sleep(0.05)
                finally:
                    tick.cancel()
                    await asyncio.gather(tick, return_exceptions=True)
        finally:
            stopping.set()
            await asyncio.wait_for(task, timeout=10)
    assert len(birth) > 3_000_000 and len(lags) > 20
    assert max(lags) < 0.1, f"event loop blocked for {max(lags) * 1000:.0f} ms"
    assert by_ts == {ms / 1000: n, (ms + 1000) / 1000: n}
    assert values["m0"] == 0.5 and values["m99999"] == 99_999.5 and len(values) == n


async def test_out_of_window_mqtt_readings_counted_per_topic(caplog) -> None:
    """Through the runner: a payload stamped years ago or an hour ahead is rejected, counted
    for its topic and its device, logged once; the good reading on the same topic passes."""
    from pue_monitor.collectors.runner import Runner
    from pue_monitor.config.models import TimeWindow

    caplog.set_level(logging.WARNING, logger="pue_monitor.collectors.runner")
    sub = {"topic": "w/+", "timestamp": "ts", "points": [{"point": "v", "path": "v"}]}
    spec = [{"id": "w", "protocol": "mqtt", "subscriptions": [sub]}]
    got: list[Reading] = []
    async with Broker(kind="mosquitto") as broker:
        cfg, devs = devices(spec, broker, client_id="window-1")
        src = MqttSource(cfg, devs, site_id="t", clock=WallClock(), base_dir=Path("."))
        runner = Runner(site="t", clock=WallClock(), emit=got.extend, time_window=TimeWindow(ahead_s=600))
        runner.add_source(src, protocol="mqtt")
        runner.start()
        try:
            await asyncio.wait_for(_until(lambda: src.connected), 10)
            now = time.time()
            async with publisher(broker) as pub:
                for topic, ts, v in [
                    ("w/a", now - 20 * 365 * 86400, 1.0),
                    ("w/a", now + 3600, 2.0),
                    ("w/b", now + 3600, 3.0),
                    ("w/a", now, 4.0),
                ]:
                    await pub.publish(topic, json.dumps({"ts": ts * 1000, "v": v}), qos=1)
            await asyncio.wait_for(_until(lambda: len(got) == 1 and src.messages == 4), 10)
        finally:
            await runner.stop()
    assert [r.value for r in got] == [4.0]
    assert src.out_of_window == Counter({"w/a": 2, "w/b": 1})
    assert runner.stats["w"].out_of_window == 3
    logs = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(logs) == 2 and all("device w (topic 'w/" in m for m in logs)  # once a minute per device/topic


async def _until(cond: Callable[[], bool]) -> None:
    while not cond():  # noqa: ASYNC110 (polls state that no event signals)
        await asyncio.sleep(0.01)
