"""Every measurement, tag and field pue-monitor writes to a time-series database.

Sinks, dashboards and reports import these names, so nothing can query a field nobody
writes. Tags are low-cardinality identifiers only; each field has one type forever
(floats are always written as floats, integers with the ``i`` suffix), so no write can
meet a field-type conflict.
"""

from __future__ import annotations

from pue_monitor.config.models import SUBSYSTEMS

#: version of this schema, written into the data (``pue_meta`` at start, ``schema_version`` on
#: every ``pue_interval`` point) so dashboards and reports can tell which layout a point has.
#: 1: ``category`` was a tag of ``pue_interval`` and ``unit`` a tag of ``pue_reading``.
#: 2: ``category`` is an integer field (a restated bucket overwrites its point even when its
#:    category changes); ``pue_reading`` has no ``unit`` tag (the unit is fixed per device and
#:    point by its profile, so the tag added no information, only series-key bytes).
#: 3: companion KPI fields on ``pue_interval`` (INTERVAL_KPI_FIELDS, INTERVAL_KPI_BASIS_*).
SCHEMA_VERSION = 3
SCHEMA_VERSION_FIELD = "schema_version"  # integer

# ------------------------------------------------------------------ metadata
#: one point per service start; timestamp = start time
META = "pue_meta"
#: software_version is a tag (one value per release), not a string field: VictoriaMetrics would
#: store a string field as a meaningless 0
META_TAGS = ("site", "software_version")
META_FIELDS = (SCHEMA_VERSION_FIELD,)  # integer

# ------------------------------------------------------------------ raw readings
#: one point per reading; timestamp = the moment the request was sent (or the sample time)
READING = "pue_reading"
READING_TAGS = ("site", "device", "point")  # + the reading's own tags (phase, outlet, ...)
READING_VALUE = "value"  # float; omitted when the device sent NaN/inf
READING_QUALITY = "quality"  # integer: pue_monitor.readings.Quality

# ------------------------------------------------------------- interval KPIs
#: one point per interval and resolution; timestamp = interval start; restatements overwrite
INTERVAL = "pue_interval"
INTERVAL_TAGS = ("site", "resolution")  # resolution 1m/15m/1h/1d
#: integer fields: ISO/IEC 30134-2 measurement category 1-3, SCHEMA_VERSION, and the year of the
#: grid emission factor the CUE was computed with
INTERVAL_INT_FIELDS = ("category", SCHEMA_VERSION_FIELD, "co2_factor_year")
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
#: companion KPIs (pipeline.kpi), floats, each ABSENT when not measured (no meter), never 0:
#: site water (L), reused heat and renewable energy (kWh), CO2 of E_DC (kg), WUE (ISO/IEC
#: 30134-9, L/kWh), CUE (ISO/IEC 30134-8, kg/kWh), ERF (ISO/IEC 30134-6), REF (ISO/IEC 30134-3)
INTERVAL_KPI_FIELDS = ("water_l", "e_heat_reused_kwh", "e_renewable_kwh", "co2_kg", "wue", "cue", "erf", "ref")
#: float field: the grid emission factor (kg CO2/kWh) of co2_kg and cue; its year is in
#: INTERVAL_INT_FIELDS, its source in the embedded store (a string field would be meaningless in
#: VictoriaMetrics)
INTERVAL_KPI_BASIS_FLOAT_FIELDS = ("co2_factor_kg_per_kwh",)

# ------------------------------------------------------------- free cooling
#: one point per economiser, interval and resolution (pipeline/freecooling_live.py);
#: timestamp = interval start; a rewritten interval overwrites its point
FREE_COOLING = "pue_free_cooling"
FREE_COOLING_TAGS = ("site", "resolution", "economiser")
#: integer fields: mode codes (-1 unknown, 0 none, 1 partial, 2 full; on 1-minute points only)
#: and inferred (1: the actual mode was inferred from chiller power, 0: from a status point)
FREE_COOLING_INT_FIELDS = ("mode", "actual_mode", "inferred")
#: float fields: available fraction; seconds per available mode, seconds the plant used free
#: cooling and seconds its mode was unknown; utilisation (used / available seconds of the
#: interval); chiller and avoidable chiller energy, kWh. Omitted when unknown.
FREE_COOLING_FLOAT_FIELDS = (
    "fraction",
    "full_s",
    "partial_s",
    "none_s",
    "unknown_s",
    "used_s",
    "actual_unknown_s",
    "utilisation",
    "chiller_kwh",
    "avoidable_kwh",
)
