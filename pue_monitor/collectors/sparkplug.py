"""Sparkplug B (``spBv1.0``) decoding for a host application: pure, no I/O.

Topics are ``spBv1.0/<group>/<type>/<edge node>[/<device>]`` (Sparkplug 3.0, ch. 4).
What a host must do, and what :class:`SparkplugDecoder` does:

- NBIRTH / DBIRTH carry every metric's name, alias and datatype; NDATA / DDATA may
  carry aliases only, so values are resolved through the births (per edge node: aliases
  are unique across the node and all its devices).
- Every message of a node except NDEATH carries ``seq`` 0..255, +1 per message, wrapping
  after 255 (NBIRTH restarts it). A gap, data before any birth, or an unknown alias means
  the host's view is incomplete: it asks for a rebirth with an NCMD
  ``Node Control/Rebirth = true`` (:func:`rebirth_command`), at most once per
  ``rebirth_holdoff`` seconds per node.
- NDEATH is the node's MQTT will; it counts only if its ``bdSeq`` matches the current
  NBIRTH's (else it is a late will of an older session). A dead node's or device's values
  are stale: nothing more is emitted for it until the next birth.

The protobuf classes are pysparkplug's generated ``sparkplug_b_pb2`` (the Eclipse Tahu
schema), not a copy of the ``.proto``.
"""

from __future__ import annotations

import importlib
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

#: generated protobuf module; untyped (no .pyi ships with it), hence Any
pb: Any = importlib.import_module("pysparkplug._protobuf.sparkplug_b_pb2")

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"
#: metric name prefixes that are control/metadata, never measurements (Sparkplug 3.0 §6.4.9)
_CONTROL_PREFIXES = ("Node Control/", "Device Control/", "Properties/", "Node Info/", "Device Info/")

# DataType enum values (Sparkplug 3.0 §6.4.16)
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME = 9, 10, 11, 12, 13
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_NUMERIC = {INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT, DOUBLE, BOOLEAN}
_MESSAGE_TYPES = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "NCMD", "DCMD", "STATE")


class SparkplugError(ValueError):
    """A message that is not valid Sparkplug B (bad topic, bad protobuf, missing field)."""


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    group: str
    message_type: str
    edge_node: str
    device: str | None = None


def parse_topic(topic: str) -> SparkplugTopic:
    """Split a ``spBv1.0/...`` topic; raises :class:`SparkplugError` if it is not one."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in _MESSAGE_TYPES:
        raise SparkplugError(f"not a Sparkplug B topic: {topic!r}")
    if any(not p for p in parts):
        raise SparkplugError(f"empty level in Sparkplug B topic: {topic!r}")
    device = parts[4] if len(parts) == 5 else None
    if (parts[2][0] == "D") != (device is not None):
        raise SparkplugError(f"{parts[2]} {'needs' if device is None else 'takes no'} device level: {topic!r}")
    return SparkplugTopic(parts[1], parts[2], parts[3], device)


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One decoded metric sample."""

    device: str | None  # None: the edge node's own metric
    name: str
    value: float
    ts: float  # POSIX seconds
    unit: str  # from the birth's engUnit property, "" if none


@dataclass
class Decoded:
    """What one message means to the host."""

    values: list[MetricValue] = field(default_factory=list)
    #: ask the node to rebirth (publish :func:`rebirth_command` to :func:`ncmd_topic`)
    rebirth: bool = False
    #: why the view is incomplete ("seq gap 7 -> 9", "unknown alias 12", ...); None if fine
    problem: str | None = None
    #: devices (None = the node itself and all its devices) that died with this message
    died: list[str | None] = field(default_factory=list)
    #: devices (None = the node) born with this message
    born: list[str | None] = field(default_factory=list)
    duplicate: bool = False  # same seq again: a redelivery, nothing to do
    ignored: bool = False  # a command, a STATE message or a stale NDEATH


@dataclass(slots=True)
class _Metric:
    name: str
    datatype: int
    unit: str


@dataclass
class _Node:
    bd_seq: int | None = None
    seq: int | None = None  # last seq seen
    alive: bool = False
    metrics: dict[str, _Metric] = field(default_factory=dict)  # node metrics by name
    aliases: dict[int, tuple[str | None, _Metric]] = field(default_factory=dict)  # node + devices
    devices: dict[str, dict[str, _Metric]] = field(default_factory=dict)  # device -> name -> metric
    devices_alive: dict[str, bool] = field(default_factory=dict)
    rebirth_at: float | None = None  # when a rebirth was last requested (caller's clock)


def _property(metric: Any, key: str) -> Any:
    if not metric.HasField("properties"):
        return None
    props = metric.properties
    for k, v in zip(props.keys, props.values, strict=False):
        if k.lower() == key.lower() and not v.is_null and v.WhichOneof("value") == "string_value":
            return v.string_value
    return None


