"""Every panel query of a dashboard, with Grafana's macros expanded as Grafana expands them,
run against a real InfluxDB (InfluxQL, ``/query``) and a real Prometheus (``query_range`` /
``query``): the proof that a dashboard reads data pue-monitor actually writes.

The dashboard is the JSON model Grafana stores (``panels[]``, rows nesting ``panels[]``,
``targets[]`` with a ``datasource`` of type ``influxdb`` or ``prometheus``). Expansion follows
Grafana 11's own code and documents, rule by rule (times are integer milliseconds, as there):

- ``$timeFilter`` (InfluxQL): ``time >= <from>ms and time <= <to>ms``, both ends included
  (Grafana's InfluxDB backend, ``renderTimeFilter``; "InfluxDB query editor: $timeFilter",
  https://grafana.com/docs/grafana/latest/datasources/influxdb/query-editor/).
- ``$__interval`` / ``$interval``: range / max data points, rounded down to a "round" duration
  by ``gtime.RoundInterval`` (grafana-plugin-sdk-go; 57.6 s -> 1m, 2 min -> 2m, ...), or the
  minimum interval when the raw quotient is below it (``intervalv2.Calculate``), formatted by
  ``gtime.FormatInterval`` (``1m``, ``15s``, ``1h``); ``$__interval_ms`` the same in ms
  ("Global variables: $__interval",
  https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/#__interval).
  The minimum interval is the panel's "Min interval" (``panel.interval``), else the target's
  (Prometheus "Min step", ``target.interval``), else the data source's ``timeInterval``.
- ``$__range`` = ``<round(range s)>s``, ``$__range_s`` = ``<round(range s)>``, ``$__range_ms`` =
  ``<range ms>`` ("Global variables: $__range").
- ``$__from`` / ``$__to``: the range's ends in epoch ms ("Global variables: $__from and $__to").
- Prometheus step: the interval above with the data source's scrape interval (default 15 s)
  as minimum, never below range / 11,000 rounded (Grafana's "safe" resolution), times
  ``intervalFactor``; ``start`` and ``end`` rounded down to a multiple of the step
  (``AlignTimeRange``, with the dashboard's UTC offset, 0 for UTC); an instant target is
  evaluated at that aligned end; ``$__interval`` in PromQL is that step ("Prometheus query editor: Min step",
  https://grafana.com/docs/grafana/latest/datasources/prometheus/query-editor/).
- ``$__rate_interval`` = max(``$__interval`` + scrape interval, 4 x scrape interval), written
  as Go writes a duration (``4m0s``) ("Prometheus template variables: $__rate_interval",
  https://grafana.com/docs/grafana/latest/datasources/prometheus/template-variables/); when it
  is the target's Min step, the step itself is that rate interval.
- Template variables ``$site``, ``${site}``, ``[[site]]``, ``${site:raw}``, ``${site:regex}``
  ("Variable syntax", https://grafana.com/docs/grafana/latest/dashboards/variables/variable-syntax/).
  A single value (no multi-value, no "All") is escaped as each data source does: InfluxQL
  regex-escapes non-numeric values (``influxRegularEscape``: ``/^$site$/`` matches the site
  literally), PromQL escapes ``\\`` and ``'`` (``prometheusRegularEscape``).

- A panel's relative time (``timeFrom``, "Query options: Relative time") replaces the
  dashboard's range for that panel, always ending now (Grafana's ``describeTextRange`` looks
  the expression up as ``<expr> to now``): ``now-<n><unit>`` starts that many units before now
  (calendar months and years), ``now/<unit>`` at the start of the current unit (not ``now/w``: the
  week's start depends on the locale; "now/M" is
  "This month so far"), in the dashboard's time zone (``QueryContext.now``, ``utc_offset_s``).

A macro or variable left unexpanded is an error naming the panel, never a query sent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pue_monitor.errors import PueError

__all__ = [
    "PanelTarget",
    "QueryContext",
    "QueryError",
    "QueryResult",
    "QueryRunner",
    "Series",
    "align",
    "calculate_interval",
    "expand_influxql",
    "expand_promql",
    "format_interval",
    "go_duration",
    "interpolate",
    "panel_context",
    "parse_interval",
    "prometheus_step",
    "rate_interval",
    "round_interval",
    "targets",
]

DataSourceType = Literal["influxdb", "prometheus"]

#: Grafana's default resolution when a query has no max data points (intervalv2 DefaultRes)
DEFAULT_MAX_DATA_POINTS = 1500
#: Grafana's Prometheus "safe" resolution: no step finer than range / 11,000
SAFE_RESOLUTION = 11_000
#: Grafana's Prometheus scrape interval when the data source sets none
DEFAULT_SCRAPE_MS = 15_000

_S, _M, _H, _D, _Y = 1000, 60_000, 3_600_000, 86_400_000, 31_536_000_000

#: gtime.RoundInterval: (upper bound inclusive, rounded value), both ms
_ROUNDING = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (210_000, 120_000), (450_000, 300_000),
    (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000), (2_700_000, 1_800_000),
    (5_400_000, 3_600_000), (9_000_000, 7_200_000), (16_200_000, 10_800_000),
    (32_400_000, 21_600_000), (86_400_000, 43_200_000), (172_800_000, 86_400_000),
    (604_800_000, 86_400_000), (1_814_400_000, 604_800_000),
)  # fmt: skip


class QueryError(PueError):
    """A panel query that cannot be expanded or that its server refused (one line)."""


# ----------------------------------------------------------------------------- intervals


def round_interval(ms: int) -> int:
    """``gtime.RoundInterval``: a rounder duration at or below ``ms`` (milliseconds)."""
    for bound, rounded in _ROUNDING:
        if ms <= bound:
            return rounded
    return 2_592_000_000 if ms < 3_628_800_000 else _Y  # 30d below 6 weeks, else 1y


def format_interval(ms: int) -> str:
    """``gtime.FormatInterval``: the largest whole unit (truncating): 90 s -> ``1m``."""
    for unit, suffix in ((_Y, "y"), (_D, "d"), (_H, "h"), (_M, "m"), (_S, "s"), (1, "ms")):
        if ms >= unit:
            return f"{ms // unit}{suffix}"
    return "1ms"


def go_duration(ms: int) -> str:
    """Go's ``time.Duration.String`` of whole milliseconds: ``4m0s``, ``1h0m0s``, ``15s``, ``500ms``."""
    if ms == 0:
        return "0s"
    if ms < _S:
        return f"{ms}ms"
    h, rest = divmod(ms, _H)
    m, rest = divmod(rest, _M)
    secs = f"{rest // _S}" + (f".{rest % _S:03d}".rstrip("0") if rest % _S else "")
    if h:
        return f"{h}h{m}m{secs}s"
    if m:
        return f"{m}m{secs}s"
    return f"{secs}s"


