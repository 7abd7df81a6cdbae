"""Site configuration and device profiles (pydantic v2).

Shape is checked here (``extra="forbid"``, types, ranges, a discriminated union on
``protocol``); meaning that needs the profiles (points exist, units fit the role)
is checked in :mod:`pue_monitor.config.loader`. Bad config is rejected, never repaired:
energy data is audited.
"""

from __future__ import annotations

import enum
import itertools
import math
import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from pue_monitor.collectors.decode import DATA_TYPES, type_max_code


def _nonzero_scale(v: float) -> float:
    if v == 0:
        raise ValueError("scale must not be 0")
    return v


class _Model(BaseModel):
    # no inf/nan anywhere a number is read: ".inf" or ".nan" in YAML is an error, not a value
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- units

#: unit -> (quantity, factor to the pipeline's unit: kW for power, kWh for energy, L for a
#: water volume, L/h for a water flow). Heat meters count in GJ or MJ (1 GJ = 1e9 J / 3.6e6 J/kWh).
UNITS: dict[str, tuple[str, float]] = {
    "W": ("power", 1e-3),
    "kW": ("power", 1.0),
    "MW": ("power", 1e3),
    "Wh": ("energy", 1e-3),
    "kWh": ("energy", 1.0),
    "MWh": ("energy", 1e3),
    "MJ": ("energy", 1e6 / 3.6e6),
    "GJ": ("energy", 1e9 / 3.6e6),
    "L": ("volume", 1.0),
    "m3": ("volume", 1e3),
    "L/h": ("flow", 1.0),
    "m3/h": ("flow", 1e3),
}


# ------------------------------------------------------------------------ profiles


class ProfilePoint(_Model):
    """One value a device serves, as its datasheet describes it."""

    address: Annotated[int, Field(ge=0, le=0xFFFF, description="0-based wire address")]
    function: Literal["holding", "input"] = Field(
        default="holding", description="holding (FC03) or input (FC04) registers"
    )
    type: Literal["u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"]
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = Field(default=1.0, description="value = raw * scale")
    unit: str = Field(default="", examples=["W", "kWh", "degC", "%"])
    description: str = ""
    datasheet: str = Field(default="", description="register number as the datasheet writes it")
    not_available: list[int] = Field(
        default_factory=list,
        description="raw register bit patterns (as one unsigned integer, e.g. 0xFFFFFFFF) meaning 'not "
        "available': such a reading is BAD, never a value; added to the profile's not_available codes",
    )
    encoding: Literal["plain", "pf-four-quadrant"] = Field(
        default="plain",
        description="plain: value = raw * scale; pf-four-quadrant: Schneider's PF float in -2..2 carrying "
        "the quadrant, decoded to a PF in -1..1 (iEM3000 user manual, 'Power factor register format')",
    )

    @property
    def count(self) -> int:
        return DATA_TYPES[self.type][1]

    _scale_nonzero = field_validator("scale")(_nonzero_scale)

    @model_validator(mode="after")
    def _codes_fit(self) -> ProfilePoint:
        top = 1 << (16 * self.count)
        for c in self.not_available:
            if not 0 <= c < top:
                raise ValueError(f"not_available code {c:#x} does not fit a {self.type} ({self.count} registers)")
        return self


class ModbusProfile(_Model):
    """A Modbus device model's register map. YAML under ``pue_monitor/config/profiles``."""

    id: str
    protocol: Literal["modbus"] = "modbus"
    manufacturer: str
    model: str
    source: str = Field(description="where the register map comes from (datasheet, version)")
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    not_available: Literal["type-max"] | None = Field(
        default=None,
        description="type-max: every integer point's largest value (0xFF.. unsigned, 0x7FFF.. signed, per "
        "register width) means 'not available' (ABB A/B series); such a reading is BAD",
    )
    points: dict[str, ProfilePoint]

    def unit_of(self, point: str) -> str | None:
        p = self.points.get(point)
        return None if p is None else p.unit

    def not_available_codes(self, point: str) -> frozenset[int]:
        """Raw bit patterns that make a reading of ``point`` BAD (the point's and the profile's)."""
        p = self.points[point]
        codes = set(p.not_available)
        if self.not_available == "type-max" and (top := type_max_code(p.type)) is not None:
            codes.add(top)
        return frozenset(codes)

    @model_validator(mode="after")
    def _no_overlap(self) -> ModbusProfile:
        spans = sorted((p.function, p.address, p.address + p.count, name) for name, p in self.points.items())
        for a, b in itertools.pairwise(spans):
            if a[0] == b[0] and b[1] < a[2]:
                raise ValueError(f"points {a[3]!r} and {b[3]!r} overlap at {a[0]} register {b[1]}")
        return self


class SnmpObject(_Model):
    """One SNMP object (a scalar, or a column of a table)."""

    oid: Annotated[str, Field(pattern=r"^\.?[0-9]+(\.[0-9]+)*$", description="numeric OID")]
    scale: float = Field(default=1.0, description="value = raw * scale")
    unit: str = ""
    description: str = ""
    #: Counter32 / Counter64 wrap at 2**32 / 2**64 (the SNMP type says which); "reset_time"
    #: names a sibling object that changes when a user resets the counter (APC PowerNet)
    reset_time: str | None = Field(default=None, description="sibling column/scalar holding the reset time")
    counter_bits: Literal[32, 64] | None = Field(
        default=None,
        description="the MIB type is Counter32/Counter64: the value wraps at 2**bits * scale (the meter's "
        "default rollover, see SnmpProfile.rollover_of)",
    )
    missing_values: list[int] = Field(
        default_factory=list, description="raw values meaning 'not available' (e.g. APC answers -1); skipped"
    )

    @field_validator("oid")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.lstrip(".")

    _scale_nonzero = field_validator("scale")(_nonzero_scale)

    @property
    def rollover(self) -> float | None:
        """Counter value (after scale, in ``unit``) at which it wraps to 0, from ``counter_bits``."""
        return None if self.counter_bits is None else float(2**self.counter_bits) * abs(self.scale)


#: ENTITY-SENSOR-MIB (RFC 3433) entPhySensorEntry columns the reader needs for per-row scaling
ENTITY_SENSOR_ENTRY = "1.3.6.1.2.1.99.1.1.1"


class SnmpTable(_Model):
    """A table walked with GETBULK; each row becomes points ``<column>.<index>`` tagged
    ``<index_tag>=<index>`` (e.g. ``outlet_power.12`` with ``outlet=12``).

    An index of several components (``column.1.3``: e.g. PDU 1, outlet 3) gets one joined tag
    (``index_tag: outlet`` -> ``outlet=1.3``) or, with a list of names, one tag per component
    (``index_tag: [pdu, outlet]`` -> ``pdu=1, outlet=3``). A row whose index has another number of
    components than the list names keeps the joined index under the names joined with ``_``
    (``pdu_outlet=1.3.7``), so nothing is dropped and nothing is mislabelled."""

    index_tag: str | list[str] = Field(
        description="tag name for the row index (e.g. phase, outlet, sensor), or one name per index component"
    )
    columns: dict[str, SnmpObject]
    scaling: Literal["profile", "entity-sensor"] = Field(
        default="profile",
        description="profile: value = raw * column scale; entity-sensor: ENTITY-SENSOR-MIB rows carry their "
        "own type (unit), scale (SI prefix) and precision (decimals), read from the same row",
    )

    def tags_of(self, index: str) -> tuple[tuple[str, str], ...]:
        """Tags of the row ``index`` (see the class docstring)."""
        if isinstance(self.index_tag, str):
            return ((self.index_tag, index),)
        parts = index.split(".")
        if len(parts) != len(self.index_tag):
            return (("_".join(self.index_tag), index),)
        return tuple(zip(self.index_tag, parts, strict=True))

    @field_validator("index_tag")
    @classmethod
    def _tag_names(cls, v: str | list[str]) -> str | list[str]:
        names = [v] if isinstance(v, str) else v
        if not names or any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names):
            raise ValueError("index_tag: one name or a non-empty list of names (letters, digits, _)")
        if len(set(names)) != len(names):
            raise ValueError("index_tag: names must differ")
        return v

    @model_validator(mode="after")
    def _entity_sensor_columns(self) -> SnmpTable:
        if self.scaling == "entity-sensor":
            oids = {c.oid for c in self.columns.values()}
            need = {f"{ENTITY_SENSOR_ENTRY}.{i}" for i in (1, 2, 3, 4)}
            if not need <= oids:
                missing = ", ".join(sorted(need - oids))
                raise ValueError(f"scaling entity-sensor needs the entPhySensorTable columns {missing}")
        return self


