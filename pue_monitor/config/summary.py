"""Human/JSON summary of a site's energy model (`pue check-config`)."""

from __future__ import annotations

from typing import Any

from pue_monitor.config.loader import LoadedSite
from pue_monitor.config.models import Role


def energy_model_summary(site: LoadedSite) -> dict[str, Any]:
    """What `pue check-config` prints: meters per role, category, estimates."""
    roles: dict[str, list[dict[str, Any]]] = {r.value: [] for r in Role}
    cats = []
    for dev in site.config.devices:
        m = dev.meter
        if m is None:
            continue
        source = "counter" if m.energy else "power (integrated: estimated)"
        points = m.energy_points or m.power_points
        entry: dict[str, Any] = {"device": dev.id, "energy": source, "point": " + ".join(points)}
        if m.it_location is not None:
            entry["it_location"] = m.it_location.value
            cats.append(m.it_location.category)
        if m.rollover:
            entry["rollover"] = m.rollover
        roles[m.role.value].append(entry)
    category = min(cats) if cats else None
    return {
        "site": site.config.site.id,
        "timezone": site.config.site.timezone,
        "devices": len(site.config.devices),
        "thresholds": {"warning": site.config.thresholds.warning, "critical": site.config.thresholds.critical},
        "measurement_category": category,
        "roles": {k: v for k, v in roles.items() if v},
        "unmetered_subsystems": [
            r.value for r in Role if r not in (Role.FACILITY_INPUT, Role.IT) and not roles[r.value]
        ],
    }
