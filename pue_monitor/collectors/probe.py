"""Commissioning: read a device once and show every point as the wire carried it.

What `pue read` and `pue check-config --probe` use. The readers are the service's own
(:class:`~pue_monitor.collectors.modbus.ModbusReader`, :class:`~pue_monitor.collectors.snmp.SnmpReader`)
with their ``capture`` hook on, so the values shown are decoded exactly as `pue run` decodes
them; this module adds no decoding of its own. One attempt per device (no retries): a
commissioning tool reports what happens, the runner is the one that retries.

Quality of a point, as shown:

``ok``
    a value (GOOD).
``not available``
    the device answered its "not available" code (Modbus ``not_available``, SNMP ``missing_values``).
``missing``
    the object is absent (SNMP noSuchObject/noSuchInstance, a configured point with no answer).
``error``
    the device refused the request (Modbus exception code), the value is not numeric, or it
    decoded to a BAD value (non-finite, an ENTITY-SENSOR status other than ok).

Push devices (MQTT, Sparkplug B) cannot be read on demand: they publish when they want to.
They are reported as such (:data:`PUSH`), never as down.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from pue_monitor.clock import Clock, WallClock
from pue_monitor.collectors.base import PointValue, RawValue
from pue_monitor.collectors.modbus import ModbusConnection, ModbusReader
from pue_monitor.config.loader import LoadedSite
from pue_monitor.config.models import (
    UNITS,
    Device,
    ModbusDevice,
    MqttDevice,
    SnmpDevice,
    SnmpProfile,
    SparkplugDevice,
    is_wildcard,
)
from pue_monitor.errors import DeviceError
from pue_monitor.readings import Quality, Reading

OK, NOT_AVAILABLE, MISSING, ERROR = "ok", "not available", "missing", "error"
#: capture notes of an object the agent does not have (see SnmpReader._raw)
_ABSENT_NOTES = ("NoSuchObject", "NoSuchInstance", "EndOfMibView", "missing from the answer")
#: the state of a push device in a probe: not read, not down
PUSH = "push"


@dataclass(frozen=True)
class PointResult:
    """One point of one read: where it lives, what came back, what it means."""

    point: str
    where: str  # Modbus "holding 3059+2" or an OID; "" for a sum made by the collector
    raw: str  # hex words, or SNMP type and value; "" when nothing came back
    value: float | None
    unit: str
    quality: str  # OK, NOT_AVAILABLE, MISSING or ERROR
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "point": self.point,
            "where": self.where,
            "raw": self.raw,
            "value": self.value,
            "unit": self.unit,
            "quality": self.quality,
            "reason": self.reason,
        }


@dataclass
class DeviceProbe:
    """The outcome of reading one device once."""

    device: str
    protocol: str
    address: str  # host:port (unit n); the broker topic for push devices
    answered: bool
    error: str = ""  # why not, one line naming host:port ("" when it answered)
    seconds: float = 0.0  # wall time of the read
    profile: str = ""
    points: list[PointResult] = field(default_factory=list)
    #: configured points (``points:`` and the meter's) that gave no value
    missing: list[str] = field(default_factory=list)

    @property
    def push(self) -> bool:
        return self.protocol in ("mqtt", "sparkplug")

    def value(self, point: str) -> float | None:
        """The value of ``point`` when it came back OK, else None."""
        for p in self.points:
            if p.point == point and p.quality == OK:
                return p.value
        return None

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "protocol": self.protocol,
            "address": self.address,
            "answered": self.answered,
            "error": self.error,
            "seconds": round(self.seconds, 4),
            "profile": self.profile,
            "points": [p.as_dict() for p in self.points],
            "missing": self.missing,
        }


def _results(values: Sequence[PointValue], capture: dict[str, RawValue]) -> list[PointResult]:
    out: list[PointResult] = []
    seen: set[str] = set()
    for v in values:
        seen.add(v.point)
        cap = capture.get(v.point)
        where, raw = (cap.where, cap.raw) if cap is not None else ("", "")
        if cap is None and is_wildcard(v.point):
            where = "sum of the rows"
        if v.quality is Quality.GOOD:
            out.append(PointResult(v.point, where, raw, v.value, v.unit, OK))
        elif cap is not None and cap.note == NOT_AVAILABLE:
            out.append(PointResult(v.point, where, raw, None, v.unit, NOT_AVAILABLE, "the device's not-available code"))
        else:
            why = "not a finite number" if not math.isfinite(v.value) else "marked BAD by the device or the profile"
            shown = v.value if math.isfinite(v.value) else None
            out.append(PointResult(v.point, where, raw, shown, v.unit, ERROR, why))
    for point, cap in capture.items():
        if point in seen:
            continue
        if cap.note == NOT_AVAILABLE:
            quality = NOT_AVAILABLE
        elif cap.note in _ABSENT_NOTES:
            quality = MISSING
        else:  # not numeric, or the request was refused (a Modbus exception code)
            quality = ERROR
        out.append(PointResult(point, cap.where, cap.raw, None, "", quality, cap.note))
    return out


def configured_points(device: ModbusDevice | SnmpDevice, site: LoadedSite) -> list[str]:
    """The points a device must give: its ``points:`` (Modbus: the profile's when unset;
    SNMP: the scalars when unset) and its meter's energy and power points."""
    names: list[str] = []
    if isinstance(device, ModbusDevice):
        names = site.points_of(device)
    elif device.points is not None:
        names = list(device.points)
    else:
        prof = site.profiles.get(device.profile)
        if isinstance(prof, SnmpProfile):
            names = list(prof.scalars)
    if device.meter is not None:
        names += [p for p in (*device.meter.energy_points, *device.meter.power_points) if p not in names]
    return names


