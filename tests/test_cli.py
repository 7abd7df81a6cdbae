"""The `pue` command as a user runs it: demo, Ctrl-C, run against the simulator, show."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from pue_monitor.sinks.sqlite import StoreReader

PUE = [sys.executable, "-m", "pue_monitor"]


def test_demo_agrees_with_ground_truth_and_store_is_readable_during_run(tmp_path):
    db = tmp_path / "demo.sqlite"
    proc = subprocess.Popen(
        [*PUE, "demo", "--duration", "16", "--speed", "60", "--json", "--refresh", "1", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_during_run = []
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if db.exists():
                try:
                    r = StoreReader(db)
                    seen_during_run.append(len(r.intervals("1m", limit=1000)))
                    r.close()
                except Exception as exc:
                    seen_during_run.append(repr(exc))
            time.sleep(0.5)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    summary = lines[-1]["summary"]
    assert abs(summary["error_percent"]) < 0.5
    assert 1.1 < summary["pue_period"] < 1.6
    status = [x for x in lines if "pue_instant" in x]
    assert status and status[-1]["devices"] == 17
    # every device answered; a single late poll under a loaded CI machine may mark one down
    assert max(s["devices_up"] for s in status) == 17 and status[-1]["devices_up"] >= 16
    # every protocol delivered readings: Modbus meters, SNMP UPS/rack PDUs, MQTT sensors, a Sparkplug node
    by_protocol = status[-1]["readings_by_protocol"]
    assert set(by_protocol) == {"modbus", "snmp", "mqtt", "sparkplug"} and min(by_protocol.values()) > 0
    assert status[-1]["outdoor_temperature_c"] is not None
    assert set(status[-1]["power_kw"]) == {"facility_input", "it", "cooling", "lighting", "heat_reuse", "renewable"}
    # the simulator has a water, a heat-reuse and a PV meter: every companion KPI is measured
    assert all(status[-1][k] is not None for k in ("wue", "cue", "erf", "ref"))
    for kpi, value in summary["kpis"].items():
        assert value == pytest.approx(summary["kpis_true"][kpi], rel=0.02, abs=1e-3), kpi
    # a second process read the store while the demo wrote it, and saw it grow
    counts = [c for c in seen_during_run if isinstance(c, int)]
    assert all(isinstance(c, int) for c in seen_during_run), seen_during_run
    assert len(set(counts)) >= 3 and counts == sorted(counts)

    show = subprocess.run(
        [*PUE, "show", "--db", str(db), "--json", "--last", "5"], capture_output=True, text=True, timeout=30
    )
    assert show.returncode == 0
    shown = json.loads(show.stdout)
    assert len(shown["intervals"]) == 5
    assert shown["period"]["pue"] == pytest.approx(summary["pue_period"], rel=1e-3)


def test_demo_stops_cleanly_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [*PUE, "demo", "--speed", "120", "--refresh", "0.5", "--db", str(tmp_path / "d.sqlite")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("pue demo: simulated data centre")
        for line in proc.stdout:
            if "PUE now" in line and "1-min   n/a" not in line:
                break
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert took < 5
    assert "simulator ground truth" in out
    assert "Traceback" not in err


def test_demo_removes_its_temp_dirs_even_on_ctrl_c_and_keeps_the_store_with_keep(tmp_path):
    import os
    from pathlib import Path

    def env(tmp):
        tmp.mkdir()
        return {**os.environ, "TMPDIR": str(tmp)}

    # --keep: the store stays in its temp dir, and the last line says where
    kept_tmp = tmp_path / "kept"
    out = subprocess.run(
        [*PUE, "demo", "--duration", "5", "--speed", "120", "--keep", "-q"],
        capture_output=True, text=True, timeout=90, env=env(kept_tmp),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("store kept: ")
    store = Path(last.removeprefix("store kept: ").split()[0])
    assert store.parent.parent == kept_tmp and store.name == "demo.sqlite"
    reader = StoreReader(store)
    assert len(reader.intervals("1m", limit=100)) >= 5
    reader.close()
    assert [p.name.startswith("pue-demo-") for p in kept_tmp.iterdir()] == [True]  # the broker's dir is gone

    # no --keep, no --db: Ctrl-C mid-run still removes the store's and the broker's temp dirs
    gone_tmp = tmp_path / "gone"
    proc = subprocess.Popen(
        [*PUE, "demo", "--speed", "120", "--refresh", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(gone_tmp),
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if "PUE now" in line and "1-min   n/a" not in line:
                break
        assert any(p.name.startswith("pue-demo-") for p in gone_tmp.iterdir())
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "temporary store removed" in rest
    assert list(gone_tmp.iterdir()) == []


def test_run_against_simulated_devices(tmp_path):
    cfg = tmp_path / "site.yaml"
    sim = subprocess.Popen(
        [*PUE, "simulate", "--write-config", str(cfg), "--interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "site configuration written" in sim.stdout.readline()
        db = tmp_path / "run.sqlite"
        r = subprocess.run(
            [
                *PUE,
                "run",
                "--config",
                str(cfg),
                "--duration",
                "3.5",
                "--json",
                "--db",
                str(db),
                "--prometheus-port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        reader = StoreReader(db)
        # Modbus meters, and the weather station that publishes JSON over MQTT
        for dev in ("incomer-a", "pdu-4", "weather"):
            point = "outdoor_temperature" if dev == "weather" else "import_energy"
            assert len(reader.readings(dev, point)) >= 2, dev
        assert reader.meta()["site"] == "sim-taiyuan"
        reader.close()
    finally:
        sim.send_signal(signal.SIGINT)
        sim.communicate(timeout=20)
    assert sim.returncode == 0


def test_usage_errors_exit_2(tmp_path):
    r = subprocess.run(
        [*PUE, "run", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "missing.yaml: cannot read" in r.stderr
    r = subprocess.run(
        [*PUE, "show", "--db", str(tmp_path / "none.sqlite")], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "no such store" in r.stderr
    r = subprocess.run([*PUE, "frobnicate"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    for cmd in ("demo", "run", "check-config", "show", "simulate", "profiles"):
        h = subprocess.run([*PUE, cmd, "--help"], capture_output=True, text=True, timeout=30)
        assert h.returncode == 0 and "usage: pue " + cmd in h.stdout
