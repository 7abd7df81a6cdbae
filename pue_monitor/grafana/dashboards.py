"""The dashboards, built with grafana-foundation-sdk (Grafana 11 models).

``build_all()`` returns every dashboard's JSON model as Grafana stores it, by file name; `pue
grafana build` writes them to ``pue_monitor/grafana/json/`` (committed; a test fails when stale).

Every InfluxDB measurement and field comes from :mod:`pue_monitor.schema` (checked when the
query is built: an unknown name raises) and every Prometheus metric from
:mod:`pue_monitor.grafana.metrics`. A PUE over a range is a ratio of energy sums (ISO/IEC
30134-2), never an average of ratios: ``sum(e_facility_kwh) / sum(e_it_kwh)`` over the 1-minute
rows in InfluxDB, ``increase(facility_input) / increase(it)`` of the energy counters in Prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from pue_monitor import schema
from pue_monitor.config.models import SUBSYSTEMS, Role, Thresholds
from pue_monitor.grafana import metrics as m
from pue_monitor.grafana.influxql import InfluxQL

INFLUX_UID = "pue-influxdb"
PROMETHEUS_UID = "pue-prometheus"
INFLUX = dm.DataSourceRef(type_val="influxdb", uid=INFLUX_UID)
PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
MIXED = dm.DataSourceRef(type_val="datasource", uid="-- Mixed --")
FOLDER = "pue-monitor"
TAGS = ["pue-monitor"]

_DEFAULT_LIMITS = Thresholds()  # the site file's defaults, until the site's own limits load
GREEN, ORANGE, RED = "green", "orange", "red"
KWH_TO_J = 3.6e6

# ------------------------------------------------------------------ schema names, checked
_INTERVAL_FIELDS = frozenset((*schema.INTERVAL_FLOAT_FIELDS, *schema.INTERVAL_INT_FIELDS))
_FREE_COOLING_FIELDS = frozenset((*schema.FREE_COOLING_FLOAT_FIELDS, *schema.FREE_COOLING_INT_FIELDS))
_FIELDS = {schema.INTERVAL: _INTERVAL_FIELDS, schema.FREE_COOLING: _FREE_COOLING_FIELDS}
_TAGS = {schema.INTERVAL: schema.INTERVAL_TAGS, schema.FREE_COOLING: schema.FREE_COOLING_TAGS}


def _f(measurement: str, name: str) -> str:
    """A field of ``measurement``, double-quoted for InfluxQL; raises when schema.py has no such field."""
    if name not in _FIELDS[measurement]:
        raise ValueError(f"{measurement} has no field {name!r} in pue_monitor/schema.py")
    return f'"{name}"'


def _t(measurement: str, name: str) -> str:
    if name not in _TAGS[measurement]:
        raise ValueError(f"{measurement} has no tag {name!r} in pue_monitor/schema.py")
    return f'"{name}"'


def _iv(name: str) -> str:
    return _f(schema.INTERVAL, name)


def _fc(name: str) -> str:
    return _f(schema.FREE_COOLING, name)


def _where(measurement: str, resolution: str, *, fleet: bool = False) -> str:
    """The site (``$site``, a regex over all selected sites on the fleet dashboard), one resolution
    and Grafana's time range."""
    site = _t(measurement, "site")
    cond = f"{site} =~ /^$site$/" if fleet else f"{site} = '$site'"
    return f"{cond} AND {_t(measurement, 'resolution')} = '{resolution}' AND $timeFilter"


#: only the intervals with a PUE (both energies known), as the pipeline's own aggregates do
#: (pipeline.pue.aggregate); InfluxQL drops a point without the field from a field condition
_HAS_PUE = f"{_iv('pue')} > 0"


