"""InfluxDB sink: batched, gzip, durable (spool), never silent about loss.

* Servers that speak the v2 write API (InfluxDB 2.x, 3, 1.8+, VictoriaMetrics) get
  influxdb-client's async write API; InfluxDB 1.x older than 1.8 has no v2 API, so the
  same line protocol goes to its 1.x ``/write`` endpoint (aiohttp, already a dependency of
  ``influxdb-client[async]``). ``api: auto`` asks ``/ping`` for ``X-Influxdb-Version``.
* Every batch is spooled to disk *before* it is sent and removed only once the server
  accepted it (see :mod:`pue_monitor.sinks.spool`): an unreachable server or a 5xx/429
  answer leaves it queued, replayed in order with capped backoff; a 4xx answer
  (malformed data, field-type conflict) quarantines the batch with the server's message.
* The token/password come from env or file (``Secret``) and are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pue_monitor.config.models import InfluxConfig
from pue_monitor.sinks.spool import Spool

log = logging.getLogger(__name__)


class WriteRejected(Exception):
    """The server refused the data itself (4xx): retrying will not help."""


class WriteFailed(Exception):
    """The server is unreachable or failing (connection, timeout, 5xx, 429): retry later."""


@dataclass
class SinkStats:
    api: str = "?"
    server_version: str | None = None
    up: bool | None = None
    points_written: int = 0
    batches_written: int = 0
    write_failures: int = 0
    batches_quarantined: int = 0
    last_error: str | None = None
    last_success: float | None = None


def _version_tuple(v: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", v.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


class InfluxSink:
    def __init__(self, cfg: InfluxConfig, *, base_dir: Path | None = None, spool: Spool | None = None) -> None:
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        self._token = cfg.token.read(str(base_dir) if base_dir else None) if cfg.token else None
        self._password = cfg.password.read(str(base_dir) if base_dir else None) if cfg.password else None
        spool_path = Path(cfg.spool.path)
        if base_dir is not None and not spool_path.is_absolute():
            spool_path = base_dir / spool_path
        self.spool = spool or Spool(spool_path, max_bytes=cfg.spool.max_bytes)
        self.stats = SinkStats()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._buffer: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._sender: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client: Any = None  # InfluxDBClientAsync for the v2 API
        self._api: str | None = None if cfg.api == "auto" else cfg.api

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.timeout))
        self._sender = asyncio.create_task(self._send_loop(), name="influx sender")
        self._flusher = asyncio.create_task(self._flush_loop(), name="influx flusher")

    async def close(self, deadline: float = 5.0) -> None:
        """Flush the buffer to the spool, give the sender ``deadline`` s to drain, stop.
        What is not sent stays in the spool for the next start."""
        self._closing = True
        await self.flush()
        self._wake.set()
        for task in (self._flusher, self._sender):
            if task is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=deadline)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()
        await asyncio.get_running_loop().run_in_executor(self._io, self.spool.close)
        self._io.shutdown(wait=True)

    # -------------------------------------------------------------------- writing

    def submit(self, lines: list[str]) -> None:
        """Accept lines; they reach the spool at the next flush (size or interval)."""
        if not lines:
            return
        self._buffer.extend(lines)
        if len(self._buffer) >= self.cfg.batch_size:
            self._wake.set()

    async def flush(self) -> None:
        """Move buffered lines into the spool as batches of ``batch_size``."""
        loop = asyncio.get_running_loop()
        while self._buffer:
            batch, self._buffer = self._buffer[: self.cfg.batch_size], self._buffer[self.cfg.batch_size :]
            await loop.run_in_executor(self._io, self.spool.append, batch)
        self._wake.set()

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.cfg.flush_interval)
            if self._buffer:
                await self.flush()

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.5
        while True:
            batches = await loop.run_in_executor(self._io, self.spool.oldest, 1)
            if not batches:
                if self._closing:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.cfg.flush_interval)
                continue
            batch = batches[0]
            try:
                rejected = await self._write(batch.lines().split(b"\n"))
            except WriteFailed as exc:
                self.stats.write_failures += 1
                self.stats.last_error = str(exc)
                if self.stats.up is not False:
                    log.warning("InfluxDB %s unavailable, spooling: %s", self.url, exc)
                self.stats.up = False
                if self._closing:
                    return  # what is left stays spooled for the next start
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, 10.0)
                continue
            if rejected:
                bad = [line for line, _ in rejected]
                await loop.run_in_executor(self._io, self.spool.quarantine, batch.id, rejected[0][1], bad)
                self.stats.batches_quarantined += 1
                self.stats.points_written += batch.points - len(bad)
                self.stats.up = True  # it answered
                log.error(
                    "InfluxDB rejected %d of %d points of batch %d; quarantined them: %s",
                    len(bad),
                    batch.points,
                    batch.id,
                    rejected[0][1],
                )
                continue
            await loop.run_in_executor(self._io, self.spool.done, batch.id)
            backoff = 0.5
            if self.stats.up is False:
                log.warning("InfluxDB %s back; replaying spooled batches in order", self.url)
            self.stats.up = True
            self.stats.points_written += batch.points
            self.stats.batches_written += 1
            self.stats.last_success = time.time()

    # ------------------------------------------------------------------ protocols

    async def _detect(self) -> str:
        assert self._session is not None
        try:
            async with self._session.get(f"{self.url}/ping") as resp:
                version = resp.headers.get("X-Influxdb-Version")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WriteFailed(f"cannot reach {self.url}: {exc!r}") from None
        self.stats.server_version = version
        vt = _version_tuple(version) if version else None
        api = "v1" if vt is not None and vt < (1, 8) else "v2"
        log.info("InfluxDB at %s: version %s, using the %s write API", self.url, version or "unknown", api)
        return api

    async def _write(self, lines: list[bytes]) -> list[tuple[bytes, str]]:
        """Write ``lines``; returns the lines the server rejected, with its message.

        A rejected (4xx) request is split in halves until the bad lines are isolated, so one
        malformed point costs only itself: InfluxDB 1.x drops a whole request on a field-type
        conflict, and the good points must still arrive. Raises WriteFailed (retry later).
        """
        if self._api is None:
            self._api = await self._detect()
            self.stats.api = self._api
        try:
            if self._api == "v1":
                await self._write_v1(lines)
            else:
                await self._write_v2(lines)
        except WriteRejected as exc:
            if len(lines) == 1:
                return [(lines[0], str(exc))]
            mid = len(lines) // 2
            return [*await self._write(lines[:mid]), *await self._write(lines[mid:])]
        return []

    async def _write_v1(self, lines: list[bytes]) -> None:
        assert self._session is not None
        db, _, rp = self.cfg.bucket.partition("/")
        params = {"db": db, "precision": "ns"}
        if rp:
            params["rp"] = rp
        if self.cfg.username:
            params["u"] = self.cfg.username
            params["p"] = self._password or ""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        body = b"\n".join(lines)
        if self.cfg.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(f"{self.url}/write", params=params, data=body, headers=headers) as resp:
                if resp.status < 300:
                    return
                text = (await resp.text())[:500]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WriteFailed(f"{self.url}: {exc!r}") from None
        self._raise_for(resp.status, text)

    async def _write_v2(self, lines: list[bytes]) -> None:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self.url,
                token=self._token or "",
                org=self.cfg.org or "-",
                enable_gzip=self.cfg.gzip,
                timeout=int(self.cfg.timeout * 1000),
            )
        try:
            await self._client.write_api().write(
                bucket=self.cfg.bucket, org=self.cfg.org or "-", record=b"\n".join(lines)
            )
        except InfluxDBError as exc:
            status = getattr(getattr(exc, "response", None), "status", None) or 0
            self._raise_for(int(status), exc.message or str(exc))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WriteFailed(f"{self.url}: {exc!r}") from None

    @staticmethod
    def _raise_for(status: int, text: str) -> None:
        if status == 429 or status >= 500 or status == 0:
            raise WriteFailed(f"HTTP {status}: {text}")
        raise WriteRejected(f"HTTP {status}: {text}")
