"""SNMP collector against real agents on loopback: net-snmp snmpd (v3), snmpsim (v2c bulk
walks), the simulator's pysnmp agents (live values from the world), and nothing at all."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    Counter32,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    set_cmd,
)

from pue_monitor.clock import ManualClock, WallClock
from pue_monitor.collectors import snmp
from pue_monitor.collectors.runner import Runner, Schedule
from pue_monitor.collectors.snmp import SnmpReader
from pue_monitor.config.loader import LoadedSite, site_from_dict
from pue_monitor.config.models import Role, SnmpDevice
from pue_monitor.errors import ConfigError, DeviceTimeout, PermanentDeviceError
from pue_monitor.pipeline.energy import SeriesSpec, Status, interval_energy
from pue_monitor.pipeline.model import series_specs
from pue_monitor.pipeline.pue import rollup
from pue_monitor.readings import Quality
from pue_monitor.simulator.snmp_agent import SnmpAgents
from pue_monitor.simulator.world import SimulatedDataCentre

T0 = 1_752_105_600.0  # 2025-07-10 08:00 CST (a Thursday)
AUTH_KEY = "auth-Kx7!pass"
PRIV_KEY = "priv-Qz9#pass"
COUNTER_OID = "1.3.6.1.4.1.99999.1.1.0"

# filler meters so a test site passes the energy-model check (never polled)
FILLER = [
    {
        "id": "incomer",
        "protocol": "modbus",
        "host": "127.0.0.1",
        "profile": "eastron-sdm630",
        "meter": {"role": "facility_input", "power": "active_power"},
    },
    {
        "id": "it-meter",
        "protocol": "modbus",
        "host": "127.0.0.1",
        "port": 503,
        "profile": "eastron-sdm630",
        "meter": {"role": "it", "it_location": "pdu_output", "power": "active_power"},
    },
]


FixedClock = ManualClock  # the test moves it by hand


def make_site(*devices: dict[str, Any], profile_dir: Path | None = None) -> LoadedSite:
    data: dict[str, Any] = {"site": {"id": "t"}, "devices": [*devices, *FILLER]}
    if profile_dir is not None:
        data["profile_dirs"] = [str(profile_dir)]
    return site_from_dict(data, source="test.yaml", base_dir=profile_dir or Path("."))


def device_of(site: LoadedSite, device_id: str) -> SnmpDevice:
    dev = next(d for d in site.config.devices if d.id == device_id)
    assert isinstance(dev, SnmpDevice)
    return dev


def snmp_dev(port: int, **kw: Any) -> dict[str, Any]:
    return {
        "id": kw.pop("id", "agent"),
        "protocol": "snmp",
        "host": "127.0.0.1",
        "port": port,
        "interval": 10.0,
        "timeout": kw.pop("timeout", 1.0),
        **kw,
    }


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        pytest.fail(f"{name} is required for this test (Debian package {package})")
    return path


def _wait_ready(port: int, community: str, proc: subprocess.Popen[bytes], what: str) -> None:
    snmpget = _binary("snmpget", "snmp")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        rc = subprocess.run(
            [snmpget, "-v2c", "-c", community, "-t", "0.2", "-r", "0", f"127.0.0.1:{port}", "1.3.6.1.2.1.1.2.0"],
            capture_output=True,
            env={**os.environ, "MIBS": ""},
        ).returncode
        if rc == 0:
            return
    pytest.fail(f"{what} did not answer on port {port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- snmpd

SNMPD_OVERRIDES = {
    "1.3.6.1.2.1.1.2.0": ("object_id", "1.3.6.1.4.1.318.1.3.4.6"),  # masterSwitchrPDU2
    "1.3.6.1.4.1.318.1.1.26.4.3.1.5.1": ("integer", "412"),  # 4.12 kW
    "1.3.6.1.4.1.318.1.1.26.4.3.1.9.1": ("integer", "123456"),  # 12345.6 kWh
    "1.3.6.1.4.1.318.1.1.26.4.3.1.10.1": ("octet_str", '"01/15/2025 08:00:00"'),
    "1.3.6.1.4.1.318.1.1.26.6.3.1.5.1": ("integer", "187"),  # 18.7 A
    "1.3.6.1.4.1.318.1.1.26.6.3.1.6.1": ("integer", "221"),
    "1.3.6.1.4.1.318.1.1.26.6.3.1.7.1": ("integer", "412"),
}


#: user -> (net-snmp auth, priv) for the fast-path v3 tests (net-snmp 5.9 has no Reeder AES "C" variants)
FAST_V3_USERS = {
    "fast_md5_des": ("MD5", "DES"),
    "fast_sha256_aes192": ("SHA-256", "AES-192"),
    "fast_sha384_aes192": ("SHA-384", "AES-192"),
    "fast_sha512_aes256": ("SHA-512", "AES-256"),
}


@pytest.fixture(scope="module")
def snmpd() -> Iterator[int]:
    exe = _binary("snmpd", "snmpd")
    port = free_udp_port()
    with tempfile.TemporaryDirectory(prefix="pue-snmpd-") as tmp:
        d = Path(tmp)
        lines = [
            f"agentaddress udp:127.0.0.1:{port}",
            "rocommunity public 127.0.0.1",
            "rwcommunity private 127.0.0.1",
            f'createUser alice SHA "{AUTH_KEY}" AES "{PRIV_KEY}"',
            "rouser alice priv",
            # one user per further auth/priv pair the fast path (gufo-snmp) must agree with pysnmp on
            *(
                f'createUser {u} {a} "{AUTH_KEY}" {p} "{PRIV_KEY}"\nrouser {u} priv'
                for u, (a, p) in FAST_V3_USERS.items()
            ),
            f"override -rw {COUNTER_OID} counter 4294967000",
        ]
        lines += [f"override {oid} {t} {v}" for oid, (t, v) in SNMPD_OVERRIDES.items()]
        (d / "snmpd.conf").write_text("\n".join(lines) + "\n")
        (d / "persist").mkdir()
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(d / "persist"), "MIBS": ""}
        with (d / "snmpd.log").open("wb") as log:
            proc = subprocess.Popen(
                [exe, "-f", "-Lo", "-C", "-c", str(d / "snmpd.conf"), "-p", str(d / "snmpd.pid")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                _wait_ready(port, "public", proc, "snmpd")
                yield port
            finally:
                _stop(proc)


def v3_site(port: int, monkeypatch: pytest.MonkeyPatch, *, auth: str, priv: str, user: str = "alice") -> LoadedSite:
    monkeypatch.setenv("PUE_TEST_SNMP_AUTH", auth)
    monkeypatch.setenv("PUE_TEST_SNMP_PRIV", priv)
    return make_site(
        snmp_dev(
            port,
            profile="auto",
            version="3",
            v3={
                "user": user,
                "auth_protocol": "SHA",
                "auth_key": {"env": "PUE_TEST_SNMP_AUTH"},
                "priv_protocol": "AES",
                "priv_key": {"env": "PUE_TEST_SNMP_PRIV"},
            },
        )
    )


async def test_v3_authpriv_reads_apc_pdu_picked_by_sysobjectid(snmpd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    site = v3_site(snmpd, monkeypatch, auth=AUTH_KEY, priv=PRIV_KEY)
    clock = FixedClock(T0)
    reader = SnmpReader(device_of(site, "agent"), site, clock=clock)
    try:
        assert reader.profile is None
        got = {v.point: v for v in await reader.read()}
        assert reader.profile is not None and reader.profile.id == "apc-rpdu2"  # auto, by sysObjectID
        assert got["device_power.1"].value == pytest.approx(4.12)
        assert got["device_power.1"].unit == "kW"
        assert got["device_energy.1"].value == pytest.approx(12345.6)
        assert got["device_energy.1"].unit == "kWh"
        assert got["device_energy.1"].tags == (("pdu", "1"),)
        assert got["phase_current.1"].value == pytest.approx(18.7)
        assert got["phase_voltage.1"].value == 221.0
        assert got["phase_power.1"].tags == (("phase", "1"),)
        assert "device_energy_start.1" not in got  # read for reset detection, not emitted
        assert all(v.ts == T0 and v.quality is Quality.GOOD for v in got.values())
        assert set(got) == {"device_power.1", "device_energy.1", "phase_current.1", "phase_voltage.1", "phase_power.1"}
        # the second poll needs no sysObjectID GET and no discovery: 2 table walks
        before = reader.requests
        await reader.read()
        assert reader.requests - before == 2
        assert reader.resets == {}
    finally:
        await reader.close()
    assert snmp._ENGINES == {}  # the last reader released the shared engine


@pytest.mark.parametrize(
    "auth,priv,user,expected",
    [
        ("wrong-auth-Zz1", PRIV_KEY, "alice", "SNMPv3 authentication failed for user alice on 127.0.0.1:"),
        (AUTH_KEY, "wrong-priv-Yy2", "alice", "SNMPv3 privacy failed for user alice on 127.0.0.1:"),
        (AUTH_KEY, PRIV_KEY, "mallory", "SNMPv3 user mallory is unknown to the agent on 127.0.0.1:"),
    ],
    ids=["wrong-auth-key", "wrong-priv-key", "unknown-user"],
)
async def test_v3_credential_errors_are_permanent_and_clear(
    snmpd: int, monkeypatch: pytest.MonkeyPatch, auth: str, priv: str, user: str, expected: str
) -> None:
    site = v3_site(snmpd, monkeypatch, auth=auth, priv=priv, user=user)
    reader = SnmpReader(device_of(site, "agent"), site, clock=WallClock())
    try:
        started = time.monotonic()
        with pytest.raises(PermanentDeviceError) as info:
            await reader.read()
        took = time.monotonic() - started
    finally:
        await reader.close()
    msg = str(info.value)
    assert msg.startswith(expected), msg
    assert f":{snmpd}" in msg
    for secret in (auth, priv, AUTH_KEY, PRIV_KEY):
        assert secret not in msg
    # a wrong priv key is a dropped request: one timeout plus the authNoPriv probe's answer
    assert took < (1.5 if priv != PRIV_KEY else 0.5)


async def test_counter32_wrap_gives_the_right_energy(snmpd: int, tmp_path: Path) -> None:
    (tmp_path / "counter.yaml").write_text(
        "id: test-counter32\nprotocol: snmp\nmanufacturer: test\nmodel: Wh counter\nsource: test\n"
        f"scalars:\n  energy: {{oid: {COUNTER_OID}, unit: Wh, counter_bits: 32}}\n"
    )
    site = make_site(
        snmp_dev(
            snmpd, profile="test-counter32", meter={"role": "it", "it_location": "pdu_output", "energy": "energy"}
        ),
        profile_dir=tmp_path,
    )
    profile = site.snmp_profiles()["test-counter32"]
    assert profile.rollover_of("energy") == 2.0**32
    clock = FixedClock(T0)
    reader = SnmpReader(device_of(site, "agent"), site, clock=clock)
    engine = SnmpEngine()
    try:
        (first,) = await reader.read()
        assert first.value == 4294967000.0
        assert reader.snmp_types["energy"] == "Counter32"
        # the counter moves across 2**32 on the agent
        target = await UdpTransportTarget.create(("127.0.0.1", snmpd), timeout=1, retries=0)
        err, status, _, _ = await set_cmd(
            engine,
            CommunityData("private"),
            target,
            ContextData(),
            ObjectType(ObjectIdentity(COUNTER_OID), Counter32(200)),
            lookupMib=False,
        )
        assert not err and not status
        clock.t = T0 + 60.0
        (second,) = await reader.read()
        assert second.value == 200.0
    finally:
        engine.close_dispatcher()
        await reader.close()
    spec = SeriesSpec(
        meter="agent",
        role=Role.IT,
        it_location=device_of(site, "agent").meter.it_location,  # type: ignore[union-attr]
        kind="counter",
        factor=1e-3,  # Wh -> kWh
        rollover=profile.rollover_of("energy"),
        max_gap=150.0,
    )
    ie = interval_energy(
        [spec],
        np.array([0, 0]),
        np.array([first.ts, second.ts]),
        np.array([first.value, second.value]),
        start=T0,
        step=60.0,
        n=1,
    )
    assert ie.energy[0, 0] == pytest.approx((2**32 - 4294967000 + 200) / 1000.0)  # 0.496 kWh
    assert ie.status[0, 0] == Status.MEASURED  # a rollover, not a reset


# -------------------------------------------------------------------------- snmpsim


def _snmprec(values: dict[str, tuple[int | str, str]]) -> str:
    rows = sorted(values.items(), key=lambda kv: tuple(int(x) for x in kv[0].split(".")))
    return "".join(f"{oid}|{tag}|{value}\n" for oid, (tag, value) in rows)


UPS_REC = {
    "1.3.6.1.2.1.1.2.0": (6, "1.3.6.1.2.1.33"),
    "1.3.6.1.2.1.33.1.2.1.0": (2, "2"),
    "1.3.6.1.2.1.33.1.2.3.0": (2, "42"),
    "1.3.6.1.2.1.33.1.4.1.0": (2, "3"),
    **{f"1.3.6.1.2.1.33.1.3.3.1.5.{i}": (2, str(w)) for i, w in ((1, 21000), (2, 20500), (3, 19800))},
    **{f"1.3.6.1.2.1.33.1.4.4.1.4.{i}": (2, str(w)) for i, w in ((1, 20000), (2, 19600), (3, 18900))},
    **{f"1.3.6.1.2.1.33.1.4.4.1.5.{i}": (2, str(p)) for i, p in ((1, 40), (2, 39), (3, 38))},
}
RPDU_REC = {
    "1.3.6.1.2.1.1.2.0": (6, "1.3.6.1.4.1.318.1.3.4.6"),
    "1.3.6.1.4.1.318.1.1.26.4.3.1.5.1": (2, "412"),
    "1.3.6.1.4.1.318.1.1.26.4.3.1.5.2": (2, "388"),
    "1.3.6.1.4.1.318.1.1.26.4.3.1.9.1": (2, "123456"),
    "1.3.6.1.4.1.318.1.1.26.4.3.1.9.2": (2, "98765"),
    "1.3.6.1.4.1.318.1.1.26.4.3.1.10.1": (4, "01/15/2025 08:00:00"),
    "1.3.6.1.4.1.318.1.1.26.4.3.1.10.2": (4, "02/01/2025 12:30:00"),
    **{f"1.3.6.1.4.1.318.1.1.26.6.3.1.5.{i}": (2, str(a)) for i, a in ((1, 61), (2, 58), (3, 55))},
    **{f"1.3.6.1.4.1.318.1.1.26.6.3.1.6.{i}": (2, str(v)) for i, v in ((1, 229), (2, 231), (3, -1))},
    **{f"1.3.6.1.4.1.318.1.1.26.6.3.1.7.{i}": (2, str(p)) for i, p in ((1, 137), (2, 131), (3, 120))},
}
# entPhySensorTable rows: (type, scale, precision, value, status)
SENSOR_ROWS = {
    1001: (6, 9, 0, 1234, 1),
    1002: (8, 9, 1, 235, 1),
    1003: (6, 10, 2, 1575, 1),
    1004: (6, 9, 0, 99, 2),
    1005: (6, 9, -2, 1500, 1),  # precision -2: two accurate digits, NOT x100 (RFC 3433)
    1006: (6, 9, 0, 1000000000, 1),  # EntitySensorValue overflow error code
    1007: (5, 8, 1, -1000000000, 1),  # underflow error code
}
SENSOR_REC = {
    "1.3.6.1.2.1.1.2.0": (6, "1.3.6.1.4.1.9.1.1"),
    **{
        f"1.3.6.1.2.1.99.1.1.1.{col}.{row}": (2, str(vals[col - 1]))
        for row, vals in SENSOR_ROWS.items()
        for col in range(1, 6)
    },
}
UNKNOWN_REC = {"1.3.6.1.2.1.1.2.0": (6, "1.3.6.1.4.1.99999.7")}
# the older rPDU family (masterSwitchrPDU, 1.3.6.1.4.1.318.1.3.4.5): PDU power and the load table
RPDU1_REC = {
    "1.3.6.1.2.1.1.2.0": (6, "1.3.6.1.4.1.318.1.3.4.5"),
    "1.3.6.1.4.1.318.1.1.12.1.16.0": (2, "1840"),
    **{f"1.3.6.1.4.1.318.1.1.12.2.3.1.1.2.{i}": (66, str(a)) for i, a in ((1, 81), (2, 44), (3, 37))},
}
# an rPDU2 answering with the older family's sysObjectID (what the old profile's auto-match did)
MISMATCH_REC = {**RPDU_REC, "1.3.6.1.2.1.1.2.0": (6, "1.3.6.1.4.1.318.1.3.4.5")}
# the UPS after losing output line 3 (the wildcard sum must not silently drop it)
UPS_2LINES_REC = {k: v for k, v in UPS_REC.items() if not k.endswith(".4.4.1.4.3")}
# a table indexed by two components (PDU, outlet) and one three-component row
OUTLET_REC = {
    "1.3.6.1.2.1.1.2.0": (6, "1.3.6.1.4.1.99999.9"),
    **{
        f"1.3.6.1.4.1.99999.9.1.1.3.{i}": (66, str(w))
        for i, w in (("1.1", 120), ("1.2", 80), ("2.1", 230), ("2.1.5", 7))
    },
}
OUTLET_PROFILE = """
id: test-outlets
protocol: snmp
manufacturer: test
model: outlets by PDU and outlet
source: "tests (made-up enterprise 99999)"
sys_object_ids: ["1.3.6.1.4.1.99999.9"]
tables:
  outlet:
    index_tag: [pdu, outlet]
    columns:
      outlet_power: {oid: 1.3.6.1.4.1.99999.9.1.1.3, unit: W}
