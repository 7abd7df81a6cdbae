"""SNMP collector (pysnmp 7 asyncio hlapi): UPSes, rack PDUs, sensor hubs.

Engine
    One :class:`SnmpEngine` per event loop (a process normally runs one loop), shared by
    every reader and released when the last reader closes. pysnmp binds an engine's
    transport dispatcher to the loop it was first used on, so an engine cannot outlive its
    loop; one engine per loop is the same thing as one per process for the service.
    All requests share the engine's one UDP socket; pysnmp matches answers by request id.

Requests
    Scalars (and single table rows named in ``points``) go in GET PDUs (up to 40 varbinds
    each). Tables are walked with GETBULK, all wanted columns of a table in the same PDU
    (``max_repetitions`` rows per column per request), so a 24-outlet table with 3 columns
    is one request rather than three walks. Timeouts are wall seconds like every collector
    (``device.timeout``, whatever the clock's speed), pysnmp's own retries are 0: the runner
    retries. Every value is stamped with the clock time its request was sent.

Fast path (gufo-snmp)
    pysnmp costs about 1.5-3 ms of CPU per GET (pyasn1 BER in Python); gufo-snmp (Rust BER and
    USM, asyncio) about 0.03 ms. The first poll of a device goes through pysnmp (profile auto,
    v3 discovery) and records the pysnmp class of each GET OID's value. Later GET chunks whose
    every OID pysnmp has answered go through one gufo-snmp session per reader (its own UDP
    socket; v3 keys localised by gufo-snmp, re-synchronised after ``FAST_V3_REFRESH`` idle
    seconds); its plain values get the recorded type (:class:`_Plain`, or the pysnmp string
    class), so conversion, ``snmp_types``, skips and reset marks are pysnmp's. pysnmp answers
    the request instead when the answer does not match what was recorded (absent <-> present,
    another kind of value) or on any gufo-snmp error but a timeout, so errors keep the mapping
    below; OIDs gufo-snmp cannot encode or decode stay on pysnmp. A timeout is the same
    :class:`DeviceTimeout` and drops the socket (a late answer never meets the next request).
    Walks (multi-column GETBULK), captures (``pue read``) and v3 with a context stay on pysnmp,
    whose ObjectTypes are built once per OID.

Errors (mapped here, once)
    no answer -> :class:`DeviceTimeout`; wrong v3 auth key, unknown user, decryption error,
    unsupported security level -> :class:`PermanentDeviceError` naming the user and the
    agent, never a key; an agent error status (``authorizationError``, ``tooBig``, ...) ->
    :class:`PermanentDeviceError` naming the OID. A wrong v3 *privacy* key looks like a dead
    agent (net-snmp cannot parse the garbage it decrypts and drops the request), so while an
    authPriv device has never answered, a timeout is followed by one authNoPriv probe with
    the same user and auth key on a separate engine: if the agent answers that (even with an
    error status) it is alive and the auth key right, so the privacy key or protocol is
    wrong: :class:`PermanentDeviceError`. (Until the first success this costs up to two
    timeouts per failing poll.) v2c agents silently drop a wrong community: a timeout.
    ``noSuchObject``/``noSuchInstance``/non-numeric values skip that point only; they are
    counted in :attr:`SnmpReader.skipped` and logged once per OID.

Counters
    Counter32/Counter64 energy objects wrap at ``2**bits * scale``. Profiles declare it
    (``counter_bits``) so the meter's rollover can default to :attr:`SnmpObject.rollover`
    (``SnmpProfile.rollover_of(point)``); the reader records the SNMP type each point
    actually had (:attr:`SnmpReader.snmp_types`) and warns once when a Counter32/64 point
    has no ``counter_bits`` in its profile.

User-resettable energy (APC rPDU2DeviceStatusEnergy)
    The raw counter is emitted as is, and the pipeline sees a user reset as a counter
    decrease: it takes the value after the reset as the energy of that interval and flags
    it ESTIMATED (energy between the last poll and the reset is unknowable either way).
    The reader also reads the column named by ``reset_time`` (the reset date) and counts
    each change in :attr:`SnmpReader.resets` (and logs it), so the reset is visible even
    when the counter would not have decreased. The alternative, turning the counter into a
    monotonic one with a per-row offset kept in the reader, was rejected: the offset lives
    in memory, so after a service restart the emitted value would fall back by the whole
    offset and the pipeline (resumed from the stored last reading) would book the raw
    counter (everything since the user's last reset, possibly months) into one interval.

ENTITY-SENSOR-MIB
    Tables with ``scaling: entity-sensor`` are scaled per row as RFC 3433 says: value = raw x
    10^prefix(entPhySensorScale) x 10^-precision where entPhySensorPrecision is 1..9 (decimal
    places of a fixed-point number); a precision of -8..-1 is the number of accurate digits,
    not a shift (the value is not rescaled), 0 means "not fixed-point". Unit from
    entPhySensorType; quality BAD when entPhySensorOperStatus is not ok(1), and for the
    fixed-point types when the value is the underflow (-1000000000) or overflow (+1000000000)
    code. Type/scale/precision/status are read, not emitted.

Per-device overrides, multi-component indexes, wildcard sums
    ``device.overrides`` replaces a scalar's or a column's scale and/or unit. A row index of
    several components (``1.3``) is tagged by :meth:`SnmpTable.tags_of`. A meter power
    ``column.*`` is emitted as one extra reading per poll, point ``column.*``: the sum of the
    rows read in that poll, BAD when a row is BAD or the set of rows differs from the set of
    the first poll (a row lost or added would otherwise step the sum as if power changed). A
    changed set that stays the same for ``WILDCARD_ADOPT_POLLS`` polls in a row is a lasting
    change (a line added or removed): from that poll on it is the set, and the sum GOOD again.

A device that answers nothing
    When no planned point gives a value (every object absent or not numeric, and none
    answered "not available"), :meth:`SnmpReader.read` raises :class:`NoPointsAnswered`
    naming the profile: the runner counts the device down instead of up with no data
    (typically a wrong profile, e.g. an older PDU auto-matched to a newer MIB).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gufo.snmp import (
    Aes128Key,
    Aes192Key,
    Aes256Key,
    BaseAuthKey,
    BasePrivKey,
    DesKey,
    KeyExpansion,
    Md5Key,
    Sha1Key,
    Sha224Key,
    Sha256Key,
    Sha384Key,
    Sha512Key,
    SnmpAuthError,
    SnmpError,
    SnmpVersion,
    User,
)
from gufo.snmp.aio.client import SnmpSession
from pysnmp.error import PySnmpError  # type: ignore[import-untyped]
from pysnmp.hlapi.v3arch.asyncio import (  # type: ignore[import-untyped]
    USM_AUTH_HMAC96_MD5,
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC128_SHA224,
    USM_AUTH_HMAC192_SHA256,
    USM_AUTH_HMAC256_SHA384,
    USM_AUTH_HMAC384_SHA512,
    USM_PRIV_CBC56_DES,
    USM_PRIV_CFB128_AES,
    USM_PRIV_CFB192_AES,
    USM_PRIV_CFB192_AES_BLUMENTHAL,
    USM_PRIV_CFB256_AES,
    USM_PRIV_CFB256_AES_BLUMENTHAL,
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
)
from pysnmp.proto import errind, rfc1902, rfc1905  # type: ignore[import-untyped]

from pue_monitor.clock import Clock, WallClock
from pue_monitor.collectors.base import Capture, PointValue, RawValue
from pue_monitor.config.loader import LoadedSite
from pue_monitor.config.models import (
    ENTITY_SENSOR_ENTRY,
    PointOverride,
    SnmpDevice,
    SnmpObject,
    SnmpProfile,
    SnmpTable,
    is_wildcard,
)
from pue_monitor.errors import DeviceTimeout, DeviceUnreachable, PermanentDeviceError
from pue_monitor.readings import Quality

log = logging.getLogger(__name__)

#: polls a changed row set of a meter wildcard must persist before it becomes the set summed
WILDCARD_ADOPT_POLLS = 3

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
#: varbinds per GET PDU: well below what fits a 1472-byte UDP payload for numeric values
GET_BATCH = 40
#: a walk never returns more rows than this per column (a loop guard, not a limit in practice)
MAX_ROWS = 10_000

_AUTH = {
    "SHA": USM_AUTH_HMAC96_SHA,
    "SHA224": USM_AUTH_HMAC128_SHA224,
    "SHA256": USM_AUTH_HMAC192_SHA256,
    "SHA384": USM_AUTH_HMAC256_SHA384,
    "SHA512": USM_AUTH_HMAC384_SHA512,
    "MD5": USM_AUTH_HMAC96_MD5,
}
_PRIV = {
    "AES": USM_PRIV_CFB128_AES,
    # net-snmp's AES192/AES256 use the Blumenthal key extension; "C" variants Reeder (Cisco)
    "AES192": USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256": USM_PRIV_CFB256_AES_BLUMENTHAL,
    "AES192C": USM_PRIV_CFB192_AES,
    "AES256C": USM_PRIV_CFB256_AES,
    "DES": USM_PRIV_CBC56_DES,
}
_NUMERIC = (
    rfc1902.Integer32,
    rfc1902.Integer,
    rfc1902.Unsigned32,
    rfc1902.Gauge32,
    rfc1902.Counter32,
    rfc1902.Counter64,
    rfc1902.TimeTicks,
)
_ABSENT = (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)
#: the one value of each absent type (what pysnmp returns for it)
_ABSENT_VALUE: dict[type, Any] = {
    rfc1905.NoSuchObject: rfc1905.noSuchObject,
    rfc1905.NoSuchInstance: rfc1905.noSuchInstance,
    rfc1905.EndOfMibView: rfc1905.endOfMibView,
}
#: gufo-snmp keys for the fast path (same algorithms as _AUTH/_PRIV; AES192/256 Blumenthal, "C" Reeder)
_FAST_AUTH: dict[str, type[BaseAuthKey]] = {
    "SHA": Sha1Key,
    "SHA224": Sha224Key,
    "SHA256": Sha256Key,
    "SHA384": Sha384Key,
    "SHA512": Sha512Key,
    "MD5": Md5Key,
}
_FAST_PRIV: dict[str, tuple[type[BasePrivKey], KeyExpansion]] = {
    "AES": (Aes128Key, KeyExpansion.Blumenthal),
    "AES192": (Aes192Key, KeyExpansion.Blumenthal),
    "AES256": (Aes256Key, KeyExpansion.Blumenthal),
    "AES192C": (Aes192Key, KeyExpansion.Cisco),
    "AES256C": (Aes256Key, KeyExpansion.Cisco),
    "DES": (DesKey, KeyExpansion.Blumenthal),
}
#: an SNMPv3 fast session re-reads the agent's boots/time after this many idle seconds (the
#: USM time window is 150 s)
FAST_V3_REFRESH = 100.0

#: entPhySensorType -> unit (RFC 3433 EntitySensorDataType)
ENTITY_SENSOR_UNITS = {
    1: "",
    2: "",
    3: "V",
    4: "V",
    5: "A",
    6: "W",
    7: "Hz",
    8: "degC",
    9: "%",
    10: "rpm",
    11: "m3/min",
    12: "",
}
#: entPhySensorScale -> power of ten. RFC 3433 lists exa(14) before peta(15); the exponents
#: of those two are [u] (sources disagree), the others follow the SI prefixes in order.
ENTITY_SENSOR_EXPONENT = {i: 3 * (i - 9) for i in range(1, 18)} | {14: 18, 15: 15}
#: entPhySensorType values whose entPhySensorValue is a fixed-point number (RFC 3433 EntitySensorValue)
ENTITY_SENSOR_FIXED_POINT = {3, 4, 5, 6, 7, 8, 11}
#: EntitySensorValue underflow / overflow error codes (RFC 3433)
ENTITY_SENSOR_RANGE_ERRORS = {-1_000_000_000, 1_000_000_000}


class NoPointsAnswered(PermanentDeviceError):
    """The agent answered, but none of the profile's planned points had a value."""

    kind = "no-points"


