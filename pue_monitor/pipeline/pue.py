"""PUE per interval and per calendar bucket (ISO/IEC 30134-2).

``PUE = E_DC / E_IT`` with both energies in kWh over the same period (ISO/IEC 30134-2);
aggregates are always ``sum(E_DC) / sum(E_IT)`` over the sub-intervals where both are known —
never an average of interval ratios. Every value carries the measurement category (the weakest
IT meter's, ISO/IEC 30134-2 categories 1..3) and the data completeness (share of meter-interval
cells measured, estimated and missing), which the standard asks to report with a PUE.
"""

from __future__ import annotations

import functools
import math
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from pue_monitor.config.models import KPI_ROLES, SUBSYSTEMS, Role
from pue_monitor.pipeline.energy import IntervalEnergy, SeriesSpec, Status
from pue_monitor.pipeline.events import Reason
from pue_monitor.pipeline.kpi import KpiBasis, ratio

__all__ = ["REASON_FIELDS", "RESOLUTIONS", "PueInterval", "aggregate", "rollup"]

#: PueInterval field (and stored column) with the share of meter-interval cells estimated for
#: each reason; a cell estimated for several reasons counts in each
REASON_FIELDS: dict[Reason, str] = {
    Reason.POWER_INTEGRATED: "estimated_power_integrated",
    Reason.GAP_SPLIT: "estimated_gap_split",
    Reason.RESET: "estimated_reset",
    Reason.GLITCH_BRIDGED: "estimated_glitch_bridged",
}

#: roles in the order of the rows of the role matrix (the KPI roles last: never in E_DC/E_IT)
_ROLES: tuple[Role, ...] = (Role.FACILITY_INPUT, Role.IT, *SUBSYSTEMS, *KPI_ROLES)
_SUB_ROWS = range(2, 2 + len(SUBSYSTEMS))
_WATER, _HEAT, _REN = (_ROLES.index(r) for r in KPI_ROLES)

#: aggregate() resolutions -> bucket length in seconds (local wall-clock time)
RESOLUTIONS: dict[str, int] = {"15m": 900, "1h": 3600, "1d": 86400}


@dataclass(frozen=True)
class PueInterval:
    """Energies, PUE and data completeness of one period ``[start, end)``."""

    start: float
    end: float
    #: kWh; None when a meter of that role is MISSING (or the model has none)
    e_facility: float | None
    e_it: float | None
    #: role value -> kWh, only subsystems that have meters and whose meters are all present
    e_subsystems: dict[str, float]
    #: e_facility / e_it (ISO/IEC 30134-2); None if either is None or e_it <= 0
    pue: float | None
    #: partial PUE per subsystem x: (e_it + e_x) / e_it
    ppue: dict[str, float]
    #: ISO/IEC 30134-2 measurement category of the weakest IT meter (0 if no IT meter)
    category: int
    #: shares of (meter, interval) cells among all meters of the model; sum to 1
    measured: float
    estimated: float
    missing: float
    #: aggregates: share of the sub-intervals (time-weighted) whose pue is not None
    coverage: float = 1.0
    #: e_facility - e_it - sum(e_subsystems); negative values signal a metering error.
    #: None unless facility, IT and every metered subsystem are present.
    e_unattributed: float | None = None
    #: shares of (meter, interval) cells estimated per reason (see REASON_FIELDS): a power-only
    #: feed shows as power_integrated in every interval, a glitch as glitch_bridged in its own
    estimated_power_integrated: float = 0.0
    estimated_gap_split: float = 0.0
    estimated_reset: float = 0.0
    estimated_glitch_bridged: float = 0.0
    #: meter id -> kWh of each meter that is not MISSING (the live pipeline's 1-minute
    #: intervals only; empty for batch rollups, aggregates and rows read back from a store)
    e_meters: dict[str, float] = field(default_factory=dict)
    #: companion KPIs (see pipeline.kpi): site water (L), reused heat and renewable energy (kWh),
    #: CO2 of E_DC (kg) and the ratios; None = not measured (no meter, or a meter MISSING), never 0
    water_l: float | None = None
    e_heat_reused: float | None = None
    e_renewable: float | None = None
    co2_kg: float | None = None
    #: WUE (ISO/IEC 30134-9), L/kWh: water_l / e_it
    wue: float | None = None
    #: CUE (ISO/IEC 30134-8), kg CO2/kWh: co2_kg / e_it
    cue: float | None = None
    #: ERF (ISO/IEC 30134-6): e_heat_reused / e_facility
    erf: float | None = None
    #: REF (ISO/IEC 30134-3): e_renewable / e_facility
    ref: float | None = None
    #: emission factor, water definition and renewable basis the KPIs were computed with
    kpi_basis: KpiBasis | None = None

    @property
    def estimated_flag(self) -> bool:
        return self.estimated > 0

    @property
    def duration(self) -> float:
        return self.end - self.start


