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
