"""Physics of the simulated data centre: pure, numpy-friendly, deterministic.

Everything takes time as POSIX seconds (UTC), a float or a numpy array, and returns
floats or arrays of the same shape. Seasonal and diurnal phase come from the site's
local time (Asia/Shanghai, UTC+8, no DST: ``t + 8 h``).

Numbers live in :class:`SimParams`, each with the source and how sure we are, using the
tags of ``docs/domain.md``: [c] confirmed, [s] secondary source, [u] unconfirmed /
engineering guess. Nothing here is a measured Taiyuan data centre; it is a plausible one.

Energy model (what the meters see)::

    facility = IT + PDU/transformer losses + UPS losses          (power delivery)
             + chiller plant (chillers + heat rejection + CHW pumps)
             + CRAH fans + lighting & misc
    incomer-a + incomer-b = facility
    pdu-1..4 (Modbus) + rack-pdu-1..2 (SNMP, APC rPDU2)  = IT   (PDU output)
    UPS output = IT + PDU losses; UPS input = UPS output + UPS loss (shown by the SNMP UPS)
    UPS and PDU losses are not sub-metered (the remainder).

All electrical power ends up as heat inside the building except what the heat
rejection plant itself uses outdoors; the cooling plant removes
``heat = IT + PDU loss + UPS loss + CRAH fans + lighting``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import psychrolib

psychrolib.SetUnitSystem(psychrolib.SI)  # once, module-wide: °C, Pa, RH as 0..1

#: Site time zone offset: Asia/Shanghai is UTC+8 all year (no DST since 1991).
UTC_OFFSET_S = 8 * 3600.0
DAY_S = 86400.0
#: Mean tropical year in days (seasonal phase).
YEAR_D = 365.2425
#: Refrigeration ton in kW (thermal).
KW_PER_TON = 3.517

Float = float | np.ndarray


# ---------------------------------------------------------------------------- params


@dataclass(frozen=True)
class SimParams:
    """Every number of the simulated site, with its source and uncertainty."""

    # ---- climate: Taiyuan-like (37.9°N, 112.5°E, ~780 m) -------------------------
    # Annual mean 10.5 °C, January mean -5.5 °C, July mean 24 °C: domain brief, [s]
    # (close to CMA 1991-2020 normals for Taiyuan). Fitted exactly by two harmonics
    # whose *monthly means* hit the January and July values (see seasonal_coefficients).
    t_annual_mean_c: float = 10.5
    t_january_mean_c: float = -5.5
    t_july_mean_c: float = 24.0
    #: coldest point of the year, days after 1 January 00:00 local [u: mid-January]
    t_coldest_day: float = 14.5
    #: diurnal half-range, K (daily max - min ≈ 12 K in a dry continental climate) [u]
    diurnal_amplitude_k: float = 6.0
    #: local hour of the daily temperature maximum [u: ~2.5 h after solar noon]
    diurnal_peak_hour: float = 15.0
    # Relative humidity (daily mean): dry winters (~45 %), humid monsoon summers (~72 %).
    # [u] from climate summaries; the dew point is held over the day, so RH swings
    # opposite to temperature, as it does outdoors.
    rh_mean_pct: float = 58.0
    rh_amplitude_pct: float = 14.5
    #: RH peaks this many days after mid-July (August is the wettest month) [u]
    rh_lag_days: float = 20.0
    # Station pressure ≈ 920 hPa at ~780 m (standard atmosphere 1013 hPa at 0 m → ~923
    # hPa) [s]; continental winter high → higher in January [u: ±7 hPa].
    pressure_mean_hpa: float = 920.0
    pressure_amplitude_hpa: float = 7.0
    # Synoptic weather (fronts, 2-9 day periods): smooth noise, phases from the seed [u].
    synoptic_periods_d: tuple[float, ...] = (2.3, 3.7, 5.9, 8.9)
    synoptic_temp_k: tuple[float, ...] = (1.2, 1.6, 1.4, 1.0)  # rms ≈ 2.7 K
    synoptic_dewpoint_k: tuple[float, ...] = (0.8, 1.0, 1.0, 0.7)  # independent part
    synoptic_pressure_hpa: tuple[float, ...] = (1.5, 2.5, 2.0, 1.5)

    # ---- IT load -------------------------------------------------------------------
    #: design (nameplate) IT capacity, kW [u: a mid-size enterprise/colo hall]
    it_design_kw: float = 1000.0
    #: average utilisation of the design capacity [u: ~60 % is typical]
    it_utilisation: float = 0.60
    #: relative amplitude of the daily cycle (±8 %) [u]
    it_daily_amplitude: float = 0.08
    #: local hour of the daily IT peak [u: afternoon business peak]
    it_peak_hour: float = 14.0
    #: weekend load reduction (Sat/Sun local) [u]
    it_weekend_drop: float = 0.05
    #: weekday/weekend transition ramp, hours (keeps the load continuous) [u]
    it_weekend_ramp_h: float = 1.0
    # Small smooth noise: sum of sines (periods in hours, relative amplitudes) [u].
    it_noise_periods_h: tuple[float, ...] = (0.37, 1.3, 3.1, 7.7, 17.0)
    it_noise_amplitudes: tuple[float, ...] = (0.002, 0.004, 0.006, 0.006, 0.005)
    #: share of IT load on each Modbus-metered PDU (pdu-1..pdu-4) [u]
    pdu_split: tuple[float, ...] = (0.255, 0.23, 0.195, 0.17)
    #: share on the two SNMP rack PDUs (rack-pdu-1, rack-pdu-2); with pdu_split sums to 1 [u]
    rack_pdu_split: tuple[float, ...] = (0.08, 0.07)

    # ---- power delivery --------------------------------------------------------------
    #: PDU + transformer efficiency: transformers 98-99 %, PDUs 98-99.5 % [u] → 1.5 % loss
    pdu_efficiency: float = 0.985
    #: UPS rated output, kW: 1,000 kW design IT + PDU losses + N+1 module margin
    #: (5 x 300 kW modules) [u] → runs at ~40 % load at 60 % IT utilisation.
    ups_rated_kw: float = 1500.0
    #: UPS efficiency curve (load fraction, efficiency), illustrative [u] from domain.md;
    #: 85 % at 20-25 % load and 94-97 % double conversion are [c]. The loss model
    #: no-load + proportional + square-law is least-squares fitted to these points.
    ups_curve: tuple[tuple[float, float], ...] = (
        (0.10, 0.880),
        (0.25, 0.930),
        (0.50, 0.955),
        (0.75, 0.965),
    )
    #: incomer-a / incomer-b share of the facility load ("each half"; a slight imbalance
    #: as real split busbars have) [u]
    incomer_split: tuple[float, float] = (0.52, 0.48)

    # ---- cooling ---------------------------------------------------------------------
    #: chilled-water supply / return set points, °C: elevated for a modern DC [u]
    chw_supply_c: float = 15.0
    chw_return_c: float = 21.0
    #: cooling tower approach at design, K: 3-5 K [s]/[u]
    tower_approach_k: float = 4.0
    #: plate heat exchanger approach, K: 1-3 K [s]/[u]
    hx_approach_k: float = 2.0
    #: chiller COP at the design wet-bulb: water-cooled 0.5-0.6 kW/ton = COP 6-7 [c]
    cop_design: float = 6.5
    #: Taiyuan summer design wet-bulb, °C [u: ≈ 23.8 °C in GB 50736 tables]
    wet_bulb_design_c: float = 23.8
    #: COP change per K of wet-bulb: each 1 °F lower condenser water ≈ 1-2 % better [c]
    #: → 1.8-3.6 %/K; 3 %/K used (condenser water follows wet-bulb + tower approach)
    cop_slope_per_k: float = 0.03
    #: chillers cannot use arbitrarily cold condenser water [u]
    cop_min: float = 3.0
    cop_max: float = 9.0
    #: heat rejection (tower fans + condenser-water pumps) per ton rejected: tower fan
    #: ≈ 0.2 kW/ton vs compressor 0.6-0.8 kW/ton [c]; the same figure is used for the
    #: free-cooling path ("free-cooling power ≈ 0.2 kW/ton equivalent") [u]
    heat_rejection_kw_per_ton: float = 0.2
    #: CRAH/CRAC fans, share of IT: 3-8 % [u]
    crah_fraction: float = 0.04
    #: chilled-water distribution pumps, share of IT: 2-4 % [u]
    pump_fraction: float = 0.025

    # ---- lighting and misc ---------------------------------------------------------
    #: lighting share of design IT, day / night: "lighting and misc 1-2 %" [u];
    #: averages ≈ 1 % of design IT
    lighting_day_fraction: float = 0.012
    lighting_night_fraction: float = 0.008
    #: lights on / off (local hours, 1 h ramps) [u]
    lighting_on_hour: float = 7.0
    lighting_off_hour: float = 19.0
    #: always-on misc on the lighting meter (security, BMS, fire panels), share of design IT [u]
    misc_fraction: float = 0.005

    # ---- companion KPI meters (water, heat reuse, renewable) -----------------------------
    # Cooling-tower make-up water = evaporation + blowdown (+ drift, negligible with modern
    # eliminators): the standard tower water balance [s]. Evaporation carries the latent part of
    # the heat the tower rejects: latent heat of water ≈ 2,430 kJ/kg near 30 °C [c] → 0.675 kWh
    # per litre evaporated; blowdown = evaporation / (cycles of concentration - 1) [s].
    #: heat (kWh thermal) carried away per litre evaporated
    evaporation_kwh_per_l: float = 2430.0 / 3600.0
    #: share of the tower's heat rejected by evaporation (the rest sensible; more in cold air) [u]
    tower_evaporative_share: float = 0.8
    #: cycles of concentration of the tower water (3-6 typical) [u]
    cycles_of_concentration: float = 5.0
    #: share of the heat load exported to a district-heating network at full heating demand [u]
    heat_reuse_fraction: float = 0.15
    #: heating demand: full below this outdoor dry-bulb, none above heat_reuse_off_c (°C) [u]
    heat_reuse_full_c: float = 0.0
    heat_reuse_off_c: float = 12.0
    #: rooftop PV peak AC output, kW (≈ 1,000 m² of modules on the hall roof) [u]
    pv_peak_kw: float = 120.0
    #: PV output at solar noon, winter solstice vs summer solstice share of peak [u]
    pv_winter_share: float = 0.55
    #: local solar day (PV output > 0 between these hours, a half sine) [u: Taiyuan ≈ UTC+7.5 solar]
    pv_sunrise_hour: float = 6.5
    pv_sunset_hour: float = 18.5

    def __post_init__(self) -> None:
        total = sum(self.pdu_split) + sum(self.rack_pdu_split)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"pdu_split + rack_pdu_split must sum to 1 (the IT meters see all IT), not {total}")


# --------------------------------------------------------------------------- helpers


def local_days(t: Float) -> Float:
    """Days since 1970-01-01 00:00 *local* time (UTC+8)."""
    return (np.asarray(t, dtype=float) + UTC_OFFSET_S) / DAY_S


def local_hour(t: Float) -> Float:
    d = local_days(t)
    return (d - np.floor(d)) * 24.0


def year_angle(t: Float, coldest_day: float) -> Float:
    """Seasonal phase: 0 at the coldest point of the year, π half a year later.

    1970-01-01 00:00 local is day 0; the coldest day falls ``coldest_day`` days after
    1 January every year (mean tropical year, drifts < 1 day per century).
    """
    return 2.0 * np.pi * (local_days(t) - coldest_day) / YEAR_D


@lru_cache(maxsize=32)
def seasonal_coefficients(p: SimParams) -> tuple[float, float]:
    """Harmonic amplitudes (a1, a2) of ``T = mean - a1 cos θ + a2 cos 2θ``.

    Chosen so the *monthly means* (not the instantaneous values) of January and July
    hit the targets: a harmonic of order n averaged over 1/12 year is attenuated by
    sinc = sin(nπ/12) / (nπ/12). The annual mean is ``mean`` exactly.
    """
    f1 = math.sin(math.pi / 12) / (math.pi / 12)
    f2 = math.sin(2 * math.pi / 12) / (2 * math.pi / 12)
    a1 = (p.t_july_mean_c - p.t_january_mean_c) / (2 * f1)
    a2 = ((p.t_july_mean_c + p.t_january_mean_c) / 2 - p.t_annual_mean_c) / f2
    return a1, a2


def fit_ups_loss(curve: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Least-squares fit of ``loss/rated = c0 + c1·x + c2·x²`` to (x, efficiency) points.

    Each point gives loss/rated = x·(1/η - 1). Fitted in loss space (linear), so it is
    an ordinary least-squares problem. Note: the illustrative domain curve implies a
    slightly *concave* loss (c2 < 0: efficiency still rises at 75 %); the fit is used
    only well below full load (loss rises with load up to ~96 %; this site's UPS
    runs at ~40 %).
    """
    x = np.array([c[0] for c in curve], dtype=float)
    eta = np.array([c[1] for c in curve], dtype=float)
    loss = x * (1.0 / eta - 1.0)
    design = np.vstack([np.ones_like(x), x, x * x]).T
    coef, *_ = np.linalg.lstsq(design, loss, rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


@lru_cache(maxsize=32)
def _ups_coef(curve: tuple[tuple[float, float], ...]) -> tuple[float, float, float]:
    return fit_ups_loss(curve)


def ups_loss_kw(output_kw: Float, p: SimParams) -> Float:
    """UPS loss (kW) at a given output: no-load + proportional + square-law (fitted)."""
    c0, c1, c2 = _ups_coef(p.ups_curve)
    x = np.asarray(output_kw, dtype=float) / p.ups_rated_kw
    return p.ups_rated_kw * (c0 + c1 * x + c2 * x * x)


def ups_efficiency(load_fraction: Float, p: SimParams) -> Float:
    """UPS efficiency at a load fraction of the rated output (model, not the targets)."""
    x = np.asarray(load_fraction, dtype=float)
    out = x * p.ups_rated_kw
    return out / (out + ups_loss_kw(out, p))


def chiller_cop(wet_bulb_c: Float, p: SimParams, degradation: Float = 0.0) -> Float:
    """Chiller COP: ``cop_design`` at the design wet-bulb, -``cop_slope_per_k`` per K above.

    ``degradation`` (COP points) is subtracted after clamping (a fouled or leaking
    chiller); the result never falls below 1.
    """
    wb = np.asarray(wet_bulb_c, dtype=float)
    cop = p.cop_design * (1.0 - p.cop_slope_per_k * (wb - p.wet_bulb_design_c))
    cop = np.clip(cop, p.cop_min, p.cop_max) - degradation
    return np.maximum(cop, 1.0)


def free_cooling_fraction(wet_bulb_c: Float, p: SimParams, approach_rise_k: Float = 0.0) -> Float:
    """Share of the heat load taken by the water-side economiser (tower + plate HX).

    Full when T_wb + tower approach + HX approach ≤ CHW supply; partial (linear) while
    that sum < CHW return; none above. [s] domain.md "Free cooling". ``approach_rise_k``:
    extra tower approach of a fouled tower (K), which warms the tower water.
    """
    s = np.asarray(wet_bulb_c, dtype=float) + p.tower_approach_k + approach_rise_k + p.hx_approach_k
    return np.clip((p.chw_return_c - s) / (p.chw_return_c - p.chw_supply_c), 0.0, 1.0)


def economiser_mode(fraction: Float) -> Float:
    """The plant's economiser mode status code from its free-cooling fraction, as a BMS
    reports it: 2 full free cooling (chillers off), 1 partial (integrated), 0 mechanical only."""
    f = np.asarray(fraction, dtype=float)
    out = np.where(f >= 1.0, 2.0, np.where(f <= 0.0, 0.0, 1.0))
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- noise


@dataclass(frozen=True)
class Noise:
    """Random phases for the smooth noise terms; all randomness comes from the seed."""

    it: tuple[float, ...] = ()
    temp: tuple[float, ...] = ()
    dewpoint: tuple[float, ...] = ()
    pressure: tuple[float, ...] = ()

    @classmethod
    def from_seed(cls, seed: int | None, p: SimParams | None = None) -> Noise:
        p = p or SimParams()
        rng = np.random.default_rng(seed)

        def phases(n: int) -> tuple[float, ...]:
            return tuple(float(v) for v in rng.uniform(0.0, 2 * np.pi, n))

        return cls(
            it=phases(len(p.it_noise_periods_h)),
            temp=phases(len(p.synoptic_periods_d)),
            dewpoint=phases(len(p.synoptic_periods_d)),
            pressure=phases(len(p.synoptic_periods_d)),
        )


def _sines(t: np.ndarray, periods_s: Sequence[float], amps: Sequence[float], phases: Sequence[float]) -> np.ndarray:
    out = np.zeros_like(t)
    for period, amp, ph in zip(periods_s, amps, phases, strict=False):
        out = out + amp * np.sin(2.0 * np.pi * t / period + ph)
    return out


# --------------------------------------------------------------------------- weather


@dataclass(frozen=True)
class Weather:
    """Outdoor conditions; fields are floats or arrays like the time given."""

    dry_bulb_c: Float
    rh_pct: Float
    pressure_hpa: Float
    wet_bulb_c: Float


def _weather_parts(
    t: np.ndarray, p: SimParams, noise: Noise | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised parts: seasonal daily-mean T, synoptic T shift, diurnal term,
    daily-mean RH (%), pressure (hPa) and the independent synoptic dew point shift."""
    a1, a2 = seasonal_coefficients(p)
    th = year_angle(t, p.t_coldest_day)
    t_season = p.t_annual_mean_c - a1 * np.cos(th) + a2 * np.cos(2 * th)
    h = local_hour(t)
    diurnal = p.diurnal_amplitude_k * np.cos(2 * np.pi * (h - p.diurnal_peak_hour) / 24.0)
    rh_day = p.rh_mean_pct - p.rh_amplitude_pct * np.cos(th - 2 * np.pi * p.rh_lag_days / YEAR_D)
    pres = p.pressure_mean_hpa + p.pressure_amplitude_hpa * np.cos(th)
    syn_t = np.zeros_like(t)
    syn_td = np.zeros_like(t)
    if noise is not None and noise.temp:
        per = [d * DAY_S for d in p.synoptic_periods_d]
        syn_t = _sines(t, per, p.synoptic_temp_k, noise.temp)
        syn_td = _sines(t, per, p.synoptic_dewpoint_k, noise.dewpoint)
        pres = pres + _sines(t, per, p.synoptic_pressure_hpa, noise.pressure)
    return t_season, syn_t, diurnal, rh_day, syn_td, pres


def weather(t: Float, p: SimParams | None = None, noise: Noise | None = None) -> Weather:
    """Outdoor weather at ``t`` (POSIX s). Dew point, RH and wet-bulb via psychrolib (SI).

    Model: the daily-mean temperature follows the seasonal harmonics plus synoptic
    noise; the day's dew point is that of the seasonal daily mean at the seasonal RH,
    shifted with the air mass (synoptic T shift plus its own), and held over the day,
    so RH is high at night and low in the afternoon, as outdoors. Wet-bulb uses the
    station pressure. psychrolib is scalar (≈ 20 µs per value): this loops, so call it
    on few values (the world caches it on a 5-minute grid).
    """
    p = p or SimParams()
    ta = np.atleast_1d(np.asarray(t, dtype=float))
    t_season, syn_t, diurnal, rh_day, syn_td, pres = _weather_parts(ta, p, noise)
    dry = t_season + syn_t + diurnal
    rh = np.empty_like(ta)
    wb = np.empty_like(ta)
    for i in range(ta.size):
        rh_i = min(max(float(rh_day[i]), 1.0), 100.0) / 100.0
        td = psychrolib.GetTDewPointFromRelHum(float(t_season[i]), rh_i)
        td = min(td + float(syn_t[i] + syn_td[i]), float(dry[i]))
        rh[i] = psychrolib.GetRelHumFromTDewPoint(float(dry[i]), td)
        wb[i] = psychrolib.GetTWetBulbFromRelHum(float(dry[i]), float(rh[i]), float(pres[i]) * 100.0)
    if np.ndim(t) == 0:
        return Weather(float(dry[0]), float(rh[0] * 100.0), float(pres[0]), float(wb[0]))
    shape = np.shape(t)
    return Weather(
        dry_bulb_c=dry.reshape(shape),
        rh_pct=(rh * 100.0).reshape(shape),
        pressure_hpa=pres.reshape(shape),
        wet_bulb_c=wb.reshape(shape),
    )


# ------------------------------------------------------------------------------ loads


@dataclass(frozen=True)
class Faults:
    """Faults that change the physics (not what meters show).

    ``chiller_degradation``: (since POSIX s, COP points lost per day) pairs; the COP
    falls linearly from ``since``. ``it_steps``: (since POSIX s, factor) pairs; the IT load
    is multiplied by ``factor`` from ``since`` (a step in load that is not a fault: new racks).
    ``tower_fouling``: (since POSIX s, K per day) pairs; the cooling tower's approach rises
    linearly from ``since`` (scale, biofilm, a clogged fill: the tower water leaves warmer), so
    the condenser water is warmer (the chillers' COP falls by ``cop_slope_per_k`` per K, as for a
    warmer wet-bulb) and the economiser's free cooling shrinks (:func:`free_cooling_fraction`).
    ``economiser_failures``: (since, until or None) windows in which the economiser's valve or
    damper is stuck shut: free cooling is not used even when the weather allows it, the chillers
    carry the whole heat load.
    """

    chiller_degradation: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    it_steps: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    tower_fouling: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    economiser_failures: tuple[tuple[float, float | None], ...] = field(default_factory=tuple)

    def it_factor(self, t: np.ndarray) -> np.ndarray | float:
        out: np.ndarray | float = 1.0
        for since, factor in self.it_steps:
            out = out * np.where(t >= since, factor, 1.0)
        return out

    def cop_degradation(self, t: np.ndarray) -> np.ndarray | float:
        out: np.ndarray | float = 0.0
        for since, per_day in self.chiller_degradation:
            out = out + per_day * np.maximum(0.0, (t - since) / DAY_S)
        return out

    def approach_rise(self, t: np.ndarray) -> np.ndarray | float:
        """Extra cooling-tower approach (K) at ``t`` (never below 0)."""
        out: np.ndarray | float = 0.0
        for since, per_day in self.tower_fouling:
            out = out + per_day * np.maximum(0.0, (t - since) / DAY_S)
        return np.maximum(out, 0.0) if self.tower_fouling else out

    def economiser_off(self, t: np.ndarray) -> np.ndarray | bool:
        """True where the economiser is failed shut."""
        out: np.ndarray | bool = False
        for since, until in self.economiser_failures:
            out = out | ((t >= since) & (t < (np.inf if until is None else until)))
        return out


#: meter ids of the simulated site, in a fixed order (ids are used by others)
METER_IDS: tuple[str, ...] = (
    "incomer-a",
    "incomer-b",
    "pdu-1",
    "pdu-2",
    "pdu-3",
    "pdu-4",
    "rack-pdu-1",
    "rack-pdu-2",
    "chiller-plant",
    "crah",
    "lighting",
    # companion KPI meters: outside E_DC/E_IT (tower-water "power" is a flow, L/h; heat-reuse is
    # kW thermal exported; pv is renewable supply inside E_DC, upstream of the incomer meters)
    "tower-water",
    "heat-reuse",
    "pv",
)


def weekend_factor(t: Float, ramp_h: float = 1.0) -> Float:
    """1 on Saturday/Sunday (local), 0 on weekdays, linear ramps of ``ramp_h`` around midnight."""
    x = np.mod(local_days(t) + 3.0, 7.0)  # 1970-01-01 was a Thursday: Monday = 0
    x = np.where(x < 1.0, x + 7.0, x)  # Monday early hours: measure from the Sunday end
    s = np.minimum(x - 5.0, 7.0 - x)  # + inside the weekend, - outside (days)
    return np.clip(0.5 + s / (ramp_h / 24.0), 0.0, 1.0)


def _ramp(h: Float, on: float, off: float) -> np.ndarray:
    """0..1 daytime indicator with 1-hour linear ramps centred on ``on`` and ``off``."""
    ha = np.asarray(h, dtype=float)
    return np.clip(np.minimum(ha - on, off - ha) + 0.5, 0.0, 1.0)


def it_load_kw(t: Float, p: SimParams, noise: Noise | None = None) -> Float:
    """Total IT load (kW) = PDU output (the six IT meters together)."""
    ta = np.asarray(t, dtype=float)
    h = local_hour(ta)
    mean_kw = p.it_design_kw * p.it_utilisation
    it = mean_kw * (1.0 + p.it_daily_amplitude * np.cos(2 * np.pi * (h - p.it_peak_hour) / 24.0))
    it = it * (1.0 - p.it_weekend_drop * weekend_factor(ta, p.it_weekend_ramp_h))
    if noise is not None and noise.it:
        per = [hh * 3600.0 for hh in p.it_noise_periods_h]
        it = it * (1.0 + _sines(ta, per, p.it_noise_amplitudes, noise.it))
    return it


def kpi_meters(t: np.ndarray, p: SimParams, heat: Float, chillers: Float, dry_bulb_c: np.ndarray) -> dict[str, Float]:
    """The companion KPI meters: ``tower-water`` (make-up water, L/h), ``heat-reuse`` (heat
    exported to district heating, kW thermal) and ``pv`` (rooftop PV, kW).

    The reused heat leaves before the tower: the tower rejects ``heat + chillers - reuse``.
    """
    demand = np.clip((p.heat_reuse_off_c - dry_bulb_c) / (p.heat_reuse_off_c - p.heat_reuse_full_c), 0.0, 1.0)
    reuse = p.heat_reuse_fraction * heat * demand
    rejected = heat + chillers - reuse
    evaporation = p.tower_evaporative_share * rejected / p.evaporation_kwh_per_l  # L/h
    make_up = evaporation * p.cycles_of_concentration / (p.cycles_of_concentration - 1.0)
    h = local_hour(t)
    day = np.clip(np.sin(np.pi * (h - p.pv_sunrise_hour) / (p.pv_sunset_hour - p.pv_sunrise_hour)), 0.0, 1.0)
    day = np.where((h > p.pv_sunrise_hour) & (h < p.pv_sunset_hour), day, 0.0)
    # seasonal: winter_share at the coldest point of the year, 1 half a year later
    season = p.pv_winter_share + (1.0 - p.pv_winter_share) * 0.5 * (1.0 - np.cos(year_angle(t, p.t_coldest_day)))
    return {"tower-water": make_up, "heat-reuse": reuse, "pv": p.pv_peak_kw * day * season}


def loads(
    t: Float,
    p: SimParams | None = None,
    faults: Faults | None = None,
    *,
    noise: Noise | None = None,
    wx: Weather | None = None,
) -> dict[str, Float]:
    """Power of every meter (kW) at ``t``, plus totals and internals.

    Keys: the :data:`METER_IDS` (kW); totals ``facility``, ``it``, ``cooling``
    (chiller-plant + CRAH), ``ups_loss``, ``pdu_loss``, ``chillers``,
    ``heat_rejection``, ``chw_pumps``, ``heat_load`` (kW thermal); and the
    dimensionless ``free_cooling_fraction``, ``cop``, ``pue`` (instantaneous, for
    inspection only — PUE proper is an energy ratio).
    ``wx`` lets a caller pass weather it already has (the world's cached weather).
    """
    p = p or SimParams()
    faults = faults or Faults()
    ta = np.asarray(t, dtype=float)
    if wx is None:
        wx = weather(ta, p, noise)
    wb = np.asarray(wx.wet_bulb_c, dtype=float)

    it = it_load_kw(ta, p, noise) * faults.it_factor(ta)
    pdu_loss = it * (1.0 / p.pdu_efficiency - 1.0)
    ups_out = it + pdu_loss
    ups_loss = ups_loss_kw(ups_out, p)

    h = local_hour(ta)
    day = _ramp(h, p.lighting_on_hour, p.lighting_off_hour)
    lighting = p.it_design_kw * (
        p.lighting_night_fraction + (p.lighting_day_fraction - p.lighting_night_fraction) * day + p.misc_fraction
    )
    crah = p.crah_fraction * it
    heat = it + pdu_loss + ups_loss + crah + lighting

    rise = faults.approach_rise(ta)
    f_free = np.where(faults.economiser_off(ta), 0.0, free_cooling_fraction(wb, p, rise))
    cop = chiller_cop(wb + rise, p, faults.cop_degradation(ta))  # condenser water follows the tower water
    q_mech = (1.0 - f_free) * heat
    chillers = q_mech / cop
    heat_rejection = p.heat_rejection_kw_per_ton * (heat + chillers) / KW_PER_TON
    chw_pumps = p.pump_fraction * it
    plant = chillers + heat_rejection + chw_pumps

    facility = it + pdu_loss + ups_loss + plant + crah + lighting
    kpi = kpi_meters(ta, p, heat, chillers, np.asarray(wx.dry_bulb_c, dtype=float))
    out: dict[str, Float] = {
        "incomer-a": facility * p.incomer_split[0],
        "incomer-b": facility * p.incomer_split[1],
    }
    for i, share in enumerate(p.pdu_split, start=1):
        out[f"pdu-{i}"] = it * share
    for i, share in enumerate(p.rack_pdu_split, start=1):
        out[f"rack-pdu-{i}"] = it * share
    out.update(
        {
            "chiller-plant": plant,
            "crah": crah,
            "lighting": lighting,
            "facility": facility,
            "it": it,
            "cooling": plant + crah,
            "ups_loss": ups_loss,
            "pdu_loss": pdu_loss,
            "chillers": chillers,
            "heat_rejection": heat_rejection,
            "chw_pumps": chw_pumps,
            "heat_load": heat,
            "free_cooling_fraction": f_free,
            "cop": cop,
            "pue": facility / it,
            **kpi,
        }
    )
    if np.ndim(t) == 0:
        return {k: float(v) for k, v in out.items()}
    shape = np.shape(t)
    return {k: np.broadcast_to(v, shape).astype(float) for k, v in out.items()}
