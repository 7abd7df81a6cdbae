"""Grafana panel queries, macros expanded as Grafana expands them, against real data.

Unit tests check the expansion with hand-computed strings. The acceptance test (issue 12)
runs the simulator through one simulated day into a real InfluxDB (the InfluxDB output) and a
real Prometheus (our endpoint scraped each minute, turned into TSDB blocks: see
test_prometheus_day.py), once per module, then runs every panel query of every dashboard
(``pue_monitor.grafana.dashboards.build_all``) and of a small dashboard of the test's own
(``OWN``): each returns data, and every PUE panel returns the values the pipeline computed
(the store's intervals). The day has what every panel needs: the site's free-cooling model
(weather station and plant controller on Modbus), a glitch and a reset, limits its PUE
crosses, and the rule file ``pue alerts rules`` writes evaluated over the day (``ALERTS``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from promtsdb import (
    PrometheusOnBlocks,
    ScrapeLog,
    backfill_recording_rules,
    create_blocks,
    replay_alerting_rules,
    write_exported,
)
from servers import InfluxDB1, VictoriaMetrics
from test_prometheus_day import DAY, FAC, IT, J_PER_KWH, M0, SCRAPE_PHASE, TAIL, WARMUP, counted, run_day

from pue_monitor.alerts.rules import PUE_15M, rule_file
from pue_monitor.config.models import InfluxConfig
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
    panel_context,
    round_interval,
    targets,
)
from pue_monitor.simulator import SimulatedDataCentre
from pue_monitor.simulator.servers import SITE_ID
from pue_monitor.sinks.influx import InfluxSink
from pue_monitor.sinks.sqlite import StoreReader

INFLUX = {"type": "influxdb", "uid": "pue-influxdb"}
PROM = {"type": "prometheus", "uid": "pue-prometheus"}
#: Grafana's "Yesterday" for the simulated day: 00:00:00.000 to 23:59:59.999, site time
DAY_END = M0 + DAY - 0.001
UTC_OFFSET = 8 * 3600  # the site's (Asia/Shanghai) and the browser's time zone
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


def test_a_panels_relative_time_replaces_the_range_and_ends_now():
    import datetime as dt

    tz = dt.timezone(dt.timedelta(seconds=UTC_OFFSET))
    ctx = QueryContext(M0, DAY_END, utc_offset_s=UTC_OFFSET)  # now: the range's end, 2026-07-15 23:59:59.999

    def span(time_from: str, **kw: Any) -> tuple[str, str]:
        c = panel_context(one("x", panel={"timeFrom": time_from}), dataclasses.replace(ctx, **kw))
        return tuple(dt.datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds") for t in (c.start, c.end))

    end = "2026-07-15T23:59:59.999+08:00"
    assert span("now/M") == ("2026-07-01T00:00:00.000+08:00", end)  # "This month so far"
    assert span("now-12M") == ("2025-07-15T23:59:59.999+08:00", end)  # calendar months
    assert span("now-24h") == ("2026-07-14T23:59:59.999+08:00", end)
    assert span("now/y", now=M0 + 12 * 3600) == ("2026-01-01T00:00:00.000+08:00", "2026-07-15T12:00:00.000+08:00")
    # the month's end clamps the day (moment.js): 31 March minus one month is 28 February
    mar31 = dt.datetime(2026, 3, 31, 12, tzinfo=tz).timestamp()
    assert span("now-1M", now=mar31)[0] == "2026-02-28T12:00:00.000+08:00"
    no_override = one("x")
    assert panel_context(no_override, ctx) is ctx
    for unsupported in ("now-1M/M", "now/w"):  # a week's start depends on the locale
        with pytest.raises(QueryError, match=rf"panel 'P' query A: relative time '{unsupported}' is not supported"):
            panel_context(one("x", panel={"timeFrom": unsupported}), ctx)


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


#: the test site's own PUE limits: its measured 15-minute PUE (1.62 at night, up to 1.66 in the
#: afternoon) crosses the warning limit in the morning and stays above it to midnight, the
#: critical one in the afternoon only; the shipped rule file's PueHigh fires for both
WARNING, CRITICAL = 1.64, 1.65
#: injected meter faults: one reading of the CRAH meter 50 MWh too high (a glitch), and the
#: counter of PDU 3 restarting from 0 (a reset), each at a poll of the day
GLITCH = ("crah", M0 + 6 * 3600 + 5 * 60)
RESET = ("pdu-3", M0 + 14 * 3600 + 7 * 60)


def inject_faults(world: SimulatedDataCentre) -> None:
    meter, t = GLITCH
    after = world.counter_at(meter, t + 60)  # what the next poll shows without the glitch
    world.preset_counter(meter, world.counter_at(meter, t) + 50_000.0, at=t)
    world.preset_counter(meter, after, at=t + 60)
    meter, t = RESET
    world.reset_counter(meter, at=t)


def restart_with_blocks(prom: PrometheusOnBlocks, blocks: Path, data_dir: Path) -> None:
    """Prometheus stopped, the new blocks moved into its data directory, started again."""
    prom.stop()
    for block in blocks.iterdir():
        block.rename(data_dir / block.name)
    prom.start()


async def drain(cfg: InfluxConfig) -> None:
    """What the sink left in its spool at close (it gives the sender 5 s; the day runs faster
    than the wall clock) sent as the next start sends it."""
    sink = InfluxSink(cfg)
    await sink.start()
    try:
        deadline = time.monotonic() + 120
        while sink.spool.status().queued_batches:
            assert time.monotonic() < deadline, "the InfluxDB spool did not drain in 120 s"
            await asyncio.sleep(0.05)
    finally:
        await sink.close()


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The simulated day in a real InfluxDB and a real Prometheus, and the store's intervals.

    The site has its free-cooling model (the weather station and plant controller on Modbus:
    ``cooling:`` rows every minute), limits its PUE crosses, a glitch and a reset. After the
    day, the rule file ``pue alerts rules`` writes for the site is evaluated over it:
    ``promtool`` backfills the recording rule, ``vmalert`` replays the alerting rules against
    the Prometheus and its ``ALERTS`` series join the blocks."""
    tmp = tmp_path_factory.mktemp("grafana-day")
    (tmp / "influx").mkdir()
    influx = InfluxDB1(tmp / "influx")
    influx.start()
    prom = vm = None
    try:
        influx.create_db("pue")
        world = SimulatedDataCentre(start=M0 - 3600, seed=23)
        inject_faults(world)
        db = tmp / "store.sqlite"

        def configure(cfg: dict[str, Any]) -> None:
            cfg["influxdb"] = {"url": influx.url, "bucket": "pue", "flush_interval": 0.2,
                               "spool": {"path": str(tmp / "spool.sqlite")}}  # fmt: skip
            cfg["thresholds"] = {"warning": WARNING, "critical": CRITICAL}
            # the store beside InfluxDB, and with it the expected-PUE model (no model within a day: state none)
            cfg["store"] = {"enabled": True, "path": str(db)}

        t0 = time.monotonic()
        log = asyncio.run(run_day(world, db, configure=configure, plant=True))
        asyncio.run(drain(InfluxConfig(url=influx.url, bucket="pue", spool={"path": str(tmp / "spool.sqlite")})))
        om = tmp / "day.om.txt"
        log.write(om)
        create_blocks(om, tmp / "tsdb")
        t_day = time.monotonic() - t0
        reader = StoreReader(db)
        rows = {res: reader.intervals(res) for res in ("1m", "15m", "1h", "1d")}
        cooling = reader.free_cooling("1m")
        reader.close()
        cum_fac, cum_it = [0.0], [0.0]
        for r in rows["1m"]:
            cum_fac.append(cum_fac[-1] + r["e_facility_kwh"] * J_PER_KWH)
            cum_it.append(cum_it[-1] + r["e_it_kwh"] * J_PER_KWH)
        # everything the store holds reached InfluxDB (the spool drained after the day)
        for res, stored in rows.items():
            q = f"SELECT count(pue) FROM pue_interval WHERE resolution = '{res}'"
            got = influx.query(q)[0]["values"][0][1]
            assert got == sum(r["pue"] is not None for r in stored), (res, got)
        prom = PrometheusOnBlocks(tmp, tmp / "tsdb")
        prom.start()

        # the shipped rules over the day: recording rule by Prometheus (promtool), alerts by vmalert
        t0 = time.monotonic()
        rules = tmp / "rules.yml"
        rules.write_text(rule_file(site=SITE_ID, warning=WARNING, critical=CRITICAL))
        span = (M0 - WARMUP + 60, M0 + DAY + TAIL)
        backfill_recording_rules(prom, rules, *span, tmp / "recorded")
        restart_with_blocks(prom, tmp / "recorded", tmp / "tsdb")
        (tmp / "vm").mkdir()
        vm = VictoriaMetrics(tmp / "vm")
        vm.start()
        replay_alerting_rules(prom.url, vm, rules, *span, tmp / "vmalert.log")
        alerts = vm.export('{__name__="ALERTS"}')
        assert alerts, f"vmalert wrote no ALERTS (log: {tmp / 'vmalert.log'})"
        write_exported(tmp / "alerts.om.txt", alerts)
        create_blocks(tmp / "alerts.om.txt", tmp / "alerts")
        restart_with_blocks(prom, tmp / "alerts", tmp / "tsdb")
        print(f"simulated day into InfluxDB and Prometheus blocks: {t_day:.1f} s; rules over it: "
              f"{time.monotonic() - t0:.1f} s")  # fmt: skip
        yield SimpleNamespace(influx=influx, prom=prom, rows=rows, cooling=cooling, alerts=alerts, cum_fac=cum_fac,
                              cum_it=cum_it,
                              runner=QueryRunner(influxdb=influx.url, database="pue", prometheus=prom.url))  # fmt: skip
    finally:
        if vm is not None:
            vm.stop()
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