"""
AP8932_SYSTEM = Path(__file__).parent / "data" / "apc-ap8932-system.snmprec"
CHECKMK_WALKS = Path(__file__).parent / "data" / "apc-rpdu-checkmk-walks.snmprec"


def _walks(path: Path) -> dict[str, dict[str, tuple[int | str, str]]]:
    """Recorded walks, one per ``@community`` line, as {community: {oid: (tag, value)}}."""
    out: dict[str, dict[str, tuple[int | str, str]]] = {}
    current: dict[str, tuple[int | str, str]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("@"):
            current = out.setdefault(line[1:], {})
        elif line and not line.startswith("#"):
            oid, tag, value = line.split("|", 2)
            current[oid] = (tag, value)
    return out


def _recorded(path: Path) -> dict[str, tuple[int | str, str]]:
    """A recorded .snmprec (comment lines dropped) as {oid: (tag, value)}."""
    out: dict[str, tuple[int | str, str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            oid, tag, value = line.split("|", 2)
            out[oid] = (tag, value)
    return out


@pytest.fixture(scope="module")
def snmpsim() -> Iterator[int]:
    exe = _binary("snmpsimd", "snmpsim")
    port = free_udp_port()
    # snmpsimd refuses to run as root: it drops to nobody, who must read the data
    tmp = Path(tempfile.mkdtemp(prefix="pue-snmpsim-"))
    try:
        data, cache = tmp / "data", tmp / "cache"
        data.mkdir()
        cache.mkdir()
        # the recorded AP8932 system group with rPDU2 tables (our values) below it
        ap8932 = {
            **{k: v for k, v in RPDU_REC.items() if not k.startswith("1.3.6.1.2.1.1.")},
            **_recorded(AP8932_SYSTEM),
        }
        recs: dict[str, dict[str, tuple[int | str, str]]] = {
            "ups": dict(UPS_REC),
            "rpdu": dict(RPDU_REC),
            "sensors": dict(SENSOR_REC),
            "unknown": dict(UNKNOWN_REC),
            "rpdu1": dict(RPDU1_REC),
            "mismatch": dict(MISMATCH_REC),
            "ups-2lines": dict(UPS_2LINES_REC),
            "outlets": dict(OUTLET_REC),
            "ap8932": ap8932,
            **_walks(CHECKMK_WALKS),
        }
        for name, rec in recs.items():
            (data / f"{name}.snmprec").write_text(_snmprec(rec))
        for p in (tmp, data, *data.iterdir()):
            p.chmod(0o755)
        cache.chmod(0o777)
        with (tmp / "snmpsim.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    exe,
                    f"--data-dir={data}",
                    f"--cache-dir={cache}",
                    f"--agent-udpv4-endpoint=127.0.0.1:{port}",
                    "--process-user=nobody",
                    "--process-group=nogroup",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_ready(port, "ups", proc, "snmpsimd")
                yield port
            finally:
                _stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def test_snmpsim_ups_mib_walk_reads_back_served_values(snmpsim: int) -> None:
    site = make_site(snmp_dev(snmpsim, profile="ups-mib", community="ups", max_repetitions=2))
    reader = SnmpReader(device_of(site, "agent"), site, clock=FixedClock(T0))
    try:
        got = {v.point: v for v in await reader.read()}
    finally:
        await reader.close()
    assert {p: v.value for p, v in got.items()} == {
        "battery_status": 2.0,
        "minutes_remaining": 42.0,
        "output_source": 3.0,
        "input_power.1": 21000.0,
        "input_power.2": 20500.0,
        "input_power.3": 19800.0,
        "output_power.1": 20000.0,
        "output_power.2": 19600.0,
        "output_power.3": 18900.0,
        "output_load.1": 40.0,
        "output_load.2": 39.0,
        "output_load.3": 38.0,
    }
    assert got["output_power.2"].tags == (("line", "2"),) and got["output_power.2"].unit == "W"
    assert got["input_power.3"].tags == (("line", "3"),)
    # scalars the agent lacks are skipped and counted (one GET), never an error for the device
    assert reader.skipped["1.3.6.1.2.1.33.1.2.5.0"] == 1  # battery voltage
    # 1 GET + input table (2 pages of 2 rows) + output table (2 pages)
    assert reader.requests == 5


async def test_snmpsim_rpdu2_two_devices_and_selected_points(snmpsim: int) -> None:
    site = make_site(
        snmp_dev(snmpsim, id="all", profile="apc-rpdu2", community="rpdu", max_repetitions=2),
        snmp_dev(
            snmpsim,
            id="some",
            profile="apc-rpdu2",
            community="rpdu",
            points=["device_energy", "phase_power.2", "phase_power.3"],
        ),
    )
    a = SnmpReader(device_of(site, "all"), site, clock=FixedClock(T0))
    b = SnmpReader(device_of(site, "some"), site, clock=FixedClock(T0))
    try:
        got_a, got_b = await asyncio.gather(a.read(), b.read())
    finally:
        await a.close()
        await b.close()
    va = {v.point: (v.value, v.unit, v.tags) for v in got_a}
    assert va["device_power.1"] == (pytest.approx(4.12), "kW", (("pdu", "1"),))
    assert va["device_power.2"] == (pytest.approx(3.88), "kW", (("pdu", "2"),))
    assert va["device_energy.1"] == (pytest.approx(12345.6), "kWh", (("pdu", "1"),))
    assert va["device_energy.2"] == (pytest.approx(9876.5), "kWh", (("pdu", "2"),))
    assert va["phase_current.2"] == (pytest.approx(5.8), "A", (("phase", "2"),))
    assert va["phase_power.3"] == (pytest.approx(1.20), "kW", (("phase", "3"),))
    assert "phase_voltage.3" not in va  # -1: "not available" on this model
    assert va["phase_voltage.2"][0] == 231.0
    assert len(va) == 4 + 8
    assert a.skipped == {}  # -1 is expected, not a problem
    # device_energy walked (with its reset time); the two phase rows fetched with one GET
    assert {v.point: v.value for v in got_b} == pytest.approx(
        {"device_energy.1": 12345.6, "device_energy.2": 9876.5, "phase_power.2": 1.31, "phase_power.3": 1.20}
    )
    assert b.requests == 2


async def test_snmpsim_entity_sensor_rows_scaled_per_row(snmpsim: int) -> None:
    site = make_site(snmp_dev(snmpsim, profile="entity-sensor", community="sensors"))
    reader = SnmpReader(device_of(site, "agent"), site, clock=FixedClock(T0))
    try:
        got = {v.point: v for v in await reader.read()}
    finally:
        await reader.close()
    assert set(got) == {f"sensor_value.{i}" for i in SENSOR_ROWS}
    assert (got["sensor_value.1001"].value, got["sensor_value.1001"].unit) == (1234.0, "W")
    assert (got["sensor_value.1002"].value, got["sensor_value.1002"].unit) == (pytest.approx(23.5), "degC")
    assert (got["sensor_value.1003"].value, got["sensor_value.1003"].unit) == (pytest.approx(15750.0), "W")
    assert got["sensor_value.1003"].tags == (("sensor", "1003"),)
    assert got["sensor_value.1004"].quality is Quality.BAD  # entPhySensorOperStatus unavailable(2)
    assert got["sensor_value.1001"].quality is Quality.GOOD
    # RFC 3433: a negative precision counts accurate digits; it does not scale the value
    assert (got["sensor_value.1005"].value, got["sensor_value.1005"].unit) == (1500.0, "W")
    assert got["sensor_value.1005"].quality is Quality.GOOD
    # +-1000000000 are the over/underflow error codes of a fixed-point sensor: BAD, never 1 GW
    assert got["sensor_value.1006"].quality is Quality.BAD
    assert got["sensor_value.1007"].quality is Quality.BAD and got["sensor_value.1007"].unit == "A"


async def test_auto_profile_unknown_sysobjectid_is_a_clear_error(snmpsim: int) -> None:
    site = make_site(
        snmp_dev(snmpsim, profile="auto", community="unknown"),
        snmp_dev(snmpsim, id="u", profile="auto", community="ups"),
    )
    reader = SnmpReader(device_of(site, "agent"), site, clock=WallClock())
    ups = SnmpReader(device_of(site, "u"), site, clock=WallClock())
    try:
        with pytest.raises(
            PermanentDeviceError, match=r"no SNMP profile matches sysObjectID 1\.3\.6\.1\.4\.1\.99999\.7"
        ):
            await reader.read()
        await ups.read()
        assert ups.profile is not None and ups.profile.id == "ups-mib"
    finally:
        await reader.close()
        await ups.close()


# ------------------------------------------------------------------ simulator agents


def sim_site(agents: SnmpAgents, *, timeout: float = 1.0) -> LoadedSite:
    return make_site(*agents.devices_config(interval=10.0, timeout=timeout))


async def test_simulator_agents_match_the_world() -> None:
    t = T0 + 6.5 * 3600
    world = SimulatedDataCentre(start=T0, seed=31)
    clock = FixedClock(t)
    async with SnmpAgents(world, clock) as agents:
        site = sim_site(agents)
        readers = {d: SnmpReader(device_of(site, d), site, clock=clock) for d in agents.DEVICES}
        try:
            got = {d: {v.point: v.value for v in await r.read()} for d, r in readers.items()}
        finally:
            for r in readers.values():
                await r.close()
    ld = world.loads_at(t)
    for pdu in ("rack-pdu-1", "rack-pdu-2"):
        assert got[pdu]["device_power.1"] == pytest.approx(world.power_at(t)[pdu], abs=0.005)  # 0.01 kW steps
        assert got[pdu]["device_energy.1"] == pytest.approx(world.counter_at(pdu, t), abs=0.05)  # 0.1 kWh steps
    assert 30 < got["rack-pdu-1"]["device_power.1"] < 70  # 8 % of ~600 kW
    assert got["rack-pdu-1"]["device_power.1"] / got["rack-pdu-2"]["device_power.1"] == pytest.approx(8 / 7, rel=1e-3)
    ups = got["ups"]
    out_w = sum(ups[f"output_power.{i}"] for i in (1, 2, 3))
    in_w = sum(ups[f"input_power.{i}"] for i in (1, 2, 3))
    assert out_w / 1000 == pytest.approx(float(ld["it"]) + float(ld["pdu_loss"]), abs=0.002)  # 1 W per line
    assert (in_w - out_w) / 1000 == pytest.approx(float(ld["ups_loss"]), abs=0.004)
    assert ups["battery_status"] == 2.0 and ups["output_source"] == 3.0
    assert 30 <= ups["output_load.1"] <= 50  # ~40 % of the 1.5 MW UPS


async def test_apc_user_reset_is_counted_and_booked_as_a_reset() -> None:
    world = SimulatedDataCentre(start=T0, seed=32)
    clock = FixedClock(T0 + 3600.0)
    async with SnmpAgents(world, clock) as agents:
        site = sim_site(agents)
        dev = device_of(site, "rack-pdu-1")
        reader = SnmpReader(dev, site, clock=clock)
        try:
            first = {v.point: v for v in await reader.read()}["device_energy.1"]
            world.reset_counter("rack-pdu-1", T0 + 3600.0 + 120.0)  # a user resets it from the web UI
            clock.t = T0 + 3600.0 + 600.0
            second = {v.point: v for v in await reader.read()}["device_energy.1"]
        finally:
            await reader.close()
    assert first.value > 10_000
    assert reader.resets == {"device_energy.1": 1}
    since_reset = world.true_energy("rack-pdu-1", T0 + 3720.0, T0 + 4200.0)
    assert second.value == pytest.approx(since_reset, abs=0.05)
    assert 3 < second.value < 10  # ~48 kW for 8 minutes
    assert dev.meter is not None
    spec = SeriesSpec("rack-pdu-1", dev.meter.role, dev.meter.it_location, "counter", 1.0, None, 25.0 * 60)
    ie = interval_energy(
        [spec], np.array([0, 0]), np.array([first.ts, second.ts]), np.array([first.value, second.value]),
        start=first.ts, step=600.0, n=1,
    )  # fmt: skip
    # the pipeline books what the counter shows since the reset, flagged as estimated
    assert ie.energy[0, 0] == pytest.approx(second.value)
    assert ie.status[0, 0] == Status.ESTIMATED


async def test_dead_agent_times_out_without_blocking_another_reader() -> None:
    clock = WallClock()
    world = SimulatedDataCentre(start=clock.now() - 60.0, seed=33)
    async with SnmpAgents(world, clock) as agents:
        dead_port = free_udp_port()  # nothing listens there
        site = make_site(
            *agents.devices_config(interval=10.0, timeout=1.0),
            snmp_dev(dead_port, id="dead", profile="ups-mib", timeout=0.5),
        )
        dead = SnmpReader(device_of(site, "dead"), site, clock=clock)
        live = SnmpReader(device_of(site, "rack-pdu-1"), site, clock=clock)
        await live.read()  # warm up the shared engine

        async def poll_live() -> list[float]:
            took = []
            for _ in range(5):
                t = time.monotonic()
                values = await live.read()
                took.append(time.monotonic() - t)
                assert len(values) == 5
            return took

        async def poll_dead() -> float:
            t = time.monotonic()
            with pytest.raises(DeviceTimeout, match=r"dead \(127\.0\.0\.1:\d+\): no answer within 0\.5 s"):
                await dead.read()
            return time.monotonic() - t

        try:
            live_times, dead_time = await asyncio.gather(poll_live(), poll_dead())
        finally:
            await dead.close()
            await live.close()
    assert 0.45 <= dead_time < 0.7
    assert sum(live_times) < 0.45  # all five live polls finished while the dead one waited


# ------------------------------------------------- real devices, families, down detection


async def test_recorded_ap8932_is_auto_detected_as_rpdu2(snmpsim: int) -> None:
    """A real AP8932's recorded sysObjectID (masterSwitchrPDU2) selects apc-rpdu2, which reads it."""
    site = make_site(snmp_dev(snmpsim, profile="auto", community="ap8932"))
    reader = SnmpReader(device_of(site, "agent"), site, clock=FixedClock(T0))
    try:
        got = {v.point: v.value for v in await reader.read()}
    finally:
        await reader.close()
    assert reader.profile is not None and reader.profile.id == "apc-rpdu2"
    assert got["device_power.1"] == pytest.approx(4.12) and got["device_energy.1"] == pytest.approx(12345.6)
    assert got["phase_power.3"] == pytest.approx(1.20)