_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_MS = {"ms": 1, "s": _S, "m": _M, "h": _H, "d": _D, "w": 7 * _D, "y": _Y}


def parse_interval(text: str) -> int:
    """A Grafana interval (``15s``, ``1m``, ``<10m>``, a bare number of seconds) in ms."""
    body = text.strip().removeprefix("<").removesuffix(">")
    if body.isdigit():
        return int(body) * _S
    found = _DURATION.match(body)
    if found is None:
        raise ValueError(f"not an interval: {text!r} (expected e.g. 15s, 1m, 1h)")
    return int(found.group(1)) * _UNIT_MS[found.group(2)]


def calculate_interval(range_ms: int, min_ms: int, max_data_points: int) -> int:
    """``intervalv2.Calculate``: range / max data points, the minimum when below it, else rounded."""
    raw = range_ms // (max_data_points or DEFAULT_MAX_DATA_POINTS)
    if raw < min_ms:
        return min_ms
    return round_interval(raw)


def rate_interval(interval_ms: int, scrape_ms: int) -> int:
    """``$__rate_interval``: max(interval + scrape interval, 4 x scrape interval)."""
    return max(interval_ms + scrape_ms, 4 * scrape_ms)


def align(t_ms: int, step_ms: int, utc_offset_s: int = 0) -> int:
    """``AlignTimeRange``: ``t`` rounded down to a multiple of the step (in the dashboard's zone)."""
    off = utc_offset_s * _S
    return (t_ms + off) // step_ms * step_ms - off


# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class PanelTarget:
    """One query of one panel: where it is (dashboard file, panel title, refId) and what it asks."""

    dashboard: str
    panel: str
    ref_id: str
    datasource: DataSourceType
    query: str
    target: Mapping[str, Any]
    panel_model: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"{self.dashboard}: panel {self.panel!r} query {self.ref_id}"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # a (collapsed) row keeps its panels inside


def _ds_type(ds: Any) -> str | None:
    if isinstance(ds, dict):
        t = ds.get("type")
        return t if isinstance(t, str) else None
    return None


def targets(dashboard: Mapping[str, Any], name: str = "") -> list[PanelTarget]:
    """Every visible panel target of a dashboard model, nested rows included, in panel order.
    A target without a known data source type, or an InfluxQL target that is not a raw query,
    is an error naming the panel (the proof could not run it)."""
    name = name or str(dashboard.get("title", "dashboard"))
    found = []
    for panel in _panels(list(dashboard.get("panels") or [])):
        title = str(panel.get("title") or f"id {panel.get('id')}")
        for tgt in panel.get("targets") or []:
            if tgt.get("hide"):
                continue  # Grafana does not run a hidden query
            ref = str(tgt.get("refId", "?"))
            kind = _ds_type(tgt.get("datasource")) or _ds_type(panel.get("datasource"))
            where = f"{name}: panel {title!r} query {ref}"
            if kind == "influxdb":
                if not tgt.get("rawQuery") or not isinstance(tgt.get("query"), str):
                    raise QueryError(f"{where}: InfluxQL target without a raw query (rawQuery: true, query)")
                found.append(PanelTarget(name, title, ref, "influxdb", tgt["query"], tgt, panel))
            elif kind == "prometheus":
                if not isinstance(tgt.get("expr"), str):
                    raise QueryError(f"{where}: Prometheus target without expr")
                found.append(PanelTarget(name, title, ref, "prometheus", tgt["expr"], tgt, panel))
            else:
                raise QueryError(f"{where}: data source type {kind!r} (expected influxdb or prometheus)")
    return found


@dataclass(frozen=True)
class QueryContext:
    """What Grafana knows when it runs a panel: the time range (POSIX seconds; ``end`` is the
    range's ``to``, included), the dashboard variables (single values), max data points, the
    data sources' minimum intervals (``timeInterval`` of the provisioned data sources;
    Prometheus' is its scrape interval) and the dashboard's UTC offset."""

    start: float
    end: float
    variables: Mapping[str, str] = field(default_factory=dict)
    max_data_points: int = DEFAULT_MAX_DATA_POINTS
    influx_min_interval: str | None = None
    scrape_interval: str | None = None
    utc_offset_s: int = 0
    #: Grafana's "now" for a panel's relative time; default the range's end
    now: float | None = None

    @property
    def from_ms(self) -> int:
        return math.floor(self.start * 1000 + 1e-6)

    @property
    def to_ms(self) -> int:
        return math.floor(self.end * 1000 + 1e-6)

    @property
    def range_ms(self) -> int:
        return self.to_ms - self.from_ms

    def range_vars(self) -> dict[str, str]:
        s = round(self.range_ms / 1000)
        return {
            "__range": f"{s}s",
            "__range_s": str(s),
            "__range_ms": str(self.range_ms),
            "__from": str(self.from_ms),
            "__to": str(self.to_ms),
        }