#: a plain selection of the pue field, maybe aliased (no function around it, no GROUP BY time)
_RAW_PUE = re.compile(
    r'(?is)\s*SELECT\s+"?pue"?(?:\s+AS\s+"(?P<alias>[^"]+)")?\s*(,[^()]*)?\sFROM\s(?!.*GROUP\s+BY\s+time)'
)
#: energy-sum ratios of pue_interval: a PUE, sum(E_DC) / sum(E_IT), and a partial PUE per subsystem
_PUE_SUMS = re.compile(r'sum\("e_facility_kwh"\) / sum\("e_it_kwh"\) AS "(?P<alias>[^"]+)"')
_PPUE_SUMS = re.compile(
    r'\(sum\("e_it_kwh"\) \+ sum\("(?P<sub>e_\w+_kwh)"\)\) / sum\("e_it_kwh"\) AS "(?P<alias>[^"]+)"'
)
_TIME_FILTER = re.compile(r"time >= (\d+)ms and time <= (\d+)ms")
_RESOLUTION = re.compile(r""""resolution" = '(\w+)'""")
#: the PromQL PUE of a range: increase of the facility counter over increase of the IT counter
_PROM_PUE = re.compile(
    r'^(?:sort_desc\()?\(?increase\(pue_energy_joules_total\{[^}]*role="facility_input"[^}]*\}\[(\d+)s\]\) '
    r'/ ignoring\(role\) increase\(pue_energy_joules_total\{[^}]*role="it"[^}]*\}\[\1s\]\)\)?\)?$'
)
#: InfluxDB sums a column's floats in its own order, math.fsum rounds the exact sum once: for
#: n positive terms the two differ by at most (n - 1) x 2^-53 relative (1.7e-13 for the 1440
#: minutes of a day, 8.2e-14 for a month's 744 hours), so a ratio of two sums by under 4e-13
SUM_ORDER_REL = 1e-12