# ---------------------------------------------------------------------------- engine


class _SharedEngine:
    def __init__(self) -> None:
        self.engine = SnmpEngine()
        self.users = 0


_ENGINES: dict[asyncio.AbstractEventLoop, _SharedEngine] = {}
#: pysnmp requests in flight per event loop. pysnmp spends milliseconds of CPU per request (v3
#: more, with its discovery); hundreds of first polls started in the same second would all
#: outlast their timeout together and never get going. Waiting for a slot is not part of a
#: request's timeout (the runner skips the slots a slow poll overran).
PYSNMP_IN_FLIGHT = 16
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _pysnmp_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(PYSNMP_IN_FLIGHT)
    return slots


def _acquire_engine() -> Any:
    loop = asyncio.get_running_loop()
    shared = _ENGINES.get(loop)
    if shared is None:
        shared = _ENGINES[loop] = _SharedEngine()
    shared.users += 1
    return shared.engine


def _release_engine(engine: Any) -> None:
    for loop, shared in list(_ENGINES.items()):
        if shared.engine is engine:
            shared.users -= 1
            if shared.users <= 0:
                del _ENGINES[loop]
                _close_engine(engine)
            return


def _close_engine(engine: Any) -> None:
    if engine.transport_dispatcher is not None:
        engine.close_dispatcher()