def _energy_pue(resolution: str = "1m", *, fleet: bool = False) -> str:
    """PUE of the selected range: the energy sums of the rows of ``resolution`` that have a PUE."""
    return (
        f'SELECT sum({_iv("e_facility_kwh")}) / sum({_iv("e_it_kwh")}) AS "PUE" '
        f'FROM "{schema.INTERVAL}" WHERE {_HAS_PUE} AND {_where(schema.INTERVAL, resolution, fleet=fleet)}'
    )


def _category(resolution: str = "1m") -> str:
    """The weakest measurement category over the range (the lowest number decides)."""
    return (
        f'SELECT min({_iv("category")}) AS "category" FROM "{schema.INTERVAL}" '
        f"WHERE {_where(schema.INTERVAL, resolution)}"
    )


def _sel(metric: str, **labels: str) -> str:
    """``metric{site="$site", k="v", ...}``; a value starting with ``~`` is a regex match."""
    parts = ['site="$site"']
    for k, v in labels.items():
        parts.append(f'{k}=~"{v[1:]}"' if v.startswith("~") else f'{k}="{v}"')
    return f"{metric}{{{','.join(parts)}}}"


def _prom_range_pue() -> str:
    fac = _sel(m.ENERGY, role=Role.FACILITY_INPUT.value)
    it = _sel(m.ENERGY, role=Role.IT.value)
    return f"increase({fac}[$__range]) / ignoring(role) increase({it}[$__range])"


# ------------------------------------------------------------------ targets
def _influx(ref: str, query: str, *, table_format: bool = False) -> InfluxQL:
    q = InfluxQL(INFLUX, ref, query)
    return q.table() if table_format else q


def _prom(ref: str, expr: str, legend: str | None = None, *, instant: bool = False, table_format: bool = False) -> Any:
    q = prom.Dataquery().ref_id(ref).datasource(PROMETHEUS).expr(expr)
    q = q.instant() if instant else q.range()
    if legend is not None:
        q = q.legend_format(legend)
    if table_format:
        from grafana_foundation_sdk.models.prometheus import PromQueryFormat

        q = q.format(PromQueryFormat.TABLE)
    return q


def _limits_target() -> Any:
    """The site's own PUE limits (pue_threshold_ratio), for the configFromData transformation."""
    return _prom("limits", _sel(m.THRESHOLD), "{{level}}", instant=True)


def _limits_transformation() -> dm.DataTransformerConfig:
    """Grafana's "Config from query results": the ``limits`` query sets the thresholds of the
    PUE values (warning -> orange, critical -> red) and is not shown itself."""
    return dm.DataTransformerConfig(
        id_val="configFromData",
        options={
            "configRefId": "limits",
            "mappings": [
                {
                    "fieldName": level,
                    "handlerKey": "threshold1",
                    "handlerArguments": {"threshold": {"color": color}},
                    "reducerId": "lastNotNull",
                }
                for level, color in (("warning", ORANGE), ("critical", RED))
            ],
            "applyTo": {"id": "byFrameRefID", "options": "A"},
        },
    )


def _pue_thresholds() -> db.ThresholdsConfig:
    """The default limits as colours (the site's own replace them where the limits query runs)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                dm.Threshold(value=None, color=GREEN),
                dm.Threshold(value=_DEFAULT_LIMITS.warning, color=ORANGE),
                dm.Threshold(value=_DEFAULT_LIMITS.critical, color=RED),
            ]
        )
    )


_CATEGORY_MAPPINGS: list[dm.ValueMapping] = [
    dm.ValueMap(
        options={
            "1": dm.ValueMappingResult(text="category 1 (UPS output)", color="text", index=0),
            "2": dm.ValueMappingResult(text="category 2 (PDU output)", color="text", index=1),
            "3": dm.ValueMappingResult(text="category 3 (IT equipment input)", color="text", index=2),
        }
    )
]


def _category_override() -> list[dm.DynamicConfigValue]:
    return [
        dm.DynamicConfigValue(id_val="mappings", value=_CATEGORY_MAPPINGS),
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "text"}),
        dm.DynamicConfigValue(id_val="unit", value="none"),
    ]


def _pue_stat(title: str, description: str, targets: Sequence[cogbuilder.Builder[cogvariants.Dataquery]]) -> Any:
    """A PUE stat: the value (ref A) coloured by the site's limits, the category beside it."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(MIXED)
        .targets([*targets, _limits_target()])
        .with_transformation(_limits_transformation())
        .unit("none")
        .decimals(3)
        .thresholds(_pue_thresholds())
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_reduce("lastNotNull"))
        .override_by_name("category", _category_override())
        .height(5)
    )


