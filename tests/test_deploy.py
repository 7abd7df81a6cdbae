"""Deployment: the shipped systemd unit passes `systemd-analyze verify` (and its offline
security review), and `pue run` creates its data directory on first run or says in one line
which config field names a path it cannot create."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pue_monitor.systemd_unit import DEFAULT_CONFIG, DEFAULT_PUE, template

PUE = [sys.executable, "-m", "pue_monitor"]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"  # scripts/test installs `systemd`


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60)


def rendered_unit(tmp_path: Path) -> Path:
    """The unit as `pue systemd-unit` prints it for this venv (verify needs ExecStart to exist)."""
    site = tmp_path / "etc" / "site.yaml"
    out = subprocess.run(
        [*PUE, "systemd-unit", "--config", str(site), "--pue", str(Path(sys.executable).with_name("pue"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    unit = tmp_path / "pue-monitor.service"
    unit.write_text(out)
    return unit


def settings(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def test_systemd_unit_verifies_and_is_hardened(tmp_path):
    unit = rendered_unit(tmp_path)
    s = settings(unit)
    pue = Path(sys.executable).with_name("pue")
    assert pue.is_file()
    assert s["ExecStart"] == [f"{pue} run --config {tmp_path / 'etc' / 'site.yaml'} --quiet"]
    # only ExecStart differs from the shipped file
    ours, shipped = unit.read_text().splitlines(), template().splitlines()
    assert [i for i, (a, b) in enumerate(zip(ours, shipped, strict=True)) if a != b] == [
        next(i for i, line in enumerate(shipped) if line.startswith("ExecStart="))
    ]
    assert f"ExecStart={DEFAULT_PUE} run --config {DEFAULT_CONFIG} --quiet" in shipped
    assert s["StateDirectory"] == ["pue-monitor"] and s["DynamicUser"] == ["yes"]
    assert s["WorkingDirectory"] == ["/var/lib/pue-monitor"]
    assert (s["Restart"], s["KillSignal"], s["TimeoutStopSec"]) == (["on-failure"], ["SIGTERM"], ["30s"])
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert s["CapabilityBoundingSet"] == [""]

    verify = analyze("verify", str(unit))
    assert (verify.returncode, verify.stderr, verify.stdout) == (0, "", "")
    # systemd's own offline security review: exposure at most 2.0 of 10 ("OK")
    security = analyze("security", "--offline=true", "--threshold=20", str(unit))
    assert security.returncode == 0, security.stdout[-2000:]
    assert "Overall exposure level for pue-monitor.service: 1." in security.stdout


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt option or a missing executable is reported."""
    unit = rendered_unit(tmp_path)
    text = unit.read_text()
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    assert "Unknown key 'ProtectSytem' in section [Service]" in analyze("verify", str(unit)).stderr
    unit.write_text(text.replace(str(Path(sys.executable).with_name("pue")), str(tmp_path / "no-such-pue")))
    bad = analyze("verify", str(unit))
    assert bad.returncode != 0 and "no-such-pue" in bad.stderr


def test_systemd_unit_refuses_a_relative_pue_path():
    r = subprocess.run([*PUE, "systemd-unit", "--pue", "bin/pue"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "pue systemd-unit: the pue executable must be an absolute path for systemd: bin/pue\n"


# --------------------------------------------------------------------- data directory


def site_file(tmp_path: Path, **sections: object) -> Path:
    meter = {"energy": "import_energy", "power": "active_power"}
    dev = {"protocol": "modbus", "host": "127.0.0.1", "port": 1, "profile": "eastron-sdm630",
           "points": ["active_power", "import_energy"], "interval": 5, "timeout": 1}  # fmt: skip
    cfg = {
        "site": {"id": "t1", "timezone": "UTC"},
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


def test_run_creates_the_data_directory_on_first_run(tmp_path):
    data = tmp_path / "var" / "lib" / "pue-monitor"
    site = site_file(tmp_path, store={"path": str(data / "t1.sqlite")})
    proc = subprocess.Popen([*PUE, "run", "--config", str(site), "-q"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (data / "t1.sqlite").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert (data / "t1.sqlite").is_file()
    created = [line for line in err.splitlines() if "created directory" in line]
    assert len(created) == 1 and created[0].endswith(
        f"WARNING pue_monitor.sinks.lock: created directory {data} for store.path {data / 't1.sqlite'} (first run)"
    )
    # the second run finds it: no line
    proc = subprocess.Popen([*PUE, "run", "--config", str(site), "-q"], stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "created directory" not in err


@pytest.mark.parametrize("field", ["store.path", "influxdb.spool.path"])
def test_a_data_directory_that_cannot_be_created_is_one_line_naming_the_field(tmp_path, field):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be\n")
    target = blocker / "pue-monitor" / "data.sqlite"
    if field == "store.path":
        site = site_file(tmp_path, store={"path": str(target)})
        what = "store"
    else:  # an InfluxDB-only site: the spool is the first file it writes
        spool = {"path": str(target)}
        site = site_file(tmp_path, store={"enabled": False}, influxdb={"url": "http://127.0.0.1:1", "spool": spool})
        what = "InfluxDB spool"
    r = subprocess.run([*PUE, "run", "--config", str(site), "-q"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr == (
        f"pue run: {field} ({what}) {target}: cannot create its directory {target.parent}: Not a directory; "
        f"create it, or set {field} to a writable place\n"
    )
    assert not blocker.with_name("pue-monitor").exists()
