"""The Prometheus metric names the dashboards query (as Prometheus stores them: counters with
``_total``), in one place. tests/test_grafana.py checks each against what the exporter
(:mod:`pue_monitor.sinks.prometheus`) renders."""

from __future__ import annotations

PUE = "pue_power_usage_effectiveness_ratio"
THRESHOLD = "pue_threshold_ratio"
ENERGY = "pue_energy_joules_total"
METER_ENERGY = "pue_meter_energy_joules_total"
POWER = "pue_power_watts"
DATA_QUALITY = "pue_data_quality_ratio"
CATEGORY = "pue_measurement_category"
BUILD_INFO = "pue_build_info"
FREE_COOLING_AVAILABLE = "pue_free_cooling_available_ratio"
FREE_COOLING_MODE = "pue_free_cooling_mode"

COLLECTOR_UP = "pue_collector_up"
COLLECTOR_LAST_SUCCESS = "pue_collector_last_success_timestamp_seconds"
COLLECTOR_LATENCY_BUCKET = "pue_collector_poll_latency_seconds_bucket"
COLLECTOR_ERRORS = "pue_collector_errors_total"
COLLECTOR_POLLS = "pue_collector_polls_total"
COLLECTOR_FAILED_POLLS = "pue_collector_failed_polls_total"
PIPELINE_EVENTS = "pue_pipeline_events_total"
SINK_SPOOL_POINTS = "pue_sink_spool_points"
SINK_EVICTED = "pue_sink_evicted_points_total"
SINK_UP = "pue_sink_up"

#: the expected-PUE model's (pue_monitor/models/watch.py, ModelCollector): exported only while
#: the model is on (pue_model_state), and the drift and expected PUE only once a model is trained
MODEL_STATE = "pue_model_state"
PUE_DRIFT = "pue_pue_drift"
EXPECTED_PUE = "pue_expected_pue"
MODEL = frozenset({MODEL_STATE, PUE_DRIFT, EXPECTED_PUE})

#: not ours: Prometheus' own series of the alerting rules `pue alerts rules` writes
ALERTS = "ALERTS"

#: every metric the exporter renders that a dashboard may query
EXPORTED = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and k != "ALERTS" and v not in MODEL
)
