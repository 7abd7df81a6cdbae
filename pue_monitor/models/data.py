"""Training and scoring data: per-interval energies and outdoor weather, and their features.

One row per interval (15 minutes or 1 minute): start and end (POSIX s), IT and facility
energy (kWh) over the interval, the interval's mean outdoor dry-bulb (°C) and relative
humidity (%), optionally pressure (Pa). Everything is a numpy array of one length;
NaN marks a missing value (rows with a missing target are dropped from training; a missing
weather value is left to the estimator, which handles NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pue_monitor.config.models import CoolingConfig, WaterSideEconomiser
from pue_monitor.freecooling.availability import Weather, classify
from pue_monitor.freecooling.psychro import moist_air

Array = npt.NDArray[np.float64]

#: local-time offset used for the time-of-day features, s (the site's UTC offset)
DAY_S = 86400.0

#: feature names, in column order of :func:`features`
FEATURES: tuple[str, ...] = (
    "it_kw",
    "dry_bulb_c",
    "wet_bulb_c",
    "free_cooling_fraction",
    "hour_sin",
    "hour_cos",
)


@dataclass(frozen=True)
class Intervals:
    """Arrays of one length, one row per interval."""

    start: Array
    end: Array
    it_kwh: Array
    facility_kwh: Array
    dry_bulb_c: Array
    rh_pct: Array
    pressure_pa: Array | None = None

    def __post_init__(self) -> None:
        n = len(self.start)
        for name in ("end", "it_kwh", "facility_kwh", "dry_bulb_c", "rh_pct"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Intervals.{name} has {len(getattr(self, name))} rows, start has {n}")
        if self.pressure_pa is not None and len(self.pressure_pa) != n:
            raise ValueError(f"Intervals.pressure_pa has {len(self.pressure_pa)} rows, start has {n}")

    def __len__(self) -> int:
        return len(self.start)

    @property
    def hours(self) -> Array:
        """Interval lengths, h."""
        out: Array = (self.end - self.start) / 3600.0
        return out

    @property
    def it_kw(self) -> Array:
        out: Array = self.it_kwh / self.hours
        return out

    @property
    def overhead_kwh(self) -> Array:
        """Facility minus IT energy (cooling, losses, lighting), kWh."""
        out: Array = self.facility_kwh - self.it_kwh
        return out

    @property
    def pue(self) -> Array:
        """Interval PUE from energies (NaN where IT energy is not positive)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out: Array = np.where(self.it_kwh > 0, self.facility_kwh / self.it_kwh, np.nan)
        return out

    def select(self, mask: npt.NDArray[np.bool_]) -> Intervals:
        p = None if self.pressure_pa is None else self.pressure_pa[mask]
        return Intervals(
            self.start[mask],
            self.end[mask],
            self.it_kwh[mask],
            self.facility_kwh[mask],
            self.dry_bulb_c[mask],
            self.rh_pct[mask],
            p,
        )


def default_cooling() -> CoolingConfig:
    """A water-side economiser with the library defaults (tower 4 K, HX 2 K, CHW 15/21 °C)."""
    return CoolingConfig(economisers=[WaterSideEconomiser(id="water-side", type="water_side")])


def features(
    iv: Intervals, *, cooling: CoolingConfig | None = None, utc_offset_s: float = 0.0, altitude_m: float = 0.0
) -> npt.NDArray[np.float64]:
    """Feature matrix (rows x :data:`FEATURES`): IT power, dry- and wet-bulb, the free-cooling
    fraction of the site's first economiser (:func:`availability.classify`) and the local time
    of day of the interval's midpoint as a point on the unit circle."""
    cooling = cooling or default_cooling()
    air = moist_air(iv.dry_bulb_c, iv.rh_pct, iv.pressure_pa, altitude_m=altitude_m)
    avail = classify(
        Weather(np.asarray(iv.dry_bulb_c, float), np.asarray(iv.rh_pct, float), iv.pressure_pa),
        cooling,
        cooling.economisers[:1],
    )
    free = next(iter(avail.fraction.values()))
    mid = (iv.start + iv.end) / 2.0 + utc_offset_s
    ang = 2.0 * np.pi * np.mod(mid, DAY_S) / DAY_S
    return np.column_stack([iv.it_kw, iv.dry_bulb_c, air.wet_bulb_c, free, np.sin(ang), np.cos(ang)]).astype(np.float64)
