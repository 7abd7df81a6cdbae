"""Grafana panel queries, macros expanded as Grafana expands them, against real data.

Unit tests check the expansion with hand-computed strings. The acceptance test (issue 12)
runs the simulator through one simulated day into a real InfluxDB (the InfluxDB output) and a
real Prometheus (our endpoint scraped each minute, turned into TSDB blocks: see
test_prometheus_day.py), once per module, then runs every panel query: each returns data and
the PUE panels return the values the pipeline computed (the store's intervals).

Until the dashboards module (``pue_monitor.grafana.dashboards.build_all``) is merged, the
machinery is proven on a small dashboard of our own (``OWN``); the all-dashboards test is
expected to fail with ModuleNotFoundError until ``DASHBOARDS_MERGED`` is set to True, and fails
(strict XPASS) if the module exists while it is still False.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from types import SimpleNamespace
from typing import Any

import pytest
from promtsdb import PrometheusOnBlocks, create_blocks
from servers import InfluxDB1
from test_prometheus_day import DAY, FAC, IT, J_PER_KWH, M0, counted, run_day

from pue_monitor.grafana.queries import (
    PanelTarget,
    QueryContext,
    QueryError,
    QueryRunner,
    align,
    calculate_interval,
    expand_influxql,
    expand_promql,
    format_interval,
    go_duration,
    interpolate,
    round_interval,
    targets,
)
from pue_monitor.simulator import SimulatedDataCentre
from pue_monitor.simulator.servers import SITE_ID
from pue_monitor.sinks.sqlite import StoreReader

#: set True when the lead merges the dashboards (branch i12-dash): the test below then must pass
DASHBOARDS_MERGED = True

INFLUX = {"type": "influxdb", "uid": "pue-influxdb"}
PROM = {"type": "prometheus", "uid": "pue-prometheus"}
#: Grafana's "Yesterday" for the simulated day: 00:00:00.000 to 23:59:59.999, site time
DAY_END = M0 + DAY - 0.001
SCRAPE = "60s"  # the provisioned Prometheus data source's scrape interval (our scrapes: 1 a minute)


def influx_target(ref: str, query: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": INFLUX, "rawQuery": True, "query": query, "resultFormat": "time_series"}


def prom_target(ref: str, expr: str, **extra: Any) -> dict[str, Any]:
    return {"refId": ref, "datasource": PROM, "expr": expr, **extra}


#: a small dashboard in the contract's shape (a row nests panels), realistic PUE queries
OWN: dict[str, Any] = {
    "title": "Proof",
    "templating": {"list": [{"name": "site", "type": "query", "current": {"value": SITE_ID}}]},
    "panels": [
        {
            "type": "stat",
            "title": "PUE of the range (from energy)",
            "targets": [
                influx_target(
                    "A",
                    'SELECT sum("e_facility_kwh") / sum("e_it_kwh") AS "pue" FROM "pue_interval" '
                    'WHERE "site" =~ /^$site$/ AND "resolution" = \'1m\' AND $timeFilter',
                )
            ],
        },
        {
            "type": "row",
            "title": "Trends",
            "collapsed": True,
            "panels": [
                {
                    "type": "timeseries",
                    "title": "PUE, 15 minutes",
                    "targets": [
                        influx_target(
                            "A",
                            'SELECT "pue" FROM "pue_interval" WHERE "site" = \'${site}\' '
                            "AND \"resolution\" = '15m' AND $timeFilter",
                        ),
                        prom_target("B", 'pue_power_usage_effectiveness_ratio{site="$site",window="15m"}'),
                    ],
                },
                {
                    "type": "timeseries",
                    "title": "PUE per minute",
                    "targets": [
                        influx_target(
                            "A",
                            'SELECT mean("pue") AS "pue" FROM "pue_interval" WHERE "site" =~ /^$site$/ '
                            "AND \"resolution\" = '1m' AND $timeFilter GROUP BY time($__interval) fill(null)",
                        )
                    ],
                },
            ],
        },
        {
            "type": "stat",
            "title": "Daily PUE",
            "datasource": INFLUX,  # the panel's data source serves targets that name none
            "targets": [
                {
                    "refId": "A",
                    "rawQuery": True,
                    "resultFormat": "table",
                    "query": 'SELECT "pue" FROM "pue_interval" WHERE "site" = \'$site\' '
                    "AND \"resolution\" = '1d' AND $timeFilter",
                },
                {"refId": "H", "hide": True, "rawQuery": True, "query": "SELECT nothing FROM nowhere"},
            ],
        },
        {
            "type": "stat",
            "title": "PUE of the range (Prometheus counters)",
            "targets": [
                prom_target(
                    "A",
                    f'sum(increase({FAC[:-1]},site="$site"}}[$__range])) '
                    f'/ sum(increase({IT[:-1]},site="$site"}}[$__range]))',
                    instant=True,
                    range=False,
                )
            ],
        },
        {
            "type": "timeseries",
            "title": "Power per role",
            "targets": [
                prom_target(
                    "A", 'sum by (role) (rate(pue_energy_joules_total{site="$site"}[$__rate_interval]))', range=True
                )
            ],
        },
    ],
}


def day_context(**kw: Any) -> QueryContext:
    return QueryContext(start=M0, end=DAY_END, variables={"site": SITE_ID}, scrape_interval=SCRAPE, **kw)


# ----------------------------------------------------------------------------- unit tests


def one(query: str, ds: dict[str, Any] = INFLUX, panel: dict[str, Any] | None = None, **target: Any) -> PanelTarget:
    kind = ds["type"]
    tgt = {"refId": "A", "datasource": ds, **target}
    tgt["query" if kind == "influxdb" else "expr"] = query
    return PanelTarget("d.json", "P", "A", kind, query, tgt, panel or {})


def test_intervals_round_and_format_like_grafana():
    # gtime.RoundInterval: a day over 1500 points is 57.6 s -> 1m; a week 403.2 s -> 5m; a month 1728 s -> 30m
    assert [round_interval(ms) for ms in (57_600, 403_200, 1_728_000, 2_400, 90_000, 90_001)] == [
        60_000, 300_000, 1_800_000, 2_000, 60_000, 120_000,
    ]  # fmt: skip
    assert [format_interval(ms) for ms in (60_000, 90_000, 15_000, 86_400_000, 500, 0)] == [
        "1m", "1m", "15s", "1d", "500ms", "1ms",
    ]  # fmt: skip
    assert [go_duration(ms) for ms in (240_000, 3_600_000, 75_000, 1_500, 500, 15_000)] == [
        "4m0s", "1h0m0s", "1m15s", "1.5s", "500ms", "15s",
    ]  # fmt: skip
    # below the minimum interval the minimum wins, unrounded
    assert calculate_interval(86_400_000, 75_000, 1500) == 75_000
    assert calculate_interval(86_400_000, 1, 0) == 60_000  # no max data points: Grafana's 1500
    assert align(1_784_044_830_000, 60_000) == 1_784_044_800_000
    assert align(1_784_044_830_000, 86_400_000, utc_offset_s=8 * 3600) == 1_784_044_800_000  # local midnight


def test_influxql_macros_expand_as_grafana_does():
    q = (
        'SELECT mean("pue") FROM "pue_interval" WHERE "site" =~ /^$site$/ AND "site" = \'${site:raw}\' '
        "AND $timeFilter GROUP BY time($__interval) -- [[site]] $__interval_ms $interval $__range $__range_s"
    )
    expanded, interval = expand_influxql(one(q), QueryContext(M0, DAY_END, {"site": "dc.1"}))
    assert interval == 60_000
    assert expanded == (
        'SELECT mean("pue") FROM "pue_interval" WHERE "site" =~ /^dc\\.1$/ AND "site" = \'dc.1\' '
        "AND time >= 1784044800000ms and time <= 1784131199999ms GROUP BY time(1m) -- dc\\.1 60000 1m 86400s 86400"
    )
    # a panel's max data points and min interval change $__interval:
    # 1 day / 100 = 864 s -> 15m (up to 17.5 min); a min interval of 1h wins
    assert expand_influxql(one("$__interval", panel={"maxDataPoints": 100}), day_context())[0] == "15m"
    assert expand_influxql(one("$__interval", panel={"interval": "1h"}), day_context())[0] == "1h"
    # numbers are not regex-escaped
    assert expand_influxql(one("/^$n$/"), QueryContext(M0, DAY_END, {"n": "1.5"}))[0] == "/^1.5$/"


def test_promql_step_range_and_rate_interval_expand_as_grafana_does():
    ctx = day_context()
    expr = 'rate(x{site="$site"}[$__rate_interval]) + increase(x[$__range]) * $__interval_ms / $__range_s # $__interval'
    plan = expand_promql(one(expr, PROM), ctx)
    # step: 86,399,999 ms / 1500 = 57.6 s, below the 60 s scrape interval -> 60 s; rate: max(60+60, 4 x 60) s
    assert (plan.step_ms, plan.start_ms, plan.end_ms) == (60_000, 1_784_044_800_000, 1_784_131_140_000)
    assert plan.expr == ('rate(x{site="sim-taiyuan"}[4m0s]) + increase(x[86400s]) * 60000 / 86400 # 1m')
    # the default 15 s scrape interval, 6 h: 14.4 s < 15 s -> step 15 s, rate max(30 s, 60 s)
    six = QueryContext(M0, M0 + 6 * 3600, {"site": "a'b"})
    plan = expand_promql(one("x{s='$site'}[$__rate_interval]", PROM), six)
    assert (plan.step_ms, plan.expr) == (15_000, "x{s='a\\'b'}[1m0s]")
    # Min step $__rate_interval: the step is the rate interval; intervalFactor multiplies the step
    assert expand_promql(one("x", PROM, interval="$__rate_interval"), six).step_ms == 60_000
    assert expand_promql(one("x", PROM, intervalFactor=2), six).step_ms == 30_000
    # never finer than range / 11,000 rounded: 30 days over 100,000 points is 25.92 s -> 20 s, but
    # 2,592,000 s / 11,000 = 235.6 s -> 5m (up to 7.5 min) wins
    month = QueryContext(M0, M0 + 30 * DAY)
    assert expand_promql(one("x", PROM, {"maxDataPoints": 100_000}, interval="1s"), month).step_ms == 300_000


def test_variable_formats_and_escaping_per_datasource():
    values = {"site": "dc.1/a", "__range": "86400s"}
    text = "$site ${site} [[site]] ${site:raw} ${site:regex} [[site:raw]] $__range $sites"
    assert interpolate(text, values, "influxdb") == (
        "dc\\.1\\/a dc\\.1\\/a dc\\.1\\/a dc.1/a dc\\.1\\/a dc.1/a 86400s $sites"  # $sites is another variable
    )
    assert interpolate(text, values, "prometheus").split()[:4] == ["dc.1/a"] * 3 + ["dc.1/a"]
    with pytest.raises(ValueError, match=r"variable format 'csv' of \$site is not supported"):
        interpolate("${site:csv}", values, "none")


def test_unknown_variables_and_unsupported_targets_are_one_line_errors_naming_the_panel():
    with pytest.raises(QueryError, match=r"d.json: panel 'P' query A: unknown variable or macro at .\$room"):
        expand_influxql(one("SELECT * FROM x WHERE room = '$room' AND $timeFilter"), day_context())
    with pytest.raises(QueryError, match=r"panel 'P' query A: unknown variable or macro at '\$timeFilter"):
        expand_promql(one("x and $timeFilter", PROM), day_context())
    bad = {"panels": [{"title": "T", "targets": [{"refId": "A", "datasource": INFLUX, "query": "x"}]}]}
    with pytest.raises(QueryError, match="d: panel 'T' query A: InfluxQL target without a raw query"):
        targets(bad, "d")
    bad = {"panels": [{"title": "T", "targets": [{"refId": "Z", "datasource": {"type": "loki"}, "expr": "x"}]}]}
    with pytest.raises(QueryError, match="panel 'T' query Z: data source type 'loki'"):
        targets(bad, "d")


def test_targets_walk_nested_rows_skip_hidden_and_inherit_the_panel_datasource():
    found = [(t.panel, t.ref_id, t.datasource) for t in targets(OWN, "own.json")]
    assert found == [
        ("PUE of the range (from energy)", "A", "influxdb"),
        ("PUE, 15 minutes", "A", "influxdb"),
        ("PUE, 15 minutes", "B", "prometheus"),
        ("PUE per minute", "A", "influxdb"),
        ("Daily PUE", "A", "influxdb"),
        ("PUE of the range (Prometheus counters)", "A", "prometheus"),
        ("Power per role", "A", "prometheus"),
    ]


def test_a_refused_query_names_the_panel_and_the_server(influx1):
    runner = QueryRunner(influxdb=influx1.url, database="pue")
    refused = rf"panel 'P' query A: InfluxDB {influx1.url}/query: HTTP 400: error parsing query: found SELECTT"
    with pytest.raises(QueryError, match=refused):
        runner.run(one("SELECTT x FROM z WHERE $timeFilter"), day_context())
    with pytest.raises(QueryError, match=r"panel 'P' query A: a PromQL query but no Prometheus URL"):
        runner.run(one("up", PROM), day_context())


# ----------------------------------------------------------------------------- the simulated day


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The simulated day in a real InfluxDB and a real Prometheus, and the store's intervals."""
    tmp = tmp_path_factory.mktemp("grafana-day")
    (tmp / "influx").mkdir()
    influx = InfluxDB1(tmp / "influx")
    influx.start()
    prom = None
    try:
        influx.create_db("pue")
        world = SimulatedDataCentre(start=M0 - 3600, seed=23)
        db = tmp / "store.sqlite"

        def with_influx(cfg: dict[str, Any]) -> None:
            cfg["influxdb"] = {"url": influx.url, "bucket": "pue", "flush_interval": 0.2,
                               "spool": {"path": str(tmp / "spool.sqlite")}}  # fmt: skip

        t0 = time.monotonic()
        log = asyncio.run(run_day(world, db, configure=with_influx))
        om = tmp / "day.om.txt"
        log.write(om)
        create_blocks(om, tmp / "tsdb")
        print(f"simulated day into InfluxDB and Prometheus blocks: {time.monotonic() - t0:.1f} s")
        reader = StoreReader(db)
        rows = {res: reader.intervals(res) for res in ("1m", "15m", "1d")}
        reader.close()
        # everything the store holds reached InfluxDB (the sink drained its spool at close)
        for res, stored in rows.items():
            q = f"SELECT count(pue) FROM pue_interval WHERE resolution = '{res}'"
            got = influx.query(q)[0]["values"][0][1]
            assert got == sum(r["pue"] is not None for r in stored), (res, got)
        prom = PrometheusOnBlocks(tmp, tmp / "tsdb")
        prom.start()
        yield SimpleNamespace(influx=influx, prom=prom, rows=rows, runner=QueryRunner(
            influxdb=influx.url, database="pue", prometheus=prom.url))  # fmt: skip
    finally:
        if prom is not None:
            prom.stop()
        influx.stop()


