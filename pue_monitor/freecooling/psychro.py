"""Vectorised psychrometrics (SI) on numpy arrays, with psychrolib's own ASHRAE formulas.

psychrolib (the ASHRAE Handbook Fundamentals 2017 ch. 1 implementation) is scalar: one Python
call per value, each wet-bulb a bisection of ~20 saturation-pressure evaluations: ≈ 35 µs a row
for wet-bulb, dew point, humidity ratio and enthalpy, so a year of minutes (525,600 rows) takes
≈ 19 s through it (``np.vectorize`` is the same loop).
This module evaluates the *same equations with the same constants* over whole arrays and solves
the same way psychrolib does:

- saturation vapour pressure: ASHRAE 2017 ch. 1 eqs. 5 (ice) and 6 (water), switched at the
  triple point 0.01 °C as psychrolib does (no discontinuity there);
- dew point: Newton-Raphson on ln p_ws(T) with the analytic derivative (psychrolib's
  ``GetTDewPointFromVapPres``), run element-wise until every element moved < 1e-6 K;
- humidity ratio: eq. 20 (0.621945 p_w / (p - p_w)); enthalpy: eq. 30;
- wet-bulb: the root of eqs. 33/35 between dew point and dry-bulb (psychrolib's
  ``GetTWetBulbFromHumRatio`` bisects it to 1e-3 K); here a safeguarded Newton iteration
  inside the same shrinking bracket, on all elements at once, to 1e-4 K.

So the results equal psychrolib's within its own tolerance (1e-3 K); tests/test_freecooling.py
checks that on random samples and against the Handbook's tables. Inputs out of the formulas'
range (dry-bulb outside -100..200 °C, RH outside 0..100 %, pressure <= p_ws) or NaN give NaN, never
a value: a caller treats NaN as "unknown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import psychrolib

psychrolib.SetUnitSystem(psychrolib.SI)

Array = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

#: K = °C + 273.15
ZERO_C_K = 273.15
#: psychrolib switches between the ice and water formulas at the triple point
TRIPLE_POINT_C = 0.01
#: range of validity of the saturation formulas (psychrolib's bounds)
T_MIN_C, T_MAX_C = -100.0, 200.0
#: ratio of molecular masses water / dry air (ASHRAE 2017 ch. 1 eq. 20)
EPSILON = 0.621945
#: psychrolib's floor for the humidity ratio
MIN_HUM_RATIO = 1e-7


def pressure_from_altitude(altitude_m: float) -> float:
    """Standard-atmosphere pressure (Pa) at ``altitude_m`` (ASHRAE 2017 ch. 1 eq. 3), via psychrolib."""
    return float(psychrolib.GetStandardAtmPressure(float(altitude_m)))


def _ln_ice(t: Array) -> Array:
    """ASHRAE 2017 ch. 1 eq. 5 (over ice), ln p_ws in Pa, T in K; psychrolib's constants."""
    out: Array = (
        -5.6745359e03 / t
        + 6.3925247
        + t * (-9.677843e-03 + t * (6.2215701e-07 + t * (2.0747825e-09 - t * 9.484024e-13)))
        + 4.1635019 * np.log(t)
    )
    return out


def _ln_water(t: Array) -> Array:
    """ASHRAE 2017 ch. 1 eq. 6 (over liquid water), ln p_ws in Pa, T in K; psychrolib's constants."""
    out: Array = (
        -5.8002206e03 / t + 1.3914993 + t * (-4.8640239e-02 + t * (4.1764768e-05 - t * 1.4452093e-08))
    ) + 6.5459673 * np.log(t)
    return out


def _ln_sat_vap_pres(t_c: Array) -> Array:
    """ln p_ws (Pa) over ice (T <= 0.01 °C, eq. 5) or water (eq. 6), each formula evaluated only
    where it applies (NaN stays NaN)."""
    t = t_c + ZERO_C_K
    ice = t_c <= TRIPLE_POINT_C
    if not ice.any():
        return _ln_water(t)
    water = ~ice
    if not water.any():
        return _ln_ice(t)
    out = np.empty_like(t)
    out[ice] = _ln_ice(t[ice])
    out[water] = _ln_water(t[water])  # and NaN: neither comparison holds
    return out


def _d_ln_sat_vap_pres(t_c: Array) -> Array:
    """d ln p_ws / dT (1/K), the derivative of :func:`_ln_sat_vap_pres` (psychrolib's ``dLnPws_``)."""
    t = t_c + ZERO_C_K
    ice = 5.6745359e03 / t**2 - 9.677843e-03 + t * (2 * 6.2215701e-07 + t * (3 * 2.0747825e-09 - t * 4 * 9.484024e-13))
    ice += 4.1635019 / t
    water = 5.8002206e03 / t**2 - 4.8640239e-02 + t * (2 * 4.1764768e-05 - t * 3 * 1.4452093e-08) + 6.5459673 / t
    out: Array = np.where(t_c <= TRIPLE_POINT_C, ice, water)
    return out


