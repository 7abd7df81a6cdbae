"""A day of Prometheus history without waiting a day.

Scrapes of our endpoint taken on a simulated clock are kept with their (simulated) times
(:class:`ScrapeLog`), written as one OpenMetrics file with a timestamp on every sample,
turned into TSDB blocks by the real ``promtool tsdb create-blocks-from openmetrics``
(:func:`create_blocks`), and served by a real Prometheus that scrapes nothing
(:class:`PrometheusOnBlocks`). Queries then see exactly the samples a Prometheus scraping
the service at those times would have stored.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from servers import Server, VictoriaMetrics, _binary, free_port

#: labels that split one metric point into several samples (histogram buckets, summary quantiles)
_POINT_LABELS = frozenset({"le", "quantile"})


class ScrapeLog(Collector):
    """Scrapes of a registry, each stamped with its scrape time, regrouped into one exposition:
    every metric family once, each of its label sets' points contiguous and in time order
    (what the OpenMetrics format requires and what ``promtool`` appends to a TSDB)."""

    def __init__(self) -> None:
        #: family name -> (family without samples, label set -> samples per scrape)
        self._families: dict[str, tuple[Metric, dict[tuple[tuple[str, str], ...], list[Sample]]]] = {}
        self.scrapes = 0
        self.last_ts = -float("inf")

    def add(self, families: Iterable[Metric], ts: float) -> None:
        """One scrape taken at ``ts`` (seconds): the families a registry's ``collect()`` yields
        (what its endpoint renders) or :func:`parse` gives for an endpoint's text."""
        if ts <= self.last_ts:
            raise ValueError(f"scrape at {ts} is not after the previous one at {self.last_ts}")
        self.last_ts = ts
        self.scrapes += 1
        for fam in families:
            entry = self._families.get(fam.name)
            if entry is None:
                bare = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                entry = self._families[fam.name] = (bare, {})
            series = entry[1]
            for s in fam.samples:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k not in _POINT_LABELS))
                series.setdefault(key, []).append(s._replace(timestamp=ts))

    def collect(self) -> Iterator[Metric]:
        for bare, series in self._families.values():
            fam = Metric(bare.name, bare.documentation, bare.type, bare.unit)
            for samples in series.values():
                fam.samples.extend(samples)  # appended scrape by scrape: already in time order
            yield fam

    def write(self, path: Path) -> int:
        """Write the OpenMetrics file (ends with ``# EOF``); returns the number of samples."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        path.write_bytes(generate_latest(registry))
        return sum(len(s) for _, series in self._families.values() for s in series.values())


def parse(text: str) -> list[Metric]:
    """An endpoint's OpenMetrics text as metric families (the text must end with ``# EOF``)."""
    return list(text_string_to_metric_families(text))


