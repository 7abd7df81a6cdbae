"""MQTT messages per second ingested by one process (MqttSource + parsing into readings).

    python -m benchmarks.bench_mqtt [--messages 50000]

A Mosquitto child process is the broker; the publisher is a separate Python process
(paho, QoS 1, as fast as the broker acknowledges) so the numbers are the collector's:
receive, decode, build readings, dedupe, acknowledge. Timed from the first reading to
the last; every message must arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
import time
from pathlib import Path

from pue_monitor.clock import WallClock
from pue_monitor.collectors.mqtt import MqttSource
from pue_monitor.config.models import SiteConfig
from pue_monitor.readings import Reading
from pue_monitor.simulator.broker import Broker

PUBLISHER = textwrap.dedent(
    """
    import json, sys, time
    import paho.mqtt.client as mqtt
    from pue_monitor.collectors import sparkplug as sp
    port, kind, n, qos = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = 1_751_328_000_000
    infos = []
    if kind == "sparkplug":
        birth = sp.encode_payload([("bdSeq", None, sp.UINT64, 0)], ts_ms=t0, seq=0)
        infos.append(c.publish("spBv1.0/b/NBIRTH/n", birth, qos=1))
        metrics = [(f"m{i}", i, sp.DOUBLE, float(i)) for i in range(4)]
        infos.append(c.publish("spBv1.0/b/DBIRTH/n/d", sp.encode_payload(metrics, ts_ms=t0, seq=1), qos=1))
    for k in range(n):
        if kind == "json":
            payload = json.dumps({"ts": t0 + k, "data": {"power": 1000.0 + k, "energy": 5e6 + k}})
            infos.append(c.publish("b/json/meter-1", payload, qos=qos))
        elif kind == "number":
            infos.append(c.publish("b/num/level", str(100.0 + k), qos=qos))
        else:
            metrics = [(None, i, sp.DOUBLE, float(k + i)) for i in range(4)]
            payload = sp.encode_payload(metrics, ts_ms=t0 + 1000 + k, seq=(k + 2) % 256)
            infos.append(c.publish("spBv1.0/b/DDATA/n/d", payload, qos=qos))
    for i in infos:
        i.wait_for_publish()
    c.disconnect()
    c.loop_stop()
    """
)

DEVICES = [
    {
        "id": "meter-1",
        "protocol": "mqtt",
        "subscriptions": [
            {
                "topic": "b/json/+",
                "timestamp": "ts",
                "points": [
                    {"point": "active_power", "path": "data.power", "unit": "W"},
                    {"point": "import_energy", "path": "data.energy", "unit": "Wh"},
                ],
            }
        ],
    },
    {"id": "level", "protocol": "mqtt", "subscriptions": [{"topic": "b/num/level", "points": [{"point": "v"}]}]},
    {"id": "sp", "protocol": "sparkplug", "group": "b", "edge_node": "n", "device": "d"},
]
#: readings per message, per scenario (Sparkplug: 4 metrics; births add 4 more)
PER_MESSAGE = {"json": 2, "number": 1, "sparkplug": 4}


async def scenario(broker: Broker, kind: str, n: int, qos: int) -> dict[str, float]:
    cfg = SiteConfig.model_validate(
        {"site": {"id": "b"}, "devices": DEVICES, "mqtt": {"port": broker.port, "client_id": f"bench-{kind}-{qos}"}}
    )
    assert cfg.mqtt is not None
    source = MqttSource(cfg.mqtt, list(cfg.devices), site_id="b", clock=WallClock(), base_dir=Path("."))
    count = 0
    first = last = 0.0
    want = n * PER_MESSAGE[kind] + (4 if kind == "sparkplug" else 0)
    done = asyncio.Event()

    def emit(rs: list[Reading]) -> None:
        nonlocal count, first, last
        if count == 0:
            first = time.perf_counter()
        count += len(rs)
        last = time.perf_counter()
        if count >= want:
            done.set()

    stopping = asyncio.Event()
    task = asyncio.create_task(source.run(emit, {}, stopping), name="bench source")
    while not source.connected:  # noqa: ASYNC110 - the source has no "subscribed" event
        await asyncio.sleep(0.01)
    pub = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, str(broker.port), kind, str(n), str(qos)
    )
    try:
        await asyncio.wait_for(done.wait(), timeout=120)
    finally:
        await pub.wait()
        stopping.set()
        await task
    took = last - first
    return {"messages": n, "readings": count, "seconds": took, "msg_per_s": n / took if took else 0.0}


async def run(n: int) -> list[tuple[str, dict[str, float]]]:
    out = []
    async with Broker(kind="mosquitto") as broker:
        for kind, qos in (("json", 1), ("number", 1), ("sparkplug", 1), ("json", 0)):
            out.append((f"{kind}, QoS {qos}", await scenario(broker, kind, n, qos)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000)
    args = ap.parse_args(argv)
    rows = asyncio.run(run(args.messages))
    print("| payload | messages | readings | seconds | messages/s |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['messages']:.0f} | {r['readings']:.0f} | {r['seconds']:.2f} | {r['msg_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