class SnmpProfile(_Model):
    """An SNMP device model: scalars (GET) and tables (bulk walk). YAML under profiles/."""

    id: str
    protocol: Literal["snmp"]
    manufacturer: str
    model: str
    source: str = Field(description="MIB and version the OIDs come from")
    sys_object_ids: list[str] = Field(
        default_factory=list, description="sysObjectID prefixes that select this profile automatically"
    )
    scalars: dict[str, SnmpObject] = Field(default_factory=dict)
    tables: dict[str, SnmpTable] = Field(default_factory=dict)

    def is_column(self, name: str) -> bool:
        """Is ``name`` (without a row index) a table column of this profile?"""
        return any(name in t.columns for t in self.tables.values())

    def _object(self, point: str) -> SnmpObject | None:
        if point in self.scalars:
            return self.scalars[point]
        column = point.split(".", 1)[0]
        for table in self.tables.values():
            if column in table.columns:
                return table.columns[column]
        return None

    def unit_of(self, point: str) -> str | None:
        """Unit of a scalar ``name`` or a table point ``column.index`` (or bare column)."""
        obj = self._object(point)
        return None if obj is None else obj.unit

    def rollover_of(self, point: str) -> float | None:
        """Default meter rollover of an energy point: ``2**counter_bits * scale`` (None: not a counter)."""
        obj = self._object(point)
        return None if obj is None else obj.rollover

    @property
    def points(self) -> dict[str, SnmpObject]:
        """Scalars and table columns by name (table columns stand for all their rows)."""
        out = dict(self.scalars)
        for table in self.tables.values():
            out.update(table.columns)
        return out

    @model_validator(mode="after")
    def _names_unique(self) -> SnmpProfile:
        seen = set(self.scalars)
        for table in self.tables.values():
            dup = seen & set(table.columns)
            if dup:
                raise ValueError(f"point names used twice: {', '.join(sorted(dup))}")
            seen |= set(table.columns)
        if any("." in n for n in seen):
            raise ValueError("point names must not contain '.' (it separates a column from its row index)")
        for name, obj in self.scalars.items():
            if obj.reset_time is not None and obj.reset_time not in self.scalars:
                raise ValueError(f"{name}: reset_time {obj.reset_time!r} is not a scalar of this profile")
        for tname, table in self.tables.items():
            for name, obj in table.columns.items():
                if obj.reset_time is not None and obj.reset_time not in table.columns:
                    raise ValueError(f"{name}: reset_time {obj.reset_time!r} is not a column of table {tname!r}")
        return self


def _profile_protocol(v: Any) -> str:
    # profiles written before SNMP support have no `protocol:`: they are Modbus
    return str(v.get("protocol", "modbus")) if isinstance(v, dict) else str(getattr(v, "protocol", "modbus"))


Profile = Annotated[
    Annotated[ModbusProfile, Tag("modbus")] | Annotated[SnmpProfile, Tag("snmp")],
    Discriminator(_profile_protocol),
]


# --------------------------------------------------------------------------- secrets


class Secret(_Model):
    """A secret read at start-up from an environment variable or a file, never from the YAML.

    The value is never logged or printed; errors name the variable or file only.
    """

    env: str | None = Field(default=None, description="environment variable holding the secret")
    file: str | None = Field(default=None, description="file holding the secret (trailing newline dropped)")

    @model_validator(mode="after")
    def _one(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def read(self, base_dir: str | None = None) -> str:
        import os
        from pathlib import Path

        from pue_monitor.errors import ConfigError
        from pue_monitor.logs import register_secret

        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"environment variable {self.env} (a secret) is not set")
            if not value:
                raise ConfigError(f"environment variable {self.env} (a secret) is empty")
            register_secret(value)
            return value
        assert self.file is not None
        path = Path(self.file)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read secret file: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: secret file is not UTF-8 text") from None
        if not value:
            raise ConfigError(f"{path}: secret file is empty")
        register_secret(value)  # from now on redacted from every log line
        return value

    def __repr__(self) -> str:  # never the value: there is none here, only where it lives
        return f"Secret(env={self.env!r})" if self.env else f"Secret(file={self.file!r})"


# ---------------------------------------------------------------------- energy model


class Role(enum.StrEnum):
    """Where a meter sits in the ISO/IEC 30134-2 energy model, or which companion KPI it feeds.

    The last three are NOT part of E_DC or E_IT (they never change PUE): ``water`` (site water,
    a volume: WUE, ISO/IEC 30134-9), ``heat_reuse`` (heat exported for reuse: ERF, ISO/IEC
    30134-6), ``renewable`` (renewable energy supplied to the DC, part of E_DC: REF, ISO/IEC
    30134-3, and the zero-carbon share of CUE, ISO/IEC 30134-8).
    """

    FACILITY_INPUT = "facility_input"  # utility incomers, generators: E_DC
    IT = "it"  # E_IT
    COOLING = "cooling"
    POWER_DISTRIBUTION = "power_distribution"
    LIGHTING = "lighting"
    OTHER = "other"
    WATER = "water"
    HEAT_REUSE = "heat_reuse"
    RENEWABLE = "renewable"


SUBSYSTEMS = (Role.COOLING, Role.POWER_DISTRIBUTION, Role.LIGHTING, Role.OTHER)
#: roles of the companion KPI meters: outside the PUE energy model
KPI_ROLES = (Role.WATER, Role.HEAT_REUSE, Role.RENEWABLE)


class ITLocation(enum.StrEnum):
    """Where an IT meter measures; fixes the ISO/IEC 30134-2 measurement category."""

    UPS_OUTPUT = "ups_output"  # category 1 (basic)
    PDU_OUTPUT = "pdu_output"  # category 2 (intermediate)
    IT_EQUIPMENT_INPUT = "it_equipment_input"  # category 3 (advanced)

    @property
    def category(self) -> int:
        return {"ups_output": 1, "pdu_output": 2, "it_equipment_input": 3}[self.value]


#: Default physically possible maximum power of a meter by role (kW), used when the meter does
#: not set ``max_power_kw``. Deliberately loose — they only catch readings no real meter of that
#: place can produce (a 1e9 spike, a garbage register); set the meter's rating for tighter checks.
#: facility_input: the largest single data-centre utility connections are a few hundred MW
#: (hyperscale campuses, 132 kV and above): 500 MW. Every other meter sits behind the incomer on
#: one hall's or one plant's distribution: 100 MW. Lone zeros, low values and spikes that fall
#: back are caught by the trajectory rule whatever the limit (pipeline/energy.py).
DEFAULT_MAX_POWER_KW: dict[Role, float] = {
    Role.FACILITY_INPUT: 500_000.0,
    Role.IT: 100_000.0,
    Role.COOLING: 100_000.0,
    Role.POWER_DISTRIBUTION: 100_000.0,
    Role.LIGHTING: 100_000.0,
    Role.OTHER: 100_000.0,
    # heat exported / renewable supply: bounded by the facility's own scale
    Role.HEAT_REUSE: 500_000.0,
    Role.RENEWABLE: 500_000.0,
    # water: L/h (see Meter.max_flow_l_per_h): 10,000 m3/h, far above any site's make-up water
    Role.WATER: 1e7,
}