async def test_older_rpdu_family_has_its_own_profile(snmpsim: int) -> None:
    site = make_site(snmp_dev(snmpsim, profile="auto", community="rpdu1", max_repetitions=2))
    reader = SnmpReader(device_of(site, "agent"), site, clock=FixedClock(T0))
    try:
        got = {v.point: v for v in await reader.read()}
    finally:
        await reader.close()
    assert reader.profile is not None and reader.profile.id == "apc-rpdu"
    assert (got["device_power"].value, got["device_power"].unit) == (1840.0, "W")
    assert {p: v.value for p, v in got.items() if p.startswith("load_current.")} == pytest.approx(
        {"load_current.1": 8.1, "load_current.2": 4.4, "load_current.3": 3.7}
    )
    assert got["load_current.2"].tags == (("load", "2"),)


async def test_device_answering_none_of_its_points_is_down(snmpsim: int) -> None:
    """An rPDU2 behind the older family's sysObjectID: the profile's objects are all absent."""
    site = make_site(snmp_dev(snmpsim, id="pdu", profile="auto", community="mismatch"))
    reader = SnmpReader(device_of(site, "pdu"), site, clock=FixedClock(T0))
    got: list[Any] = []
    runner = Runner(site="t", clock=FixedClock(T0), emit=got.extend)
    runner.add(reader, Schedule(10.0, 1.0, 2), protocol="snmp")
    try:
        ok = await runner.poll_once(reader, Schedule(10.0, 1.0, 2), runner.stats["pdu"])
    finally:
        await reader.close()
    st = runner.stats["pdu"]
    assert ok is False and got == []
    assert st.up is False and st.errors["no-points"] == 1 and st.failed_polls == 1
    assert st.last_error is not None and "profile 'apc-rpdu'" in st.last_error
    assert "answered none of the 5 planned points" in st.last_error
    assert reader.requests == 3  # sysObjectID, the scalar GET, one walk: no retries (permanent)