def in_day(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if M0 <= r["start"] < M0 + DAY]


def by_panel(results: list[Any]) -> dict[tuple[str, str, str], Any]:
    return {(r.target.panel, r.target.ref_id, r.kind): r for r in results}


def test_own_dashboard_returns_the_pipelines_pue(day):
    results = by_panel(day.runner.run_all(OWN, day_context(), "own.json"))
    assert all(r.points() > 0 for r in results.values()), [k for k, r in results.items() if not r.points()]
    minutes, quarters, (daily,) = in_day(day.rows["1m"]), in_day(day.rows["15m"]), in_day(day.rows["1d"])
    assert len(minutes) == 1440 and len(quarters) == 96 and daily["coverage"] == 1.0

    # InfluxQL: the day's PUE from energy, the 15-minute and daily points, the minute means
    (s,) = results["PUE of the range (from energy)", "A", "influxql"].series
    assert s.rows[0][1] == pytest.approx(daily["pue"], rel=1e-12)
    (s,) = results["PUE, 15 minutes", "A", "influxql"].series
    assert s.rows == [(r["start"], r["pue"]) for r in quarters]  # exactly the pipeline's floats
    (s,) = results["Daily PUE", "A", "influxql"].series
    assert s.rows == [(M0, daily["pue"])]
    (s,) = results["PUE per minute", "A", "influxql"].series
    assert s.rows == [(r["start"], r["pue"]) for r in minutes]  # GROUP BY time(1m): one bucket per minute

    # Prometheus: the 15-minute gauge only ever shows a PUE the pipeline computed, all of the day's
    (s,) = results["PUE, 15 minutes", "B", "range"].series
    times = [t for t, _ in s.rows]
    # on the step grid to the aligned end; from the first scrape after the first 15 minutes closed
    # (the service started at 23:50: the 23:45 quarter closes at 00:01:07, is scraped at 00:01:20)
    assert times == [M0 + 120 + 60 * k for k in range(1438)]
    stored = {r["pue"] for r in day.rows["15m"]}
    assert {v for _, v in s.rows} <= stored
    assert {r["pue"] for r in quarters[:-1]} <= {v for _, v in s.rows}  # the last closes after midnight
    # increase() over $__range at the aligned end: the ratio of the energy the counters counted
    (s,) = results["PUE of the range (Prometheus counters)", "A", "instant"].series
    ((t_end, pue),) = s.rows
    assert t_end == M0 + DAY - 60
    fac = day.prom.samples(f"{FAC}[86400s]", t_end)
    it = day.prom.samples(f"{IT}[86400s]", t_end)
    cum_fac, cum_it = [0.0], [0.0]
    for r in day.rows["1m"]:
        cum_fac.append(cum_fac[-1] + r["e_facility_kwh"] * J_PER_KWH)
        cum_it.append(cum_it[-1] + r["e_it_kwh"] * J_PER_KWH)
    a, b = counted(cum_fac, fac[0][1]), counted(cum_fac, fac[-1][1])
    assert (a, b) == (counted(cum_it, it[0][1]), counted(cum_it, it[-1][1]))
    assert pue == pytest.approx((cum_fac[b] - cum_fac[a]) / (cum_it[b] - cum_it[a]), rel=1e-12)
    assert pue == pytest.approx(daily["pue"], rel=1e-3)
    # rate() over $__rate_interval (4m0s): the day's mean facility power is its energy over the day
    power = {s.labels["role"]: s.values() for s in results["Power per role", "A", "range"].series}
    assert {"facility_input", "it"} <= power.keys()
    assert statistics.fmean(power["facility_input"]) == pytest.approx(
        daily["e_facility_kwh"] * J_PER_KWH / DAY, rel=0.01
    )


