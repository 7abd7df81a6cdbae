"""Energy accounting and PUE (ISO/IEC 30134-2): batch interval energy, rollups, live engine."""

from pue_monitor.pipeline.energy import IntervalEnergy, SeriesSpec, Status, interval_energy
from pue_monitor.pipeline.live import InstantPower, LivePipeline
from pue_monitor.pipeline.pue import PueInterval, aggregate, rollup

__all__ = [
    "InstantPower",
    "IntervalEnergy",
    "LivePipeline",
    "PueInterval",
    "SeriesSpec",
    "Status",
    "aggregate",
    "interval_energy",
    "rollup",
]
