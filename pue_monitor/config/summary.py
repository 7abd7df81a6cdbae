"""Human/JSON summary of a site's energy model (`pue check-config`)."""

from __future__ import annotations

from typing import Any

from pue_monitor.config.loader import LoadedSite
from pue_monitor.config.models import SUBSYSTEMS, Role


def energy_model_summary(site: LoadedSite) -> dict[str, Any]:
    """What `pue check-config` prints: meters per role, category, estimates."""
    roles: dict[str, list[dict[str, Any]]] = {r.value: [] for r in Role}
    cats = []
    for dev in site.config.devices:
        m = dev.meter
        if m is None:
            continue
        rate = "flow" if m.role is Role.WATER else "power"
        source = "counter" if m.energy_points else f"{rate} (integrated: estimated)"
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
        "unmetered_subsystems": [r.value for r in SUBSYSTEMS if not roles[r.value]],
        "kpis": _kpis(site, roles),
    }


def _kpis(site: LoadedSite, roles: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Which companion KPIs the site can measure, and from what (ISO/IEC 30134 parts)."""
    k = site.config.kpis
    ef = k.emission_factor
    contract = k.renewable_contract
    renewable = "meter" if roles[Role.RENEWABLE.value] else f"contract ({contract.source})" if contract else None
    return {
        "wue": f"water meter ({k.water_definition})" if roles[Role.WATER.value] else "not measured (no water meter)",
        "cue": f"emission factor {ef.kg_per_kwh} kg/kWh ({ef.year}, {ef.type}; {ef.source})"
        + (f", renewable from {renewable}" if renewable else ", grid only"),
        "erf": "heat-reuse meter" if roles[Role.HEAT_REUSE.value] else "not measured (no heat-reuse meter)",
        "ref": renewable or "not measured (no renewable meter or contract)",
    }