def common_reduce(calc: str) -> Any:
    from grafana_foundation_sdk.builders import common as cb

    return cb.ReduceDataOptions().calcs([calc]).values(False)


def _site_variable(*, fleet: bool = False) -> db.QueryVariable:
    v = (
        db.QueryVariable("site")
        .label("Site")
        .datasource(PROMETHEUS)
        .query({"query": f"label_values({m.BUILD_INFO}, site)", "refId": "site"})
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    if fleet:
        v = v.multi(True).include_all(True).all_value(".*")
    return v


def _dashboard(uid: str, title: str, description: str, panels: Sequence[Any], *, fleet: bool = False) -> dict[str, Any]:
    d = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("browser")
        .time("now-24h", "now")
        .refresh("1m")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(_site_variable(fleet=fleet))
    )
    for i, p in enumerate(panels, start=1):
        d = d.with_panel(p.id(i))
    encoded: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder, sort_keys=True))
    return encoded


# ------------------------------------------------------------------ Site overview
def site_overview() -> dict[str, Any]:
    e_it = _iv("e_it_kwh")
    ppue = ", ".join(f'(sum({e_it}) + sum({_iv(f"e_{r.value}_kwh")})) / sum({e_it}) AS "{r.value}"' for r in SUBSYSTEMS)
    panels = [
        _pue_stat(
            "PUE now",
            "Instant PUE: facility power over IT power now (Prometheus), coloured by the site's limits.",
            [_prom("A", _sel(m.PUE, window="instant"), "PUE", instant=True)],
        ).span(4),
        _pue_stat(
            "PUE over the range",
            "PUE of the selected time range: sum of facility energy over sum of IT energy of the 1-minute "
            "intervals (InfluxDB), with the weakest ISO/IEC 30134-2 measurement category of the range.",
            [_influx("A", _energy_pue("1m"), table_format=True), _influx("B", _category("1m"), table_format=True)],
        ).span(5),
        _pue_stat(
            "PUE month to date",
            "PUE since the start of this month: energy sums of the hourly intervals, with the category.",
            [_influx("A", _energy_pue("1h"), table_format=True), _influx("B", _category("1h"), table_format=True)],
        )
        .time_from("now/M")
        .span(5),
        _pue_stat(
            "PUE trailing 12 months",
            "PUE of the last 12 months: energy sums of the daily intervals, with the category.",
            [_influx("A", _energy_pue("1d"), table_format=True), _influx("B", _category("1d"), table_format=True)],
        )
        .time_from("now-12M")
        .span(5),
        _pue_stat(
            "PUE over the range (Prometheus)",
            "The same range's PUE from the energy counters: increase(facility) / increase(IT).",
            [_prom("A", _prom_range_pue(), "PUE", instant=True)],
        ).span(5),
        timeseries.Panel()
        .title("PUE trend: 15-minute and daily")
        .description(
            "PUE of each 15-minute and each daily interval as the pipeline computed it, the measurement "
            "category (right axis) and the site's limits."
        )
        .datasource(MIXED)
        .targets(
            [
                _influx(
                    "A",
                    f'SELECT {_iv("pue")} AS "15-minute PUE" FROM "{schema.INTERVAL}" '
                    f"WHERE {_where(schema.INTERVAL, '15m')}",
                ),
                _influx(
                    "B",
                    f'SELECT {_iv("pue")} AS "daily PUE" FROM "{schema.INTERVAL}" '
                    f"WHERE {_where(schema.INTERVAL, '1d')}",
                ),
                _influx(
                    "C",
                    f'SELECT {_iv("category")} AS "category" FROM "{schema.INTERVAL}" '
                    f"WHERE {_where(schema.INTERVAL, '15m')}",
                ),
                _prom("D", _sel(m.THRESHOLD), "{{level}} limit"),
            ]
        )
        .unit("none")
        .decimals(3)
        .override_by_name(
            "category",
            [
                *_category_override(),
                dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                dm.DynamicConfigValue(id_val="custom.drawStyle", value="bars"),
            ],
        )
        .height(9)
        .span(24),
        timeseries.Panel()
        .title("Facility vs IT power")
        .description("Active power of the facility input (E_DC) and of the IT load (Prometheus).")
        .datasource(PROMETHEUS)
        .targets([_prom("A", _sel(m.POWER, role=f"~{Role.FACILITY_INPUT}|{Role.IT}"), "{{role}}")])
        .unit("watt")
        .height(8)
        .span(12),
        bargauge.Panel()
        .title("Partial PUE per subsystem over the range")
        .description("(E_IT + E_subsystem) / E_IT of the selected range, from the 1-minute energy sums.")
        .datasource(INFLUX)
        .targets(
            [
                _influx(
                    "A",
                    f'SELECT {ppue} FROM "{schema.INTERVAL}" WHERE {_HAS_PUE} AND {_where(schema.INTERVAL, "1m")}',
                    table_format=True,
                )
            ]
        )
        .unit("none")
        .decimals(3)
        .min(1)
        .reduce_options(common_reduce("lastNotNull").values(False).fields("/.*/"))
        .height(8)
        .span(12),
        timeseries.Panel()
        .title("Free cooling: available and used")
        .description(
            "Per economiser: the share of the cooling load the weather allowed free cooling to carry, and "
            "utilisation (seconds used over seconds available)."
        )
        .datasource(INFLUX)
        .targets(
            [
                _influx(
                    "A",
                    f'SELECT mean({_fc("fraction")}) AS "available", mean({_fc("utilisation")}) AS "utilisation" '
                    f'FROM "{schema.FREE_COOLING}" WHERE {_where(schema.FREE_COOLING, "1m")} '
                    f"GROUP BY time($__interval), {_t(schema.FREE_COOLING, 'economiser')} fill(none)",
                )
            ]
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .height(8)
        .span(12),
        stat.Panel()
        .title("Free cooling now and its potential")
        .description(
            "Mode the plant runs now per economiser (Prometheus) and the chiller energy free cooling could "
            "have carried over the range (InfluxDB, kWh)."
        )
        .datasource(MIXED)
        .targets(
            [
                _prom(
                    "A",
                    f"{_sel(m.FREE_COOLING_MODE, kind='actual')} == 1",
                    "{{economiser}}: {{mode}}",
                    instant=True,
                ),
                _influx(
                    "B",
                    f'SELECT sum({_fc("avoidable_kwh")}) AS "avoidable chiller energy" FROM "{schema.FREE_COOLING}" '
                    f"WHERE {_where(schema.FREE_COOLING, '1m')}",
                    table_format=True,
                ),
            ]
        )
        .override_by_query("B", [dm.DynamicConfigValue(id_val="unit", value="kwatth")])
        .color_mode(common.BigValueColorMode.NONE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_reduce("lastNotNull"))
        .height(8)
        .span(12),
        timeseries.Panel()
        .title("Data completeness")
        .description(
            "Share of meter-minutes measured, estimated (bridged) and missing, and the share of the interval "
            "the meters cover: what the PUE above rests on."
        )
        .datasource(INFLUX)
        .targets(
            [
                _influx(
                    "A",
                    f'SELECT mean({_iv("measured")}) AS "measured", mean({_iv("estimated")}) AS "estimated", '
                    f'mean({_iv("missing")}) AS "missing", mean({_iv("coverage")}) AS "coverage" '
                    f'FROM "{schema.INTERVAL}" WHERE {_where(schema.INTERVAL, "1m")} '
                    f"GROUP BY time($__interval) fill(none)",
                )
            ]
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .height(8)
        .span(12),
        stat.Panel()
        .title("Expected-PUE model and drift")
        .description(
            "The expected-PUE model's state (none: no model yet, threshold rules only; training; ready; stale; "
            "failed), how far the PUE drifts above what the model expects for the weather and IT load (PUE "
            "points, 0 when not drifting) and the expected PUE of the last closed local day (Prometheus)."
        )
        .datasource(PROMETHEUS)
        .targets(
            [
                _prom("A", f"{_sel(m.MODEL_STATE)} == 1", "model {{state}}", instant=True),
                _prom("B", _sel(m.PUE_DRIFT), "drift above expected", instant=True),
                _prom("C", _sel(m.EXPECTED_PUE, window="1d"), "expected daily PUE", instant=True),
            ]
        )
        .override_by_query("A", [dm.DynamicConfigValue(id_val="unit", value="none")])
        .decimals(3)
        .color_mode(common.BigValueColorMode.NONE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_reduce("lastNotNull"))
        .height(8)
        .span(12),
        table.Panel()
        .title("Firing alerts")
        .description("Alerts of the rules `pue alerts rules` writes that fire now for this site (Prometheus ALERTS).")
        .datasource(PROMETHEUS)
        .targets([_prom("A", f'{m.ALERTS}{{alertstate="firing",site="$site"}}', instant=True, table_format=True)])
        .height(8)
        .span(12),
    ]
    return _dashboard(
        "pue-site-overview",
        "PUE: Site overview",
        "Is the site inside its PUE limits now and over the range, and why not.",
        panels,
    )


# ------------------------------------------------------------------ Energy breakdown
def energy_breakdown() -> dict[str, Any]:
    roles = [
        (_iv("e_facility_kwh"), "facility input (E_DC)"),
        (_iv("e_it_kwh"), "IT (E_IT)"),
        *((_iv(f"e_{r.value}_kwh"), r.value) for r in SUBSYSTEMS),
        (_iv("e_unattributed_kwh"), "unattributed"),
    ]
    sums = ", ".join(f'sum({f}) AS "{name}"' for f, name in roles)
    where = _where(schema.INTERVAL, "1m")
    panels = [
        bargauge.Panel()
        .title("Energy per role and subsystem over the range")
        .description("kWh of the selected range per ISO/IEC 30134-2 role, from the 1-minute intervals (InfluxDB).")
        .datasource(INFLUX)
        .targets([_influx("A", f'SELECT {sums} FROM "{schema.INTERVAL}" WHERE {where}', table_format=True)])
        .unit("kwatth")
        .decimals(1)
        .reduce_options(common_reduce("lastNotNull").fields("/.*/"))
        .height(8)
        .span(12),
        bargauge.Panel()
        .title("Top consumers")
        .description("The ten meters with the most energy over the range (Prometheus meter counters, kWh).")
        .datasource(PROMETHEUS)
        .targets(
            [
                _prom(
                    "A",
                    f"topk(10, increase({_sel(m.METER_ENERGY)}[$__range]) / {KWH_TO_J:g})",
                    "{{meter}} ({{role}})",
                    instant=True,
                )
            ]
        )
        .unit("kwatth")
        .decimals(1)
        .reduce_options(common_reduce("lastNotNull"))
        .height(8)
        .span(12),
        timeseries.Panel()
        .title("Energy per subsystem over time")
        .description("kWh per subsystem and unattributed, summed per display interval (stacked).")
        .datasource(INFLUX)
        .targets(
            [
                _influx(
                    "A",
                    f"SELECT {', '.join(f'sum({f}) AS {json.dumps(n)}' for f, n in roles[2:])} "
                    f'FROM "{schema.INTERVAL}" WHERE {where} GROUP BY time($__interval) fill(none)',
                )
            ]
        )
        .unit("kwatth")
        .height(8)
        .span(12),
        stat.Panel()
        .title("Unattributed energy")
        .description(
            "Facility energy no subsystem meter explains (E_DC - E_IT - subsystems), kWh and share of E_DC "
            "over the range."
        )
        .datasource(INFLUX)
        .targets(
            [
                _influx(
                    "A",
                    f'SELECT sum({_iv("e_unattributed_kwh")}) AS "unattributed" FROM "{schema.INTERVAL}" WHERE {where}',
                    table_format=True,
                ),
                _influx(
                    "B",
                    f'SELECT sum({_iv("e_unattributed_kwh")}) / sum({_iv("e_facility_kwh")}) AS "share of E_DC" '
                    f'FROM "{schema.INTERVAL}" WHERE {where}',
                    table_format=True,
                ),
            ]
        )
        .unit("kwatth")
        .override_by_query("B", [dm.DynamicConfigValue(id_val="unit", value="percentunit")])
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_reduce("lastNotNull"))
        .height(8)
        .span(12),
    ]
    return _dashboard(
        "pue-energy-breakdown",
        "PUE: Energy breakdown",
        "Where the site's energy went over the range: per role and subsystem, top consumers, unattributed.",
        panels,
    )


# ------------------------------------------------------------------ Collectors
_UP_MAPPINGS: list[dm.ValueMapping] = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="down", color=RED, index=0),
            "1": dm.ValueMappingResult(text="up", color=GREEN, index=1),
        }
    )
]


