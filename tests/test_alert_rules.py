"""`pue alerts rules`: the Prometheus rule file over our metrics. promtool (from Debian's
prometheus package) checks it and runs the unit tests committed in tests/data/rules_test.yml
against the committed rule file of the simulator site, which must be what the command writes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import pue_monitor.config as config_pkg
from pue_monitor.alerts.rules import PUE_15M, rule_file
from pue_monitor.cli import main
from tests.servers import _binary

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(config_pkg.__file__).parent / "examples" / "site.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_binary("promtool"), *args], capture_output=True, text=True, timeout=60)


def rules_of(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    assert len(doc["groups"]) == 1
    return doc["groups"][0]["rules"]  # type: ignore[no-any-return]


def test_promtool_unit_tests_pass_on_the_committed_rules() -> None:
    r = promtool("test", "rules", str(DATA / "rules_test.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_committed_simulator_rules_are_what_the_command_writes(tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    assert main(["alerts", "rules", "--simulator", "-o", str(out)]) == 0
    assert out.read_text() == (DATA / "rules_simulator.yml").read_text(), (
        "regenerate: pue alerts rules --simulator -o tests/data/rules_simulator.yml"
    )


def test_site_thresholds_appear_in_the_rules_and_promtool_accepts_them(tmp_path: Path) -> None:
    site = yaml.safe_load(EXAMPLE.read_text())
    site["site"]["id"] = "hohhot-dc2"
    site["thresholds"] = {"warning": 1.5, "critical": 1.6}
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(site))
    out = tmp_path / "rules.yml"
    assert main(["alerts", "rules", "--config", str(cfg), "-o", str(out), "--for", "15m", "--job", "pue-dc2"]) == 0
    r = promtool("check", "rules", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 10 rules found" in r.stdout
    rules = rules_of(out)
    pue = {x["labels"]["severity"]: x for x in rules if x.get("alert") == "PueHigh"}
    assert pue["warning"]["expr"] == f'{PUE_15M}{{site="hohhot-dc2"}} > 1.5'
    assert pue["critical"]["expr"] == f'{PUE_15M}{{site="hohhot-dc2"}} > 1.6'
    assert pue["critical"]["for"] == "15m" and pue["critical"]["labels"] == {
        "site": "hohhot-dc2",
        "severity": "critical",
    }
    assert "1.4" not in out.read_text().split("\n", 1)[1]  # the default limit appears nowhere
    record = next(x for x in rules if x.get("record") == PUE_15M)
    assert 'role="facility_input",site="hohhot-dc2"' in record["expr"] and "[15m]" in record["expr"]
    monitor = next(x for x in rules if x.get("alert") == "PueMonitorDown")
    assert monitor["expr"] == 'up{job="pue-dc2"} == 0'
    assert {x.get("alert") for x in rules} >= {"PueDeviceDown", "PueSpoolEvicting", "PueStoreDown", "PueInfluxDown"}
    assert all(x["labels"]["site"] == "hohhot-dc2" for x in rules if "alert" in x)


def test_without_a_site_the_rules_cover_every_site(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["alerts", "rules"]) == 0
    text = capsys.readouterr().out
    assert "site=" not in text and "> 1.5" in text and "> 1.4" in text
    out = tmp_path / "all.yml"
    out.write_text(text)
    r = promtool("check", "rules", str(out))
    assert r.returncode == 0, r.stdout + r.stderr


def test_rule_file_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="duration"):
        rule_file(site=None, warning=1.4, critical=1.5, pue_for="ten minutes")
    with pytest.raises(ValueError, match="warning <= critical"):
        rule_file(site=None, warning=1.6, critical=1.5)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: x}\nthresholds: {warning: 1.6, critical: 1.5}\ndevices: []\n")
    assert main(["alerts", "rules", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pue alerts: configuration error") and str(bad) in err and "Traceback" not in err
    missing = tmp_path / "no-such-dir" / "rules.yml"
    assert main(["alerts", "rules", "-o", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing.parent) in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["alerts", "rules", "--for", "soon"])
    assert exc.value.code == 2
    assert "not a Prometheus duration" in capsys.readouterr().err