# ------------------------------------------------------------------------------ plan


def _oid(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.strip(".").split("."))


def _dotted(oid: Iterable[int]) -> str:
    return ".".join(str(x) for x in oid)


@dataclass(frozen=True)
class _Column:
    name: str
    obj: SnmpObject
    oid: tuple[int, ...]
    emit: bool  # False: read for the reader's own use (reset time, entity-sensor metadata)


@dataclass(frozen=True)
class _TablePlan:
    name: str
    table: SnmpTable
    columns: tuple[_Column, ...]
    #: rows wanted per column name; None = all rows (walk)
    rows: dict[str, frozenset[str] | None]

    @property
    def walk(self) -> bool:
        return any(r is None for r in self.rows.values())


@dataclass(frozen=True)
class _Plan:
    profile: SnmpProfile
    scalars: tuple[_Column, ...]
    tables: tuple[_TablePlan, ...]


def compile_plan(
    profile: SnmpProfile,
    points: Sequence[str] | None,
    *,
    device: str = "",
    overrides: dict[str, PointOverride] | None = None,
) -> _Plan:
    """What to read: scalars to GET, tables to walk (or rows to GET), hidden helper columns.

    ``points``: None for everything, else scalar names, column names (all rows) or
    ``column.index`` (one row). Unknown names raise :class:`PermanentDeviceError`.
    ``overrides`` (scalar or column name -> scale/unit) replace the profile's scale and unit.
    """
    ovr = overrides or {}

    def obj_of(name: str, obj: SnmpObject) -> SnmpObject:
        ov = ovr.get(name)
        if ov is None:
            return obj
        return obj.model_copy(update={k: v for k, v in (("scale", ov.scale), ("unit", ov.unit)) if v is not None})

    want_scalars: set[str] = set()
    want_rows: dict[str, set[str] | None] = {}  # column -> rows (None = all)
    if points is None:
        want_scalars = set(profile.scalars)
        for t in profile.tables.values():
            for c in t.columns:
                want_rows[c] = None
    else:
        columns = {c for t in profile.tables.values() for c in t.columns}
        for p in points:
            if p in profile.scalars:
                want_scalars.add(p)
                continue
            col, _, idx = p.partition(".")
            if col not in columns:
                raise PermanentDeviceError(f"{device}: profile {profile.id!r} has no point {p!r}")
            if not idx:
                want_rows[col] = None
            elif want_rows.get(col, set()) is not None:
                picked = want_rows.setdefault(col, set())
                assert picked is not None
                picked.add(idx)
    emitted_scalars = want_scalars - {o.reset_time for o in profile.scalars.values() if o.reset_time is not None}
    for name in list(want_scalars):
        rt = profile.scalars[name].reset_time
        if rt is not None:
            want_scalars.add(rt)
    scalars = tuple(
        _Column(n, obj_of(n, o), _oid(o.oid), n in emitted_scalars)
        for n, o in profile.scalars.items()
        if n in want_scalars
    )
    tables = []
    for tname, table in profile.tables.items():
        emitted = {c for c in table.columns if c in want_rows}
        if not emitted:
            continue
        rows: dict[str, frozenset[str] | None] = {}
        for c in emitted:
            wanted = want_rows[c]
            rows[c] = None if wanted is None else frozenset(wanted)
        for c in sorted(emitted):
            extra = [table.columns[c].reset_time]
            if table.scaling == "entity-sensor":
                extra += [n for n, o in table.columns.items() if o.oid.rsplit(".", 1)[0] == ENTITY_SENSOR_ENTRY]
            for h in extra:
                if h is None or h == c:
                    continue
                mine, theirs = rows.get(h, frozenset()), rows[c]
                rows[h] = None if mine is None or theirs is None else mine | theirs
        # reset-time columns are read to detect user resets, never emitted (they hold dates)
        emitted -= {o.reset_time for o in table.columns.values() if o.reset_time is not None}
        if table.scaling == "entity-sensor":
            # type/scale/precision/status are metadata of the value column, not points
            meta = {n for n, o in table.columns.items() if o.oid != f"{ENTITY_SENSOR_ENTRY}.4"}
            emitted -= meta
        cols = tuple(_Column(n, obj_of(n, o), _oid(o.oid), n in emitted) for n, o in table.columns.items() if n in rows)
        tables.append(_TablePlan(tname, table, cols, rows))
    return _Plan(profile, scalars, tuple(tables))


