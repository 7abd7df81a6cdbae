"""A physically plausible simulated data centre (Taiyuan-like climate) for demos and tests.

- :mod:`~pue_monitor.simulator.physics`: parameters, weather and per-meter power (pure).
- :mod:`~pue_monitor.simulator.world`: ground-truth energy integration and fault hooks.
- :mod:`~pue_monitor.simulator.servers`: real pymodbus TCP servers serving the meters.
"""

from pue_monitor.simulator.physics import (
    METER_IDS,
    Faults,
    Noise,
    SimParams,
    Weather,
    loads,
    weather,
)
from pue_monitor.simulator.servers import SimulatorServers
from pue_monitor.simulator.world import METERS, MeterSpec, SimulatedDataCentre

__all__ = [
    "METERS",
    "METER_IDS",
    "Faults",
    "MeterSpec",
    "Noise",
    "SimParams",
    "SimulatedDataCentre",
    "SimulatorServers",
    "Weather",
    "loads",
    "weather",
]
