"""MQTT push source: JSON and plain-number topics, and Sparkplug B, over one broker connection.

Connection
    One aiomqtt client per connection attempt, MQTT 5 (falls back to 3.1.1 when the
    CONNACK refuses version 5, as amqtt does), a stable client id and a persistent
    session (v5: clean start off + session expiry; 3.1.1: clean session off), so the
    broker queues QoS 1 messages while we are away. Subscriptions are made again after
    every connect. Reconnects use capped, jittered exponential backoff; "broker down" and
    "broker recovered" are logged once per change, never with credentials.

Delivery
    MQTT QoS 1 is at-least-once. Messages are acknowledged (PUBACK) only after their
    readings went to ``emit`` (paho's manual ack), so messages received but not processed
    when a connection drops are redelivered, not lost. Redeliveries are dropped twice over:
    a message flagged DUP whose topic and payload were seen recently, and any reading whose
    (device, point, tags, timestamp, value) was emitted recently when the timestamp came from
    the payload (a publisher resending after its own reconnect sends DUP=0 copies). So each
    message reaches the pipeline once; :attr:`MqttSource.duplicates` counts the rest.

Time
    A reading without a payload timestamp is stamped when its message arrives from the
    network (in paho's ``on_message``, the earliest point aiomqtt exposes), not when it is
    processed: time spent waiting in the queue does not shift it. Every reading then passes
    the runner's time-window check (:class:`~pue_monitor.collectors.runner.WindowCheck`),
    counted per topic here (:attr:`MqttSource.out_of_window`) and per device in its stats.

Overload (bounded queues, stated policy)
    Messages wait for processing in one queue per connection, bounded by QoS:

    - QoS 0: at most ``queue_messages`` messages and ``queue_bytes`` payload bytes; a
      message beyond either is dropped on arrival and counted per topic (:attr:`dropped`),
      logged at most once a minute per topic. Nothing else can be done at QoS 0.
    - QoS 1: back-pressure. We acknowledge a message only after processing it and announce
      ``receive_maximum`` (MQTT 5 Receive Maximum), so the broker never has more than that
      many unacknowledged messages out to us and holds the rest in our session (up to its
      own ``max_queued_messages``). MQTT 3.1.1 has no Receive Maximum: the broker's own
      in-flight limit applies (Mosquitto: ``max_inflight_messages``, default 20). A broker
      may exceed it anyway (Mosquitto 2.0.11 does under a flood, see eclipse-mosquitto
      issue 2301): when ``receive_maximum`` QoS 1 messages are queued, the source stops
      reading the socket until half of them are processed (TCP back-pressure; counted in
      :attr:`read_pauses`), so the queue never holds more and the broker holds the rest.

    A payload of 64 KiB or more (a Sparkplug birth with 100,000 metrics) is decoded in a
    worker thread and its readings are handed on in chunks, so the event loop is never
    blocked for long (measured: under 100 ms for 100,000 metrics).

Payloads
    Malformed payloads (bad JSON, missing path, wrong type, non-finite numbers, bad
    Sparkplug) never stop the source: each is counted per topic (:attr:`malformed`) and in
    the device's ``errors[kind]``, and logged at most once per topic per minute with the
    reason. Non-finite numbers still become readings, with :attr:`Quality.BAD` (as Modbus
    NaNs do).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import logging
import math
import random
import re
import select
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from pue_monitor.clock import Clock
from pue_monitor.collectors.base import Emit
from pue_monitor.collectors.runner import DeviceStats, WindowCheck
from pue_monitor.collectors.sparkplug import (
    NAMESPACE,
    SparkplugDecoder,
    SparkplugError,
    ncmd_topic,
    parse_topic,
    point_name,
    rebirth_command,
)
from pue_monitor.config.models import MqttBroker, MqttDevice, MqttTls, SparkplugDevice
from pue_monitor.errors import ConfigError, DecodeError
from pue_monitor.readings import Quality, Reading

log = logging.getLogger(__name__)

__all__ = [
    "MalformedPayload",
    "MqttSource",
    "compile_path",
    "get_path",
    "parse_timestamp",
    "topic_matches",
]

LOG_EVERY = 60.0  # wall seconds between two reports of malformed payloads on one topic
STALE_AFTER = 3.0  # a device without a message for this many intervals is down ...
STALE_MIN_WALL = 5.0  # ... and for at least this many wall seconds (broker and network delays are real time)
#: sane sample times: 2000-01-01 .. 2100-01-01 (a ms value read as s lands far outside)
TS_MIN, TS_MAX = 946_684_800.0, 4_102_444_800.0
_MS_THRESHOLD = 1e11  # epoch values above this are milliseconds (1e11 s is year 5138)
_MAX_TOPICS = 10_000  # bound on per-topic bookkeeping (a wildcard may see any topic)
_OTHER_TOPICS = "<other topics>"
_THREAD_BYTES = 64 * 1024  # payloads this large are decoded in a worker thread
_EMIT_CHUNK = 5_000  # readings handed to emit at once; the loop runs between chunks
_READ_BURST = 10_000  # packets read per readable socket event at most
_V5_REFUSED = {1, 0x84}  # 3.1.1 "unacceptable protocol version", v5 "unsupported protocol version"


class MalformedPayload(DecodeError):
    """A payload that does not decode as configured; ``kind`` says how (json, path, type, ...)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large payload is decoded and handed on.

    The decode makes a few hundred thousand short-lived objects; a full collection in the
    middle of it traverses all of them while holding the GIL (measured: 80-100 ms, in any
    thread), which stalls the event loop. Deferred, it runs after they are freed. Reference
    counting still frees everything meanwhile; the pause lasts one payload (~0.5 s at most).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ------------------------------------------------------------------ pure helpers

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
Path_ = tuple[str | int, ...]