# ------------------------------------------------------------------------- layout


@dataclass(frozen=True, eq=False)
class _Layout:
    """Meters of the model and how series roll up into them (built once per spec tuple)."""

    meters: tuple[str, ...]
    meter_role: tuple[Role, ...]
    used: np.ndarray  # spec indices that carry each meter's energy, grouped by meter
    offsets: np.ndarray  # np.*.reduceat offsets of each meter's group in ``used``
    one_each: bool  # every meter uses exactly one spec (reduceat not needed)
    role_matrix: np.ndarray  # float64 [len(_ROLES), n_meters], 1 where meter has role
    has_role: np.ndarray  # bool [len(_ROLES)]
    category: int
    pue_meters: np.ndarray  # indices of the energy-model meters (not water/heat/renewable)


@functools.lru_cache(maxsize=16)
def _layout_cached(specs: tuple[SeriesSpec, ...]) -> _Layout:
    by_meter: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        by_meter.setdefault(s.meter, []).append(i)
    meters = tuple(by_meter)
    roles: list[Role] = []
    used: list[int] = []
    offsets: list[int] = []
    categories: list[int] = []
    for m, idx in by_meter.items():
        role_set = {specs[i].role for i in idx}
        if len(role_set) != 1:
            raise ValueError(f"meter {m!r} has specs with different roles: {sorted(role_set)}")
        loc_set = {specs[i].it_location for i in idx}
        if len(loc_set) != 1:
            raise ValueError(f"meter {m!r} has specs with different it_location")
        role = role_set.pop()
        roles.append(role)
        if role is Role.IT:
            categories.append(specs[idx[0]].it_location.category)  # type: ignore[union-attr]
        # ISO/IEC 30134-2 wants metered energy: a counter wins over integrated power
        counters = [i for i in idx if specs[i].kind == "counter"]
        offsets.append(len(used))
        used.extend(counters or idx)
    role_matrix = np.zeros((len(_ROLES), len(meters)), dtype=np.float64)
    for j, role in enumerate(roles):
        role_matrix[_ROLES.index(role), j] = 1.0
    return _Layout(
        meters=meters,
        meter_role=tuple(roles),
        used=np.asarray(used, dtype=np.int64),
        offsets=np.asarray(offsets, dtype=np.int64),
        one_each=len(used) == len(meters),
        role_matrix=role_matrix,
        has_role=role_matrix.sum(axis=1) > 0,
        category=min(categories) if categories else 0,
        pue_meters=np.asarray([j for j, r in enumerate(roles) if r not in KPI_ROLES], dtype=np.int64),
    )


def _layout(specs: Sequence[SeriesSpec]) -> _Layout:
    return _layout_cached(tuple(specs))


# ------------------------------------------------------------------------- rollup


def rollup(
    ie: IntervalEnergy, specs: Sequence[SeriesSpec], *, per_meter: bool = False, kpi: KpiBasis | None = None
) -> list[PueInterval]:
    """One :class:`PueInterval` per grid interval of ``ie`` (ISO/IEC 30134-2 PUE, pPUE).

    A meter with both a counter and a power series uses the counter; its energy is the sum of
    the series it uses and its status the worst of theirs. A role's energy is None in an
    interval where any of its meters is MISSING.
    """
    if ie.energy.shape[0] != len(specs):
        raise ValueError(f"ie has {ie.energy.shape[0]} series, specs has {len(specs)}")
    starts = ie.starts()
    return _rollup_arrays(
        _layout(specs), ie.energy, ie.status, starts, starts + ie.step, ie.reason, per_meter=per_meter, kpi=kpi
    )