def sat_vap_pres(t_c: ArrayLike) -> Array:
    """Saturation vapour pressure, Pa (NaN outside -100..200 °C)."""
    t = np.asarray(t_c, dtype=np.float64)
    t = np.where((t >= T_MIN_C) & (t <= T_MAX_C), t, np.nan)
    out: Array = np.exp(_ln_sat_vap_pres(t))
    return out


def sat_hum_ratio(t_c: ArrayLike, pressure_pa: ArrayLike) -> Array:
    """Humidity ratio of saturated air, kg/kg (psychrolib's ``GetSatHumRatio``)."""
    pws = sat_vap_pres(t_c)
    out: Array = np.maximum(EPSILON * pws / (np.asarray(pressure_pa, dtype=np.float64) - pws), MIN_HUM_RATIO)
    return out


def _dew_point_from_vap_pres(t_c: Array, pw: Array) -> Array:
    """Newton-Raphson on ln p_ws(T) = ln p_w from T = dry-bulb, bounded to -100..200 °C."""
    ln_pw = np.log(pw)
    # first guess: the Magnus formula over water (within ~1 K); psychrolib starts at the dry-bulb.
    # ln p_ws is monotonic, so Newton reaches the same root either way, in fewer steps from here.
    with np.errstate(divide="ignore", invalid="ignore"):
        g = ln_pw - math.log(611.2)
        td = np.clip(243.12 * g / (17.62 - g), T_MIN_C, t_c)
    td = np.where(np.isfinite(td), td, t_c)
    active = np.isfinite(td) & np.isfinite(ln_pw)
    for _ in range(100):  # psychrolib's MAX_ITER_COUNT; it takes 3-6
        if not active.any():
            break
        x = td[active]
        nxt = np.clip(x - (_ln_sat_vap_pres(x) - ln_pw[active]) / _d_ln_sat_vap_pres(x), T_MIN_C, T_MAX_C)
        td[active] = nxt
        idx = np.flatnonzero(active)
        active[idx[np.abs(nxt - x) <= 1e-6]] = False
    td[~(np.isfinite(t_c) & np.isfinite(ln_pw))] = np.nan
    out: Array = np.minimum(td, t_c)
    return out


def _hum_ratio_from_wet_bulb(t_c: Array, twb_c: Array, p_pa: Array) -> Array:
    """ASHRAE 2017 ch. 1 eqs. 33 (water, T* >= 0 °C) and 35 (ice), psychrolib's form."""
    ws = sat_hum_ratio(twb_c, p_pa)
    water = ((2501.0 - 2.326 * twb_c) * ws - 1.006 * (t_c - twb_c)) / (2501.0 + 1.86 * t_c - 4.186 * twb_c)
    ice = ((2830.0 - 0.24 * twb_c) * ws - 1.006 * (t_c - twb_c)) / (2830.0 + 1.86 * t_c - 2.1 * twb_c)
    out: Array = np.maximum(np.where(twb_c >= 0.0, water, ice), MIN_HUM_RATIO)
    return out


def _wet_bulb(t: Array, w: Array, p: Array, td: Array, tol: float) -> Array:
    """Root of W(T*) = w in [dew point, dry-bulb] (W rises with T*), to a bracket of ``tol``.

    Each iteration evaluates W at x and x + tol: both shrink the bracket (as bisection would),
    and their secant slope gives a Newton step; the next x sits tol/2 below the Newton estimate
    (kept inside the bracket), so x and x + tol straddle the root once Newton is within tol/2.
    An estimate outside the bracket bisects instead. Stops only on the bracket width: 4
    iterations instead of psychrolib's ~20. Elements whose estimate comes within 2.5 K of 0 °C,
    where eqs. 33/35 are discontinuous, leave for psychrolib's own bisection (below)."""
    lo, hi = td.copy(), t.copy()
    x = 0.5 * (lo + hi)
    active = np.isfinite(x) & (hi - lo > tol)
    near_zero = np.zeros(x.shape, dtype=bool)
    for _ in range(100):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        xa, ta, pa, wa = x[idx], t[idx], p[idx], w[idx]
        f = _hum_ratio_from_wet_bulb(ta, xa, pa) - wa
        f2 = _hum_ratio_from_wet_bulb(ta, xa + tol, pa) - wa
        lo_a, hi_a = lo[idx], hi[idx]
        lo_a = np.where(f <= 0, np.maximum(lo_a, xa), lo_a)
        hi_a = np.where(f > 0, np.minimum(hi_a, xa), hi_a)
        lo_a = np.where(f2 <= 0, np.maximum(lo_a, xa + tol), lo_a)
        hi_a = np.where(f2 > 0, np.minimum(hi_a, xa + tol), hi_a)
        with np.errstate(divide="ignore", invalid="ignore"):
            root = xa - f * tol / (f2 - f)  # Newton's estimate
        bad = ~np.isfinite(root) | (root < lo_a) | (root > hi_a)
        nxt = np.where(bad, 0.5 * (lo_a + hi_a), np.clip(root - 0.5 * tol, lo_a, hi_a - tol))
        lo[idx], hi[idx], x[idx] = lo_a, hi_a, nxt
        close = np.abs(nxt) < 2.5
        near_zero[idx[close]] = True
        active[idx[(hi_a - lo_a <= tol * 1.000001) | close]] = False
    out: Array = 0.5 * (lo + hi)
    # Near T* = 0 °C eqs. 33 (water) and 35 (ice) do not meet: W(T*) jumps there, and a
    # humidity ratio inside the jump has no root, or two. psychrolib's bisection then picks one
    # by its midpoint sequence; redo those few elements with that very sequence so the answer
    # is psychrolib's everywhere.
    near = np.flatnonzero(near_zero | (np.abs(out) < 2.0))
    if near.size:
        out[near] = _bisect_like_psychrolib(t[near], w[near], p[near], td[near])
    return out