#: now/w is left out: its week start depends on the dashboard's or browser's locale
_RELATIVE = re.compile(r"^now(?:-(\d+)([smhdwMy])|/([smhdMy]))$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _months(t: dt.datetime, n: int) -> dt.datetime:
    """``t`` moved by ``n`` calendar months (the day clamped to the month's last, as moment.js)."""
    y, m = divmod(t.month - 1 + n, 12)
    year, month = t.year + y, m + 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return t.replace(year=year, month=month, day=min(t.day, last))


def _start_of(t: dt.datetime, unit: str) -> dt.datetime:
    t = t.replace(microsecond=0)
    if unit == "s":
        return t
    t = t.replace(second=0)
    if unit == "m":
        return t
    t = t.replace(minute=0)
    if unit == "h":
        return t
    t = t.replace(hour=0)
    if unit == "d":
        return t
    t = t.replace(day=1)
    return t if unit == "M" else t.replace(month=1)


def panel_context(target: PanelTarget, ctx: QueryContext) -> QueryContext:
    """``ctx`` with the panel's relative time (``timeFrom``) applied, if it has one."""
    time_from = target.panel_model.get("timeFrom")
    if not time_from:
        return ctx
    m = _RELATIVE.match(str(time_from))
    if m is None:
        raise QueryError(
            f"{target.where}: relative time {time_from!r} is not supported (now-<n><unit>, now/<unit> but now/w)"
        )
    tz = dt.timezone(dt.timedelta(seconds=ctx.utc_offset_s))
    now_s = ctx.end if ctx.now is None else ctx.now
    now = dt.datetime.fromtimestamp(now_s, tz)
    if m.group(1) is not None:
        n, unit = int(m.group(1)), m.group(2)
        if unit in _UNIT_S:
            start = now_s - n * _UNIT_S[unit]
        else:
            start = _months(now, -n * (12 if unit == "y" else 1)).timestamp()
        return dataclasses.replace(ctx, start=start, end=now_s)
    return dataclasses.replace(ctx, start=_start_of(now, m.group(3)).timestamp(), end=now_s)


# ----------------------------------------------------------------------------- variables

#: Grafana's variable syntax: $name, [[name]] or [[name:format]], ${name} or ${name:format}
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_LEFTOVER = re.compile(r"\$\w|\$\{|\[\[\w+\]\]")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def _regex_escape(value: str) -> str:
    """Grafana's ``escapeRegex``."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def _influx_escape(value: str) -> str:
    """``influxRegularEscape``: numbers as they are, anything else regex-escaped."""
    try:
        float(value)
    except ValueError:
        return _regex_escape(value)
    return value


def _prometheus_escape(value: str) -> str:
    """``prometheusRegularEscape``: backslashes doubled, single quotes escaped."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def interpolate(text: str, values: Mapping[str, str], escape: Literal["influxdb", "prometheus", "none"]) -> str:
    """Replace every known variable (template variables and macros in ``values``); unknown ones
    stay. A template variable is escaped as the data source does unless its format is ``raw``;
    ``regex`` regex-escapes; macros (names starting ``__`` or ``timeFilter``/``interval``) never."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(5)
        if name not in values:
            return m.group(0)
        value = values[name]
        if name.startswith("__") or name in ("timeFilter", "interval"):
            return value
        if fmt == "raw":
            return value
        if fmt == "regex":
            return _regex_escape(value)
        if fmt is not None:
            raise ValueError(f"variable format {fmt!r} of ${name} is not supported (use raw or regex)")
        if escape == "influxdb":
            return _influx_escape(value)
        if escape == "prometheus":
            return _prometheus_escape(value)
        return value

    return _VARIABLE.sub(one, text)


def _check_expanded(query: str, where: str) -> str:
    left = _LEFTOVER.search(query.replace("$/", ""))  # "$/" closes a /^...$/ regex
    if left is not None:
        raise QueryError(f"{where}: unknown variable or macro at {query[left.start() : left.start() + 20]!r}")
    return query


# ----------------------------------------------------------------------------- expansion


def _min_interval(target: PanelTarget, ds_default: str | None, fallback_ms: int) -> int:
    for source in (target.panel_model.get("interval"), target.target.get("interval"), ds_default):
        if isinstance(source, str) and source and not source.startswith("$"):
            return parse_interval(source)
    return fallback_ms


def expand_influxql(target: PanelTarget, ctx: QueryContext) -> tuple[str, int]:
    """The InfluxQL Grafana sends for a raw query target, and its ``$__interval`` in ms."""
    try:
        mdp = int(target.panel_model.get("maxDataPoints") or ctx.max_data_points)
        interval = calculate_interval(ctx.range_ms, _min_interval(target, ctx.influx_min_interval, 1), mdp)
        values = {
            **ctx.variables,
            **ctx.range_vars(),
            "timeFilter": f"time >= {ctx.from_ms}ms and time <= {ctx.to_ms}ms",
            "interval": format_interval(interval),
            "__interval": format_interval(interval),
            "__interval_ms": str(interval),
        }
        query = interpolate(target.query, values, "influxdb")
    except ValueError as exc:
        raise QueryError(f"{target.where}: {exc}") from None
    return _check_expanded(query, target.where), interval


@dataclass(frozen=True)
class PromPlan:
    """A Prometheus target as Grafana runs it: the expression and the aligned range."""

    expr: str
    start_ms: int
    end_ms: int
    step_ms: int


_RATE_VARS = ("$__rate_interval", "${__rate_interval}")
_INTERVAL_VARS = ("$__interval", "${__interval}")


def prometheus_step(target: PanelTarget, ctx: QueryContext) -> tuple[int, int]:
    """(step, panel interval) in ms for a Prometheus target (``calculatePrometheusInterval``)."""
    scrape = parse_interval(ctx.scrape_interval) if ctx.scrape_interval else DEFAULT_SCRAPE_MS
    requested = str(target.target.get("interval") or target.panel_model.get("interval") or "")
    mdp = int(target.panel_model.get("maxDataPoints") or ctx.max_data_points)
    min_step = scrape if not requested or requested.startswith("$") else parse_interval(requested)
    interval = calculate_interval(ctx.range_ms, min_step, mdp)
    safe = round_interval(ctx.range_ms // SAFE_RESOLUTION)
    adjusted = max(interval, safe)
    if requested in _RATE_VARS:
        return rate_interval(adjusted, scrape), interval
    factor = int(target.target.get("intervalFactor") or 1)
    return adjusted * factor, interval


def expand_promql(target: PanelTarget, ctx: QueryContext) -> PromPlan:
    """The PromQL Grafana sends for a target, with its aligned start, end and step."""
    try:
        scrape = parse_interval(ctx.scrape_interval) if ctx.scrape_interval else DEFAULT_SCRAPE_MS
        step, interval = prometheus_step(target, ctx)
        requested = str(target.target.get("interval") or target.panel_model.get("interval") or "")
        if requested in _RATE_VARS:
            rate = step
        else:
            min_step = step if requested in _INTERVAL_VARS else (parse_interval(requested) if requested else scrape)
            rate = rate_interval(interval, min_step)
        values = {
            **ctx.variables,
            **ctx.range_vars(),
            "__interval": format_interval(step),
            "__interval_ms": str(step),
            "__rate_interval": go_duration(rate),
            "__rate_interval_ms": str(rate),
        }
        expr = interpolate(target.query, values, "prometheus")
    except ValueError as exc:
        raise QueryError(f"{target.where}: {exc}") from None
    return PromPlan(
        _check_expanded(expr, target.where),
        align(ctx.from_ms, step, ctx.utc_offset_s),
        align(ctx.to_ms, step, ctx.utc_offset_s),
        step,
    )


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Series:
    """One series of a result: its name, labels (InfluxDB tags, Prometheus labels), columns
    (``time`` first, epoch seconds) and rows."""

    name: str
    labels: Mapping[str, str]
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def values(self, column: str | None = None) -> list[Any]:
        """One column (the first after ``time`` by default) as a list, None for missing values."""
        i = self.columns.index(column) if column is not None else 1
        return [r[i] for r in self.rows]


@dataclass(frozen=True)
class QueryResult:
    target: PanelTarget
    kind: Literal["influxql", "range", "instant"]
    query: str
    series: list[Series]

    def points(self) -> int:
        """Non-null values over all series (what a panel can draw)."""
        return sum(1 for s in self.series for r in s.rows for v in r[1:] if v is not None)


class QueryRunner:
    """Runs panel targets as Grafana's data sources would: InfluxQL on InfluxDB's ``/query``
    (1.x, or 2.x/3 with a DBRP mapping), PromQL on Prometheus' ``/api/v1/query_range`` (and
    ``/api/v1/query`` for instant targets)."""

    def __init__(
        self, *, influxdb: str | None = None, database: str = "pue", prometheus: str | None = None, timeout: float = 30
    ) -> None:
        self.influxdb, self.database, self.prometheus, self.timeout = influxdb, database, prometheus, timeout

    def _get(self, url: str, where: str, server: str) -> Any:
        """The JSON answer; an error answer (both servers send ``{"error": ...}``) is one line
        naming the panel and the server."""
        base = url.split("?")[0]
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                error = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                error = text[:300].strip()
            raise QueryError(f"{where}: {server} {base}: HTTP {exc.code}: {error}") from None
        except (OSError, ValueError) as exc:
            raise QueryError(f"{where}: {server} {base}: {exc}") from None

    def run(self, target: PanelTarget, ctx: QueryContext) -> list[QueryResult]:
        ctx = panel_context(target, ctx)
        if target.datasource == "influxdb":
            return [self._influxql(target, ctx)]
        plan = expand_promql(target, ctx)
        instant = bool(target.target.get("instant"))
        wanted = [k for k, on in (("range", target.target.get("range", not instant)), ("instant", instant)) if on]
        return [self._promql(target, plan, kind) for kind in wanted]  # type: ignore[arg-type]

    def run_all(self, dashboard: Mapping[str, Any], ctx: QueryContext, name: str = "") -> list[QueryResult]:
        return [r for t in targets(dashboard, name) for r in self.run(t, ctx)]

    def _influxql(self, target: PanelTarget, ctx: QueryContext) -> QueryResult:
        if self.influxdb is None:
            raise QueryError(f"{target.where}: an InfluxQL query but no InfluxDB URL")
        query, _ = expand_influxql(target, ctx)
        params = {"db": self.database, "q": query, "epoch": "ms"}
        body = self._get(f"{self.influxdb}/query?{urllib.parse.urlencode(params)}", target.where, "InfluxDB")
        series = []
        for result in body.get("results", []):
            if "error" in result:
                raise QueryError(f"{target.where}: InfluxDB {self.influxdb}/query: {result['error']} (query: {query})")
            for s in result.get("series", []):
                rows = [(v[0] / 1000, *v[1:]) for v in s.get("values", [])]
                series.append(Series(s["name"], s.get("tags") or {}, tuple(s["columns"]), rows))
        return QueryResult(target, "influxql", query, series)

    def _promql(self, target: PanelTarget, plan: PromPlan, kind: Literal["range", "instant"]) -> QueryResult:
        if self.prometheus is None:
            raise QueryError(f"{target.where}: a PromQL query but no Prometheus URL")
        if kind == "range":
            params = {
                "query": plan.expr,
                "start": f"{plan.start_ms / 1000:.3f}",
                "end": f"{plan.end_ms / 1000:.3f}",
                "step": f"{plan.step_ms / 1000:g}",
            }
            url = f"{self.prometheus}/api/v1/query_range?{urllib.parse.urlencode(params)}"
        else:
            params = {"query": plan.expr, "time": f"{plan.end_ms / 1000:.3f}"}
            url = f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode(params)}"
        body = self._get(url, target.where, "Prometheus")
        if body.get("status") != "success":
            error = f"{body.get('errorType')}: {body.get('error')}"
            raise QueryError(f"{target.where}: Prometheus {url.split('?')[0]}: {error} (query: {plan.expr})")
        series = []
        for s in body["data"]["result"]:
            metric = dict(s.get("metric") or {})
            pairs = s["values"] if "values" in s else [s["value"]]
            rows: list[tuple[Any, ...]] = [(float(t), float(v)) for t, v in pairs]
            series.append(Series(metric.pop("__name__", ""), metric, ("time", "value"), rows))
        return QueryResult(target, kind, plan.expr, series)