# ----------------------------------------------------------------------------- values


class _Plain:
    """A value from the fast path: gufo-snmp's plain Python value and the SNMP type pysnmp
    answered for the same OID before (gufo-snmp does not say Counter32 from Integer32)."""

    __slots__ = ("numeric", "type_name", "value")

    def __init__(self, type_name: str, value: Any, numeric: bool) -> None:
        self.type_name = type_name
        self.value = value
        self.numeric = numeric

    def prettyPrint(self) -> str:  # pysnmp's name: the code that shows values calls it
        return str(self.value)


def _fast_value(cls: type, raw: Any) -> Any:
    """gufo-snmp's ``raw`` as the value pysnmp gives for an OID of SNMP type ``cls``; None when
    the two do not match (the request then goes through pysnmp)."""
    if issubclass(cls, _NUMERIC):
        return _Plain(cls.__name__, raw, True) if type(raw) is int else None
    if issubclass(cls, rfc1902.OctetString):
        # strings parse as numbers (or not) and reset dates compare exactly as pysnmp's do
        return cls(raw) if type(raw) is bytes and cls is not rfc1902.IpAddress else None
    if raw is None:
        return None
    return _Plain(cls.__name__, raw, False)  # OIDs, Null, ...: not numeric, whatever the value


def snmp_number(value: Any) -> float | None:
    """A numeric SNMP value as float; OCTET STRINGs that parse as a number; else None."""
    if type(value) is _Plain:
        return float(value.value) if value.numeric else None
    if isinstance(value, _ABSENT):
        return None
    if isinstance(value, _NUMERIC):
        return float(int(value))
    if isinstance(value, rfc1902.OctetString):
        try:
            text = bytes(value).decode("ascii").strip()
            number = float(text)
        except (UnicodeDecodeError, ValueError):
            return None
        return number if math.isfinite(number) else None
    return None


def _type_name(value: Any) -> str:
    return value.type_name if type(value) is _Plain else type(value).__name__


# ----------------------------------------------------------------------------- reader


