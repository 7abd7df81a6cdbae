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
    assert status and status[-1]["devices"] == 18
    # every device answered; a single late poll under a loaded CI machine may mark one down
    assert max(s["devices_up"] for s in status) == 18 and status[-1]["devices_up"] >= 17
    # the live free-cooling state of the simulator's plant (weather and plant controller known)
    fc = status[-1]["free_cooling"]["water-side"]
    assert fc["available"] in ("full", "partial", "none") and fc["actual"] in ("full", "partial", "none")
    assert fc["inferred"] is False
    assert summary["free_cooling"]["water-side"]["avoidable_kwh"] is not None
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


def _dead_site(tmp_path):
    """A site whose two meters nobody answers: `pue run` starts, logs them down, stops."""
    import yaml

    dev = {"protocol": "modbus", "host": "127.0.0.1", "port": 1, "profile": "eastron-sdm630",
           "points": ["import_energy"], "interval": 1, "timeout": 0.2}  # fmt: skip
    cfg = {
        "site": {"id": "c1", "timezone": "Asia/Shanghai"},  # log times stay UTC whatever the site's zone
        "prometheus": {"enabled": False},
        "store": {"path": str(tmp_path / "new-dir" / "c1.sqlite")},  # created: a WARNING line
        "devices": [
            {**dev, "id": "m1", "meter": {"role": "facility_input", "energy": "import_energy"}},
            {**dev, "id": "m2", "unit_id": 2, "meter": {"role": "it", "it_location": "pdu_output",
                                                        "energy": "import_energy"}},
        ],
    }  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_global_options_before_or_after_the_command_and_utc_log_times(tmp_path):
    import datetime as dt
    import os
    import re
    import shutil

    site = str(_dead_site(tmp_path))
    env = {**os.environ, "TZ": "America/Los_Angeles"}  # the machine's zone changes nothing either
    iso_utc = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")

    def run(*argv):
        shutil.rmtree(tmp_path / "new-dir", ignore_errors=True)
        t0 = dt.datetime.now(dt.UTC)
        r = subprocess.run([*PUE, *argv], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        return r, t0, dt.datetime.now(dt.UTC)

    for argv in (
        ["--log-format", "json", "run", "--config", site, "--duration", "1.5", "-q"],
        ["run", "--config", site, "--duration", "1.5", "-q", "--log-format", "json"],
    ):
        r, t0, t1 = run(*argv)
        records = [json.loads(line) for line in r.stderr.splitlines()]  # one JSON object a line
        assert {x["message"].split(" (first run)")[0] for x in records if x["level"] == "WARNING"} >= {
            f"created directory {tmp_path / 'new-dir'} for store.path {tmp_path / 'new-dir' / 'c1.sqlite'}",
        }
        assert {x["logger"] for x in records} >= {"pue_monitor.sinks.lock", "pue_monitor.collectors.runner"}
        for x in records:
            assert iso_utc.match(x["time"]), x
            assert t0 - dt.timedelta(seconds=1) <= dt.datetime.fromisoformat(x["time"]) <= t1

    # text lines start with the same UTC timestamp; -v before and -v after the command add up
    # to -vv: DEBUG (asyncio names its selector at DEBUG)
    r, t0, t1 = run("-v", "run", "--config", site, "--duration", "1.5", "-q", "-v")
    lines = r.stderr.splitlines()
    assert lines and all(iso_utc.match(line.split(" ", 1)[0]) for line in lines), lines
    assert any(" DEBUG asyncio: Using selector" in line for line in lines)
    r, t0, t1 = run("-v", "run", "--config", site, "--duration", "1.5", "-q")
    assert " DEBUG " not in r.stderr and " WARNING pue_monitor.collectors.runner: device m1 down" in r.stderr
    # --log-level after the command wins over -v before it
    r, _, _ = run("-v", "run", "--config", site, "--duration", "1.5", "-q", "--log-level", "error")
    assert r.stderr == ""
    # --help states the timezone and the exit codes
    h = subprocess.run([*PUE, "--help"], capture_output=True, text=True, timeout=30)
    assert "timestamps are UTC, ISO 8601" in h.stdout
    assert "exit status:" in h.stdout and "2  usage or configuration error" in h.stdout


def test_profiles_points_lists_every_point_as_the_profile_defines_it():
    from pue_monitor.config.loader import load_profiles
    from pue_monitor.config.models import ModbusProfile

    r = subprocess.run([*PUE, "profiles", "--points", "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    profiles = load_profiles()
    assert set(shown) == set(profiles)
    for pid, prof in profiles.items():
        rows = {row["name"]: row for row in shown[pid]["points"]}
        assert set(rows) == set(prof.points), pid
        for name, pt in prof.points.items():
            row = rows[name]
            assert (row["scale"] if isinstance(row["scale"], float) else pt.scale) == pt.scale
            assert row["unit"] == pt.unit
            if isinstance(prof, ModbusProfile):
                assert (row["function"], row["address"], row["type"]) == (pt.function, pt.address, pt.type)
            else:
                assert row["oid"].removesuffix(".<index>") == pt.oid
                assert row["type"] == (f"Counter{pt.counter_bits}" if pt.counter_bits else "number")
    # the text table of one profile: a line per point with its register and unit
    r = subprocess.run([*PUE, "profiles", "--points", "eastron-sdm630"], capture_output=True, text=True, timeout=30)
    prof = profiles["eastron-sdm630"]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("eastron-sdm630") and len(lines) == 2 + len(prof.points)
    for name, pt in prof.points.items():
        assert any(line.split()[:3] == [name, pt.function, str(pt.address)] for line in lines), name
    bad = subprocess.run([*PUE, "profiles", "nope"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr == "pue profiles: no profile nope; `pue profiles` lists them\n"


def test_benchmarks_help():
    from pathlib import Path

    root = Path(__file__).parent.parent
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], capture_output=True, text=True, timeout=30, cwd=root
    )
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m benchmarks")
    for name in ("pipeline", "modbus", "snmp", "mqtt", "influx", "ingest"):
        assert name in r.stdout and (root / "benchmarks" / f"bench_{name}.py").exists()
    r = subprocess.run([sys.executable, "-m", "benchmarks", "nope"], capture_output=True, text=True, cwd=root)
    assert r.returncode == 2 and "no benchmark nope" in r.stderr