async def test_not_available_answers_keep_a_device_up(snmpsim: int) -> None:
    """-1 ("not available", APC) is an answer: a device answering only that is not down."""
    site = make_site(snmp_dev(snmpsim, profile="apc-rpdu2", community="rpdu", points=["phase_voltage.3"]))
    reader = SnmpReader(device_of(site, "agent"), site, clock=FixedClock(T0))
    try:
        got = await reader.read()
    finally:
        await reader.close()
    assert got == [] and reader.skipped == {}


# ------------------------------------------- sums of points, wildcards, overrides, indexes


def ups_site(snmpsim: int, power: Any, community: str = "ups", **kw: Any) -> LoadedSite:
    return make_site(
        snmp_dev(
            snmpsim,
            id="ups",
            profile="ups-mib",
            community=community,
            meter={"role": "it", "it_location": "ups_output", "power": power},
            **kw,
        )
    )


async def test_three_phase_ups_power_as_a_list_of_lines(snmpsim: int) -> None:
    """A meter's power as three points: three series, summed per meter by the pipeline."""
    lines = ["output_power.1", "output_power.2", "output_power.3"]
    site = ups_site(snmpsim, lines)
    specs = series_specs(site)
    assert [k for k in specs if k[0] == "ups"] == [("ups", p) for p in lines]
    assert {(s.meter, s.kind, s.factor) for k, s in specs.items() if k[0] == "ups"} == {("ups", "power", 1e-3)}
    reader = SnmpReader(device_of(site, "ups"), site, clock=FixedClock(T0))
    try:
        first = {v.point: v for v in await reader.read()}
    finally:
        await reader.close()
    # the pipeline: polls at the device's interval for a minute at constant power -> one minute
    # of energy per line (a power-only gap longer than max_gap would be MISSING)
    ups_specs = [specs[("ups", p)] for p in lines]
    interval = device_of(site, "ups").interval
    polls = np.arange(T0, T0 + 60.0 + interval / 2, interval)
    sid = np.tile([0, 1, 2], polls.size)
    ts = np.repeat(polls, 3)
    value = np.array([first[p].value for p in lines] * polls.size)
    ie = interval_energy(ups_specs, sid, ts, value, start=T0, step=60.0, n=1)
    assert float(ie.energy[:, 0].sum()) == pytest.approx((20000 + 19600 + 18900) / 1000 / 60)  # kWh
    intervals = rollup(ie, ups_specs)
    assert intervals[0].e_it == pytest.approx(58.5 / 60)


