"""What a configuration reload (SIGHUP) changes: devices added, removed, changed, unchanged,
and the settings that only a restart can apply.

A device is *unchanged* when its configuration and the profile it uses are equal in both
files; only then does its polling task continue undisturbed. Push devices (MQTT, Sparkplug B)
share one broker connection: when any of them or the ``mqtt:`` section changes, that one
connection is restarted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pue_monitor.config.loader import LoadedSite
from pue_monitor.config.models import Device, ImportDevice, MqttDevice, SparkplugDevice

__all__ = ["SiteDiff", "diff_sites"]


@dataclass
class SiteDiff:
    added: list[Device] = field(default_factory=list)
    removed: list[Device] = field(default_factory=list)
    #: (old, new) device configurations with the same id
    changed: list[tuple[Device, Device]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: the broker connection of the push devices must be restarted
    push_changed: bool = False
    #: settings that differ and cannot be applied while running ("store.path", ...)
    restart_needed: list[str] = field(default_factory=list)


def _profile(site: LoadedSite, dev: Device) -> object:
    name = getattr(dev, "profile", None)
    return None if name is None else site.profiles.get(name)


def diff_sites(
    old: LoadedSite, new: LoadedSite, *, store_fixed: bool = False, prometheus_fixed: bool = False
) -> SiteDiff:
    """Compare two site files. ``store_fixed``/``prometheus_fixed``: the command line chose the
    store / the Prometheus endpoint (``--db``, ``--prometheus-port``, ``--no-prometheus``), so
    those sections of the file do not matter."""
    a, b = old.config, new.config
    diff = SiteDiff()
    fixed: list[tuple[str, object, object]] = [
        ("site.id", a.site.id, b.site.id),
        ("site.timezone", a.site.timezone, b.site.timezone),
        ("influxdb", a.influxdb, b.influxdb),
        ("model", a.model, b.model),
        ("alerts", a.alerts, b.alerts),  # notifiers and the alert engine are built at start
    ]
    if not store_fixed:
        fixed.append(("store", a.store, b.store))
    if not prometheus_fixed:
        fixed.append(("prometheus", a.prometheus, b.prometheus))
    diff.restart_needed = [name for name, x, y in fixed if x != y]
    before = {d.id: d for d in a.devices}
    after = {d.id: d for d in b.devices}
    for dev_id, dev in after.items():
        was = before.get(dev_id)
        if was is None:
            diff.added.append(dev)
        elif was == dev and _profile(old, was) == _profile(new, dev):
            diff.unchanged.append(dev_id)
        else:
            diff.changed.append((was, dev))
    diff.removed = [d for i, d in before.items() if i not in after]

    def push(devs: list[Device], site: LoadedSite) -> list[tuple[Device, object]]:
        return [(d, _profile(site, d)) for d in devs if isinstance(d, MqttDevice | SparkplugDevice)]

    diff.push_changed = a.mqtt != b.mqtt or push(a.devices, old) != push(b.devices, new)
    return diff


def polled(dev: Device) -> bool:
    """A device with a polling task of its own (Modbus, SNMP): not pushed, not imported."""
    return not isinstance(dev, MqttDevice | SparkplugDevice | ImportDevice)
