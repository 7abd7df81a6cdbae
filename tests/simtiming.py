"""What a run on a ScaledClock actually did, for tests that check the live chain against the
simulator's ground truth.

At 60x a poll the OS runs 50 ms late is 3 simulated seconds late, and the runner stamps a
reading when the poll starts while the simulator computes the value when it answers. A test
that holds a busy run to an idle run's fixed counts or to the truth at the stamps fails for
the machine's load, not for the code. These helpers derive the expectation from the run:

- :class:`ReadTimesWorld` records the simulated time at which each meter's counter was read
  (the moment a Modbus request was answered, an SNMP GET or an MQTT publish computed it);
- :func:`energy_as_read` is the energy the readings carry over ``[t0, t1]``: the true counter at
  those read times, placed at the readings' stamps and interpolated as the pipeline does;
- :func:`gap_free_minutes` are the minutes in which every energy counter's consecutive readings
  are at most its ``max_gap`` apart: the pipeline must call exactly those measured.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pue_monitor.simulator import SimulatedDataCentre


class ReadTimesWorld(SimulatedDataCentre):
    """A :class:`SimulatedDataCentre` that notes every time a meter's counter register is read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_at: dict[str, list[float]] = defaultdict(list)

    def counter_at(self, meter: str, t: float) -> float:
        self.read_at[meter].append(float(t))
        return super().counter_at(meter, t)

    def read_times(self, meter: str, stamps: Sequence[float]) -> np.ndarray:
        """For each reading stamp, the time its value was read: the first read at or after it."""
        reads = sorted(self.read_at[meter])
        out = []
        for s in stamps:
            i = bisect.bisect_left(reads, s)
            assert i < len(reads), f"{meter}: no read of its counter at or after the stamp {s}"
            out.append(reads[i])
        return np.asarray(out, dtype=np.float64)


def counter_as_read(world: ReadTimesWorld, meter: str, stamps: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(stamps sorted, the true cumulative energy in kWh at each one's read time): interpolate
    it with ``np.interp`` for the energy the readings carry between two instants they cover."""
    s = np.asarray(sorted(stamps), dtype=np.float64)
    return s, np.array([world.true_cumulative(meter, a) for a in world.read_times(meter, s.tolist())])


def energy_as_read(world: ReadTimesWorld, meter: str, stamps: Sequence[float], t0: float, t1: float) -> float:
    """Energy (kWh) of ``meter`` over ``[t0, t1]`` as its readings carry it: the true counter at
    each reading's read time, at the reading's stamp, linearly interpolated at ``t0`` and ``t1``
    (register resolution aside, what a correct pipeline computes from these readings)."""
    s, c = counter_as_read(world, meter, stamps)
    assert s.size >= 2 and s[0] <= t0 and t1 <= s[-1], f"{meter}: readings do not cover [{t0}, {t1}]"
    return float(np.interp(t1, s, c) - np.interp(t0, s, c))


def gap_free_minutes(
    stamps: Mapping[Any, Sequence[float]], max_gap: Mapping[Any, float], starts: Iterable[float], step: float = 60.0
) -> set[float]:
    """The interval starts among ``starts`` in which every series' readings cover the interval
    and no pair of its consecutive readings overlapping it is more than ``max_gap`` apart (the
    pipeline's rule for MEASURED counter cells: the pairs from the last reading at or before the
    start to the first at or after the end)."""
    arrays = {k: np.asarray(sorted(v), dtype=np.float64) for k, v in stamps.items()}
    out = set()
    for m in starts:
        ok = True
        for k, s in arrays.items():
            i0 = int(np.searchsorted(s, m, side="right")) - 1
            i1 = int(np.searchsorted(s, m + step, side="left"))
            if i0 < 0 or i1 >= s.size or float(np.diff(s[i0 : i1 + 1]).max()) > max_gap[k]:
                ok = False
                break
        if ok:
            out.add(m)
    return out