class Meter(_Model):
    """The device's part in the energy model."""

    role: Role
    it_location: ITLocation | None = Field(
        default=None, description="required for role 'it': ups_output, pdu_output or it_equipment_input"
    )
    energy: str | list[str] | None = Field(
        default=None,
        description="point holding the cumulative energy counter, or a list of counters the meter's energy "
        "is the sum of (one series each: a reset of one is judged on its own)",
    )
    power: str | list[str] | None = Field(
        default=None,
        description="point holding active power, or a list summed (e.g. [output_power.1, output_power.2, "
        "output_power.3]), or one SNMP table column with the wildcard row '*' (output_power.*): the "
        "collector sums the rows of each poll into one reading, BAD when the set of rows changed",
    )
    volume: str | list[str] | None = Field(
        default=None,
        description="role 'water' only: point holding the cumulative water volume counter (unit L or m3), "
        "or a list summed; judged like an energy counter (rollover, reset, gaps)",
    )
    flow: str | list[str] | None = Field(
        default=None,
        description="role 'water' only: point holding the water flow (L/h or m3/h), or a list summed; "
        "integrated (estimated) when there is no volume counter",
    )
    rollover: float | None = Field(
        default=None,
        gt=0,
        description="counter value (in the point's unit, after scale) at which it wraps to 0 (each listed "
        "counter wraps on its own)",
    )
    max_flow_l_per_h: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="role 'water' only: physically possible maximum flow, L/h (an increment implying more "
        "is a glitch); default 1e7 L/h",
    )
    max_power_kw: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="physically possible maximum power of the meter, kW (an increment implying more "
        "is a glitch); default by role, see DEFAULT_MAX_POWER_KW",
    )
    resolution: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="energy register resolution in the point's unit (after scale): backwards steps "
        "within it are jitter, not resets; default 0 (plus two float32 ulps of the value)",
    )
    parent: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="device id of the electricity meter upstream of this one (meter hierarchy): the "
        "parent's energy is checked against the sum of its sub-meters (see the site's balance: section)",
    )

    @property
    def max_power(self) -> float:
        """``max_power_kw`` (``max_flow_l_per_h`` for water) or the default for the meter's role
        (kW; L/h for water: the pipeline's rate unit of the meter's quantity)."""
        own = self.max_flow_l_per_h if self.role is Role.WATER else self.max_power_kw
        return own if own is not None else DEFAULT_MAX_POWER_KW[self.role]

    @property
    def counter_field(self) -> str:
        """Name of the field holding the meter's counter points (``volume`` for water)."""
        return "volume" if self.role is Role.WATER else "energy"

    @property
    def rate_field(self) -> str:
        """Name of the field holding the meter's rate points (``flow`` for water)."""
        return "flow" if self.role is Role.WATER else "power"

    @model_validator(mode="after")
    def _check(self) -> Meter:
        if self.role is Role.WATER:
            if self.energy is not None or self.power is not None or self.max_power_kw is not None:
                raise ValueError("a water meter counts 'volume' (L or m3) and 'flow', not energy or power")
            if self.volume is None and self.flow is None:
                raise ValueError("a water meter needs a 'volume' counter point, a 'flow' point, or both")
            if self.rollover is not None and self.volume is None:
                raise ValueError("rollover applies to a volume counter; set 'volume' too")
        elif self.volume is not None or self.flow is not None or self.max_flow_l_per_h is not None:
            raise ValueError(f"volume, flow and max_flow_l_per_h are for role 'water' only, not {self.role.value!r}")
        if self.role is Role.IT and self.it_location is None:
            raise ValueError("role 'it' needs it_location: ups_output, pdu_output or it_equipment_input")
        if self.role is not Role.IT and self.it_location is not None:
            raise ValueError(f"it_location is only for role 'it', not {self.role.value!r}")
        if self.role is not Role.WATER and self.energy is None and self.power is None:
            raise ValueError("a meter needs an 'energy' counter point, a 'power' point, or both")
        if self.role is not Role.WATER and self.rollover is not None and self.energy is None:
            raise ValueError("rollover applies to an energy counter; set 'energy' too")
        for field in ("energy", "power", "volume", "flow"):
            value = getattr(self, field)
            names = [value] if isinstance(value, str) else (value or [])
            if isinstance(value, list) and not value:
                raise ValueError(f"{field}: an empty list; give one point or several")
            if len(set(names)) != len(names):
                raise ValueError(f"{field}: a point is listed twice (it would be counted twice)")
            for n in names:
                if "*" not in n:
                    continue
                if field in ("energy", "volume"):
                    raise ValueError(
                        f"{field}: {n!r}: a wildcard would sum counter rows in the collector, where a reset "
                        "or rollover of one row would be booked wrong; list the rows (e.g. [col.1, col.2])"
                    )
                col, _, idx = n.partition(".")
                if idx != "*" or not col or len(names) != 1:
                    raise ValueError(f"{field}: {n!r}: a wildcard is one table column with the row '*', alone")
        return self

    @property
    def energy_points(self) -> tuple[str, ...]:
        """The counter points whose sum is the meter's energy (water: volume) (empty: none)."""
        return _points(self.volume if self.role is Role.WATER else self.energy)

    @property
    def power_points(self) -> tuple[str, ...]:
        """The rate points whose sum is the meter's power (water: flow) (a wildcard ``col.*`` is one point)."""
        return _points(self.flow if self.role is Role.WATER else self.power)


def _points(v: str | list[str] | None) -> tuple[str, ...]:
    return () if v is None else (v,) if isinstance(v, str) else tuple(v)


def is_wildcard(point: str) -> bool:
    """``column.*``: the sum of all rows of an SNMP table column, made by the collector."""
    return point.endswith(".*")


def _range_of(v: tuple[float, float] | None) -> tuple[float, float] | None:
    if v is not None and not v[0] < v[1]:
        raise ValueError(f"range [{v[0]}, {v[1]}]: the low end must be below the high end")
    return v


#: a point's plausible values ``[lo, hi]`` in its unit (after scale); outside is a sensor fault
_Finite = Annotated[float, Field(allow_inf_nan=False)]
PointRange = Annotated[tuple[_Finite, _Finite], AfterValidator(_range_of)]


class PointOverride(_Model):
    """A device's correction of one profile point (a device that reports in tenths against its MIB),
    or its plausible range."""

    scale: float | None = Field(default=None, description="replaces the profile's scale: value = raw * scale")
    unit: str | None = Field(default=None, description="replaces the profile's unit")
    range: PointRange | None = Field(
        default=None,
        description="[lo, hi]: plausible values in the point's unit (after scale); a reading outside is an "
        "out_of_range sensor fault",
    )

    @model_validator(mode="after")
    def _something(self) -> PointOverride:
        if self.scale is None and self.unit is None and self.range is None:
            raise ValueError("an override needs scale, unit, range or some of them")
        if self.scale is not None and (self.scale == 0 or not math.isfinite(self.scale)):
            raise ValueError("scale must be finite and not 0")
        return self


# --------------------------------------------------------------------------- devices


