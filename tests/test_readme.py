"""The README's configuration examples are valid configuration (docs must not lie)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pue_monitor.config.loader import site_from_dict
from pue_monitor.config.models import ModbusDevice, MqttDevice, SnmpDevice, SparkplugDevice

README = (Path(__file__).parents[1] / "README.md").read_text()


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, flags=re.S)


def test_readme_site_snmp_and_mqtt_examples_validate_together():
    blocks = yaml_blocks()
    site = yaml.safe_load(next(b for b in blocks if b.startswith("site:")))
    snmp = yaml.safe_load(next(b for b in blocks if "protocol: snmp" in b))
    mqtt = yaml.safe_load(next(b for b in blocks if b.startswith("mqtt:")))
    influx = yaml.safe_load(next(b for b in blocks if b.startswith("influxdb:")))
    site["devices"] += snmp + mqtt["devices"]
    site["mqtt"] = mqtt["mqtt"]
    site.update(influx)
    loaded = site_from_dict(site, source="README.md")
    kinds = {type(d) for d in loaded.config.devices}
    assert kinds == {ModbusDevice, SnmpDevice, MqttDevice, SparkplugDevice}
    assert loaded.config.influxdb is not None and loaded.config.influxdb.token is not None