def _events_over_range() -> str:
    """Glitches, resets and rollovers per device over the range. A device's counter appears at
    its first event (value 1), so increase() alone would count a first event in the range as 0:
    a series that existed at the range's start counts its increase, one that appeared since
    counts its value (every event since it appeared)."""
    ev = _sel(m.PIPELINE_EVENTS, kind="~glitch|reset|rollover")
    return f"sum by (device, kind) ((increase({ev}[$__range]) and {ev} offset $__range) or {ev})"


def collectors() -> dict[str, Any]:
    panels = [
        stat.Panel()
        .title("Devices up")
        .description("1 when the device's last poll (or message) succeeded.")
        .datasource(PROMETHEUS)
        .targets([_prom("A", _sel(m.COLLECTOR_UP), "{{device}}", instant=True)])
        .mappings(_UP_MAPPINGS)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_reduce("lastNotNull"))
        .height(6)
        .span(12),
        bargauge.Panel()
        .title("Time since last success")
        .description("Seconds since each device last answered.")
        .datasource(PROMETHEUS)
        .targets([_prom("A", f"time() - {_sel(m.COLLECTOR_LAST_SUCCESS)}", "{{device}}", instant=True)])
        .unit("s")
        .reduce_options(common_reduce("lastNotNull"))
        .height(6)
        .span(12),
        timeseries.Panel()
        .title("Poll latency (p95)")
        .description("95th percentile of successful poll durations per device (Modbus, SNMP).")
        .datasource(PROMETHEUS)
        .targets(
            [
                _prom(
                    "A",
                    "histogram_quantile(0.95, sum by (device, le) "
                    f"(rate({_sel(m.COLLECTOR_LATENCY_BUCKET)}[$__rate_interval])))",
                    "{{device}}",
                )
            ]
        )
        .unit("s")
        .height(8)
        .span(12),
        timeseries.Panel()
        .title("Errors by kind")
        .description("Request errors per device and kind, and polls that failed after all retries, per interval.")
        .datasource(PROMETHEUS)
        .targets(
            [
                _prom(
                    "A",
                    f"sum by (device, kind) (increase({_sel(m.COLLECTOR_ERRORS)}[$__rate_interval]))",
                    "{{device}} {{kind}}",
                ),
                _prom(
                    "B",
                    f"sum by (device) (increase({_sel(m.COLLECTOR_FAILED_POLLS)}[$__rate_interval]))",
                    "{{device}} failed polls",
                ),
            ]
        )
        .height(8)
        .span(12),
        bargauge.Panel()
        .title("Glitches and resets over the range")
        .description("Readings the pipeline judged a glitch, a counter reset or a rollover, per device.")
        .datasource(PROMETHEUS)
        .targets([_prom("A", _events_over_range(), "{{device}} {{kind}}", instant=True)])
        .reduce_options(common_reduce("lastNotNull"))
        .height(8)
        .span(8),
        timeseries.Panel()
        .title("Spool backlog")
        .description("Points waiting in the on-disk spool for InfluxDB (grows while InfluxDB is unreachable).")
        .datasource(PROMETHEUS)
        .targets([_prom("A", _sel(m.SINK_SPOOL_POINTS), "{{sink}} backlog")])
        .height(8)
        .span(8),
        stat.Panel()
        .title("Spool evictions over the range")
        .description("Points dropped because the spool was full: data lost. Anything above 0 is red.")
        .datasource(PROMETHEUS)
        .targets([_prom("A", f"increase({_sel(m.SINK_EVICTED)}[$__range])", "{{sink}} evicted", instant=True)])
        .thresholds(
            db.ThresholdsConfig()
            .mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=None, color=GREEN), dm.Threshold(value=1, color=RED)])
        )
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_reduce("lastNotNull"))
        .height(8)
        .span(8),
    ]
    return _dashboard(
        "pue-collectors",
        "PUE: Collectors",
        "Per-device health of the collectors and of the InfluxDB spool.",
        panels,
    )