class _DeviceBase(_Model):
    """A polled device."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="unique device id")]
    interval: float = Field(default=60.0, ge=0.1, le=86400, description="poll interval, seconds (0.1 .. 86400)")
    timeout: float = Field(
        default=2.0, ge=0.01, le=600, description="per-request timeout, seconds (0.01 .. 600, below interval)"
    )
    retries: int = Field(default=2, ge=0, le=10, description="retries within one poll")
    profile: str = Field(description="profile id (see `pue profiles`)")
    points: list[str] | None = Field(default=None, description="points to read; default all points of the profile")
    overrides: dict[str, PointOverride] = Field(
        default_factory=dict,
        description="per point (Modbus point, SNMP scalar or table column): scale and/or unit replacing the "
        "profile's, for devices that report against their datasheet or MIB",
    )
    meter: Meter | None = None

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> _DeviceBase:
        if self.timeout >= self.interval:
            raise ValueError(f"timeout ({self.timeout} s) must be shorter than interval ({self.interval} s)")
        return self


class ModbusDevice(_DeviceBase):
    """A Modbus TCP device (or one unit id behind a Modbus TCP gateway)."""

    protocol: Literal["modbus"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    max_registers_per_request: int | None = Field(
        default=None, ge=1, le=125, description="cap per request; default the profile's"
    )
    request_pause: float = Field(default=0.0, ge=0, le=10, description="pause between requests, seconds (0 .. 10)")
    one_register_per_request: bool = Field(
        default=False, description="read each point on its own (meters that reject block reads)"
    )


class SnmpV3(_Model):
    """SNMPv3 user (USM). Keys come from env variables or files, never from the YAML."""

    user: str
    security_level: Literal["authPriv", "authNoPriv"] = "authPriv"
    auth_protocol: Literal["SHA", "SHA224", "SHA256", "SHA384", "SHA512", "MD5"] = "SHA"
    auth_key: Secret
    priv_protocol: Literal["AES", "AES192", "AES256", "AES192C", "AES256C", "DES"] = Field(
        default="AES",
        description="AES192/AES256: Blumenthal key extension (net-snmp's names); AES192C/AES256C: Reeder "
        "key extension (Cisco and others)",
    )
    priv_key: Secret | None = None
    context: str = ""

    @model_validator(mode="after")
    def _priv(self) -> SnmpV3:
        if self.security_level == "authPriv" and self.priv_key is None:
            raise ValueError("security_level authPriv needs priv_key (env or file)")
        return self


class SnmpDevice(_DeviceBase):
    """An SNMP agent (UPS, rack PDU, sensor hub). ``profile: auto`` picks one by sysObjectID."""

    protocol: Literal["snmp"]
    host: str
    port: int = Field(default=161, ge=1, le=65535)
    version: Literal["2c", "3"] = "2c"
    community: str | Secret = Field(default="public", description="v2c community (a string or a Secret)")
    v3: SnmpV3 | None = None
    max_repetitions: int = Field(default=25, ge=1, le=200, description="GETBULK max-repetitions")

    @model_validator(mode="after")
    def _version(self) -> SnmpDevice:
        if self.version == "3" and self.v3 is None:
            raise ValueError("version '3' needs a v3: section (user, auth_key, priv_key)")
        if self.version == "2c" and self.v3 is not None:
            raise ValueError("a v3: section needs version: '3'")
        return self


class MqttPoint(_Model):
    """How one value is taken from a message payload."""

    point: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    path: str | None = Field(
        default=None,
        description="JSON field path (dots and [n], e.g. data.temp or values[0]); None: the payload is a number",
    )
    unit: str = ""
    scale: float = 1.0
    range: PointRange | None = Field(
        default=None,
        description="[lo, hi]: plausible values in the point's unit (after scale); a reading outside is an "
        "out_of_range sensor fault",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else _json_path(v)

    @field_validator("scale")
    @classmethod
    def _scale_finite(cls, v: float) -> float:
        if v == 0 or not math.isfinite(v):
            raise ValueError("scale must be finite and not 0")
        return v


#: a JSON path: keys separated by dots, list indexes in brackets (``data.values[0].v``)
_JSON_PATH = re.compile(r"(?:[^.\[\]]+|\[\d+\])(?:\.[^.\[\]]+|\[\d+\])*")


def _json_path(v: str) -> str:
    if not _JSON_PATH.fullmatch(v):
        raise ValueError(f"bad JSON path {v!r} (use dots and [n], e.g. data.values[0].temp)")
    return v


class MqttSubscription(_Model):
    topic: str = Field(description="topic filter, MQTT wildcards + and # allowed", examples=["site/+/power"])
    qos: Literal[0, 1, 2] = 1
    points: list[MqttPoint] = Field(min_length=1)
    timestamp: str | None = Field(
        default=None,
        description="JSON path of the sample time (epoch s or ms, told apart by magnitude, or ISO 8601); "
        "default: arrival time. A message without it is rejected.",
    )

    @field_validator("topic")
    @classmethod
    def _filter(cls, v: str) -> str:
        levels = v.split("/")
        if not v or "\0" in v or len(v.encode()) > 65535:
            raise ValueError("topic filter must be 1..65535 bytes without NUL")
        for i, level in enumerate(levels):
            if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
                raise ValueError(f"bad topic filter {v!r}: '+' must fill a level, '#' only as the last level")
        return v

    @field_validator("timestamp")
    @classmethod
    def _ts_path(cls, v: str | None) -> str | None:
        return None if v is None else _json_path(v)


class MqttDevice(_Model):
    """Values pushed over MQTT as JSON or plain numbers."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    protocol: Literal["mqtt"]
    subscriptions: list[MqttSubscription] = Field(min_length=1)
    interval: float = Field(
        default=60.0, ge=0.1, le=86400, description="expected update period, seconds (staleness; 0.1 .. 86400)"
    )
    meter: Meter | None = None

    def unit_of(self, point: str) -> str | None:
        for s in self.subscriptions:
            for p in s.points:
                if p.point == point:
                    return p.unit
        return None


class SparkplugDevice(_Model):
    """A Sparkplug B edge node (or one device behind it). Metric names come from the births."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    protocol: Literal["sparkplug"]
    group: str
    edge_node: str
    device: str | None = Field(
        default=None,
        description="Sparkplug device id: only its metrics. None: the node's own metrics and those of every "
        "device behind it, the latter tagged sparkplug_device=<device id>",
    )
    metrics: dict[str, MqttPoint] = Field(
        default_factory=dict,
        description="metric name -> point (path is not used); unlisted metrics become points named after "
        "the metric, lower case, other characters as '_' ('Supply Temp' -> supply_temp)",
    )
    interval: float = Field(
        default=60.0, ge=0.1, le=86400, description="expected update period, seconds (staleness; 0.1 .. 86400)"
    )
    meter: Meter | None = None

    def unit_of(self, point: str) -> str | None:
        for p in self.metrics.values():
            if p.point == point:
                return p.unit
        return None

    @field_validator("group", "edge_node", "device")
    @classmethod
    def _topic_level(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/+#")):
            raise ValueError(f"{v!r}: a Sparkplug id is one non-empty topic level without '/', '+' or '#'")
        return v


class ImportDevice(_Model):
    """A meter known only from building-management exports (``pue ingest-csv``); never polled.

    Its points are the meter's ``energy`` and/or ``power`` names; their units default to kWh and
    kW (``units`` overrides, e.g. ``{energy: MWh}``): readings are stored in the point's unit.
    """

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    protocol: Literal["import"]
    interval: float = Field(
        default=900.0, gt=0, description="expected spacing of the export's rows, seconds (gaps above 2.5x are flagged)"
    )
    meter: Meter
    units: dict[str, str] = Field(default_factory=dict, description="point -> unit; default kWh (energy), kW (power)")

    def unit_of(self, point: str) -> str | None:
        if point in self.units:
            return self.units[point]
        water = self.meter.role is Role.WATER
        if point in self.meter.energy_points:
            return "L" if water else "kWh"
        if point in self.meter.power_points:
            return "L/h" if water else "kW"
        return None

    @field_validator("units")
    @classmethod
    def _known_units(cls, v: dict[str, str]) -> dict[str, str]:
        for point, unit in v.items():
            if unit not in UNITS:
                raise ValueError(f"point {point!r}: unit {unit!r} is not one of {', '.join(UNITS)}")
        return v


Device = Annotated[
    ModbusDevice | SnmpDevice | MqttDevice | SparkplugDevice | ImportDevice, Field(discriminator="protocol")
]


class MqttTls(_Model):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = Field(default=False, description="skip hostname verification (test rigs only)")

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        return self


class MqttBroker(_Model):
    """The site's MQTT broker (for mqtt and sparkplug devices)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="pue-monitor", description="stable id: the broker keeps our session by it")
    username: str | None = None
    password: Secret | None = None
    tls: MqttTls | None = None
    keepalive: int = Field(default=30, ge=5, le=65535, description="seconds (MQTT allows at most 65535)")
    session_expiry: int = Field(
        default=86400,
        ge=0,
        le=0xFFFFFFFF,
        description="seconds the broker keeps our session (and QoS 1 messages) while away (MQTT 5; "
        "MQTT 3.1.1 brokers keep a persistent session until their own limit)",
    )
    queue_messages: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="QoS 0 messages held waiting for processing; more are dropped and counted per topic",
    )
    queue_bytes: int = Field(
        default=64 * 2**20,
        ge=2**16,
        le=2**32,
        description="payload bytes of QoS 0 messages held waiting for processing; more are dropped and counted",
    )
    receive_maximum: int = Field(
        default=100,
        ge=1,
        le=65535,
        description="QoS 1 messages the broker may send before we acknowledge them (MQTT 5 Receive Maximum): "
        "under overload the broker holds the rest (back-pressure)",
    )

    @model_validator(mode="after")
    def _credentials(self) -> MqttBroker:
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