def metric_number(metric: Any, datatype: int) -> float | None:
    """The metric's value as a float, or None if it is null or not numeric.

    Sparkplug 3.0 (§6.4.16) stores Int8/16/32 in the unsigned ``int_value`` and Int64 in
    ``long_value`` as two's complement: the birth's datatype gives the sign back.
    """
    if metric.is_null or datatype not in _NUMERIC:
        return None
    kind = metric.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("int_value", "long_value"):
        raw = int(getattr(metric, kind))
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None:
            raw &= (1 << bits) - 1
            if raw >= 1 << (bits - 1):
                raw -= 1 << bits
        return float(raw)
    if kind in ("float_value", "double_value"):
        return float(getattr(metric, kind))
    if kind == "boolean_value":
        return 1.0 if metric.boolean_value else 0.0
    return None


class SparkplugDecoder:
    """State of every edge node seen (births, aliases, seq, deaths) for one host.

    ``feed`` is a pure state transition: no I/O, time only from its arguments.
    """

    def __init__(self, *, rebirth_holdoff: float = 10.0) -> None:
        self.rebirth_holdoff = rebirth_holdoff
        self.nodes: dict[tuple[str, str], _Node] = {}

    def is_alive(self, group: str, edge_node: str, device: str | None = None) -> bool:
        node = self.nodes.get((group, edge_node))
        if node is None or not node.alive:
            return False
        return True if device is None else node.devices_alive.get(device, False)

    def feed(self, topic: str | SparkplugTopic, payload: bytes, *, arrival: float, now: float) -> Decoded:
        """Decode one message. ``arrival`` (POSIX s) stamps metrics without a timestamp;
        ``now`` (any monotonic clock) rate-limits rebirth requests.

        Raises :class:`SparkplugError` if topic or payload is not valid Sparkplug B.
        """
        t = topic if isinstance(topic, SparkplugTopic) else parse_topic(topic)
        out = Decoded()
        if t.message_type in ("NCMD", "DCMD", "STATE"):
            out.ignored = True
            return out
        msg = pb.Payload()
        try:
            msg.ParseFromString(payload)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            raise SparkplugError(f"bad protobuf: {exc}") from None
        node = self.nodes.setdefault((t.group, t.edge_node), _Node())
        if t.message_type == "NDEATH":
            bd = self._bd_seq(msg)
            if not node.alive or (bd is not None and node.bd_seq is not None and bd != node.bd_seq):
                out.ignored = True  # a late will from an older session
                return out
            node.alive = False
            node.devices_alive = dict.fromkeys(node.devices_alive, False)
            out.died.append(None)
            return out
        if not msg.HasField("seq"):
            raise SparkplugError(f"{t.message_type} without seq")
        seq = int(msg.seq)
        if seq > 255:
            raise SparkplugError(f"seq {seq} out of range 0..255")
        if t.message_type == "NBIRTH":
            self._nbirth(node, msg, seq)
            out.born.append(None)
            out.values.extend(self._values(node, None, msg, arrival, out, birth=True))
            return out
        # every other message continues the node's sequence
        if not node.alive:
            self._want_rebirth(node, out, now, f"{t.message_type} from {t.edge_node} before its NBIRTH")
            return out
        assert node.seq is not None
        if seq == node.seq:
            out.duplicate = True
            return out
        expected = (node.seq + 1) % 256
        if seq != expected:
            self._want_rebirth(node, out, now, f"seq gap: expected {expected}, got {seq}")
        node.seq = seq
        if t.message_type == "DBIRTH":
            assert t.device is not None
            self._dbirth(node, t.device, msg)
            out.born.append(t.device)
            out.values.extend(self._values(node, t.device, msg, arrival, out, birth=True))
        elif t.message_type == "DDEATH":
            assert t.device is not None
            node.devices_alive[t.device] = False
            out.died.append(t.device)
        elif t.message_type == "DDATA":
            assert t.device is not None
            if not node.devices_alive.get(t.device, False):
                self._want_rebirth(node, out, now, f"DDATA from {t.device} before its DBIRTH")
                return out
            out.values.extend(self._values(node, t.device, msg, arrival, out, birth=False, now=now))
        else:  # NDATA
            out.values.extend(self._values(node, None, msg, arrival, out, birth=False, now=now))
        return out

    # ----------------------------------------------------------------- internals

    @staticmethod
    def _bd_seq(msg: Any) -> int | None:
        for m in msg.metrics:
            if m.name == BDSEQ_METRIC:
                v = metric_number(m, m.datatype or UINT64)
                return None if v is None else int(v)
        return None

    def _want_rebirth(self, node: _Node, out: Decoded, now: float, why: str) -> None:
        out.problem = out.problem or why
        if node.rebirth_at is None or now - node.rebirth_at >= self.rebirth_holdoff:
            node.rebirth_at = now
            out.rebirth = True

    def _nbirth(self, node: _Node, msg: Any, seq: int) -> None:
        node.bd_seq = self._bd_seq(msg)
        node.seq = seq
        node.alive = True
        node.metrics = {}
        node.aliases = {}
        node.devices = {}
        node.devices_alive = {}
        node.rebirth_at = None
        for m in msg.metrics:
            if not m.name:
                raise SparkplugError("NBIRTH metric without a name")
            spec = _Metric(m.name, int(m.datatype), _property(m, "engUnit") or "")
            node.metrics[m.name] = spec
            if m.HasField("alias"):
                node.aliases[int(m.alias)] = (None, spec)

    def _dbirth(self, node: _Node, device: str, msg: Any) -> None:
        for alias, (dev, _) in list(node.aliases.items()):
            if dev == device:
                del node.aliases[alias]
        metrics: dict[str, _Metric] = {}
        for m in msg.metrics:
            if not m.name:
                raise SparkplugError("DBIRTH metric without a name")
            spec = _Metric(m.name, int(m.datatype), _property(m, "engUnit") or "")
            metrics[m.name] = spec
            if m.HasField("alias"):
                node.aliases[int(m.alias)] = (device, spec)
        node.devices[device] = metrics
        node.devices_alive[device] = True

    def _values(
        self,
        node: _Node,
        device: str | None,
        msg: Any,
        arrival: float,
        out: Decoded,
        *,
        birth: bool,
        now: float = 0.0,
    ) -> list[MetricValue]:
        known = node.metrics if device is None else node.devices.get(device, {})
        payload_ts = msg.timestamp / 1000.0 if msg.HasField("timestamp") and msg.timestamp > 0 else None
        values: list[MetricValue] = []
        for m in msg.metrics:
            spec: _Metric | None
            if m.name:
                spec = known.get(m.name)
                if spec is None and not birth:
                    self._want_rebirth(node, out, now, f"metric {m.name!r} not in the birth")
                    continue
            elif m.HasField("alias"):
                hit = node.aliases.get(int(m.alias))
                spec = hit[1] if hit is not None and hit[0] == device else None
                if spec is None:
                    self._want_rebirth(node, out, now, f"unknown alias {m.alias}")
                    continue
            else:
                raise SparkplugError("metric with neither name nor alias")
            assert spec is not None
            if spec.name == BDSEQ_METRIC or spec.name.startswith(_CONTROL_PREFIXES):
                continue
            value = metric_number(m, int(m.datatype) or spec.datatype)
            if value is None:
                continue
            if m.HasField("timestamp") and m.timestamp > 0:
                ts = m.timestamp / 1000.0
            else:
                ts = payload_ts if payload_ts is not None else arrival
            values.append(MetricValue(device, spec.name, value, ts, spec.unit))
        return values