def compile_path(path: str) -> Path_:
    """``"a.b[0].c"`` -> ``("a", "b", 0, "c")`` (the config model checked the syntax)."""
    return tuple(int(idx) if idx else key for key, idx in _PATH_TOKEN.findall(path))


def get_path(doc: Any, path: Path_) -> Any:
    """Follow ``path`` into decoded JSON; :class:`MalformedPayload` ("path") if it is not there."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                raise MalformedPayload("path", f"no element [{step}]")
        elif not isinstance(doc, dict) or step not in doc:
            raise MalformedPayload("path", f"no field {step!r}")
        doc = doc[step]
    return doc


def to_number(v: Any) -> float:
    """A JSON value as a float: numbers only (not booleans, not strings)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise MalformedPayload("type", f"expected a number, got {type(v).__name__}")
    try:
        return float(v)
    except OverflowError:
        raise MalformedPayload("range", "integer too large for a float") from None


def parse_number(payload: bytes) -> float:
    """A plain-number payload (``b"21.5"``, ``b" 7\\n"``)."""
    try:
        text = payload.decode("ascii").strip()
        if not text or "_" in text:
            raise ValueError
        return float(text)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("number", "payload is not a plain number") from None


def parse_timestamp(v: Any) -> float:
    """Sample time as POSIX seconds: epoch seconds or milliseconds (told apart by
    magnitude) or an ISO 8601 string (UTC if it has no offset)."""
    if isinstance(v, str):
        try:
            t = dt.datetime.fromisoformat(v.strip())
        except ValueError:
            try:
                return parse_timestamp(float(v))
            except (ValueError, MalformedPayload):
                raise MalformedPayload("timestamp", "timestamp is neither a number nor ISO 8601") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        ts = t.timestamp()
    else:
        try:
            ts = to_number(v)
        except MalformedPayload:
            raise MalformedPayload("timestamp", f"timestamp is a {type(v).__name__}") from None
        if abs(ts) >= _MS_THRESHOLD:
            ts /= 1000.0
    if not TS_MIN <= ts <= TS_MAX:  # also rejects NaN
        raise MalformedPayload("timestamp", f"timestamp {ts!r} s outside 2000..2100")
    return ts


def topic_matches(flt: tuple[str, ...], topic: list[str]) -> bool:
    """MQTT 3.1.1 §4.7 matching of a split filter against a split topic name."""
    if topic and topic[0].startswith("$") and flt and flt[0] in ("+", "#"):
        return False  # wildcards never match $SYS-style topics at the first level
    for i, f in enumerate(flt):
        if f == "#":
            return True
        if i >= len(topic) or (f != "+" and f != topic[i]):
            return False
    return len(flt) == len(topic)


# --------------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class _PointPlan:
    point: str
    path: Path_ | None  # None: the payload is a number
    unit: str
    scale: float


