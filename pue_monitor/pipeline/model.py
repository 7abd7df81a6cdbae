"""The site's energy model as the pipeline sees it: one :class:`SeriesSpec` per (device, point).

Shared by the live service and by batch paths (CSV backfill, reports), so every path judges
readings with the same meters, roles, rollovers and limits.
"""

from __future__ import annotations

from typing import Literal

from pue_monitor.config.loader import LoadedSite
from pue_monitor.config.models import UNITS, SnmpProfile
from pue_monitor.pipeline.energy import SeriesSpec

__all__ = ["series_specs"]


def series_specs(site: LoadedSite) -> dict[tuple[str, str], SeriesSpec]:
    """The energy model as the pipeline needs it: one spec per (device, point)."""
    specs: dict[tuple[str, str], SeriesSpec] = {}
    for dev in site.config.devices:
        m = dev.meter
        if m is None:
            continue
        max_gap = 2.5 * dev.interval  # one missed poll is still "measured"; two is a gap
        rollover = m.rollover
        prof = site.profiles.get(getattr(dev, "profile", ""))
        if rollover is None and m.energy is not None and isinstance(prof, SnmpProfile):
            rollover = prof.rollover_of(m.energy)  # Counter32/Counter64 wrap: 2**bits * scale
        sources: tuple[tuple[Literal["counter", "power"], str | None, float | None], ...] = (
            ("counter", m.energy, rollover),
            ("power", m.power, None),
        )
        for kind, point, wrap in sources:
            if point is None:
                continue
            specs[(dev.id, point)] = SeriesSpec(
                meter=dev.id,
                role=m.role,
                it_location=m.it_location,
                kind=kind,
                factor=UNITS[site.unit_of(dev, point) or ""][1],
                rollover=wrap,
                max_gap=max_gap,
                max_power_kw=m.max_power,
                resolution=(m.resolution or 0.0) if kind == "counter" else 0.0,
            )
    return specs
