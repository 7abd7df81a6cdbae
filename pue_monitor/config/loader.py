"""Load and check site configuration and profiles.

Errors name the file, the line, the path inside the document and the field, e.g.::

    site.yaml:14: devices[2].meter.it_location: role 'it' needs it_location: ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from pue_monitor.config.models import (
    UNITS,
    AlertsConfig,
    Device,
    InfluxConfig,
    ModbusDevice,
    ModbusProfile,
    MqttBroker,
    Profile,
    Role,
    Secret,
    SiteConfig,
    SnmpDevice,
    SnmpProfile,
    StoreConfig,
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


#: the C loader (libyaml) when PyYAML was built with it: ~10x faster on big site files
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: bounds against hostile or broken files: no site file comes near them
MAX_BYTES = 16 * 2**20
MAX_DEPTH = 64
MAX_ALIASES = 1000


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``path``; returns (data, node tree). Raises :class:`ConfigError` for an
    unreadable, binary, non-UTF-8, too large, too deep or malformed file (one line) and
    for duplicate keys (YAML would silently keep the last one)."""
    data, node, dups = _parse_yaml(path)
    if dups:
        raise ConfigError("\n".join(dups))
    return data, node


def _parse_yaml(path: Path) -> tuple[Any, yaml.Node | None, list[str]]:
    """(data, node tree, duplicate-key errors); raises ConfigError when there is no document."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: {len(raw)} bytes; a site or profile file is at most {MAX_BYTES} bytes")
    if b"\0" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\0")) + 1
        raise ConfigError(f"{path}:{line}: binary data (NUL byte); expected a YAML text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None
    try:
        _check_depth(path, text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            dups = [f"{path}:{line}: {msg}" for line, msg in _duplicate_keys(node)]
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "nesting depth" in problem:  # PyYAML >= 6.0.4 / libyaml stop absurd nesting themselves
            raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep; not a site file") from None
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply (more than {MAX_DEPTH} levels)") from None
    return data, node, dups


def _check_depth(path: Path, text: str) -> None:
    """Reject absurd nesting from the event stream (no recursion, constant memory) before
    anything recursive (composer, constructor, pydantic) sees it."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:  # "billion laughs": aliases of aliases expand exponentially
                raise ConfigError(f"{path}: more than {MAX_ALIASES} YAML aliases (*name); not a site file")
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise ConfigError(f"{path}:{line}: nested more than {MAX_DEPTH} levels deep; not a site file")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _duplicate_keys(root: yaml.Node | None) -> list[tuple[int, str]]:
    """(line, message) for every key that appears twice in one mapping."""
    out: list[tuple[int, str]] = []
    stack = [root] if root is not None else []
    seen_nodes: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # aliases share nodes
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    line = k.start_mark.line + 1
                    if k.value in first:
                        out.append((line, f"duplicate key {k.value!r} (first at line {first[k.value]})"))
                    else:
                        first[k.value] = line
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(out)


_UNION_TAGS = {"modbus", "snmp", "mqtt", "sparkplug"}


def _validation_error(path: Path, node: yaml.Node | None, exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors():
        # drop the union tag pydantic inserts after a device's index (devices.1.snmp.timeout)
        raw = list(err["loc"])
        loc = [p for k, p in enumerate(raw) if not (p in _UNION_TAGS and k > 0 and isinstance(raw[k - 1], int))]
        line = _line_of(node, loc)
        where = f"{path}:{line}" if line else str(path)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check spelling; see `pue config-schema`)"
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

    def resolve(self, raw: str | Path) -> Path:
        """A path named in the site file: relative paths start from the site file's folder (as
        ``pue check-config`` checks them), whatever the working folder."""
        p = Path(raw)
        return p if p.is_absolute() else self.base_dir / p

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


