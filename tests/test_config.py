"""Site configuration: errors name the file, line, path and field; good files summarise."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pue_monitor.config.loader import load_profiles, load_site
from pue_monitor.config.models import ITLocation, Role
from pue_monitor.errors import ConfigError

EXAMPLE = Path(__file__).parents[1] / "pue_monitor" / "config" / "examples" / "site.yaml"

GOOD = """\
site: {id: t1, timezone: Asia/Shanghai}
devices:
  - id: inc
    protocol: modbus
    host: 127.0.0.1
    profile: schneider-iem3000
    meter: {role: facility_input, energy: import_energy, power: active_power}
  - id: pdu1
    protocol: modbus
    host: 127.0.0.1
    port: 5021
    profile: eastron-sdm630
    points: [active_power, import_energy]
    meter: {role: it, it_location: ups_output, energy: import_energy}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        load_site(write(tmp_path, text))
    return str(ei.value)


def test_good_site_loads(tmp_path):
    site = load_site(write(tmp_path, GOOD))
    assert site.config.thresholds.warning == 1.4
    assert site.config.thresholds.critical == 1.5
    pdu = site.config.devices[1]
    assert pdu.meter.role is Role.IT and pdu.meter.it_location is ITLocation.UPS_OUTPUT
    assert site.points_of(site.config.devices[0]) == list(site.profiles["schneider-iem3000"].points)


def test_missing_it_location_names_line_and_field(tmp_path):
    text = GOOD.replace("it_location: ups_output, ", "")
    msg = error_of(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'site.yaml'}:14: devices[1].meter:")
    assert "it_location" in msg


def test_unknown_field_is_rejected_not_ignored(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("port: 5021", "prot: 5021"))
    assert ":11: devices[1].prot: unknown field" in msg


def test_wrong_type_names_field(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("port: 5021", "port: eighty"))
    assert ":11: devices[1].port:" in msg and "integer" in msg


def test_timeout_must_be_below_interval(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("port: 5021", "port: 5021\n    interval: 5\n    timeout: 5"))
    assert "devices[1]" in msg and "timeout (5.0 s) must be shorter than interval (5.0 s)" in msg


def test_unknown_point_and_profile(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("[active_power, import_energy]", "[active_power, import_energy, bogus]"))
    assert ":13: devices[1].points[2]: profile 'eastron-sdm630' has no point 'bogus'" in msg
    msg = error_of(tmp_path, GOOD.replace("profile: eastron-sdm630", "profile: nope"))
    assert ":12: devices[1].profile: unknown modbus profile 'nope'" in msg


def test_energy_point_must_have_energy_unit(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("energy: import_energy, power", "energy: active_power, power"))
    assert "devices[0].meter.energy: point 'active_power' has unit 'kW', not an energy unit" in msg
    msg = error_of(tmp_path, GOOD.replace("energy: import_energy, power", "energy: nope, power"))
    assert "devices[0].meter.energy: device 'inc' has no point 'nope'" in msg


def test_energy_model_needs_facility_and_it(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("role: facility_input", "role: cooling"))
    assert "needs at least one meter with role 'facility_input'" in msg


def test_thresholds_order_and_duplicate_ids(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("devices:", "thresholds: {warning: 1.6, critical: 1.5}\ndevices:"))
    assert "thresholds: warning (1.6) must not exceed critical (1.5)" in msg
    msg = error_of(tmp_path, GOOD.replace("id: pdu1", "id: inc"))
    assert "device id 'inc' used twice" in msg


def test_shared_gateway_unit_ids_must_differ(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("    port: 5021\n", ""))
    assert "share 127.0.0.1:502 unit 1" in msg


def test_bad_yaml_names_line(tmp_path):
    msg = error_of(tmp_path, "site: {id: t1\ndevices: [\n")
    assert str(tmp_path / "site.yaml") in msg and "not valid YAML" in msg


def test_rollover_needs_counter(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("energy: import_energy}", "power: active_power, rollover: 100}"))
    assert "rollover applies to an energy counter" in msg


def test_profiles_ship_datasheet_addresses():
    profiles = load_profiles()
    sdm = profiles["eastron-sdm630"].points
    assert (sdm["active_power"].address, sdm["active_power"].function) == (0x0034, "input")
    assert sdm["import_energy"].address == 0x0048 and sdm["total_energy"].address == 0x0156
    iem = profiles["schneider-iem3000"].points
    assert (iem["active_power"].address, iem["active_power"].unit) == (3059, "kW")
    assert (iem["import_energy"].address, iem["import_energy"].type) == (3203, "i64")
    assert {"eastron-sdm630", "schneider-iem3000", "pue-sim-meter", "ups-mib", "apc-rpdu2"} <= set(profiles)


def test_overlapping_profile_points_rejected(tmp_path):
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "x.yaml").write_text(
        "id: x\nmanufacturer: m\nmodel: m\nsource: s\npoints:\n"
        "  a: {address: 0, type: f32}\n  b: {address: 1, type: u16}\n"
    )
    with pytest.raises(ConfigError, match="points 'a' and 'b' overlap at holding register 1"):
        load_profiles([d])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pue_monitor", *args], capture_output=True, text=True, timeout=60)


