"""Simulated intervals straight from the simulator's physics (no servers), for evaluation.

Power is sampled at 1-minute midpoints (:func:`physics.loads`, vectorised) and summed into
interval energies (midpoint rule, as the simulated world integrates). The weather is the
simulator's own model (:func:`physics._weather_parts`: seasonal, diurnal and synoptic terms,
the day's dew point held over the day) evaluated over whole arrays with
:mod:`pue_monitor.freecooling.psychro` instead of psychrolib's scalar loop (same ASHRAE
equations, within 1e-3 K), so a year of minutes takes about a second.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pue_monitor.freecooling.psychro import moist_air, sat_vap_pres
from pue_monitor.models.data import Array, Intervals
from pue_monitor.simulator import physics
from pue_monitor.simulator.physics import Faults, Noise, SimParams

#: 2026-01-01 00:00 UTC
YEAR_2026 = 1767225600.0
MINUTE = 60.0


def weather(t: Array, p: SimParams, noise: Noise) -> physics.Weather:
    """The simulator's weather at ``t`` (vectorised)."""
    t_season, syn_t, diurnal, rh_day, syn_td, pres = physics._weather_parts(t, p, noise)
    dry = t_season + syn_t + diurnal
    td0 = moist_air(t_season, np.clip(rh_day, 1.0, 100.0), pres * 100.0).dew_point_c
    td = np.minimum(td0 + syn_t + syn_td, dry)
    rh = np.clip(100.0 * sat_vap_pres(td) / sat_vap_pres(dry), 0.0, 100.0)
    wb = moist_air(dry, rh, pres * 100.0).wet_bulb_c
    return physics.Weather(dry, rh, pres, wb)


def intervals(
    start: float,
    days: float,
    *,
    interval_s: float = 900.0,
    seed: int = 0,
    params: SimParams | None = None,
    faults: Faults | None = None,
) -> Intervals:
    """``days`` of ``interval_s`` intervals from ``start`` (1-minute sampling inside each)."""
    p = params or SimParams()
    noise = Noise.from_seed(seed, p)
    per = round(interval_s / MINUTE)
    if per < 1 or abs(per * MINUTE - interval_s) > 1e-9:
        raise ValueError(f"interval_s must be a whole number of minutes, not {interval_s}")
    n = round(days * 86400.0 / interval_s)
    tm: Array = start + (np.arange(n * per, dtype=np.float64) + 0.5) * MINUTE
    wx = weather(tm, p, noise)
    ld = physics.loads(tm, p, faults, noise=noise, wx=wx)
    h = MINUTE / 3600.0

    def energy(key: str) -> Array:
        out: Array = np.asarray(ld[key], float).reshape(n, per).sum(axis=1) * h
        return out

    def mean(v: physics.Float) -> Array:
        out: Array = np.asarray(v, float).reshape(n, per).mean(axis=1)
        return out

    t0: Array = start + np.arange(n, dtype=np.float64) * interval_s
    return Intervals(
        start=t0,
        end=t0 + interval_s,
        it_kwh=energy("it"),
        facility_kwh=energy("facility"),
        dry_bulb_c=mean(wx.dry_bulb_c),
        rh_pct=mean(wx.rh_pct),
        pressure_pa=mean(wx.pressure_hpa) * 100.0,
    )


def chiller_fault(since: float, cop_loss: float, ramp_h: float = 2.0) -> Faults:
    """Chiller COP falls by ``cop_loss`` points over ``ramp_h`` hours from ``since``, then stays."""
    rate = cop_loss * 24.0 / ramp_h
    return Faults(chiller_degradation=((since, rate), (since + ramp_h * 3600.0, -rate)))


def with_it_step(faults: Faults | None, since: float, factor: float) -> Faults:
    """``faults`` plus an IT load step by ``factor`` (e.g. 1.15) from ``since``."""
    f = faults or Faults()
    return dataclasses.replace(f, it_steps=(*f.it_steps, (float(since), float(factor))))


def tower_fouling(since: float, approach_rise_k: float, ramp_h: float = 48.0) -> Faults:
    """The cooling tower's approach rises by ``approach_rise_k`` K over ``ramp_h`` hours from
    ``since``, then stays (a fouled tower: warmer condenser water, less free cooling)."""
    rate = approach_rise_k * 24.0 / ramp_h
    return Faults(tower_fouling=((since, rate), (since + ramp_h * 3600.0, -rate)))


def economiser_failure(since: float, until: float | None = None) -> Faults:
    """The economiser's valve or damper stuck shut from ``since`` (to ``until``): chillers run
    even when free cooling is available."""
    return Faults(economiser_failures=((since, until),))


def combine(*faults: Faults) -> Faults:
    """One :class:`Faults` with every fault of ``faults``."""
    return Faults(
        chiller_degradation=tuple(x for f in faults for x in f.chiller_degradation),
        it_steps=tuple(x for f in faults for x in f.it_steps),
        tower_fouling=tuple(x for f in faults for x in f.tower_fouling),
        economiser_failures=tuple(x for f in faults for x in f.economiser_failures),
    )
