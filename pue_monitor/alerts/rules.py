"""A Prometheus rule file over pue-monitor's own metrics (``pue alerts rules``).

For teams that alert in Prometheus or Grafana rather than in pue-monitor. PUE is computed as
it must be, from the energy counters (``increase(facility_input) / increase(it)`` over 15
minutes, ISO/IEC 30134-2: a ratio of energies, never an average of ratios), recorded as
:data:`PUE_15M`; the alerts carry ``site`` and ``severity`` labels. Both PUE alerts are named
``PueHigh`` (severity warning and critical), so one Alertmanager inhibit rule (critical
inhibits warning, ``equal: [alertname, site]``) leaves one page.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

PUE_15M = "site:pue_power_usage_effectiveness_ratio:increase15m"

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def _num(v: float) -> str:
    return format(v, "g")


def _sel(site: str | None, **matchers: str) -> str:
    pairs = dict(matchers)
    if site is not None:
        pairs["site"] = site
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}" if pairs else ""


def rule_groups(
    *,
    site: str | None,
    warning: float,
    critical: float,
    pue_for: str = "10m",
    down_for: str = "5m",
    job: str = "pue",
) -> dict[str, Any]:
    """The rule file as a mapping. ``site`` None: rules for every site the metrics carry."""
    for d in (pue_for, down_for):
        if not _DURATION.match(d):
            raise ValueError(f"not a Prometheus duration: {d!r} (e.g. 10m, 1h30m)")
    if not 1.0 < warning <= critical:
        raise ValueError(f"thresholds must satisfy 1 < warning <= critical (got {warning}, {critical})")
    s = _sel(site)
    fac, it = _sel(site, role="facility_input"), _sel(site, role="it")
    site_label = {"site": site} if site is not None else {}
    where = "{{ $labels.site }}"

    def alert(name: str, expr: str, severity: str, summary: str, description: str, for_: str | None) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if for_ is not None:
            rule["for"] = for_
        rule["labels"] = {**site_label, "severity": severity}
        rule["annotations"] = {"summary": summary, "description": description}
        return rule

    value = '{{ printf "%.3f" $value }}'
    rules: list[dict[str, Any]] = [
        {
            "record": PUE_15M,
            "expr": f"increase(pue_energy_joules_total{fac}[15m])\n"
            f"  / ignoring(role) (increase(pue_energy_joules_total{it}[15m]) > 0)\n",
        },
        alert(
            "PueHigh",
            f"{PUE_15M}{s} > {_num(critical)}",
            "critical",
            f"PUE over the critical limit {_num(critical)} at {where}",
            f"15-minute PUE (from energy counters) is {value}, above the critical limit {_num(critical)}.",
            pue_for,
        ),
        alert(
            "PueHigh",
            f"{PUE_15M}{s} > {_num(warning)}",
            "warning",
            f"PUE over the warning limit {_num(warning)} at {where}",
            f"15-minute PUE (from energy counters) is {value}, above the warning limit {_num(warning)}.",
            pue_for,
        ),
        alert(
            "PueDeviceDown",
            f"pue_collector_up{s} == 0\n"
            f"  unless on(site, device, protocol) pue_collector_state{_sel(site, state='pending')} == 1\n",
            "warning",
            "Device {{ $labels.device }} down at " + where,
            "{{ $labels.protocol }} device {{ $labels.device }} has failed every poll for "
            + down_for
            + " (a device not polled yet is pending, not down).",
            down_for,
        ),
        alert(
            "PueSpoolEvicting",
            f"increase(pue_sink_evicted_points_total{s}[10m]) > 0",
            "critical",
            "InfluxDB spool full at " + where + ": points lost",
            "The spool of sink {{ $labels.sink }} evicted " + value + " points in 10 minutes (data lost).",
            None,
        ),
        alert(
            "PueStoreDropping",
            f"increase(pue_store_dropped_total{s}[10m]) > 0",
            "critical",
            "Embedded store dropping {{ $labels.kind }} at " + where,
            "The store {{ $labels.path }} dropped " + value + " {{ $labels.kind }} in 10 minutes (data lost).",
            None,
        ),
        alert(
            "PueStoreDown",
            f"pue_store_up{s} == 0",
            "critical",
            "Embedded store failing at " + where,
            "Writes to {{ $labels.path }} have failed for " + down_for + " (disk full, locked, read-only?).",
            down_for,
        ),
        alert(
            "PueInfluxDown",
            f"pue_sink_up{s} == 0",
            "warning",
            "InfluxDB delivery failing at " + where,
            "Sink {{ $labels.sink }} has failed for " + down_for + "; points wait in the spool.",
            down_for,
        ),
        alert(
            "PueMonitorDown",
            f'up{{job="{job}"}} == 0',
            "critical",
            "pue-monitor not answering ({{ $labels.instance }})",
            f"Prometheus has failed to scrape job {job} at {{{{ $labels.instance }}}} for {down_for}.",
            down_for,
        ),
        alert(
            "PueMonitorAbsent",
            f"absent(pue_build_info{s})",
            "critical",
            "No pue-monitor metrics" + (f" for site {site}" if site else ""),
            f"No pue_build_info series{f' for site {site}' if site else ''} for {down_for}: the service is not "
            "running or not scraped.",
            down_for,
        ),
    ]
    return {"groups": [{"name": f"pue-monitor-{site}" if site else "pue-monitor", "rules": rules}]}


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML has no types here
    pass


def _str(dumper: yaml.SafeDumper, v: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None)


_Dumper.add_representer(str, _str)


def rule_file(**kw: Any) -> str:
    """:func:`rule_groups` as YAML text with a header comment."""
    groups = rule_groups(**kw)
    site = kw.get("site")
    head = (
        f"# Prometheus rules for pue-monitor{f' site {site}' if site else ''}: PUE warning "
        f"{_num(kw['warning'])}, critical {_num(kw['critical'])} (15-minute PUE from energy counters).\n"
        "# Written by `pue alerts rules`; check with `promtool check rules FILE`.\n"
    )
    return head + str(yaml.dump(groups, Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True))
