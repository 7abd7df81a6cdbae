"""Status you can act on: device states (pending/up/down with the failure kind), the service's
/status, /healthz and /readyz beside /metrics, `pue status` (from the service or a store) and
the live status line — against the simulator's real Modbus servers, one device's port dead and
one device not answering."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from pue_monitor.cli.live import _devices_text, _Display
from pue_monitor.cli.status_cmds import age, status_url
from pue_monitor.clock import ManualClock
from pue_monitor.config.loader import site_from_dict
from pue_monitor.errors import ConfigError
from pue_monitor.service import Service
from pue_monitor.simulator import SimulatedDataCentre, SimulatorServers
from tests.sites import two_meter_site

PUE = [sys.executable, "-m", "pue_monitor"]
START = dt.datetime(2026, 7, 15, 2, 0, tzinfo=dt.UTC).timestamp()  # a multiple of the 15 s poll grid
DEAD_PORT_DEVICE = "pdu-2"  # its port: nothing listens (connection refused)
SILENT_DEVICE = "pdu-4"  # behind the live PDU gateway, but never answers (time-out)


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def scrape(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        return str(r.read().decode())


def metric_states(text: str) -> dict[str, str]:
    """device -> the state whose ``pue_collector_state`` sample is 1 (exactly one per device)."""
    from prometheus_client.parser import text_string_to_metric_families

    ones: dict[str, list[str]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "pue_collector_state":
            for s in fam.samples:
                ones.setdefault(s.labels["device"], [])
                if s.value == 1:
                    ones[s.labels["device"]].append(s.labels["state"])
    assert all(len(v) == 1 for v in ones.values()), ones
    return {dev: v[0] for dev, v in ones.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def pue(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [*PUE, *args], capture_output=True, text=True, timeout=60)


async def test_status_names_the_dead_devices_with_the_runners_numbers(tmp_path, capsys):
    clock = ManualClock(START - 5)
    world = SimulatedDataCentre(start=START - 600, seed=3)
    world.kill_device(SILENT_DEVICE, START - 600)
    db = tmp_path / "status.sqlite"
    async with SimulatorServers(world, clock) as servers:
        cfg = servers.site_config(interval=15, timeout=0.3)
        dead = next(d for d in cfg["devices"] if d["id"] == DEAD_PORT_DEVICE)
        dead["port"] = free_port()
        cfg["prometheus"] = {"port": 0}
        display = _Display("Asia/Shanghai", every=0, json_lines=False, quiet=False)
        svc = Service(
            site_from_dict(cfg, source="<sim>"), clock=clock, store_path=db, resume=False, tick=0.05, on_tick=display
        )
        assert svc.prometheus is not None
        base = svc.prometheus.base_url
        n = len(cfg["devices"])

        # built, not running yet: not ready, not alive
        code, body = await asyncio.to_thread(get, base + "/readyz")
        assert code == 503 and "starting" in body["reasons"][0]
        assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 503
        starting = await pue("status", "--url", base)
        assert starting.returncode == 1
        assert starting.stderr.startswith(f"pue status: {base}/status answered 503: the service is starting")

        stop = asyncio.Event()
        run = asyncio.create_task(svc.run(stop))
        try:
            await wait_for(lambda: svc.status._steps > 0, "the first service step")
            # running, before the first poll (the clock is 5 s before the first slot): pending, not down
            code, doc = await asyncio.to_thread(get, base + "/status")
            assert code == 200
            assert [d["state"] for d in doc["devices"]] == ["pending"] * n
            assert doc["summary"] == {"devices": n, "up": 0, "down": 0, "pending": n}
            code, body = await asyncio.to_thread(get, base + "/readyz")
            assert code == 503 and body["reasons"] == [
                f"waiting for the first poll of {n} device(s): "
                + ", ".join(d["id"] for d in cfg["devices"][:10])
                + (f" and {n - 10} more" if n > 10 else "")  # at most ten names
            ]
            assert await asyncio.to_thread(get, base + "/healthz") == (200, {"status": "alive"})
            assert metric_states(await asyncio.to_thread(scrape, base)) == {d["id"]: "pending" for d in cfg["devices"]}
            line = capsys.readouterr().out.splitlines()[-1]
            assert f"devices 0/{n} up, {n} pending | readings: none yet" in line

            for k in range(1, 4):  # three poll rounds; wait until every poll has ended
                clock.advance(15 if k > 1 else 5)
                await wait_for(
                    lambda k=k: all(s.polls >= k for s in svc.runner.stats.values()) and clock.sleepers() == n,
                    f"poll round {k}",
                )
            await svc.step()  # the readings of the last round reach the live state

            code, body = await asyncio.to_thread(get, base + "/readyz")
            assert (code, body) == (200, {"status": "ready"})
            states = metric_states(await asyncio.to_thread(scrape, base))
            assert states == {dev: st.state for dev, st in svc.runner.stats.items()}
            assert states[DEAD_PORT_DEVICE] == states[SILENT_DEVICE] == "down"
            code, doc = await asyncio.to_thread(get, base + "/status")
            assert code == 200
            stats, readings = svc.runner.stats, svc.state.readings
            cli = await pue("status", "--url", base)
            cli_json = await pue("status", "--url", base + "/status", "--json")
            display.json_lines = True
            display(await svc.step())
            json_line = json.loads(capsys.readouterr().out.splitlines()[-1])
            display.json_lines = False
            display(await svc.step())
            text_line = capsys.readouterr().out.splitlines()[-1]
        finally:
            stop.set()
            await run

    # /status: every device with the runner's own numbers
    by_id = {d["id"]: d for d in doc["devices"]}
    assert list(by_id) == [d["id"] for d in cfg["devices"]]
    for dev, d in by_id.items():
        st = stats[dev]
        assert d["protocol"] == "modbus"
        assert d["state"] == st.state
        assert (d["polls"], d["failed_polls"]) == (st.polls, st.failed_polls)
        assert {k: v for k, v in d["errors"].items() if v} == dict(st.errors)
        assert set(d["errors"]) == {"timeout", "connection", "protocol", "decode", "internal"}
        assert d["readings"] == readings[dev]
        assert d["last_success"] == st.last_success
        assert d["last_latency_s"] == st.last_latency
    down = {DEAD_PORT_DEVICE: "connection", SILENT_DEVICE: "timeout"}
    for dev, kind in down.items():
        d = by_id[dev]
        assert (d["state"], d["last_error_kind"], d["readings"], d["last_success"]) == ("down", kind, 0, None)
        assert d["errors"][kind] == stats[dev].errors[kind] > 0 and d["polls"] == stats[dev].failed_polls == 3
        assert d["down_since"] == START  # first failed at the first slot
    assert str(dead["port"]) in by_id[DEAD_PORT_DEVICE]["last_error"]
    assert "no answer within 0.3 s" in by_id[SILENT_DEVICE]["last_error"]
    up = [d for dev, d in by_id.items() if dev not in down]
    assert up and all(d["state"] == "up" and d["readings"] > 0 and d["polls"] == 3 for d in up)
    assert all(d["last_success"] == START + 30 and d["last_success_age_s"] == 0 for d in up)
    assert doc["summary"] == {"devices": n, "up": n - 2, "down": 2, "pending": 0}
    assert doc["ready"] is True and doc["now"] == START + 30
    assert doc["pipeline"]["power_kw"]["facility_input"] > 0
    assert {o["name"]: o["up"] for o in doc["outputs"]}["store"] is True

    # `pue status --url`: the down devices named, with their kind; exit 1
    assert cli.returncode == 1, cli.stderr
    rows = {r[0]: r for r in map(str.split, cli.stdout.splitlines()) if len(r) > 1 and r[1] == "modbus"}
    assert rows[DEAD_PORT_DEVICE][1:4] == ["modbus", "DOWN", "never"]
    assert f"connection {stats[DEAD_PORT_DEVICE].errors['connection']}" in " ".join(rows[DEAD_PORT_DEVICE])
    assert f"timeout {stats[SILENT_DEVICE].errors['timeout']}" in " ".join(rows[SILENT_DEVICE])
    assert rows["incomer-a"][1:3] == ["modbus", "up"] and rows["incomer-a"][-1] == str(readings["incomer-a"])
    assert f"devices {n - 2}/{n} up, 2 down, 0 pending | service ready" in cli.stdout
    assert cli_json.returncode == 1 and json.loads(cli_json.stdout)["summary"]["down"] == 2

    # the live status line names the down devices and their kind, text and JSON
    assert f"devices {n - 2}/{n} up, down: {DEAD_PORT_DEVICE} (connection), {SILENT_DEVICE} (timeout) |" in text_line
    assert json_line["devices_up"] == n - 2 and json_line["devices_pending"] == 0
    assert json_line["devices_down"] == [
        {"id": DEAD_PORT_DEVICE, "kind": "connection"},
        {"id": SILENT_DEVICE, "kind": "timeout"},
    ]

    # the service is gone: one line naming the URL and how to start one; exit 1
    gone = await pue("status", "--url", base)
    assert gone.returncode == 1 and gone.stdout == ""
    assert gone.stderr.count("\n") == 1 and f"no pue-monitor service answers at {base}/status" in gone.stderr
    assert "pue run --config" in gone.stderr and "Traceback" not in gone.stderr

    # ... but the store says what it last recorded, and says it is the store
    stored = await pue("status", "--db", str(db))
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.startswith(f"from the store {db} (no running service was asked")
    listed = {line.split()[0] for line in stored.stdout.splitlines() if line.startswith(tuple(by_id))}
    assert listed == {d["id"] for d in up}  # the two down devices never delivered a reading
    series = await pue("status", "--db", str(db), "--series")
    assert series.returncode == 0
    good = {tuple(r[:2]) for r in map(str.split, series.stdout.splitlines()) if r and r[-1] == "GOOD"}
    assert ("incomer-a", "import_energy") in good and not any(dev in down for dev, _ in good)
    stored_json = json.loads((await pue("status", "--db", str(db), "--json")).stdout)
    newest = {d["device"]: d["last_reading"] for d in stored_json["devices"]}
    assert newest == {d["id"]: START + 30 for d in up}
    assert {(s["device"], s["point"]) for s in stored_json["series"]} == {
        (d["id"], p) for d in cfg["devices"] if d["id"] not in down for p in d["points"]
    }


async def test_healthz_fails_when_the_event_loop_stalls_or_a_polling_task_ends(tmp_path):
    svc = Service(
        site_from_dict(two_meter_site(), source="<test>"),
        clock=ManualClock(START),
        store_path=tmp_path / "s",
        tick=0.05,
    )
    assert svc.prometheus is not None
    url = svc.prometheus.base_url + "/healthz"
    stop = asyncio.Event()
    run = asyncio.create_task(svc.run(stop))
    try:
        await wait_for(lambda: svc.status._steps > 0, "the first service step")
        assert await asyncio.to_thread(get, url) == (200, {"status": "alive"})

        svc.status.respond_within = 0.2
        answer: list[tuple[int, Any]] = []
        asker = threading.Thread(target=lambda: answer.append(get(url)))
        asker.start()
        time.sleep(0.6)  # noqa: ASYNC251 (on purpose: the event loop is blocked, as by a bug)
        await asyncio.to_thread(asker.join)
        assert answer == [(503, {"status": "not alive", "reason": "the event loop did not answer within 0.2 s"})]

        task = next(t for t in svc.runner._tasks if t.get_name() == "poll it")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        code, body = await asyncio.to_thread(get, url)
        assert (code, body) == (503, {"status": "not alive", "reason": "polling tasks ended: poll it"})
    finally:
        stop.set()
        await run


async def test_status_endpoint_is_configured_in_the_site_file(tmp_path):
    off = two_meter_site()
    off["prometheus"] = {"port": 0, "status": False}
    svc = Service(site_from_dict(off, source="<test>"), clock=ManualClock(START), store_path=tmp_path / "off")
    try:
        assert svc.prometheus is not None and svc.prometheus.routes == {}
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(svc.prometheus.base_url + "/status", timeout=5).read().decode()
        )
        assert "pue_collector_up{" in text  # every path is /metrics again
    finally:
        await svc.close()

    cfg = two_meter_site()
    cfg["prometheus"] = {"port": 0, "status": "sometimes"}
    with pytest.raises(ConfigError, match=r"prometheus\.status"):
        site_from_dict(cfg, source="<test>")

    import yaml

    site = tmp_path / "site.yaml"
    for prometheus, field in (
        ({"status": False}, "prometheus.status is false"),
        ({"enabled": False}, "prometheus.enabled is false"),
        ({"port": 0}, "prometheus.port is 0"),
    ):
        site.write_text(yaml.safe_dump({**two_meter_site(), "prometheus": prometheus}))
        r = await pue("status", "--config", str(site))
        assert r.returncode == 2 and field in r.stderr and "Traceback" not in r.stderr, r.stderr
    # the default: ask the port of prometheus.port on this host (0.0.0.0 is asked on loopback)
    port = free_port()
    site.write_text(yaml.safe_dump({**two_meter_site(), "prometheus": {"host": "0.0.0.0", "port": port}}))
    r = await pue("status", "--config", str(site))
    assert r.returncode == 1 and f"http://127.0.0.1:{port}/status" in r.stderr


def test_status_helpers():
    assert status_url("127.0.0.1:9464") == "http://127.0.0.1:9464/status"
    assert status_url("http://h:1/") == "http://h:1/status"
    assert status_url("http://h:1/metrics") == "http://h:1/status"
    assert status_url("http://[::1]:1/status") == "http://[::1]:1/status"
    assert [age(None), age(3.4), age(600), age(3 * 3600), age(3 * 86400)] == [
        "never",
        "3 s ago",
        "10 min ago",
        "3 h ago",
        "3 d ago",
    ]
    down = [(f"d{i}", "timeout") for i in range(7)]
    assert _devices_text(3, 10, 0, down) == (
        "devices 3/10 up, down: d0 (timeout), d1 (timeout), d2 (timeout), d3 (timeout), d4 (timeout) and 2 more"
    )
    assert _devices_text(10, 10, 0, []) == "devices 10/10 up"


async def test_push_device_is_pending_until_its_first_message_and_down_when_silent(tmp_path):
    """An MQTT device: pending (not down) before any message, up on the first, and down with
    kind "no-message" after STALE_AFTER intervals and STALE_MIN_WALL wall seconds of silence.
    A Sparkplug edge node: up on its birth, down with kind "death" on its death certificate."""
    import aiomqtt

    from pue_monitor.collectors import sparkplug as sp
    from pue_monitor.collectors.mqtt import STALE_AFTER, STALE_MIN_WALL
    from pue_monitor.simulator.broker import Broker
    from tests.sites import WEATHER_MQTT

    clock = ManualClock(START)
    async with Broker(kind="mosquitto") as broker:
        gw = {"id": "gw", "protocol": "sparkplug", "group": "g1", "edge_node": "n1", "interval": 1000}
        cfg = two_meter_site({**WEATHER_MQTT, "interval": 10}, gw, mqtt=True)
        cfg["mqtt"] = {"host": broker.host, "port": broker.port}
        svc = Service(site_from_dict(cfg, source="<test>"), clock=clock, store_path=tmp_path / "m", tick=0.05)
        assert svc.prometheus is not None
        url = svc.prometheus.base_url + "/status"
        wx = svc.runner.stats["wx"]
        stop = asyncio.Event()
        run = asyncio.create_task(svc.run(stop))
        try:
            await wait_for(lambda: svc.state.mqtt.connected, "the MQTT subscription")
            await asyncio.sleep(STALE_MIN_WALL / 5)
            state = {d["id"]: d["state"] for d in (await asyncio.to_thread(get, url))[1]["devices"]}
            assert state["wx"] == state["gw"] == "pending"
            node = svc.runner.stats["gw"]
            async with aiomqtt.Client(broker.host, broker.port, identifier="pub-status") as pub:
                await pub.publish("wx", b"21.5", qos=1)
                birth = [("bdSeq", None, sp.UINT64, 0), ("Energy", 1, sp.UINT32, 5)]
                await pub.publish("spBv1.0/g1/NBIRTH/n1", sp.encode_payload(birth, ts_ms=int(START * 1000), seq=0))
                await wait_for(lambda: wx.up is True and node.up is True, "the first messages")
                d = next(d for d in (await asyncio.to_thread(get, url))[1]["devices"] if d["id"] == "wx")
                assert (d["state"], d["protocol"], d["readings"], d["last_success"]) == ("up", "mqtt", 1, START)
                death = [("bdSeq", None, sp.UINT64, 0)]
                await pub.publish("spBv1.0/g1/NDEATH/n1", sp.encode_payload(death, ts_ms=0, seq=None))
                await wait_for(lambda: node.up is False, "the death certificate")
            d = next(d for d in (await asyncio.to_thread(get, url))[1]["devices"] if d["id"] == "gw")
            assert (d["state"], d["protocol"], d["last_error_kind"]) == ("down", "sparkplug", "death")
            assert d["last_error"] == "Sparkplug NDEATH of n1" and d["down_since"] == START

            clock.advance(STALE_AFTER * 10 + 1)
            await wait_for(lambda: wx.up is False, "the silence to count", timeout=STALE_MIN_WALL + 10)
            d = next(d for d in (await asyncio.to_thread(get, url))[1]["devices"] if d["id"] == "wx")
        finally:
            stop.set()
            await run
    assert (d["state"], d["last_error_kind"], d["down_since"]) == ("down", "no-message", START + STALE_AFTER * 10 + 1)
    assert d["last_error"] == f"no message for {STALE_AFTER * 10 + 1:.0f} s (interval 10 s)"