def _bisect_like_psychrolib(t: Array, w: Array, p: Array, td: Array) -> Array:
    """psychrolib's ``GetTWetBulbFromHumRatio`` loop, on arrays: same bracket, midpoints, 1e-3 K."""
    lo, hi = td.copy(), t.copy()
    x = 0.5 * (lo + hi)
    for _ in range(100):
        going = hi - lo > 1e-3
        if not going.any():
            break
        above = _hum_ratio_from_wet_bulb(t, x, p) > w
        hi = np.where(going & above, x, hi)
        lo = np.where(going & ~above, x, lo)
        x = np.where(going, 0.5 * (lo + hi), x)
    return x


@dataclass(frozen=True)
class MoistAir:
    """Psychrometric state, arrays of one shape; NaN where the input was missing or invalid."""

    dry_bulb_c: Array
    rh_pct: Array
    pressure_pa: Array
    vap_pres_pa: Array
    hum_ratio: Array  #: kg water / kg dry air
    dew_point_c: Array
    wet_bulb_c: Array
    enthalpy_kj_kg: Array  #: kJ / kg dry air (0 at 0 °C dry air, as ASHRAE's tables)


def moist_air(
    dry_bulb_c: ArrayLike,
    rh_pct: ArrayLike,
    pressure_pa: ArrayLike | None = None,
    *,
    altitude_m: float = 0.0,
    wet_bulb_tolerance_k: float = 1e-4,
) -> MoistAir:
    """Every property from dry-bulb (°C), relative humidity (%, 0..100) and pressure (Pa).

    ``pressure_pa`` None (or NaN elements) uses the standard atmosphere at ``altitude_m``.
    """
    t = np.atleast_1d(np.asarray(dry_bulb_c, dtype=np.float64))
    rh = np.asarray(rh_pct, dtype=np.float64)
    shape = np.broadcast_shapes(t.shape, rh.shape)
    t = np.broadcast_to(t, shape).astype(np.float64)
    rh = np.broadcast_to(rh, shape).astype(np.float64)
    p_std = pressure_from_altitude(altitude_m)
    if pressure_pa is None:
        p = np.full(shape, p_std)
    else:
        p = np.broadcast_to(np.asarray(pressure_pa, dtype=np.float64), shape).astype(np.float64)
        p = np.where(np.isnan(p), p_std, p)
    ok = (t >= T_MIN_C) & (t <= T_MAX_C) & (rh >= 0.0) & (rh <= 100.0) & (p > 0.0)
    t = np.where(ok, t, np.nan)
    pws = np.exp(_ln_sat_vap_pres(t))
    pw = rh / 100.0 * pws
    ok &= pws < p
    t = np.where(ok, t, np.nan)
    pw = np.where(ok, pw, np.nan)
    w = EPSILON * pw / (p - pw)
    w_b = np.maximum(w, MIN_HUM_RATIO)
    # dew point of the bounded humidity ratio, as psychrolib's wet-bulb does
    td = _dew_point_from_vap_pres(t, p * w_b / (EPSILON + w_b))
    twb = _wet_bulb(t, w_b, p, td, wet_bulb_tolerance_k)
    h = 1.006 * t + w_b * (2501.0 + 1.86 * t)
    td_out = td.copy()  # the bounded humidity ratio differs only below 1e-7 kg/kg (RH ~ 0)
    tiny = np.flatnonzero(w < MIN_HUM_RATIO)
    if tiny.size:
        td_out[tiny] = _dew_point_from_vap_pres(t[tiny], pw[tiny])
    return MoistAir(
        dry_bulb_c=t,
        rh_pct=np.where(ok, rh, np.nan),
        pressure_pa=p,
        vap_pres_pa=pw,
        hum_ratio=w,
        dew_point_c=td_out,
        wet_bulb_c=twb,
        enthalpy_kj_kg=h,
    )