def _meaning_problems(
    devices: list[tuple[int, Device]],
    profiles: dict[str, ModbusProfile | SnmpProfile],
    *,
    all_devices_valid: bool,
) -> list[tuple[list[Any], str]]:
    problems: list[tuple[list[Any], str]] = []
    for i, dev in devices:
        found = _device_units(dev, profiles, i, problems)
        if found is None or dev.meter is None:
            continue
        unit_of, chosen = found
        water = dev.meter.role is Role.WATER
        fields = (("volume", "volume"), ("flow", "flow")) if water else (("energy", "energy"), ("power", "power"))
        for (field, quantity), names in zip(fields, (dev.meter.energy_points, dev.meter.power_points), strict=True):
            for k, name in enumerate(names):
                loc = ["devices", i, "meter", field] + ([k] if isinstance(getattr(dev.meter, field), list) else [])
                _check_meter_point(dev, profiles, unit_of, chosen, name, quantity, loc, problems)
    problems += _hierarchy_problems(devices)
    if all_devices_valid:  # else the missing role may sit on a device that failed validation
        roles = {d.meter.role for _, d in devices if d.meter}
        for needed in (Role.FACILITY_INPUT, Role.IT):
            if needed not in roles:
                problems.append(
                    (
                        ["devices"],
                        f"the energy model needs at least one meter with role {needed.value!r} to compute PUE",
                    )
                )
    return problems


def _hierarchy_problems(devices: list[tuple[int, Device]]) -> list[tuple[list[Any], str]]:
    """The meter hierarchy (``meter.parent``): parents are configured electricity meters, children
    are electricity meters, and no chain of parents comes back to where it started."""
    by_id = {d.id: (i, d) for i, d in devices}
    problems: list[tuple[list[Any], str]] = []
    parents: dict[str, str] = {}
    for i, dev in devices:
        m = dev.meter
        if m is None or m.parent is None:
            continue
        loc: list[Any] = ["devices", i, "meter", "parent"]
        if m.role is Role.WATER:
            problems.append((loc, "a water meter has no parent in the electricity hierarchy"))
            continue
        if m.parent == dev.id:
            problems.append((loc, f"device {dev.id!r} cannot be its own parent"))
            continue
        found = by_id.get(m.parent)
        if found is None:
            problems.append((loc, f"no device {m.parent!r} in devices"))
            continue
        pm = found[1].meter
        if pm is None or pm.role is Role.WATER:
            what = "no meter" if pm is None else "a water meter"
            problems.append((loc, f"parent {m.parent!r} is {what}, not an electricity meter"))
            continue
        parents[dev.id] = m.parent
    reported: set[str] = set()
    for start in parents:
        seen = [start]
        node = parents.get(start)
        while node is not None and node not in seen:
            seen.append(node)
            node = parents.get(node)
        if node == start and start not in reported:
            reported.update(seen)
            cycle = " -> ".join([*seen, start])
            loc = ["devices", by_id[start][0], "meter", "parent"]
            problems.append((loc, f"the meter hierarchy has a cycle: {cycle}"))
    return problems


def _cooling_problems(
    site: SiteConfig | None, devices: list[tuple[int, Device]], profiles: dict[str, ModbusProfile | SnmpProfile]
) -> list[tuple[list[Any], str]]:
    """The cooling: section's points name configured devices and points they serve."""
    if site is None or site.cooling is None:
        return []
    by_id = {d.id: (i, d) for i, d in devices}
    problems: list[tuple[list[Any], str]] = []
    for name, ref in site.cooling.points:
        if ref is None:
            continue
        if ref.device not in by_id:
            problems.append((["cooling", "points", name, "device"], f"no device {ref.device!r} in devices"))
            continue
        i, dev = by_id[ref.device]
        found = _device_units(dev, profiles, i, [])  # the device's own problems are reported already
        if found is not None and not is_wildcard(ref.point) and found[0](ref.point) is None:
            problems.append((["cooling", "points", name, "point"], f"device {ref.device!r} has no point {ref.point!r}"))
    return problems


def _format_problems(path: Path, node: yaml.Node | None, problems: list[tuple[list[Any], str]]) -> list[str]:
    msgs = []
    for loc, msg in problems:
        line = _line_of(node, loc)
        msgs.append(f"{path}:{line}: {_format_loc(loc)}: {msg}" if line else f"{path}: {_format_loc(loc)}: {msg}")
    return msgs