def test_check_config_cli_summary_and_exit_codes(tmp_path):
    r = run_cli("check-config", str(EXAMPLE), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["measurement_category"] == 2
    assert [m["device"] for m in summary["roles"]["it"]] == ["pdu-a1", "pdu-a2"]
    assert summary["roles"]["lighting"][0]["rollover"] == 1e9
    assert "power_distribution" in summary["unmetered_subsystems"]

    bad = write(tmp_path, GOOD.replace("port: 5021", "port: 99999"))
    r = run_cli("check-config", str(bad))
    assert r.returncode == 2
    assert f"{bad}:11: devices[1].port:" in r.stderr
    assert "Traceback" not in r.stderr


def test_config_schema_cli_lists_fields():
    r = run_cli("config-schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert {"site", "devices", "thresholds"} <= set(schema["properties"])


def test_influxdb_section_turns_store_off_unless_asked(tmp_path):
    site = load_site(write(tmp_path, GOOD + "influxdb: {url: 'http://127.0.0.1:8086', token: {env: T}}\n"))
    assert site.config.influxdb is not None and site.config.store_enabled is False
    both = load_site(write(tmp_path, GOOD + "influxdb: {url: 'http://x:8086'}\nstore: {enabled: true}\n"))
    assert both.config.store_enabled is True
    assert load_site(write(tmp_path, GOOD)).config.store_enabled is True
    msg = error_of(tmp_path, GOOD + "influxdb: {url: 'http://x:8086', token: 'plain-text-token'}\n")
    assert "influxdb.token" in msg  # a secret must come from env or a file, never the YAML


# ------------------------------------------------------------ edge cases (issue 7, scope 7)


def test_duplicate_keys_are_errors_naming_file_line_and_key(tmp_path):
    text = GOOD.replace("    port: 5021\n", "    port: 5021\n    host: 10.0.0.9\n")
    msg = error_of(tmp_path, text)
    assert msg == f"{tmp_path / 'site.yaml'}:12: duplicate key 'host' (first at line 10)"
    msg = error_of(tmp_path, GOOD + "site: {id: t2}\n")
    assert msg == f"{tmp_path / 'site.yaml'}:15: duplicate key 'site' (first at line 1)"


#: "billion laughs": each level lists the previous one 10 times; 10 levels are 10**10 strings
ALIAS_BOMB = (
    b"l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
    + b"".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n".encode() for i in range(1, 11))
    + b"".join(f"site{i}: *l10\n".encode() for i in range(10))
)
ALIAS_BOMB += b"".join(f"x{i}: *l0\n".encode() for i in range(1000))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"site: {id: t1}\n\x00\x01\x02\xff" * 3, ":2: binary data (NUL byte); expected a YAML text file"),
        ("site: {id: t1, name: Zürich}\n".encode("latin-1"), ":1: not UTF-8 text (byte 0xfc); save the file as UTF-8"),
        (b"site: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", ":1: nested more than 64 levels deep; not a site file"),
        (b"a:\n" + b"".join(b"  " * i + b"k:\n" for i in range(1, 2000)), "nested more than 64 levels deep"),
        (ALIAS_BOMB, ": more than 1000 YAML aliases (*name); not a site file"),
    ],
    ids=["binary", "latin-1", "deep-flow", "deep-block", "aliases"],
)
def test_hostile_files_exit_2_with_one_line(tmp_path, content, expected):
    path = tmp_path / "site.yaml"
    path.write_bytes(content)
    r = run_cli("check-config", str(path))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and expected in r.stderr and str(path) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(ConfigError) as ei:
        load_site(path)
    assert expected in str(ei.value) and "\n" not in str(ei.value)


def test_c_yaml_loader_is_used_when_present():
    import yaml

    from pue_monitor.config import loader

    assert yaml.__with_libyaml__  # PyYAML on this machine is built with libyaml
    assert loader._Loader is yaml.CSafeLoader


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("port: 5021", "port: 5021\n    interval: .inf"), "devices[1].interval: Input should be a finite number"),
        (("port: 5021", "port: 5021\n    timeout: .nan"), "devices[1].timeout: Input should be a finite number"),
        (("port: 5021", "port: 5021\n    interval: 0.001"), "devices[1].interval: Input should be greater"),
        (("port: 5021", "port: 5021\n    timeout: 1e3\n    interval: 2e3"), "[1].timeout: Input should be less"),
        (("devices:", "thresholds: {warning: .nan}\ndevices:"), "thresholds.warning: Input should be a finite number"),
        (("energy: import_energy}", "energy: import_energy, rollover: .inf}"), "rollover: Input should be a finite"),
    ],
)  # fmt: skip
def test_numbers_are_finite_and_bounded(tmp_path, change, expected):
    assert expected in error_of(tmp_path, GOOD.replace(*change))