# --------------------------------------------------------------------- cooling plant
# Free-cooling (economiser) model: defaults and sources from docs/domain.md "Free cooling",
# tagged [c] confirmed, [s] secondary source, [u] engineering judgement.


class PointRef(_Model):
    """One point of one configured device (like a meter's points, but named from outside it)."""

    device: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="device id")]
    point: Annotated[str, Field(min_length=1, description="point name of that device")]


class CoolingPoints(_Model):
    """Which weather and plant points feed the free-cooling model."""

    outdoor_temperature: PointRef | None = Field(default=None, description="outdoor dry-bulb, °C")
    relative_humidity: PointRef | None = Field(default=None, description="outdoor relative humidity, %")
    pressure: PointRef | None = Field(
        default=None, description="station pressure, hPa; default: standard atmosphere at the site altitude"
    )
    chiller_power: PointRef | None = Field(default=None, description="chiller plant power (live state)")
    economiser_mode: PointRef | None = Field(default=None, description="economiser valve/mode status (live state)")


class Envelope(_Model):
    """Allowed IT inlet air (ASHRAE TC 9.9 thermal guidelines). Presets: ``recommended`` and ``a1``."""

    min_c: float = Field(ge=-10, le=60, description="lowest IT inlet dry-bulb, °C")
    max_c: float = Field(ge=-10, le=60, description="highest IT inlet dry-bulb, °C")
    dew_point_min_c: float | None = Field(default=None, ge=-60, le=40, description="lowest dew point, °C")
    dew_point_max_c: float | None = Field(default=None, ge=-60, le=40, description="highest dew point, °C")
    rh_min_pct: float | None = Field(default=None, ge=0, le=100, description="lowest RH at the inlet, %")
    rh_max_pct: float | None = Field(default=None, ge=0, le=100, description="highest RH at the inlet, %")

    @model_validator(mode="after")
    def _order(self) -> Envelope:
        for lo, hi in (("min_c", "max_c"), ("dew_point_min_c", "dew_point_max_c"), ("rh_min_pct", "rh_max_pct")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a >= b:
                raise ValueError(f"{lo} ({a}) must be below {hi} ({b})")
        return self


#: ASHRAE recommended: 18-27 °C, dew point -9 to 15 °C, RH <= 60 % [c] (domain.md)
ENVELOPE_RECOMMENDED = Envelope(min_c=18.0, max_c=27.0, dew_point_min_c=-9.0, dew_point_max_c=15.0, rh_max_pct=60.0)
#: ASHRAE class A1 allowable: 15-32 °C, 8-80 % RH, dew point <= 17 °C [u] (domain.md)
ENVELOPE_A1 = Envelope(min_c=15.0, max_c=32.0, dew_point_max_c=17.0, rh_min_pct=8.0, rh_max_pct=80.0)
ENVELOPES = {"recommended": ENVELOPE_RECOMMENDED, "a1": ENVELOPE_A1}


class _EconomiserBase(_Model):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="unique economiser id")]


class _ChilledWater(_EconomiserBase):
    #: chilled-water set points, °C: elevated for a modern DC, as the simulator's plant [u]
    chw_supply_c: float = Field(default=15.0, ge=0, le=40, description="chilled-water supply set point, °C")
    chw_return_c: float = Field(default=21.0, ge=0, le=50, description="chilled-water return, °C")

    @model_validator(mode="after")
    def _chw(self) -> _ChilledWater:
        if self.chw_return_c <= self.chw_supply_c:
            raise ValueError(f"chw_return_c ({self.chw_return_c}) must be above chw_supply_c ({self.chw_supply_c})")
        return self


class WaterSideEconomiser(_ChilledWater):
    """Cooling tower + plate heat exchanger: full when T_wb + tower + HX approach <= CHW supply,
    partial while that sum < CHW return [s]."""

    type: Literal["water_side"]
    tower_approach_k: float = Field(default=4.0, ge=0, le=20, description="tower approach, K (3-5 K at design [s]/[u])")
    hx_approach_k: float = Field(default=2.0, ge=0, le=20, description="plate HX approach, K (1-3 K [s]/[u])")


class DryCoolerEconomiser(_ChilledWater):
    """Dry cooler: full when T_db + dry-cooler approach (+ HX approach) <= CHW supply [s]/[u]."""

    type: Literal["dry_cooler"]
    dry_cooler_approach_k: float = Field(
        default=5.0, ge=0, le=30, description="dry-cooler approach to dry-bulb, K (3-6 K [s]/[u])"
    )
    hx_approach_k: float = Field(
        default=0.0, ge=0, le=20, description="plate HX approach, K, when a HX separates glycol and CHW (1-3 K)"
    )


class _AirSide(_EconomiserBase):
    #: supply-air set point: inside the recommended 18-27 °C [u]
    supply_air_c: float = Field(default=24.0, ge=5, le=45, description="supply-air set point, °C")
    #: return air: supply + ~12 K across the IT [u]
    return_air_c: float = Field(default=36.0, ge=10, le=60, description="return-air temperature, °C")
    fan_heat_k: float = Field(default=1.0, ge=0, le=5, description="supply fan temperature rise, K (0.5-1 K [u])")

    @model_validator(mode="after")
    def _air(self) -> _AirSide:
        if self.return_air_c <= self.supply_air_c:
            raise ValueError(f"return_air_c ({self.return_air_c}) must be above supply_air_c ({self.supply_air_c})")
        return self


class DirectAirEconomiser(_AirSide):
    """Direct outside air: full when T_db <= supply-air set point - fan heat and the outdoor moisture
    fits the envelope; partial (mixed with return air) while T_db < return air [u]."""

    type: Literal["direct_air"]


class IndirectAirEconomiser(_AirSide):
    """Indirect air-side: an air-to-air HX (outdoor dry-bulb) or an evaporative one (outdoor
    wet-bulb); the outdoor air never enters the room, so its moisture does not matter."""

    type: Literal["indirect_air"]
    variant: Literal["air_to_air", "evaporative"] = Field(
        default="air_to_air", description="air_to_air: approach to the outdoor dry-bulb; evaporative: to the wet-bulb"
    )
    hx_approach_k: float = Field(
        default=4.0,
        ge=0,
        le=20,
        description="approach of supply air to outdoor dry-bulb (wet-bulb if evaporative), K [u]",
    )


Economiser = Annotated[
    WaterSideEconomiser | DryCoolerEconomiser | DirectAirEconomiser | IndirectAirEconomiser,
    Field(discriminator="type"),
]


def default_economisers() -> list[
    WaterSideEconomiser | DryCoolerEconomiser | DirectAirEconomiser | IndirectAirEconomiser
]:
    """One economiser of each type with the defaults above (the siting comparison)."""
    return [
        WaterSideEconomiser(id="water-side", type="water_side"),
        DryCoolerEconomiser(id="dry-cooler", type="dry_cooler"),
        DirectAirEconomiser(id="direct-air", type="direct_air"),
        IndirectAirEconomiser(id="indirect-air", type="indirect_air"),
    ]


class FreeCoolingLive(_Model):
    """How the live free-cooling state reads the plant (pipeline/freecooling_live.py).

    The economiser mode status point reports 0 = mechanical cooling only (none), 1 = partial
    (integrated economiser), 2 = full free cooling (chillers off). Without it the mode is
    inferred from chiller power: at/below ``chiller_off_kw`` full, at/above ``chiller_on_kw``
    none, between partial (labelled ``inferred``); without both thresholds the plant's mode is
    not known (the service says so once at start) and only the chiller energies are computed.
    """

    max_age_s: float | None = Field(
        default=None,
        gt=0,
        description="a weather, chiller or mode reading older than this at a minute's end is stale "
        "(the state is unknown); default: twice the polling interval of its device",
    )
    chiller_off_kw: float | None = Field(
        default=None, ge=0, description="chiller power at/below which the plant runs full free cooling, kW"
    )
    chiller_on_kw: float | None = Field(
        default=None, gt=0, description="chiller power at/above which the plant runs no free cooling, kW"
    )

    @model_validator(mode="after")
    def _order(self) -> FreeCoolingLive:
        off, on = self.chiller_off_kw, self.chiller_on_kw
        if off is not None and on is not None and off >= on:
            raise ValueError(f"chiller_off_kw ({off}) must be below chiller_on_kw ({on})")
        return self