@dataclass(frozen=True, slots=True)
class _Route:
    device: str
    filter: tuple[str, ...]
    points: tuple[_PointPlan, ...]
    timestamp: Path_ | None

    @property
    def needs_json(self) -> bool:
        return self.timestamp is not None or any(p.path is not None for p in self.points)


class _Message(aiomqtt.Message):
    dup: bool = False
    arrival: float | None = None  # clock time paho handed us the message


class _Client(aiomqtt.Client):
    """aiomqtt's client with paho's manual acknowledgement, the DUP flag kept, arrival
    stamping and the queue bounds of the module doc (admission in ``on_message``)."""

    def __init__(self, *args: Any, source: MqttSource, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)  # PUBACK only after the readings are handed on
        self._source = source
        self.q0 = 0  # QoS 0 messages queued
        self.q0_bytes = 0
        self.q1 = 0  # QoS 1/2 messages queued
        self._reader: tuple[int, Callable[[], None]] | None = None  # socket fd, read callback
        self._paused = False  # reading stopped: QoS 1 queue full (see the module doc)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        src = self._source
        arrival = src.clock.now()
        size = len(message.payload)
        if message.qos == 0:
            if self.q0 >= src.broker.queue_messages or self.q0_bytes + size > src.broker.queue_bytes:
                src._overflow(src.dropped, message.topic, "QoS 0 queue full: message dropped")
                return
            self.q0 += 1
            self.q0_bytes += size
            src.queue_high_water[0] = max(src.queue_high_water[0], self.q0)
        else:
            self.q1 += 1
            src.queue_high_water[1] = max(src.queue_high_water[1], self.q1)
            if self.q1 >= src.broker.receive_maximum and self._reader is not None and not self._paused:
                self._paused = True  # the broker sent more than our Receive Maximum: stop reading
                src.read_pauses += 1
                self._loop.remove_reader(self._reader[0])
        m = _Message._from_paho_message(message)
        m.dup = bool(message.dup)
        m.arrival = arrival
        self._queue.put_nowait(m)  # unbounded structure; bounded by the admission above

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        """As aiomqtt's, but each readable event reads every packet already received (up to
        a fair share), not one: messages are stamped (and admitted or dropped) when they
        arrive, not after waiting in the socket while the loop is busy."""

        def callback() -> None:
            try:
                for _ in range(_READ_BURST):
                    if self._paused:
                        break
                    client.loop_read()
                    if client.socket() is None:
                        break  # the connection ended (paho told aiomqtt already)
                    if hasattr(sock, "pending") and sock.pending() > 0:
                        continue  # decoded TLS bytes left (paho issue 131)
                    if not select.select([sock], [], [], 0)[0]:
                        break
            except Exception as exc:  # as aiomqtt: a broken connection ends it
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def create_misc_task() -> None:
            self._misc_task = self._loop.create_task(self._misc_loop())

        # paho may call this from the thread that ran connect(): schedule on the loop
        self._reader = (sock.fileno(), callback)
        self._paused = False
        self._loop.call_soon_threadsafe(self._loop.add_reader, sock.fileno(), callback)
        self._loop.call_soon_threadsafe(create_misc_task)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._reader = None  # never re-armed for a closed socket
        super()._on_socket_close(client, userdata, sock)

    def taken(self, message: aiomqtt.Message) -> None:
        """The consumer took ``message`` off the queue."""
        if message.qos == 0:
            self.q0 -= 1
            self.q0_bytes -= len(message.payload) if isinstance(message.payload, bytes | bytearray) else 0
        else:
            self.q1 -= 1
            if self._paused and self.q1 <= self._source.broker.receive_maximum // 2:
                self._paused = False
                if self._reader is not None:
                    self._loop.add_reader(*self._reader)

    def close_socket(self) -> None:
        """Drop a connection that never got its CONNACK (aiomqtt leaves it open)."""
        with contextlib.suppress(Exception):
            self._client.disconnect()

    def ack(self, message: aiomqtt.Message) -> None:
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)


def _reason_value(rc: ReasonCode | int) -> int:
    return rc.value if isinstance(rc, ReasonCode) else int(rc)