def create_blocks(openmetrics: Path, data_dir: Path) -> str:
    """``promtool tsdb create-blocks-from openmetrics``: the file's samples as TSDB blocks in
    ``data_dir`` (a Prometheus ``--storage.tsdb.path``). Returns promtool's output."""
    run = subprocess.run(
        [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from openmetrics {openmetrics} failed: {run.stderr or run.stdout}")
    return run.stdout


class PrometheusOnBlocks(Server):
    """A real Prometheus on an existing TSDB directory, scraping nothing."""

    def __init__(self, tmp: Path, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = tmp / "prometheus-blocks.yml"
        conf.write_text("global: {evaluation_interval: 1m}\nscrape_configs: []\n")
        super().__init__(
            [
                _binary("prometheus"),
                f"--config.file={conf}",
                f"--storage.tsdb.path={data_dir}",
                "--storage.tsdb.retention.time=100y",  # the simulated day may lie in the past
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            f"{self.url}/-/ready",
            "prometheus",
            tmp / "prom-blocks.log",
        )

    def query(self, q: str, at: float) -> list[dict[str, object]]:
        """An instant query evaluated at ``at`` (POSIX seconds); the API's result list."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": f"{at:.3f}"})
        body = json.loads(urllib.request.urlopen(url, timeout=30).read())
        if body.get("status") != "success":
            raise RuntimeError(f"query {q!r} at {at}: {body}")
        return body["data"]["result"]  # type: ignore[no-any-return]

    def value(self, q: str, at: float) -> float:
        """The single value of an instant query (exactly one series expected)."""
        res = self.query(q, at)
        if len(res) != 1:
            raise AssertionError(f"{q!r} at {at}: {len(res)} series, expected 1: {res}")
        return float(res[0]["value"][1])  # type: ignore[index]

    def samples(self, q: str, at: float) -> list[tuple[float, float]]:
        """The (time, value) samples of a range-vector selector with one series, e.g. ``x[1d]``."""
        res = self.query(q, at)
        if len(res) != 1:
            raise AssertionError(f"{q!r} at {at}: {len(res)} series, expected 1: {res}")
        return [(float(t), float(v)) for t, v in res[0]["values"]]  # type: ignore[index]


def extrapolated_increase(samples: list[tuple[float, float]], range_start: float, range_end: float) -> float:
    """What Prometheus' ``increase()`` returns for a counter's samples in a range (Prometheus
    2.x, promql/functions.go ``extrapolatedRate``, no counter resets): the difference of the
    last and first sample, extrapolated towards each edge of the range by the distance to it
    when that is under 1.1 x the average sample spacing (else by half a spacing), and at the
    start at most to where the counter would reach zero."""
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    delta = v1 - v0
    sampled = t1 - t0
    avg = sampled / (len(samples) - 1)
    to_start, to_end = t0 - range_start, range_end - t1
    if delta > 0 and v0 >= 0:
        to_start = min(to_start, sampled * (v0 / delta))
    threshold = avg * 1.1
    span = sampled + (to_start if to_start < threshold else avg / 2) + (to_end if to_end < threshold else avg / 2)
    return delta * span / sampled


def backfill_recording_rules(prom: PrometheusOnBlocks, rules: Path, start: float, end: float, out_dir: Path) -> None:
    """``promtool tsdb create-blocks-from rules``: Prometheus evaluates the file's recording rules
    (its alerting rules are ignored) every minute from ``start`` to ``end`` on ``prom``'s data
    and writes the results as blocks into ``out_dir``."""
    run = subprocess.run(
        [_binary("promtool"), "tsdb", "create-blocks-from", "rules", "--quiet", f"--url={prom.url}",
         f"--start={start:.0f}", f"--end={end:.0f}", f"--output-dir={out_dir}", "--eval-interval=60s", str(rules)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from rules {rules} failed: {run.stderr or run.stdout}")


def replay_alerting_rules(prom_url: str, vm: VictoriaMetrics, rules: Path, start: float, end: float, log: Path) -> None:
    """``vmalert`` in replay mode: the file's rules evaluated every minute from ``start`` to
    ``end``, each query answered by the Prometheus at ``prom_url`` (one range query per rule,
    so ``for:`` runs over the whole span), the ``ALERTS`` series (``alertstate`` pending or
    firing, as Prometheus writes them) remote-written to ``vm``. Prometheus itself cannot do
    this: its rule manager evaluates only at the wall clock's now, and ``promtool``'s backfill
    ignores alerting rules."""

    def rfc3339(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    run = subprocess.run(
        [_binary("vmalert"), f"-rule={rules}", f"-datasource.url={prom_url}", f"-remoteWrite.url={vm.url}",
         f"-replay.timeFrom={rfc3339(start)}", f"-replay.timeTo={rfc3339(end)}", "-evaluationInterval=1m",
         "-datasource.queryStep=0", "-replay.rulesDelay=0s", "-replay.disableProgressBar",
         "-replay.maxDatapointsPerQuery=100000", "-remoteWrite.flushInterval=100ms", "-httpListenAddr=127.0.0.1:0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log.write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"vmalert replay of {rules} failed (log {log}): {(run.stderr or run.stdout)[-2000:]}")


def write_exported(path: Path, exported: list[dict[str, Any]]) -> int:
    """VictoriaMetrics' ``/api/v1/export`` lines (one series each: metric, values, timestamps
    in ms) as an OpenMetrics file of gauges for :func:`create_blocks`; returns the samples."""
    families: dict[str, Metric] = {}
    n = 0
    for line in exported:
        labels = dict(line["metric"])
        name = labels.pop("__name__")
        fam = families.setdefault(name, Metric(name, "", "gauge"))
        for v, t in sorted(zip(line["values"], line["timestamps"], strict=True), key=lambda p: p[1]):
            fam.samples.append(Sample(name, labels, float(v), t / 1000))
            n += 1

    class _Fixed(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed())
    path.write_bytes(generate_latest(registry))
    return n