async def test_wildcard_power_is_summed_per_poll_and_bad_when_rows_change(snmpsim: int) -> None:
    site = ups_site(snmpsim, "output_power.*")
    specs = series_specs(site)
    assert ("ups", "output_power.*") in specs and specs[("ups", "output_power.*")].factor == 1e-3
    dev = device_of(site, "ups")
    reader = SnmpReader(dev, site, clock=FixedClock(T0))
    lost_line = SnmpReader(dev.model_copy(update={"community": "ups-2lines"}), site, clock=FixedClock(T0))
    try:
        first = {v.point: v for v in await reader.read()}
        # the same agent after line 3 disappears: reuse the first reader's row set
        lost_line._wild_rows = dict(reader._wild_rows)
        second = {v.point: v for v in await lost_line.read()}
        again = {v.point: v for v in await reader.read()}
    finally:
        await reader.close()
        await lost_line.close()
    total = first["output_power.*"]
    assert (total.value, total.unit, total.quality) == (58500.0, "W", Quality.GOOD)
    assert total.ts == T0 and total.tags == ()
    assert second["output_power.*"].value == 39600.0 and second["output_power.*"].quality is Quality.BAD
    assert lost_line.wildcard_changes == {"output_power.*": 1}
    assert again["output_power.*"].quality is Quality.GOOD and reader.wildcard_changes == {}