def _missing(wanted: Sequence[str], results: Sequence[PointResult]) -> list[str]:
    good = {r.point for r in results if r.quality in (OK, NOT_AVAILABLE)}
    out = []
    for name in wanted:
        if name in good:
            continue
        if "." not in name and any(g.startswith(name + ".") for g in good):
            continue  # a table column: at least one row answered
        out.append(name)
    return out


def _address(device: ModbusDevice | SnmpDevice) -> str:
    where = f"{device.host}:{device.port}"
    return f"{where} unit {device.unit_id}" if isinstance(device, ModbusDevice) else where


def push_probe(device: MqttDevice | SparkplugDevice) -> DeviceProbe:
    """A push device: nothing to read on demand; say where it publishes."""
    if isinstance(device, MqttDevice):
        where = ", ".join(s.topic for s in device.subscriptions)
    else:
        where = f"spBv1.0/{device.group}/+/{device.edge_node}" + (f"/{device.device}" if device.device else "/#")
    return DeviceProbe(device.id, device.protocol, where, answered=False, error=PUSH)


async def read_device(
    device: ModbusDevice | SnmpDevice,
    site: LoadedSite,
    *,
    clock: Clock | None = None,
    connection: ModbusConnection | None = None,
) -> DeviceProbe:
    """Read ``device`` once (no retry) and return every point with its raw value.

    ``connection``: a Modbus connection shared with other unit ids of the same gateway
    (one is opened and closed here when None). Never raises for a device failure: the
    probe says ``answered=False`` and why.
    """
    clock = clock or WallClock()
    address = _address(device)
    probe = DeviceProbe(device.id, device.protocol, address, answered=False, profile=device.profile)
    reader: ModbusReader | None = None
    own: ModbusConnection | None = None
    start = time.perf_counter()
    try:
        if isinstance(device, ModbusDevice):
            if connection is None:
                connection = own = ModbusConnection(host=device.host, port=device.port, clock=clock)
            reader = ModbusReader(device, site.profile_of(device), site.points_of(device), connection)
            reader.capture = {}
            values = await reader.read()
            capture = reader.capture
        else:
            from pue_monitor.collectors.snmp import SnmpReader

            snmp = SnmpReader(device, site, clock=clock)
            snmp.capture = {}
            try:
                values = await snmp.read()
            finally:
                await snmp.close()
            capture = snmp.capture
            if snmp.profile is not None:
                probe.profile = snmp.profile.id
    except DeviceError as exc:
        probe.seconds = time.perf_counter() - start
        text = str(exc)
        probe.error = text if device.host in text else f"{address}: {text}"
        return probe
    finally:
        if own is not None:
            await own.close()
    probe.seconds = time.perf_counter() - start
    probe.points = _results(values, capture)
    probe.answered = True  # even when it refused every request: it is there
    probe.missing = _missing(configured_points(device, site), probe.points)
    return probe


async def probe_site(site: LoadedSite, *, clock: Clock | None = None) -> list[DeviceProbe]:
    """Read every polled device of the site once, concurrently (units behind one Modbus
    gateway share its connection and take turns, as in the service); push devices are
    listed as :data:`PUSH`. Import-only devices are skipped. Results in the site's order."""
    clock = clock or WallClock()
    connections: dict[tuple[str, int], ModbusConnection] = {}
    jobs: list[Coroutine[Any, Any, DeviceProbe] | DeviceProbe] = []
    for dev in site.config.devices:
        if isinstance(dev, MqttDevice | SparkplugDevice):
            jobs.append(push_probe(dev))
        elif isinstance(dev, ModbusDevice):
            key = (dev.host, dev.port)
            conn = connections.get(key)
            if conn is None:
                conn = connections[key] = ModbusConnection(host=dev.host, port=dev.port, clock=clock)
            jobs.append(read_device(dev, site, clock=clock, connection=conn))
        elif isinstance(dev, SnmpDevice):
            jobs.append(read_device(dev, site, clock=clock))
    reads = [j for j in jobs if not isinstance(j, DeviceProbe)]
    try:
        done = iter(await asyncio.gather(*reads))
    finally:
        for conn in connections.values():
            await conn.close()
    return [j if isinstance(j, DeviceProbe) else next(done) for j in jobs]