def test_timeout_below_interval_for_every_polled_device_kind(tmp_path):
    snmp = GOOD + "  - {id: ups, protocol: snmp, host: 127.0.0.1, profile: ups-mib, interval: 10, timeout: 10}\n"
    msg = error_of(tmp_path, snmp)
    assert msg == f"{tmp_path / 'site.yaml'}:15: devices[2]: timeout (10.0 s) must be shorter than interval (10.0 s)"


SIX_MISTAKES = """\
site: {id: t1, timezone: Mars/Olympus}
devices:
  - id: inc
    protocol: modbus
    host: 127.0.0.1
    interval: .nan
    profile: schneider-iem3000
    meter: {role: facility_input, energy: import_energy, power: active_power}
  - id: pdu1
    protocol: modbus
    host: 127.0.0.1
    port: 5021
    profile: eastron-sdm630
    meter: {role: it, it_location: ups_output, energy: nope}
  - id: pdu2
    protocol: modbus
    host: 127.0.0.1
    port: 5022
    profile: eastron-sdm630
    meter: {role: it, it_location: ups_output, energy: import_energy}
    timeout: 2
    timeout: 3
influxdb:
  url: http://127.0.0.1:8086
  token: {env: PUE_TEST_UNSET_TOKEN}
  username: admin
  password: {file: secrets/influx-password}
  spool: {path: SPOOL_DIR/spool.sqlite}
"""


def test_check_config_reports_every_error_of_the_file_in_one_run(tmp_path, monkeypatch):
    not_a_dir = tmp_path / "not-a-dir"
    not_a_dir.write_text("a file where a directory should be\n")
    path = write(tmp_path, SIX_MISTAKES.replace("SPOOL_DIR", str(not_a_dir)))
    monkeypatch.delenv("PUE_TEST_UNSET_TOKEN", raising=False)
    r = run_cli("check-config", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"pue check-config: {path}: 7 errors:"
    assert lines[1:-1] == [
        f"  {path}:22: duplicate key 'timeout' (first at line 21)",
        f"  {path}:1: site.timezone: unknown timezone 'Mars/Olympus' (use an IANA name like Asia/Shanghai)",
        f"  {path}:6: devices[0].interval: Input should be a finite number",
        f"  {path}:14: devices[1].meter.energy: device 'pdu1' has no point 'nope'",
        f"  {path}:25: influxdb.token: environment variable PUE_TEST_UNSET_TOKEN (a secret) is not set",
        f"  {path}:27: influxdb.password: {tmp_path}/secrets/influx-password: cannot read secret file: "
        "No such file or directory",
        f"  {path}:28: influxdb.spool.path: {not_a_dir}/spool.sqlite: {not_a_dir} is not a directory",
    ]
    assert lines[-1] == "every field and its limits: `pue config-schema`"
    assert run_cli("config-schema").returncode == 0  # the hint names a command that exists


def test_check_config_resolves_secrets_without_printing_them(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "influx-password").write_text("pw-S3CRET-from-file\n")
    good = GOOD + (
        "influxdb: {url: 'http://127.0.0.1:8086', api: v1, username: admin,\n"
        "           password: {file: secrets/influx-password}, spool: {path: new/dir/spool.sqlite}}\n"
        "store: {enabled: true, path: data/store.sqlite}\n"
    )
    path = write(tmp_path, good)
    r = run_cli("check-config", str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert "pw-S3CRET" not in r.stdout + r.stderr
    assert not (tmp_path / "new").exists() and not (tmp_path / "data").exists()  # checked, not created
    (tmp_path / "secrets" / "influx-password").write_text("")
    r = run_cli("check-config", str(path))
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == f"pue check-config: {path}:16: influxdb.password: {tmp_path}/secrets/influx-password: secret file is empty"
    )


def test_store_directory_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    path = write(tmp_path, GOOD + f"store: {{path: '{blocker}/sub/store.sqlite'}}\n")
    r = run_cli("check-config", str(path))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"pue check-config: {path}:15: store.path: {blocker}/sub/store.sqlite: {blocker} is not a directory"
    )
    # `pue run` loads the same file without the directory check and meets the error at start
    assert load_site(path).config.store.path == f"{blocker}/sub/store.sqlite"


def test_state_file_directory_that_cannot_be_created(tmp_path):
    """An InfluxDB-only site keeps its restart state in store.state_path: checked like the store."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    path = write(
        tmp_path,
        GOOD
        + f"store: {{enabled: false, state_path: '{blocker}/s/state.json'}}\n"
        + "influxdb: {url: 'http://127.0.0.1:8086'}\n",
    )
    r = run_cli("check-config", str(path))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"pue check-config: {path}:15: store.state_path: {blocker}/s/state.json: {blocker} is not a directory"
    )


def test_influxdb_url_must_be_http_with_host(tmp_path):
    msg = error_of(tmp_path, GOOD + "influxdb: {url: 'http://admin:pw-S3CRET@db:port'}\n")
    assert ":15: influxdb.url: not a valid URL: Invalid URL: port can't be converted to integer" in msg
    assert "pw-S3CRET" not in msg
    msg = error_of(tmp_path, GOOD + "influxdb: {url: 'db.example:8086'}\n")
    assert ":15: influxdb.url: expected http://host:port or https://host:port" in msg
