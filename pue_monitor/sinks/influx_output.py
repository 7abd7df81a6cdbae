"""InfluxDB as an :class:`~pue_monitor.sinks.base.Output`: a thin adapter over
:class:`~pue_monitor.sinks.influx.InfluxSink`'s public methods (start, submit, flush, close,
cfg, stats) — the sink keeps its own spool, batching, sender and health."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pue_monitor import __version__
from pue_monitor.readings import Reading
from pue_monitor.sinks.base import Output, OutputHealth
from pue_monitor.sinks.influx import InfluxSink
from pue_monitor.sinks.lineprotocol import LineBuilder

__all__ = ["InfluxOutput"]


class InfluxOutput(Output):
    name = "influxdb"

    def __init__(self, sink: InfluxSink, *, site: str) -> None:
        self.sink = sink
        self.site = site
        self.lines = LineBuilder()

    async def start(self) -> None:
        await self.sink.start()
        # which schema the data follows, once per start (pue_monitor.schema.SCHEMA_VERSION)
        self.sink.submit([self.lines.meta(self.site, time.time(), __version__)])

    def readings(self, readings: Sequence[Reading]) -> None:
        if self.sink.cfg.write_readings:
            self.sink.submit(self.lines.readings(readings))

    def intervals(self, resolution: str, intervals: Sequence[Any]) -> None:
        if self.sink.cfg.write_intervals:
            self.sink.submit(self.lines.intervals(self.site, resolution, intervals))

    def free_cooling(self, resolution: str, rows: Sequence[Any]) -> None:
        if self.sink.cfg.write_intervals:
            self.sink.submit(self.lines.free_cooling(self.site, resolution, rows))

    async def close(self) -> None:
        await self.sink.close()

    def health(self) -> OutputHealth:
        st = self.sink.stats
        return OutputHealth(self.name, st.up, st.last_error or "" if st.up is False else "")