class CoolingConfig(_Model):
    """The cooling plant's economisers, the IT inlet envelope and the points that feed them."""

    altitude_m: float = Field(
        default=0.0, ge=-500, le=6000, description="site altitude, m: pressure when no pressure point exists"
    )
    envelope: Literal["recommended", "a1"] | Envelope = Field(
        default="recommended", description="IT inlet envelope: recommended (ASHRAE), a1 (allowable) or explicit limits"
    )
    points: CoolingPoints = CoolingPoints()
    economisers: list[Economiser] = Field(default_factory=default_economisers, min_length=1)
    live: FreeCoolingLive = Field(
        default_factory=FreeCoolingLive, description="live free-cooling state: staleness, chiller thresholds"
    )

    @field_validator("envelope", mode="before")
    @classmethod
    def _envelope_name(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in ENVELOPES:
            raise ValueError(f"unknown envelope {v!r} (recommended, a1, or a mapping of limits)")
        return v

    @property
    def inlet_envelope(self) -> Envelope:
        return ENVELOPES[self.envelope] if isinstance(self.envelope, str) else self.envelope

    @model_validator(mode="after")
    def _check(self) -> CoolingConfig:
        seen: set[str] = set()
        for e in self.economisers:
            if e.id in seen:
                raise ValueError(f"economiser id {e.id!r} used twice")
            seen.add(e.id)
        env = self.inlet_envelope
        for e in self.economisers:
            if isinstance(e, _AirSide) and not env.min_c <= e.supply_air_c <= env.max_c:
                raise ValueError(
                    f"economiser {e.id!r}: supply_air_c {e.supply_air_c} is outside the IT inlet envelope "
                    f"{env.min_c:g}..{env.max_c:g} °C"
                )
        return self


# ------------------------------------------------------------------------------ site


class SiteInfo(_Model):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    name: str = ""
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {v!r} (use an IANA name like Asia/Shanghai)") from exc
        return v


class Thresholds(_Model):
    """PUE limits. Defaults: Shanxi green DC 1.4 (warning), Inner Mongolia 1.5 (critical)."""

    warning: float = Field(default=1.4, gt=1.0)
    critical: float = Field(default=1.5, gt=1.0)

    @model_validator(mode="after")
    def _order(self) -> Thresholds:
        if self.warning > self.critical:
            raise ValueError(f"warning ({self.warning}) must not exceed critical ({self.critical})")
        return self


#: GB 40879-2021 (数据中心能效限定值及能效等级) grade limits: grade -> upper PUE limit (grade 1 best,
#: grade 3 the legal limit). The standard is under revision (since 2025): the site file may override.
GB40879_GRADES: dict[int, float] = {1: 1.20, 2: 1.30, 3: 1.50}


class ReportConfig(_Model):
    """What a regulator's report states beyond the measurements (``pue report``)."""

    operator: str = Field(default="", description="operating company, printed in the report's title block")
    address: str = Field(default="", description="site address, printed in the report's title block")
    grade_limits: dict[int, float] = Field(
        default_factory=lambda: dict(GB40879_GRADES),
        description="GB 40879-2021 grade -> upper PUE limit (1 best); default 1: 1.20, 2: 1.30, 3: 1.50 "
        "(the standard is under revision: set the limits in force)",
    )

    @field_validator("grade_limits")
    @classmethod
    def _grades(cls, v: dict[int, float]) -> dict[int, float]:
        if not v:
            raise ValueError("grade_limits: give at least one grade")
        grades = sorted(v)
        if grades != list(range(1, len(grades) + 1)):
            raise ValueError(f"grade_limits: grades must be 1, 2, ... without holes, not {grades}")
        limits = [v[g] for g in grades]
        for g, lim in zip(grades, limits, strict=True):
            if not lim > 1.0:
                raise ValueError(f"grade_limits: grade {g}: a PUE limit must be > 1.0, not {lim}")
        if any(b <= a for a, b in itertools.pairwise(limits)):
            raise ValueError(f"grade_limits: limits must rise with the grade (grade 1 is the best): {limits}")
        return {g: v[g] for g in grades}


class StoreConfig(_Model):
    enabled: bool | None = Field(
        default=None, description="embedded store on/off; default: on unless an influxdb: section is given"
    )
    path: str = Field(
        default="pue-monitor.sqlite", description="embedded SQLite store file (relative: to the site file's folder)"
    )
    keep_readings_days: float = Field(
        default=90, gt=0, le=36500, description="raw readings older than this are deleted (rollups are kept)"
    )
    state_path: str | None = Field(
        default=None,
        description="restart state (last counter readings, the open day's minutes) kept when the store is "
        "off (InfluxDB only); default: next to the InfluxDB spool, '<spool>.state.json'",
    )


class SpoolConfig(_Model):
    path: str = Field(default="pue-spool.sqlite", description="on-disk queue of batches not yet written")
    max_bytes: int = Field(
        default=256 * 2**20, ge=2**16, description="bound; past it the oldest batches are evicted (counted)"
    )


class InfluxConfig(_Model):
    """InfluxDB (1.x, 2.x, 3) or anything that accepts its line protocol (VictoriaMetrics)."""

    url: str = Field(examples=["http://127.0.0.1:8086"])

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        from yarl import URL

        try:
            url = URL(v)
            port = url.port
        except ValueError as exc:  # a bad port, a malformed host
            raise ValueError(f"not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host or port is None:
            raise ValueError("expected http://host:port or https://host:port")
        return v

    api: Literal["auto", "v1", "v2"] = Field(
        default="auto", description="auto: ask /ping; servers older than 1.8 get the 1.x /write endpoint"
    )
    org: str = Field(default="", description="v2 organisation (ignored by 1.x and VictoriaMetrics)")
    bucket: str = Field(default="pue", description="v2 bucket, or 1.x database ('db' or 'db/retention_policy')")
    token: Secret | None = Field(default=None, description="v2 API token (env or file)")
    username: str | None = Field(default=None, description="1.x user")
    password: Secret | None = Field(default=None, description="1.x password (env or file)")
    batch_size: int = Field(default=5000, ge=1, le=1_000_000, description="points per write")
    flush_interval: float = Field(default=1.0, ge=0.01, le=3600, description="seconds a partial batch may wait")
    gzip: bool = True
    timeout: float = Field(default=10.0, ge=0.1, le=600, description="HTTP timeout, seconds (0.1 .. 600)")
    spool: SpoolConfig = SpoolConfig()
    write_readings: bool = True
    write_intervals: bool = True


class PrometheusConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port")
    status: bool = Field(
        default=True,
        description="serve /status, /healthz and /readyz (JSON: devices, pipeline, outputs; liveness, "
        "readiness) on this port beside /metrics (`pue status` asks /status)",
    )


class TimeWindow(_Model):
    """Which reading timestamps the collectors accept, relative to their clock.

    A reading stamped more than ``ahead_s`` after the collector's clock, or more than
    ``behind_s`` before it, is rejected and counted per device (and per MQTT topic): it
    never reaches the pipeline, so it can neither blank live PUE (future) nor make the
    pipeline build every interval since years ago (past). ``behind_s`` defaults to the
    live pipeline's horizon (7 days): older readings could not change a final interval.
    """

    ahead_s: float = Field(
        default=600.0, ge=0, le=86400, allow_inf_nan=False, description="seconds a reading may be ahead of the clock"
    )
    behind_s: float = Field(
        default=7 * 86400.0,
        gt=0,
        le=7 * 86400.0,
        allow_inf_nan=False,
        description="seconds a reading may be behind the clock (at most the pipeline horizon, 7 days)",
    )


class EmissionFactor(_Model):
    """Grid CO2 emission factor for CUE (ISO/IEC 30134-8), stored with every result.

    Default: China's national grid average for 2023, 0.5306 kg CO2/kWh, published by the Ministry
    of Ecology and Environment (MEE) with the National Bureau of Statistics (NBS) [s: docs/domain.md,
    "China"]. Another widely used enterprise-reporting value is 0.5703 t CO2/MWh [s].
    Set the factor of your grid region, year and source here.
    """

    kg_per_kwh: float = Field(default=0.5306, ge=0, le=2.0, description="kg CO2 per kWh of grid electricity")
    year: int = Field(default=2023, ge=1990, le=2100, description="year the factor applies to")
    type: str = Field(default="national grid average", description="e.g. national grid average, regional grid")
    source: str = Field(
        default="MEE/NBS China national average power CO2 emission factor 2023",
        min_length=1,
        description="who published the factor (audited: always stored with the results)",
    )


class RenewableContract(_Model):
    """A contracted renewable share (green-power trading, green certificates) when no meter exists."""

    share: float = Field(ge=0, le=1, description="fraction of facility energy E_DC that is renewable (0..1)")
    source: str = Field(min_length=1, description="the contract or certificate the share comes from")


class KpiConfig(_Model):
    """Companion KPIs beside PUE: WUE, CUE, ERF, REF (ISO/IEC 30134-9/-8/-6/-3)."""

    emission_factor: EmissionFactor = EmissionFactor()
    water_definition: Literal["site_usage", "withdrawal", "consumption"] = Field(
        default="site_usage",
        description="what the water meters measure: site_usage (ISO/IEC 30134-9 WUE: water used on site "
        "for the DC, e.g. cooling-tower make-up), withdrawal (all water drawn), consumption (evaporation + "
        "drift, blowdown returned)",
    )
    renewable_contract: RenewableContract | None = Field(
        default=None, description="a contracted renewable share instead of a renewable meter (not both)"
    )


# ---------------------------------------------------------------------------- alerts


def _http_url_of(v: str) -> str:
    from yarl import URL

    try:
        url = URL(v)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host or port is None:
        raise ValueError("expected http://host:port[/path] or https://host:port[/path]")
    if url.user is not None or url.password is not None:
        raise ValueError("no user or password in the URL (it would be logged); use a secret")
    return v


class _NotifierBase(_Model):
    """What every notifier shares: its name and how delivery is retried.

    A delivery is tried once, then again after ``backoff_s``, ``2 * backoff_s``, ... (each wait
    at most ``backoff_max_s``), ``retries`` times; a refusal that retrying cannot fix (HTTP 4xx
    other than 408/429, SMTP authentication) is not retried.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the notifier's name in logs and metrics")]
    retries: int = Field(default=3, ge=0, le=20, description="attempts after the first")
    backoff_s: float = Field(default=1.0, gt=0, le=600, description="wait before the first retry; doubles")
    backoff_max_s: float = Field(default=60.0, gt=0, le=3600, description="cap on one wait")
    timeout_s: float = Field(default=10.0, ge=0.1, le=600, description="network timeout of one attempt")


class AlertmanagerNotifier(_NotifierBase):
    """Prometheus Alertmanager, v2 API (``POST <url>/api/v2/alerts``), one or more instances."""

    type: Literal["alertmanager"]
    urls: list[str] = Field(min_length=1, description="Alertmanager base URLs, e.g. http://127.0.0.1:9093")

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        return [_http_url_of(u) for u in v]


class WebhookNotifier(_NotifierBase):
    """A JSON POST signed with HMAC-SHA256 (``X-PUE-Signature``, ``X-PUE-Timestamp``)."""

    type: Literal["webhook"]
    url: str
    secret: Secret = Field(description="HMAC key (env or file)")

    _url = field_validator("url")(_http_url_of)


class EmailNotifier(_NotifierBase):
    """E-mail over SMTP with STARTTLS (required: a server that does not offer it gets nothing)."""

    type: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: Secret | None = None
    sender: str = Field(alias="from", description="From: address", pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    ca_file: str | None = Field(
        default=None, description="CA bundle to verify the server's certificate (default: the system's)"
    )

    @model_validator(mode="after")
    def _login(self) -> EmailNotifier:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both 'username' and 'password' (or neither)")
        return self


class ConsoleNotifier(_NotifierBase):
    """One log line per alert (logger ``pue_monitor.alerts``)."""

    type: Literal["console"]


Notifier = Annotated[
    AlertmanagerNotifier | WebhookNotifier | EmailNotifier | ConsoleNotifier, Field(discriminator="type")
]


class AlertRule(_Model):
    """When one rule's condition becomes an alert and when the alert resolves."""

    enabled: bool = True
    for_s: float = Field(
        default=0.0, ge=0, le=7 * 86400, description="seconds the condition must hold before the alert fires (pending)"
    )
    resolve_after_s: float = Field(
        default=300.0, ge=0, le=7 * 86400, description="seconds the condition must stay clear before it resolves"
    )


class AlertRules(_Model):
    """The engine's rules (thresholds come from ``thresholds:``). Durations in seconds."""

    pue_15m: AlertRule = Field(
        default=AlertRule(for_s=1800, resolve_after_s=1800),
        description="closed 15-minute PUE over thresholds.warning / thresholds.critical",
    )
    pue_daily: AlertRule = Field(
        default=AlertRule(for_s=0, resolve_after_s=0),
        description="closed daily PUE (the site's calendar day) over the thresholds",
    )
    drift: AlertRule = Field(
        default=AlertRule(for_s=0, resolve_after_s=3600),
        description="PUE drifting above the expected-PUE model (CUSUM): a drift report says so",
    )
    sensor_fault: AlertRule = Field(
        default=AlertRule(for_s=0, resolve_after_s=0), description="one alert per active sensor fault"
    )
    device_down: AlertRule = Field(
        default=AlertRule(for_s=300, resolve_after_s=300), description="a polled or pushed device down"
    )
    delivery_backlog: AlertRule = Field(
        default=AlertRule(for_s=900, resolve_after_s=300),
        description="an output's queue (the InfluxDB spool) holding more than alerts.backlog_points points",
    )
    data_lost: AlertRule = Field(
        default=AlertRule(for_s=0, resolve_after_s=600),
        description="an output dropped or evicted points (data lost): resolves after this long without a loss",
    )


class AlertsConfig(_Model):
    notifiers: list[Notifier] = Field(default_factory=list, description="where alerts are sent")
    rules: AlertRules = AlertRules()
    hysteresis: float = Field(
        default=0.02,
        ge=0,
        le=0.5,
        description="a PUE alert clears only once PUE is below its threshold minus this (PUE points)",
    )
    min_coverage: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="an interval whose share of measured or estimated time is below this is not judged",
    )
    repeat_interval_s: float = Field(
        default=4 * 3600.0, ge=60, le=7 * 86400, description="a firing alert is sent again this often"
    )
    backlog_points: int = Field(
        default=100_000, ge=1, description="points waiting in an output's queue before delivery_backlog counts"
    )
    alertmanager_refresh_s: float = Field(
        default=60.0,
        ge=5,
        le=3600,
        description="firing alerts are re-posted to Alertmanager this often (below its resolve_timeout, 5 min)",
    )
    state_dir: str | None = Field(
        default=None,
        description="alert state, silences and history (state.json, silences.json, history.sqlite); default: "
        "beside the store, '<store.path>.alerts' (InfluxDB only: '<influxdb.spool.path>.alerts')",
    )
    history_days: float = Field(
        default=400.0,
        ge=32,
        le=36600,
        description="alerts that ended longer ago than this are deleted from the alert history (history.sqlite); "
        "at least a month, 400 days keep a trailing year for reports",
    )

    @model_validator(mode="after")
    def _unique(self) -> AlertsConfig:
        seen: set[str] = set()
        for n in self.notifiers:
            if n.name in seen:
                raise ValueError(f"notifier name {n.name!r} used twice")
            seen.add(n.name)
        return self


class FaultsConfig(_Model):
    """Sensor-fault detection (see the README, "Sensor faults")."""

    hold_s: float = Field(
        default=900.0,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description="a glitch, reset or backwards fault clears this long after its last event (one alert per burst)",
    )
    stuck_polls: int = Field(
        default=15,
        ge=3,
        le=10_000,
        description="fewest identical polls of a power, temperature or humidity point that normally "
        "changes from poll to poll before it is stuck",
    )
    stuck_counter_s: float = Field(
        default=900.0,
        ge=60,
        le=86400,
        allow_inf_nan=False,
        description="seconds an energy counter must stand still while its meter has load before it is stuck",
    )


class BalanceConfig(_Model):
    """Energy balance of the meter hierarchy (``meter.parent``): per window, the parent's energy
    against the sum of its sub-meters."""

    loss_band_pct: tuple[
        Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)],
        Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)],
    ] = Field(
        default=(-2.0, 8.0),
        description="[lo, hi]: accepted (parent - sum of sub-meters) / parent, % (losses, meter accuracy)",
    )
    window: Literal["15m", "1h"] = Field(default="15m", description="window the energies are compared over")
    min_load_kw: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="windows whose parent averaged less than this (kW) are not judged",
    )

    @model_validator(mode="after")
    def _band(self) -> BalanceConfig:
        lo, hi = self.loss_band_pct
        if not lo < hi:
            raise ValueError(f"loss_band_pct [{lo}, {hi}]: the low end must be below the high end")
        return self