def _selected(query: str, rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The store's intervals an expanded InfluxQL query over pue_interval selects: its
    resolution, its time filter (both ends included) and, with ``"pue" > 0``, those with a PUE."""
    res = _RESOLUTION.search(query)
    bounds = _TIME_FILTER.search(query)
    assert res is not None and bounds is not None, query
    lo, hi = (int(b) for b in bounds.groups())
    out = [r for r in rows[res.group(1)] if lo <= r["start"] * 1000 <= hi]
    if '"pue" > 0' in query:
        out = [r for r in out if r["pue"] is not None and r["pue"] > 0]
    assert out, f"the store has no interval the query selects: {query}"
    return out


def _energy_pue(rows: list[dict[str, Any]], sub: str | None = None) -> float | None:
    """sum(E_DC) / sum(E_IT), or (sum(E_IT) + sum(E_sub)) / sum(E_IT); a sum skips the rows
    without the field, as InfluxQL's sum() does, and is None when none has it (no such meter)."""
    e_it = math.fsum(r["e_it_kwh"] for r in rows)
    if sub is None:
        return math.fsum(r["e_facility_kwh"] for r in rows) / e_it
    e_sub = [r[sub] for r in rows if r[sub] is not None]
    return (e_it + math.fsum(e_sub)) / e_it if e_sub else None


def _counter_pue(day: Any, range_s: int, t_end: float) -> float:
    """The PUE increase() gives at ``t_end`` over ``range_s``: the ratio of the store's energy
    of the minutes the counters had counted between the range's first and last scrape (both
    counters scraped together, so increase()'s extrapolation cancels: test_prometheus_day)."""
    fac = day.prom.samples(f"{FAC}[{range_s}s]", t_end)
    it = day.prom.samples(f"{IT}[{range_s}s]", t_end)
    a, b = counted(day.cum_fac, fac[0][1]), counted(day.cum_fac, fac[-1][1])
    assert (a, b) == (counted(day.cum_it, it[0][1]), counted(day.cum_it, it[-1][1]))
    return (day.cum_fac[b] - day.cum_fac[a]) / (day.cum_it[b] - day.cum_it[a])


def _check_pue(result: Any, day: Any) -> int:
    """Values of a PUE series that must be the pipeline's. Returns how many were checked.

    - InfluxQL, a raw ``pue`` of pue_interval: the store's interval of that resolution and start,
      to the last bit;
    - InfluxQL energy sums, sum(e_facility_kwh) / sum(e_it_kwh) (and a partial PUE, (sum(e_it_kwh)
      + sum(e_<subsystem>_kwh)) / sum(e_it_kwh)): math.fsum over the store's intervals the query
      selects, within :data:`SUM_ORDER_REL`;
    - PromQL increase(facility) / increase(it) over the range: the energy ratio of the minutes
      the counters counted (:func:`_counter_pue`), within 1e-12 (the extrapolation factor's rounding);
    - the PUE gauge of a window: only ever a PUE the pipeline computed for that window; the
      instant PUE: facility over IT power at the same scrape.
    """
    rows, checked, query = day.rows, 0, result.query
    if result.kind == "influxql" and '"pue_interval"' in query:
        raw = _RAW_PUE.match(query)
        if raw is not None:
            res = _RESOLUTION.search(query)
            assert res is not None, query
            by_start = {r["start"]: r["pue"] for r in rows[res.group(1)]}
            column = raw.group("alias") or "pue"
            for s in result.series:
                for t, v in zip(s.values("time"), s.values(column), strict=True):
                    if v is not None:
                        assert v == by_start[t], (result.target.where, t, v, by_start.get(t))
                        checked += 1
        sums = [(m.group("alias"), None) for m in _PUE_SUMS.finditer(query)]
        sums += [(m.group("alias"), m.group("sub")) for m in _PPUE_SUMS.finditer(query)]
        if sums:
            assert "GROUP BY time" not in query, query
            selected = _selected(query, rows)
            for s in result.series:
                assert s.labels.get("site", SITE_ID) == SITE_ID
                for alias, sub in sums:
                    (v,) = s.values(alias)
                    want = _energy_pue(selected, sub)
                    if want is None:  # a subsystem without a meter: no value
                        assert v is None, (result.target.where, alias, v)
                        continue
                    assert v == pytest.approx(want, rel=SUM_ORDER_REL), (result.target.where, alias, v, want)
                    checked += 1
    elif (ratio := _PROM_PUE.match(query)) is not None:
        assert result.kind == "instant", result.target.where
        for s in result.series:
            ((t, v),) = s.rows
            assert v == pytest.approx(_counter_pue(day, int(ratio.group(1)), t), rel=1e-12), result.target.where
            checked += 1
    for s in result.series if result.kind != "influxql" else []:
        window = s.labels.get("window")
        if s.name != "pue_power_usage_effectiveness_ratio":
            continue
        if window in rows:
            assert set(s.values()) <= {r["pue"] for r in rows[window]}, result.target.where
            checked += len(s.rows)
        elif window == "instant":
            for t, v in s.rows:
                power = 'pue_power_watts{role="facility_input"} / ignoring(role) pue_power_watts{role="it"}'
                assert v == pytest.approx(day.prom.value(power, t), rel=1e-12), (result.target.where, t)
                checked += 1
    return checked


#: every panel showing a PUE (or a partial PUE) of the site: each must have values checked
PUE_PANELS = {
    ("site-overview.json", "PUE now"),
    ("site-overview.json", "PUE over the range"),
    ("site-overview.json", "PUE month to date"),
    ("site-overview.json", "PUE trailing 12 months"),
    ("site-overview.json", "PUE over the range (Prometheus)"),
    ("site-overview.json", "PUE trend: 15-minute and daily"),
    ("site-overview.json", "Partial PUE per subsystem over the range"),
    ("fleet.json", "Sites ranked by PUE against their own limits"),
    ("fleet.json", "PUE per site from InfluxDB"),
}
#: queries the simulated day cannot give data: the model's drift and expected PUE need a trained
#: model (14 days of history); test_the_drift_panel_reads_a_trained_models_metrics runs them
NEEDS_A_TRAINED_MODEL = {
    ("site-overview.json", "Expected-PUE model and drift", "B"),
    ("site-overview.json", "Expected-PUE model and drift", "C"),
}


def dashboard_context(model: dict[str, Any]) -> QueryContext:
    variables = {"site": SITE_ID}
    for var in (model.get("templating") or {}).get("list", []):
        assert var.get("name") == "site" or var.get("current"), f"variable {var.get('name')} unset"
        if var.get("name") != "site":
            value = var["current"].get("value")
            variables[var["name"]] = value[0] if isinstance(value, list) else value
    return QueryContext(start=M0, end=DAY_END, variables=variables, scrape_interval=SCRAPE, utc_offset_s=UTC_OFFSET)


@pytest.fixture(scope="module")
def panels(day: Any) -> dict[tuple[str, str, str], Any]:
    """Every panel query of every dashboard run on the day: (file, panel, refId) -> result."""
    from pue_monitor.grafana.dashboards import build_all

    dashboards = build_all()
    assert dashboards, "build_all() returned no dashboard"
    results = {}
    for name, model in sorted(dashboards.items()):
        for result in day.runner.run_all(model, dashboard_context(model), name):
            results[(name, result.target.panel, result.target.ref_id)] = result
    assert len(results) > 30, "the dashboards' queries did not run"
    return results


def test_every_panel_query_of_every_dashboard_returns_data(day, panels):
    results = panels
    empty = {k for k, r in results.items() if r.points() == 0}
    assert empty == NEEDS_A_TRAINED_MODEL, "queries without data: " + "; ".join(
        f"{results[k].target.where}: {results[k].query}" for k in sorted(empty - NEEDS_A_TRAINED_MODEL)
    )
    print(f"{len(results) - len(empty)} of {len(results)} panel queries returned data")

    # the panels whose data needed the day's conditions show exactly those
    site = "site-overview.json"
    (fc,) = [r for k, r in results.items() if k[:2] == (site, "Free cooling: available and used")]
    econ = {s.labels["economiser"] for s in fc.series}
    assert econ == {r["economiser"] for r in day.cooling} == {"water-side", "dry-cooler"}
    for s in fc.series:
        minutes = {r["start"]: r for r in day.cooling if r["economiser"] == s.labels["economiser"]}
        for t, available in zip(s.values("time"), s.values("available"), strict=True):
            assert available == minutes[t]["fraction"]  # GROUP BY time(1m): one minute per bucket
    (avoidable,) = results[site, "Free cooling now and its potential", "B"].series
    in_range = [r["avoidable_kwh"] for r in day.cooling if M0 <= r["start"] < M0 + DAY]
    in_range = [v for v in in_range if v is not None]
    assert avoidable.rows[0][1] == pytest.approx(math.fsum(in_range), rel=SUM_ORDER_REL)
    events = results["collectors.json", "Glitches and resets over the range", "A"].series
    assert {(s.labels["device"], s.labels["kind"]): s.rows[0][1] for s in events} == {
        (GLITCH[0], "glitch"): 1.0,
        (RESET[0], "reset"): 1.0,
    }
    (state,) = results[site, "Expected-PUE model and drift", "A"].series
    assert state.labels["state"] == "none"  # on, no model yet: threshold rules only
    # the rules fire as Prometheus would: an alert fires once its condition held at every
    # evaluation of the last `for:` (10 minutes); the recorded 15-minute PUE decides
    firing = {s.labels["severity"] for s in results[site, "Firing alerts", "A"].series}
    t_end = results[site, "Firing alerts", "A"].series[0].rows[0][0]
    recorded = day.prom.samples(f'{PUE_15M}{{site="{SITE_ID}"}}[11m]', t_end)
    assert len(recorded) == 11
    held = {sev for sev, limit in (("warning", WARNING), ("critical", CRITICAL)) if all(v > limit for _, v in recorded)}
    assert firing == held and "warning" in firing
    assert all(s.labels["alertname"] == "PueHigh" for s in results[site, "Firing alerts", "A"].series)


def test_the_dashboards_pue_panels_equal_the_pipelines_pue(day, panels):
    checked: dict[tuple[str, str], int] = {}
    for (name, panel, _), result in panels.items():
        n = _check_pue(result, day)
        if n:
            checked[name, panel] = checked.get((name, panel), 0) + n
    assert set(checked) == PUE_PANELS, (sorted(PUE_PANELS - set(checked)), sorted(set(checked) - PUE_PANELS))
    assert all(n > 0 for n in checked.values())
    print(f"{sum(checked.values())} PUE values of {len(checked)} panels equal the pipeline's")


def test_the_drift_panel_reads_a_trained_models_metrics(tmp_path):
    """The drift and expected-PUE queries, which the simulated day cannot feed (a model needs 14
    days of history): a real ModelWatcher trains on 15 days in a real store (simulated intervals
    and weather, test_model_watch.fill_store) and scores the last day hourly; its Prometheus
    collector is scraped every minute of the last 3 hours into blocks served by a real
    Prometheus, and the panel's queries, expanded as Grafana would, return what it exports."""
    from test_model_watch import T0, fill_store, watcher_for

    from pue_monitor.grafana.dashboards import build_all

    fill_store(tmp_path, 15)
    now = [T0 + 14 * DAY + 600.0]
    watcher = watcher_for(tmp_path, now)
    asyncio.run(watcher.update(now[0]))  # the first model, on the first 14 days
    assert watcher.status().state == "ready"
    log, collector = ScrapeLog(), watcher.collector(SITE_ID)
    end = T0 + 15 * DAY
    for minute in range(180):
        now[0] = end - 3 * 3600 + 60 * minute + SCRAPE_PHASE
        if minute % 60 == 0:
            asyncio.run(watcher.update(now[0]))  # scores the hours closed since
        log.add(collector.collect(), now[0])
    st = watcher.status()
    assert st.drift_pue is not None and st.expected_pue.get("1d") is not None
    log.write(tmp_path / "model.om.txt")
    create_blocks(tmp_path / "model.om.txt", tmp_path / "tsdb")
    prom = PrometheusOnBlocks(tmp_path, tmp_path / "tsdb")
    prom.start()
    try:
        runner = QueryRunner(prometheus=prom.url)
        ctx = QueryContext(start=end - 3 * 3600, end=end, variables={"site": SITE_ID}, scrape_interval=SCRAPE)
        panel = [t for t in targets(build_all()["site-overview.json"]) if t.panel == "Expected-PUE model and drift"]
        got = {t.ref_id: runner.run(t, ctx) for t in panel}
    finally:
        prom.stop()
    assert sorted(got) == ["A", "B", "C"]
    ((state,),) = [r.series for r in got["A"]]
    assert (state.labels["state"], state.rows[0][1]) == ("ready", 1.0)
    ((drift,),) = [r.series for r in got["B"]]
    assert drift.rows[0][1] == st.drift_pue
    ((expected,),) = [r.series for r in got["C"]]
    assert (expected.labels["window"], expected.rows[0][1]) == ("1d", st.expected_pue["1d"])
