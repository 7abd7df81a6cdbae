"""Free-cooling availability of each economiser from outdoor weather, vectorised.

For every economiser and every time step the *fraction of the cooling load it can carry*:

- 1: **full** free cooling (no chiller needed);
- 0 < f < 1: **partial** (the economiser pre-cools, the chiller trims);
- 0: **none**;
- NaN: **unknown** (the weather it needs is missing) — never "none".

Between the full and the none limit the fraction is linear in the driving temperature
(the economiser's leaving temperature against the set point it must reach), the usual
integrated-economiser assumption: with leaving temperature ``s``, full limit ``a`` and none
limit ``b``, ``f = clip((b - s) / (b - a), 0, 1)``. Limits per type (docs/domain.md "Free cooling"):

- ``water_side``: s = T_wb + tower approach + HX approach; full at CHW supply, none at CHW return;
- ``dry_cooler``: s = T_db + dry-cooler approach + HX approach; full at CHW supply, none at return;
- ``direct_air``: s = T_db + fan heat; full at the supply-air set point, none at return air;
- ``indirect_air``: s = T_db (T_wb if evaporative) + HX approach + fan heat; same limits.

Direct air also needs the outdoor moisture inside the IT inlet envelope (dew point limits,
RH at the supply-air temperature): outside it the fraction is 0 (the air cannot be let in
without (de)humidification). Enthalpy control (h_out < h_return) adds nothing here: the
return air carries the outdoor moisture, so it reduces to T_db < return air.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pue_monitor.config.models import (
    CoolingConfig,
    DirectAirEconomiser,
    DryCoolerEconomiser,
    Envelope,
    IndirectAirEconomiser,
    WaterSideEconomiser,
)
from pue_monitor.freecooling.psychro import Array, moist_air, sat_vap_pres

AnyEconomiser = WaterSideEconomiser | DryCoolerEconomiser | DirectAirEconomiser | IndirectAirEconomiser


class Mode(enum.IntEnum):
    """Availability class; stored as int8 (UNKNOWN = -1)."""

    UNKNOWN = -1
    NONE = 0
    PARTIAL = 1
    FULL = 2


MODE_NAMES = ("full", "partial", "none", "unknown")


@dataclass(frozen=True)
class Weather:
    """Outdoor weather arrays of one length; NaN where missing."""

    dry_bulb_c: Array
    rh_pct: Array
    pressure_pa: Array | None = None


@dataclass(frozen=True)
class Availability:
    """Per economiser id: the load fraction it can carry (NaN unknown) and the mode (int8)."""

    fraction: dict[str, Array]
    mode: dict[str, npt.NDArray[np.int8]]
    wet_bulb_c: Array
    dew_point_c: Array


def _linear(s: Array, full_at: float, none_at: float) -> Array:
    out: Array = np.clip((none_at - s) / (none_at - full_at), 0.0, 1.0)
    return out


def _moisture_ok(dew_point_c: Array, vap_pres_pa: Array, supply_c: float, env: Envelope) -> npt.NDArray[np.bool_]:
    ok = np.ones(dew_point_c.shape, dtype=bool)
    if env.dew_point_min_c is not None:
        ok &= dew_point_c >= env.dew_point_min_c
    if env.dew_point_max_c is not None:
        ok &= dew_point_c <= env.dew_point_max_c
    if env.rh_min_pct is not None or env.rh_max_pct is not None:
        rh_supply = 100.0 * vap_pres_pa / float(sat_vap_pres(supply_c)[()])
        if env.rh_min_pct is not None:
            ok &= rh_supply >= env.rh_min_pct
        if env.rh_max_pct is not None:
            ok &= rh_supply <= env.rh_max_pct
    return ok


def modes(fraction: Array) -> npt.NDArray[np.int8]:
    """Mode codes from fractions: NaN unknown, 1 full, 0 none, else partial."""
    out = np.full(fraction.shape, Mode.PARTIAL, dtype=np.int8)
    out[fraction >= 1.0] = Mode.FULL
    out[fraction <= 0.0] = Mode.NONE
    out[np.isnan(fraction)] = Mode.UNKNOWN
    return out


def classify(
    weather: Weather, cooling: CoolingConfig, economisers: Sequence[AnyEconomiser] | None = None
) -> Availability:
    """Availability of each economiser (default: the config's) for every weather row."""
    econ = list(cooling.economisers if economisers is None else economisers)
    tdb = np.asarray(weather.dry_bulb_c, dtype=np.float64)
    air = moist_air(tdb, weather.rh_pct, weather.pressure_pa, altitude_m=cooling.altitude_m)
    env = cooling.inlet_envelope
    fractions: dict[str, Array] = {}
    for e in econ:
        if isinstance(e, WaterSideEconomiser):
            f = _linear(air.wet_bulb_c + e.tower_approach_k + e.hx_approach_k, e.chw_supply_c, e.chw_return_c)
        elif isinstance(e, DryCoolerEconomiser):
            f = _linear(tdb + e.dry_cooler_approach_k + e.hx_approach_k, e.chw_supply_c, e.chw_return_c)
        elif isinstance(e, DirectAirEconomiser):
            f = _linear(tdb + e.fan_heat_k, e.supply_air_c, e.return_air_c)
            ok = _moisture_ok(air.dew_point_c, air.vap_pres_pa, e.supply_air_c, env)
            f = np.where(np.isnan(air.dew_point_c), np.nan, np.where(ok, f, 0.0))
        else:
            source = air.wet_bulb_c if e.variant == "evaporative" else tdb
            f = _linear(source + e.hx_approach_k + e.fan_heat_k, e.supply_air_c, e.return_air_c)
        # NaN in gives NaN out through the arithmetic above; make it explicit for clip's sake
        fractions[e.id] = f.astype(np.float64)
    return Availability(
        fraction=fractions,
        mode={k: modes(v) for k, v in fractions.items()},
        wet_bulb_c=air.wet_bulb_c,
        dew_point_c=air.dew_point_c,
    )
