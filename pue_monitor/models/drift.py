"""Drift of actual PUE above expected: one-sided CUSUM on the residual, and where it is heading.

Residual per bucket (1 hour by default) from energies, never an average of ratios::

    r = (Σ facility - Σ IT - Σ expected overhead) / Σ IT      (PUE points)

CUSUM (Page 1954): ``S = max(0, S + r - k)``; drift is *detected* when ``S > h``. The
reference ``k`` and the limit ``h`` are multiples of the model's own residual standard deviation
sigma on held-out weeks (``model.json`` errors.residual_std, floored at ``min_sigma``):
``k = k_sigma·sigma``, ``h = h_sigma·sigma``. An episode *began* at the start of the bucket after ``S``
was last 0 (the CUSUM change-point estimate), its *size* is the mean residual since then, and it
*ends* when ``S`` returns to 0. Only rises are tracked: PUE falling below expected raises nothing.

Projection: the residual's least-squares line over the episode, ``d(t) = a + b·(t - now)``, is
added to the expected PUE of the last day: the daily figure (Σ energies of the last 24 h) and the
highest expected 15-minute (interval) PUE of the last 24 h, the one that crosses first. The time
until ``expected + d(t)`` reaches a threshold is ``(threshold - expected - a) / b`` for ``b > 0``,
0 if already there, and None when not heading there (``b <= 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pue_monitor.models.data import Array, Intervals

DAY_S = 86400.0
#: the design card's thresholds
WARNING_PUE = 1.4
CRITICAL_PUE = 1.5


@dataclass(frozen=True)
class CusumSettings:
    bucket_s: float = 3600.0
    k_sigma: float = 3.0
    h_sigma: float = 12.0
    #: floor on sigma (PUE points): a model that fits its training data too well must not turn
    #: metering noise into alarms
    min_sigma: float = 0.001


@dataclass(frozen=True)
class Episode:
    """One drift episode (POSIX s; ``size`` in PUE points)."""

    began: float
    detected_at: float
    ended: float | None
    size: float


@dataclass(frozen=True)
class Projection:
    """Seconds from ``now`` until the projected PUE reaches each threshold (None: not heading there)."""

    daily_expected_pue: float
    peak_interval_expected_pue: float
    drift_now: float
    slope_per_day: float
    daily: dict[str, float | None]
    interval: dict[str, float | None]


@dataclass(frozen=True)
class DriftReport:
    now: float
    sigma: float
    k: float
    h: float
    episodes: list[Episode] = field(default_factory=list)
    projection: Projection | None = None

    @property
    def drifting(self) -> bool:
        return bool(self.episodes) and self.episodes[-1].ended is None

    @property
    def current(self) -> Episode | None:
        return self.episodes[-1] if self.drifting else None


def buckets(iv: Intervals, expected_overhead_kwh: Array, bucket_s: float) -> tuple[Array, Array, Array, Array]:
    """Bucket starts, IT energy, actual and expected overhead energy per bucket (empty buckets dropped)."""
    ok = np.isfinite(iv.it_kwh) & np.isfinite(iv.facility_kwh) & np.isfinite(expected_overhead_kwh)
    b = np.floor(iv.start[ok] / bucket_s).astype(np.int64)
    keys, inv = np.unique(b, return_inverse=True)
    n = keys.size

    def total(v: Array) -> Array:
        out: Array = np.asarray(np.bincount(inv, weights=v[ok], minlength=n), dtype=np.float64)
        return out

    starts: Array = keys.astype(np.float64) * bucket_s
    return starts, total(iv.it_kwh), total(iv.overhead_kwh), total(expected_overhead_kwh)


def residuals(iv: Intervals, expected_overhead_kwh: Array, bucket_s: float = 3600.0) -> tuple[Array, Array]:
    """Bucket starts and residual PUE per bucket (buckets without IT energy dropped)."""
    t, it, oh, exp = buckets(iv, expected_overhead_kwh, bucket_s)
    keep = it > 0
    r: Array = (oh[keep] - exp[keep]) / it[keep]
    return t[keep], r


def cusum(r: Array, k: float) -> Array:
    """Upper CUSUM path ``S_i = max(0, S_{i-1} + r_i - k)``, ``S_{-1} = 0``."""
    s = np.empty_like(r)
    acc = 0.0
    for i, v in enumerate(r):
        acc = max(0.0, acc + float(v) - k)
        s[i] = acc
    return s


def episodes(t: Array, r: Array, s: Array, h: float, bucket_s: float) -> list[Episode]:
    """Drift episodes on a CUSUM path (``t``: bucket starts)."""
    out: list[Episode] = []
    last_zero = -1
    began_i: int | None = None
    detected: float | None = None
    for i in range(len(s)):
        if s[i] <= 0.0:
            if detected is not None and began_i is not None:
                out.append(Episode(float(t[began_i]), detected, float(t[i] + bucket_s), float(np.mean(r[began_i:i]))))
                detected = None
                began_i = None
            last_zero = i
        elif detected is None and s[i] > h:
            began_i = last_zero + 1
            detected = float(t[i] + bucket_s)
    if detected is not None and began_i is not None:
        out.append(Episode(float(t[began_i]), detected, None, float(np.mean(r[began_i:]))))
    return out


def time_to(threshold: float, level: float, slope_per_s: float) -> float | None:
    """Seconds until ``level + slope·t`` reaches ``threshold`` (0 if there, None if never)."""
    if level >= threshold:
        return 0.0
    if slope_per_s <= 0.0:
        return None
    return (threshold - level) / slope_per_s


def project(
    iv: Intervals,
    expected_overhead_kwh: Array,
    t: Array,
    r: Array,
    since: float,
    now: float,
    bucket_s: float,
    thresholds: dict[str, float] | None = None,
) -> Projection:
    """Projected crossing of the thresholds (see the module doc) with the drift measured since ``since``."""
    thresholds = thresholds or {"warning": WARNING_PUE, "critical": CRITICAL_PUE}
    sel = t >= since
    x = t[sel] + bucket_s / 2.0 - now
    y = r[sel]
    if y.size >= 2 and np.ptp(x) > 0:
        b, a = np.polyfit(x, y, 1)
    else:
        b, a = 0.0, float(y[-1]) if y.size else 0.0
    day = (iv.start >= now - DAY_S) & (iv.end <= now) & (iv.it_kwh > 0)
    it = float(np.sum(iv.it_kwh[day]))
    daily = (it + float(np.sum(expected_overhead_kwh[day]))) / it if it > 0 else float("nan")
    per = (iv.it_kwh[day] + expected_overhead_kwh[day]) / iv.it_kwh[day]
    peak = float(np.max(per)) if per.size else float("nan")
    return Projection(
        daily_expected_pue=daily,
        peak_interval_expected_pue=peak,
        drift_now=float(a),
        slope_per_day=float(b) * DAY_S,
        daily={n: time_to(v, daily + float(a), float(b)) for n, v in thresholds.items()},
        interval={n: time_to(v, peak + float(a), float(b)) for n, v in thresholds.items()},
    )


def assess(
    iv: Intervals,
    expected_overhead_kwh: Array,
    residual_std: float,
    settings: CusumSettings | None = None,
    *,
    now: float | None = None,
    thresholds: dict[str, float] | None = None,
) -> DriftReport:
    """Drift episodes over ``iv`` and, while drifting, the projected threshold crossings
    (``thresholds``: name -> PUE, default the design card's warning 1.4 and critical 1.5)."""
    cs = settings or CusumSettings()
    sigma = max(float(residual_std), cs.min_sigma)
    k, h = cs.k_sigma * sigma, cs.h_sigma * sigma
    t, r = residuals(iv, expected_overhead_kwh, cs.bucket_s)
    now = float(iv.end.max()) if now is None else float(now)
    if t.size == 0:
        return DriftReport(now, sigma, k, h)
    eps = episodes(t, r, cusum(r, k), h, cs.bucket_s)
    proj = None
    if eps and eps[-1].ended is None:
        proj = project(iv, expected_overhead_kwh, t, r, eps[-1].began, now, cs.bucket_s, thresholds)
    return DriftReport(now, sigma, k, h, eps, proj)
