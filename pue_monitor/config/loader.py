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
from pydantic import ValidationError

from pue_monitor.config.models import UNITS, Device, Profile, Role, SiteConfig
from pue_monitor.errors import ConfigError

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


def load_profile(path: Path) -> Profile:
    data, node = _read_yaml(path)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(path, node, exc) from None


def load_profiles(extra_dirs: Iterable[Path] = ()) -> dict[str, Profile]:
    """Built-in profiles plus those in ``extra_dirs`` (a later one overrides by id)."""
    profiles: dict[str, Profile] = {}
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
    profiles: dict[str, Profile]

    def profile_of(self, device: Device) -> Profile:
        return self.profiles[device.profile]

    def points_of(self, device: Device) -> list[str]:
        prof = self.profile_of(device)
        return list(device.points) if device.points is not None else list(prof.points)


def _check_meaning(site: SiteConfig, profiles: dict[str, Profile], node: yaml.Node | None, path: Path) -> None:
    problems: list[tuple[list[Any], str]] = []
    for i, dev in enumerate(site.devices):
        prof = profiles.get(dev.profile)
        if prof is None:
            problems.append(
                (["devices", i, "profile"], f"unknown profile {dev.profile!r} (known: {', '.join(sorted(profiles))})")
            )
            continue
        chosen = dev.points if dev.points is not None else list(prof.points)
        for j, p in enumerate(dev.points or []):
            if p not in prof.points:
                problems.append((["devices", i, "points", j], f"profile {prof.id!r} has no point {p!r}"))
        if dev.meter is None:
            continue
        for field, quantity in (("energy", "energy"), ("power", "power")):
            name = getattr(dev.meter, field)
            if name is None:
                continue
            loc = ["devices", i, "meter", field]
            if name not in prof.points:
                problems.append((loc, f"profile {prof.id!r} has no point {name!r}"))
            elif name not in chosen:
                problems.append((loc, f"point {name!r} is not among the device's points"))
            elif UNITS.get(prof.points[name].unit, ("", 0))[0] != quantity:
                allowed = ", ".join(u for u, (q, _) in UNITS.items() if q == quantity)
                problems.append(
                    (loc, f"point {name!r} has unit {prof.points[name].unit!r}, not an {quantity} unit ({allowed})")
                )
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