async def test_wildcard_adopts_a_row_set_that_lasts(snmpsim: int) -> None:
    """A line gone for good (removed by the operator) makes the sum BAD for
    WILDCARD_ADOPT_POLLS - 1 polls, then the two-line set is summed, GOOD; a line back for one
    poll is a change again."""
    from pue_monitor.collectors.snmp import WILDCARD_ADOPT_POLLS

    site = ups_site(snmpsim, "output_power.*")
    dev = device_of(site, "ups")
    reader = SnmpReader(dev, site, clock=FixedClock(T0))
    two = SnmpReader(dev.model_copy(update={"community": "ups-2lines"}), site, clock=FixedClock(T0))
    try:
        await reader.read()
        two._wild_rows = dict(reader._wild_rows)  # the three-line set of the first poll
        sums = [{v.point: v for v in await two.read()}["output_power.*"] for _ in range(WILDCARD_ADOPT_POLLS + 1)]
        three = {v.point: v for v in await reader.read()}["output_power.*"]  # the first reader: its own set
    finally:
        await reader.close()
        await two.close()
    assert [s.value for s in sums] == [39600.0] * (WILDCARD_ADOPT_POLLS + 1)
    assert [s.quality for s in sums] == [Quality.BAD] * (WILDCARD_ADOPT_POLLS - 1) + [Quality.GOOD] * 2
    assert two._wild_rows["output_power.*"] == {"output_power.1", "output_power.2"}
    assert two.wildcard_changes == {"output_power.*": WILDCARD_ADOPT_POLLS}
    assert (three.value, three.quality) == (58500.0, Quality.GOOD)


def test_wildcards_and_lists_are_checked_at_load() -> None:
    with pytest.raises(ConfigError, match="a wildcard would sum counter rows"):
        make_site(
            snmp_dev(
                1161,
                id="pdu",
                profile="apc-rpdu2",
                meter={"role": "it", "it_location": "pdu_output", "energy": "device_energy.*"},
            )
        )
    with pytest.raises(ConfigError, match="is listed twice"):
        ups_site(1161, ["output_power.1", "output_power.1"])
    with pytest.raises(ConfigError, match="'battery_status' is not a table column"):
        ups_site(1161, "battery_status.*")
    with pytest.raises(ConfigError, match="a wildcard row is for SNMP table columns only"):
        make_site(
            {
                "id": "m",
                "protocol": "modbus",
                "host": "127.0.0.1",
                "port": 1502,
                "profile": "eastron-sdm630",
                "meter": {"role": "cooling", "power": "power_l1.*"},
            }
        )
    with pytest.raises(ConfigError, match=r"device 'ups' has no point 'output_powr\.2'"):
        ups_site(1161, ["output_power.1", "output_powr.2"])


async def test_per_device_override_of_an_snmp_column(snmpsim: int) -> None:
    """A PDU reporting current in hundredths of A (its MIB says tenths): the device's scale wins."""
    site = make_site(
        snmp_dev(snmpsim, profile="apc-rpdu2", community="rpdu", overrides={"phase_current": {"scale": 0.01}}),
        snmp_dev(snmpsim, id="plain", profile="apc-rpdu2", community="rpdu"),
    )
    a = SnmpReader(device_of(site, "agent"), site, clock=FixedClock(T0))
    b = SnmpReader(device_of(site, "plain"), site, clock=FixedClock(T0))
    try:
        got_a = {v.point: v.value for v in await a.read()}
        got_b = {v.point: v.value for v in await b.read()}
    finally:
        await a.close()
        await b.close()
    assert got_a["phase_current.1"] == pytest.approx(0.61) and got_b["phase_current.1"] == pytest.approx(6.1)
    assert got_a["phase_power.1"] == got_b["phase_power.1"] == pytest.approx(1.37)  # untouched
    with pytest.raises(ConfigError, match=r"profile 'apc-rpdu2' has no point \(or column\) 'phase_curent'"):
        make_site(snmp_dev(snmpsim, profile="apc-rpdu2", overrides={"phase_curent": {"scale": 0.01}}))


def test_unit_override_changes_the_series_factor() -> None:
    site = ups_site(1161, ["output_power.1"], overrides={"output_power": {"unit": "kW"}})
    assert site.unit_of(device_of(site, "ups"), "output_power.1") == "kW"
    assert series_specs(site)[("ups", "output_power.1")].factor == 1.0


