"""Energy balance of one set of simultaneous power readings (commissioning).

Pure arithmetic on kW figures, no I/O: `pue check-config --probe` reads every device once
and asks two questions of the first readings, so a meter left out of the site file is
caught on day one rather than as a PUE that looks plausible and is wrong:

Sub-meters vs incomers
    facility power (the ``facility_input`` meters) against the sum of every other meter
    (IT + cooling + power distribution + lighting + other). What no meter accounts for is
    the *unattributed* share, ``(facility - attributed) / facility``. Some is normal (UPS
    and PDU losses, transformers, small unmetered loads: 5-8 % on a typical site); more than
    :data:`MAX_UNATTRIBUTED` (default 10 %) is a warning: the usual cause is a forgotten IT
    meter, which makes PUE too high (IT energy is the denominator).

IT meters vs their upstream UPS
    the sum of the IT meters downstream of the UPSes (``it_location`` ``pdu_output`` or
    ``it_equipment_input``) against the sum of the UPS output power. The IT side should be
    the UPS output less PDU losses (1-3 %): below :data:`MIN_IT_TO_UPS` (90 %) an IT meter
    is missing (or an IT meter reads a unit too small); above :data:`MAX_IT_TO_UPS` (102 %)
    an IT meter is counted twice or does not sit behind these UPSes.

A meter that gave no power reading makes the balance incomplete: the figures are still
shown, but no warning is raised from them (the missing reading is reported on its own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

#: unattributed share of facility power above which the balance warns
MAX_UNATTRIBUTED = 0.10
#: IT (downstream of the UPSes) / UPS output below which the balance warns
MIN_IT_TO_UPS = 0.90
#: ... and above which it warns
MAX_IT_TO_UPS = 1.02

FACILITY = "facility_input"
IT = "it"
#: IT meter locations downstream of the UPS output (compared with it)
DOWNSTREAM = ("pdu_output", "it_equipment_input")


@dataclass(frozen=True)
class MeterPower:
    """One meter's power in the readings: its role and location in the energy model."""

    device: str
    role: str  # a pue_monitor.config.models.Role value
    kw: float | None  # None: no power reading (not answered, energy-only meter, BAD value)
    it_location: str | None = None


@dataclass(frozen=True)
class UpsOutput:
    """A UPS's output power (the sum of its output lines)."""

    device: str
    kw: float | None


@dataclass(frozen=True)
class Balance:
    facility_kw: float
    #: attributed power by role (it, cooling, power_distribution, lighting, other)
    loads_kw: dict[str, float]
    attributed_kw: float
    unattributed_kw: float
    #: unattributed / facility; None when there is no facility power
    unattributed_share: float | None
    it_downstream_kw: float
    ups_output_kw: float
    #: IT downstream / UPS output; None when either side is absent
    it_to_ups: float | None
    #: devices whose power is unknown (the balance is incomplete without them)
    unknown: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unknown

    def as_dict(self) -> dict[str, object]:
        return {
            "facility_kw": self.facility_kw,
            "loads_kw": self.loads_kw,
            "attributed_kw": self.attributed_kw,
            "unattributed_kw": self.unattributed_kw,
            "unattributed_share": self.unattributed_share,
            "it_downstream_kw": self.it_downstream_kw,
            "ups_output_kw": self.ups_output_kw,
            "it_to_ups": self.it_to_ups,
            "unknown": self.unknown,
            "complete": self.complete,
            "warnings": self.warnings,
        }


def balance(
    meters: Sequence[MeterPower],
    ups: Sequence[UpsOutput] = (),
    *,
    max_unattributed: float = MAX_UNATTRIBUTED,
    min_it_to_ups: float = MIN_IT_TO_UPS,
    max_it_to_ups: float = MAX_IT_TO_UPS,
) -> Balance:
    """The energy balance of simultaneous power readings (see the module docstring)."""
    unknown = [m.device for m in meters if m.kw is None or not math.isfinite(m.kw)]
    unknown += [u.device for u in ups if u.kw is None or not math.isfinite(u.kw)]
    known = [m for m in meters if m.device not in unknown]
    facility = math.fsum(m.kw for m in known if m.role == FACILITY and m.kw is not None)
    loads: dict[str, float] = {}
    for m in known:
        if m.role != FACILITY and m.kw is not None:
            loads[m.role] = loads.get(m.role, 0.0) + m.kw
    attributed = math.fsum(loads.values())
    has_facility = any(m.role == FACILITY for m in meters)
    share = (facility - attributed) / facility if has_facility and facility > 0 else None
    it_down = math.fsum(m.kw for m in known if m.role == IT and m.it_location in DOWNSTREAM and m.kw is not None)
    ups_kw = math.fsum(u.kw for u in ups if u.device not in unknown and u.kw is not None)
    has_down = any(m.role == IT and m.it_location in DOWNSTREAM for m in meters)
    ratio = it_down / ups_kw if ups and has_down and ups_kw > 0 else None

    warnings: list[str] = []
    if not unknown:
        if share is not None and share > max_unattributed:
            it_kw = loads.get(IT, 0.0)
            warnings.append(
                f"{share:.1%} of facility power ({facility - attributed:.1f} of {facility:.1f} kW) is not "
                f"attributed to any meter (more than {max_unattributed:.0%}): is an IT or subsystem meter missing "
                f"from the site file? IT meters read {it_kw:.1f} kW; PUE would be overstated"
            )
        if share is not None and share < -0.02:
            warnings.append(
                f"the meters behind the incomers read {attributed:.1f} kW, more than the facility's {facility:.1f} kW "
                f"({-share:.1%} over): a meter counted twice, or an incomer missing?"
            )
        if ratio is not None and ratio < min_it_to_ups:
            warnings.append(
                f"IT meters downstream of the UPSes read {it_down:.1f} kW, {ratio:.1%} of the UPS output "
                f"({ups_kw:.1f} kW; expected at least {min_it_to_ups:.0%}): an IT meter is missing?"
            )
        if ratio is not None and ratio > max_it_to_ups:
            warnings.append(
                f"IT meters downstream of the UPSes read {it_down:.1f} kW, {ratio:.1%} of the UPS output "
                f"({ups_kw:.1f} kW): an IT meter counted twice, or one not behind these UPSes?"
            )
    return Balance(
        facility_kw=facility,
        loads_kw=dict(sorted(loads.items(), key=lambda kv: (kv[0] != IT, kv[0]))),
        attributed_kw=attributed,
        unattributed_kw=facility - attributed,
        unattributed_share=share,
        it_downstream_kw=it_down,
        ups_output_kw=ups_kw,
        it_to_ups=ratio,
        unknown=unknown,
        warnings=warnings,
    )