#: a plain selection of the pue field (no function around it, no GROUP BY time)
_RAW_PUE = re.compile(r'(?is)\s*SELECT\s+"?pue"?\s*(,[^()]*)?\sFROM\s(?!.*GROUP\s+BY\s+time)')


def _check_pue(result: Any, rows: dict[str, list[dict[str, Any]]]) -> int:
    """Values of a PUE series that must be the pipeline's: raw ``pue`` points of pue_interval
    (per resolution and start) and the PUE gauge per window. Returns how many were checked."""
    checked = 0
    if result.kind == "influxql" and "pue_interval" in result.query:
        res = next((r for r in ("15m", "1m", "1h", "1d") if f"'{r}'" in result.query), None)
        if res is None or res not in rows or not _RAW_PUE.match(result.query):
            return 0  # an aggregate: its numbers are the dashboard's own test's business
        by_start = {r["start"]: r["pue"] for r in rows[res]}
        for s in result.series:
            if "pue" in s.columns:
                for t, v in zip(s.values("time"), s.values("pue"), strict=True):
                    if v is not None and t in by_start:
                        assert v == by_start[t], (result.target.where, t, v, by_start[t])
                        checked += 1
    for s in result.series if result.kind != "influxql" else []:
        window = s.labels.get("window")
        if s.name == "pue_power_usage_effectiveness_ratio" and window in rows:
            stored = {r["pue"] for r in rows[window]}
            assert set(s.values()) <= stored, result.target.where
            checked += len(s.rows)
    return checked