# ------------------------------------------------------------------ balance inputs

#: the profile point read as a UPS's output power, one row per output line (UPS-MIB upsOutputPower)
UPS_OUTPUT_POINT = "output_power"


def _kw(value: float | None, unit: str) -> float | None:
    kind, factor = UNITS.get(unit, ("", 0.0))
    return None if value is None or kind != "power" else value * factor


#: a meter configured with an energy counter only is balanced on the first of these points its
#: device answered in a power unit (the profiles' total active power: meters, APC rack PDUs)
FALLBACK_POWER_POINTS = ("active_power", "device_power", "device_power.1")


def meter_kw(probe: DeviceProbe, device: Device) -> float | None:
    """The meter's power in kW from one read: the sum of its power points (for an
    energy-only meter the first of :data:`FALLBACK_POWER_POINTS` that came back); None when
    there is none or any of them gave no value in a power unit."""
    meter = getattr(device, "meter", None)
    if meter is None or not probe.answered:
        return None
    names = meter.power_points
    if not names:
        ok = {p.point: p for p in probe.points if p.quality == OK and _kw(p.value, p.unit) is not None}
        names = next(((n,) for n in FALLBACK_POWER_POINTS if n in ok), ())
        if not names:
            return None
    total = 0.0
    for name in names:
        r = next((p for p in probe.points if p.point == name and p.quality == OK), None)
        kw = None if r is None else _kw(r.value, r.unit)
        if kw is None:
            return None
        total += kw
    return total


def is_ups(device: Device, site: LoadedSite, profile: str = "") -> bool:
    """A device read as a UPS: its profile (``profile``: the one a probe found for
    ``profile: auto``) has :data:`UPS_OUTPUT_POINT` and it is not an IT meter downstream
    of a UPS (a rack PDU that happens to name a point so)."""
    if not isinstance(device, ModbusDevice | SnmpDevice):
        return False
    prof = site.profiles.get(profile or device.profile)
    if prof is None or UPS_OUTPUT_POINT not in prof.points:
        return False
    m = device.meter
    return not (m is not None and m.it_location is not None and m.it_location.value != "ups_output")


def ups_output_kw(probe: DeviceProbe) -> float | None:
    """The UPS's output power in kW: the sum of its ``output_power`` rows (or the point itself)."""
    rows = [p for p in probe.points if p.point == UPS_OUTPUT_POINT or p.point.startswith(UPS_OUTPUT_POINT + ".")]
    rows = [p for p in rows if not is_wildcard(p.point)]
    if not probe.answered or not rows or any(p.quality != OK for p in rows):
        return None
    kws = [_kw(p.value, p.unit) for p in rows]
    return None if any(k is None for k in kws) else math.fsum(k for k in kws if k is not None)


# ------------------------------------------------------------------------ push devices


async def listen_push(
    device: MqttDevice | SparkplugDevice, site: LoadedSite, *, seconds: float, clock: Clock | None = None
) -> DeviceProbe:
    """Subscribe as the service does (:class:`~pue_monitor.collectors.mqtt.MqttSource`, so
    payloads decode exactly as in `pue run`) and return the first message's readings of
    ``device``, or ``answered=False`` when none came within ``seconds`` (wall)."""
    from pue_monitor.collectors.mqtt import MqttSource
    from pue_monitor.collectors.runner import DeviceStats

    broker = site.config.mqtt
    assert broker is not None  # the site model requires a broker for push devices
    where = push_probe(device).address
    probe = DeviceProbe(device.id, device.protocol, where, answered=False)
    source = MqttSource(
        broker, [device], site_id=site.config.site.id, clock=clock or WallClock(), base_dir=site.base_dir
    )
    got: list[Reading] = []
    first = asyncio.Event()

    def emit(readings: list[Reading]) -> None:
        got.extend(r for r in readings if r.device == device.id)
        if got:
            first.set()

    stats = {device.id: DeviceStats(device.id, device.protocol)}
    stopping = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(source.run(emit, stats, stopping), name=f"pue read {device.id}")
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.wait(), timeout=seconds)
    finally:
        stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, timeout=5.0)
    probe.seconds = time.perf_counter() - start
    if not got:
        why = stats[device.id].last_error
        broker_at = f"{broker.host}:{broker.port}"
        probe.error = f"broker {broker_at}: no message for {device.id} on {where} within {seconds:g} s" + (
            f" (last error: {why})" if why else ""
        )
        return probe
    probe.answered = True
    for r in got:
        quality = OK if r.quality is Quality.GOOD else ERROR
        value = r.value if math.isfinite(r.value) else None
        tags = " ".join(f"{k}={v}" for k, v in r.tags)
        probe.points.append(
            PointResult(r.point, tags, "", value, r.unit, quality, "" if quality == OK else "marked BAD")
        )
    return probe