async def test_multi_component_index_tags(snmpsim: int, tmp_path: Path) -> None:
    (tmp_path / "outlets.yaml").write_text(OUTLET_PROFILE)
    site = make_site(
        snmp_dev(snmpsim, profile="test-outlets", community="outlets"),
        snmp_dev(snmpsim, id="one", profile="test-outlets", community="outlets", points=["outlet_power.2.1"]),
        profile_dir=tmp_path,
    )
    a = SnmpReader(device_of(site, "agent"), site, clock=FixedClock(T0))
    b = SnmpReader(device_of(site, "one"), site, clock=FixedClock(T0))
    try:
        got = {v.point: v for v in await a.read()}
        one = await b.read()
    finally:
        await a.close()
        await b.close()
    assert {p: (v.value, v.tags) for p, v in got.items()} == {
        "outlet_power.1.1": (120.0, (("pdu", "1"), ("outlet", "1"))),
        "outlet_power.1.2": (80.0, (("pdu", "1"), ("outlet", "2"))),
        "outlet_power.2.1": (230.0, (("pdu", "2"), ("outlet", "1"))),
        "outlet_power.2.1.5": (7.0, (("pdu_outlet", "2.1.5"),)),  # 3 components for 2 names: joined
    }
    assert [(v.point, v.value, v.tags) for v in one] == [("outlet_power.2.1", 230.0, (("pdu", "2"), ("outlet", "1")))]


def test_readme_profiles_example_validates() -> None:
    """The README's device-profiles example is valid configuration and means what it says."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "profiles example" in b)
    site = make_site(*yaml.safe_load(block))
    specs = series_specs(site)
    lines = [("ups-b", f"output_power.{i}") for i in (1, 2, 3)]
    assert [k for k in specs if k[0] == "ups-b"] == lines
    assert all(specs[k].kind == "power" and specs[k].factor == 1e-3 for k in lines)
    assert [k for k in specs if k[0] == "ups-c"] == [("ups-c", "output_power.*")]
    assert {k: s.kind for k, s in specs.items() if k[0] == "chiller-1"} == {
        ("chiller-1", "import_energy"): "counter",
        ("chiller-1", "active_power"): "power",
    }
    pdu = device_of(site, "rack-pdu-7")
    assert site.unit_of(pdu, "device_power.1") == "kW" and pdu.overrides["phase_current"].scale == 0.01


async def test_recorded_first_generation_rpdus_read_as_checkmk_reads_them(snmpsim: int) -> None:
    """Two real rPDU walks (quoted by Checkmk): power in W, load rows in tenths of A."""
    site = make_site(
        snmp_dev(snmpsim, id="sf9pdu1", profile="apc-rpdu", community="sf9pdu1"),
        snmp_dev(snmpsim, id="foobar", profile="apc-rpdu", community="foobar", max_repetitions=2),
    )
    got = {}
    for dev_id in ("sf9pdu1", "foobar"):
        reader = SnmpReader(device_of(site, dev_id), site, clock=FixedClock(T0))
        try:
            got[dev_id] = {v.point: v for v in await reader.read()}
        finally:
            await reader.close()
        assert reader.skipped == {}
    one, three = got["sf9pdu1"], got["foobar"]
    assert (one["device_power"].value, one["device_power"].unit) == (0.0, "W")
    assert (one["load_current.1"].value, one["load_current.1"].unit) == (pytest.approx(16.0), "A")
    assert one["load_state.1"].value == 1.0 and one["load_current.1"].tags == (("load", "1"),)
    assert three["device_power"].value == 1587.0
    assert [three[f"load_current.{i}"].value for i in (1, 2, 3)] == [0.0, 0.0, 0.0]
    # row 1 is the phase, rows 2 and 3 the banks 1 and 2 (Checkmk: "1/2 => device phase + 2 banks")
    assert [(three[f"load_phase.{i}"].value, three[f"load_bank.{i}"].value) for i in (1, 2, 3)] == [
        (1.0, 0.0),
        (0.0, 1.0),
        (0.0, 2.0),
    ]


# --------------------------------------------------- fast path (gufo-snmp) against pysnmp

ABSENT_OID = "1.3.6.1.4.1.99999.5.5.0"
FAST_PROFILE = f"""id: test-fast
protocol: snmp
manufacturer: test
model: scalars of every kind the fast path converts
source: test
scalars:
  power: {{oid: 1.3.6.1.4.1.318.1.1.26.4.3.1.5.1, scale: 0.01, unit: kW}}
  energy: {{oid: 1.3.6.1.4.1.318.1.1.26.4.3.1.9.1, scale: 0.1, unit: kWh, reset_time: energy_start}}
  energy_start: {{oid: 1.3.6.1.4.1.318.1.1.26.4.3.1.10.1}}
  counter: {{oid: {COUNTER_OID}, unit: Wh, counter_bits: 32}}
  absent: {{oid: {ABSENT_OID}, unit: W}}
"""


def _seen(values: list[Any]) -> list[tuple[Any, ...]]:
    return [(v.point, v.value, v.unit, v.quality, v.tags, v.ts) for v in values]


async def _set_counter(port: int, value: int) -> None:
    engine = SnmpEngine()
    try:
        target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=1, retries=0)
        err, status, _, _ = await set_cmd(
            engine,
            CommunityData("private"),
            target,
            ContextData(),
            ObjectType(ObjectIdentity(COUNTER_OID), Counter32(value)),
            lookupMib=False,
        )
        assert not err and not status
    finally:
        engine.close_dispatcher()


async def test_fast_path_reads_what_pysnmp_read(snmpd: int, tmp_path: Path) -> None:
    """The first poll goes through pysnmp; later GETs through gufo-snmp give the same values,
    SNMP types, skips and reset marks, and follow the agent's changes."""
    (tmp_path / "fast.yaml").write_text(FAST_PROFILE)
    site = make_site(snmp_dev(snmpd, profile="test-fast"), profile_dir=tmp_path)
    clock = FixedClock(T0)
    reader = SnmpReader(device_of(site, "agent"), site, clock=clock)
    try:
        first = await reader.read()
        assert (reader.requests, reader.fast_requests) == (1, 0)
        types = dict(reader.snmp_types)
        assert types["counter"] == "Counter32" and types["power"] != "Counter32"
        assert reader.skipped == {ABSENT_OID: 1}
        second = await reader.read()
        assert (reader.requests, reader.fast_requests) == (2, 1)
        assert _seen(second) == _seen(first)
        assert {p: v for p, v in ((v.point, v.value) for v in second)} == {
            "power": pytest.approx(4.12),
            "energy": pytest.approx(12345.6),
            "counter": first[2].value,
        }
        assert reader.snmp_types == types  # Counter32 still, though gufo-snmp returns a plain int
        assert reader.skipped == {ABSENT_OID: 2}  # absent on both paths, skipped each poll
        assert reader.resets == {}  # the reset date read by gufo-snmp equals pysnmp's
        await _set_counter(snmpd, 777)
        clock.t = T0 + 60.0
        third = {v.point: v for v in await reader.read()}
        assert reader.fast_requests == 2
        assert third["counter"].value == 777.0 and third["counter"].ts == T0 + 60.0
    finally:
        await reader.close()
        await _set_counter(snmpd, 4294967000)


