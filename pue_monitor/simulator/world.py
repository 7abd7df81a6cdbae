"""The simulated data centre: ground truth energy, and faults on what meters show.

Ground truth is the meters' power (:func:`physics.loads`) integrated on a fixed grid
``start + k·step`` with the midpoint rule (vectorised over meters and steps). Inside a
step the power is taken as the step's midpoint power, so cumulative energy is
piecewise linear in time and exact queries at any ``t`` interpolate inside a step.

History: cumulative energy per column is kept at every ``record_every``-th grid point
(a "knot", 60 s by default); energy at any ``t`` is the knot before it plus at most
``record_every`` recomputed steps (the physics is a pure function of time, so the
recomputation reproduces the integration). A year of history is ~40 MB.

Faults change what meters *show* (:meth:`counter_at`, :meth:`shown_power_at`,
:meth:`is_dead`), never the truth, except :meth:`degrade_chiller`, which changes the
physics from a time the world has not reached yet.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from pue_monitor.simulator import physics
from pue_monitor.simulator.physics import METER_IDS, Faults, Noise, SimParams, Weather

#: cumulative columns: the meters, then the unmetered losses (truth only)
COMPONENTS: tuple[str, ...] = ("ups_loss", "pdu_loss")
COLUMNS: tuple[str, ...] = METER_IDS + COMPONENTS


@dataclass(frozen=True)
class MeterSpec:
    """A simulated meter: its id, role in the energy model and counter range."""

    id: str
    role: str  # pue_monitor.config.models.Role value
    it_location: str | None = None
    #: counter value (kWh) at which the register wraps to 0 (None: never in practice)
    rollover_kwh: float | None = None
    #: range of the deterministic initial counter value, kWh ("tens of MWh")
    initial_kwh: tuple[float, float] = (10_000.0, 90_000.0)


#: pue-sim-meter import_energy is u32 x 0.01 kWh → wraps at 2^32 x 0.01 kWh
SIM_METER_ROLLOVER_KWH = 2**32 * 0.01

METERS: dict[str, MeterSpec] = {
    m.id: m
    for m in (
        MeterSpec("incomer-a", "facility_input", initial_kwh=(200_000.0, 900_000.0)),
        MeterSpec("incomer-b", "facility_input", initial_kwh=(200_000.0, 900_000.0)),
        MeterSpec("pdu-1", "it", "pdu_output"),
        MeterSpec("pdu-2", "it", "pdu_output"),
        MeterSpec("pdu-3", "it", "pdu_output"),
        MeterSpec("pdu-4", "it", "pdu_output"),
        # APC rack PDUs read over SNMP: rPDU2DeviceStatusEnergy is tenths of kWh in an INTEGER
        MeterSpec("rack-pdu-1", "it", "pdu_output", initial_kwh=(10_000.0, 30_000.0)),
        MeterSpec("rack-pdu-2", "it", "pdu_output", initial_kwh=(10_000.0, 30_000.0)),
        MeterSpec("chiller-plant", "cooling", rollover_kwh=SIM_METER_ROLLOVER_KWH),
        MeterSpec("crah", "cooling"),
        MeterSpec("lighting", "lighting", rollover_kwh=SIM_METER_ROLLOVER_KWH),
        # companion KPI meters; tower-water counts litres (its "kWh" are L, its "kW" L/h)
        MeterSpec("tower-water", "water", initial_kwh=(100_000.0, 500_000.0)),
        MeterSpec("heat-reuse", "heat_reuse"),
        MeterSpec("pv", "renewable", rollover_kwh=SIM_METER_ROLLOVER_KWH),
    )
}
assert tuple(METERS) == METER_IDS

#: weather is cached on this grid (epoch-aligned) and linearly interpolated
WEATHER_KNOT_S = 300.0


def _in(windows: list[tuple[float, float | None]], t: float) -> tuple[float, float | None] | None:
    for since, until in windows:
        if t >= since and (until is None or t < until):
            return since, until
    return None


class SimulatedDataCentre:
    """Ground truth of the simulated site, with fault hooks.

    ``start``: POSIX time where integration starts (true energy 0 there; the meters
    show deterministic initial counters of tens of MWh). ``seed`` fixes noise and
    initial counters. ``step``: integration step, s.
    """

    def __init__(
        self,
        params: SimParams | None = None,
        *,
        start: float,
        seed: int = 0,
        step: float = 5.0,
        record_every: int = 12,
    ) -> None:
        if step <= 0 or record_every < 1:
            raise ValueError("step must be > 0 and record_every >= 1")
        self.params = params or SimParams()
        self.start = float(start)
        self.seed = seed
        self.step = float(step)
        self.record_every = int(record_every)
        self.noise = Noise.from_seed(seed, self.params)
        self.meters: tuple[str, ...] = METER_IDS
        self._col = {c: i for i, c in enumerate(COLUMNS)}
        self._knot_s = self.step * self.record_every
        # history of cumulative true energy (kWh since start) at knots
        self._hist = np.zeros((1024, len(COLUMNS)))
        self._nk = 1  # knot 0 = start, all zeros
        self._t_max = self.start  # latest time anyone asked about
        self._faults = Faults()
        self._wx_cache: dict[int, tuple[float, float, float, float]] = {}
        self._e_cache: dict[float, np.ndarray] = {}
        rng = np.random.default_rng(seed)
        self.initial_counters: dict[str, float] = {
            m: round(float(rng.uniform(*METERS[m].initial_kwh)), 2) for m in METER_IDS
        }
        # display faults
        self._stuck: dict[str, list[tuple[float, float | None]]] = {}
        self._counter_events: dict[str, list[tuple[float, float]]] = {
            m: [(self.start, self.initial_counters[m])] for m in METER_IDS
        }
        self._dead: dict[str, list[tuple[float, float | None]]] = {}

    # ------------------------------------------------------------------ physics

    @property
    def now(self) -> float:
        """Latest time the world has been asked about (advanced to)."""
        return self._t_max

    def weather_at(self, t: float | np.ndarray) -> Weather:
        """Outdoor weather (psychrolib on a 5-minute grid, linearly interpolated)."""
        ta = np.atleast_1d(np.asarray(t, dtype=float))
        x = ta / WEATHER_KNOT_S
        i = np.floor(x).astype(np.int64)
        frac = x - i
        need = np.unique(np.concatenate([i, i + 1]))
        missing = [int(k) for k in need if int(k) not in self._wx_cache]
        if missing:
            w = physics.weather(np.array(missing, dtype=float) * WEATHER_KNOT_S, self.params, self.noise)
            for j, k in enumerate(missing):
                self._wx_cache[k] = (
                    float(np.asarray(w.dry_bulb_c)[j]),
                    float(np.asarray(w.rh_pct)[j]),
                    float(np.asarray(w.pressure_hpa)[j]),
                    float(np.asarray(w.wet_bulb_c)[j]),
                )
        uniq, inv = np.unique(i, return_inverse=True)
        lo = np.array([self._wx_cache[int(k)] for k in uniq])[inv]
        hi = np.array([self._wx_cache[int(k) + 1] for k in uniq])[inv]
        v = lo + (hi - lo) * frac[:, None]
        if np.ndim(t) == 0:
            return Weather(float(v[0, 0]), float(v[0, 1]), float(v[0, 2]), float(v[0, 3]))
        shape = np.shape(t)
        return Weather(*(v[:, c].reshape(shape) for c in range(4)))

    def loads_at(self, t: float | np.ndarray) -> dict[str, float | np.ndarray]:
        """Full :func:`physics.loads` breakdown at ``t`` with this world's weather and faults."""
        return physics.loads(t, self.params, self._faults, noise=self.noise, wx=self.weather_at(t))

    def _power_matrix(self, t: np.ndarray) -> np.ndarray:
        ld = self.loads_at(t)
        return np.stack([np.asarray(ld[c], dtype=float) for c in COLUMNS], axis=-1)

    def power_at(self, t: float) -> dict[str, float]:
        """True power (kW) of every meter at ``t``."""
        ld = self.loads_at(float(t))
        return {m: float(ld[m]) for m in METER_IDS}

    # --------------------------------------------------------------- integration

    def advance_to(self, t: float) -> None:
        """Integrate up to ``t`` (whole knots; the rest is computed on demand)."""
        t = float(t)
        if t > self._t_max:
            self._t_max = t
        target = math.floor((t - self.start) / self._knot_s + 1e-9)
        max_knots_per_chunk = max(1, int(86400.0 / self._knot_s))
        while self._nk - 1 < target:
            j0 = self._nk - 1
            n = min(target - j0, max_knots_per_chunk)
            k = np.arange(j0 * self.record_every, (j0 + n) * self.record_every)
            tm = self.start + (k + 0.5) * self.step
            de = self._power_matrix(tm) * (self.step / 3600.0)
            per_knot = de.reshape(n, self.record_every, len(COLUMNS)).sum(axis=1)
            # running sum from the previous knot, so the result does not depend on
            # how the integration was chunked (bit-for-bit reproducible)
            cum = np.cumsum(np.vstack([self._hist[j0][None, :], per_knot]), axis=0)[1:]
            if self._nk + n > self._hist.shape[0]:
                grow = max(self._hist.shape[0], n + 1)
                self._hist = np.concatenate([self._hist, np.zeros((grow, len(COLUMNS)))])
            self._hist[self._nk : self._nk + n] = cum
            self._nk += n

    def _energy_vec(self, t: float) -> np.ndarray:
        """Cumulative true energy (kWh since start) of every column at ``t``."""
        t = float(t)
        cached = self._e_cache.get(t)
        if cached is not None:
            return cached
        if t < self.start:
            raise ValueError(f"t={t} is before the simulation start {self.start}")
        self.advance_to(t)
        x = (t - self.start) / self.step
        k = math.floor(x + 1e-9)
        frac = max(0.0, x - k)
        j = min(k // self.record_every, self._nk - 1)
        e: np.ndarray = self._hist[j].copy()
        steps = np.arange(j * self.record_every, k + 1)
        if steps.size:
            de = self._power_matrix(self.start + (steps + 0.5) * self.step) * (self.step / 3600.0)
            de[-1] *= frac
            e += de.sum(axis=0)
        if len(self._e_cache) >= 256:
            self._e_cache.clear()
        self._e_cache[t] = e
        return e

    def _columns_of(self, name: str) -> list[int]:
        if name in self._col:
            return [self._col[name]]
        cols = [self._col[m] for m, spec in METERS.items() if spec.role == name]
        if name == "facility":
            cols = [self._col[m] for m, spec in METERS.items() if spec.role == "facility_input"]
        if not cols:
            raise KeyError(
                f"unknown meter, role or component {name!r} "
                f"(meters: {', '.join(METER_IDS)}; components: {', '.join(COMPONENTS)})"
            )
        return cols

    def true_cumulative(self, name: str, t: float) -> float:
        """True energy (kWh) of a meter / role / component from ``start`` to ``t``."""
        e = self._energy_vec(t)
        return float(sum(e[c] for c in self._columns_of(name)))

    def true_energy(self, name: str, t0: float, t1: float) -> float:
        """True energy (kWh) over [t0, t1] of a meter id, a role (``facility_input``,
        ``it``, ``cooling``, ``lighting``, ``heat_reuse``, ``renewable``; ``facility`` =
        ``facility_input``; ``water`` in litres) or an unmetered component (``ups_loss``,
        ``pdu_loss``)."""
        return self.true_cumulative(name, t1) - self.true_cumulative(name, t0)

    def true_pue(self, t0: float, t1: float) -> float:
        """ISO/IEC 30134-2 PUE over [t0, t1]: Σ facility energy / Σ IT energy."""
        return self.true_energy("facility_input", t0, t1) / self.true_energy("it", t0, t1)

    def true_kpis(self, t0: float, t1: float, *, ef_kg_per_kwh: float = 0.5306) -> dict[str, float]:
        """Ground truth of the companion KPIs over [t0, t1] (see :mod:`pue_monitor.pipeline.kpi`):
        WUE = tower make-up water (L) / E_IT, CUE = (E_DC - PV) x ``ef_kg_per_kwh`` / E_IT,
        ERF = exported heat / E_DC, REF = PV / E_DC."""
        fac = self.true_energy("facility_input", t0, t1)
        it = self.true_energy("it", t0, t1)
        water = self.true_energy("water", t0, t1)
        heat = self.true_energy("heat_reuse", t0, t1)
        pv = self.true_energy("renewable", t0, t1)
        return {
            "water_l": water,
            "e_heat_reused": heat,
            "e_renewable": pv,
            "wue": water / it,
            "cue": max(fac - pv, 0.0) * ef_kg_per_kwh / it,
            "erf": heat / fac,
            "ref": pv / fac,
        }

    # ------------------------------------------------------------- what meters show

    def _effective_time(self, meter: str, t: float) -> float:
        w = _in(self._stuck.get(meter, []), t)
        return w[0] if w else t

    def shown_power_at(self, meter: str, t: float) -> float:
        """Power (kW) the meter shows at ``t`` (frozen while stuck)."""
        self._check_meter(meter)
        te = self._effective_time(meter, t)
        return float(self.loads_at(te)[meter])

    def counter_at(self, meter: str, t: float) -> float:
        """Energy counter (kWh) the meter's register shows at ``t``, faults applied."""
        self._check_meter(meter)
        te = self._effective_time(meter, t)
        at, base = self._counter_events[meter][0]
        for ev_at, ev_base in self._counter_events[meter]:
            if ev_at <= te:
                at, base = ev_at, ev_base
        value = base + self.true_cumulative(meter, te) - self.true_cumulative(meter, at)
        roll = METERS[meter].rollover_kwh
        if roll is not None:
            value = math.fmod(value, roll)
        return value

    def counter_since(self, meter: str, t: float) -> float:
        """Time of the counter's last (re)start at or before ``t``: the simulation start, a
        reset or a preset (what an APC rack PDU shows as its energy start time)."""
        self._check_meter(meter)
        te = self._effective_time(meter, t)
        return max(at for at, _ in self._counter_events[meter] if at <= te or at == self.start)

    def is_dead(self, device: str, t: float) -> bool:
        """Whether ``device`` (a device id, e.g. ``pdu-3`` or ``weather``) is not answering."""
        return _in(self._dead.get(device, []), t) is not None

    # ------------------------------------------------------------------ fault hooks

    def _check_meter(self, meter: str) -> None:
        if meter not in METERS:
            raise KeyError(f"unknown meter {meter!r} (meters: {', '.join(METER_IDS)})")

    def degrade_chiller(self, cop_loss_per_day: float, since: float) -> None:
        """Chiller COP falls by ``cop_loss_per_day`` COP points per day from ``since``.

        Changes the physics (so true PUE drifts up while chillers run; no effect while
        free cooling covers the whole load). ``since`` must not be before :attr:`now`:
        the past has been integrated and served already.
        """
        if since < self._t_max - 1e-9:
            raise ValueError(f"since={since} is before the world's current time {self._t_max}")
        self._faults = dataclasses.replace(
            self._faults,
            chiller_degradation=(*self._faults.chiller_degradation, (float(since), float(cop_loss_per_day))),
        )
        self._e_cache.clear()

    def foul_tower(self, approach_rise_k_per_day: float, since: float) -> None:
        """The cooling tower's approach rises by ``approach_rise_k_per_day`` K per day from
        ``since`` (a fouling tower: warmer condenser water, less free cooling; see
        :class:`physics.Faults`). Changes the physics, so ``since`` must not be before :attr:`now`."""
        self._check_future(since)
        self._faults = dataclasses.replace(
            self._faults,
            tower_fouling=(*self._faults.tower_fouling, (float(since), float(approach_rise_k_per_day))),
        )
        self._e_cache.clear()

    def fail_economiser(self, since: float, until: float | None = None) -> None:
        """The economiser's valve or damper sticks shut from ``since`` to ``until``: the plant runs
        its chillers even when free cooling is available. Changes the physics (``since`` >= :attr:`now`)."""
        self._check_future(since)
        window = (float(since), None if until is None else float(until))
        self._faults = dataclasses.replace(
            self._faults, economiser_failures=(*self._faults.economiser_failures, window)
        )
        self._e_cache.clear()

    def _check_future(self, since: float) -> None:
        if since < self._t_max - 1e-9:
            raise ValueError(f"since={since} is before the world's current time {self._t_max}")

    def step_it_load(self, factor: float, since: float) -> None:
        """IT load is multiplied by ``factor`` from ``since`` (new racks: a change, not a fault).

        Changes the physics, so ``since`` must not be before :attr:`now`."""
        if since < self._t_max - 1e-9:
            raise ValueError(f"since={since} is before the world's current time {self._t_max}")
        self._faults = dataclasses.replace(
            self._faults, it_steps=(*self._faults.it_steps, (float(since), float(factor)))
        )
        self._e_cache.clear()

    def stick_meter(self, meter: str, since: float, until: float | None = None) -> None:
        """Meter shows frozen power and counter (its values at ``since``) until ``until``."""
        self._check_meter(meter)
        self._stuck.setdefault(meter, []).append((float(since), until))

    def reset_counter(self, meter: str, at: float) -> None:
        """Meter's counter restarts from 0 at ``at`` (true energy continues)."""
        self.preset_counter(meter, 0.0, at=at)

    def preset_counter(self, meter: str, value: float, at: float | None = None) -> None:
        """Set the meter's counter to ``value`` kWh at ``at`` (default: :attr:`now`),
        e.g. just below its rollover to force a wrap."""
        self._check_meter(meter)
        at = self._t_max if at is None else float(at)
        if at < self.start:
            raise ValueError("at must not be before the simulation start")
        events = self._counter_events[meter]
        events.append((at, float(value)))
        events.sort(key=lambda e: e[0])

    def kill_device(self, device: str, since: float, until: float | None = None) -> None:
        """Device stops answering at all (requests time out) from ``since`` to ``until``."""
        self._dead.setdefault(device, []).append((float(since), until))

    def revive_device(self, device: str, at: float) -> None:
        """End every open-ended kill of ``device`` at ``at``."""
        self._dead[device] = [(s, u if u is not None else max(s, float(at))) for s, u in self._dead.get(device, [])]