def tls_context(tls: MqttTls, base_dir: Path) -> ssl.SSLContext:
    """An SSL context for the broker; files relative to the config's folder."""

    def path(p: str | None) -> str | None:
        if p is None:
            return None
        q = Path(p)
        return str(q if q.is_absolute() else base_dir / q)

    try:
        ctx = ssl.create_default_context(cafile=path(tls.ca_file))
        if tls.cert_file is not None:
            ctx.load_cert_chain(path(tls.cert_file) or "", path(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt tls: {exc}") from None
    if tls.insecure:
        ctx.check_hostname = False  # the certificate chain is still verified
    return ctx


# --------------------------------------------------------------------- source


class MqttSource:
    """All MQTT and Sparkplug devices of a site, fed from one broker connection.

    >>> source = MqttSource(cfg.mqtt, devices, site_id="dc1", clock=WallClock(), base_dir=Path("."))
    >>> runner.add_source(source, protocol="mqtt", protocols=source.protocols)

    Credentials and TLS files are read here (a :class:`ConfigError` at start-up, not later).
    """

    def __init__(
        self,
        broker: MqttBroker,
        devices: list[MqttDevice | SparkplugDevice],
        *,
        site_id: str,
        clock: Clock,
        base_dir: Path | str,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        dedupe_window: int = 65_536,
    ) -> None:
        if not devices:
            raise ConfigError("an MQTT source needs at least one device")
        self.broker = broker
        self.devices = list(devices)
        self.site_id = site_id
        self.clock = clock
        self.base_dir = Path(base_dir)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.name = f"mqtt {broker.host}:{broker.port}"
        self.device_ids = [d.id for d in devices]
        self._password = broker.password.read(str(self.base_dir)) if broker.password is not None else None
        self._tls = tls_context(broker.tls, self.base_dir) if broker.tls is not None else None

        self._routes: list[_Route] = []
        self._sparkplug: dict[tuple[str, str], list[SparkplugDevice]] = {}
        filters: dict[str, int] = {}
        for d in devices:
            if isinstance(d, MqttDevice):
                for sub in d.subscriptions:
                    plans = tuple(
                        _PointPlan(p.point, None if p.path is None else compile_path(p.path), p.unit, p.scale)
                        for p in sub.points
                    )
                    ts = None if sub.timestamp is None else compile_path(sub.timestamp)
                    self._routes.append(_Route(d.id, tuple(sub.topic.split("/")), plans, ts))
                    filters[sub.topic] = max(filters.get(sub.topic, 0), sub.qos)
            else:
                self._sparkplug.setdefault((d.group, d.edge_node), []).append(d)
                filters[f"{NAMESPACE}/{d.group}/+/{d.edge_node}/#"] = 1
        self.filters: dict[str, int] = filters  # topic filter -> QoS
        self._route_cache: dict[str, tuple[_Route, ...]] = {}
        self.decoder = SparkplugDecoder()

        #: device -> protocol label of its statistics ("sparkplug" for Sparkplug B devices)
        self.protocols = {d.id: "sparkplug" if isinstance(d, SparkplugDevice) else "mqtt" for d in devices}
        self.stats: dict[str, DeviceStats] = {d: DeviceStats(d, self.protocols.get(d, "mqtt")) for d in self.device_ids}
        self.malformed: Counter[str] = Counter()  # malformed payloads by topic
        self.duplicates: Counter[str] = Counter()  # dropped redeliveries by device ("" = whole message)
        self.unmatched = 0  # messages on our filters that no device wanted
        self.messages = 0  # messages processed
        self.dropped: Counter[str] = Counter()  # QoS 0 messages dropped on arrival (queue full), by topic
        self.read_pauses = 0  # times reading stopped because the QoS 1 queue was full
        self.out_of_window: Counter[str] = Counter()  # readings outside the time window, by topic
        self.queue_high_water = [0, 0]  # most QoS 0 / QoS 1 messages queued at once
        #: set by the runner (:meth:`Runner.add_source`): the site's time-window check
        self.window_check: WindowCheck | None = None
        self.rebirths_requested = 0
        self._log_at: dict[str, float] = {}  # topic -> monotonic time of its last report
        self._suppressed: Counter[str] = Counter()
        self._seen_msgs: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self._seen_readings: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._window = dedupe_window
        self._rebirths: list[tuple[str, str]] = []
        self._broker_up: bool | None = None
        self._attempt = 0  # connection attempts since the last success (backoff)
        self._started = clock.now()
        self._wall_started = time.monotonic()
        self._wall_last: dict[str, float] = {}  # device -> time.monotonic() of its last message

    @property
    def connected(self) -> bool:
        """Connected to the broker with our subscriptions in place."""
        return self._broker_up is True

    # ------------------------------------------------------------- processing

    def process(
        self, topic: str, payload: bytes, *, qos: int = 1, dup: bool = False, arrival: float | None = None
    ) -> list[Reading]:
        """Readings from one message (pure of I/O; updates counters and stats). Never raises
        for payload errors. ``arrival``: clock time the message arrived (default: now);
        it stamps readings whose payload has no timestamp."""
        if arrival is None:
            arrival = self.clock.now()
        self.messages += 1
        if qos > 0:
            key = (topic, len(payload), hash(payload))
            if dup and key in self._seen_msgs:
                self.duplicates[""] += 1
                return []
            self._remember(self._seen_msgs, key, 4096)
        if topic.startswith(NAMESPACE + "/") and self._sparkplug:
            return self._process_sparkplug(topic, payload, arrival)
        routes = self._match(topic)
        if not routes:
            self.unmatched += 1
            return []
        doc: Any = None
        doc_error: MalformedPayload | None = None
        if any(r.needs_json for r in routes):
            try:
                doc = json.loads(payload)
            except (ValueError, RecursionError) as exc:
                doc_error = MalformedPayload("json", f"not JSON: {str(exc)[:80]}")
        out: list[Reading] = []
        problems: list[MalformedPayload] = []
        for route in routes:
            stats = self.stats[route.device]
            stats.polls += 1
            got, errs = self._decode_route(route, payload, doc, doc_error, arrival)
            for e in errs:
                stats.errors[e.kind] += 1
                stats.last_error = str(e)
            problems.extend(errs)
            if got:
                self._success(stats)
                out.extend(got)
            elif errs:
                stats.failed_polls += 1
        if problems:
            self._malformed(topic, problems[0])
        return out

    def _decode_route(
        self, route: _Route, payload: bytes, doc: Any, doc_error: MalformedPayload | None, arrival: float
    ) -> tuple[list[Reading], list[MalformedPayload]]:
        if route.needs_json and doc_error is not None:
            return [], [doc_error]
        ts = arrival
        stamped = False
        if route.timestamp is not None:
            try:
                ts = parse_timestamp(get_path(doc, route.timestamp))
                stamped = True
            except MalformedPayload as exc:
                return [], [MalformedPayload("timestamp", f"timestamp: {exc}")]
        out: list[Reading] = []
        errs: list[MalformedPayload] = []
        for p in route.points:
            try:
                raw = parse_number(payload) if p.path is None else to_number(get_path(doc, p.path))
            except MalformedPayload as exc:
                errs.append(exc)
                continue
            value = raw * p.scale
            quality = Quality.GOOD
            if not math.isfinite(value):
                quality = Quality.BAD
                errs.append(MalformedPayload("value", f"{p.point}: non-finite value {value}"))
            r = Reading(ts, self.site_id, route.device, p.point, value, p.unit, quality)
            out.append(r)
            if not stamped or quality is Quality.BAD:
                continue
            key = (r.device, r.point, r.tags, r.ts, r.value)
            if key in self._seen_readings:
                out.pop()
                self.duplicates[r.device] += 1
            else:
                self._remember(self._seen_readings, key, self._window)
        return out, errs

    def _process_sparkplug(self, topic: str, payload: bytes, arrival: float) -> list[Reading]:
        try:
            t = parse_topic(topic)
        except SparkplugError as exc:
            self._malformed(topic, MalformedPayload("sparkplug", str(exc)))
            return []
        devices = self._sparkplug.get((t.group, t.edge_node))
        if devices is None:
            self.unmatched += 1
            return []
        concerned = [d for d in devices if d.device is None or t.device is None or d.device == t.device]
        for d in concerned:
            self.stats[d.id].polls += 1
        try:
            dec = self.decoder.feed(t, payload, arrival=arrival, now=time.monotonic())
        except SparkplugError as exc:
            err = MalformedPayload("sparkplug", str(exc))
            for d in concerned:
                self.stats[d.id].errors["sparkplug"] += 1
                self.stats[d.id].failed_polls += 1
                self.stats[d.id].last_error = str(err)
            self._malformed(topic, err)
            return []
        if dec.duplicate:
            self.duplicates[""] += 1
            return []
        if dec.rebirth:
            self._rebirths.append((t.group, t.edge_node))
            for d in concerned:
                self.stats[d.id].errors["rebirth"] += 1
            self._report(f"rebirth {t.group}/{t.edge_node}", f"asking {t.edge_node} to rebirth: {dec.problem}")
        for died in dec.died:
            for d in devices:
                if died is None or d.device is None or d.device == died:
                    what = t.edge_node if died is None else f"{t.edge_node}/{died}"
                    self._down(
                        self.stats[d.id], f"Sparkplug {'NDEATH' if died is None else 'DDEATH'} of {what}", "death"
                    )
        out: list[Reading] = []
        for mv in dec.values:
            for d in devices:
                if d.device is not None and d.device != mv.device:
                    continue
                mp = d.metrics.get(mv.name)
                point = mp.point if mp is not None else point_name(mv.name)
                unit = mp.unit if mp is not None and mp.unit else mv.unit
                value = mv.value * (mp.scale if mp is not None else 1.0)
                tags = (("sparkplug_device", mv.device),) if d.device is None and mv.device is not None else ()
                quality = Quality.GOOD if math.isfinite(value) else Quality.BAD
                r = Reading(mv.ts, self.site_id, d.id, point, value, unit, quality, tags)
                if mv.ts != arrival and quality is Quality.GOOD:
                    key = (r.device, r.point, r.tags, r.ts, r.value)
                    if key in self._seen_readings:
                        self.duplicates[d.id] += 1
                        continue
                    self._remember(self._seen_readings, key, self._window)
                out.append(r)
                self._success(self.stats[d.id])
        return out

    def _match(self, topic: str) -> tuple[_Route, ...]:
        hit = self._route_cache.get(topic)
        if hit is None:
            levels = topic.split("/")
            hit = tuple(r for r in self._routes if topic_matches(r.filter, levels))
            if len(self._route_cache) >= _MAX_TOPICS:
                self._route_cache.clear()
            self._route_cache[topic] = hit
        return hit

    @staticmethod
    def _remember(seen: OrderedDict[Any, None], key: Any, limit: int) -> None:
        seen[key] = None
        if len(seen) > limit:
            seen.popitem(last=False)

    # ------------------------------------------------------------- health/logs

    def _success(self, stats: DeviceStats) -> None:
        stats.last_success = self.clock.now()
        self._wall_last[stats.device] = time.monotonic()
        if stats.up is not True:
            if stats.up is False:
                log.info("device %s recovered", stats.device)
            stats.up = True

    def _down(self, stats: DeviceStats, why: str, kind: str) -> None:
        stats.mark_down(kind, why, self.clock.now())
        if stats.up is not False:
            log.warning("device %s down: %s", stats.device, why)
            stats.up = False

    def _overflow(self, counter: Counter[str], topic: str, what: str) -> None:
        key = topic if topic in counter or len(counter) < _MAX_TOPICS else _OTHER_TOPICS
        counter[key] += 1
        self._report(f"overflow {key}", f"{what} (topic {topic!r})")

    def _in_window(self, topic: str, readings: list[Reading]) -> list[Reading]:
        if self.window_check is None or not readings:
            return readings
        keep = self.window_check.split(readings, self.stats, where=f" (topic {topic!r})")
        if len(keep) < len(readings):
            key = topic if topic in self.out_of_window or len(self.out_of_window) < _MAX_TOPICS else _OTHER_TOPICS
            self.out_of_window[key] += len(readings) - len(keep)
        return keep

    def _malformed(self, topic: str, err: MalformedPayload) -> None:
        key = topic if topic in self.malformed or len(self.malformed) < _MAX_TOPICS else _OTHER_TOPICS
        self.malformed[key] += 1
        self._report(key, f"malformed payload on {topic!r} ({err.kind}): {err}")

    def _report(self, key: str, message: str) -> None:
        """Log ``message`` unless ``key`` was reported less than a minute ago."""
        now = time.monotonic()
        last = self._log_at.get(key)
        if last is not None and now - last < LOG_EVERY:
            self._suppressed[key] += 1
            return
        more = self._suppressed.pop(key, 0)
        if len(self._log_at) >= _MAX_TOPICS:
            self._log_at = {k: v for k, v in self._log_at.items() if now - v < LOG_EVERY}
        self._log_at[key] = now
        log.warning("mqtt: %s%s", message[:300], f" (+{more} more in the last minute)" if more else "")

    def _broker_state(self, up: bool, why: str = "") -> None:
        if up and self._broker_up is not True:
            if self._broker_up is False:
                log.info("mqtt broker %s:%d recovered", self.broker.host, self.broker.port)
            else:
                log.info("mqtt broker %s:%d connected", self.broker.host, self.broker.port)
        elif not up and self._broker_up is not False:
            log.warning(
                "mqtt broker %s:%d down: %s; no data from %s until it answers (retrying; the broker is "
                "mqtt.host/mqtt.port in the site file; the other devices go on)",
                self.broker.host,
                self.broker.port,
                why,
                self._waiting(),
            )
        self._broker_up = up

    def _waiting(self) -> str:
        """The devices (and their topics) a down broker starves, for its log line: at most five."""

        def topics(d: MqttDevice | SparkplugDevice) -> str:
            if isinstance(d, MqttDevice):
                return ", ".join(sub.topic for sub in d.subscriptions)
            return f"spBv1.0/{d.group}/+/{d.edge_node}" + (f"/{d.device}" if d.device else "")

        shown = [f"{d.id} ({topics(d)})" for d in self.devices[:5]]
        more = len(self.devices) - len(shown)
        return "; ".join(shown) + (f" and {more} more devices" if more > 0 else "")

    # ------------------------------------------------------------- connection

    def _client(self, protocol: aiomqtt.ProtocolVersion, *, connect_timeout: float) -> _Client:
        b = self.broker
        kw: dict[str, Any] = {}
        if protocol is aiomqtt.ProtocolVersion.V5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = b.session_expiry
            props.ReceiveMaximum = b.receive_maximum  # back-pressure at QoS 1 (see the module doc)
            kw.update(clean_start=False, properties=props)
        else:
            kw.update(clean_session=False)
        return _Client(
            b.host,
            b.port,
            identifier=b.client_id,
            username=b.username,
            password=self._password,
            protocol=protocol,
            keepalive=b.keepalive,
            tls_context=self._tls,
            timeout=connect_timeout,
            logger=logging.getLogger(__name__ + ".paho"),
            source=self,
            **kw,
        )

    async def _subscribe(self, client: _Client, protocol: aiomqtt.ProtocolVersion) -> None:
        for flt, qos in self.filters.items():
            if protocol is aiomqtt.ProtocolVersion.V5:
                # retained messages only on a new subscription, not again on every reconnect
                opts = SubscribeOptions(qos=qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
                granted = await client.subscribe(flt, options=opts)
            else:
                granted = await client.subscribe(flt, qos=qos)
            codes = [_reason_value(g) for g in granted]
            if any(c >= 0x80 for c in codes):
                log.warning("mqtt broker refused the subscription to %r (code %s)", flt, codes)

    async def run(self, emit: Emit, stats: dict[str, DeviceStats], stopping: asyncio.Event) -> None:
        """Stay connected and feed readings to ``emit`` until ``stopping`` is set."""
        for dev in self.device_ids:
            stats.setdefault(dev, self.stats[dev])
        self.stats = stats
        self._started, self._wall_started = self.clock.now(), time.monotonic()
        watch = asyncio.create_task(self._watch(stopping), name=f"{self.name} staleness")
        try:
            await self._connection_loop(emit, stopping)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def _connection_loop(self, emit: Emit, stopping: asyncio.Event) -> None:
        v5, v311 = aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311
        protocol = v5
        proven = False  # a CONNACK was accepted with this protocol version
        self._attempt = 0
        while not stopping.is_set():
            client = self._client(protocol, connect_timeout=10.0 if proven else 3.0)
            try:
                async with client:
                    client.timeout = 10.0
                    proven = True
                    await self._serve(client, protocol, emit, stopping)
                    return
            except MqttConnectError as exc:
                refused_v5 = exc.rc is not None and _reason_value(exc.rc) in _V5_REFUSED
                if protocol is v5 and refused_v5:
                    log.info("mqtt broker %s:%d speaks MQTT 3.1.1 only", self.broker.host, self.broker.port)
                    protocol, proven = v311, False
                    continue
                self._broker_state(False, f"connection refused: {exc}")
            except aiomqtt.MqttError as exc:
                client.close_socket()
                # amqtt misreads an MQTT 5 CONNECT with properties and never answers:
                # an unproven v5 CONNECT left unanswered is retried once as 3.1.1 at once
                if not proven and protocol is v5 and str(exc) == "Operation timed out":
                    protocol = v311
                    continue
                if not proven:
                    protocol = v5
                self._broker_state(False, str(exc) or type(exc).__name__)
            delay = min(self.backoff_cap, self.backoff_base * 2**self._attempt) * random.uniform(0.5, 1.0)
            self._attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)

    async def _serve(
        self, client: _Client, protocol: aiomqtt.ProtocolVersion, emit: Emit, stopping: asyncio.Event
    ) -> None:
        """Subscribe and consume until stopping (returns) or the connection drops (raises
        MqttError). The consumer starts first: a resumed session's backlog may arrive before
        the SUBACK, and reading pauses while the queue is full (see the module doc)."""
        consumer = asyncio.create_task(self._consume(client, emit), name=f"{self.name} consume")
        stopper: asyncio.Task[Any] | None = None
        try:
            await self._subscribe(client, protocol)
            self._broker_state(True)
            self._attempt = 0
            stopper = asyncio.create_task(stopping.wait(), name=f"{self.name} stop")
            done, _ = await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            consumer.cancel()
            if stopper is not None:
                stopper.cancel()
            await asyncio.gather(consumer, *([stopper] if stopper else []), return_exceptions=True)
        if consumer in done:
            consumer.result()  # re-raises the MqttError that ended it

    async def _consume(self, client: _Client, emit: Emit) -> None:
        async for message in client.messages:
            client.taken(message)
            payload = message.payload
            if not isinstance(payload, bytes):  # aiomqtt types it loosely; paho gives bytes
                payload = str(payload).encode()
            dup = isinstance(message, _Message) and message.dup
            arrival = message.arrival if isinstance(message, _Message) else None
            topic = str(message.topic)
            try:
                if len(payload) >= _THREAD_BYTES:  # e.g. a Sparkplug birth of 100,000 metrics
                    with _gc_paused():
                        readings = await asyncio.to_thread(
                            self.process, topic, payload, qos=message.qos, dup=dup, arrival=arrival
                        )
                        await self._emit_chunked(topic, readings, emit)
                        del readings
                else:
                    readings = self.process(topic, payload, qos=message.qos, dup=dup, arrival=arrival)
                    await self._emit_chunked(topic, readings, emit)
            except Exception:  # a bug must not end the source, nor lose the ack
                log.exception("mqtt: error while processing a message on %s", message.topic)
            client.ack(message)
            if self._rebirths:
                await self._send_rebirths(client)

    async def _emit_chunked(self, topic: str, readings: list[Reading], emit: Emit) -> None:
        readings = self._in_window(topic, readings)
        for i in range(0, len(readings), _EMIT_CHUNK):
            if i:
                await asyncio.sleep(0)  # let the loop run between chunks
            emit(readings[i : i + _EMIT_CHUNK])

    async def _send_rebirths(self, client: _Client) -> None:
        pending, self._rebirths = self._rebirths, []
        for group, node in dict.fromkeys(pending):
            self.rebirths_requested += 1
            await client.publish(ncmd_topic(group, node), rebirth_command(int(self.clock.now() * 1000)), qos=0)

    async def _watch(self, stopping: asyncio.Event) -> None:
        """Mark devices down when their messages stop (push devices have no poll to fail)."""
        intervals = {d.id: d.interval for d in self.devices}
        period = max(0.05, min(1.0, min(intervals.values()) / self.clock.speed))
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=period)
            now = self.clock.now()
            for dev, interval in intervals.items():
                st = self.stats[dev]
                last = st.last_success if st.last_success is not None else self._started
                wall_quiet = time.monotonic() - self._wall_last.get(dev, self._wall_started)
                if now - last > STALE_AFTER * interval and wall_quiet > STALE_MIN_WALL and st.up is not False:
                    self._down(st, f"no message for {now - last:.0f} s (interval {interval:g} s)", "no-message")