class DriftSettings(_Model):
    """Drift of actual PUE above expected (one-sided CUSUM on the model's residual, see README
    "Expected PUE and drift"): ``k = k_sigma x sigma``, ``h = h_sigma x sigma`` with sigma the model's
    held-out residual standard deviation (at least ``min_sigma``)."""

    window_days: float = Field(default=14, ge=1, le=90, description="recent history scored every hour, days")
    bucket_s: float = Field(default=3600, ge=900, le=86400, description="residual bucket, seconds")
    k_sigma: float = Field(default=3.0, gt=0, le=100, description="CUSUM reference k, in sigmas")
    h_sigma: float = Field(default=12.0, gt=0, le=1000, description="CUSUM limit h (drift detected), in sigmas")
    min_sigma: float = Field(default=0.001, gt=0, le=1, description="floor on sigma, PUE points")


class ModelConfig(_Model):
    """The expected-PUE model in the running service: where it lives, what it learns from and
    when it is retrained (see README "Expected PUE and drift")."""

    enabled: bool | None = Field(
        default=None,
        description="on/off; default: on when the store is on, cooling.points names the outdoor "
        "temperature and relative humidity (the model's weather features) and store.keep_readings_days "
        "keeps at least min_history_days of them",
    )
    path: str | None = Field(
        default=None,
        description="model directory (relative: to the site file's folder); default: model/ beside the store",
    )
    history_days: float = Field(
        default=56,
        ge=14,
        le=3650,
        description="training window, days back from now; at most store.keep_readings_days (the default "
        "shrinks to it: the weather readings it trains on are kept that long)",
    )
    min_history_days: float = Field(
        default=14, ge=14, le=3650, description="history the store must hold before the first model is trained"
    )
    retrain_every_days: int = Field(default=7, ge=1, le=365, description="retraining schedule, days")
    retrain_hour: int = Field(default=3, ge=0, le=23, description="local hour (site timezone) of retraining")
    resolution: Literal["15m", "1h"] = Field(default="15m", description="stored intervals trained on and scored")
    drift: DriftSettings = DriftSettings()

    @model_validator(mode="after")
    def _windows(self) -> ModelConfig:
        if self.min_history_days > self.history_days:
            raise ValueError(
                f"min_history_days ({self.min_history_days:g}) must not exceed history_days ({self.history_days:g})"
            )
        return self