# ------------------------------------------------------------------ Fleet
_STATE_MAPPINGS: list[dm.ValueMapping] = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="within limits", color=GREEN, index=0),
            "1": dm.ValueMappingResult(text="above warning", color=ORANGE, index=1),
            "2": dm.ValueMappingResult(text="above critical", color=RED, index=2),
        }
    )
]


def fleet() -> dict[str, Any]:
    fac = f'{m.ENERGY}{{site=~"$site",role="{Role.FACILITY_INPUT}"}}'
    it = f'{m.ENERGY}{{site=~"$site",role="{Role.IT}"}}'
    pue = f"(increase({fac}[$__range]) / ignoring(role) increase({it}[$__range]))"
    warning = f'max by (site) ({m.THRESHOLD}{{site=~"$site",level="warning"}})'
    critical = f'max by (site) ({m.THRESHOLD}{{site=~"$site",level="critical"}})'
    state = f"({pue} > bool on(site) {warning}) + ({pue} > bool on(site) {critical})"
    panels = [
        table.Panel()
        .title("Sites ranked by PUE against their own limits")
        .description(
            "Each site's PUE over the range (increase of the energy counters), its own warning and critical "
            "limits, and where it stands: within limits, above warning, above critical. Worst first."
        )
        .datasource(PROMETHEUS)
        .targets(
            [
                _prom("A", f"sort_desc({pue})", "PUE", instant=True, table_format=True),
                _prom("B", warning, "warning", instant=True, table_format=True),
                _prom("C", critical, "critical", instant=True, table_format=True),
                _prom("D", state, "state", instant=True, table_format=True),
            ]
        )
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "Value #A": "PUE",
                        "Value #B": "warning limit",
                        "Value #C": "critical limit",
                        "Value #D": "state",
                    },
                },
            )
        )
        .with_transformation(
            dm.DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "PUE", "desc": True}]})
        )
        .decimals(3)
        .override_by_name(
            "state",
            [
                dm.DynamicConfigValue(id_val="mappings", value=_STATE_MAPPINGS),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ],
        )
        .height(10)
        .span(24),
        bargauge.Panel()
        .title("PUE per site from InfluxDB")
        .description("Each site's PUE over the range from the energy sums of its 1-minute intervals.")
        .datasource(INFLUX)
        .targets(
            [
                _influx(
                    "A",
                    f"{_energy_pue('1m', fleet=True)} GROUP BY {_t(schema.INTERVAL, 'site')}",
                    table_format=True,
                )
            ]
        )
        .unit("none")
        .decimals(3)
        .thresholds(_pue_thresholds())
        .reduce_options(common_reduce("lastNotNull"))
        .height(10)
        .span(24),
    ]
    return _dashboard(
        "pue-fleet",
        "PUE: Fleet",
        "Every site ranked by PUE against its own thresholds.",
        panels,
        fleet=True,
    )