def _rollup_arrays(
    lay: _Layout,
    energy: np.ndarray,
    status: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    reason: np.ndarray | None = None,
    *,
    per_meter: bool = False,
    kpi: KpiBasis | None = None,
) -> list[PueInterval]:
    """``per_meter``: fill ``PueInterval.e_meters`` (the live pipeline's few closed minutes;
    the batch path skips it, it would cost more than the rest of the rollup). ``kpi``: the
    emission factor and renewable basis of the companion KPIs (default: :class:`KpiBasis`)."""
    kpi = kpi if kpi is not None else KpiBasis()
    n = energy.shape[1]
    n_meters = len(lay.meters)
    if n == 0:
        return []
    if n_meters == 0:
        raise ValueError("no meters in the model")
    if reason is None:
        reason = np.zeros(status.shape, np.uint8)
    if lay.one_each:
        e_m = energy[lay.used]
        s_m = status[lay.used]
        r_m = reason[lay.used]
    else:
        e_m = np.add.reduceat(energy[lay.used], lay.offsets, axis=0)
        s_m = np.maximum.reduceat(status[lay.used], lay.offsets, axis=0)
        r_m = np.bitwise_or.reduceat(reason[lay.used], lay.offsets, axis=0)
    missing_m = s_m == Status.MISSING
    e_m = np.where(missing_m, 0.0, e_m)

    # per-role sums and "any meter missing" by matrix products, all intervals at once
    e_role = lay.role_matrix @ e_m  # [n_roles, n]
    miss_role = (lay.role_matrix @ missing_m.astype(np.float64)) > 0
    ok_role = lay.has_role[:, None] & ~miss_role  # [n_roles, n]

    # data completeness of the PUE: its own meters only (water/heat/renewable meters excluded)
    pm = lay.pue_meters
    n_pue = max(int(pm.size), 1)
    s_p, r_p = (s_m, r_m) if pm.size == n_meters else (s_m[pm], r_m[pm])
    n_meas = np.count_nonzero(s_p == Status.MEASURED, axis=0) / n_pue
    n_est = np.count_nonzero(s_p == Status.ESTIMATED, axis=0) / n_pue
    n_miss = np.count_nonzero(s_p == Status.MISSING, axis=0) / n_pue
    est_m = s_p == Status.ESTIMATED
    by_reason = [
        (np.count_nonzero(est_m & ((r_p & np.uint8(bit)) != 0), axis=0) / n_pue).tolist() for bit in REASON_FIELDS
    ]

    e_fac, e_it = e_role[0], e_role[1]
    pue_ok = ok_role[0] & ok_role[1] & (e_it > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pue = np.where(pue_ok, e_fac / e_it, np.nan)
    metered_subs = [r for r in _SUB_ROWS if lay.has_role[r]]
    all_subs_ok = np.all(ok_role[metered_subs], axis=0) if metered_subs else np.ones(n, bool)
    unattr_ok = ok_role[0] & ok_role[1] & all_subs_ok
    unattr = e_fac - e_it - e_role[metered_subs].sum(axis=0) if metered_subs else e_fac - e_it

    # build objects (intervals << readings, so a Python loop over intervals is fine here)
    sub_names = [_ROLES[r].value for r in metered_subs]
    sub_e = [e_role[r].tolist() for r in metered_subs]
    sub_ok = [ok_role[r].tolist() for r in metered_subs]
    fac_l, it_l = e_fac.tolist(), e_it.tolist()
    fac_ok, it_ok = ok_role[0].tolist(), ok_role[1].tolist()
    pue_l, pue_ok_l = pue.tolist(), pue_ok.tolist()
    un_l, un_ok = unattr.tolist(), unattr_ok.tolist()
    meas_l, est_l, miss_l = n_meas.tolist(), n_est.tolist(), n_miss.tolist()
    st_l, en_l = starts.tolist(), ends.tolist()
    cat = lay.category
    if per_meter:
        e_m_t, ok_m_t = e_m.T.tolist(), (~missing_m).T.tolist()
    kpis = _kpi_columns(lay, e_role, ok_role, kpi)
    out: list[PueInterval] = []
    for k in range(n):
        it_k = it_l[k] if it_ok[k] else None
        subs = {name: sub_e[j][k] for j, name in enumerate(sub_names) if sub_ok[j][k]}
        ppue = {name: (it_k + e) / it_k for name, e in subs.items()} if it_k is not None and it_k > 0 else {}
        out.append(
            PueInterval(
                start=st_l[k],
                end=en_l[k],
                e_facility=fac_l[k] if fac_ok[k] else None,
                e_it=it_k,
                e_subsystems=subs,
                pue=pue_l[k] if pue_ok_l[k] else None,
                ppue=ppue,
                category=cat,
                measured=meas_l[k],
                estimated=est_l[k],
                missing=miss_l[k],
                coverage=1.0,
                e_unattributed=un_l[k] if un_ok[k] else None,
                estimated_power_integrated=by_reason[0][k],
                estimated_gap_split=by_reason[1][k],
                estimated_reset=by_reason[2][k],
                estimated_glitch_bridged=by_reason[3][k],
                e_meters=(
                    {m: e for m, e, ok in zip(lay.meters, e_m_t[k], ok_m_t[k], strict=True) if ok} if per_meter else {}
                ),
                water_l=kpis[0][k],
                e_heat_reused=kpis[1][k],
                e_renewable=kpis[2][k],
                co2_kg=kpis[3][k],
                wue=ratio(kpis[0][k], it_k),
                cue=ratio(kpis[3][k], it_k),
                erf=ratio(kpis[1][k], fac_l[k] if fac_ok[k] else None),
                ref=ratio(kpis[2][k], fac_l[k] if fac_ok[k] else None),
                kpi_basis=kpi,
            )
        )
    return out


def _kpi_columns(
    lay: _Layout, e_role: np.ndarray, ok_role: np.ndarray, kpi: KpiBasis
) -> tuple[list[float | None], ...]:
    """Water (L), reused heat, renewable energy (kWh) and CO2 (kg) per interval; None where not
    measured. Renewable: the meters, else the contracted share of E_DC. CO2 = (E_DC - renewable)
    x emission factor (ISO/IEC 30134-8; renewable supply zero-carbon), unknown while a renewable
    meter is MISSING."""
    n = e_role.shape[1]
    none: list[float | None] = [None] * n

    def metered(row: int) -> list[float | None]:
        if not lay.has_role[row]:
            return none
        return [e if ok else None for e, ok in zip(e_role[row].tolist(), ok_role[row].tolist(), strict=True)]

    fac_ok = ok_role[0]
    e_fac = e_role[0]
    water, heat = metered(_WATER), metered(_HEAT)
    if lay.has_role[_REN]:
        ren_e, ren_ok = e_role[_REN], ok_role[_REN]
    elif kpi.renewable_share is not None:
        ren_e, ren_ok = e_fac * kpi.renewable_share, fac_ok
    else:
        ren_e, ren_ok = np.zeros(n), None
    co2_ok = fac_ok if ren_ok is None else fac_ok & ren_ok
    co2 = np.maximum(e_fac - ren_e, 0.0) * kpi.ef_kg_per_kwh
    co2_l: list[float | None] = [c if ok else None for c, ok in zip(co2.tolist(), co2_ok.tolist(), strict=True)]
    ren_l: list[float | None] = (
        none if ren_ok is None else [e if ok else None for e, ok in zip(ren_e.tolist(), ren_ok.tolist(), strict=True)]
    )
    return water, heat, ren_l, co2_l


# ---------------------------------------------------------------------- aggregate


def _bucket(ts: float, resolution: str, tz: zoneinfo.ZoneInfo) -> tuple[float, float]:
    """[start, end) of the bucket holding ``ts``, aligned to wall-clock time in ``tz``."""
    local = datetime.fromtimestamp(ts, tz)
    if resolution == "1d":
        day = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
        nxt = datetime.combine(day.date() + timedelta(days=1), day.time(), tzinfo=tz)
        return day.timestamp(), nxt.timestamp()
    size = RESOLUTIONS[resolution]
    minute = (local.minute // 15) * 15 if resolution == "15m" else 0
    # replace() keeps ``fold``, so the repeated hour at a DST fall-back stays distinct
    b = local.replace(minute=minute, second=0, microsecond=0)
    s = b.timestamp()
    return s, s + size


def aggregate(intervals: Sequence[PueInterval], *, resolution: str, tz: str) -> list[PueInterval]:
    """Group intervals into ``15m`` / ``1h`` / ``1d`` buckets of wall-clock time in ``tz``.

    Days start at local midnight (``Asia/Shanghai``: 16:00 UTC). Per ISO/IEC 30134-2 the PUE of
    a bucket is ``sum(e_facility) / sum(e_it)`` over the sub-intervals whose pue is not None —
    energy-weighted, never a mean of ratios; ``e_facility``, ``e_it``, subsystems and pPUE of
    the bucket are sums over the same sub-intervals, so ``pue == e_facility / e_it``.
    ``coverage`` is the time-weighted share of sub-intervals used (of the sub-intervals given),
    the measured/estimated/missing shares are time-weighted means (one cell per meter and
    interval), and ``category`` is the minimum.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, not {resolution!r}")
    zone = zoneinfo.ZoneInfo(tz)
    groups: dict[tuple[float, float], list[PueInterval]] = {}
    b: tuple[float, float] = (math.inf, -math.inf)
    for iv in sorted(intervals, key=lambda i: i.start):
        if not (b[0] <= iv.start < b[1]):  # sorted input: a new bucket only at its boundary
            b = _bucket(iv.start, resolution, zone)
        groups.setdefault(b, []).append(iv)
    return [_merge(b0, b1, ivs) for (b0, b1), ivs in groups.items()]


def _merge(start: float, end: float, ivs: list[PueInterval]) -> PueInterval:
    dur = [max(i.end - i.start, 0.0) for i in ivs]
    total = sum(dur) or 1.0
    used = [i for i in ivs if i.pue is not None]
    cov = sum(d * i.coverage for d, i in zip(dur, ivs, strict=True) if i.pue is not None) / total
    w = [d / total for d in dur]
    measured = sum(wi * i.measured for wi, i in zip(w, ivs, strict=True))
    estimated = sum(wi * i.estimated for wi, i in zip(w, ivs, strict=True))
    missing = sum(wi * i.missing for wi, i in zip(w, ivs, strict=True))
    shares = {f: sum(wi * getattr(i, f) for wi, i in zip(w, ivs, strict=True)) for f in REASON_FIELDS.values()}
    category = min(i.category for i in ivs)
    kpis = _merge_kpis(used, ivs[-1].kpi_basis)
    if not used:
        return PueInterval(
            start=start, end=end, e_facility=None, e_it=None, e_subsystems={}, pue=None,
            ppue={}, category=category, measured=measured, estimated=estimated,
            missing=missing, coverage=0.0, e_unattributed=None, **shares, **kpis,
        )  # fmt: skip
    e_fac = math.fsum(i.e_facility for i in used)  # type: ignore[misc]
    e_it = math.fsum(i.e_it for i in used)  # type: ignore[misc]
    names = set(used[0].e_subsystems)
    for i in used[1:]:
        names &= set(i.e_subsystems)
    subs = {n: math.fsum(i.e_subsystems[n] for i in used) for n in sorted(names)}
    ppue = {n: (e_it + e) / e_it for n, e in subs.items()} if e_it > 0 else {}
    unattr = (
        math.fsum(i.e_unattributed for i in used)  # type: ignore[misc]
        if all(i.e_unattributed is not None for i in used)
        else None
    )
    return PueInterval(
        start=start,
        end=end,
        e_facility=e_fac,
        e_it=e_it,
        e_subsystems=subs,
        pue=e_fac / e_it if e_it > 0 else None,
        ppue=ppue,
        category=category,
        measured=measured,
        estimated=estimated,
        missing=missing,
        coverage=cov,
        e_unattributed=unattr,
        **shares,
        **kpis,
    )


def _merge_kpis(used: list[PueInterval], basis: KpiBasis | None) -> dict[str, Any]:
    """KPIs of a bucket from sums over the sub-intervals whose PUE is known and whose KPI
    numerator is known: sum(numerator) / sum(denominator) over the same sub-intervals, never a
    mean of ratios (ISO/IEC 30134-2/-3/-6/-8/-9). None when no sub-interval has the numerator."""
    out: dict[str, Any] = {"kpi_basis": basis}
    for num, kpi, den in (
        ("water_l", "wue", "e_it"),
        ("co2_kg", "cue", "e_it"),
        ("e_heat_reused", "erf", "e_facility"),
        ("e_renewable", "ref", "e_facility"),
    ):
        have = [i for i in used if getattr(i, num) is not None]
        if not have:
            out[num] = out[kpi] = None
            continue
        total = math.fsum(getattr(i, num) for i in have)
        out[num] = total
        out[kpi] = ratio(total, math.fsum(getattr(i, den) for i in have))
    return out