class SiteConfig(_Model):
    site: SiteInfo
    thresholds: Thresholds = Thresholds()
    devices: list[Device] = Field(min_length=1)
    store: StoreConfig = StoreConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    mqtt: MqttBroker | None = Field(default=None, description="broker for mqtt/sparkplug devices")
    influxdb: InfluxConfig | None = Field(default=None, description="write readings and KPIs to InfluxDB")
    time_window: TimeWindow = TimeWindow()
    cooling: CoolingConfig | None = Field(default=None, description="cooling plant for free-cooling potential")
    kpis: KpiConfig = Field(default_factory=KpiConfig, description="companion KPIs (WUE, CUE, ERF, REF)")
    report: ReportConfig = Field(
        default_factory=ReportConfig, description="regulator reports: operator, address, GB 40879-2021 grades"
    )

    alerts: AlertsConfig = AlertsConfig()
    faults: FaultsConfig = Field(default_factory=FaultsConfig, description="sensor-fault detection settings")
    balance: BalanceConfig | None = Field(
        default=None,
        description="energy balance of the meter hierarchy (meter.parent); default band [-2, 8] % per 15 min "
        "when any meter names a parent",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="expected-PUE model and drift (live)")

    @property
    def store_enabled(self) -> bool:
        return self.store.enabled if self.store.enabled is not None else self.influxdb is None

    @property
    def model_weather(self) -> bool:
        """cooling.points names the outdoor temperature and relative humidity (the model's weather)."""
        pts = self.cooling.points if self.cooling is not None else None
        return pts is not None and pts.outdoor_temperature is not None and pts.relative_humidity is not None

    @property
    def model_enabled(self) -> bool:
        """The expected-PUE model runs in the service (``model.enabled``, default: store and weather)."""
        if self.model.enabled is not None:
            return self.model.enabled
        return (
            self.store_enabled and self.model_weather and self.store.keep_readings_days >= self.model.min_history_days
        )

    profile_dirs: list[str] = Field(default_factory=list, description="extra profile folders")

    @model_validator(mode="after")
    def _unique(self) -> SiteConfig:
        seen: dict[str, int] = {}
        for i, d in enumerate(self.devices):
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} used twice (devices[{seen[d.id]}] and devices[{i}])")
            seen[d.id] = i
        units: dict[tuple[str, int, int], str] = {}
        for d in self.devices:
            if not isinstance(d, ModbusDevice):
                continue
            key = (d.host, d.port, d.unit_id)
            if key in units:
                raise ValueError(f"devices {units[key]!r} and {d.id!r} share {d.host}:{d.port} unit {d.unit_id}")
            units[key] = d.id
        if self.mqtt is None and any(isinstance(d, MqttDevice | SparkplugDevice) for d in self.devices):
            raise ValueError("mqtt and sparkplug devices need an mqtt: broker section")
        if self.kpis.renewable_contract is not None:
            metered = [d.id for d in self.devices if d.meter is not None and d.meter.role is Role.RENEWABLE]
            if metered:
                raise ValueError(
                    f"kpis.renewable_contract and a renewable meter ({', '.join(metered)}) both give the renewable "
                    "energy: keep one"
                )
        if self.model.enabled:
            if not self.store_enabled:
                raise ValueError("model.enabled needs the embedded store (store.enabled): it learns from its history")
            if not self.model_weather:
                raise ValueError(
                    "model.enabled needs cooling.points.outdoor_temperature and relative_humidity (its weather "
                    "features)"
                )
        # the weather readings the model trains on are kept store.keep_readings_days: a window set
        # longer is an error; the default window (56 days) shrinks to what is kept
        m = self.model
        if (
            self.model_enabled
            and m.history_days > self.store.keep_readings_days
            and "history_days" in m.model_fields_set
        ):
            raise ValueError(
                f"model.history_days ({m.history_days:g}) exceeds store.keep_readings_days "
                f"({self.store.keep_readings_days:g}): the weather readings it trains on would be deleted"
            )
        if self.model_enabled and m.min_history_days > self.store.keep_readings_days:
            raise ValueError(
                f"model.min_history_days ({m.min_history_days:g}) exceeds store.keep_readings_days "
                f"({self.store.keep_readings_days:g}): the model could never be trained"
            )
        return self