BUILDERS = {
    "site-overview.json": site_overview,
    "energy-breakdown.json": energy_breakdown,
    "collectors.json": collectors,
    "fleet.json": fleet,
}


def build_all() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model (as Grafana stores it), in a stable order; each one
    passed :func:`validate` (a ValueError names the dashboard and the problem otherwise)."""
    out = {}
    for name, build in BUILDERS.items():
        model = build()
        problems = validate(model)
        if problems:
            raise ValueError(f"{name}: " + "; ".join(problems))
        out[name] = model
    return out


# ------------------------------------------------------------------ validation by the SDK's models
_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        from grafana_foundation_sdk.cog import plugins, runtime

        from pue_monitor.grafana import influxql

        plugins.register_default_plugins()
        runtime.register_dataquery_variant(influxql.variant_config())
        _registered = True


def _missing(ours: Any, theirs: Any, path: str) -> list[str]:
    """Where ``theirs`` (the SDK's decoding of ``ours``) lost or changed something we wrote."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return [f"{path}: not an object after decoding"]
        out = []
        for k, v in ours.items():
            out += [f"{path}.{k}: unknown to the model"] if k not in theirs else _missing(v, theirs[k], f"{path}.{k}")
        return out
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [f"{path}: list changed by decoding"]
        return [p for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) for p in _missing(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [f"{path}: {ours!r} decoded as {theirs!r}"]


def _panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in model.get("panels", []):
        out.append(p)
        out += p.get("panels", [])  # a collapsed row's panels
    return out


def validate(model: dict[str, Any]) -> list[str]:
    """The SDK's own model validation: the dashboard decodes with grafana-foundation-sdk's
    Grafana 11 models (``Dashboard.from_json``, panel options and field config by panel type)
    without losing or changing any key we wrote; each target decodes with its datasource's query
    model (Prometheus: the SDK's; InfluxDB: :class:`~pue_monitor.grafana.influxql.InfluxQLQuery`).
    Returns the problems (empty: valid)."""
    from grafana_foundation_sdk.cog import runtime
    from grafana_foundation_sdk.models.dashboard import Dashboard

    _register()
    problems = []
    try:
        decoded = json.loads(json.dumps(Dashboard.from_json(model), cls=JSONEncoder))
    except (KeyError, TypeError, ValueError) as exc:
        return [f"does not decode: {exc!r}"]
    strip = {**model, "panels": [{k: v for k, v in p.items() if k != "targets"} for p in model.get("panels", [])]}
    problems += _missing(strip, decoded, "$")
    for p in _panels(model):
        if p.get("type") == "row":
            continue
        for t in p.get("targets", []):
            where = f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}"
            kind = t.get("datasource", {}).get("type")
            if kind not in ("influxdb", "prometheus"):
                problems.append(f"{where}: datasource type {kind!r}")
                continue
            try:
                back = json.loads(json.dumps(runtime.dataquery_from_json(t, kind), cls=JSONEncoder))
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"{where}: does not decode: {exc}")
                continue
            problems += _missing(t, back, where)
    return problems


def render(model: dict[str, Any]) -> str:
    """The committed file's text: sorted keys, two-space indent, a final newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
