"""InfluxDB sink: batched, gzip, durable (spool), never silent about loss.

* Servers that speak the v2 write API (InfluxDB 2.x, 3, 1.8+, VictoriaMetrics) get
  influxdb-client's async write API; InfluxDB 1.x older than 1.8 has no v2 API, so the
  same line protocol goes to its 1.x ``/write`` endpoint (aiohttp, already a dependency of
  ``influxdb-client[async]``). ``api: auto`` asks ``/ping`` for ``X-Influxdb-Version``.
* Every batch is spooled to disk *before* it is sent and removed only once the server
  accepted it (see :mod:`pue_monitor.sinks.spool`): an unreachable server or a 5xx, 429,
  401/403 (credentials) or 404 (database missing) answer leaves it queued, replayed in
  order with capped backoff; a 400/413/422 answer (malformed data, field-type conflict)
  quarantines only the offending points with the server's message.
* Only an HTTP 204 counts as accepted: any other 2xx (a proxy or a wrong endpoint
  answering 200 with some page) keeps the batch in the spool and counts as a failure.
* The sender and flusher tasks are supervised: an unexpected error (the spool locked by
  another process, a disk error, a library bug) is logged with its cause, sets
  ``pue_sink_up`` to 0 and the task restarts with capped backoff. A spooled batch whose
  body is corrupt is quarantined (kept, counted, named in the log), never retried forever.
* The token/password come from env or file (``Secret``) and are registered for redaction
  (:mod:`pue_monitor.logs`); a URL's userinfo (``http://user:pass@host``) becomes Basic
  auth and is never logged. 1.x credentials go in the Authorization header, not the query
  string (where proxies and error messages would show them).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from pue_monitor.config.models import InfluxConfig
from pue_monitor.logs import redact, register_secret
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
    #: sender/flusher restarts after an unexpected error
    task_restarts: int = 0
    #: lines dropped from the in-memory buffer because the spool could not take them
    points_dropped: int = 0
    last_error: str | None = None
    last_success: float | None = None


def _version_tuple(v: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", v.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _describe(exc: BaseException) -> str:
    """Type and message of a connection error (not its repr: that holds the request headers)."""
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class InfluxSink:
    #: backoff of a restarted sender/flusher task: first wait, cap (seconds)
    RESTART_BACKOFF = (0.5, 30.0)

    def __init__(self, cfg: InfluxConfig, *, base_dir: Path | None = None, spool: Spool | None = None) -> None:
        self.cfg = cfg
        url = URL(cfg.url.rstrip("/"))
        #: (user, password) for HTTP Basic auth: from the URL's userinfo or username/password
        self._auth: tuple[str, str] | None = None
        if url.user is not None or url.password is not None:
            register_secret(url.password)
            self._auth = (url.user or "", url.password or "")
            url = url.with_user(None)
        #: the server's URL without any userinfo (safe to print)
        self.url = str(url).rstrip("/")
        self._token = cfg.token.read(str(base_dir) if base_dir else None) if cfg.token else None
        self._password = cfg.password.read(str(base_dir) if base_dir else None) if cfg.password else None
        if cfg.username:
            self._auth = (cfg.username, self._password or "")
        self._auth_header: dict[str, str] = {}
        if self._auth is not None:
            value = aiohttp.encode_basic_auth(*self._auth)
            register_secret(value.partition(" ")[2])  # the base64 form shows up in aiohttp errors' repr
            self._auth_header = {"Authorization": value}
        spool_path = Path(cfg.spool.path)
        if base_dir is not None and not spool_path.is_absolute():
            spool_path = base_dir / spool_path
        self.spool = spool or Spool(spool_path, max_bytes=cfg.spool.max_bytes)
        self.stats = SinkStats()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._buffer: list[str] = []
        #: bound of the in-memory buffer while the spool cannot take lines (oldest dropped, counted)
        self._max_buffer = max(100_000, 20 * cfg.batch_size)
        self._head_dropped = 0
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._closing = False
        self._sender: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._failing: set[str] = set()  # supervised tasks whose last run ended in an error
        self._write_ok: bool | None = None  # the last write's outcome (None: none yet)
        self._session: aiohttp.ClientSession | None = None
        self._client: Any = None  # InfluxDBClientAsync for the v2 API
        self._api: str | None = None if cfg.api == "auto" else cfg.api
        if self._api is not None:
            self.stats.api = self._api

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.timeout))
        self._sender = asyncio.create_task(self._supervise("sender", self._send_loop), name="influx sender")
        self._flusher = asyncio.create_task(self._supervise("flusher", self._flush_loop), name="influx flusher")

    async def _supervise(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``body`` until it returns; an unexpected error is logged with its cause, marks
        the sink down and restarts it after a capped, jittered backoff."""
        first, cap = self.RESTART_BACKOFF
        backoff = first
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failing.add(name)
                self._set_up()
                self.stats.task_restarts += 1
                self.stats.last_error = redact(f"{name}: {type(exc).__name__}: {exc}")
                if self._closing:
                    log.error(
                        "InfluxDB %s %s failed while stopping: %s: %s (unsent batches stay in spool %s)",
                        self.url,
                        name,
                        type(exc).__name__,
                        exc,
                        self.spool.path,
                    )
                    return
                log.error(
                    "InfluxDB %s %s failed: %s: %s (spool %s); restarting it in %.1f s",
                    self.url,
                    name,
                    type(exc).__name__,
                    exc,
                    self.spool.path,
                    backoff,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                await asyncio.sleep(backoff * random.uniform(0.75, 1.0))
                backoff = min(backoff * 2, cap)

    def _set_up(self) -> None:
        """``stats.up`` (``pue_sink_up``): the last write succeeded and no task is failing."""
        self.stats.up = False if self._failing else self._write_ok

    def _task_ok(self, name: str) -> None:
        if name in self._failing:
            self._failing.discard(name)
            self._set_up()
            log.warning("InfluxDB %s %s running again", self.url, name)

    async def close(self, deadline: float = 5.0) -> None:
        """Flush the buffer to the spool, give the sender ``deadline`` s to drain, stop.
        What is not sent stays in the spool for the next start."""
        self._closing = True
        try:
            await self.flush()
        except Exception as exc:
            log.error(
                "InfluxDB %s: %d points could not be spooled at stop (spool %s: %s: %s); they are lost",
                self.url,
                len(self._buffer),
                self.spool.path,
                type(exc).__name__,
                exc,
            )
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
        if len(self._buffer) > self._max_buffer:  # the spool has not taken lines for a while
            drop = len(self._buffer) - self._max_buffer
            del self._buffer[:drop]
            self._head_dropped += drop
            self.stats.points_dropped += drop
            log.error(
                "InfluxDB %s: spool %s is not taking lines; dropped the %d oldest buffered points (lost)",
                self.url,
                self.spool.path,
                drop,
            )
        if len(self._buffer) >= self.cfg.batch_size:
            self._wake.set()

    async def flush(self) -> None:
        """Move buffered lines into the spool as batches of ``batch_size``.

        A batch leaves the buffer only once the spool holds it: if the spool fails (locked,
        disk error), the lines stay buffered and the error propagates."""
        loop = asyncio.get_running_loop()
        async with self._flush_lock:  # the flusher task and callers never spool a batch twice
            while self._buffer:
                batch = self._buffer[: self.cfg.batch_size]
                dropped = self._head_dropped
                await loop.run_in_executor(self._io, self.spool.append, batch)
                # submit() may have dropped some of these lines meanwhile (buffer bound)
                del self._buffer[: max(0, len(batch) - (self._head_dropped - dropped))]
        self._wake.set()

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.cfg.flush_interval)
            if self._buffer:
                await self.flush()
            self._task_ok("flusher")  # reached only when nothing failed

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
                body = batch.lines()
            except ValueError as exc:  # the stored body is corrupt: keep it aside, go on
                reason = f"corrupt batch in spool: {exc}"
                await loop.run_in_executor(self._io, self.spool.quarantine, batch.id, reason, None)
                self.stats.batches_quarantined += 1
                log.error(
                    "InfluxDB sink: batch %d (%d points) in spool %s is corrupt (%s); quarantined it "
                    "(see `pue spool status`)",
                    batch.id,
                    batch.points,
                    self.spool.path,
                    exc,
                )
                continue
            try:
                rejected = await self._write(body.split(b"\n"))
            except WriteFailed as exc:
                self.stats.write_failures += 1
                self.stats.last_error = redact(str(exc))
                if self._write_ok is not False:
                    log.warning(
                        "InfluxDB %s unavailable, spooling to %s: %s (retrying; check influxdb.url in the site file)",
                        self.url,
                        self.spool.path,
                        exc,
                    )
                self._write_ok = False
                self._set_up()
                if self._closing:
                    return  # what is left stays spooled for the next start
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, 10.0)
                continue
            if rejected:
                bad = [line for line, _ in rejected]
                await loop.run_in_executor(self._io, self.spool.quarantine, batch.id, redact(rejected[0][1]), bad)
                self.stats.batches_quarantined += 1
                self.stats.points_written += batch.points - len(bad)
                self._write_ok = True  # it answered
                self._task_ok("sender")
                self._set_up()
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
            if self._write_ok is False:
                log.warning("InfluxDB %s back; replaying spooled batches in order", self.url)
            self._write_ok = True
            self._task_ok("sender")
            self._set_up()
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
            raise WriteFailed(f"cannot reach {self.url}: {_describe(exc)}") from None
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
        headers = {"Content-Type": "text/plain; charset=utf-8", **self._auth_header}
        body = b"\n".join(lines)
        if self.cfg.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(f"{self.url}/write", params=params, data=body, headers=headers) as resp:
                if resp.status == 204:
                    return
                text = (await resp.read())[:500].decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WriteFailed(f"{self.url}: {_describe(exc)}") from None
        self._raise_for(resp.status, text)

    async def _write_v2(self, lines: list[bytes]) -> None:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.service.write_service import WriteService

        if self._client is None:
            token = self._token
            if token is None and self._auth is not None:  # InfluxDB 1.8+ v2 API: "user:password"
                token = f"{self._auth[0]}:{self._auth[1]}"
                register_secret(token)
            self._client = InfluxDBClientAsync(
                url=self.url,
                token=token or "",
                org=self.cfg.org or "-",
                enable_gzip=self.cfg.gzip,
                timeout=int(self.cfg.timeout * 1000),
            )
        try:
            # the generated service (not write_api().write, which takes any 2xx) so the status is ours to check
            service: Any = WriteService  # untyped generated code
            _, status, _ = await service(self._client.api_client).post_write_async(
                org=self.cfg.org or "-",
                bucket=self.cfg.bucket,
                body=b"\n".join(lines),
                precision=WritePrecision.NS,
                content_type="text/plain; charset=utf-8",
                _return_http_data_only=False,
            )
        except InfluxDBError as exc:
            code = getattr(exc, "status", None) or getattr(getattr(exc, "response", None), "status", None) or 0
            self._raise_for(int(code), (exc.message or str(exc))[:500])
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WriteFailed(f"{self.url}: {_describe(exc)}") from None
        if status != 204:
            self._raise_for(int(status), "(body not read)")

    @staticmethod
    def _raise_for(status: int, text: str) -> None:
        """Map a non-204 answer. Only a verdict on the data itself quarantines it: 400 (bad
        line protocol, field-type conflict), 413 (too large: split), 422 (outside retention).
        Everything else is retried later with the data kept: 401/403 (credentials), 404
        (database or bucket missing), 429, 5xx, and a 2xx other than 204 (a proxy's or web
        server's page is never taken as a write)."""
        if status in (400, 413, 422):
            raise WriteRejected(f"HTTP {status}: {text}")
        if 200 <= status < 300:
            raise WriteFailed(f"HTTP {status} instead of 204 (not an InfluxDB write answer; data kept): {text}")
        raise WriteFailed(f"HTTP {status}: {text}")