def _check_meaning(
    site: SiteConfig, profiles: dict[str, ModbusProfile | SnmpProfile], node: yaml.Node | None, path: Path
) -> None:
    problems = _meaning_problems(list(enumerate(site.devices)), profiles, all_devices_valid=True)
    if problems:
        raise ConfigError("\n".join(_format_problems(path, node, problems)))


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
        article = "an" if quantity[0] in "aeiou" else "a"
        problems.append((loc, f"point {name!r} has unit {unit!r}, not {article} {quantity} unit ({allowed})"))


def load_site(path: str | Path) -> LoadedSite:
    """Read, validate and check a site file. Raises :class:`ConfigError` naming every
    shape and meaning error of the file (not secrets or directories: see :func:`check_site`)."""
    result = check_site(path, secrets=False, directories=False)
    if result.errors or result.site is None:
        raise ConfigError("\n".join(result.errors))
    return result.site


def site_from_dict(data: dict[str, Any], *, source: str, base_dir: Path | None = None) -> LoadedSite:
    """Validate a site given as a mapping (generated configs: the simulator's, tests')."""
    return _validate_site(data, None, Path(source), base_dir=base_dir)


def _validate_site(data: Any, node: yaml.Node | None, path: Path, base_dir: Path | None = None) -> LoadedSite:
    result = _check(data, node, path, base_dir, secrets=False, directories=False)
    if result.errors or result.site is None:
        raise ConfigError("\n".join(result.errors))
    return result.site


# ---------------------------------------------------------------------- check-config


@dataclass(frozen=True)
class SiteCheck:
    """Every error of a site file (empty: the file is good) and the site when it loaded."""

    path: Path
    site: LoadedSite | None
    errors: list[str]


_DEVICE = TypeAdapter[Device](Device)
_SECTIONS: dict[str, Any] = {
    "store": TypeAdapter(StoreConfig),
    "influxdb": TypeAdapter(InfluxConfig),
    "mqtt": TypeAdapter(MqttBroker),
    "alerts": TypeAdapter(AlertsConfig),
}


def check_site(path: str | Path, *, secrets: bool = True, directories: bool = True) -> SiteCheck:
    """Check a site file and collect *every* error in one pass (what `pue check-config`
    prints): YAML problems and duplicate keys, every shape error (pydantic), every meaning
    error (profiles, points, units, roles) of the devices that have the right shape, and —
    with ``secrets`` — every secret that cannot be resolved (naming the variable or file,
    never a value) and — with ``directories`` — every output directory (store, spool,
    state file) that neither exists nor can be created. Nothing is written."""
    path = Path(path)
    try:
        data, node, dups = _parse_yaml(path)
    except ConfigError as exc:
        return SiteCheck(path, None, str(exc).splitlines())
    result = _check(data, node, path, None, secrets=secrets, directories=directories)
    if dups:
        return SiteCheck(path, None, [*dups, *result.errors])
    return result