@pytest.mark.xfail(
    not DASHBOARDS_MERGED,
    raises=ModuleNotFoundError,
    strict=True,
    reason="pue_monitor.grafana.dashboards comes with branch i12-dash; set DASHBOARDS_MERGED = True when merged",
)
def test_every_panel_query_of_every_dashboard_returns_data_and_the_pipelines_pue(day):
    from pue_monitor.grafana.dashboards import build_all  # at test time: missing after the merge = a failure

    dashboards = build_all()
    assert dashboards, "build_all() returned no dashboard"
    checked, empty, total = 0, [], 0
    for name, model in sorted(dashboards.items()):
        variables = {"site": SITE_ID}
        for var in (model.get("templating") or {}).get("list", []):
            assert var.get("name") == "site" or var.get("current"), f"{name}: variable {var.get('name')} unset"
            if var.get("name") != "site":
                value = var["current"].get("value")
                variables[var["name"]] = value[0] if isinstance(value, list) else value
        ctx = QueryContext(start=M0, end=DAY_END, variables=variables, scrape_interval=SCRAPE)
        for result in day.runner.run_all(model, ctx, name):
            total += 1
            if result.points() == 0:
                empty.append(f"{result.target.where} ({result.kind}): {result.query}")
            checked += _check_pue(result, {"1m": day.rows["1m"], "15m": day.rows["15m"], "1d": day.rows["1d"]})
    # Panels whose data needs a condition the simulated day does not have yet (issue 12 stays open
    # until the day has them): no economiser configured, no glitch/reset, no rule file loaded.
    # Listed exactly: a new panel without data, or one of these starting to return data, fails.
    conditional = {
        ("collectors.json", "Glitches and resets over the range"): "the simulated day has no glitch or reset",
        ("site-overview.json", "Free cooling: available and used"): "the test site has no cooling: section",
        ("site-overview.json", "Free cooling now and its potential"): "the test site has no cooling: section",
        ("site-overview.json", "Firing alerts"): "Prometheus has no rule file loaded, so no ALERTS series",
    }
    missing = {(w.split(": panel ")[0], w.split("'")[1]) for w in empty}
    assert missing == set(conditional), "queries without data:\n" + "\n".join(empty)
    total -= len(empty)
    assert total > 30, "the dashboards' queries did not run"
    print(f"{total} panel queries returned data; {checked} PUE values equal the pipeline's")
    _RESULTS["checked"] = checked


_RESULTS: dict[str, int] = {}


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 open: the dashboards' PUE panels are energy-sum aggregates, which _check_pue does not "
    "compare with the pipeline yet (it compares raw pue selections and the PUE gauge)",
)
def test_the_dashboards_pue_panels_equal_the_pipelines_pue():
    assert _RESULTS.get("checked", 0) > 0
