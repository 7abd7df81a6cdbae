"""Load and check site configuration and profiles.

Errors name the file, the line, the path inside the document and the field, e.g.::

    site.yaml:14: devices[2].meter.it_location: role 'it' needs it_location: ...
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from pue_monitor.config.models import (
    UNITS,
    Device,
    ModbusDevice,
    ModbusProfile,
    Profile,
    Role,
    SiteConfig,
    SnmpDevice,
    SnmpProfile,
    is_wildcard,
)
from pue_monitor.errors import ConfigError

_PROFILE = TypeAdapter[ModbusProfile | SnmpProfile](Profile)

BUILTIN_PROFILES = resources.files("pue_monitor.config") / "profiles"


def _format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the deepest node along ``loc`` in a composed YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if part < len(node.value) else None
        else:
            nxt = None
        if nxt is None:
            break  # a missing field: point at its parent
        node = nxt
        line = node.start_mark.line + 1
    return line


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc


def _validation_error(path: Path, node: yaml.Node | None, exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if p != "modbus"]  # drop the union tag pydantic inserts
        line = _line_of(node, loc)
        where = f"{path}:{line}" if line else str(path)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check spelling; see `pue config schema`)"
        lines.append(f"{where}: {_format_loc(loc)}: {msg}")
    return ConfigError("\n".join(lines))


# ------------------------------------------------------------------------ profiles


def load_profile(path: Path) -> ModbusProfile | SnmpProfile:
    data, node = _read_yaml(path)
    try:
        return _PROFILE.validate_python(data)
    except ValidationError as exc:
        raise _validation_error(path, node, exc) from None


def load_profiles(extra_dirs: Iterable[Path] = ()) -> dict[str, ModbusProfile | SnmpProfile]:
    """Built-in profiles plus those in ``extra_dirs`` (a later one overrides by id)."""
    profiles: dict[str, ModbusProfile | SnmpProfile] = {}
    files = sorted(Path(str(p)) for p in BUILTIN_PROFILES.iterdir() if p.name.endswith(".yaml"))
    for d in extra_dirs:
        if not d.is_dir():
            raise ConfigError(f"{d}: profile folder does not exist")
        files.extend(sorted(d.glob("*.yaml")))
    for f in files:
        prof = load_profile(f)
        profiles[prof.id] = prof
    return profiles


# ---------------------------------------------------------------------------- site


@dataclass(frozen=True)
class LoadedSite:
    """A validated site with the profiles its devices use."""

    path: Path
    config: SiteConfig
    profiles: dict[str, ModbusProfile | SnmpProfile]

    @property
    def base_dir(self) -> Path:
        """Folder relative paths in the site file (secrets, profile_dirs) start from."""
        return self.path.parent

    def profile_of(self, device: ModbusDevice) -> ModbusProfile:
        prof = self.profiles[device.profile]
        assert isinstance(prof, ModbusProfile)
        return prof

    def points_of(self, device: ModbusDevice) -> list[str]:
        prof = self.profile_of(device)
        return list(device.points) if device.points is not None else list(prof.points)

    def unit_of(self, device: Device, point: str) -> str | None:
        """Unit of ``point`` of ``device`` (for SNMP table points ``column.index``)."""
        found = _device_units(device, self.profiles, 0, [])
        return None if found is None else found[0](point)

    def snmp_profiles(self) -> dict[str, SnmpProfile]:
        return {k: p for k, p in self.profiles.items() if isinstance(p, SnmpProfile)}


def _device_units(
    dev: Device, profiles: dict[str, ModbusProfile | SnmpProfile], i: int, problems: list[tuple[list[Any], str]]
) -> tuple[Any, list[str] | None] | None:
    """(unit_of function, chosen point names or None for all) for a device, recording problems.

    The unit function applies the device's ``overrides`` (a unit replacing the profile's).
    """
    if isinstance(dev, ModbusDevice | SnmpDevice):
        if isinstance(dev, SnmpDevice) and dev.profile == "auto":
            snmp = [p for p in profiles.values() if isinstance(p, SnmpProfile)]

            def any_unit(point: str) -> str | None:
                found = next((u for p in snmp if (u := p.unit_of(point)) is not None), None)
                return _overridden(dev, point, found)

            return any_unit, None
        prof = profiles.get(dev.profile)
        wanted = "modbus" if isinstance(dev, ModbusDevice) else "snmp"
        if prof is None or prof.protocol != wanted:
            known = ", ".join(sorted(k for k, p in profiles.items() if p.protocol == wanted))
            problems.append((["devices", i, "profile"], f"unknown {wanted} profile {dev.profile!r} (known: {known})"))
            return None
        for j, p in enumerate(dev.points or []):
            if prof.unit_of(p) is None:
                problems.append((["devices", i, "points", j], f"profile {prof.id!r} has no point {p!r}"))
        for name in dev.overrides:
            if "." in name or prof.unit_of(name) is None:
                problems.append(
                    (["devices", i, "overrides", name], f"profile {prof.id!r} has no point (or column) {name!r}")
                )
        chosen = None if dev.points is None else [p.split(".", 1)[0] for p in dev.points]
        profile = prof

        def unit(point: str) -> str | None:
            return _overridden(dev, point, profile.unit_of(point))

        return unit, chosen
    return dev.unit_of, None


def _overridden(dev: ModbusDevice | SnmpDevice, point: str, unit: str | None) -> str | None:
    if unit is None:
        return None
    ov = dev.overrides.get(point) or dev.overrides.get(point.split(".", 1)[0])
    return ov.unit if ov is not None and ov.unit is not None else unit


def _wildcard_problem(dev: Device, profiles: dict[str, ModbusProfile | SnmpProfile], name: str) -> str | None:
    col = name.split(".", 1)[0]
    if not isinstance(dev, SnmpDevice):
        return f"{name!r}: a wildcard row is for SNMP table columns only; list the points"
    if dev.profile == "auto":
        ok = any(isinstance(p, SnmpProfile) and p.is_column(col) for p in profiles.values())
    else:
        prof = profiles.get(dev.profile)
        ok = isinstance(prof, SnmpProfile) and prof.is_column(col)
    return None if ok else f"{name!r}: {col!r} is not a table column of the device's profile"


def _check_meaning(
    site: SiteConfig, profiles: dict[str, ModbusProfile | SnmpProfile], node: yaml.Node | None, path: Path
) -> None:
    problems: list[tuple[list[Any], str]] = []
    for i, dev in enumerate(site.devices):
        found = _device_units(dev, profiles, i, problems)
        if found is None or dev.meter is None:
            continue
        unit_of, chosen = found
        for field, quantity in (("energy", "energy"), ("power", "power")):
            names = dev.meter.energy_points if field == "energy" else dev.meter.power_points
            for k, name in enumerate(names):
                loc = ["devices", i, "meter", field] + ([k] if isinstance(getattr(dev.meter, field), list) else [])
                _check_meter_point(dev, profiles, unit_of, chosen, name, quantity, loc, problems)
    roles = {d.meter.role for d in site.devices if d.meter}
    for needed in (Role.FACILITY_INPUT, Role.IT):
        if needed not in roles:
            problems.append(
                (["devices"], f"the energy model needs at least one meter with role {needed.value!r} to compute PUE")
            )
    if problems:
        msgs = []
        for loc, msg in problems:
            line = _line_of(node, loc)
            msgs.append(f"{path}:{line}: {_format_loc(loc)}: {msg}" if line else f"{path}: {msg}")
        raise ConfigError("\n".join(msgs))


def _check_meter_point(
    dev: Device,
    profiles: dict[str, ModbusProfile | SnmpProfile],
    unit_of: Any,
    chosen: list[str] | None,
    name: str,
    quantity: str,
    loc: list[Any],
    problems: list[tuple[list[Any], str]],
) -> None:
    if is_wildcard(name) and (why := _wildcard_problem(dev, profiles, name)) is not None:
        problems.append((loc, why))
        return
    unit = unit_of(name)
    if unit is None:
        problems.append((loc, f"device {dev.id!r} has no point {name!r}"))
    elif chosen is not None and name.split(".", 1)[0] not in chosen:
        problems.append((loc, f"point {name!r} is not among the device's points"))
    elif UNITS.get(unit, ("", 0))[0] != quantity:
        allowed = ", ".join(u for u, (q, _) in UNITS.items() if q == quantity)
        problems.append((loc, f"point {name!r} has unit {unit!r}, not an {quantity} unit ({allowed})"))


def load_site(path: str | Path) -> LoadedSite:
    """Read, validate and check a site file. Raises :class:`ConfigError`."""
    path = Path(path)
    data, node = _read_yaml(path)
    return _validate_site(data, node, path)


def site_from_dict(data: dict[str, Any], *, source: str, base_dir: Path | None = None) -> LoadedSite:
    """Validate a site given as a mapping (generated configs: the simulator's, tests')."""
    return _validate_site(data, None, Path(source), base_dir=base_dir)


def _validate_site(data: Any, node: yaml.Node | None, path: Path, base_dir: Path | None = None) -> LoadedSite:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level (site:, devices:, ...)")
    try:
        site = SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(path, node, exc) from None
    base = base_dir if base_dir is not None else path.parent
    profiles = load_profiles(base / d for d in site.profile_dirs)
    _check_meaning(site, profiles, node, path)
    return LoadedSite(path=path, config=site, profiles=profiles)