def _check(
    data: Any, node: yaml.Node | None, path: Path, base_dir: Path | None, *, secrets: bool, directories: bool
) -> SiteCheck:
    if not isinstance(data, dict):
        return SiteCheck(path, None, [f"{path}: expected a mapping at the top level (site:, devices:, ...)"])
    errors: list[str] = []
    base = base_dir if base_dir is not None else path.parent
    site: SiteConfig | None = None
    try:
        site = SiteConfig.model_validate(data)
    except ValidationError as exc:
        errors.extend(str(_validation_error(path, node, exc)).splitlines())
    # the parts that have the right shape, for the checks below (also when the whole failed)
    devices: list[tuple[int, Device]] = []
    sections: dict[str, Any] = {}
    all_devices_valid = site is not None
    if site is not None:
        devices = list(enumerate(site.devices))
        sections = {"store": site.store, "influxdb": site.influxdb, "mqtt": site.mqtt, "alerts": site.alerts}
    else:
        raw_devices = data.get("devices")
        if isinstance(raw_devices, list):
            for i, raw in enumerate(raw_devices):
                try:
                    devices.append((i, _DEVICE.validate_python(raw)))
                except ValidationError:
                    continue  # reported above
        for name, adapter in _SECTIONS.items():
            if name in data:
                try:
                    sections[name] = adapter.validate_python(data[name])
                except ValidationError:
                    continue
        if "store" not in sections:
            sections["store"] = StoreConfig()
    raw_dirs = site.profile_dirs if site is not None else data.get("profile_dirs", [])
    profiles: dict[str, ModbusProfile | SnmpProfile] | None = None
    try:
        dirs = [base / d for d in raw_dirs] if isinstance(raw_dirs, list) else []
        profiles = load_profiles(dirs)
    except ConfigError as exc:
        errors.extend(str(exc).splitlines())
    if profiles is not None:
        problems = _meaning_problems(devices, profiles, all_devices_valid=all_devices_valid)
        problems += _cooling_problems(site, devices, profiles)
        errors.extend(_format_problems(path, node, problems))
    if secrets:
        errors.extend(_secret_errors(path, node, base, devices, sections))
    if directories:
        store_on = site.store_enabled if site is not None else sections.get("influxdb") is None
        errors.extend(_directory_errors(path, node, base, sections, store_on=store_on))
    if errors or site is None or profiles is None:
        return SiteCheck(path, None, errors)
    return SiteCheck(path, LoadedSite(path=path, config=site, profiles=profiles), errors)


def _secrets_in(obj: Any, loc: list[Any]) -> Iterable[tuple[list[Any], Secret]]:
    if isinstance(obj, Secret):
        yield loc, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _secrets_in(getattr(obj, name), [*loc, name])
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _secrets_in(v, [*loc, i])
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _secrets_in(v, [*loc, k])


def _secret_errors(
    path: Path, node: yaml.Node | None, base: Path, devices: list[tuple[int, Device]], sections: dict[str, Any]
) -> list[str]:
    found = [*(x for i, d in devices for x in _secrets_in(d, ["devices", i]))]
    for name, section in sections.items():
        found.extend(_secrets_in(section, [name]))
    problems = []
    for loc, secret in found:
        try:
            secret.read(str(base))  # registers the value for log redaction; never printed
        except ConfigError as exc:
            problems.append((loc, str(exc)))
    return _format_problems(path, node, problems)


def _directory_errors(
    path: Path, node: yaml.Node | None, base: Path, sections: dict[str, Any], *, store_on: bool
) -> list[str]:
    files: list[tuple[list[Any], str]] = []
    store, influx = sections.get("store"), sections.get("influxdb")
    if store is not None and store_on:
        files.append((["store", "path"], store.path))
    if influx is not None:
        files.append((["influxdb", "spool", "path"], influx.spool.path))
    if store is not None and store.state_path is not None:  # restart state of an InfluxDB-only site
        files.append((["store", "state_path"], store.state_path))
    alerts = sections.get("alerts")
    if alerts is not None and alerts.notifiers and alerts.state_dir is not None:  # the alert engine's files
        files.append((["alerts", "state_dir"], str(Path(alerts.state_dir) / "state.json")))
    problems = []
    for loc, raw in files:
        target = Path(raw) if Path(raw).is_absolute() else base / raw
        why = _cannot_create(target)
        if why:
            problems.append((loc, f"{target}: {why}"))
    return _format_problems(path, node, problems)


def _cannot_create(target: Path) -> str | None:
    """Why the file ``target`` could not be created or written (None: it can)."""
    if target.is_dir():
        return "is a directory, not a file"
    if target.exists():
        return None if os.access(target, os.W_OK) else "exists but is not writable"
    parent = target.parent
    missing = []
    while not parent.exists():
        missing.append(parent)
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        what = "cannot be created" if missing else "is not writable"
        return f"directory {missing[-1] if missing else parent} {what} ({parent}: permission denied)"
    return None
