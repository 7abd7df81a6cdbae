"""Every measurement, tag and field pue-monitor writes to a time-series database.

Sinks, dashboards and reports import these names, so nothing can query a field nobody
writes. Tags are low-cardinality identifiers only; each field has one type forever
(floats are always written as floats, integers with the ``i`` suffix), so no write can
meet a field-type conflict.
"""

from __future__ import annotations

from pue_monitor.config.models import SUBSYSTEMS

# ------------------------------------------------------------------ raw readings
#: one point per reading; timestamp = the moment the request was sent (or the sample time)
READING = "pue_reading"
READING_TAGS = ("site", "device", "point", "unit")  # + the reading's own tags (phase, outlet, ...)
READING_VALUE = "value"  # float; omitted when the device sent NaN/inf
READING_QUALITY = "quality"  # integer: pue_monitor.readings.Quality

# ------------------------------------------------------------- interval KPIs
#: one point per interval and resolution; timestamp = interval start; restatements overwrite
INTERVAL = "pue_interval"
INTERVAL_TAGS = ("site", "resolution", "category")  # resolution 1m/15m/1h/1d; ISO/IEC 30134-2 category
#: shares of meter-interval cells estimated per reason (pipeline.pue.REASON_FIELDS, Reason):
#: power integrated, gap split linearly, counter reset, glitch bridged; ``estimated`` is the total
INTERVAL_REASON_FIELDS = (
    "estimated_power_integrated",
    "estimated_gap_split",
    "estimated_reset",
    "estimated_glitch_bridged",
)
#: float fields (kWh, ratios, shares); a field is omitted when its value is unknown
INTERVAL_FLOAT_FIELDS = (
    "e_facility_kwh",
    "e_it_kwh",
    "pue",
    "measured",
    "estimated",
    "missing",
    "coverage",
    *INTERVAL_REASON_FIELDS,
    "e_unattributed_kwh",
    *(f"e_{r.value}_kwh" for r in SUBSYSTEMS),
    *(f"ppue_{r.value}" for r in SUBSYSTEMS),
)
