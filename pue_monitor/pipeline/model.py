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
    """The energy model as the pipeline needs it: one spec per (device, point).

    A meter whose energy or power is a list of points gets one spec per point; the pipeline
    sums a meter's series (and takes the worst status), so a reset of one counter is judged on
    that counter alone. Note a per-device unit override changes the factor (``site.unit_of``).
    """
    specs: dict[tuple[str, str], SeriesSpec] = {}
    for dev in site.config.devices:
        m = dev.meter
        if m is None:
            continue
        max_gap = 2.5 * dev.interval  # one missed poll is still "measured"; two is a gap
        prof = site.profiles.get(getattr(dev, "profile", ""))
        sources: list[tuple[Literal["counter", "power"], str, float | None]] = []
        for point in m.energy_points:  # several counters: one series each, summed per meter
            rollover = m.rollover
            if rollover is None and isinstance(prof, SnmpProfile):
                rollover = prof.rollover_of(point)  # Counter32/Counter64 wrap: 2**bits * scale
                col = point.split(".", 1)[0]
                ov = getattr(dev, "overrides", {}).get(col)
                if rollover is not None and ov is not None and ov.scale is not None and col in prof.points:
                    rollover = rollover / abs(prof.points[col].scale) * abs(ov.scale)  # the device's scale
            sources.append(("counter", point, rollover))
        # several power points: one series each; a wildcard ``col.*`` is one series (summed by the collector)
        sources.extend(("power", point, None) for point in m.power_points)
        for kind, point, wrap in sources:
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