# ------------------------------------------------------------------------ encoding

_POINT_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def point_name(metric: str) -> str:
    """A metric name as a point name: ``"Supply Temperature"`` -> ``supply_temperature``,
    ``"Inputs/Temp 1"`` -> ``inputs_temp_1``."""
    return _POINT_CHARS.sub("_", metric).strip("_").lower() or "metric"


def ncmd_topic(group: str, edge_node: str) -> str:
    return f"{NAMESPACE}/{group}/NCMD/{edge_node}"


def rebirth_command(ts_ms: int) -> bytes:
    """NCMD payload asking an edge node to republish its births (Sparkplug 3.0 §6.4.6)."""
    msg = pb.Payload()
    msg.timestamp = ts_ms
    m = msg.metrics.add()
    m.name = REBIRTH_METRIC
    m.timestamp = ts_ms
    m.datatype = BOOLEAN
    m.boolean_value = True
    return bytes(msg.SerializeToString())


def is_rebirth_command(payload: bytes) -> bool:
    """Whether an NCMD payload asks for a rebirth (used by the simulator's edge node)."""
    msg = pb.Payload()
    try:
        msg.ParseFromString(payload)
    except Exception:
        return False
    return any(m.name == REBIRTH_METRIC and m.boolean_value for m in msg.metrics)


def encode_payload(
    metrics: list[tuple[str | None, int | None, int, float | bool]],
    *,
    ts_ms: int,
    seq: int | None,
    units: dict[str, str] | None = None,
) -> bytes:
    """Build a payload from ``(name, alias, datatype, value)``; ``name`` None sends the
    alias only (as NDATA/DDATA may). ``units`` adds an ``engUnit`` property by name
    (births). Used by the simulator and the tests."""
    msg = pb.Payload()
    msg.timestamp = ts_ms
    if seq is not None:
        msg.seq = seq
    for name, alias, datatype, value in metrics:
        m = msg.metrics.add()
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        m.timestamp = ts_ms
        if datatype:
            m.datatype = datatype
        if datatype == BOOLEAN:
            m.boolean_value = bool(value)
        elif datatype == FLOAT:
            m.float_value = float(value)
        elif datatype == DOUBLE:
            m.double_value = float(value)
        elif datatype in (INT64, UINT64, DATETIME):
            m.long_value = int(value) & 0xFFFF_FFFF_FFFF_FFFF
        elif datatype in _NUMERIC or datatype == 0:  # 0: datatype left out, as data messages may
            m.int_value = int(value) & 0xFFFF_FFFF
        else:
            raise ValueError(f"unsupported datatype {datatype}")
        if units and name in units:
            m.properties.keys.append("engUnit")
            pv = m.properties.values.add()
            pv.type = STRING
            pv.string_value = units[name]
    return bytes(msg.SerializeToString())


def float32(x: float) -> float:
    """``x`` rounded to float32 (what a Float metric carries)."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0]) if math.isfinite(x) else x