class SnmpReader:
    """Reads one SNMP agent (implements :class:`pue_monitor.collectors.base.DeviceReader`).

    Attributes for tests, metrics and the CLI: ``requests`` (PDUs sent), ``skipped``
    (OID -> times skipped: absent or non-numeric), ``resets`` (point -> user resets seen
    via its ``reset_time`` object), ``snmp_types`` (point or column -> SNMP type name),
    ``profile`` (the chosen profile; for ``profile: auto`` known after the first read),
    ``wildcard_changes`` (meter wildcard -> polls whose row set differed from the first poll's).
    """

    def __init__(self, device: SnmpDevice, site: LoadedSite, *, clock: Clock | None = None) -> None:
        self.device = device
        self.device_id = device.id
        self.clock: Clock = clock or WallClock()
        self.address = f"{device.host}:{device.port}"
        self._profiles = site.snmp_profiles()
        self.profile: SnmpProfile | None = None
        if device.profile != "auto":
            prof = self._profiles.get(device.profile)
            if prof is None:
                raise PermanentDeviceError(f"{device.id}: unknown snmp profile {device.profile!r}")
            self.profile = prof
        self._plan: _Plan | None = (
            None
            if self.profile is None
            else compile_plan(self.profile, device.points, device=device.id, overrides=device.overrides)
        )
        #: meter power wildcards ``column.*`` summed per poll, and the row set of the first poll
        self._wildcards = [p for p in (device.meter.power_points if device.meter else ()) if is_wildcard(p)]
        self._wild_rows: dict[str, frozenset[str]] = {}
        self._wild_pending: dict[str, tuple[frozenset[str], int]] = {}  # a changed row set, polls seen
        self._answered = 0  # values (or "not available" answers) in the current poll
        # secrets are read once, at start-up (a missing one is a ConfigError there)
        self._base_dir = str(site.base_dir)
        self._auth = self._auth_data()
        self._v3_user = device.v3.user if device.v3 is not None else None
        self._priv_verified = device.v3 is None or device.v3.security_level != "authPriv"
        self._engine: Any = None
        self._target: Any = None
        #: fast path (gufo-snmp, see the module docstring): the pysnmp class of the value each
        #: GET OID last had through pysnmp, OIDs gufo-snmp cannot read, the session and its
        #: credentials (read here, with the others), ObjectTypes and dotted OIDs built once
        self._learned: dict[tuple[int, ...], type] = {}
        self._slow: set[tuple[int, ...]] = set()
        self._fast: SnmpSession | None = None
        self._fast_used = 0.0
        self._fast_able = device.v3 is None or not device.v3.context  # gufo-snmp has no v3 context
        self._fast_user = self._fast_credentials()
        self._varbinds: dict[tuple[int, ...], Any] = {}
        self._keys: dict[tuple[int, ...], str] = {}
        self.requests = 0
        #: requests that went through the fast path (gufo-snmp); included in ``requests``
        self.fast_requests = 0
        self.skipped: Counter[str] = Counter()
        self.resets: Counter[str] = Counter()
        self.snmp_types: dict[str, str] = {}
        self._reset_marks: dict[str, Any] = {}
        self._warned_types: set[str] = set()
        #: polls in which a wildcard's row set differed from the first poll's
        self.wildcard_changes: Counter[str] = Counter()
        #: None, or filled with each point's OID and raw value while reading (`pue read`)
        self.capture: Capture | None = None

    # ------------------------------------------------------------------ setup

    def _auth_data(self, *, probe: bool = False) -> Any:
        d = self.device
        if d.version == "2c":
            community = d.community if isinstance(d.community, str) else d.community.read(self._base_dir)
            return CommunityData(community, mpModel=1)
        v3 = d.v3
        assert v3 is not None  # the model requires it for version 3
        auth_key = v3.auth_key.read(self._base_dir)
        if probe or v3.security_level == "authNoPriv":
            return UsmUserData(v3.user, authKey=auth_key, authProtocol=_AUTH[v3.auth_protocol])
        assert v3.priv_key is not None
        return UsmUserData(
            v3.user,
            authKey=auth_key,
            privKey=v3.priv_key.read(self._base_dir),
            authProtocol=_AUTH[v3.auth_protocol],
            privProtocol=_PRIV[v3.priv_protocol],
        )

    def _fast_credentials(self) -> User | str:
        d = self.device
        if d.version == "2c":
            return d.community if isinstance(d.community, str) else d.community.read(self._base_dir)
        v3 = d.v3
        assert v3 is not None
        auth = _FAST_AUTH[v3.auth_protocol](v3.auth_key.read(self._base_dir).encode())
        if v3.security_level == "authNoPriv":
            return User(v3.user, auth_key=auth)
        assert v3.priv_key is not None
        priv_cls, expansion = _FAST_PRIV[v3.priv_protocol]
        return User(
            v3.user,
            auth_key=auth,
            priv_key=priv_cls(v3.priv_key.read(self._base_dir).encode()),
            key_expansion=expansion,
        )

    def _wall_timeout(self) -> float:
        return self.device.timeout  # wall seconds, whatever the clock's speed

    async def _ensure(self) -> tuple[Any, Any]:
        if self._engine is None:
            self._engine = _acquire_engine()
        if self._target is None:
            # pysnmp's timer ticks every 0.1 s; our own asyncio timeout is the exact one
            try:
                self._target = await UdpTransportTarget.create(
                    (self.device.host, self.device.port), timeout=self._wall_timeout() + 0.5, retries=0
                )
            except PySnmpError:  # the host name does not resolve (DNS may come back: transient)
                raise DeviceUnreachable(
                    f"{self.device_id} ({self.address}): cannot resolve host name {self.device.host!r}"
                ) from None
        return self._engine, self._target

    async def close(self) -> None:
        if self._engine is not None:
            _release_engine(self._engine)
            self._engine = None
            self._target = None
        self._fast = None  # its socket closes with it

    # --------------------------------------------------------------- requests

    async def _request(self, oids: Sequence[tuple[int, ...]], *, bulk: bool) -> tuple[float, list[tuple[Any, Any]]]:
        async with _pysnmp_slots():
            return await self._request_now(oids, bulk=bulk)

    async def _request_now(self, oids: Sequence[tuple[int, ...]], *, bulk: bool) -> tuple[float, list[tuple[Any, Any]]]:
        engine, target = await self._ensure()
        varbinds = [self._varbind(o) for o in oids]
        sent = self.clock.now()
        self.requests += 1
        try:
            async with asyncio.timeout(self._wall_timeout()):
                if bulk:
                    result = await bulk_cmd(
                        engine,
                        self._auth,
                        target,
                        ContextData(contextName=self._context()),
                        0,
                        self.device.max_repetitions,
                        *varbinds,
                        lookupMib=False,
                    )
                else:
                    result = await get_cmd(
                        engine, self._auth, target, ContextData(contextName=self._context()), *varbinds, lookupMib=False
                    )
        except TimeoutError:
            await self._timed_out()
            raise AssertionError("unreachable") from None  # _timed_out always raises
        err_ind, err_status, err_index, vbs = result
        if err_ind:
            if isinstance(err_ind, errind.RequestTimedOut):
                await self._timed_out()
            raise self._map_indication(err_ind)
        if err_status and int(err_status) != 0:
            i = int(err_index) - 1
            where = _dotted(oids[i]) if 0 <= i < len(oids) else f"{len(oids)} OIDs"
            status = err_status.prettyPrint() if hasattr(err_status, "prettyPrint") else str(err_status)
            hint = " (lower max_repetitions)" if status == "tooBig" else ""
            raise PermanentDeviceError(f"{self.device_id} ({self.address}): agent answered {status} for {where}{hint}")
        self._priv_verified = True
        return sent, [(tuple(name), value) for name, value in vbs]

    def _varbind(self, oid: tuple[int, ...]) -> Any:
        """The ObjectType of ``oid``, built once (pysnmp resolves it once, not per request)."""
        vb = self._varbinds.get(oid)
        if vb is None:
            if len(self._varbinds) >= 4 * MAX_ROWS:  # walks of changing tables: keep it bounded
                self._varbinds.clear()
            vb = self._varbinds[oid] = ObjectType(ObjectIdentity(_dotted(oid)))
        return vb

    def _key(self, oid: tuple[int, ...]) -> str:
        key = self._keys.get(oid)
        if key is None:
            key = self._keys[oid] = _dotted(oid)
        return key

    def _fast_ready(self, oids: Sequence[tuple[int, ...]]) -> bool:
        """May this GET go through gufo-snmp? Only once pysnmp has answered every one of its OIDs."""
        if self.capture is not None or not self._fast_able:
            return False
        learned, slow = self._learned, self._slow
        return all(o in learned and o not in slow for o in oids)

    async def _fast_session(self) -> SnmpSession:
        session = self._fast
        if session is None:
            _, target = await self._ensure()
            host = str(target.transport_address[0])  # pysnmp resolved the name
            timeout = self._wall_timeout() + 0.5  # our asyncio timeout is the exact one
            user = self._fast_user
            if isinstance(user, str):
                session = SnmpSession(
                    addr=host, port=self.device.port, community=user, version=SnmpVersion.v2c, timeout=timeout
                )
            else:
                session = SnmpSession(addr=host, port=self.device.port, user=user, timeout=timeout)
                async with asyncio.timeout(self._wall_timeout()):
                    await session.refresh()  # engine id discovery, boots and time
                self._fast_used = time.monotonic()
            self._fast = session
        elif not isinstance(self._fast_user, str) and time.monotonic() - self._fast_used > FAST_V3_REFRESH:
            async with asyncio.timeout(self._wall_timeout()):
                await session.refresh()  # outside the agent's time window otherwise
            self._fast_used = time.monotonic()
        return session

    async def _fast_get(self, oids: Sequence[tuple[int, ...]]) -> tuple[float, list[tuple[Any, Any]]] | None:
        """GET ``oids`` through gufo-snmp, values typed as pysnmp typed them before.

        None when pysnmp must take this request: an error other than a timeout (pysnmp maps
        it), an OID absent that was there or there that was absent (pysnmp says which absent
        kind / which type), a value whose kind differs from before.
        """
        sent = self.clock.now()
        keys = [self._key(o) for o in oids]
        try:
            session = await self._fast_session()
            self.requests += 1
            self.fast_requests += 1
            async with asyncio.timeout(self._wall_timeout()):
                answer = await session.get_many(keys)
        except TimeoutError:
            self._fast = None  # a late answer must not meet the next request: a new socket then
            await self._timed_out()
            raise AssertionError("unreachable") from None  # _timed_out always raises
        except (SnmpError, OSError, ValueError) as exc:
            self._fast = None
            if isinstance(exc, SnmpError) and not isinstance(exc, SnmpAuthError):
                self._slow.update(oids)  # gufo-snmp cannot encode or decode these: pysnmp reads them
                log.info(
                    "device %s (%s): %d OIDs are read through pysnmp from now on (gufo-snmp: %s)",
                    self.device_id,
                    self.address,
                    len(oids),
                    exc,
                )
            else:
                log.debug("device %s (%s): fast path: %s; pysnmp takes the request", self.device_id, self.address, exc)
            return None
        self._fast_used = time.monotonic()
        self._priv_verified = True
        vbs: list[tuple[Any, Any]] = []
        learned = self._learned
        for oid, key in zip(oids, keys, strict=True):
            cls = learned[oid]
            raw = answer.get(key)
            # absent: the same kind of absent as before, else pysnmp says which
            value = _ABSENT_VALUE.get(cls) if raw is None else None if cls in _ABSENT_VALUE else _fast_value(cls, raw)
            if value is None:
                return None
            vbs.append((oid, value))
        return sent, vbs

    def _context(self) -> str:
        return self.device.v3.context if self.device.v3 is not None else ""

    async def _timed_out(self) -> None:
        msg = f"{self.device_id} ({self.address}): no answer within {self.device.timeout:g} s"
        if not self._priv_verified and await self._probe_auth_only():
            raise PermanentDeviceError(
                f"SNMPv3 privacy failed for user {self._v3_user} on {self.address}: the agent answers "
                f"authNoPriv but drops authPriv requests: wrong priv key or priv protocol "
                f"({self.device.v3.priv_protocol if self.device.v3 else ''})?"
            )
        raise DeviceTimeout(msg)

    async def _probe_auth_only(self) -> bool:
        """Does the agent answer an authNoPriv GET with our user and auth key? (own engine)"""
        engine = SnmpEngine()
        try:
            target = await UdpTransportTarget.create(
                (self.device.host, self.device.port), timeout=self._wall_timeout() + 0.5, retries=0
            )
            auth = self._auth_data(probe=True)
            try:
                async with asyncio.timeout(self._wall_timeout()):
                    err_ind, _, _, _ = await get_cmd(
                        engine,
                        auth,
                        target,
                        ContextData(contextName=self._context()),
                        ObjectType(ObjectIdentity(SYS_OBJECT_ID)),
                        lookupMib=False,
                    )
            except TimeoutError:
                return False
            # any authenticated answer (a value or an error status such as authorizationError)
            return not err_ind
        finally:
            _close_engine(engine)

    def _map_indication(self, err: Any) -> Exception:
        user, where = self._v3_user, self.address
        if isinstance(err, errind.WrongDigest | errind.AuthenticationFailure | errind.AuthenticationError):
            return PermanentDeviceError(
                f"SNMPv3 authentication failed for user {user} on {where}: wrong auth key or auth protocol?"
            )
        if isinstance(err, errind.UnknownUserName):
            return PermanentDeviceError(f"SNMPv3 user {user} is unknown to the agent on {where}")
        if isinstance(err, errind.DecryptionError):
            return PermanentDeviceError(
                f"SNMPv3 decryption failed for user {user} on {where}: wrong priv key or priv protocol?"
            )
        if isinstance(err, errind.UnsupportedSecurityLevel):
            return PermanentDeviceError(f"SNMPv3 security level not supported for user {user} on {where}")
        if isinstance(err, errind.UnknownCommunityName):
            return PermanentDeviceError(f"{self.device_id} ({where}): community refused")
        # not in time window, unknown engine id, parse errors: a retry may cure
        return DeviceUnreachable(f"{self.device_id} ({where}): {err}")

    async def _get(self, oids: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], tuple[Any, float]]:
        out: dict[tuple[int, ...], tuple[Any, float]] = {}
        for i in range(0, len(oids), GET_BATCH):
            chunk = oids[i : i + GET_BATCH]
            fast = await self._fast_get(chunk) if self._fast_ready(chunk) else None
            if fast is None:
                sent, vbs = await self._request(chunk, bulk=False)
                for oid, value in vbs:
                    self._learned[oid] = type(value)
            else:
                sent, vbs = fast
            for oid, value in vbs:
                out[oid] = (value, sent)
        return out

    async def _walk(self, columns: Sequence[_Column]) -> dict[str, dict[str, tuple[Any, float]]]:
        """GETBULK all ``columns`` of one table together; rows by column, index string."""
        out: dict[str, dict[str, tuple[Any, float]]] = {c.name: {} for c in columns}
        pending = {c.name: c.oid for c in columns}
        by_name = {c.name: c for c in columns}
        while pending:
            names = list(pending)
            sent, vbs = await self._request([pending[n] for n in names], bulk=True)
            if not vbs:
                raise PermanentDeviceError(f"{self.device_id} ({self.address}): empty GETBULK answer")
            finished: set[str] = set()
            for i, (oid, value) in enumerate(vbs):
                name = names[i % len(names)]
                if name in finished:
                    continue
                base = by_name[name].oid
                if isinstance(value, rfc1905.EndOfMibView) or len(oid) <= len(base) or oid[: len(base)] != base:
                    finished.add(name)
                    continue
                if oid <= pending[name]:
                    raise PermanentDeviceError(
                        f"{self.device_id} ({self.address}): agent returned non-increasing OID {_dotted(oid)}"
                    )
                pending[name] = oid
                out[name][_dotted(oid[len(base) :])] = (value, sent)
                if len(out[name]) > MAX_ROWS:
                    raise PermanentDeviceError(f"{self.device_id}: more than {MAX_ROWS} rows in {_dotted(base)}")
            for name in finished:
                del pending[name]
        return out

    # ------------------------------------------------------------------- read

    async def _resolve_plan(self) -> _Plan:
        if self._plan is not None:
            return self._plan
        got = await self._get([_oid(SYS_OBJECT_ID)])
        value = got.get(_oid(SYS_OBJECT_ID), (None, 0.0))[0]
        if value is None or isinstance(value, _ABSENT):
            raise PermanentDeviceError(f"{self.device_id} ({self.address}): no sysObjectID; set a profile")
        sys_oid = str(value.prettyPrint()) if hasattr(value, "prettyPrint") else str(value)
        best: tuple[int, SnmpProfile] | None = None
        for prof in self._profiles.values():
            for prefix in prof.sys_object_ids:
                p = prefix.strip(".")
                if (sys_oid == p or sys_oid.startswith(p + ".")) and (best is None or len(p) > best[0]):
                    best = (len(p), prof)
        if best is None:
            known = ", ".join(
                f"{p.id} ({', '.join(p.sys_object_ids)})" for p in self._profiles.values() if p.sys_object_ids
            )
            raise PermanentDeviceError(
                f"{self.device_id} ({self.address}): no SNMP profile matches sysObjectID {sys_oid} (known: {known})"
            )
        self.profile = best[1]
        log.info("device %s: sysObjectID %s -> profile %s", self.device_id, sys_oid, self.profile.id)
        self._plan = compile_plan(
            self.profile, self.device.points, device=self.device_id, overrides=self.device.overrides
        )
        return self._plan

    async def read(self) -> list[PointValue]:
        plan = await self._resolve_plan()
        self._answered = 0
        out = await self._read_plan(plan)
        if not self._answered and (plan.scalars or plan.tables):
            planned = sum(c.emit for c in plan.scalars) + sum(c.emit for t in plan.tables for c in t.columns)
            raise NoPointsAnswered(
                f"{self.device_id} ({self.address}): answered none of the {planned} planned points of profile "
                f"{plan.profile.id!r} (all absent or not numeric): is it the right profile for this device?"
            )
        out.extend(self._wildcard_sums(out))
        return out

    def _wildcard_sums(self, values: list[PointValue]) -> list[PointValue]:
        """One reading ``column.*`` per wildcard: the sum of this poll's rows (see module docstring)."""
        out: list[PointValue] = []
        for wild in self._wildcards:
            prefix = wild[:-1]  # "column."
            rows = [v for v in values if v.point.startswith(prefix)]
            if not rows:
                continue
            names = frozenset(v.point for v in rows)
            first = self._wild_rows.setdefault(wild, names)
            quality = Quality.GOOD
            if names != first:
                self.wildcard_changes[wild] += 1
                seen, n = self._wild_pending.get(wild, (names, 0))
                n = n + 1 if seen == names else 1
                self._wild_pending[wild] = (names, n)
                if n >= WILDCARD_ADOPT_POLLS:  # a lasting change (a line added or removed): the new set
                    self._wild_rows[wild] = names
                    del self._wild_pending[wild]
                    log.warning(
                        "device %s: the rows of %s are now %s (were %s for %d polls): summing the new set",
                        self.device_id,
                        wild,
                        sorted(names),
                        sorted(first),
                        n,
                    )
                else:
                    quality = Quality.BAD
                    if n == 1:
                        log.warning(
                            "device %s: the rows of %s changed (%s, now %s): its sum is BAD until the set is "
                            "back or has stayed the same for %d polls",
                            self.device_id,
                            wild,
                            sorted(first),
                            sorted(names),
                            WILDCARD_ADOPT_POLLS,
                        )
            else:
                self._wild_pending.pop(wild, None)
            if any(v.quality is not Quality.GOOD for v in rows):
                quality = Quality.BAD
            total = math.fsum(v.value for v in rows)
            ts = min(v.ts for v in rows if v.ts is not None) if any(v.ts is not None for v in rows) else None
            out.append(PointValue(wild, total, rows[0].unit, quality, ts))
        return out

    async def _read_plan(self, plan: _Plan) -> list[PointValue]:
        gets: list[tuple[int, ...]] = [c.oid for c in plan.scalars]
        for tp in plan.tables:
            if not tp.walk:
                for c in tp.columns:
                    gets.extend(c.oid + _oid(i) for i in sorted(tp.rows[c.name] or ()))
        got = await self._get(gets) if gets else {}
        out: list[PointValue] = []
        for c in plan.scalars:
            value, ts = got.get(c.oid, (None, 0.0))
            if c.obj.reset_time is not None:
                self._check_reset(c.name, c.obj, got.get(_oid(plan.profile.scalars[c.obj.reset_time].oid)))
            if c.emit:
                pv = self._point(c.name, c.obj, c.oid, value, ts)
                if pv is not None:
                    out.append(pv)
        for tp in plan.tables:
            if tp.walk:
                rows = await self._walk(tp.columns)
            else:
                rows = {c.name: {} for c in tp.columns}
                for c in tp.columns:
                    for i in tp.rows[c.name] or ():
                        if (c.oid + _oid(i)) in got:
                            rows[c.name][i] = got[c.oid + _oid(i)]
            out.extend(self._table_points(tp, rows))
        return out

    def _table_points(self, tp: _TablePlan, rows: dict[str, dict[str, tuple[Any, float]]]) -> list[PointValue]:
        out: list[PointValue] = []
        table = tp.table
        meta: dict[int, str] = {}
        if table.scaling == "entity-sensor":
            meta = {int(o.oid.rsplit(".", 1)[1]): n for n, o in table.columns.items()}
        for c in tp.columns:
            if not c.emit:
                continue
            wanted = tp.rows[c.name]
            for index, (value, ts) in sorted(rows.get(c.name, {}).items(), key=lambda kv: _oid(kv[0])):
                if wanted is not None and index not in wanted:
                    continue
                point = f"{c.name}.{index}"
                if c.obj.reset_time is not None:
                    self._check_reset(point, c.obj, rows.get(c.obj.reset_time, {}).get(index))
                tags = table.tags_of(index)
                if table.scaling == "entity-sensor":
                    pv = self._entity_sensor_point(point, c, index, value, ts, rows, meta, tags)
                else:
                    pv = self._point(point, c.obj, c.oid + _oid(index), value, ts, tags)
                if pv is not None:
                    out.append(pv)
        return out

    def _skip(self, oid: tuple[int, ...], why: str) -> None:
        key = _dotted(oid)
        if not self.skipped[key] and self.capture is None:  # with a capture, `pue read` shows it
            log.warning("device %s (%s): skipping %s: %s", self.device_id, self.address, key, why)
        self.skipped[key] += 1

    def _raw(self, point: str, obj: SnmpObject, oid: tuple[int, ...], value: Any) -> float | None:
        raw = None if value is None or isinstance(value, _ABSENT) else snmp_number(value)
        if value is None:
            why = "missing from the answer"
        elif isinstance(value, _ABSENT):
            why = _type_name(value)
        elif raw is None:
            why = f"not numeric ({_type_name(value)})"
        else:
            why = "not available" if raw in obj.missing_values else ""
        if self.capture is not None:
            shown = "" if value is None or isinstance(value, _ABSENT) else f"{_type_name(value)} {value.prettyPrint()}"
            self.capture[point] = RawValue(_dotted(oid), shown, why)
        if raw is None:
            self._skip(oid, why)
            return None
        self._answered += 1
        if why:
            return None  # the device says "not available": expected, not counted
        return raw

    def _note_type(self, point: str, column: str, obj: SnmpObject, value: Any) -> None:
        tname = _type_name(value)
        self.snmp_types[point] = tname
        if tname in ("Counter32", "Counter64") and obj.counter_bits is None and column not in self._warned_types:
            self._warned_types.add(column)
            log.warning(
                "device %s: %s is a %s but its profile sets no counter_bits: set the meter's rollover to %g",
                self.device_id,
                column,
                tname,
                2 ** (32 if tname == "Counter32" else 64) * abs(obj.scale),
            )

    def _point(
        self,
        point: str,
        obj: SnmpObject,
        oid: tuple[int, ...],
        value: Any,
        ts: float,
        tags: tuple[tuple[str, str], ...] = (),
    ) -> PointValue | None:
        raw = self._raw(point, obj, oid, value)
        if raw is None:
            return None
        self._note_type(point, point.split(".", 1)[0], obj, value)
        return PointValue(point, raw * obj.scale, obj.unit, Quality.GOOD, ts, tags)

    def _entity_sensor_point(
        self,
        point: str,
        c: _Column,
        index: str,
        value: Any,
        ts: float,
        rows: dict[str, dict[str, tuple[Any, float]]],
        meta: dict[int, str],
        tags: tuple[tuple[str, str], ...],
    ) -> PointValue | None:
        raw = self._raw(point, c.obj, c.oid + _oid(index), value)
        if raw is None:
            return None

        def col(n: int) -> float | None:
            name = meta.get(n)
            if name is None:
                return None
            v = rows.get(name, {}).get(index)
            return None if v is None else snmp_number(v[0])

        stype, scale, precision, status = col(1), col(2), col(3), col(5)
        exponent = ENTITY_SENSOR_EXPONENT.get(int(scale), 0) if scale is not None else 0
        # RFC 3433 EntitySensorPrecision: 1..9 = decimal places; -8..-1 = number of accurate
        # digits (no shift); 0 = not a fixed-point number
        if precision is not None and 1 <= int(precision) <= 9:
            exponent -= int(precision)
        unit = ENTITY_SENSOR_UNITS.get(int(stype), "") if stype is not None else ""
        quality = Quality.GOOD if status is None or int(status) == 1 else Quality.BAD
        if stype is not None and int(stype) in ENTITY_SENSOR_FIXED_POINT and int(raw) in ENTITY_SENSOR_RANGE_ERRORS:
            quality = Quality.BAD  # underflow / overflow error code, not a measurement
        self._note_type(point, c.name, c.obj, value)
        return PointValue(point, raw * 10.0**exponent * c.obj.scale, unit, quality, ts, tags)

    def _check_reset(self, point: str, obj: SnmpObject, mark: tuple[Any, float] | None) -> None:
        """Count a change of the counter's reset-time object since the previous poll."""
        if obj.reset_time is None or mark is None or isinstance(mark[0], _ABSENT):
            return
        value = mark[0].prettyPrint() if hasattr(mark[0], "prettyPrint") else str(mark[0])
        prev = self._reset_marks.get(point)
        self._reset_marks[point] = value
        if prev is not None and value != prev:
            self.resets[point] += 1
            log.warning(
                "device %s: %s was reset by a user (%s now %r, was %r); the energy between the last "
                "poll and the reset is not known",
                self.device_id,
                point,
                obj.reset_time,
                value,
                prev,
            )