async def test_fast_path_is_off_while_capturing(snmpd: int, tmp_path: Path) -> None:
    """`pue read` (a capture) shows what pysnmp decoded: type names and absent kinds."""
    (tmp_path / "fast.yaml").write_text(FAST_PROFILE)
    site = make_site(snmp_dev(snmpd, profile="test-fast"), profile_dir=tmp_path)
    reader = SnmpReader(device_of(site, "agent"), site, clock=WallClock())
    try:
        await reader.read()
        reader.capture = {}
        await reader.read()
        assert reader.fast_requests == 0
        assert reader.capture["absent"].note == "NoSuchObject"
        assert reader.capture["counter"].raw.startswith("Counter32 ")
    finally:
        await reader.close()


@pytest.mark.parametrize("user", sorted(FAST_V3_USERS))
async def test_fast_path_v3_auth_priv_pairs_agree_with_pysnmp(
    snmpd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: str
) -> None:
    auth, priv = FAST_V3_USERS[user]
    monkeypatch.setenv("PUE_TEST_SNMP_AUTH", AUTH_KEY)
    monkeypatch.setenv("PUE_TEST_SNMP_PRIV", PRIV_KEY)
    (tmp_path / "fast.yaml").write_text(FAST_PROFILE)
    v3 = {
        "user": user,
        "auth_protocol": auth.replace("-", ""),
        "auth_key": {"env": "PUE_TEST_SNMP_AUTH"},
        "priv_protocol": priv.replace("-", ""),
        "priv_key": {"env": "PUE_TEST_SNMP_PRIV"},
    }
    site = make_site(snmp_dev(snmpd, profile="test-fast", version="3", v3=v3), profile_dir=tmp_path)
    reader = SnmpReader(device_of(site, "agent"), site, clock=FixedClock(T0))
    try:
        first = await reader.read()
        assert reader.fast_requests == 0
        second = await reader.read()
        assert reader.fast_requests == 1
        assert _seen(second) == _seen(first) and len(first) == 3
    finally:
        await reader.close()


def _own_snmpd(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    conf = tmp / "snmpd.conf"
    conf.write_text(
        f"agentaddress udp:127.0.0.1:{port}\nrocommunity public 127.0.0.1\n"
        f'createUser alice SHA "{AUTH_KEY}" AES "{PRIV_KEY}"\nrouser alice priv\n'
        + "".join(f"override {oid} {t} {v}\n" for oid, (t, v) in SNMPD_OVERRIDES.items())
    )
    (tmp / "persist").mkdir(exist_ok=True)
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(tmp / "persist"), "MIBS": ""}
    proc = subprocess.Popen(
        [_binary("snmpd", "snmpd"), "-f", "-Lo", "-C", "-c", str(conf), "-p", str(tmp / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    _wait_ready(port, "public", proc, "snmpd")
    return proc


async def test_fast_path_agent_gone_times_out_and_comes_back(tmp_path: Path) -> None:
    """A fast-path request without answer is the same DeviceTimeout; the agent back, reads go on."""
    (tmp_path / "fast.yaml").write_text(FAST_PROFILE)
    port = free_udp_port()
    site = make_site(snmp_dev(port, profile="test-fast", timeout=0.5), profile_dir=tmp_path)
    reader = SnmpReader(device_of(site, "agent"), site, clock=WallClock())
    proc = _own_snmpd(tmp_path, port)
    try:
        await reader.read()
        await reader.read()
        assert reader.fast_requests == 1
        _stop(proc)
        with pytest.raises(DeviceTimeout, match=r"agent \(127\.0\.0\.1:\d+\): no answer within 0\.5 s"):
            await reader.read()
        proc = _own_snmpd(tmp_path, port)
        got = {v.point: v.value for v in await reader.read()}
        assert got["power"] == pytest.approx(4.12)
        assert reader.fast_requests == 3  # the timed-out one and this one, on a new socket
    finally:
        _stop(proc)
        await reader.close()


async def test_fast_path_v3_follows_an_agent_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted v3 agent (same engine id, boots + 1) is read again, and again through the fast path."""
    (tmp_path / "fast.yaml").write_text(FAST_PROFILE)
    port = free_udp_port()
    monkeypatch.setenv("PUE_TEST_SNMP_AUTH", AUTH_KEY)
    monkeypatch.setenv("PUE_TEST_SNMP_PRIV", PRIV_KEY)
    v3 = {"user": "alice", "auth_key": {"env": "PUE_TEST_SNMP_AUTH"}, "priv_key": {"env": "PUE_TEST_SNMP_PRIV"}}
    site = make_site(snmp_dev(port, profile="test-fast", version="3", v3=v3, timeout=0.5), profile_dir=tmp_path)
    reader = SnmpReader(device_of(site, "agent"), site, clock=WallClock())
    proc = _own_snmpd(tmp_path, port)
    try:
        await reader.read()
        await reader.read()
        assert reader.fast_requests == 1
        _stop(proc)
        proc = _own_snmpd(tmp_path, port)
        # the agent's boots changed: gufo-snmp gets no answer it accepts (net-snmp reports
        # notInTimeWindow), so one poll is lost as a timeout; the next poll's new session
        # discovers the agent again (pysnmp alone, measured, still timed out 3 polls later)
        with pytest.raises(DeviceTimeout, match=r"no answer within 0\.5 s"):
            await reader.read()
        got = {v.point: v.value for v in await reader.read()}
        assert got["power"] == pytest.approx(4.12)
        before = reader.fast_requests
        await reader.read()
        assert reader.fast_requests == before + 1
    finally:
        _stop(proc)
        await reader.close()


async def test_pysnmp_requests_in_flight_are_limited(
    snmpd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First polls started together queue for pysnmp (a v3 site of hundreds would otherwise
    time out all together); every reader still gets its values, the waiting is not a timeout."""
    (tmp_path / "fast.yaml").write_text(FAST_PROFILE)
    monkeypatch.setattr(snmp, "PYSNMP_IN_FLIGHT", 2)
    monkeypatch.setattr(snmp, "_SLOTS", snmp.weakref.WeakKeyDictionary())
    in_flight = peak = 0
    request_now = SnmpReader._request_now

    async def counted(self: SnmpReader, *args: Any, **kw: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await request_now(self, *args, **kw)
        finally:
            in_flight -= 1

    monkeypatch.setattr(SnmpReader, "_request_now", counted)
    site = make_site(*(snmp_dev(snmpd, id=f"pdu-{k}", profile="test-fast") for k in range(6)), profile_dir=tmp_path)
    readers = [SnmpReader(device_of(site, f"pdu-{k}"), site, clock=FixedClock(T0)) for k in range(6)]
    try:
        got = await asyncio.gather(*(r.read() for r in readers))
    finally:
        for r in readers:
            await r.close()
    assert peak == 2
    assert all({v.point for v in values} == {"power", "energy", "counter"} for values in got)
