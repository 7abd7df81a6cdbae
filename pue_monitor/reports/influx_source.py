"""Raw readings read back from InfluxDB for ``pue report --source influxdb``.

The same readings ``pue run`` writes (``schema.READING``: tags site, device, point; fields
``value`` and ``quality``), read with InfluxQL through ``/query`` — InfluxDB 1.x, and 2.x through
its 1.x-compatible API (a DBRP mapping of the bucket). VictoriaMetrics, which accepts the line
protocol but not InfluxQL, cannot be read back this way. Answers are streamed in chunks
(``chunked=true``), so a month of 1-minute readings never has to fit one JSON document.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pue_monitor import schema
from pue_monitor.config.models import InfluxConfig
from pue_monitor.errors import UserError
from pue_monitor.logs import register_secret

__all__ = ["InfluxReadings"]

CHUNK = 10_000  # points per chunk of an answer


def _quote(text: str) -> str:
    """An InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxReadings:
    """The report's reading source over InfluxDB (see :meth:`good_windows`)."""

    def __init__(self, cfg: InfluxConfig, site_id: str, *, base_dir: Path | None = None) -> None:
        from yarl import URL

        url = URL(cfg.url.rstrip("/"))
        self._headers: dict[str, str] = {}
        user, password = url.user, url.password
        url = url.with_user(None)
        if cfg.username:
            user = cfg.username
            password = cfg.password.read(str(base_dir) if base_dir else None) if cfg.password else ""
        if cfg.token is not None:
            token = cfg.token.read(str(base_dir) if base_dir else None)
            register_secret(token)
            self._headers["Authorization"] = f"Token {token}"
        elif user is not None:
            register_secret(password)
            basic = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            register_secret(basic)
            self._headers["Authorization"] = f"Basic {basic}"
        self.url = str(url).rstrip("/")
        db, _, rp = cfg.bucket.partition("/")
        self._db, self._rp = db, rp
        self._timeout = cfg.timeout
        self._site = site_id
        self.path = self.url  # what the report names as its source

    def close(self) -> None:
        pass

    def _query(self, q: str) -> Iterator[list[list[Any]]]:
        params = {"db": self._db, "q": q, "epoch": "ns", "chunked": "true", "chunk_size": str(CHUNK)}
        if self._rp:
            params["rp"] = self._rp
        req = urllib.request.Request(f"{self.url}/query?" + urllib.parse.urlencode(params), headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                for line in resp:
                    if not line.strip():
                        continue
                    body = json.loads(line)
                    for result in body.get("results", []):
                        if "error" in result:
                            raise UserError(
                                f"InfluxDB {self.url}: {result['error']}", "check influxdb: in the site file"
                            )
                        for series in result.get("series", []):
                            yield series.get("values", [])
        except urllib.error.HTTPError as exc:
            text = exc.read()[:300].decode("utf-8", "replace").strip()
            raise UserError(
                f"InfluxDB {self.url}: HTTP {exc.code} on /query: {text}",
                "check influxdb.url, bucket and credentials in the site file",
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"InfluxDB {self.url}: cannot query: {reason}", "is the server running?") from None

    def good_windows(
        self, keys: Sequence[tuple[str, str]], *, start: float, end: float, margin: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per (device, point): (ts, value) of its GOOD readings with ``start <= ts <= end`` plus up
        to ``margin`` readings on each side, by ts (as ``StoreReader.good_windows``)."""
        lo, hi = round(start * 1e9), round(end * 1e9)
        base = (
            f'SELECT "{schema.READING_VALUE}" FROM "{schema.READING}" WHERE "site" = {_quote(self._site)} '
            'AND "device" = {d} AND "point" = {p} AND "' + schema.READING_QUALITY + '" = 0 AND '
        )
        for device, point in keys:
            b = base.format(d=_quote(device), p=_quote(point))
            before = [r for v in self._query(b + f"time < {lo} ORDER BY time DESC LIMIT {int(margin)}") for r in v]
            mid = [r for v in self._query(b + f"time >= {lo} AND time <= {hi}") for r in v]
            after = [r for v in self._query(b + f"time > {hi} ORDER BY time ASC LIMIT {int(margin)}") for r in v]
            rows = [r for r in (*before[::-1], *mid, *after) if r[1] is not None]
            if not rows:
                yield np.zeros(0), np.zeros(0)
                continue
            ns = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            yield ns / 1e9, np.fromiter((r[1] for r in rows), np.float64, len(rows))

    def free_cooling(
        self, resolution: str = "1m", *, start: float | None = None, end: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Free-cooling rows are not read back from InfluxDB (the report states none)."""
        return []
