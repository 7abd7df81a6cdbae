"""Site configuration and device profiles (pydantic v2).

Shape is checked here (``extra="forbid"``, types, ranges, a discriminated union on
``protocol``); meaning that needs the profiles (points exist, units fit the role)
is checked in :mod:`pue_monitor.config.loader`. Bad config is rejected, never repaired:
energy data is audited.
"""

from __future__ import annotations

import enum
import itertools
import zoneinfo
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pue_monitor.collectors.decode import DATA_TYPES


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- units

#: unit -> (quantity, factor to the pipeline's unit: kW for power, kWh for energy)
UNITS: dict[str, tuple[str, float]] = {
    "W": ("power", 1e-3),
    "kW": ("power", 1.0),
    "MW": ("power", 1e3),
    "Wh": ("energy", 1e-3),
    "kWh": ("energy", 1.0),
    "MWh": ("energy", 1e3),
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

    @property
    def count(self) -> int:
        return DATA_TYPES[self.type][1]

    @field_validator("scale")
    @classmethod
    def _scale_nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0")
        return v


class Profile(_Model):
    """A device model's register map. Lives as YAML under ``pue_monitor/config/profiles``."""

    id: str
    protocol: Literal["modbus"] = "modbus"
    manufacturer: str
    model: str
    source: str = Field(description="where the register map comes from (datasheet, version)")
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    points: dict[str, ProfilePoint]

    @model_validator(mode="after")
    def _no_overlap(self) -> Profile:
        spans = sorted((p.function, p.address, p.address + p.count, name) for name, p in self.points.items())
        for a, b in itertools.pairwise(spans):
            if a[0] == b[0] and b[1] < a[2]:
                raise ValueError(f"points {a[3]!r} and {b[3]!r} overlap at {a[0]} register {b[1]}")
        return self


# ---------------------------------------------------------------------- energy model


class Role(enum.StrEnum):
    """Where a meter sits in the ISO/IEC 30134-2 energy model."""

    FACILITY_INPUT = "facility_input"  # utility incomers, generators: E_DC
    IT = "it"  # E_IT
    COOLING = "cooling"
    POWER_DISTRIBUTION = "power_distribution"
    LIGHTING = "lighting"
    OTHER = "other"


SUBSYSTEMS = (Role.COOLING, Role.POWER_DISTRIBUTION, Role.LIGHTING, Role.OTHER)


class ITLocation(enum.StrEnum):
    """Where an IT meter measures; fixes the ISO/IEC 30134-2 measurement category."""

    UPS_OUTPUT = "ups_output"  # category 1 (basic)
    PDU_OUTPUT = "pdu_output"  # category 2 (intermediate)
    IT_EQUIPMENT_INPUT = "it_equipment_input"  # category 3 (advanced)

    @property
    def category(self) -> int:
        return {"ups_output": 1, "pdu_output": 2, "it_equipment_input": 3}[self.value]


class Meter(_Model):
    """The device's part in the energy model."""

    role: Role
    it_location: ITLocation | None = Field(
        default=None, description="required for role 'it': ups_output, pdu_output or it_equipment_input"
    )
    energy: str | None = Field(default=None, description="point holding the cumulative energy counter")
    power: str | None = Field(default=None, description="point holding active power")
    rollover: float | None = Field(
        default=None,
        gt=0,
        description="counter value (in the point's unit, after scale) at which it wraps to 0",
    )

    @model_validator(mode="after")
    def _check(self) -> Meter:
        if self.role is Role.IT and self.it_location is None:
            raise ValueError("role 'it' needs it_location: ups_output, pdu_output or it_equipment_input")
        if self.role is not Role.IT and self.it_location is not None:
            raise ValueError(f"it_location is only for role 'it', not {self.role.value!r}")
        if self.energy is None and self.power is None:
            raise ValueError("a meter needs an 'energy' counter point, a 'power' point, or both")
        if self.rollover is not None and self.energy is None:
            raise ValueError("rollover applies to an energy counter; set 'energy' too")
        return self


# --------------------------------------------------------------------------- devices


class _DeviceBase(_Model):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="unique device id")]
    interval: float = Field(default=60.0, gt=0, description="poll interval, seconds")
    timeout: float = Field(default=2.0, gt=0, description="per-request timeout, seconds")
    retries: int = Field(default=2, ge=0, le=10, description="retries within one poll")
    profile: str = Field(description="profile id (see `pue profiles`)")
    points: list[str] | None = Field(default=None, description="points to read; default all points of the profile")
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
    request_pause: float = Field(default=0.0, ge=0, description="pause between requests, seconds")
    one_register_per_request: bool = Field(
        default=False, description="read each point on its own (meters that reject block reads)"
    )


Device = Annotated[ModbusDevice, Field(discriminator="protocol")]


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


class StoreConfig(_Model):
    path: str = Field(default="pue-monitor.sqlite", description="embedded SQLite store file")
    keep_readings_days: float = Field(default=90, gt=0)


class PrometheusConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port")


class SiteConfig(_Model):
    site: SiteInfo
    thresholds: Thresholds = Thresholds()
    devices: list[Device] = Field(min_length=1)
    store: StoreConfig = StoreConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
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
            key = (d.host, d.port, d.unit_id)
            if key in units:
                raise ValueError(f"devices {units[key]!r} and {d.id!r} share {d.host}:{d.port} unit {d.unit_id}")
            units[key] = d.id
        return self
