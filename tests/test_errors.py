"""Runtime failures a user can cause or meet, as a user meets them (`python -m pue_monitor` in a
subprocess): one line on stderr naming the file, port or config field and what to do, the
documented exit code, no traceback unless -v."""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pue_monitor.sinks.sqlite import SCHEMA_VERSION, SqliteStore, StoreReader

PUE = [sys.executable, "-m", "pue_monitor"]
NOBODY = 65534


def pue(*args: str, prefix: tuple[str, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *PUE, *args], capture_output=True, text=True, timeout=timeout)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (and that there is no traceback)."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def site_file(tmp_path: Path, **sections: object) -> Path:
    """Two Modbus meters nobody answers (port 1): the service starts, nothing is polled."""
    meter = {"energy": "import_energy", "power": "active_power"}
    dev = {"protocol": "modbus", "host": "127.0.0.1", "port": 1, "profile": "eastron-sdm630",
           "points": ["active_power", "import_energy"], "interval": 5, "timeout": 1}  # fmt: skip
    cfg = {
        "site": {"id": "e1", "timezone": "UTC"},
        "prometheus": {"enabled": False},
        "devices": [
            {**dev, "id": "m1", "meter": {**meter, "role": "facility_input"}},
            {**dev, "id": "m2", "unit_id": 2, "meter": {**meter, "role": "it", "it_location": "pdu_output"}},
        ],
        **sections,
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def without_file_permissions() -> tuple[str, ...]:
    """A command prefix under which file permissions apply to us: root bypasses them, so as
    root drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the child's capability bounding set."""
    if os.geteuid() != 0:
        return ()
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def a_store(path: Path) -> Path:
    SqliteStore(path).close()
    return path


STORE_HINT = "set store.path in the site file (or --db) to a pue-monitor store or a new file"
SHOW_HINT = "give --db the file `pue run` writes (store.path in the site file)"


def test_store_path_that_is_a_directory(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    r = pue("run", "--config", str(site_file(tmp_path, store={"path": str(target)})), "-q")
    assert r.returncode == 1
    assert one_line(r) == f"pue run: store {target} is a directory, not a file; {STORE_HINT}"
    r = pue("show", "--db", str(target))
    assert r.returncode == 1
    assert one_line(r) == f"pue show: store {target} is a directory, not a file; {SHOW_HINT}"


def test_store_file_without_permission(tmp_path):
    db = a_store(tmp_path / "s.sqlite")
    os.chown(db, NOBODY, NOBODY)
    db.chmod(0o600)
    site = site_file(tmp_path, store={"path": str(db)})
    r = pue("run", "--config", str(site), "-q", prefix=without_file_permissions())
    assert r.returncode == 1
    assert one_line(r) == (
        f"pue run: store {db}: permission denied (user {os.geteuid()}); give this user read and write access "
        f"to the file and its directory, or {STORE_HINT}"
    )
    r = pue("show", "--db", str(db), prefix=without_file_permissions())
    assert r.returncode == 1
    assert one_line(r).startswith(f"pue show: store {db}: permission denied (user {os.geteuid()}); give this user read")


def test_store_directory_not_writable(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, NOBODY, NOBODY)
    data.chmod(0o755)
    site = site_file(tmp_path, store={"path": str(data / "s.sqlite")})
    r = pue("run", "--config", str(site), "-q", prefix=without_file_permissions())
    assert r.returncode == 1
    assert one_line(r) == (
        f"pue run: store.path (store) {data}/s.sqlite: cannot create the lock file {data}/s.sqlite.lock: "
        f"Permission denied; make {data} writable for this user, or set store.path to a writable place"
    )
    # a directory to create under one we may not write: named with the field, nothing created
    site = site_file(tmp_path, store={"path": str(data / "sub" / "s.sqlite")})
    r = pue("run", "--config", str(site), "-q", prefix=without_file_permissions())
    assert r.returncode == 1
    assert one_line(r) == (
        f"pue run: store.path (store) {data}/sub/s.sqlite: cannot create its directory {data}/sub: "
        "Permission denied; create it, or set store.path to a writable place"
    )
    assert list(data.iterdir()) == []
    # the lock file exists already (made by an admin, writable), the folder is not writable: SQLite
    # could never create the store, so one line naming the folder (not retries forever)
    lock = data / "s.sqlite.lock"
    lock.touch()
    lock.chmod(0o666)
    site = site_file(tmp_path, store={"path": str(data / "s.sqlite")})
    r = pue("run", "--config", str(site), "-q", "--duration", "30", prefix=without_file_permissions())
    assert r.returncode == 1
    assert one_line(r) == (
        f"pue run: store {data}/s.sqlite: cannot create it in {data}: permission denied (user {os.getuid()}); "
        f"make {data} writable for this user, or {STORE_HINT}"
    )
    assert [p.name for p in data.iterdir()] == ["s.sqlite.lock"]


def _other_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    return path


def _newer_store(path: Path) -> Path:
    a_store(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    return path


def test_show_on_files_that_are_not_stores(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    other = _other_database(tmp_path / "billing.db")
    newer = _newer_store(tmp_path / "newer.sqlite")
    cases = {
        text: f"{text} is not a pue-monitor store (file is not a database); {SHOW_HINT}",
        empty: f"{empty} is empty, not a pue-monitor store; {SHOW_HINT}",
        other: f"{other} is an SQLite database but not a pue-monitor store (tables: invoices); {SHOW_HINT}",
        newer: f"store {newer} has schema version {SCHEMA_VERSION + 1}, newer than this pue-monitor's "
        f"{SCHEMA_VERSION}; upgrade pue-monitor (pip install -U pue-monitor), or {SHOW_HINT}",
    }
    for path, message in cases.items():
        r = pue("show", "--db", str(path), "--json")
        assert (r.returncode, r.stdout) == (1, ""), path
        assert one_line(r) == f"pue show: {message}"
    # a store of this version, with no interval yet, is shown (an empty table, exit 0)
    ok = pue("show", "--db", str(a_store(tmp_path / "ok.sqlite")), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"intervals": [], "period": None}


def test_run_never_writes_into_another_programs_database_or_a_newer_store(tmp_path):
    other = _other_database(tmp_path / "billing.db")
    newer = _newer_store(tmp_path / "newer.sqlite")
    for path, message in {
        other: f"{other} is an SQLite database but not a pue-monitor store (tables: invoices); {STORE_HINT}",
        newer: f"store {newer} has schema version {SCHEMA_VERSION + 1}, newer than this pue-monitor's "
        f"{SCHEMA_VERSION}; upgrade pue-monitor (pip install -U pue-monitor), or {STORE_HINT}",
    }.items():
        before = path.read_bytes()
        r = pue("run", "--config", str(site_file(tmp_path, store={"path": str(path)})), "-q")
        assert r.returncode == 1
        assert one_line(r) == f"pue run: {message}"
        assert path.read_bytes() == before  # not a byte written
    conn = sqlite3.connect(newer)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION + 1),)
    conn.close()


def test_prometheus_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site = site_file(tmp_path, prometheus={"enabled": True, "host": "127.0.0.1", "port": port})
        hint = (
            "stop what uses the port, or set prometheus.port (and prometheus.host) in the site file "
            "or give --prometheus-port (0 picks a free port)"
        )
        r = pue("run", "--config", str(site), "-q", "--db", str(tmp_path / "a.sqlite"))
        assert r.returncode == 1
        assert (
            one_line(r)
            == f"pue run: Prometheus endpoint 127.0.0.1:{port}: cannot listen: Address already in use; {hint}"
        )
        # the same from the command line
        site = site_file(tmp_path, prometheus={"enabled": True})
        r = pue("run", "--config", str(site), "-q", "--prometheus-port", str(port), "--db", str(tmp_path / "b.sqlite"))
        assert r.returncode == 1
        assert f"Prometheus endpoint 127.0.0.1:{port}: cannot listen" in one_line(r)
    # the store lock is released on the way out: the same store runs at once with a free port
    r = pue("run", "--config", str(site), "-q", "--prometheus-port", "0", "--db", str(tmp_path / "b.sqlite"),
            "--duration", "0.5")  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_verbose_adds_the_traceback_of_a_user_error_and_keeps_the_line(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    site = str(site_file(tmp_path, store={"path": str(target)}))
    for argv in (["run", "--config", site, "-q", "-v"], ["-v", "run", "--config", site, "-q"]):
        r = pue(*argv)
        assert r.returncode == 1
        assert "Traceback (most recent call last)" in r.stderr and "StoreUnusable" in r.stderr
        assert r.stderr.splitlines()[-1] == f"pue run: store {target} is a directory, not a file; {STORE_HINT}"


def test_closed_pipe_exits_quietly(tmp_path):
    """`pue config-schema | head -1`: the reader goes away; no traceback, exit 1 (the Python
    docs' SIGPIPE recipe), whatever the command."""
    db = a_store(tmp_path / "s.sqlite")
    for argv in (["config-schema"], ["profiles", "--points"], ["show", "--db", str(db), "--json"]):
        proc = subprocess.Popen([*PUE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the command writes a byte
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 1, argv
        assert err == "", argv
    # through a real shell pipe, as the issue found it: head prints the first line, nothing else
    r = subprocess.run(
        f"{sys.executable} -m pue_monitor config-schema | head -c 1",
        shell=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (r.stdout, r.stderr) == ("{", "")


def _free_port_range(count: int) -> int:
    for _ in range(50):
        first = random.randrange(20000, 60000 - count)
        try:
            for port in range(first, first + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError("no free range of loopback ports")


def test_missing_mqtt_broker_is_named_and_the_run_goes_on_with_the_other_devices(tmp_path):
    """`pue simulate --ports-from N`: stable ports and a ready line; `pue run` with the broker
    pointed at a closed port: one warning naming host:port, the MQTT devices and their topics
    and the config fields; the Modbus and SNMP devices are polled; `--json` ends with a summary
    whose period PUE is the stored one."""
    from pue_monitor.simulator.site import SimulatedSite

    count = SimulatedSite.port_count()
    first = _free_port_range(count)
    cfg = tmp_path / "site.yaml"
    sim = subprocess.Popen(
        [*PUE, "simulate", "--ports-from", str(first), "--write-config", str(cfg), "--interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        assert sim.stdout.readline().startswith(f"site configuration written to {cfg}")
        ready = json.loads(sim.stdout.readline())
        assert ready["ready"] is True and ready["config"] == str(cfg)
        ports = sorted({d["port"] for d in ready["devices"].values()} | {ready["mqtt_broker"]["port"]})
        assert ports == list(range(first, first + count))  # consecutive from N, every one used
        site = yaml.safe_load(cfg.read_text())
        assert {d["id"]: d["port"] for d in site["devices"] if "port" in d} == {
            k: v["port"] for k, v in ready["devices"].items()
        }
        with socket.socket() as s:  # a port where no broker listens
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        site["mqtt"]["port"] = closed
        cfg.write_text(yaml.safe_dump(site))
        mqtt_devices = [d for d in site["devices"] if d["protocol"] in ("mqtt", "sparkplug")]
        polled = sorted(d["id"] for d in site["devices"] if d["protocol"] in ("modbus", "snmp"))
        # cross a minute boundary (and close it: the final partial minute), so the summary has a period
        duration = 60 - time.time() % 60 + 6
        db = tmp_path / "run.sqlite"
        r = pue("run", "--config", str(cfg), "--duration", f"{duration:.1f}", "--json", "--db", str(db),
                "--no-prometheus", timeout=120)  # fmt: skip
    finally:
        sim.terminate()
        sim.communicate(timeout=20)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    broker = [line for line in r.stderr.splitlines() if f"mqtt broker 127.0.0.1:{closed} down" in line]
    assert len(broker) == 1, r.stderr  # once per outage
    assert "mqtt.host/mqtt.port" in broker[0]
    for d in mqtt_devices:
        topic = d["subscriptions"][0]["topic"] if d["protocol"] == "mqtt" else f"spBv1.0/{d['group']}/+/"
        assert f"{d['id']} (" in broker[0] and topic in broker[0], (d, broker[0])
    summary = json.loads(r.stdout.splitlines()[-1])["summary"]
    assert summary["devices"] == len(site["devices"])
    assert summary["devices_up"] == polled
    # never heard: pending, then down once stale (3 intervals without a message)
    assert sorted(summary["devices_pending"] + summary["devices_down"]) == sorted(d["id"] for d in mqtt_devices)
    assert summary["store"] == str(db) and summary["influxdb"] is None
    reader = StoreReader(db)
    try:
        rows = [x for x in reader.intervals("1m") if x["pue"] is not None]
        stored = reader.period_pue()
    finally:
        reader.close()
    assert stored is not None and summary["pue_period"] is not None
    assert summary["pue_period"] == stored.pue
    assert summary["e_facility_kwh"] == stored.e_facility_kwh and summary["e_it_kwh"] == stored.e_it_kwh
    assert summary["pue_period"] == summary["e_facility_kwh"] / summary["e_it_kwh"]
    assert summary["category"] == min(x["category"] for x in rows)


def test_unreachable_influxdb_is_spooled_and_named_without_its_password(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    spool = tmp_path / "spool.sqlite"
    url = f"http://admin:pw-S3CRET@127.0.0.1:{closed}"
    site = site_file(tmp_path, influxdb={"url": url, "api": "v1", "spool": {"path": str(spool)}})
    r = pue("run", "--config", str(site), "--duration", "2", "-q", "--log-format", "json")
    assert r.returncode == 0, r.stderr
    assert "pw-S3CRET" not in r.stderr
    records = [json.loads(line) for line in r.stderr.splitlines()]  # every line one JSON object
    lines = [x["message"] for x in records if "unavailable" in x["message"]]
    assert len(lines) == 1, records
    assert lines[0].startswith(f"InfluxDB http://127.0.0.1:{closed} unavailable, spooling to {spool}: ")  # no userinfo
    assert lines[0].endswith("(retrying; check influxdb.url in the site file)")
    status = pue("spool", "status", "--config", str(site), "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["queued_points"] > 0


def test_readme_error_table_quotes_this_versions_newer_store_line():
    """The README's table of one-line errors quotes the newer-store line with this version's numbers."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"has schema version {SCHEMA_VERSION + 1}, newer than this pue-monitor's {SCHEMA_VERSION};" in readme
